import warnings

import keras
import numpy as np
import pytest
from conftest import close_gates, gates_of, make_mlp, randomize_batchnorm
from keras import layers

import tfdynhp
from tfdynhp.graph import analyze
from tfdynhp.surgery import apply_keep_masks


def test_gate_copies_weights_and_computes_the_same_outputs_with_its_defaults():
    keras.utils.set_random_seed(0)
    base = make_mlp(7, [6, 5], 3, batchnorm=True, dropout=0.2)
    randomize_batchnorm(base, np.random.default_rng(0))
    x = np.random.default_rng(0).normal(size=(10, 7)).astype("float32")
    model = tfdynhp.gate(base, l0_lambda=0.3, dataset_size=100, seed=3)
    assert isinstance(model, tfdynhp.GatedModel)
    assert isinstance(model.layers[1], tfdynhp.SelectFeatures)
    gates = gates_of(model)
    assert list(gates.values()) == model.gate_layers and len(gates) == 3
    for gate in gates.values():
        assert gate.l0_lambda == 0.3 and gate.dataset_size == 100
    dense = [layer for layer in base.layers if isinstance(layer, layers.Dense)]
    gated_dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    for original, copy in zip(dense, gated_dense):
        np.testing.assert_array_equal(original.get_weights()[0], copy.get_weights()[0])
    # Exactly the same outputs: test-time gates are 1 with drop_rate_init=0.05.
    np.testing.assert_array_equal(model.predict(x, verbose=0), base.predict(x, verbose=0))


def test_gate_keeps_the_original_input_shape_with_flatten():
    base = keras.Sequential([keras.Input((4, 4)), layers.Flatten(), layers.Dense(3)])
    model = tfdynhp.gate(base)
    assert model.input_shape == (None, 4, 4)
    assert [g.units for g in model.gate_layers if g.built] == [16]
    assert model.predict(np.ones((2, 4, 4)), verbose=0).shape == (2, 3)


