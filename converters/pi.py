"""Target "pi": a folder to copy to a Raspberry Pi (or any Linux box) and run without TensorFlow.

Files: `model.tflite`, `labels.txt`, `model.json`, `predict.py` (numpy + ai-edge-litert, or
tflite_runtime) and `sample.npy` (one float sample) so `python3 predict.py sample.npy` works.
"""

import os
from importlib import resources

import numpy as np
from tfdynhp.converters import metadata

PREDICT_SCRIPT = "predict.py"
SAMPLE_FILE = "sample.npy"


def _shape_text(dims):
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


def predict_script(template, sample_shape):
    """Returns `predict.py` with the model's input shape in its usage text (pure).

    Args:
        template: Text of `templates/predict.py`.
        sample_shape: Input shape of one sample (without the batch axis), e.g. `(784,)`.
    """
    sample_shape = tuple(int(d) for d in sample_shape)
    return (
        template.replace("__SAMPLE_SHAPE__", _shape_text(sample_shape))
        .replace("__ONE_SHAPE__", _shape_text((1,) + sample_shape))
        .replace("__BATCH_SHAPE__", _shape_text(("N",) + sample_shape))
    )


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
    shape = tuple(metadata.model_json(tflite_bytes)["input"]["shape"][1:])
    with open(script, "w", encoding="utf-8") as f:
        f.write(predict_script(template.read_text(encoding="utf-8"), shape))
    os.chmod(script, 0o755)
    paths["predict_script"] = script
    if sample is not None:
        paths["sample"] = os.path.join(out_dir, SAMPLE_FILE)
        np.save(paths["sample"], np.asarray(sample, dtype=np.float32).reshape((1,) + shape))
    return paths
