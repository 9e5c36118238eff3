"""Measures the synthetic-kws data set: synthesis time, cache size, and what a plain CNN learns.

Rows (each generated into a fresh temporary cache, so synthesis is really timed):

- synthesis time per 1,000 clips, cache bytes per clip and the cached reload time, for the
  `"ci"` size (1,200 clips) at every difficulty and the `"medium"` size (20,000 clips) at the
  medium difficulty;
- learnability: the plain Keras CNN of `plain_cnn` (stock layers, no gates; the one
  `tests/test_synthetic_kws.py` trains) trained 15 epochs on each set's training split, accuracy
  on train, validation, held-out voices and held-out accents;
- normalization (ci, easy): held-out-voice accuracy after each of 5 epochs of the plain CNN and
  of the same CNN with BatchNormalization (momentum 0.99) after each convolution, on raw and on
  normalized MFCCs; and the int8 input quantization error per MFCC coefficient (per-tensor
  min/max scale over the training split, as a full-integer model's input has), relative to the
  coefficient's standard deviation, raw vs normalized.

Writes `bench/results/kws_data.json` and `bench/results/kws_data.md` (the command first).

    python bench/kws_data.py            # everything (~11 min on 2 shared cores)
    python bench/kws_data.py --quick    # the ci size only (~3 min)
"""

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import keras
import numpy as np

from tfdynhp.datasets import kws

EPOCHS = 15


def plain_cnn(n_classes, batchnorm=False):
    """A small stock-Keras CNN on `(49, 10, 1)` MFCCs (about 14k parameters)."""
    layers = [keras.Input((49, 10, 1))]
    for filters, kernel, pool in ((16, (5, 3), (2, 1)), (32, (3, 3), (2, 2)), (32, (3, 3), None)):
        layers.append(keras.layers.Conv2D(filters, kernel, padding="same",
                                          activation=None if batchnorm else "relu"))
        if batchnorm:
            layers += [keras.layers.BatchNormalization(momentum=0.99),
                       keras.layers.Activation("relu")]
        if pool:
            layers.append(keras.layers.MaxPooling2D(pool))
    layers += [keras.layers.GlobalAveragePooling2D(),
               keras.layers.Dense(n_classes, activation="softmax")]
    return keras.Sequential(layers)


def learnability(info, epochs=EPOCHS, seed=0):
    """Trains `plain_cnn` on `info.splits["train"]`; returns the accuracy of every split."""
    keras.utils.set_random_seed(seed)
    model = plain_cnn(len(info.labels))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.time()
    model.fit(*info.splits["train"], batch_size=32, epochs=epochs, verbose=0)
    scores = {name: round(float(model.evaluate(*info.splits[name], verbose=0)[1]), 4)
              for name in ("train", "val", "test_voices", "test_accents")}
    return {**scores, "fit_s": round(time.time() - start, 1), "epochs": epochs}


def _cpu_seconds():
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _load_average():
    return round(os.getloadavg()[0], 1)


