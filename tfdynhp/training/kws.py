"""Keyword spotting end to end: synthetic data -> DynHP to a target in one fit -> int8 -> firmware.

`train_kws` is what `tfdynhp train --dataset synthetic-kws` runs, composed of the library's own
steps (nothing forked): `load_synthetic_kws` (speaker-disjoint splits; its `val` split, by
speaker, is the run's validation set), `tfdynhp.training.train` (gates, DynHP, target, strip,
int8, bundles), `deploy.write_features` (front end and normalization shipped in each bundle),
`training.verify_exports` (MCU firmware under QEMU, bit-exact against Python TFLM), plus the
accuracy on held-out voices and on held-out accents, float and int8.
"""

import os

import numpy as np

from tfdynhp.datasets.kws import deploy
from tfdynhp.datasets.kws.dataset import load_synthetic_kws

DATASET = "synthetic-kws"
# BatchNormalization momentum of the run's architecture: MLPerf Tiny's DS-CNN uses Keras' 0.99,
# which on a few thousand clips (tens of steps per epoch) leaves the moving statistics far from
# the batch statistics for several epochs: validation stays at chance while training accuracy
# climbs (measured on the "ci" easy set: 8.3 % after 6 epochs at 0.99, 60 % at 0.9).
BN_MOMENTUM = 0.9


def is_kws(dataset):
    """Whether `dataset` names the synthetic keyword-spotting set."""
    return isinstance(dataset, str) and dataset.strip().lower().replace("_", "-") == DATASET


def load_splits(keywords=None, difficulty="medium", size="medium", seed=0, front_end="mfcc",
                **kwargs):
    """`((train, val, test), info)`: the data with its validation split by speaker.

    `test` is held-out voices followed by held-out accents, as `load_synthetic_kws` returns it.
    `front_end="micro"` gives the features of the micro front end (`micro_dataset`); a
    `micro_frontend.MicroFrontEnd` those of the micro front end with its parameters.
    Keyword arguments go to `load_synthetic_kws`.
    """
    from tfdynhp.datasets.kws import micro_dataset, micro_deploy, micro_frontend

    if isinstance(front_end, micro_frontend.MicroFrontEnd):
        kwargs["frontend"] = front_end
        front_end = micro_frontend.NAME
    load = (micro_dataset.load_synthetic_kws_micro if micro_deploy.is_micro(front_end)
            else load_synthetic_kws)
    (train, test), info = load(keywords, difficulty, size, seed, return_info=True, **kwargs)
    return (train, info.splits["val"], test), info


def held_out_accuracies(model, tflite, info, tflm_samples=None):
    """Accuracy on `test_voices` and `test_accents`: Keras float, LiteRT int8, optionally TFLM,
    and how often the runtimes agree on the class.

    Args:
        model: the stripped Keras model.
        tflite: the int8 `.tflite` bytes, or `None`.
        info: the `KWSInfo`.
        tflm_samples: clips per split evaluated in TFLite Micro (`None`: none, `0`: all).

    Returns:
        `{split: {"float": acc, "int8": acc, "int8_float_agreement": fraction, "tflm": acc,
        "tflm_n": count, "tflm_litert_agreement": fraction, "n": count}}` (the agreements:
        the fraction of clips where the two give the same class).
    """
    from tfdynhp import converters

    result = {}
    for split in ("test_voices", "test_accents"):
        x, y = info.splits[split]
        float_class = np.argmax(model.predict(x, batch_size=512, verbose=0), -1)
        row = {"n": len(y), "float": float(np.mean(float_class == y))}
        if tflite is not None:
            litert = converters.evaluate(tflite, x, y, "litert", time_latency=False)
            row["int8"] = float(litert["accuracy"])
            row["int8_float_agreement"] = float(np.mean(litert["predictions"] == float_class))
            if tflm_samples is not None:
                n = len(y) if tflm_samples == 0 else min(tflm_samples, len(y))
                tflm = converters.evaluate(tflite, x[:n], y[:n], "tflm", time_latency=False)
                row["tflm"] = float(tflm["accuracy"])
                row["tflm_n"] = int(n)
                row["tflm_litert_agreement"] = float(
                    np.mean(tflm["predictions"] == litert["predictions"][:n]))
        result[split] = row
    return result


