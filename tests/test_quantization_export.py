"""A QAT model's int8 export: the same quantization the converter's own post-training
calibration gives (when calibrated on the same data), its ranges used without representative
data, and LiteRT / TFLite Micro outputs that match the simulation."""

import keras
import numpy as np
import pytest
from conftest import randomize_batchnorm
from tfdynhp.converters import int8_check
from tfdynhp.converters.int8_check import compare_with_simulation, op_quantization

import tfdynhp
from tfdynhp import converters, layer_types
from tfdynhp.layer_types import registry
from tfdynhp.quantization import arithmetic, quantization_table

pytestmark = pytest.mark.slow



@pytest.fixture(autouse=True)
def _seeded():
    """The layers' initial kernels: every test here is deterministic (TFLite Micro's
    agreement with the simulation depends on the random weights)."""
    keras.utils.set_random_seed(0)

def _small_cnn(rng):
    inputs = keras.Input((10, 10, 2))
    x = keras.layers.Conv2D(6, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu6")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(12, activation="relu")(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 2.0, n), rng.normal(size=n), rng.normal(size=n) * 0.3,
                rng.uniform(0.3, 2.0, n),
            ])
    return model


def test_calibrated_qat_export_has_the_converters_own_post_training_quantization():
    rng = np.random.default_rng(0)
    model = _small_cnn(rng)
    x = rng.normal(size=(60, 10, 10, 2)).astype("f")
    ptq = op_quantization(converters.to_int8_tflite(model, x))
    qat = tfdynhp.quantize_aware(model, calibration_data=x)
    ours = op_quantization(converters.to_int8_tflite(qat))  # no representative data
    assert [op.op for op in ours] == [op.op for op in ptq] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
        "FULLY_CONNECTED", "SOFTMAX",
    ]  # BN folded, ReLU/ReLU6 fused: no extra op
    for mine, theirs in zip(ours, ptq):
        assert mine.output_scale == pytest.approx(theirs.output_scale, rel=1e-5), mine.op
        assert mine.output_zero_point == theirs.output_zero_point, mine.op
        assert mine.output_shape == theirs.output_shape
        assert mine.weight_shape == theirs.weight_shape
        if theirs.weight_scales is not None:
            np.testing.assert_allclose(mine.weight_scales, theirs.weight_scales, rtol=1e-5)
    # ... and they are the scales and zero points of the QAT model's own quantizers.
    table = {name: (scale, zp) for name, scale, zp, _ in quantization_table(qat)}
    exported = {(op.output_scale, op.output_zero_point) for op in ours}
    for scale, zero_point in table.values():
        assert any(
            abs(s - scale) <= 1e-6 * scale and z == zero_point for s, z in exported
        ) or scale == pytest.approx(converters.read_model_info(
            converters.to_int8_tflite(qat)).inputs[0].scale)


def _residual(rng):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    a = keras.layers.ReLU()(x)
    b = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(a)
    c = keras.layers.Conv2D(8, 1)(a)
    c6 = keras.layers.ReLU(max_value=6.0)(c)
    x = keras.layers.Add()([b, c6, c])
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))  # logits out


def _conv1d(rng):
    inputs = keras.Input((20, 3))
    x = keras.layers.Conv1D(6, 5, activation="relu")(inputs)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(6, 3)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(x))


@pytest.mark.parametrize(
    "build, ranges",
    [(_residual, "ema"), (_conv1d, "learned")],
    ids=["add-gap-unfused-ema", "conv1d-sigmoid-learned"],
)
def test_qat_export_matches_the_simulation_in_litert_and_tflm(build, ranges):
    rng = np.random.default_rng(1)
    model = build(rng)
    shape = model.inputs[0].shape[1:]
    x = rng.normal(size=(200, *shape)).astype("f")
    qat = tfdynhp.quantize_aware(model, calibration_data=x[:100], ranges=ranges)
    before = quantization_table(qat)
    qat.compile(keras.optimizers.SGD(1e-3), "mse")
    qat.fit(x[:100], qat.predict(x[:100], verbose=0) * 0.9, epochs=1, batch_size=25, verbose=0)
    assert quantization_table(qat) != before  # the ranges moved in training
    tflite = converters.to_int8_tflite(qat)
    info = converters.read_model_info(tflite)
    assert info.float_ops == () and info.inputs[0].dtype == "int8"
    simulated = qat.predict(x[100:], verbose=0)
    for runtime in ("litert", "tflm"):
        result = compare_with_simulation(tflite, simulated, x[100:], runtime=runtime)
        # Random weights and data: near-ties between outputs are common, so the argmax
        # criterion is left to the trained models of test_quantization_end_to_end.py.
        assert result["within_one_step"] >= 0.99, result
        assert result["max_steps"] <= 2, result