def synthesis_row(size, difficulty, workers):
    folder = tempfile.mkdtemp(prefix="kws-bench-")
    try:
        load_before = _load_average()
        start, cpu = time.time(), _cpu_seconds()
        _, info = kws.load_synthetic_kws(difficulty=difficulty, size=size, cache_dir=folder,
                                         workers=workers, verbose=1, return_info=True)
        seconds, cpu = time.time() - start, _cpu_seconds() - cpu
        start = time.time()
        kws.load_synthetic_kws(difficulty=difficulty, size=size, cache_dir=folder, verbose=0)
        reload_s = time.time() - start
        nbytes = os.path.getsize(info.cache_path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return info, {
        "size": info.size, "difficulty": difficulty, "workers": workers,
        "synthesis_s": round(seconds, 1), "s_per_1k_clips": round(1000 * seconds / info.size, 1),
        "cpu_s_per_1k_clips": round(1000 * cpu / info.size, 1),
        "load_average_before_after": [load_before, _load_average()],
        "cache_bytes": nbytes, "cache_bytes_per_clip": round(nbytes / info.size),
        "cached_reload_s": round(reload_s, 2),
    }


def normalization_ablation(info, epochs=5):
    """Held-out-voice accuracy per epoch, raw vs normalized MFCCs, without and with BatchNorm."""
    out = {}
    x, y = info.splits["train"]
    xv, yv = info.splits["test_voices"]
    for batchnorm in (False, True):
        for name, transform in (("normalized", lambda x: x), ("raw", _denormalize(info))):
            keras.utils.set_random_seed(0)
            model = plain_cnn(len(info.labels), batchnorm=batchnorm)
            model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            history = model.fit(transform(x), y, batch_size=32, epochs=epochs, verbose=0,
                                validation_data=(transform(xv), yv))
            key = f"{'batchnorm' if batchnorm else 'plain'} cnn, {name}"
            out[key] = [round(float(a), 4) for a in history.history["val_accuracy"]]
    return out


def int8_input_error(info):
    """RMS error of int8 input quantization per coefficient, over the coefficient's std."""
    out = {}
    for name, x in (("normalized", info.splits["train"][0]),
                    ("raw", _denormalize(info)(info.splits["train"][0]))):
        scale = (float(x.max()) - float(x.min())) / 255.0
        zero = round(-128 - float(x.min()) / scale)
        q = (np.clip(np.round(x / scale) + zero, -128, 127) - zero) * scale
        error = np.sqrt(np.mean((q - x) ** 2, axis=(0, 1, 3))) / x.std(axis=(0, 1, 3))
        out[name] = [round(float(e), 4) for e in error]
    return out


def _denormalize(info):
    mean = np.asarray(info.normalization.mean, np.float32).reshape(1, 1, -1, 1)
    std = np.asarray(info.normalization.std, np.float32).reshape(1, 1, -1, 1)
    return lambda x: x * std + mean


def to_markdown(result):
    lines = [f"Command: `{result['command']}`", "",
             f"Machine: {result['machine']}; espeak-ng: {result['espeak']}", "",
             ("| size | difficulty | synthesis (s) | s / 1k clips | cache bytes / clip | "
             "train | val | held-out voices | held-out accents |"),
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        acc = row["learnability"]
        lines.append(
            f"| {row['size']} | {row['difficulty']} | {row['synthesis_s']} | "
            f"{row['s_per_1k_clips']} | {row['cache_bytes_per_clip']} | {acc['train']:.3f} | "
            f"{acc['val']:.3f} | {acc['test_voices']:.3f} | {acc['test_accents']:.3f} |")
    if "normalization" in result:
        lines += ["", "Held-out-voice accuracy after each of 5 epochs (ci, easy):", ""]
        for name, accs in result["normalization"].items():
            lines.append(f"- {name}: {', '.join(f'{a:.3f}' for a in accs)}")
        lines += ["", "int8 input quantization error per MFCC coefficient (RMS error / std):",
                  ""]
        for name, errors in result["int8_input_error"].items():
            lines.append(f"- {name}: {', '.join(f'{e:.3f}' for e in errors)}")
    lines += ["", "| size | difficulty | CPU s / 1k clips | load average before, after |",
              "|---:|---|---:|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['size']} | {row['difficulty']} | {row['cpu_s_per_1k_clips']} | "
                     f"{row['load_average_before_after']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the ci size only")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    plan = [("ci", d) for d in kws.DIFFICULTIES]
    if not args.quick:
        plan.append(("medium", "medium"))
    result = {
        "command": "python bench/kws_data.py" + (" --quick" if args.quick else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "espeak": kws.espeak.espeak_version(), "rows": [],
    }
    for size, difficulty in plan:
        info, row = synthesis_row(size, difficulty, args.workers)
        row["learnability"] = learnability(info)
        print(json.dumps(row), flush=True)
        result["rows"].append(row)
        if (size, difficulty) == ("ci", "easy"):
            result["normalization"] = normalization_ablation(info)
            result["int8_input_error"] = int8_input_error(info)
            print(json.dumps(result["normalization"]), json.dumps(result["int8_input_error"]),
                  flush=True)
    os.makedirs(args.out, exist_ok=True)
    name = "kws_data_quick" if args.quick else "kws_data"
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