def finish_run(result, info, out_dir, exports, verify=(), tflm_dir=None, cache_dir=None,
               tflm_samples=None, kernels=None):
    """After `training.train`: ships the features in each bundle, verifies the firmware, adds
    the held-out accuracies, the data set and the firmware figures to the summary (rewritten
    in `out_dir/summary.json`). Returns `(summary, {target: FirmwareResult})`.

    With the micro front end's data (`info.frontend_tflite`), the `mcu` bundle takes raw audio
    (`kws_audio.write_firmware_bundle`) and, when verified, every held-out clip is also
    classified on the first Cortex-M target and compared with the Python pipeline
    (`summary["firmware_agreement"]`)."""
    from tfdynhp.datasets.kws import micro_deploy
    from tfdynhp.training import kws_audio
    from tfdynhp.training import run as training

    micro = bool(getattr(info, "frontend_tflite", b""))
    summary = result.summary
    summary["data"] = {k: v for k, v in info.to_dict().items() if k != "speaker_split"}
    for target in exports:
        bundle = os.path.dirname(summary["exports"][target]["model_json"])
        if micro and target == "mcu":
            kws_audio.write_firmware_bundle(bundle, result.tflite, info, kernels)
            summary["exports"][target]["raw_audio"] = True
        elif micro:
            summary["exports"][target].update(micro_deploy.write_features(bundle, info))
        else:
            summary["exports"][target].update(deploy.write_features(bundle, info))
    summary["held_out"] = held_out_accuracies(result.stripped, result.tflite, info,
                                              tflm_samples)
    firmware = {}
    if verify:
        firmware = training.verify_exports(out_dir, verify, tflm_dir, cache_dir, kernels)
        summary["firmware"] = {t: r.to_dict() for t, r in firmware.items()}
        devices = [t for t in verify if t != "host"]
        if micro and devices:
            summary["firmware_agreement"] = {devices[0]: kws_audio.agreement(
                os.path.join(out_dir, "export", "mcu"), info, tflm_dir, devices[0], kernels,
                cache_dir)}
    if out_dir is not None:
        training.write_summary(summary, out_dir)
    return summary, firmware


def train_kws(out_dir=None, *, keywords=None, difficulty="medium", size="medium", data_seed=0,
              exports=(), verify=(), tflm_dir=None, cache_dir=None, tflm_cache_dir=None,
              tflm_samples=None, data_verbose=1, verbose=1, keras_verbose=None,
              front_end="mfcc", kernels=None, **options):
    """Trains a keyword spotter on synthetic speech in one run and deploys it.

    Args:
        out_dir: output folder of `training.train` (needed for exports).
        keywords, difficulty, size, data_seed: the data (`load_synthetic_kws`).
        exports: export targets (`"mcu"` for firmware).
        verify: firmware targets (`"host"`, `"cortex-m4"`, `"cortex-m3"`); needs `"mcu"`.
        tflm_dir: TFLM source tree for `verify`. Defaults to `$TFLM_DIR`.
        cache_dir: the data cache (`load_synthetic_kws`).
        tflm_cache_dir: cache of compiled TFLM objects.
        tflm_samples: held-out clips per split also run in Python TFLM (`0`: all).
        data_verbose, verbose, keras_verbose: progress output.
        front_end: `"mfcc"` (MFCCs by TensorFlow) or `"micro"` (TFLite Micro's signal ops,
            the same `.tflite` in training and on the device; the `mcu` bundle then takes
            raw audio), or a `micro_frontend.MicroFrontEnd` (the micro front end with those
            parameters). Defaults to `"mfcc"`.
        kernels: TFLM kernels of the Cortex-M firmware (`"cmsis-nn"`, `"reference"`; `None`:
            CMSIS-NN).
        **options: `training.train` options (`arch` defaults to `"ds-cnn"`, `bn_momentum` to
            `BN_MOMENTUM`, `mode` to `"dynhp"`; `target`, `epochs`, ...).

    Returns:
        `(training.TrainResult, {target: FirmwareResult})`; `result.summary["held_out"]` has
        the held-out-voice and held-out-accent accuracies.

    Raises:
        ValueError: for bad data, training or export options (before any synthesis when the
            data options are bad), or `verify` without `"mcu"` in `exports`.
    """
    from tfdynhp.training import run as training

    exports = training.check_exports(exports)
    verify = tuple(verify)
    if verify and "mcu" not in exports:
        raise ValueError("Firmware verification builds the mcu bundle: add 'mcu' to exports.")
    if verify and not (tflm_dir or os.environ.get("TFLM_DIR")):
        raise ValueError("Firmware verification needs a TensorFlow Lite Micro tree: pass "
                         "tflm_dir or set TFLM_DIR.")
    options.setdefault("arch", "ds-cnn")
    options.setdefault("bn_momentum", BN_MOMENTUM)
    options["dataset"] = DATASET
    training.RunConfig(**options).resolve()  # bad options fail before synthesis
    data, info = load_splits(keywords, difficulty, size, data_seed, front_end,
                             cache_dir=cache_dir, verbose=data_verbose)
    result = training.train(data=data, out_dir=out_dir, exports=exports, verbose=verbose,
                            keras_verbose=keras_verbose, labels=list(info.labels), **options)
    _, firmware = finish_run(result, info, out_dir, exports, verify,
                             tflm_dir or os.environ.get("TFLM_DIR"), tflm_cache_dir,
                             tflm_samples, kernels)
    return result, firmware
