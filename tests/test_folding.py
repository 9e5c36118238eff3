"""Frozen gates folded into the layers reading their channels, in place (the frozen phase at
plain speed): the same function, closed channels removed, Adam's state in the new
parameters, training continued, strip() unchanged."""

import keras
import numpy as np
import pytest
from conftest import close_gates, gates_of, randomize_batchnorm
from keras import layers
from test_gating import _cnn, _residual

import tfdynhp
from tfdynhp.model import fold_frozen_gates
from tfdynhp.surgery.optimizer import rescale_gradient_slots


def _mlp(hidden=5):
    inputs = keras.Input((6,))
    x = layers.Dense(hidden, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, layers.Dense(3, activation="softmax", name="out")(x))


def _partial(gate, rng):
    """Test-time gates strictly between 0 and 1 on every channel."""
    gate.log_alpha.assign(rng.uniform(-1.5, 1.5, gate.units).astype("float32"))


def _frozen_model(build, x, y, rng, closed):
    model = tfdynhp.gate(build(), drop_rate_init=0.3, seed=0)
    if any(isinstance(layer, layers.BatchNormalization) for layer in model.layers):
        randomize_batchnorm(model, rng)
    gates = gates_of(model)
    assert set(closed) <= set(gates)
    for name, gate in gates.items():
        _partial(gate, rng)
        close_gates(gate, closed.get(name, []))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # Adam's state is not zero
    for gate in model.gate_layers:
        gate.freeze()
    return model


@pytest.mark.parametrize("build, shape, closed", [
    (_mlp, (6,), {"select_features": [0, 3], "hidden": [1]}),
    (_cnn, (12, 12, 1), {"conv1": [1, 4], "conv2": [0]}),
    (_residual, (8, 8, 3), {"stem": [2]}),
])
def test_folding_keeps_the_function_and_removes_closed_channels(build, shape, closed):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, *shape)).astype("float32")
    y = rng.integers(0, 2, 16)
    model = _frozen_model(build, x, y, rng, closed)
    trained_before = model(x, training=True)  # (BatchNormalization: batch statistics)
    before = model.predict(x, verbose=0)
    stripped_before = tfdynhp.strip(model).predict(x, verbose=0)
    units_before = {name: gate.units for name, gate in gates_of(model).items()}
    folded = fold_frozen_gates(model)
    assert sorted(folded) == sorted(gate.name for gate in model.gate_layers)
    assert {name: gates_of(model)[name].units for name in units_before} == {
        name: units - len(closed.get(name, [])) for name, units in units_before.items()}
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-5)
    np.testing.assert_allclose(tfdynhp.strip(model).predict(x, verbose=0), stripped_before,
                               atol=1e-5)
    # Training mode too: the gates are identities now, the weights hold their values.
    np.testing.assert_allclose(model(x, training=True), trained_before, atol=1e-5)
    assert all(gate.folded for gate in model.gate_layers)
    assert fold_frozen_gates(model) == []  # nothing left to fold
    model.make_train_function(force=True)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_adam_state_follows_the_folded_weights():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 3, 32)
    model = _frozen_model(_mlp, x, y, rng, {})
    hidden_gate = gates_of(model)["hidden"]
    z = hidden_gate.test_time_gates()
    out = model.get_layer("out")
    optimizer = model.optimizer
    index = next(i for i, v in enumerate(optimizer._trainable_variables) if v is out.kernel)
    m, v = (np.array(keras.ops.convert_to_numpy(s[index]))
            for s in (optimizer._momentums, optimizer._velocities))
    kernel = keras.ops.convert_to_numpy(out.kernel).copy()
    fold_frozen_gates(model)
    optimizer = model.optimizer
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out.kernel), kernel * z[:, None],
                               rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(optimizer._momentums[index]),
                               m / z[:, None], rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(optimizer._velocities[index]),
                               v / z[:, None] ** 2, rtol=1e-5)


def test_slots_of_other_optimizers_are_left_alone():
    variable = keras.Variable(np.ones((2, 2), "float32"))
    sgd = keras.optimizers.SGD(0.1, momentum=0.9)
    sgd.build([variable])
    assert rescale_gradient_slots(sgd, variable, 2.0) is False
    adam = keras.optimizers.Adam()
    adam.build([variable])
    adam._momentums[0].assign(np.full((2, 2), 3.0, "float32"))
    assert rescale_gradient_slots(adam, variable, np.array([[2.0], [1.0]], "float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(adam._momentums[0]),
                                  [[6.0, 6.0], [3.0, 3.0]])


def test_a_gate_whose_kept_channel_is_closed_stays_frozen_unfolded():
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.integers(0, 3, 16)
    model = _frozen_model(_mlp, x, y, rng, {"hidden": [0, 1, 2, 3, 4]})
    before = model.predict(x, verbose=0)
    folded = fold_frozen_gates(model)
    hidden_gate = gates_of(model)["hidden"]
    assert hidden_gate.units == 1 and not hidden_gate.folded and hidden_gate.frozen
    assert hidden_gate.name not in folded and len(folded) == 1
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-5)


def test_closed_channels_kept_fold_to_zero_and_train_again():
    """`remove_closed=False` (a target's frozen phase): the units stay, the function too, the
    closed channel's reading weights are zero with fresh Adam state, and training moves them."""
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 3, 32)
    model = _frozen_model(_mlp, x, y, rng, {"hidden": [1, 3]})
    before = model.predict(x, verbose=0)
    units = {name: gate.units for name, gate in gates_of(model).items()}
    out = model.get_layer("out")
    assert sorted(fold_frozen_gates(model, remove_closed=False)) == sorted(
        gate.name for gate in model.gate_layers)
    assert {name: gate.units for name, gate in gates_of(model).items()} == units
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-5)
    kernel = keras.ops.convert_to_numpy(out.kernel)
    assert np.all(kernel[[1, 3]] == 0.0) and np.all(kernel[[0, 2, 4]] != 0.0)
    optimizer = model.optimizer
    index = next(i for i, v in enumerate(optimizer._trainable_variables) if v is out.kernel)
    for slots in (optimizer._momentums, optimizer._velocities):
        assert np.all(keras.ops.convert_to_numpy(slots[index])[[1, 3]] == 0.0)
    model.make_train_function(force=True)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.any(keras.ops.convert_to_numpy(out.kernel)[[1, 3]] != 0.0)
