"""The real thing end to end: a model pruned by DynHP inside one fit, stripped, converted to
int8 and run in LiteRT and in TFLite Micro."""

import numpy as np
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp import converters
from tfdynhp.graph import gated_groups


def test_pruned_model_runs_in_litert_and_tflm_close_to_float(digits, gated_digits_model):
    x, y, x_test, y_test = digits
    model = gated_digits_model
    model.fit(x, y, epochs=8, batch_size=64, verbose=0, callbacks=[DynHPCallback()])
    units = [group.units for group in gated_groups(model)]
    assert units[0] < 64 and units[1] < 48  # really pruned

    stripped = tfdynhp.strip(model)
    float_accuracy = float(
        np.mean(np.argmax(stripped.predict(x_test, verbose=0), axis=-1) == y_test)
    )
    tflite = converters.to_int8_tflite(model, x[:300])
    info = converters.read_model_info(tflite)
    assert "GATHER" in info.ops and "FULLY_CONNECTED" in info.ops
    litert = converters.evaluate(tflite, x_test, y_test, runtime="litert")
    tflm = converters.evaluate(tflite, x_test, y_test, runtime="tflm")
    assert abs(litert["accuracy"] - float_accuracy) <= 0.01
    assert abs(tflm["accuracy"] - float_accuracy) <= 0.01
    same_class = np.mean(np.asarray(litert["predictions"]) == np.asarray(tflm["predictions"]))
    assert same_class >= 0.99
