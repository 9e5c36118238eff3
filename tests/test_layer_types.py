"""One registry entry per layer type (`tfdynhp.layer_types`): the costs of grouped and
transposed convolutions against TensorFlow's profiler, transposed convolutions pruned exactly,
and a user's own layer supported by one `register` call, end to end."""


import keras
import numpy as np
import pytest
from conftest import close_gates, profiler_flops
from keras import layers
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp import layer_types
from tfdynhp.graph import analyze
from tfdynhp.layer_types import registry
from tfdynhp.math.selection import keep_mask
from tfdynhp.surgery import apply_keep_masks


def test_grouped_convolution_is_counted_with_its_groups():
    inputs = keras.Input((10, 10, 8))
    conv = layers.Conv2D(16, 3, groups=4, name="grouped")
    model = keras.Model(inputs, conv(inputs))
    (cost,) = tfdynhp.layer_costs(model)
    # A 3x3 kernel over 8 / 4 = 2 input channels per filter, 16 filters, 8x8 outputs.
    assert cost.params == model.count_params() == 3 * 3 * 2 * 16 + 16
    assert cost.macs == 8 * 8 * 3 * 3 * 2 * 16
    assert 2 * cost.macs == profiler_flops(model, ["Conv2D"])


def test_transposed_convolution_is_counted_from_its_input_positions():
    inputs = keras.Input((4, 4, 5))
    for padding in ("valid", "same"):
        up = layers.Conv2DTranspose(8, 3, strides=2, padding=padding, name="up")
        model = keras.Model(inputs, up(inputs))
        (cost,) = tfdynhp.layer_costs(model)
        assert cost.params == model.count_params() == 3 * 3 * 5 * 8 + 8
        # Every input value meets the whole kernel, whatever the padding crops afterwards.
        assert cost.macs == 4 * 4 * 3 * 3 * 5 * 8
    # TensorFlow's profiler counts output positions / strides^2: exact when 'same'.
    assert 2 * cost.macs == profiler_flops(model, ["Conv2DBackpropInput"])


def test_transposed_convolution_channels_are_pruned_exactly():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(5, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2DTranspose(6, 2, activation="relu")(layers.ReLU()(x))
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    model = tfdynhp.gate(keras.Model(inputs, outputs), drop_rate_init=0.2, seed=1)
    groups = [g for g in analyze(model).groups if g.gate is not None]
    assert {g.units for g in groups} == {5, 4, 6}  # the transposed convolutions are gated
    masks = {}
    for group in groups:
        close_gates(group.gate, [0, 2])
        masks[group.name] = keep_mask(group.gate.test_time_gates(), 1e-30, 1, group.segments)
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 3)).astype("float32")
    before = model.predict(x, verbose=0)
    predicted = tfdynhp.model_costs(model, masks)
    apply_keep_masks(model, masks)
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-5)
    after = tfdynhp.model_costs(model)
    assert (predicted.params, predicted.macs) == (after.params, after.macs)
    np.testing.assert_allclose(tfdynhp.strip(model).predict(x, verbose=0), before, atol=1e-5)


@keras.saving.register_keras_serializable("tfdynhp_tests")
class ScaledDense(keras.layers.Layer):
    """A user's layer: `activation((x @ kernel) * scale + bias)`, one scale per unit."""

    def __init__(self, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.use_bias = True  # read by `dense_cost`
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units),
                                      initializer="glorot_uniform")
        self.scale = self.add_weight(name="scale", shape=(self.units,), initializer="ones")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, x):
        return self.activation(keras.ops.matmul(x, self.kernel) * self.scale + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


def _narrow_scaled_dense(layer, in_keep, out_keep):
    edit = layer_types.narrow_kernel_layer("kernel", "units")(layer, in_keep, out_keep)
    if out_keep is not None:
        edit.slice("scale", 0, out_keep)
    return edit


def _scaled_dense_cost(call):
    cost = layer_types.dense_cost(call)
    units = int(call.output_shapes[0][-1])
    return layer_types.CallCost(params=cost.params + units, macs=cost.macs, ops=cost.ops,
                                inference_params=cost.inference_params + units,
                                int8_bytes=cost.int8_bytes + units)


@pytest.fixture
def scaled_dense_registered():
    entry = layer_types.register(
        ScaledDense,
        role=layer_types.MIXING,
        narrow=_narrow_scaled_dense,
        cost=_scaled_dense_cost,
        kernels=(layer_types.KernelView("kernel", out_axis=-1, in_axis=-2),),
        splits_activation=True,
    )
    yield entry
    registry._TYPES.pop(ScaledDense)


@pytest.mark.slow
def test_a_custom_layer_registered_once_is_gated_pruned_stripped_and_exported(
        digits, scaled_dense_registered, tmp_path):
    from tfdynhp import converters

    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((64,)), ScaledDense(40, "relu", name="hidden1"),
                             ScaledDense(20, "relu", name="hidden2"),
                             layers.Dense(10, activation="softmax")])
    model = tfdynhp.gate(base, seed=0)
    assert {g.name for g in analyze(model).groups if g.gate is not None} >= {"hidden1",
                                                                              "hidden2"}
    start = tfdynhp.parameter_count(model)
    assert start == base.count_params()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    callback = DynHPCallback(target="50% params", target_epoch=4)
    model.fit(tfdynhp.DynamicBatches(x, y, batch_size=32, seed=0), epochs=6,
              callbacks=[callback], verbose=0)
    params = tfdynhp.parameter_count(model)
    assert 0.4 * start <= params <= 0.5 * start
    assert model.get_layer("hidden1").kernel.shape[1] < 40  # really narrowed

    stripped = tfdynhp.strip(model)
    np.testing.assert_allclose(stripped.predict(x_test, verbose=0),
                               model.predict(x_test, verbose=0), atol=1e-5)
    assert isinstance(stripped.get_layer("hidden1"), ScaledDense)
    assert stripped.count_params() == params
    assert np.mean(np.argmax(stripped.predict(x_test, verbose=0), -1) == y_test) > 0.85

    tflite = converters.to_int8_tflite(stripped, x[:200])
    probabilities, _ = converters.run_tflite(tflite, x_test, runtime="litert")
    agreement = np.mean(np.argmax(probabilities, -1)
                        == np.argmax(stripped.predict(x_test, verbose=0), -1))
    assert agreement > 0.95


