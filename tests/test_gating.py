import keras
import numpy as np
import pytest
from conftest import close_gates, make_mlp

import tfdynhp
from tfdynhp.surgery import apply_keep_masks, gated_layers


def _open_all_gates(model):
    for layer in gated_layers(model):
        layer.log_alpha.assign(np.full(layer.input_units, 30.0, "float32"))


def test_gate_copies_weights_and_matches_the_dense_model_with_open_gates():
    keras.utils.set_random_seed(0)
    base = make_mlp(7, [6, 5], 3, batchnorm=True, dropout=0.2)
    x = np.random.default_rng(0).normal(size=(10, 7)).astype("float32")
    model = tfdynhp.gate(base, l0_lambda=0.3, dataset_size=100, seed=3)
    assert isinstance(model, tfdynhp.GatedModel)
    assert isinstance(model.layers[1], tfdynhp.SelectFeatures)
    dense = [layer for layer in base.layers if isinstance(layer, keras.layers.Dense)]
    for original, gated in zip(dense, gated_layers(model)):
        np.testing.assert_array_equal(original.get_weights()[0], gated.kernel.numpy())
        assert gated.l0_lambda == 0.3 and gated.dataset_size == 100
    _open_all_gates(model)
    np.testing.assert_allclose(model.predict(x, verbose=0), base.predict(x, verbose=0), atol=1e-6)


def test_gate_keeps_the_original_input_shape_with_flatten():
    base = keras.Sequential([keras.Input((4, 4)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model = tfdynhp.gate(base)
    assert model.input_shape == (None, 4, 4)
    assert model.predict(np.ones((2, 4, 4)), verbose=0).shape == (2, 3)


def test_gate_accepts_functional_models():
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(2)(keras.layers.Activation("relu")(keras.layers.Dense(4)(inputs)))
    model = tfdynhp.gate(keras.Model(inputs, outputs))
    assert [layer.input_units for layer in gated_layers(model)] == [5, 4]


def _branching_model():
    inputs = keras.Input((5,))
    a = keras.layers.Dense(3)(inputs)
    b = keras.layers.Dense(3)(inputs)
    return keras.Model(inputs, keras.layers.Add()([a, b]))


def _shared_layer_model():
    shared = keras.layers.Dense(5)
    inputs = keras.Input((5,))
    return keras.Model(inputs, shared(shared(inputs)))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                                   keras.layers.Flatten(), keras.layers.Dense(2)]),
         "Conv2D"),
        (_branching_model, "chain|branches"),
        (_shared_layer_model, "shared layers"),
        (lambda: keras.Sequential([keras.Input((3,)), keras.layers.LayerNormalization()]),
         "no Dense layer"),
        (lambda: tfdynhp.gate(make_mlp(3, [2], 2)), "already gated"),
        (lambda: keras.Sequential([keras.layers.Dense(2)]), "not built"),
    ],
)
def test_gate_rejects_unsupported_models_naming_the_problem(build, match):
    with pytest.raises(ValueError, match=match):
        tfdynhp.gate(build())


def test_gate_rejects_unknown_options():
    with pytest.raises(TypeError, match="Unknown gate option"):
        tfdynhp.gate(make_mlp(3, [2], 2), l0_lamda=0.1)


def test_strip_matches_gated_inference_and_removes_closed_units():
    keras.utils.set_random_seed(1)
    model = tfdynhp.gate(make_mlp(6, [5, 4], 3, batchnorm=True), seed=1)
    first, second, _ = gated_layers(model)
    close_gates(first, [0, 3])
    close_gates(second, [1])
    apply_keep_masks(model, {second.name: np.array([1, 1, 0, 1, 1], bool)})
    x = np.random.default_rng(2).normal(size=(20, 6)).astype("float32")
    stripped = tfdynhp.strip(model)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    assert not tfdynhp.is_gated_model(stripped)
    assert stripped.layers[1].indices == [1, 2, 4, 5]
    dense = [layer for layer in stripped.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.kernel.shape[0] for d in dense] == [4, 3, 4]
    assert first.input_units == 6  # the gated model itself is untouched
    with pytest.raises(ValueError, match="no gated layer"):
        tfdynhp.strip(stripped)
