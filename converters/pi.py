"""Target "pi": a folder to copy to a Raspberry Pi (or any Linux box) and run without TensorFlow.

Files: `model.tflite`, `labels.txt`, `model.json`, `predict.py` (numpy + ai-edge-litert, or
tflite_runtime) and `sample.npy` (one float sample) so `python3 predict.py sample.npy` works.
"""

import os
import shutil
from importlib import resources

import numpy as np
from tfdynhp.converters import metadata

PREDICT_SCRIPT = "predict.py"
SAMPLE_FILE = "sample.npy"


def write_pi(tflite_bytes, out_dir, labels=None, sample=None, preprocessing=None):
    """Writes the Raspberry Pi bundle into `out_dir`.

    Args:
        tflite_bytes: The int8 `.tflite` model.
        out_dir: Destination folder (created if needed).
        labels: Class names, one per output. Defaults to `class_0 ...`.
        sample: One float input sample saved as `sample.npy` (shape `(1,) + input_shape[1:]`).
            Skipped if `None`.
        preprocessing: Note stored in `model.json`. Defaults to `metadata.DEFAULT_PREPROCESSING`.

    Returns:
        Dict of written paths: `model`, `labels`, `model_json`, `predict_script`, and `sample`
        if a sample was given.
    """
    paths = metadata.write_common(out_dir, tflite_bytes, labels, preprocessing)
    script = os.path.join(out_dir, PREDICT_SCRIPT)
    template = resources.files("tfdynhp.converters").joinpath("templates", PREDICT_SCRIPT)
    with resources.as_file(template) as src:
        shutil.copyfile(src, script)
    os.chmod(script, 0o755)
    paths["predict_script"] = script
    if sample is not None:
        meta = metadata.model_json(tflite_bytes)
        shape = (1,) + tuple(meta["input"]["shape"][1:])
        paths["sample"] = os.path.join(out_dir, SAMPLE_FILE)
        np.save(paths["sample"], np.asarray(sample, dtype=np.float32).reshape(shape))
    return paths
