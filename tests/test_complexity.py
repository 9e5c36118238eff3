"""Per-layer counters of `tfdynhp.costs.walk`: hand-computed values on tiny layers, parameters
against Keras' `count_params`, MACs against TensorFlow's profiler (FLOPs = 2 * MACs) and
against brute-force numpy loops that count their multiplications."""

import itertools
import warnings

import keras
import numpy as np
import pytest
from conftest import profiler_flops

import tfdynhp
from tfdynhp import architectures, layer_types
from tfdynhp.costs import walk as cx
from tfdynhp.layer_types import registry
from tfdynhp.math import counting

COUNTED_OPS = ["Conv2D", "DepthwiseConv2dNative", "MatMul"]


def costs_by_name(model):
    return {cost.name: cost for cost in cx.layer_costs(model)}


def single_layer(input_shape, layer):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


# --- Pure functions ------------------------------------------------------------------------


def test_pure_formulas_by_hand():
    assert counting.dense_macs(784, 300) == 235_200
    assert counting.dense_macs(5, 7, positions=4) == 140
    # Conv2D 3x3, 2 -> 4 channels on a 5x5 'valid' input: 3x3 outputs.
    assert counting.conv_macs((3, 3), (3, 3), 2, 4) == 3 * 3 * 2 * 4 * 9 == 648
    assert counting.conv_macs(9, 9, 2, 4) == 648  # sizes may be given as products
    assert counting.conv_macs((3, 3), (3, 3), 4, 6, groups=2) == 9 * 9 * 2 * 6
    assert counting.depthwise_macs((25, 5), (3, 3), 64) == 72_000
    assert counting.depthwise_macs((2, 2), (3, 3), 3, depth_multiplier=2) == 4 * 9 * 6
    assert counting.separable_macs((4, 4), (3, 3), 8, 16) == 16 * 9 * 8 + 16 * 8 * 16
    assert counting.conv_transpose_macs((3, 3), (3, 3), 2, 4) == 9 * 9 * 2 * 4
    assert counting.pooling_ops((12, 12), (2, 2), 20) == 12 * 12 * 4 * 20
    assert counting.dense_macs(0, 5) == 0


def test_conv_output_length_matches_keras():
    for length, kernel, stride, padding, dilation in itertools.product(
        (1, 5, 10, 49), (1, 2, 3, 5), (1, 2, 3), ("valid", "same"), (1, 2)
    ):
        if stride > 1 and dilation > 1:
            continue  # Keras refuses the combination.
        expected = counting.conv_output_length(length, kernel, stride, padding, dilation)
        if expected < 1:
            continue
        layer = keras.layers.Conv1D(1, kernel, stride, padding, dilation_rate=dilation)
        assert layer.compute_output_shape((None, length, 1))[1] == expected
    assert counting.conv_output_length(28, 5) == 24
    assert counting.conv_output_length(49, 10, 2, "same") == 25
    assert counting.conv_output_length(4, 5) == 0  # does not fit
    assert counting.conv_output_length(3, 3, 1, "full") == 5


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: counting.dense_macs(-1, 3), "in_units"),
        (lambda: counting.dense_macs(2.5, 3), "in_units"),
        (lambda: counting.conv_macs((3, -1), 3, 1, 1), r"out_spatial\[1\]"),
        (lambda: counting.conv_macs("3x3", 3, 1, 1), "out_spatial"),
        (lambda: counting.conv_macs(3, 3, 3, 4, groups=2), "divisible by `groups`"),
        (lambda: counting.conv_macs(3, 3, 4, 4, groups=0), "groups"),
        (lambda: counting.depthwise_macs(3, 3, True), "channels"),
        (lambda: counting.conv_output_length(10, 3, padding="reflect"), "padding"),
        (lambda: counting.conv_output_length(10, 0), "kernel_size"),
        (lambda: counting.peak_live_values([1, 2], [0], [1, 2]), "same length"),
        (lambda: counting.peak_live_values([1], [2], [1]), "before it is produced"),
    ],
)
def test_pure_functions_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_peak_live_values_by_hand():
    # input (-1 .. 0), conv out (0 .. 2, read by the add), dw out (1 .. 2), add out (2 .. 3).
    sizes, producers, last_uses = [50, 36, 36, 36], [-1, 0, 1, 2], [0, 2, 2, 3]
    assert counting.peak_live_values(sizes, producers, last_uses) == 108
    assert counting.peak_live_values(sizes, producers, last_uses, step_extra={1: 100}) == 172
    assert counting.peak_live_values([], [], []) == 0


