"""The files every deployment bundle shares: `model.tflite`, `labels.txt`, `model.json`.

`model.json` is the contract between the exporter and the device code (`predict.py`, the
Android demo, `main.cc`): input/output shape, dtype, scale and zero point, and the op list.
"""

import hashlib
import json
import os

import numpy as np
from tfdynhp.converters import runtimes, tflite_model

MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
MODEL_JSON_FILE = "model.json"
SCHEMA = "tfdynhp.model/1"

DEFAULT_PREPROCESSING = (
    "Feed the same float features the Keras model was trained on (same scaling), one sample at "
    "a time, in the input shape given here. Quantize each value as "
    "q = clamp(round_half_away_from_zero(x / scale) + zero_point, qmin, qmax) with the input "
    "scale and zero_point; dequantize outputs as scale * (q - zero_point)."
)


def check_labels(labels, num_classes):
    """Returns `labels` as a list of strings, or `class_0 ... class_{n-1}` if `None`.

    Raises:
        ValueError: If the number of labels differs from the model's number of classes, or a
            label contains a newline.
    """
    if labels is None:
        return [f"class_{i}" for i in range(num_classes)]
    labels = [str(label) for label in labels]
    if len(labels) != num_classes:
        raise ValueError(
            f"Expected {num_classes} labels, one per model output. Received: {len(labels)} "
            "labels. Pass `labels=None` for class_0, class_1, ..."
        )
    if any("\n" in label or "\r" in label for label in labels):
        raise ValueError("Labels must not contain line breaks (labels.txt holds one per line).")
    return labels


def num_classes(info):
    """Number of output values of a classifier (the product of the output shape)."""
    return int(np.prod(info.outputs[0].shape))


def model_json(tflite_bytes, preprocessing=None):
    """Builds the `model.json` dict for a converted model.

    Args:
        tflite_bytes: The `.tflite` model.
        preprocessing: Free-text note on input preprocessing. Defaults to a note on matching
            the training features and the quantization formula.

    Returns:
        A JSON-serializable dict with `schema`, `model_file`, `labels_file`, `num_classes`,
        `input` and `output` (`name`, `shape`, `dtype`, `scale`, `zero_point`), `ops`,
        `model_bytes`, `sha256` and `preprocessing`.

    Raises:
        ValueError: If the model does not have one input and one output.
    """
    info = tflite_model.read_model_info(tflite_bytes)
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise ValueError(
            "Expected a model with one input and one output. "
            f"Received: {len(info.inputs)} inputs, {len(info.outputs)} outputs."
        )
    return {
        "schema": SCHEMA,
        "model_file": MODEL_FILE,
        "labels_file": LABELS_FILE,
        "num_classes": num_classes(info),
        "input": info.inputs[0].to_dict(),
        "output": info.outputs[0].to_dict(),
        "ops": list(info.ops),
        "model_bytes": info.size_bytes,
        "sha256": hashlib.sha256(tflite_bytes).hexdigest(),
        "preprocessing": preprocessing or DEFAULT_PREPROCESSING,
    }


def write_common(out_dir, tflite_bytes, labels=None, preprocessing=None):
    """Writes `model.tflite`, `labels.txt` and `model.json` into `out_dir` (created if needed).

    Returns:
        Dict mapping `"model"`, `"labels"` and `"model_json"` to the written paths.
    """
    meta = model_json(tflite_bytes, preprocessing)
    labels = check_labels(labels, meta["num_classes"])
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "model": os.path.join(out_dir, MODEL_FILE),
        "labels": os.path.join(out_dir, LABELS_FILE),
        "model_json": os.path.join(out_dir, MODEL_JSON_FILE),
    }
    with open(paths["model"], "wb") as f:
        f.write(tflite_bytes)
    with open(paths["labels"], "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    with open(paths["model_json"], "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return paths


def predict_sample(tflite_bytes, sample, runtime="litert"):
    """Runs one float sample and returns `(quantized_input, raw_output, predicted_class)`.

    Args:
        tflite_bytes: The `.tflite` model.
        sample: One float sample, shaped like the model input without (or with) the batch axis.
        runtime: `"litert"` or `"tflm"`. Defaults to `"litert"`.
    """
    info = tflite_model.read_model_info(tflite_bytes)
    x = np.asarray(sample, dtype=np.float32).reshape((1,) + tuple(info.inputs[0].shape[1:]))
    outputs, _ = runtimes.run_tflite(tflite_bytes, x, runtime)
    q = tflite_model.quantize(x, info.inputs[0])
    return q[0], outputs[0], int(np.argmax(outputs[0]))
