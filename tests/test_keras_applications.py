"""Models as Keras builds them (`keras.applications`, `weights=None`): gated, pruned to a target
in one short fit, stripped exactly, exported to int8 and reloaded. MobileNetV3Small here (its
hard-swish is made of keras.ops nodes); every family is in `bench/keras_applications.py`
(results in the README)."""

import keras
import numpy as np
import pytest
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp import converters
from tfdynhp.graph import analyze
from tfdynhp.layer_types import registry


def _images(n, rescales):
    """Seeded 32x32x3 images of 4 classes: a bright quadrant per class, plus noise."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, n).astype("int32")
    x = rng.uniform(0.0, 0.4, size=(n, 32, 32, 3)).astype("float32")
    for label in range(4):
        rows, cols = divmod(label, 2)
        x[y == label, rows * 16:(rows + 1) * 16, cols * 16:(cols + 1) * 16, :] += 0.6
    return (x * 255.0 if rescales else x * 2.0 - 1.0), y


@pytest.mark.slow
@pytest.mark.parametrize("family, kwargs, rescales", [
    # hard-swish written with keras.ops: `x + 3.0`, `* (1/6)`. One family only (~7 min on 2
    # cores at load 20): the others are in bench/keras_applications.py.
    ("MobileNetV3Small", {}, True),
])
def test_a_keras_application_is_gated_pruned_stripped_exported_and_reloaded(
        family, kwargs, rescales, tmp_path):
    x, y = _images(96, rescales)
    keras.utils.set_random_seed(0)
    base = getattr(keras.applications, family)(input_shape=(32, 32, 3), weights=None,
                                               classes=4, **kwargs)
    model = tfdynhp.gate(base, seed=0)
    gated = [g for g in analyze(model).groups if g.gate is not None]
    assert len(gated) >= 10
    if family == "MobileNetV3Small":  # channels are pruned through the keras.ops nodes
        assert any(registry.is_operation(layer) for g in gated for layer in g.layers)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    callback = DynHPCallback(target="60% params", target_epoch=1)
    history = model.fit(x, y, batch_size=48, epochs=2, callbacks=[callback], verbose=0).history
    start = tfdynhp.model_costs(base).params
    assert history["dynhp/target_met"] == [True]
    assert history["dynhp/params"][-1] <= 0.6 * start

    stripped = tfdynhp.strip(model)
    expected = model.predict(x[:32], verbose=0)
    np.testing.assert_allclose(stripped.predict(x[:32], verbose=0), expected, atol=1e-4)
    assert stripped.count_params() == tfdynhp.model_costs(stripped).params

    tflite = converters.to_int8_tflite(stripped, x[:64])
    outputs, _ = converters.run_tflite(tflite, x[:32])
    assert outputs.shape == (32, 4)

    path = tmp_path / f"{family}.keras"
    stripped.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x[:32], verbose=0), expected, atol=1e-4)
