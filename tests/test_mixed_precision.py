"""Mixed precision end to end: a model built under `mixed_float16` is gated, pruned to a
target in one fit (loss scaling undone for the gates), stripped, and exported to int8 after
being rebuilt in float32 (`tfdynhp.model.float32_model`)."""

import keras
import numpy as np
import pytest
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp import converters
from tfdynhp.model import float32_model
from tfdynhp.model.gating import computes_in_float32


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy(previous)


def _cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(12, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    # The output in float32, as Keras' mixed-precision guide has it.
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", dtype="float32")(x))


def _data(n=192):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 12, 12, 1)).astype("float32") * 0.5
    x[:, :4, :4, 0] += (y == 0)[:, None, None] * 2.0  # a class is a bright corner
    x[:, -4:, -4:, 0] += (y == 1)[:, None, None] * 2.0
    return x, y.astype("int32")


@pytest.mark.slow
def test_mixed_float16_model_is_pruned_to_a_target_and_exported_in_float32(mixed_float16):
    x, y = _data()
    base = _cnn()
    assert base.get_layer("conv").compute_dtype == "float16"
    model = tfdynhp.gate(base, seed=0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    log_alpha = [g.log_alpha.numpy().copy() for g in model.gate_layers]
    callback = DynHPCallback(target="50% params")
    history = model.fit(x, y, batch_size=32, epochs=4, callbacks=[callback], verbose=0).history
    start = tfdynhp.model_costs(base).params
    assert history["dynhp/target_met"] == [True]
    assert history["dynhp/params"][-1] <= 0.5 * start
    assert np.all(np.isfinite(history["loss"])) and history["accuracy"][-1] > 0.6
    # The gates learned (in float32 variables, the loss scale undone).
    moved = [not np.allclose(g.log_alpha.numpy()[:3], a[:3]) for g, a in
             zip(model.gate_layers, log_alpha)]
    assert any(moved)

    stripped = tfdynhp.strip(model)
    assert not computes_in_float32(stripped)
    np.testing.assert_allclose(stripped.predict(x[:32], verbose=0),
                               model.predict(x[:32], verbose=0), atol=2e-3)
    exported = float32_model(stripped)
    assert computes_in_float32(exported) and exported.count_params() == stripped.count_params()
    assert float32_model(exported) is exported
    np.testing.assert_allclose(exported.predict(x[:32], verbose=0),
                               stripped.predict(x[:32], verbose=0), atol=5e-3)
    # The gated model converts directly: stripped, then rebuilt in float32.
    tflite = converters.to_int8_tflite(model, x[:100])
    outputs, _ = converters.run_tflite(tflite, x[:64])
    agreement = np.mean(np.argmax(outputs, -1)
                        == np.argmax(exported.predict(x[:64], verbose=0), -1))
    assert agreement >= 0.9
