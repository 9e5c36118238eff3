"""The int8 arithmetic (pure NumPy) against hand computations and against TensorFlow's own
FakeQuant kernels, and BatchNormalization folding against Keras."""

import keras
import numpy as np
import pytest

from tfdynhp.quantization import QuantizedLayer, arithmetic


def test_activation_params_by_hand():
    # [-1.28, 1.27]: scale 2.55 / 255 = 0.01, zero point -(-1.28) / 0.01 = 128 -> int8 0.
    scale, zero_point = arithmetic.activation_params(-1.28, 1.27)
    assert scale == pytest.approx(0.01, rel=1e-6) and zero_point == 0
    # A ReLU range [0, 2.55]: zero point 0 -> int8 -128.
    assert arithmetic.activation_params(0.0, 2.55) == (pytest.approx(0.01, rel=1e-6), -128)
    # A range that misses 0 is widened to contain it first: [0.5, 2.55] -> [0, 2.55].
    assert arithmetic.activation_params(0.5, 2.55) == (pytest.approx(0.01, rel=1e-6), -128)
    # Softmax's fixed range [0, 255/256]: scale 1/256, zero point -128, as TFLite requires.
    assert arithmetic.activation_params(0.0, 255 / 256) == (1 / 256, -128)


def test_nudging_by_hand():
    # [-0.1, 1.0]: scale 1.1 / 255; zero point from min 0.1 / scale = 23.18 -> 23, so the
    # range moves to [-23 * scale, 232 * scale] = [-0.0992157, 1.0007843].
    nudged_min, nudged_max, scale, zero_point = arithmetic.nudge(-0.1, 1.0)
    assert scale == pytest.approx(1.1 / 255, rel=1e-6)
    assert int(zero_point) == 23
    assert nudged_min == pytest.approx(-0.0992157, abs=1e-7)
    assert nudged_max == pytest.approx(1.0007843, abs=1e-7)
    assert arithmetic.activation_params(-0.1, 1.0)[1] == 23 - 128
    x = np.array([-0.2, 0.0, 0.5, 0.0021, 2.0], np.float32)
    # clamp to nudged min | 0 exactly | 0.5 / s = 115.9 -> 116 steps | 0.49 step -> 0 | clamp
    expected = np.array([-0.0992157, 0.0, 0.5003922, 0.0, 1.0007843], np.float32)
    np.testing.assert_allclose(arithmetic.fake_quant(x, -0.1, 1.0), expected, atol=1e-7)


def test_weight_scales_and_values_by_hand():
    kernel = np.array([[0.5, 0.2], [-1.27, 0.11], [0.3, -0.04]], np.float32)  # (in 3, out 2)
    # Channel 0: max|w| 1.27 -> scale 0.01, values 50, -127, 30.
    # Channel 1: max|w| 0.2 -> scale 0.2/127; 0.11 -> 69.85 -> 70, -0.04 -> -25.4 -> -25.
    np.testing.assert_allclose(
        arithmetic.weight_scales(kernel), [0.01, 0.2 / 127], rtol=1e-6
    )
    expected = np.array(
        [[50 * 0.01, 127 * 0.2 / 127], [-127 * 0.01, 70 * 0.2 / 127], [30 * 0.01, -25 * 0.2 / 127]],
        np.float32,
    )
    np.testing.assert_allclose(arithmetic.fake_quant_weights(kernel), expected, atol=1e-7)
    # A channel of zeros stays zeros (no division by a zero scale).
    zeros = np.zeros((3, 1), np.float32)
    np.testing.assert_array_equal(arithmetic.fake_quant_weights(zeros), zeros)


def test_the_two_roundings_differ_only_on_ties():
    # -0.125 / 0.01 = -12.5: TF's fake quant rounds half up (-12), TFLite's runtime
    # quantization half away from zero (-13). 0.123 -> 12.3 -> 12 in both.
    fq = arithmetic.fake_quant(np.array([-0.125, 0.123], np.float32), -1.28, 1.27)
    np.testing.assert_allclose(fq, [-0.12, 0.12], atol=1e-7)
    q = arithmetic.quantize(np.array([-0.125, 0.123], np.float32), 0.01, 0)
    np.testing.assert_array_equal(q, [-13, 12])
    np.testing.assert_allclose(arithmetic.dequantize(q, 0.01, 0), [-0.13, 0.12], atol=1e-7)


def test_empty_range_is_refused_with_the_values():
    with pytest.raises(ValueError, match="max > min"):
        arithmetic.nudge(0.0, 0.0)


def test_numpy_reference_equals_tensorflow_fake_quant_bit_for_bit():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=2.0, size=(64, 7)).astype(np.float32)
    for lo, hi in [(-1.0, 3.0), (-0.37, 0.91), (0.0, 6.0), (-5.5, 0.0)]:
        ours = arithmetic.fake_quant(x, lo, hi)
        tf_op = keras.ops.convert_to_numpy(
            keras.quantizers.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8)
        )
        np.testing.assert_array_equal(ours, tf_op)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    amax = np.abs(kernel.reshape(-1, 5)).max(axis=0)
    tf_op = keras.ops.convert_to_numpy(
        keras.quantizers.fake_quant_with_min_max_vars(
            kernel, -amax, amax, num_bits=8, narrow_range=True, axis=-1
        )
    )
    np.testing.assert_array_equal(arithmetic.fake_quant_weights(kernel), tf_op)
    # ... and the values are integers times max|w| / 127, within [-127, 127].
    steps = tf_op / arithmetic.weight_scales(kernel)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    assert np.abs(np.round(steps)).max() == 127


def _bn_weights(rng, n):
    return [
        rng.uniform(0.5, 2.0, n).astype("f"),  # gamma
        rng.normal(size=n).astype("f"),  # beta
        rng.normal(size=n).astype("f"),  # moving mean
        rng.uniform(0.2, 3.0, n).astype("f"),  # moving variance
    ]


@pytest.mark.parametrize(
    "layer",
    [
        keras.layers.Conv2D(6, 3, padding="same"),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        keras.layers.Dense(6),
    ],
    ids=["conv2d", "depthwise", "dense"],
)
def test_batch_norm_folding_matches_keras_inference(layer):
    rng = np.random.default_rng(1)
    shape = (5,) if isinstance(layer, keras.layers.Dense) else (6, 6, 3)
    inputs = keras.Input(shape)
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    model = keras.Model(inputs, bn(layer(inputs)))
    bn.set_weights(_bn_weights(rng, bn.gamma.shape[0]))
    layer.bias.assign(rng.normal(size=layer.bias.shape).astype("f"))
    x = rng.normal(size=(4, *shape)).astype("f")
    kernel, bias = arithmetic.fold_batch_norm(
        keras.ops.convert_to_numpy(layer.kernel),
        keras.ops.convert_to_numpy(layer.bias),
        *bn.get_weights(),
        epsilon=bn.epsilon,
        depthwise=isinstance(layer, keras.layers.DepthwiseConv2D),
    )
    folded = layer.__class__.from_config(layer.get_config())
    folded.build((None, *shape))
    folded.set_weights([kernel, bias])
    np.testing.assert_allclose(folded(x), model(x), rtol=1e-5, atol=1e-5)
    # The graph form inside QuantizedLayer folds the same way.
    wrapped = QuantizedLayer(layer, bn)
    graph_kernel, graph_bias = (keras.ops.convert_to_numpy(w) for w in wrapped.folded_weights())
    np.testing.assert_allclose(graph_kernel, kernel, rtol=1e-6)
    np.testing.assert_allclose(graph_bias, bias, rtol=1e-6, atol=1e-6)