def _cnn():
    inputs = keras.Input((12, 12, 1))
    x = layers.Conv2D(6, 3, name="conv1")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(5, 3, activation="relu", name="conv2")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(8, activation="relu", name="hidden")(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax", name="out")(x))


def test_gates_go_on_the_inputs_of_conv_and_dense_layers():
    model = tfdynhp.gate(_cnn(), seed=0)
    gates = gates_of(model)
    assert {name: gate.units for name, gate in gates.items()} == {
        "conv1": 6, "conv2": 5, "hidden": 8
    }
    # conv1's channels are gated after BatchNormalization, ReLU and pooling, in front of conv2;
    # conv2's in front of the Flatten (one gate per channel, not per flattened feature).
    assert model.get_layer("conv2").input._keras_history.operation is gates["conv1"]
    flatten = next(layer for layer in model.layers if isinstance(layer, layers.Flatten))
    assert flatten.input._keras_history.operation is gates["conv2"]
    assert not any(isinstance(layer, tfdynhp.SelectFeatures) for layer in model.layers)


def _residual():
    inputs = keras.Input((8, 8, 3))
    stem = layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    x = layers.ReLU()(stem)
    for i in range(2):
        y = layers.Conv2D(6, 3, padding="same", activation="relu", name=f"a{i}")(x)
        y = layers.Conv2D(4, 3, padding="same", name=f"b{i}")(y)
        x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def test_a_residual_chain_is_one_group_with_one_gate_at_every_reader():
    model = tfdynhp.gate(_residual(), seed=0)
    unit_graph = analyze(model)
    chain = unit_graph.group("stem")
    assert chain.units == 4 and chain.gate is not None
    assert {"stem", "b0", "b1"} <= {layer.name for layer in chain.layers}
    # a0, a1 and the output Dense read the chain: the shared gate is called three times.
    assert len(chain.gate._inbound_nodes) == 3
    assert {g.name for g in unit_graph.groups if g.gate is not None} == {"stem", "a0", "a1"}


def test_concatenated_groups_are_gated_before_the_concatenate():
    inputs = keras.Input((6, 6, 2))
    a = layers.Conv2D(3, 3, name="a")(inputs)
    b = layers.Conv2D(4, 3, name="b")(inputs)
    x = layers.Concatenate()([a, b])
    x = layers.GlobalMaxPooling2D()(x)
    model = tfdynhp.gate(keras.Model(inputs, layers.Dense(2)(x)))
    gates = gates_of(model)
    assert {name: gate.units for name, gate in gates.items()} == {"a": 3, "b": 4}
    concat = next(layer for layer in model.layers if isinstance(layer, layers.Concatenate))
    assert [t._keras_history.operation for t in concat.input] == [gates["a"], gates["b"]]


def test_channels_behind_layers_surgery_cannot_follow_are_left_alone_with_a_warning():
    inputs = keras.Input((10,))
    x = layers.Dense(8, name="before_norm")(inputs)
    x = layers.LayerNormalization(name="norm")(x)
    x = layers.Dense(6, activation="relu", name="after_norm")(x)
    base = keras.Model(inputs, layers.Dense(2)(x))
    with pytest.warns(UserWarning, match="'norm' \\(LayerNormalization mixes the channels"):
        model = tfdynhp.gate(base)
    assert set(gates_of(model)) == {"select_features", "after_norm"}
    assert "norm" in analyze(model).group("before_norm").pinned


@pytest.mark.parametrize(
    "make, layer",
    [
        (lambda x: layers.Conv2D(4, 3, groups=2, name="grouped")(x), "grouped"),
        (lambda x: layers.PReLU(name="prelu")(x), "prelu"),
        (lambda x: layers.Permute((2, 1, 3), name="permute")(x), "permute"),
    ],
)
def test_unsupported_layers_pin_their_channels(make, layer):
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(4, 3, name="first")(inputs)
    x = make(x)
    x = layers.Conv2D(3, 3, name="last")(x)
    base = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    with pytest.warns(UserWarning, match=f"'{layer}'"):
        model = tfdynhp.gate(base)
    assert "first" not in gates_of(model)
    assert "last" in gates_of(model)


def _shared_layer_model():
    shared = layers.Dense(5, name="shared")
    inputs = keras.Input((5,))
    x = layers.Dense(5, name="first")(inputs)
    return keras.Model(inputs, layers.Dense(2)(shared(shared(x))))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: keras.Sequential([keras.Input((3,)), layers.LayerNormalization()]),
         "no channels tfdynhp can prune"),
        (lambda: tfdynhp.gate(make_mlp(3, [2], 2)), "already gated"),
        (lambda: keras.Sequential([layers.Dense(2)]), "is not built"),
    ],
)
def test_gate_rejects_models_it_cannot_prune_naming_the_problem(build, match):
    with pytest.raises(ValueError, match=match):
        tfdynhp.gate(build())


def test_shared_layers_are_not_pruned_and_say_so():
    with pytest.warns(UserWarning, match="shared layer"):
        model = tfdynhp.gate(_shared_layer_model())
    assert set(gates_of(model)) == {"select_features"}


def test_gate_rejects_unknown_options():
    with pytest.raises(TypeError, match="Unknown gate option"):
        tfdynhp.gate(make_mlp(3, [2], 2), l0_lamda=0.1)
    with pytest.raises(ValueError, match="resource"):
        tfdynhp.gate(make_mlp(3, [2], 2), penalty="watts")


def test_strip_matches_gated_inference_and_removes_closed_units():
    keras.utils.set_random_seed(1)
    model = tfdynhp.gate(make_mlp(6, [5, 4], 3, batchnorm=True), drop_rate_init=0.3, seed=1)
    inputs_gate, hidden_gate, _ = gates_of(model).values()
    close_gates(inputs_gate, [0, 3])
    close_gates(hidden_gate, [1])
    x = np.random.default_rng(2).normal(size=(20, 6)).astype("float32")
    stripped = tfdynhp.strip(model)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    assert not tfdynhp.is_gated_model(stripped)
    assert stripped.layers[1].indices == [1, 2, 4, 5]
    dense = [layer for layer in stripped.layers if isinstance(layer, layers.Dense)]
    assert [d.kernel.shape[0] for d in dense] == [4, 4, 4]
    assert inputs_gate.units == 6  # the gated model itself is untouched
    with pytest.raises(ValueError, match="no gated layer"):
        tfdynhp.strip(stripped)


