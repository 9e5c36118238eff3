import keras
import numpy as np
import pytest
from conftest import close_gates, gates_of, make_mlp, randomize_batchnorm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras import layers

import tfdynhp
from tfdynhp.graph import analyze
from tfdynhp.math.selection import keep_mask
from tfdynhp.surgery import apply_keep_masks, prunable_units
from tfdynhp.surgery import variables as variable_utils


def _numpy(v):
    return np.array(keras.ops.convert_to_numpy(v))


def _random_cnn(blocks, width, head, seed):
    """A small channels-last CNN from a list of block kinds."""
    init = keras.initializers.GlorotUniform(seed)
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(width, 3, padding="same", kernel_initializer=init)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    channels = width
    for i, kind in enumerate(blocks):
        if kind == "conv":
            channels = width + i
            x = layers.Conv2D(channels, 3, padding="same", activation="relu",
                              kernel_initializer=init)(x)
        elif kind == "residual":
            y = layers.Conv2D(width, 1, kernel_initializer=init)(x)
            y = layers.BatchNormalization()(y)
            y = layers.ReLU()(y)
            y = layers.Conv2D(channels, 3, padding="same", kernel_initializer=init)(y)
            x = layers.ReLU()(layers.Add()([x, y]))
        elif kind == "concat":
            a = layers.Conv2D(2, 1, kernel_initializer=init)(x)
            b = layers.Conv2D(3, 3, padding="same", kernel_initializer=init)(x)
            x = layers.Concatenate()([a, layers.BatchNormalization()(b)])
            channels = 5
        elif kind == "depthwise":
            x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=1 + i % 2,
                                       depthwise_initializer=init)(x)
            x = layers.BatchNormalization()(x)
            channels *= 1 + i % 2
        elif kind == "separable":
            channels = width
            x = layers.SeparableConv2D(channels, 3, padding="same", activation="relu",
                                       depthwise_initializer=init, pointwise_initializer=init)(x)
        elif kind == "pool":
            x = layers.MaxPooling2D()(x)
    if head == "flatten":
        x = layers.Flatten()(x)
    else:
        x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(5, activation="relu", kernel_initializer=init)(x)
    return keras.Model(inputs, layers.Dense(3, kernel_initializer=init)(x))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    blocks=st.lists(st.sampled_from(["conv", "residual", "concat", "depthwise", "separable",
                                     "pool"]), min_size=1, max_size=4),
    width=st.integers(2, 5),
    head=st.sampled_from(["flatten", "gap"]),
    seed=st.integers(0, 1000),
)
def test_removing_closed_channels_of_random_cnns_keeps_outputs(blocks, width, head, seed):
    rng = np.random.default_rng(seed)
    model = tfdynhp.gate(_random_cnn(blocks, width, head, seed), drop_rate_init=0.3, seed=seed)
    randomize_batchnorm(model, rng)
    masks = {}
    for group in analyze(model).groups:
        if group.gate is None:
            continue
        gate = group.gate
        closed = rng.choice(gate.units, size=rng.integers(0, gate.units), replace=False)
        close_gates(gate, closed)
        masks[group.name] = keep_mask(gate.test_time_gates(), 1e-30, 1, group.segments)
        close_gates(gate, np.flatnonzero(~masks[group.name]))
    x = rng.normal(size=(4, 8, 8, 2)).astype("float32")
    before = model.predict(x, verbose=0)
    result = apply_keep_masks(model, masks)
    after = model.predict(x, verbose=0)
    np.testing.assert_allclose(after, before, atol=1e-5)
    for name, mask in masks.items():
        assert result.units_after[name] == mask.sum()
        assert gates_of(model)[name].units == mask.sum()
    stripped = tfdynhp.strip(model)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), before, atol=1e-5)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=st.integers(2, 12), hidden=st.lists(st.integers(2, 10), min_size=1, max_size=3),
       batchnorm=st.booleans(), seed=st.integers(0, 1000))
def test_removing_closed_gates_of_mlps_keeps_outputs(inputs, hidden, batchnorm, seed):
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    model = tfdynhp.gate(make_mlp(inputs, hidden, 3, batchnorm=batchnorm), seed=seed)
    randomize_batchnorm(model, rng)
    masks = {}
    for name, gate in gates_of(model).items():
        close_gates(gate, rng.choice(gate.units, size=rng.integers(0, gate.units),
                                     replace=False))
        masks[name] = gate.test_time_gates() > 0
    x = rng.normal(size=(16, inputs)).astype("float32")
    before = model.predict(x, verbose=0)
    apply_keep_masks(model, masks)
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-5)


def test_surgery_on_a_plain_model_removes_units_whose_readers_ignore_them():
    keras.utils.set_random_seed(0)
    base = _random_cnn(["residual", "concat", "depthwise"], 4, "flatten", 0)
    rng = np.random.default_rng(0)
    randomize_batchnorm(base, rng)
    unit_graph = analyze(base)
    masks = {name: rng.random(units) < 0.6 for name, units in prunable_units(base).items()}
    for mask in masks.values():
        mask[0] = True
    removed = {int(r) for name, mask in masks.items()
               for r in unit_graph.group(name).ids[~mask]}
    # Zero every weight that reads a removed unit: then removing it changes nothing.
    for node in unit_graph.nodes:
        layer = node.operation
        if isinstance(layer, (layers.Dense, layers.Conv2D)):
            roots = unit_graph.roots(unit_graph.labels(node.input_tensors[0]))
            kernel = layer.kernel.numpy()
            kernel[..., np.isin(roots, list(removed)), :] = 0.0
            layer.kernel.assign(kernel)
    x = rng.normal(size=(4, 8, 8, 2)).astype("float32")
    before = base.predict(x, verbose=0)
    apply_keep_masks(base, masks)
    np.testing.assert_allclose(base.predict(x, verbose=0), before, atol=1e-5)
    assert prunable_units(base) == {name: int(mask.sum()) for name, mask in masks.items()}