def test_representative_data_is_required_only_for_a_float_model(tmp_path):
    rng = np.random.default_rng(0)
    model = _small_cnn(rng)
    with pytest.raises(ValueError, match="`representative_data` is required"):
        converters.to_int8_tflite(model)
    qat = tfdynhp.quantize_aware(model)
    with pytest.raises(ValueError, match="no range yet"):
        converters.to_int8_tflite(qat)
    x = rng.normal(size=(8, 10, 10, 2)).astype("f")
    tfdynhp.quantization.calibrate(qat, x)
    with pytest.raises(ValueError, match="must have shape"):
        converters.to_int8_tflite(qat, x[:, :5])
    # A deployment bundle takes the QAT model too: its samples are only bundled.
    files = converters.export(qat, "pi", tmp_path / "pi", x)
    with open(files["model"], "rb") as f:
        assert f.read() == converters.to_int8_tflite(qat)


def _calibrated_export(model, x):
    qat = tfdynhp.quantize_aware(model, calibration_data=x)
    return qat, converters.to_int8_tflite(qat)


@pytest.mark.parametrize(
    "pool",
    [keras.layers.AveragePooling2D(2), keras.layers.AveragePooling2D(3, 1, padding="same"),
     keras.layers.AveragePooling2D((4, 3))],
    ids=["2x2-ties", "3x3-same-borders", "4x3"],
)
def test_average_pooling_is_simulated_bit_exactly(pool):
    # TFLite's AVERAGE_POOL_2D keeps its input's scale and rounds the integer average half
    # away from zero (half the 2x2 windows are ties): the simulation matches it exactly.
    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Flatten()(pool(inputs)))
    x = (rng.normal(size=(120, 8, 8, 3)) * 3 - 1).astype("f")
    qat, tflite = _calibrated_export(model, x[:60])
    ops = op_quantization(tflite)
    assert [op.op for op in ops] == ["AVERAGE_POOL_2D", "RESHAPE"]
    scale, zero_point = qat.get_layer(model.layers[0].name + "_quantizer").quantization_params()
    assert ops[0].output_scale == pytest.approx(scale) and ops[0].output_zero_point == zero_point
    simulated = qat.predict(x[60:], verbose=0)
    for runtime in ("litert", "tflm"):
        assert compare_with_simulation(tflite, simulated, x[60:], runtime)["exact"] == 1.0


def test_average_pooling_rounds_half_away_from_zero_by_hand():
    # int8 values -1 and -2 average to -1.5: TFLite gives -2 (half away from zero), where
    # TensorFlow's FakeQuant (half up) would give -1.
    inputs = keras.Input((2, 2, 1))
    model = keras.Model(inputs, keras.layers.AveragePooling2D(2)(inputs))
    qat = tfdynhp.quantize_aware(model, calibration_data=np.array(
        [[[[-1.28], [1.27]], [[0.0], [0.0]]]], "f"))  # scale 0.01, zero point 0
    quantizer = quantization_table(qat)[0]
    assert quantizer[1:3] == pytest.approx((0.01, 0))
    x = np.array([[[[-0.01], [-0.02]], [[-0.01], [-0.02]]],
                  [[[0.01], [0.02]], [[0.01], [0.02]]]], "f")
    np.testing.assert_allclose(qat.predict(x, verbose=0).ravel(), [-0.02, 0.02], atol=1e-7)


def test_concatenation_inputs_take_its_scale_as_the_converter_gives_it():
    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    pooled = keras.layers.MaxPooling2D(1, name="pool")(a)
    b = keras.layers.Conv2D(3, 1, name="b")(inputs)
    shared = keras.layers.Conv2D(2, 1, name="shared")(inputs)
    c = keras.layers.Concatenate(name="cat")([pooled, b, shared])
    out = keras.layers.Add()([keras.layers.Conv2D(2, 1)(c), shared])  # `shared` read twice
    model = keras.Model(inputs, keras.layers.Flatten()(out))
    kernel = model.get_layer("shared").kernel
    kernel.assign(kernel * 0.1)  # a narrower range than the concatenation's: requantized
    x = (rng.normal(size=(200, 8, 8, 3)) * 3 - 1).astype("f")
    qat, tflite = _calibrated_export(model, x[:100])
    names = [q.name for q in tfdynhp.quantization.quantizers(qat)]
    # `a` (through the max pooling) and `b` are computed only for the concatenation: stored at
    # its scale, no quantizer of their own; `shared` keeps its own and is requantized.
    assert "a_quantizer" not in names and "b_quantizer" not in names
    assert "shared_quantizer" in names and "cat_quantizer" in names
    ours = op_quantization(tflite)
    assert [op.op for op in ours].count("QUANTIZE") == 1  # `shared` requantized
    cat = next(op for op in ours if op.op == "CONCATENATION")
    scale, zero_point = qat.get_layer("cat_quantizer").quantization_params()
    assert cat.output_scale == pytest.approx(scale) and cat.output_zero_point == zero_point
    simulated = qat.predict(x[100:], verbose=0)
    result = compare_with_simulation(tflite, simulated, x[100:], "litert")
    assert result["within_one_step"] >= 0.999 and result["max_steps"] <= 2, result
    # TFLite Micro's reference kernels round their multipliers differently from LiteRT's
    # (seeds 0-3: 97.8-100 % within one step).
    result = compare_with_simulation(tflite, simulated, x[100:], "tflm")
    assert result["within_one_step"] >= 0.95 and result["max_steps"] <= 3, result