# --- Layers on their own -------------------------------------------------------------------


def test_conv2d_by_hand_and_count_params():
    model = single_layer((5, 5, 2), keras.layers.Conv2D(4, 3, name="conv"))
    (cost,) = cx.layer_costs(model)
    assert cost.macs == 3 * 3 * 2 * 4 * 9
    assert cost.params == model.count_params() == 3 * 3 * 2 * 4 + 4
    assert cost.inference_params == 76
    assert cost.activation_values == 3 * 3 * 4
    assert cost.input_shapes == ((5, 5, 2),) and cost.output_shapes == ((3, 3, 4),)
    assert cost.type == "Conv2D" and cost.supported and cost.folded_into is None


@pytest.mark.parametrize(
    "input_shape, layer, macs, values",
    [
        ((5,), keras.layers.Dense(3, activation="relu"), 15, 3),
        ((4, 5), keras.layers.Dense(7), 4 * 5 * 7, 28),  # Dense on a rank-3 input
        ((10, 3), keras.layers.Conv1D(6, 3, strides=2, padding="same"), 5 * 3 * 3 * 6, 30),
        ((5, 5, 4), keras.layers.Conv2D(6, 3, groups=2), 9 * 9 * 2 * 6, 54),
        ((5, 5, 3), keras.layers.DepthwiseConv2D(3, 2, "same", 2), 9 * 9 * 6, 54),
        ((6, 6, 4), keras.layers.SeparableConv2D(5, 3, depth_multiplier=2), 1152 + 640, 80),
        ((8, 4), keras.layers.SeparableConv1D(5, 3), 6 * 3 * 4 + 6 * 4 * 5, 30),
        ((3, 3, 2), keras.layers.Conv2DTranspose(4, 3, strides=2), 9 * 9 * 2 * 4, 196),
        ((6, 1), keras.layers.DepthwiseConv1D(3), 4 * 3, 4),
        ((4, 4, 4, 1), keras.layers.Conv3D(2, 2), 27 * 8 * 2, 54),
    ],
)
def test_weighted_layers_by_hand(input_shape, layer, macs, values):
    model = single_layer(input_shape, layer)
    (cost,) = cx.layer_costs(model)
    assert cost.macs == macs
    assert cost.activation_values == values
    assert cost.params == cost.inference_params == model.count_params()


def test_channels_first_conv():
    layer = keras.layers.Conv2D(4, 3, data_format="channels_first")
    model = single_layer((2, 5, 5), layer)
    assert cx.layer_costs(model)[0].macs == 648


