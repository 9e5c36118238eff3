"""What a bundle of a keyword spotter trained on the micro front end's features ships.

The feature-input bundles (`pi`, `android`) get the front end as `frontend.tflite` and a
`features.json` saying how to run it and how its int8 output becomes the model's input. (The
`mcu` bundle takes raw audio instead: `tfdynhp.training.kws_audio`.)
"""

import json
import os

from tfdynhp.datasets.kws import micro_frontend

FEATURES_JSON = "features.json"
FRONTEND_FILE = "frontend.tflite"
SCHEMA = "tfdynhp.kws-micro-features/1"


def feature_spec(info, input_tensor):
    """The JSON-serializable feature contract of a model trained on `info`'s micro features."""
    fe = info.frontend
    return {
        "schema": SCHEMA,
        "labels": list(info.labels),
        "frontend": fe.to_dict(),
        "frontend_model": FRONTEND_FILE,
        "normalization": info.normalization.to_dict(),
        "how": (f"Reset the front end's interpreter at the start of each 1 s clip; invoke it on "
                f"{fe.num_frames} windows of {fe.window_samples} int16 samples every "
                f"{fe.stride_samples}; each gives {fe.num_coefficients} int8 values q, real "
                f"value q * {fe.output_scale}; quantize those with the model's input scale "
                "and zero point (frame-major, (frames, coefficients, 1))."),
        "input_quantization": {k: input_tensor[k] for k in ("scale", "zero_point", "dtype")
                               if k in input_tensor},
        "dataset": {k: v for k, v in info.to_dict().items()
                    if k in ("dataset", "keywords", "difficulty", "seed", "size",
                             "espeak_version", "split_sizes")},
    }


def write_features(bundle_dir, info):
    """Writes `frontend.tflite` and `features.json` into a feature-input bundle and records them
    in its `model.json`. Returns the written paths."""
    model_json = os.path.join(bundle_dir, "model.json")
    if not os.path.isfile(model_json):
        raise FileNotFoundError(f"{bundle_dir!r} is not an export bundle: no model.json in it.")
    with open(model_json, encoding="utf-8") as f:
        meta = json.load(f)
    paths = {"features_json": os.path.join(bundle_dir, FEATURES_JSON),
             "frontend": os.path.join(bundle_dir, FRONTEND_FILE), "model_json": model_json}
    with open(paths["frontend"], "wb") as f:
        f.write(info.frontend_tflite)
    with open(paths["features_json"], "w", encoding="utf-8") as f:
        json.dump(feature_spec(info, meta["input"]), f, indent=2)
        f.write("\n")
    meta["features"] = FEATURES_JSON
    meta["preprocessing"] = (
        "Input: the int8 output of the micro front end (frontend.tflite: TFLite Micro's signal "
        "ops, micro_speech's audio preprocessor, then a normalized DCT) on 1 s of 16 kHz int16 "
        "audio, dequantized (features.json)."
    )
    with open(model_json, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return paths


def is_micro(front_end):
    """Whether `front_end` names the micro front end (`"micro"`; `"mfcc"` or `None` do not).

    Raises:
        ValueError: for another name.
    """
    name = "mfcc" if front_end is None else str(front_end).strip().lower()
    if name not in ("mfcc", micro_frontend.NAME):
        raise ValueError(f"Unknown front end {front_end!r}. Expected 'mfcc' (MFCCs computed by "
                         "TensorFlow, MLPerf Tiny's) or 'micro' (TFLite Micro's signal ops, "
                         "on the device too).")
    return name == micro_frontend.NAME