def test_separable_convolution_and_padding_convert_as_the_converter_splits_them():
    rng = np.random.default_rng(0)
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.ZeroPadding2D(1)(inputs)
    x = keras.layers.SeparableConv2D(8, 3, strides=2, depth_multiplier=2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.SeparableConv2D(6, 3, padding="same", activation="relu", use_bias=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    randomize_batchnorm(model, rng)
    x = rng.normal(size=(200, 10, 10, 3)).astype("f")
    qat, tflite = _calibrated_export(model, x[:100])
    ours, ptq = op_quantization(tflite), op_quantization(converters.to_int8_tflite(model, x[:100]))
    assert [op.op for op in ours] == [op.op for op in ptq] == [
        "PAD", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "MEAN",
        "FULLY_CONNECTED"]
    for mine, theirs in zip(ours, ptq):
        assert mine.output_scale == pytest.approx(theirs.output_scale, rel=1e-5), mine.op
        assert mine.weight_shape == theirs.weight_shape
    inner = [type(layer.layer).__name__ for layer in qat.layers
             if isinstance(layer, tfdynhp.quantization.QuantizedLayer)]
    assert inner == ["DepthwiseConv2D", "Conv2D"] * 2 + ["Dense"]
    simulated = qat.predict(x[100:], verbose=0)
    result = compare_with_simulation(tflite, simulated, x[100:], "litert")
    assert result["within_one_step"] == 1.0, result
    # Random weights and BatchNormalization statistics, three layers of requantization:
    # TFLite Micro's reference kernels round their multipliers differently from LiteRT's
    # (seeds 0-5: 96.8-99.5 % within one step, at most 3 steps).
    result = compare_with_simulation(tflite, simulated, x[100:], "tflm")
    assert result["within_one_step"] >= 0.95 and result["max_steps"] <= 3, result


def _standalone_relu6(merge):
    inputs = keras.Input((8, 8, 3))
    c = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    r = keras.layers.ReLU(max_value=6.0, name="relu6")(c)  # `c` is read twice: not fused
    x = keras.layers.Flatten()(merge()([r, c]))
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def test_post_training_export_keeps_a_standalone_relu6_on_its_input_scale():
    # The converter's own calibration gives RELU6 an output scale TFLite Micro ignores, and
    # LiteRT and TFLite Micro then disagree (by up to 130 steps here): to_int8_tflite keeps it
    # on its input's scale instead.
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    model = _standalone_relu6(keras.layers.Add)
    x = (rng.normal(size=(100, 8, 8, 3)) * 3).astype("f")
    tflite = converters.to_int8_tflite(model, x[:50])
    assert "RELU6" in converters.read_model_info(tflite).ops
    assert int8_check.rescaling_ignored(tflite) == []
    litert, _ = converters.run_tflite(tflite, x[50:], "litert")
    tflm, _ = converters.run_tflite(tflite, x[50:], "tflm")
    assert np.abs(litert.astype(int) - tflm.astype(int)).max() <= 1
    # A model quantize_aware cannot take (Multiply) is refused with the reason.
    with pytest.raises(ValueError, match="TFLite Micro's RELU6 clamps on its input's scale"):
        converters.to_int8_tflite(_standalone_relu6(keras.layers.Multiply), x[:50])


@keras.saving.register_keras_serializable("tfdynhp_tests")
class UserDense(keras.layers.Layer):
    """A user's fully connected layer (a matmul and a bias: TFLite's FULLY_CONNECTED)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1], self.units))
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")

    def call(self, x):
        return keras.ops.matmul(x, self.w) + self.b

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@pytest.fixture
def user_dense_registered():
    entry = layer_types.register(
        UserDense, role=layer_types.MIXING, fuses_activation=True,
        quantization=layer_types.Quantization(layer_types.KERNEL, kernel="w", bias="b"),
    )
    yield entry
    registry._TYPES.pop(UserDense)


def test_a_users_layer_registered_with_its_quantization_is_simulated_and_exported(
        user_dense_registered):
    rng = np.random.default_rng(0)
    inputs = keras.Input((12,))
    x = keras.layers.ReLU()(UserDense(16, name="mine")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    model.get_layer("mine").b.assign(rng.normal(size=16))
    x = rng.normal(size=(200, 12)).astype("f")
    qat, tflite = _calibrated_export(model, x[:100])
    wrapped = qat.get_layer("quant_mine")
    assert wrapped.activation_name == "relu"  # fused, as the entry says
    kernel, _ = wrapped.export_weights()
    np.testing.assert_array_equal(
        kernel, arithmetic.fake_quant_weights(keras.ops.convert_to_numpy(model.get_layer("mine").w)))
    assert [op.op for op in op_quantization(tflite)] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    simulated = qat.predict(x[100:], verbose=0)
    for runtime in ("litert", "tflm"):
        assert compare_with_simulation(tflite, simulated, x[100:], runtime)[
            "within_one_step"] == 1.0