def test_strip_folds_gates_of_a_cnn_exactly():
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    model = tfdynhp.gate(_cnn(), drop_rate_init=0.4, seed=2)
    randomize_batchnorm(model, rng)
    gates = gates_of(model)
    close_gates(gates["conv1"], [1, 4])
    close_gates(gates["conv2"], [0])
    x = rng.normal(size=(6, 12, 12, 1)).astype("float32")
    stripped = tfdynhp.strip(model)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    assert stripped.get_layer("conv1").filters == 4
    assert stripped.get_layer("conv2").filters == 4
    assert stripped.get_layer("hidden").kernel.shape[0] == 3 * 3 * 4


def test_strip_after_surgery_on_a_residual_net():
    keras.utils.set_random_seed(3)
    model = tfdynhp.gate(_residual(), drop_rate_init=0.3, seed=3)
    gates = gates_of(model)
    close_gates(gates["stem"], [2])
    apply_keep_masks(model, {"a0": np.array([1, 0, 1, 1, 0, 1], bool)})
    x = np.random.default_rng(3).normal(size=(4, 8, 8, 3)).astype("float32")
    stripped = tfdynhp.strip(model)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    assert [stripped.get_layer(n).filters for n in ("stem", "a0", "b0", "b1")] == [3, 4, 3, 3]


def _regularization_loss(model, x):
    model(x)  # Keras records activity-regularization losses of the last call
    return float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_activity_regularizer_stays_after_the_activation(kind, tmp_path):
    """gate() splits a layer's activation into its own layer; the activity regularizer must go
    with it, so the regularization loss on the same input is the same."""
    keras.utils.set_random_seed(0)
    regularizer = keras.regularizers.L1L2(l1=0.1, l2=0.05)
    if kind == "dense":
        inputs = keras.Input((6,))
        x = layers.Dense(8, activation="relu", activity_regularizer=regularizer,
                         name="hidden")(inputs)
        x_data = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    else:
        inputs = keras.Input((6, 6, 2))
        x = layers.Conv2D(4, 3, activation="tanh", activity_regularizer=regularizer,
                          name="hidden")(inputs)
        x = layers.Flatten()(x)
        x_data = np.random.default_rng(0).normal(size=(16, 6, 6, 2)).astype("float32")
    base = keras.Model(inputs, layers.Dense(3)(x))
    expected = _regularization_loss(base, x_data)
    assert expected > 0.1
    model = tfdynhp.gate(base, seed=0)
    assert _regularization_loss(model, x_data) == pytest.approx(expected, rel=1e-5)
    assert model.get_layer("hidden").activity_regularizer is None
    assert _regularization_loss(tfdynhp.strip(model), x_data) == pytest.approx(expected,
                                                                                rel=1e-5)
    model.save(tmp_path / "gated.keras")
    reloaded = keras.models.load_model(tmp_path / "gated.keras")
    assert _regularization_loss(reloaded, x_data) == pytest.approx(expected, rel=1e-5)


def _depthwise_model(multiplier):
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(4, 3, name="first")(inputs)
    x = layers.DepthwiseConv2D(3, depth_multiplier=multiplier, padding="same", name="dw")(x)
    x = layers.Conv2D(3, 3, name="last")(x)
    return keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))


def test_a_depth_multiplier_that_keeps_a_group_ungated_says_so():
    with pytest.warns(UserWarning, match=r"'first'.*'dw' \(DepthwiseConv2D, depth_multiplier=2"):
        model = tfdynhp.gate(_depthwise_model(2))
    assert "first" not in gates_of(model) and "last" in gates_of(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = tfdynhp.gate(_depthwise_model(1))  # a gate after the depthwise: no warning
    assert "first" in gates_of(model)


def test_a_first_channels_first_conv_is_pinned_with_a_warning():
    inputs = keras.Input((2, 8, 8))
    x = layers.Conv2D(4, 3, data_format="channels_first", name="first")(inputs)
    x = layers.Dense(6, activation="relu", name="hidden")(layers.Flatten()(x))
    base = keras.Model(inputs, layers.Dense(2)(x))
    with pytest.warns(UserWarning, match=r"'first' \(data_format='channels_first'"):
        model = tfdynhp.gate(base)
    assert "first" not in gates_of(model) and "hidden" in gates_of(model)
    # A channels-first model's only prunable layer pinned: refused with the same reason.
    with pytest.raises(ValueError, match="channels_first"):
        tfdynhp.gate(keras.Sequential([
            keras.Input((2, 8, 8)), layers.Conv2D(4, 3, data_format="channels_first"),
            layers.Conv2D(3, 3, data_format="channels_first"), layers.Flatten(),
            layers.Dense(2)]))