def test_attention_is_priced_from_its_projections_and_scores():
    query = keras.Input((7, 12))
    model = keras.Model(query, layers.MultiHeadAttention(2, 4, value_dim=3)(query, query))
    (cost,) = tfdynhp.layer_costs(model)
    assert cost.supported and cost.params == model.count_params()
    # TensorFlow's profiler prices the four projections (BatchMatMul), not the einsums of the
    # scores: 7 queries x 7 keys x 2 heads x (key_dim 4 + value_dim 3).
    projections = profiler_flops(model, ["BatchMatMulV2"]) // 2
    assert projections == 7 * 12 * 2 * (4 + 4 + 3) + 7 * 2 * 3 * 12
    assert cost.macs == projections + 7 * 7 * 2 * (4 + 3)


def _every_weighted_layer():
    """A model with one layer of every Keras type with weights that has no per-channel
    surgery, each called on what it takes."""
    tokens = keras.Input((6,), dtype="int32")
    x = layers.Embedding(20, 8)(tokens)
    x = layers.LayerNormalization()(x)
    x = layers.MultiHeadAttention(2, 4)(x, x)
    x = layers.GroupQueryAttention(head_dim=4, num_query_heads=2, num_key_value_heads=1)(x, x)
    x = layers.EinsumDense("abc,cd->abd", output_shape=(6, 8), bias_axes="d")(x)
    x = layers.GroupNormalization(groups=2)(x)
    x = layers.RMSNormalization()(x)
    x = layers.Attention(use_scale=True)([x, x])
    x = layers.TimeDistributed(layers.Dense(8))(x)
    x = layers.Bidirectional(layers.GRU(4, return_sequences=True))(x)
    x = layers.SimpleRNN(5, return_sequences=True)(x)
    x = layers.LSTM(6)(x)
    return keras.Model(tokens, layers.Dense(3)(x))


def test_every_layer_with_weights_is_priced_and_every_parameter_counted():
    model = _every_weighted_layer()
    costs = tfdynhp.model_costs(model)
    assert costs.unsupported == ()
    assert costs.params == model.count_params()
    from tfdynhp.costs import coverage_of

    found = coverage_of(model)
    assert found.uncounted == {} and found.unpriced == ()
    by_type = {c.type: c for c in costs.layers}
    # Per step: the input times the kernel and the state times the recurrent kernel.
    assert by_type["LSTM"].macs == 6 * (5 * 4 * 6 + 6 * 4 * 6)
    assert by_type["SimpleRNN"].macs == 6 * (8 * 5 + 5 * 5)
    assert by_type["Bidirectional"].macs == 2 * 6 * (8 * 3 * 4 + 4 * 3 * 4)
    assert by_type["TimeDistributed"].macs == 6 * 8 * 8
    assert by_type["EinsumDense"].macs == 6 * 8 * 8
    assert by_type["Embedding"].macs == 0 and by_type["Embedding"].params == 20 * 8


def test_a_target_refuses_parameters_the_cost_model_misses(digits, scaled_dense_registered):
    x, y, _, _ = digits

    def undercount(call):  # forgets the per-unit scales
        return layer_types.dense_cost(call)

    layer_types.register(ScaledDense, role=layer_types.MIXING,
                         narrow=_narrow_scaled_dense, cost=undercount,
                         kernels=(layer_types.KernelView("kernel", out_axis=-1, in_axis=-2),))
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((64,)), ScaledDense(16, "relu", name="hidden"),
                             layers.Dense(10)])
    model = tfdynhp.gate(base, seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    weights = model.get_weights()
    with pytest.raises(tfdynhp.validation.ConfigurationError,
                       match=r"'hidden' \(ScaledDense\): 1,056 stored, 1,040 counted"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[DynHPCallback(target="50% params")])
    for old, new in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_a_macs_target_refuses_layers_with_weights_and_no_cost(digits, scaled_dense_registered):
    x, y, _, _ = digits
    layer_types.register(ScaledDense, role=layer_types.MIXING, narrow=_narrow_scaled_dense,
                         kernels=(layer_types.KernelView("kernel", out_axis=-1, in_axis=-2),))
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(keras.Sequential([keras.Input((64,)), ScaledDense(16, name="hidden"),
                                           layers.Dense(10)]), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(tfdynhp.validation.ConfigurationError,
                       match=r"MACs target needs .* no cost function: hidden"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[DynHPCallback(target="50% macs")])