def test_other_layers_by_hand():
    inputs = keras.Input((4, 4, 3))
    a = keras.layers.MaxPooling2D(2, name="max")(inputs)
    b = keras.layers.AveragePooling2D(2, name="avg")(inputs)
    c = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    c = keras.layers.MaxPooling2D(2, name="max2")(c)
    s = keras.layers.Add(name="add")([a, b, c])
    m = keras.layers.Average(name="average")([a, b])
    m = keras.layers.Multiply(name="multiply")([m, keras.layers.Subtract(name="sub")([a, b])])
    cat = keras.layers.Concatenate(name="concat")([s, m])
    x = keras.layers.ZeroPadding2D(1, name="pad")(cat)
    x = keras.layers.Cropping2D(1, name="crop")(x)
    x = keras.layers.Activation("tanh", name="tanh")(x)
    g = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    r = keras.layers.Reshape((2, 3), name="reshape")(g)
    f = keras.layers.Flatten(name="flatten")(r)
    out = keras.layers.Softmax(name="softmax")(f)
    costs = costs_by_name(keras.Model(inputs, out))
    assert costs["max"].ops == costs["avg"].ops == 2 * 2 * 3 * 4
    assert costs["max"].macs == costs["avg"].macs == 0
    assert costs["add"].ops == 2 * 12 and costs["add"].macs == 0
    assert costs["average"].ops == 2 * 12
    assert costs["sub"].ops == costs["multiply"].ops == 12 and costs["multiply"].macs == 0
    assert costs["concat"].ops == 0 and costs["concat"].activation_values == 24
    assert costs["pad"].activation_values == 4 * 4 * 6 and costs["pad"].ops == 0
    assert costs["crop"].activation_values == 24
    assert costs["tanh"].ops == 24 and costs["tanh"].folded_into is None
    assert costs["gap"].ops == 24 and costs["gap"].activation_values == 6
    assert costs["reshape"].activation_values == costs["flatten"].activation_values == 6
    assert costs["softmax"].ops == 6
    assert all(c.supported for c in costs.values())


def test_batch_norm_folding_rules():
    inputs = keras.Input((6, 6, 2))
    folded = keras.layers.Conv2D(4, 3, use_bias=False, name="conv_nobias")(inputs)
    folded = keras.layers.BatchNormalization(name="bn_folded")(folded)
    folded = keras.layers.ReLU(name="relu_fused")(folded)
    after_act = keras.layers.Conv2D(4, 1, activation="relu", name="conv_relu")(folded)
    after_act = keras.layers.BatchNormalization(name="bn_after_relu")(after_act)
    branch = keras.layers.Conv2D(4, 1, name="conv_branch")(after_act)
    bn_branch = keras.layers.BatchNormalization(name="bn_branch")(branch)
    merged = keras.layers.Add(name="add")([branch, bn_branch])  # conv output read twice
    merged = keras.layers.BatchNormalization(name="bn_after_add")(merged)
    dense = keras.layers.Dense(3, name="dense")(keras.layers.Flatten()(merged))
    dense = keras.layers.BatchNormalization(name="bn_dense")(dense)
    model = keras.Model(inputs, dense)
    costs = costs_by_name(model)
    # Folded into a bias-free conv: 0 MACs, the conv gains a bias of 4 values.
    assert costs["bn_folded"].folded_into == "conv_nobias"
    assert costs["bn_folded"].macs == 0 and costs["bn_folded"].inference_params == 4
    assert costs["bn_folded"].params == 16
    assert costs["relu_fused"].folded_into == "conv_nobias" and costs["relu_fused"].ops == 0
    # After a ReLU, a branching conv, an Add: per-channel scale and offset, one MAC per value.
    for name in ("bn_after_relu", "bn_branch", "bn_after_add"):
        assert costs[name].folded_into is None
        assert costs[name].macs == 4 * 4 * 4 and costs[name].inference_params == 8
    # Dense with a bias followed by BN: folded, nothing added.
    assert costs["bn_dense"].folded_into == "dense" and costs["bn_dense"].inference_params == 0
    totals = cx.model_costs(model)
    assert totals.params == model.count_params()
    assert totals.inference_params == sum(c.inference_params for c in costs.values())


def test_dropout_and_linear_activation_are_identities():
    inputs = keras.Input((8,))
    x = keras.layers.Dropout(0.5, name="drop")(inputs)
    x = keras.layers.Dense(4, name="dense")(x)
    x = keras.layers.Activation("linear", name="linear")(x)
    x = keras.layers.GaussianNoise(0.1, name="noise")(x)
    model = keras.Model(inputs, x)
    costs = costs_by_name(model)
    assert costs["drop"].folded_into == "input"
    assert costs["linear"].folded_into == costs["noise"].folded_into == "dense"
    # Input 8 + dense output 4 alive during the Dense layer; nothing else is a new buffer.
    assert cx.model_costs(model).peak_activation_values == 12


