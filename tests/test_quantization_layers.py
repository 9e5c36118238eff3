"""The QAT layers and `quantize_aware`'s graph rules: range tracking by hand, straight-through
gradients, which tensors get a quantizer, clear refusals, calibration, `.keras` round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdynhp
from tfdynhp.quantization import (
    ActivationQuantizer,
    QuantizedLayer,
    arithmetic,
    calibrate,
    freeze,
    quantization_table,
    quantizers,
)


def test_ema_range_by_hand():
    q = ActivationQuantizer("ema", ema_decay=0.9)
    q.build(())
    x1 = np.array([[-1.0, 2.0]], np.float32)
    q(x1, training=True)  # the first batch sets the range
    assert q.quantized_range() == pytest.approx((-1.0, 2.0))
    x2 = np.array([[0.5, 4.0]], np.float32)  # batch range widened to [0, 4] (contains 0)
    out = q(x2, training=True)
    lo, hi = 0.9 * -1.0 + 0.1 * 0.0, 0.9 * 2.0 + 0.1 * 4.0  # -0.9, 2.2
    assert q.quantized_range() == pytest.approx((lo, hi), abs=1e-6)
    np.testing.assert_array_equal(out, arithmetic.fake_quant(x2, lo, hi))
    q(np.array([[-50.0, 50.0]], np.float32), training=False)  # inference does not track
    assert q.quantized_range() == pytest.approx((lo, hi), abs=1e-6)
    assert q.quantization_params() == arithmetic.activation_params(lo, hi)


def test_learned_range_gets_tensorflow_fake_quant_gradients():
    q = ActivationQuantizer("learned")
    q.build(())
    q(np.array([[-1.0, 1.0]], np.float32), training=True)  # first batch: range [-1, 1]
    assert [v.name for v in q.trainable_variables] == ["range_min", "range_max"]
    x = tf.constant([[3.0, 0.5, -2.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(q(x, training=True))
    d_x, d_min, d_max = tape.gradient(y, [x, q.range_min, q.range_max])
    np.testing.assert_array_equal(d_x, [[0.0, 1.0, 0.0]])  # straight through inside the range
    assert float(d_min) == 1.0 and float(d_max) == 1.0  # one value clipped at each end


def test_quantized_kernel_gradient_is_straight_through():
    rng = np.random.default_rng(0)
    dense = keras.layers.Dense(3)
    wrapped = QuantizedLayer(dense)
    x = tf.constant(rng.normal(size=(4, 5)).astype("f"))
    wrapped(x)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(wrapped(x) ** 2)
    grad = tape.gradient(y, dense.kernel)
    kernel_q = arithmetic.fake_quant_weights(keras.ops.convert_to_numpy(dense.kernel))
    outputs = x.numpy() @ kernel_q + keras.ops.convert_to_numpy(dense.bias)
    np.testing.assert_allclose(grad, x.numpy().T @ (2 * outputs), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "minmax"}, "`mode` must be one of"),
        ({"mode": "fixed"}, "needs `fixed_range"),
        ({"mode": "fixed", "fixed_range": (1.0, 1.0)}, "max > min"),
        ({"mode": "ema", "ema_decay": 1.0}, "`ema_decay` must be in"),
    ],
)
def test_quantizer_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ActivationQuantizer(**kwargs)


def _residual_model():
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    a = keras.layers.ReLU(name="relu_a")(x)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(a)
    c = keras.layers.Conv2D(4, 1, name="conv_c")(a)  # read twice: no fusion
    c_relu = keras.layers.ReLU(max_value=6.0, name="relu6_c")(c)
    x = keras.layers.Add(name="add")([b, c_relu, c])
    x = keras.layers.Activation("relu", name="add_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def test_graph_rules_fold_fuse_and_place_quantizers_where_tflite_stores_tensors():
    qat = tfdynhp.quantize_aware(_residual_model())
    assert {q.name for q in quantizers(qat)} == {
        "image_quantizer",
        "relu_a_quantizer",  # conv_a + bn_a + relu_a: one tensor
        "conv_b_quantizer",  # conv_b with its own relu
        "conv_c_quantizer",  # conv_c is read twice, so its output is stored ...
        # ... and relu6_c, a separate op, shares its scale (TFLite Micro's RELU6 needs it)
        "add_1_quantizer",  # b + relu6_c: TFLite's ADD has two inputs ...
        "add_relu_quantizer",  # ... then + c, with its relu fused
        "gap_quantizer",
        "head_quantizer",  # the logits
        "head_softmax_quantizer",
    }
    wrapped = {layer.name: layer for layer in qat.layers if isinstance(layer, QuantizedLayer)}
    assert wrapped["quant_conv_a"].batch_norm is not None
    assert wrapped["quant_conv_a"].activation_name == "relu"  # fused after the folded bias
    assert wrapped["quant_conv_a"].layer.activation.__name__ == "linear"
    assert wrapped["quant_conv_b"].activation_name == "relu"  # its own activation, fused
    assert wrapped["quant_conv_c"].activation_name == "linear"
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in qat.layers)
    shared = qat.get_layer("conv_c_quantizer")
    assert len(shared._inbound_nodes) == 2 and shared._inbound_nodes[1].arguments.kwargs == {
        "track": False
    }
    assert qat.get_layer("head_softmax_quantizer").quantization_params() == (1 / 256, -128)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda x: keras.layers.LayerNormalization(name="ln")(x), "'ln'"),
        (lambda x: keras.layers.BatchNormalization(name="lonely_bn")(x), "BatchNormalization folds"),
        (
            lambda x: keras.layers.BatchNormalization(name="bn")(
                keras.layers.Dense(4, activation="relu", name="d")(x)
            ),
            "has an activation",
        ),
        (lambda x: keras.layers.Dense(4, activation="gelu", name="g")(x), "'gelu'"),
        (lambda x: keras.layers.LeakyReLU(name="leaky")(x), "'leaky'"),
    ],
    ids=["layernorm", "standalone-bn", "bn-after-activation", "gelu", "leaky-relu"],
)
def test_layers_the_converter_would_not_quantize_as_simulated_are_refused(build, match):
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(build(inputs)))
    with pytest.raises(ValueError, match=match):
        tfdynhp.quantize_aware(model)


class Doubling(keras.layers.Layer):
    """A user's layer whose layer type says nothing about int8."""

    def call(self, x):
        return 2.0 * x


