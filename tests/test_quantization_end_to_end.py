"""QAT end to end on scikit-learn digits: a small CNN with BatchNormalization, fine-tuned
quantization-aware, exported to int8 without representative data, run in LiteRT and TFLite
Micro and compared with its simulation, saved and reloaded (the DynHP-pruned case, in the same
fit: tests/test_quantization_phase.py)."""

import keras
import numpy as np
import pytest
from conftest import assert_int8_matches_simulation, bn_cnn
from tfdynhp.converters.int8_check import op_quantization

import tfdynhp
from tfdynhp import converters

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(digits):
    x, y, x_test, y_test = digits
    return x.reshape(-1, 8, 8, 1), y, x_test.reshape(-1, 8, 8, 1), y_test


def _compile(model, learning_rate):
    model.compile(
        keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )


def _accuracy(tflite, x, y):
    return converters.evaluate(tflite, x, y, runtime="litert", time_latency=False)["accuracy"]


def _fine_tune_and_check(model, images):
    """PTQ, then QAT from the same calibration, 2 epochs; returns (qat model, int8 file)."""
    x, y, x_test, y_test = images
    ptq = converters.to_int8_tflite(model, x[:300])
    ptq_accuracy = _accuracy(ptq, x_test, y_test)
    qat = tfdynhp.quantize_aware(model, calibration_data=x[:300])
    _compile(qat, 3e-4)
    # Calibrated on the same data, the QAT model starts as the post-training int8 model.
    start = qat.evaluate(x_test, y_test, verbose=0)[1]
    assert start == pytest.approx(ptq_accuracy, abs=0.01)
    qat.fit(x, y, epochs=2, batch_size=32, verbose=0)
    tflite = converters.to_int8_tflite(qat)
    assert_int8_matches_simulation(tflite, qat, x_test)
    assert _accuracy(tflite, x_test, y_test) >= max(ptq_accuracy, 0.9)
    # QAT keeps the shapes: same ops and the same weight shapes as the post-training file.
    shapes = [(op.op, op.weight_shape, op.output_shape) for op in op_quantization(tflite)]
    assert shapes == [(op.op, op.weight_shape, op.output_shape) for op in op_quantization(ptq)]
    return qat, tflite


def test_qat_of_a_cnn_with_batchnorm_matches_litert_and_tflm_and_reloads(images, tmp_path):
    # The pruned shapes through QAT: tests/test_quantization_phase.py (DynHP then QAT).
    x, y, x_test, _ = images
    model = bn_cnn(dropout=0.1)
    _compile(model, 3e-3)
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    qat, tflite = _fine_tune_and_check(model, images)
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x_test, verbose=0), qat.predict(x_test, verbose=0))
    assert converters.to_int8_tflite(loaded) == tflite