def test_groups_follow_units_through_batchnorm_and_dropout():
    model = tfdynhp.gate(make_mlp(5, [4, 3], 2, batchnorm=True, dropout=0.1))
    groups = [g for g in analyze(model).groups if g.gate is not None]
    assert [g.units for g in groups] == [5, 4, 3]
    kinds = [sorted(type(layer).__name__ for layer in g.layers) for g in groups[1:]]
    for kind in kinds:
        assert kind == ["Activation", "BatchNormalization", "Dense", "Dense", "Dropout",
                        "HardConcreteGate"]


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
    inputs_group, hidden_group = gates_of(model)
    dense0 = model.get_layer(hidden_group)
    old_vars = list(model.trainable_variables)
    old_slots = {name: [_numpy(s) for s in getattr(model.optimizer, name)] for name in slot_lists}
    old_iterations = int(model.optimizer.iterations.numpy())
    keep_inputs = np.array([1, 0, 1, 1, 0, 1], bool)
    keep_hidden = np.array([0, 1, 1, 0, 1], bool)
    apply_keep_masks(model, {inputs_group: keep_inputs, hidden_group: keep_hidden})
    assert model.optimizer.iterations.numpy() == old_iterations
    inputs_kept, hidden_kept = np.flatnonzero(keep_inputs), np.flatnonzero(keep_hidden)
    expected_slicing = {
        (dense0.name, "kernel"): {0: inputs_kept, 1: hidden_kept},
        (dense0.name, "bias"): {0: hidden_kept},
        (f"{inputs_group}_gate", "log_alpha"): {0: inputs_kept},
        (f"{hidden_group}_gate", "log_alpha"): {0: hidden_kept},
    }
    output_layer = [layer for layer in model.layers if isinstance(layer, layers.Dense)][-1]
    expected_slicing[(output_layer.name, "kernel")] = {0: hidden_kept}
    for name in slot_lists:
        new_slots = getattr(model.optimizer, name)
        for index, (old_var, old_slot) in enumerate(zip(old_vars, old_slots[name])):
            axes = expected_slicing.get((old_var.path.split("/")[0], old_var.name), {})
            expected = variable_utils.slice_array(old_slot, axes)
            np.testing.assert_array_equal(_numpy(new_slots[index]), expected)


def test_reset_slots_zeroes_moments_but_keeps_the_step_and_rate():
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(make_mlp(6, [5], 3), seed=0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    model.fit(x, np.arange(32) % 3, epochs=1, batch_size=8, verbose=0)
    inputs_group = next(iter(gates_of(model)))
    apply_keep_masks(model, {inputs_group: np.arange(6) != 1}, optimizer_slots="reset")
    assert int(model.optimizer.iterations.numpy()) == 4
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    for slot in model.optimizer._momentums + model.optimizer._velocities:
        assert not np.any(_numpy(slot))
    model.fit(x, np.arange(32) % 3, epochs=1, batch_size=8, verbose=0)  # still trains
    assert int(model.optimizer.iterations.numpy()) == 8


def test_failed_surgery_leaves_model_and_optimizer_unchanged(monkeypatch, gated_digits_model):
    model = gated_digits_model
    x = np.random.default_rng(1).uniform(size=(64, 64)).astype("float32")
    model.fit(x, np.arange(64) % 10, epochs=1, verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    config = model.get_config()
    optimizer = model.optimizer
    before = model.predict(x, verbose=0)
    masks = {name: np.arange(units) % 2 == 0 for name, units in prunable_units(model).items()}
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
        ({"nope": np.ones(3, bool)}, "groups the model does not have"),
        ("first_wrong_shape", "boolean array of shape"),
        ("first_all_false", "removes every unit"),
        ("output", "cannot lose units"),
    ],
)
def test_bad_keep_masks_are_rejected(masks, match):
    model = tfdynhp.gate(make_mlp(4, [3], 2))
    first = next(iter(gates_of(model)))
    if masks == "first_wrong_shape":
        masks = {first: np.ones(3, bool)}
    elif masks == "first_all_false":
        masks = {first: np.zeros(4, bool)}
    elif masks == "output":
        output = [layer for layer in model.layers if isinstance(layer, layers.Dense)][-1]
        masks = {output.name: np.array([True, False])}
    with pytest.raises(ValueError, match=match):
        apply_keep_masks(model, masks)
    assert prunable_units(model)[first] == 4


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
        first = next(iter(gates_of(model)))
        apply_keep_masks(model, {first: np.arange(6) != 2})
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
    with pytest.raises(KeyboardInterrupt):
        apply_keep_masks(model, {next(iter(gates_of(model))): np.arange(6) != 0})
    model.save(tmp_path / "after_interrupt.keras")
    reloaded = keras.models.load_model(tmp_path / "after_interrupt.keras")
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), before)


def test_surgery_narrows_a_cnn_that_reloads_from_keras_files(tmp_path):
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(_random_cnn(["residual", "concat", "separable"], 4, "flatten", 0))
    masks = {name: np.arange(units) % 3 != 1 for name, units in prunable_units(model).items()}
    apply_keep_masks(model, masks)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype("float32")
    model.save(tmp_path / "cnn.keras")
    reloaded = keras.models.load_model(tmp_path / "cnn.keras")
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert prunable_units(reloaded) == prunable_units(model)
    model.summary(print_fn=lambda line, **kw: None)
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.output_tensors:
                assert tensor.shape[-1] is not None