def test_a_layer_whose_type_says_nothing_about_int8_is_refused_with_the_fix():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(Doubling(name="twice")(inputs)))
    with pytest.raises(ValueError, match=r"'twice'.*does not say how TFLite quantizes it.*"
                                         r"register\(\.\.\., quantization="):
        tfdynhp.quantize_aware(model)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "folded_twice"}, "Unknown quantization kind"),
        ({"kind": "fixed_range"}, "output_range"),
        ({"kind": "same_scale", "resnap": "floor"}, "resnap"),
        ({"kind": "decompose"}, "decompose"),
    ],
)
def test_quantization_entries_are_checked(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tfdynhp.layer_types.Quantization(**kwargs)


def test_calibration_sets_each_range_to_the_float_min_max():
    rng = np.random.default_rng(0)
    model = _residual_model()
    x = rng.normal(size=(40, 8, 8, 3)).astype("f")
    qat = tfdynhp.quantize_aware(model, calibration_data=x, batch_size=16)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in ("relu_a", "gap")])
    relu_a, gap = probe.predict(x, verbose=0)
    assert qat.get_layer("image_quantizer").quantized_range() == pytest.approx(
        (float(x.min()), float(x.max())), rel=1e-6
    )
    assert qat.get_layer("relu_a_quantizer").quantized_range() == pytest.approx(
        (0.0, float(relu_a.max())), rel=1e-5
    )
    assert qat.get_layer("gap_quantizer").quantized_range() == pytest.approx(
        (min(0.0, float(gap.min())), float(gap.max())), rel=1e-5, abs=1e-6
    )
    with pytest.raises(ValueError, match=r"shape \(num_samples, 8, 8, 3\)"):
        calibrate(qat, x[:, :4])


def test_keras_round_trip_keeps_ranges_and_outputs(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype("f")
    y = rng.integers(0, 5, size=32)
    qat = tfdynhp.quantize_aware(_residual_model(), calibration_data=x)
    qat.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    qat.fit(x, y, epochs=1, batch_size=16, verbose=0)  # moves weights and ranges
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.saving.load_model(path)
    assert quantization_table(loaded) == quantization_table(qat)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), qat.predict(x, verbose=0))
    for key in ("layer", "batch_norm"):
        assert (
            loaded.get_layer("quant_conv_a").get_config()[key]["config"]
            == qat.get_layer("quant_conv_a").get_config()[key]["config"]
        )


def test_freeze_needs_ranges_and_then_computes_the_same_outputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 3)).astype("f")
    qat = tfdynhp.quantize_aware(_residual_model())
    with pytest.raises(ValueError, match="image_quantizer, relu_a_quantizer.*no range yet"):
        freeze(qat)
    calibrate(qat, x)
    frozen = freeze(qat)
    assert not any(isinstance(layer, QuantizedLayer) for layer in frozen.layers)
    assert all(q.mode == "fixed" for q in quantizers(frozen))
    np.testing.assert_allclose(frozen.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-7)
    with pytest.raises(ValueError, match="not quantization-aware"):
        freeze(_residual_model())


def test_a_sequential_model_and_a_gated_model_are_accepted():
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(2)]
    )
    qat = tfdynhp.quantize_aware(model)
    assert qat.output.shape == (None, 2) and len(quantizers(qat)) == 3
    gated = tfdynhp.gate(model, seed=0)
    qat = tfdynhp.quantize_aware(gated)  # stripped first, as to_int8_tflite does
    assert not tfdynhp.is_gated_model(qat)
    assert any(type(layer).__name__ == "SelectFeatures" for layer in qat.layers)


def test_logits_model_drops_the_final_softmax_and_its_fixed_quantizer():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 3)).astype("f")
    qat = tfdynhp.quantize_aware(_residual_model(), calibration_data=x)
    logits = tfdynhp.quantization.logits_model(qat)
    assert logits.output._keras_history.operation.name == "head_quantizer"
    probabilities = arithmetic.fake_quant(
        keras.ops.convert_to_numpy(keras.ops.softmax(logits.predict(x, verbose=0))),
        0.0, 255 / 256,
    )
    np.testing.assert_allclose(probabilities, qat.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="already the logits"):
        tfdynhp.quantization.logits_model(logits)