def test_peak_activation_values_of_a_residual_block():
    inputs = keras.Input((5, 5, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # 36 values
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Activation("relu", name="relu2")(x)
    out = keras.layers.Dense(3, name="out")(keras.layers.GlobalAveragePooling2D()(x))
    costs = cx.model_costs(keras.Model(inputs, out))
    # During the Add: its two inputs and its output (36 each); the 5x5x2 input is dead.
    assert costs.peak_activation_values == 108
    assert costs.input_values == 50
    assert costs.total_activation_values == 36 * 6 + 4 + 3
    assert costs.macs == 648 + 324 + 12


def test_shared_layer_counts_weights_once_and_macs_per_call():
    shared = keras.layers.Dense(4, name="shared")
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    out = keras.layers.Concatenate(name="concat")([shared(a), shared(b)])
    model = keras.Model([a, b], out)
    costs = costs_by_name(model)
    assert costs["shared"].macs == costs["shared:1"].macs == 12
    assert costs["shared"].params == 16 and costs["shared:1"].params == 0
    totals = cx.model_costs(model)
    assert totals.params == model.count_params() == 16
    assert totals.macs == 24 and totals.input_values == 6


def test_nested_models_are_walked():
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="d1"), keras.layers.Dense(2, name="d2")],
        name="inner",
    )
    inputs = keras.Input((4,))
    x = keras.layers.Dense(6, name="pre")(inputs)
    out = keras.layers.Dense(3, name="post")(inner(x))
    model = keras.Model(inputs, out)
    costs = costs_by_name(model)
    assert list(costs) == ["pre", "inner/d1", "inner/d2", "post"]
    assert costs["inner/d1"].macs == 30 and costs["inner/d2"].macs == 10
    totals = cx.model_costs(model)
    assert totals.params == model.count_params()
    assert totals.macs == 24 + 30 + 10 + 6
    # Inside `inner`, its input (6) and d1's output (5) are alive while `pre`'s input is dead.
    assert totals.peak_activation_values == 11


def test_unknown_layer_warns_and_counts_params():
    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.w

    inputs = keras.Input((5,))
    out = keras.layers.Dense(2, name="dense")(Scale(name="scale")(inputs))
    model = keras.Model(inputs, out)
    with pytest.warns(UserWarning, match="1 layer.* without a cost function.*scale"):
        totals = cx.model_costs(model)
    assert totals.unsupported == ("scale",)
    scale = totals.layers[0]
    assert not scale.supported and scale.params == scale.inference_params == 5
    assert scale.macs == 0
    assert totals.params == model.count_params()


