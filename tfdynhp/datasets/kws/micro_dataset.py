"""`load_synthetic_kws_micro`: the synthetic keyword-spotting set through the micro front end.

The same clips as `load_synthetic_kws` (same synthesis, plan, splits and seed), kept as 16 kHz
int16 PCM, and turned into features by the TFLite Micro front end of `micro_frontend` in TFLite
Micro's Python interpreter: the very `.tflite` the firmware runs before the classifier. The
normalization of its cepstral coefficients is measured on the training split (through the
front end's filter-bank part) and folded into the front end, which is then run on every split.
PCM and features are cached (`kws.cache`): the waveforms by the data set's parameters, the
features by those and the front end's parameters.
"""

import dataclasses

import numpy as np

from tfdynhp.datasets.kws import micro_frontend, splits
from tfdynhp.datasets.kws.cache import Entry, resolve_cache_dir
from tfdynhp.datasets.kws.dataset import KWSInfo, load_synthetic_kws
from tfdynhp.datasets.kws.features import FeatureNormalization

FORMAT_VERSION = 2  # 2: the device front end quantizes the log with one QUANTIZE
DEFAULT_FRONTEND = micro_frontend.DEFAULT  # without noise reduction and PCAN (see there)


@dataclasses.dataclass(frozen=True)
class MicroKWSInfo(KWSInfo):
    """`KWSInfo` of the micro front end's data, plus what a raw-audio firmware needs.

    Attributes:
        frontend_tflite: the front-end model (bytes) that computed the features.
        pcm: `{split: int16 (n, clip_samples)}`, the clips the features came from.
        features_int8: `{split: int8 (n, frames, coefficients)}`, the front end's raw outputs
            (`splits` holds them dequantized, `q * frontend.output_scale`).
    """

    frontend_tflite: bytes = b""
    pcm: dict = dataclasses.field(default_factory=dict)
    features_int8: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        return {**super().to_dict(), "frontend_tflite_bytes": len(self.frontend_tflite)}


def _features(pcm, fe, cache_entry, verbose):
    names = [f"q_{s}" for s in splits.SPLITS] + ["mean", "std", "frontend"]
    arrays = cache_entry.load(names)
    if arrays is not None:
        norm = FeatureNormalization(tuple(arrays["mean"].tolist()), tuple(arrays["std"].tolist()))
        return ({s: arrays[f"q_{s}"] for s in splits.SPLITS}, norm,
                arrays["frontend"].tobytes())
    filterbank = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(fe, "int8"),
                                             pcm["train"], fe)
    norm = micro_frontend.measure_normalization(filterbank, fe)
    tflite = micro_frontend.frontend_tflite(norm, fe)
    q = {s: micro_frontend.run_frontend(tflite, pcm[s], fe) for s in splits.SPLITS}
    cache_entry.save(**{f"q_{s}": v for s, v in q.items()}, mean=np.asarray(norm.mean),
                     std=np.asarray(norm.std), frontend=np.frombuffer(tflite, np.uint8))
    return q, norm, tflite


def load_synthetic_kws_micro(keywords=None, difficulty="medium", size="medium", seed=0, *,
                             frontend=DEFAULT_FRONTEND, cache_dir=None,
                             verbose=1, return_info=False, **kwargs):
    """Loads the synthetic keyword-spotting set with features of the micro front end.

    Arguments as `load_synthetic_kws` (`keywords`, `difficulty`, `size`, `seed`, and keyword
    arguments such as `unknown_words`, `accents`, `variants`, `workers`); `frontend` is the
    `micro_frontend.MicroFrontEnd` (default `micro_frontend.DEFAULT`: micro_speech's without
    noise reduction and PCAN; `MicroFrontEnd()` is micro_speech's). The first call synthesizes
    the audio (cached, 64 kB per clip) and runs the front end over every clip in TFLite Micro
    (about 30 ms per clip).

    Returns:
        `((x_train, y_train), (x_test, y_test))`, x float32 `(n, 49, 10, 1)` (the dequantized
        int8 front-end output); with `return_info=True` also a `MicroKWSInfo` whose
        `frontend_tflite` is the front end, `pcm` the clips and `features_int8` the raw
        features, per split.
    """
    if "normalize" in kwargs or "audio" in kwargs:
        raise TypeError("The micro front end normalizes inside its own model: `normalize` and "
                        "`audio` are not arguments of load_synthetic_kws_micro.")
    _, info = load_synthetic_kws(keywords, difficulty, size, seed, cache_dir=cache_dir,
                                 verbose=verbose, return_info=True, audio=True, **kwargs)
    pcm = {s: micro_frontend.to_pcm16(info.splits[s][0]) for s in splits.SPLITS}
    labels = {s: info.splits[s][1] for s in splits.SPLITS}
    entry = Entry(resolve_cache_dir(cache_dir), {
        "format": FORMAT_VERSION, "micro_features_of": info.cache_path.rsplit("/", 1)[-1],
        "frontend": frontend.to_dict(),
    })
    q, norm, tflite = _features(pcm, frontend, entry, verbose)
    data = {s: (micro_frontend.dequantize(q[s], frontend), labels[s]) for s in splits.SPLITS}
    data["test"] = tuple(np.concatenate([data["test_voices"][i], data["test_accents"][i]])
                         for i in range(2))
    result = (data["train"], data["test"])
    if not return_info:
        return result
    pcm["test"] = np.concatenate([pcm["test_voices"], pcm["test_accents"]])
    q["test"] = np.concatenate([q["test_voices"], q["test_accents"]])
    micro_info = MicroKWSInfo(
        **{f.name: getattr(info, f.name) for f in dataclasses.fields(KWSInfo)},
        frontend_tflite=tflite, pcm=pcm, features_int8=q,
    )
    micro_info = dataclasses.replace(micro_info, frontend=frontend, normalization=norm,
                                     normalized=True, splits=data, cache_path=entry.path)
    return result, micro_info
