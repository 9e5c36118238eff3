"""A QAT model's int8 export: the same quantization the converter's own post-training
calibration gives (when calibrated on the same data), its ranges used without representative
data, and LiteRT / TFLite Micro outputs that match the simulation."""

import keras
import numpy as np
import pytest
from tfdynhp.converters.int8_check import compare_with_simulation, op_quantization

import tfdynhp
from tfdynhp import converters
from tfdynhp.quantization import quantization_table

pytestmark = pytest.mark.slow


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