def test_a_registered_cost_counts_a_new_type():
    class Square(keras.layers.Layer):
        def call(self, x):
            return x * x

    layer_types.register(Square, role="pass", cost=lambda call: layer_types.CallCost(ops=7))
    try:
        model = single_layer((3,), Square(name="square"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (cost,) = cx.layer_costs(model)
        assert cost.supported and cost.ops == 7
    finally:
        registry._TYPES.pop(Square)
    with pytest.raises(TypeError, match="Layer subclass"):
        layer_types.register(int, role="pass")
    with pytest.raises(TypeError, match="callable"):
        layer_types.register(Square, role="pass", cost=3)


def test_bad_models_are_refused():
    with pytest.raises(TypeError, match="keras.Model"):
        cx.layer_costs(keras.layers.Dense(3))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="subclassed model"):
        cx.model_costs(Subclassed())
    with pytest.raises(ValueError, match="not built"):
        cx.model_costs(keras.Sequential([keras.layers.Dense(2)]))


def test_gated_model_counts_kernels_not_gates():
    base = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(6, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    plain = cx.model_costs(base)
    gated = cx.model_costs(tfdynhp.gate(base, seed=0))
    assert gated.macs == plain.macs == 10 * 6 + 6 * 3
    assert gated.inference_params == plain.inference_params == base.count_params()
    assert gated.params == plain.params  # gate state is training-only, not a parameter
    assert gated.unsupported == ()


# --- Independent measurements --------------------------------------------------------------


@pytest.mark.parametrize(
    "input_shape, layer",
    [
        ((5, 5, 2), keras.layers.Conv2D(4, 3)),
        ((4, 5), keras.layers.Dense(7)),
        ((10, 3), keras.layers.Conv1D(6, 3, strides=2, padding="same")),
        ((7, 6, 3), keras.layers.Conv2D(5, (3, 2), strides=(2, 1), padding="same")),
        ((5, 5, 3), keras.layers.DepthwiseConv2D(3, 2, "same", 2)),
        ((6, 6, 4), keras.layers.SeparableConv2D(5, 3, depth_multiplier=2)),
        ((8, 4), keras.layers.SeparableConv1D(5, 3)),
    ],
)
def test_macs_match_tensorflow_profiler(input_shape, layer):
    model = single_layer(input_shape, layer)
    assert 2 * cx.model_costs(model).macs == profiler_flops(model, COUNTED_OPS)


def brute_force_conv2d(x, kernel, bias, strides, groups):
    """A 'valid' grouped 2-D convolution by loops, counting its multiplications."""
    h, w, _ = x.shape
    kh, kw, group_in, filters = kernel.shape
    out_h, out_w = (h - kh) // strides + 1, (w - kw) // strides + 1
    group_out = filters // groups
    out = np.zeros((out_h, out_w, filters))
    multiplications = 0
    for i, j, f in itertools.product(range(out_h), range(out_w), range(filters)):
        g = f // group_out
        total = bias[f]
        for a, b, c in itertools.product(range(kh), range(kw), range(group_in)):
            total += x[i * strides + a, j * strides + b, g * group_in + c] * kernel[a, b, c, f]
            multiplications += 1
        out[i, j, f] = total
    return out, multiplications


def brute_force_conv2d_transpose(x, kernel, bias, strides):
    """A 'valid' transposed 2-D convolution by scattering, counting its multiplications."""
    h, w, in_channels = x.shape
    kh, kw, filters, _ = kernel.shape
    out = np.zeros(((h - 1) * strides + kh, (w - 1) * strides + kw, filters)) + bias
    multiplications = 0
    for i, j, c in itertools.product(range(h), range(w), range(in_channels)):
        for a, b, f in itertools.product(range(kh), range(kw), range(filters)):
            out[i * strides + a, j * strides + b, f] += x[i, j, c] * kernel[a, b, f, c]
            multiplications += 1
    return out, multiplications


@pytest.mark.parametrize("strides, groups", [(1, 1), (2, 1), (1, 2), (2, 3)])
def test_conv_macs_match_a_brute_force_loop(strides, groups):
    keras.utils.set_random_seed(0)
    layer = keras.layers.Conv2D(6, 3, strides=strides, groups=groups)
    model = single_layer((7, 6, 6), layer)
    x = np.random.default_rng(0).normal(size=(7, 6, 6))
    expected, multiplications = brute_force_conv2d(
        x, *(np.asarray(w) for w in layer.get_weights()), strides, groups
    )
    np.testing.assert_allclose(model(x[None].astype("float32"))[0], expected, atol=1e-4)
    assert cx.model_costs(model).macs == multiplications


@pytest.mark.parametrize("strides", [1, 2])
def test_conv_transpose_macs_match_a_brute_force_loop(strides):
    keras.utils.set_random_seed(0)
    layer = keras.layers.Conv2DTranspose(4, 3, strides=strides)
    model = single_layer((3, 4, 2), layer)
    x = np.random.default_rng(1).normal(size=(3, 4, 2))
    expected, multiplications = brute_force_conv2d_transpose(
        x, *(np.asarray(w) for w in layer.get_weights()), strides
    )
    np.testing.assert_allclose(model(x[None].astype("float32"))[0], expected, atol=1e-4)
    assert cx.model_costs(model).macs == multiplications


@pytest.mark.parametrize("name", list(architectures.ARCHITECTURES))
def test_reference_models_macs_match_tensorflow_profiler(name):
    model = architectures.build(name, input_shape=(784,) if name == "mlp" else None)
    assert 2 * cx.model_costs(model).macs == profiler_flops(model, COUNTED_OPS)
