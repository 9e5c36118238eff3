"""Operation nodes (`keras.ops` calls in a functional graph) and `Lambda` layers: their channel
roles come from the layer-types registry, `gate()` and `strip()` clone them without a config
round trip, and channels are pruned through them exactly."""

import warnings

import keras
import numpy as np
import pytest
from conftest import close_gates
from keras import layers

import tfdynhp
from tfdynhp.graph import analyze
from tfdynhp.layer_types import registry
from tfdynhp.math.selection import keep_mask
from tfdynhp.surgery import apply_keep_masks


def hard_swish_net():
    """MobileNetV3's blocks in miniature: `x * ReLU6(x + 3) / 6` written with keras.ops (as
    Keras' MobileNetV3 writes it), a squeeze-excite `Multiply`, a residual `x + y`."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization()(x)
    x = x * layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    y = layers.Conv2D(8, 1, name="expand")(x)
    squeeze = layers.GlobalAveragePooling2D(keepdims=True)(y)
    squeeze = layers.Conv2D(4, 1, activation="relu", name="se_reduce")(squeeze)
    squeeze = layers.Conv2D(8, 1, activation="sigmoid", name="se_expand")(squeeze)
    y = layers.Multiply()([y, squeeze])
    x = keras.ops.relu(x + y)
    outputs = layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_elementwise_operations_carry_channels_and_two_tensors_merge():
    model = hard_swish_net()
    unit_graph = analyze(model)
    roles = {type(n.operation).__name__ + ":" + n.operation.name: unit_graph.roles[id(n)].name
             for n in unit_graph.nodes if registry.is_operation(n.operation)}
    # x + 3.0 and the products with a tensor or a scalar pass channels; x + y merges.
    assert sorted(set(roles.values())) == ["merge", "pass"]
    assert sum(r == "merge" for r in roles.values()) == 2  # x * relu6(...) and x + y
    # The residual x + y couples the first convolution with the second: one group.
    residual = unit_graph.group("stem")
    assert residual.prunable and "expand" not in {g.name for g in unit_graph.groups}
    assert any(registry.is_operation(layer) for layer in residual.layers)


def test_a_model_with_keras_ops_is_gated_pruned_and_stripped_exactly():
    base = hard_swish_net()
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    model = tfdynhp.gate(base, drop_rate_init=0.2, seed=0)
    gated = {g.name: g for g in analyze(model).groups if g.gate is not None}
    assert set(gated) == {"stem", "se_reduce"}
    masks = {}
    for name, group in gated.items():
        close_gates(group.gate, [1, 2])
        masks[name] = keep_mask(group.gate.test_time_gates(), 1e-30, 1, group.segments)
    before = model.predict(x, verbose=0)
    predicted = tfdynhp.model_costs(model, masks)
    apply_keep_masks(model, masks)
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-5)
    after = tfdynhp.model_costs(model)
    assert (predicted.params, predicted.macs, predicted.ops) == (after.params, after.macs,
                                                                 after.ops)
    stripped = tfdynhp.strip(model)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), before, atol=1e-5)
    # The stripped model still computes `x + 3.0` with operation nodes, not layers.
    assert any(registry.is_operation(n.operation) for n in analyze(stripped).nodes)


def test_operations_are_counted_one_op_per_value():
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, keras.ops.relu6(inputs + 3.0) * (1.0 / 6.0))
    costs = tfdynhp.layer_costs(model)
    assert [c.type for c in costs] == ["Add", "Relu6", "Multiply"]
    assert all(c.supported and c.ops == 32 and c.params == 0 for c in costs)


def test_a_per_channel_constant_pins_its_channels_with_the_reason():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    h = layers.Dense(4, name="first")(inputs)
    h = h * np.array([1.0, 2.0, 3.0, 4.0], "float32")
    h = layers.Dense(5, name="hidden")(h)
    model = keras.Model(inputs, layers.Dense(2, name="out")(h))
    group = analyze(model).group("first")
    assert group.pinned and "one value per channel" in group.pinned
    assert analyze(model).group("hidden").prunable


def test_an_operation_without_an_entry_pins_naming_it():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 3))
    h = layers.Dense(5, name="first")(inputs)
    h = keras.ops.flip(h, axis=-1)
    h = layers.Dense(6, name="hidden")(layers.Flatten()(h))
    model = keras.Model(inputs, layers.Dense(2)(h))
    group = analyze(model).group("first")
    assert "keras.ops operation Flip" in group.pinned
    with pytest.warns(UserWarning, match=r"keras.ops operation Flip"):
        tfdynhp.gate(model)


def test_a_lambda_layer_is_gated_and_stripped_without_its_config_and_pins_its_channels():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10,))
    h = layers.Dense(8, activation="relu", name="first")(inputs)
    h = layers.Lambda(lambda t: t * 2.0, name="double")(h)
    h = layers.Dense(6, activation="relu", name="second")(h)
    model = keras.Model(inputs, layers.Dense(3)(h))
    x = np.random.default_rng(0).normal(size=(5, 10)).astype("float32")
    with pytest.warns(UserWarning, match=r"'double' \(a Lambda layer"):
        gated = tfdynhp.gate(model, seed=0)
    groups = {g.name: g for g in analyze(gated).groups}
    assert groups["first"].pinned and groups["second"].gate is not None
    np.testing.assert_allclose(gated.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    stripped = tfdynhp.strip(gated)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    assert isinstance(stripped.get_layer("double"), layers.Lambda)


def test_a_layer_whose_config_does_not_round_trip_is_named():
    class NoConfig(keras.layers.Layer):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def call(self, x):
            return x * self.factor

    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2)(NoConfig(3.0)(layers.Dense(4)(inputs))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"(?s)Cannot clone layer 'no_config' \(NoConfig\).*"
                                             r"register a clone"):
            tfdynhp.gate(model)


def test_the_command_line_on_a_model_file_with_a_lambda_says_why_and_the_fix(tmp_path, capsys):
    from tfdynhp import cli

    inputs = keras.Input((64,))
    h = layers.Lambda(lambda t: t * 2.0, name="double")(layers.Dense(8, name="first")(inputs))
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, layers.Dense(10, activation="softmax")(h)).save(path)
    for argv in (["train", "--model", path, "--dataset", "digits", "--epochs", "1",
                  "--out", str(tmp_path / "run"), "--quiet"],
                 ["export", path, "--to", "pi", "--out", str(tmp_path / "export")]):
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert "Lambda layer" in err and "keras.ops calls" in err and "safe_mode=False" in err
