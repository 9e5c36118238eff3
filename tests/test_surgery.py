import keras
import numpy as np
import pytest
from conftest import close_gates, make_mlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfdynhp
from tfdynhp.surgery import apply_keep_masks, gated_layers, unit_groups
from tfdynhp.surgery import variables as variable_utils


def _numpy(v):
    return np.array(keras.ops.convert_to_numpy(v))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=st.integers(2, 12),
    hidden=st.lists(st.integers(2, 10), min_size=1, max_size=3),
    batchnorm=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_removing_closed_gates_keeps_inference_outputs(inputs, hidden, batchnorm, seed):
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    model = tfdynhp.gate(make_mlp(inputs, hidden, 3, batchnorm=batchnorm), seed=seed)
    if batchnorm:  # non-trivial statistics
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                n = layer.gamma.shape[0]
                layer.moving_mean.assign(rng.normal(size=n))
                layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=n))
                layer.gamma.assign(rng.normal(size=n))
    masks = {}
    for layer in gated_layers(model):
        closed = rng.choice(layer.input_units, size=rng.integers(0, layer.input_units), replace=False)
        close_gates(layer, closed)
        masks[layer.name] = layer.test_time_gates() > 0
    x = rng.normal(size=(16, inputs)).astype("float32")
    before = model.predict(x, verbose=0)
    result = apply_keep_masks(model, masks)
    after = model.predict(x, verbose=0)
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert result.units_after == {name: int(mask.sum()) for name, mask in masks.items()}
    for layer in gated_layers(model):
        assert layer.kernel.shape[0] == layer.log_alpha.shape[0] == layer.input_units


def test_groups_follow_units_through_batchnorm_and_dropout():
    model = tfdynhp.gate(make_mlp(5, [4, 3], 2, batchnorm=True, dropout=0.1))
    groups = unit_groups(model)
    assert [(g.producer.name, g.consumer.name) for g in groups] == [
        ("select_features", groups[0].consumer.name),
        (groups[0].consumer.name, groups[1].consumer.name),
        (groups[1].consumer.name, groups[2].consumer.name),
    ]
    assert all(len(g.per_unit) == 1 and len(g.elementwise) == 1 for g in groups[1:])


@pytest.mark.parametrize(
    "optimizer, slot_lists",
    [
        (keras.optimizers.Adam(0.01), ("_momentums", "_velocities")),
        (keras.optimizers.SGD(0.01, momentum=0.9), ("momentums",)),
        (keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
         ("_velocities", "_momentums", "_average_gradients")),
    ],
)
def test_optimizer_slots_after_surgery_equal_old_slots_sliced(optimizer, slot_lists):
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(make_mlp(6, [5], 3), seed=0)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    y = np.arange(32) % 3
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    first, second = gated_layers(model)
    old_vars = list(model.trainable_variables)
    old_slots = {name: [_numpy(s) for s in getattr(model.optimizer, name)] for name in slot_lists}
    old_iterations = int(model.optimizer.iterations.numpy())
    keep_inputs = np.array([1, 0, 1, 1, 0, 1], bool)
    keep_hidden = np.array([0, 1, 1, 0, 1], bool)
    apply_keep_masks(model, {first.name: keep_inputs, second.name: keep_hidden})
    assert model.optimizer.iterations.numpy() == old_iterations
    expected_slicing = {
        "kernel": {0: np.flatnonzero(keep_inputs), 1: np.flatnonzero(keep_hidden)},
        "bias": {0: np.flatnonzero(keep_hidden)},
        "log_alpha": {0: np.flatnonzero(keep_inputs)},
    }
    for name in slot_lists:
        new_slots = getattr(model.optimizer, name)
        for index, (old_var, old_slot) in enumerate(zip(old_vars, old_slots[name])):
            layer_name = old_var.path.split("/")[0]
            axes = {}
            if layer_name == first.name:
                axes = expected_slicing[old_var.name]
            elif layer_name == second.name and old_var.name in ("kernel", "log_alpha"):
                axes = {0: np.flatnonzero(keep_hidden)}
            expected = variable_utils.slice_array(old_slot, axes)
            np.testing.assert_array_equal(_numpy(new_slots[index]), expected)


def test_failed_surgery_leaves_model_and_optimizer_unchanged(monkeypatch, gated_digits_model):
    model = gated_digits_model
    x = np.random.default_rng(1).uniform(size=(64, 64)).astype("float32")
    model.fit(x, np.arange(64) % 10, epochs=1, verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    config = model.get_config()
    optimizer = model.optimizer
    before = model.predict(x, verbose=0)
    masks = {layer.name: np.arange(layer.input_units) % 2 == 0 for layer in gated_layers(model)}
    calls = {"n": 0}
    original = variable_utils.swap_variable

    def failing_swap(layer, old, new):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("injected failure")
        original(layer, old, new)

    monkeypatch.setattr(variable_utils, "swap_variable", failing_swap)
    with pytest.raises(RuntimeError, match="injected"):
        apply_keep_masks(model, masks)
    assert calls["n"] == 4
    assert model.optimizer is optimizer
    assert model.get_config() == config
    for old, new in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
    monkeypatch.undo()
    model.fit(x, np.arange(64) % 10, epochs=1, verbose=0)  # still trains


@pytest.mark.parametrize(
    "masks, match",
    [
        ({"nope": np.ones(3, bool)}, "not gated layers"),
        ("first_wrong_shape", "boolean array of shape"),
        ("first_all_false", "removes every unit"),
    ],
)
def test_bad_keep_masks_are_rejected(masks, match):
    model = tfdynhp.gate(make_mlp(4, [3], 2))
    first = gated_layers(model)[0]
    if masks == "first_wrong_shape":
        masks = {first.name: np.ones(3, bool)}
    elif masks == "first_all_false":
        masks = {first.name: np.zeros(4, bool)}
    with pytest.raises(ValueError, match=match):
        apply_keep_masks(model, masks)
    assert first.input_units == 4


def test_learning_rate_schedule_and_reduced_rate_survive_the_rebuild():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    y = np.arange(32) % 3
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
    for optimizer in (keras.optimizers.Adam(schedule), keras.optimizers.SGD(0.05)):
        model = tfdynhp.gate(make_mlp(6, [5], 3), seed=0)
        model.compile(optimizer, "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        if isinstance(model.optimizer._learning_rate, keras.Variable):
            model.optimizer.learning_rate = 0.0125  # as ReduceLROnPlateau would
        rate = float(model.optimizer.learning_rate)
        first = gated_layers(model)[0]
        apply_keep_masks(model, {first.name: np.arange(6) != 2})
        assert model.optimizer is not optimizer
        assert float(model.optimizer.learning_rate) == pytest.approx(rate)
        assert int(model.optimizer.iterations.numpy()) == 4


def test_interrupt_during_surgery_leaves_a_loadable_model(monkeypatch, tmp_path):
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(make_mlp(6, [5], 3), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    model.fit(x, np.arange(16) % 3, epochs=1, verbose=0)
    before = model.predict(x, verbose=0)
    original = variable_utils.swap_variable

    def interrupted_swap(layer, old, new):
        original(layer, old, new)
        raise KeyboardInterrupt

    monkeypatch.setattr(variable_utils, "swap_variable", interrupted_swap)
    first = gated_layers(model)[0]
    with pytest.raises(KeyboardInterrupt):
        apply_keep_masks(model, {first.name: np.arange(6) != 0})
    model.save(tmp_path / "after_interrupt.keras")
    reloaded = keras.models.load_model(tmp_path / "after_interrupt.keras")
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), before)
