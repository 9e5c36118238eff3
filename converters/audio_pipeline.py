"""The Python side of a raw-audio `mcu` bundle: what its firmware computes, in TFLite Micro's
Python interpreter (front end window by window, `feature_map`, classifier), on its test clips,
on other clips, or on a stream (`stream_python`). `firmware.reference_outputs` checks a
raw-audio firmware against `bundle_pipeline_outputs`; `audio_mcu` writes the bundles.
"""

import json
import os

import numpy as np
from tfdynhp.converters import mcu, tflite_model

FRONTEND_FILE = "frontend.tflite"
KIND = "audio"


def frontend_module():
    # The per-window runner (imported lazily: no TensorFlow import at module load).
    from tfdynhp.datasets.kws import micro_frontend

    return micro_frontend


def feature_map(frontend_info, classifier_info):
    """`kFeatureToInput`: int8 front-end output q -> classifier input (pure), 256 values."""
    q = np.arange(-128, 128)
    x = tflite_model.dequantize(q, frontend_info)
    return tflite_model.quantize(x, classifier_info).astype(np.int8)


def features_of(frontend_tflite, pcm, settings):
    """Float classifier inputs of int16 clips: front end in Python TFLM, dequantized."""
    mf = frontend_module()
    fe = mf.MicroFrontEnd(**settings) if isinstance(settings, dict) else settings
    q = mf.run_frontend(frontend_tflite, pcm, fe)
    info = tflite_model.read_model_info(frontend_tflite).outputs[0]
    return tflite_model.dequantize(q, info)[..., None], q


def pipeline_outputs(frontend_tflite, classifier_tflite, pcm, settings):
    """Raw classifier outputs for int16 clips, as the firmware computes them (Python TFLM).

    Returns:
        `(quantized classifier inputs, raw outputs)`, one row per clip.
    """
    from tfdynhp.converters import runtimes

    _, q = features_of(frontend_tflite, pcm, settings)
    front = tflite_model.read_model_info(frontend_tflite).outputs[0]
    info = tflite_model.read_model_info(classifier_tflite)
    table = feature_map(front, info.inputs[0])
    inputs = table[q.astype(np.int64) + 128].reshape((len(q),) + tuple(info.inputs[0].shape[1:]))
    runner = runtimes.make_runner(classifier_tflite, "tflm")
    outputs = np.stack([np.asarray(runner(x[None])).reshape(-1) for x in inputs])
    return inputs, outputs


def recognizer_for(recognizer, labels, num_classes):
    """The streaming decision rule: `recognizer` (a `kws.streaming.Recognizer` or its dict), or
    the default one ignoring the classes labelled silence and unknown."""
    from tfdynhp.datasets.kws import streaming

    if recognizer is None:
        ignore = tuple(i for i, label in enumerate(labels or ())
                       if str(label).lower() in ("silence", "unknown", "_silence_", "_unknown_"))
        return streaming.Recognizer(ignore=ignore)
    if isinstance(recognizer, dict):
        recognizer = streaming.Recognizer(**{**recognizer,
                                             "ignore": tuple(recognizer.get("ignore", ()))})
    if any(not 0 <= i < num_classes for i in recognizer.ignore):
        raise ValueError(f"`recognizer.ignore` {recognizer.ignore} names classes outside "
                         f"0..{num_classes - 1}.")
    return recognizer


def is_audio_bundle(bundle_dir):
    """Whether `bundle_dir` is a raw-audio bundle (its test vectors are clips)."""
    path = os.path.join(bundle_dir, mcu.TEST_VECTORS_JSON)
    if not os.path.isfile(os.path.join(bundle_dir, FRONTEND_FILE)) or not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        head = f.read(64)
    return f'"kind": "{KIND}"' in head


def bundle_pipeline_outputs(bundle_dir, pcm=None):
    """`pipeline_outputs` of a raw-audio bundle on its own test clips (or on `pcm`)."""
    vectors, frontend_tflite, classifier_tflite = bundle_models(bundle_dir)
    settings = {k: v for k, v in vectors["frontend"].items() if k != "num_frames"}
    if pcm is None:
        pcm = np.asarray(vectors["inputs"], np.int16)
    return pipeline_outputs(frontend_tflite, classifier_tflite, pcm, settings)


def bundle_models(bundle_dir):
    """A raw-audio bundle's `(test vectors dict, front end .tflite, classifier .tflite)`."""
    with open(os.path.join(bundle_dir, mcu.TEST_VECTORS_JSON), encoding="utf-8") as f:
        vectors = json.load(f)
    with open(os.path.join(bundle_dir, FRONTEND_FILE), "rb") as f:
        frontend_tflite = f.read()
    with open(os.path.join(bundle_dir, "model.tflite"), "rb") as f:
        classifier_tflite = f.read()
    return vectors, frontend_tflite, classifier_tflite


def stream_python(bundle_dir, pcm):
    """Keywords the bundle's streaming firmware should report on int16 stream `pcm`:
    `[(frame, class, score), ...]` (`tfdynhp.datasets.kws.streaming.detect`, Python TFLM)."""
    from tfdynhp.datasets.kws import micro_frontend, streaming

    vectors, frontend_tflite, classifier_tflite = bundle_models(bundle_dir)
    fe = micro_frontend.MicroFrontEnd(**{k: v for k, v in vectors["frontend"].items()
                                         if k != "num_frames"})
    recognizer = recognizer_for(vectors["recognizer"], None, len(vectors["expected_outputs"][0]))
    table = feature_map(tflite_model.read_model_info(frontend_tflite).outputs[0],
                        tflite_model.read_model_info(classifier_tflite).inputs[0])
    return streaming.detect(frontend_tflite, classifier_tflite, np.asarray(pcm, np.int16),
                            recognizer, table, fe)
