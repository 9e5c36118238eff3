"""Target "android": the assets `android_demo/` loads, in the layout of an Android project.

Everything goes to `<out_dir>/app/src/main/assets/`, mirroring `android_demo/`, so
`export(model, "android", "android_demo", x)` drops the assets straight into the demo app, and
any other `out_dir` can be copied over it (`cp -r <out_dir>/app android_demo/`).

Files: `model.tflite`, `labels.txt`, `model.json` and `sample.json` (one float sample and the
class LiteRT predicts for it on the host, which the app shows next to its own result).
"""

import json
import os

import numpy as np
from tfdynhp.converters import metadata

ASSETS_SUBDIR = os.path.join("app", "src", "main", "assets")
SAMPLE_FILE = "sample.json"


def sample_record(tflite_bytes, sample, labels):
    """Returns the `sample.json` dict: flat float input, expected class and label."""
    _, _, predicted = metadata.predict_sample(tflite_bytes, sample, runtime="litert")
    return {
        "input": [float(v) for v in np.asarray(sample, dtype=np.float32).reshape(-1)],
        "expected_class": predicted,
        "expected_label": labels[predicted],
    }


def write_android(tflite_bytes, out_dir, labels=None, sample=None, preprocessing=None):
    """Writes the Android demo assets under `<out_dir>/app/src/main/assets/`.

    Args:
        tflite_bytes: The int8 `.tflite` model.
        out_dir: Project root (e.g. `android_demo`) or any folder.
        labels: Class names, one per output. Defaults to `class_0 ...`.
        sample: One float input sample for `sample.json` (required: the app classifies it).
        preprocessing: Note stored in `model.json`.

    Returns:
        Dict of written paths: `model`, `labels`, `model_json`, `sample`, `assets_dir`.

    Raises:
        ValueError: If `sample` is `None`.
    """
    if sample is None:
        raise ValueError("The android target needs one float `sample` for sample.json.")
    assets = os.path.join(out_dir, ASSETS_SUBDIR)
    paths = metadata.write_common(assets, tflite_bytes, labels, preprocessing)
    meta = metadata.model_json(tflite_bytes)
    names = metadata.check_labels(labels, meta["num_classes"])
    paths["sample"] = os.path.join(assets, SAMPLE_FILE)
    with open(paths["sample"], "w", encoding="utf-8") as f:
        json.dump(sample_record(tflite_bytes, sample, names), f, indent=2)
        f.write("\n")
    paths["assets_dir"] = assets
    return paths
