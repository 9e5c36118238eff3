"""Complexity-driven PA / FA / MA pruning (Zawish et al.): shares by hand on a tiny CNN, and a
pruned model trained directly."""

import keras
import numpy as np
import pytest
from keras import layers

from tfdynhp.methods import complexity_pruning as cp


def _cnn(seed=0):
    init = keras.initializers.GlorotUniform(seed)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=init,
                      name="c1")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", kernel_initializer=init,
                      name="c2")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu", kernel_initializer=init, name="d")(x)
    return keras.Model(inputs, layers.Dense(2, kernel_initializer=init, name="head")(x))


# Per unit, by hand (own weights + bias + the reader's weights; 8x8 then 4x4 maps):
#   c1: params 9+1 + 9*8 = 82,        MACs 64*9 + 16*9*8 = 1728, activations 64 + 16 = 80
#   c2: params 9*4+1 + 16*16 = 293,   MACs 16*36 + 16*16 = 832,  activations 16 + 16 = 32
#   d:  params 128+1 + 2 = 131,       MACs 128 + 2 = 130,        activations 1
HAND = {"pa": {"c1": 4 * 82, "c2": 8 * 293, "d": 16 * 131},
        "fa": {"c1": 4 * 1728, "c2": 8 * 832, "d": 16 * 130},
        "ma": {"c1": 4 * 80, "c2": 8 * 32, "d": 16 * 1}}


@pytest.mark.parametrize("mode", ["pa", "fa", "ma"])
def test_group_costs_by_hand(mode):
    assert cp.group_costs(_cnn(), mode) == pytest.approx(HAND[mode])


def test_plan_selects_above_average_groups_per_mode():
    pa = cp.plan(cp.shares(HAND["pa"]), 0.5)
    assert pa == pytest.approx({"c1": 0.0, "c2": 0.5, "d": 0.5 * 2096 / 2344})
    fa = cp.plan(cp.shares(HAND["fa"]), 0.5)
    assert fa == pytest.approx({"c1": 0.5, "c2": 0.5 * 6656 / 6912, "d": 0.0})
    ma = cp.plan(cp.shares(HAND["ma"]), 0.5)
    assert ma == pytest.approx({"c1": 0.5, "c2": 0.5 * 256 / 320, "d": 0.0})


def test_bad_mode_and_amount():
    with pytest.raises(ValueError, match="'pa' \\(parameters\\)"):
        cp.complexity_prune(_cnn(), "xa")
    with pytest.raises(ValueError, match="amount"):
        cp.plan({"a": 1.0}, 1.5)


@pytest.mark.parametrize("mode, units", [("pa", {"c1": 4, "c2": 4, "d": 9}),
                                         ("fa", {"c1": 2, "c2": 5, "d": 16})])
def test_complexity_pruned_model_trains_directly(digits, mode, units):
    x, y = digits[0].reshape(-1, 8, 8, 1), digits[1]
    keras.utils.set_random_seed(0)
    model = _cnn()
    fractions, report = cp.complexity_prune(model, mode, amount=0.5)
    assert report.units_after == units
    assert report.units_after == {name: int(n - np.floor(fractions[name] * n + 1e-9))
                                  for name, n in (("c1", 4), ("c2", 8), ("d", 16))}
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, (y > 4).astype("int32"), epochs=2, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
