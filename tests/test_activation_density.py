"""`ActivationDensityCallback`: widths follow ceil(density * units) during one real fit."""

import keras
import numpy as np
import pytest
from keras import layers
from tfdynhp.callbacks.activation_density import next_width

import tfdynhp


def test_next_width_is_the_ceiling_of_density_times_units():
    assert next_width(0.5, 10) == 5
    assert next_width(0.51, 10) == 6
    assert next_width(0.0, 10) == 1
    assert next_width(0.0, 10, min_units=3) == 3
    assert next_width(1.0, 7) == 7


def test_bad_arguments():
    with pytest.raises(ValueError, match="needs `data`"):
        tfdynhp.ActivationDensityCallback(None)
    with pytest.raises(ValueError, match="frequency"):
        tfdynhp.ActivationDensityCallback(np.zeros((2, 3)), frequency=0)


def _cnn():
    init = keras.initializers.GlorotUniform(0)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(12, 3, padding="same", activation="relu", kernel_initializer=init,
                      name="c1")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(16, 3, padding="same", kernel_initializer=init, name="c2")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu", kernel_initializer=init, name="fc")(x)
    return keras.Model(inputs, layers.Dense(10, kernel_initializer=init, name="head")(x))


@pytest.mark.slow
def test_widths_follow_activation_density_during_one_fit(digits):
    x, y, x_test, y_test = digits
    x, x_test = x.reshape(-1, 8, 8, 1), x_test.reshape(-1, 8, 8, 1)
    keras.utils.set_random_seed(0)
    model = _cnn()
    model.compile(keras.optimizers.Adam(0.005),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    params = model.count_params()
    callback = tfdynhp.ActivationDensityCallback(x[:300], until_epoch=3)
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0, callbacks=[callback])
    units = {"c1": 12, "c2": 16, "fc": 32}
    for record in callback.history[:3]:
        for name, width in list(units.items()):
            expected = next_width(record[f"ad/density/{name}"], width)
            assert record[f"ad/units/{name}"] == expected
            units[name] = expected
    assert callback.history[3]["ad/units/fc"] == units["fc"]  # resizing stopped
    assert "ad/density/fc" not in callback.history[4]
    assert model.get_layer("fc").units == units["fc"] < 32
    assert model.count_params() < 0.8 * params
    assert history.history["ad/params"][-1] == model.count_params()
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.85


@pytest.mark.parametrize("gated", [False, True])
def test_early_stopping_restoring_weights_is_refused_before_training(digits, gated):
    """Weights EarlyStopping saved before a resize no longer fit the model: refused at the
    start of `fit` (plain and gated models), not a crash after training."""
    from conftest import make_mlp

    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = make_mlp(64, [32], 10)
    if gated:
        model = tfdynhp.gate(model, seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    weights = model.get_weights()
    # The best epoch is the first (mode="max" on a falling loss): its weights predate resizes.
    stop = keras.callbacks.EarlyStopping(monitor="loss", mode="max", patience=5,
                                         restore_best_weights=True)
    callback = tfdynhp.ActivationDensityCallback(x[:200], until_epoch=3)
    with pytest.raises(ValueError, match=r"ActivationDensityCallback.*ModelCheckpoint"):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[stop, callback])
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)  # refused before any step
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=5)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[stop, callback])  # without restoring: fine
    assert callback.history[-1]["ad/params"] < sum(w.size for w in weights)
