"""Clear errors from tfdynhp.converters on bad input: each test checks the message."""

import keras
import numpy as np
import pytest

from tfdynhp import converters


def _mlp(activation=None, units=8):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((units,))
    h = keras.layers.Dense(units)(inputs)
    if activation is not None:
        h = keras.layers.Lambda(activation, name="act")(h)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).uniform(-1, 1, size=(32, 8)).astype("float32")


@pytest.fixture(scope="module")
def tflite_bytes(data):
    return converters.to_int8_tflite(_mlp(), data)


def test_representative_data_of_wrong_shape(data):
    with pytest.raises(ValueError, match=r"shape \(num_samples, 8\).*Received: shape=\(32, 7\)"):
        converters.to_int8_tflite(_mlp(), data[:, :7])
    with pytest.raises(ValueError, match=r"Received: shape=\(8,\)"):
        converters.to_int8_tflite(_mlp(), data[0])
    with pytest.raises(ValueError, match="empty"):
        converters.to_int8_tflite(_mlp(), data[:0])
    with pytest.raises(ValueError, match="NaN"):
        converters.to_int8_tflite(_mlp(), np.full((4, 8), np.nan, dtype="float32"))


def test_float_only_op_is_named(data):
    # SIN has no int8 kernel: the converter silently keeps it in float between
    # DEQUANTIZE/QUANTIZE, which to_int8_tflite must reject.
    with pytest.raises(ValueError,
                       match=r"Op\(s\) SIN \(computed by layer\(s\) 'act'\) have no int8 kernel"):
        converters.to_int8_tflite(_mlp(keras.ops.sin), data)


def test_flex_op_is_named(data):
    with pytest.raises(ValueError, match=r"Op\(s\) Erf \(computed by layer\(s\) 'act'\) "
                                         r"have no TFLite int8 builtin kernel"):
        converters.to_int8_tflite(_mlp(keras.ops.erf), data)


def test_layer_normalization_without_int8_kernel_is_named(data):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    h = keras.layers.LayerNormalization(name="norm")(keras.layers.Dense(8)(inputs))
    with pytest.raises(ValueError, match=r"Op\(s\) NEG \(computed by layer\(s\) 'norm'\)"):
        converters.to_int8_tflite(keras.Model(inputs, keras.layers.Dense(3)(h)), data)


@pytest.mark.slow  # the child process imports TensorFlow (~20 s on 2 loaded cores)
def test_conversion_in_a_child_process_gives_the_same_model(data, tflite_bytes):
    isolated = converters.to_int8_tflite(_mlp(), data, isolate=True)
    # The same weights, scales and outputs (tensor names may differ by a scope suffix).
    assert len(isolated) == len(tflite_bytes)
    np.testing.assert_array_equal(converters.run_tflite(isolated, data)[0],
                                  converters.run_tflite(tflite_bytes, data)[0])


@pytest.mark.slow
def test_a_converter_crash_is_an_error_naming_the_cause_not_the_end_of_the_process():
    # TensorFlow 2.21's int8 calibration segfaults on an LSTM loop
    # (tensorflow/tensorflow#41305); a model with a recurrent layer is converted in a child
    # process (isolate="auto").
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 8))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.LSTM(16, name="rnn")(inputs)))
    x = np.random.default_rng(0).normal(size=(16, 10, 8)).astype("float32")
    with pytest.raises(converters.ConverterCrash,
                       match=r"killed by signal 11 \(SIGSEGV\).*recurrent layer\(s\) 'rnn'.*"
                             r"unroll=True"):
        converters.to_int8_tflite(model, x)
    # This process is alive and converts the next model.
    assert converters.to_int8_tflite(_mlp(), x[:, 0, :])[4:8] == b"TFL3"


def test_bad_io_dtype_and_model_type(data):
    with pytest.raises(ValueError, match=r"io_dtype.*Received: io_dtype='float32'"):
        converters.to_int8_tflite(_mlp(), data, io_dtype="float32")
    with pytest.raises(TypeError, match=r"Expected a `keras.Model`. Received: str"):
        converters.to_int8_tflite("model.keras", data)


def test_two_input_model_is_rejected(data):
    a, b = keras.Input((8,)), keras.Input((8,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(ValueError, match="exactly one input and one output. Received: 2 inputs"):
        converters.to_int8_tflite(model, data)


def test_not_a_tflite_file(data):
    for bad in (b"", b"hello world, not a flatbuffer", b"\x00" * 64):
        with pytest.raises(ValueError, match=r"expected the flatbuffer identifier b'TFL3'"):
            converters.evaluate(bad, data, np.zeros(32))
    with pytest.raises(TypeError, match="Expected the .tflite model as `bytes`"):
        converters.read_model_info("model.tflite")


@pytest.mark.parametrize("runtime", ["litert", "tflm"])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.99])
def test_truncated_tflite(tflite_bytes, data, runtime, keep):
    truncated = tflite_bytes[: int(len(tflite_bytes) * keep)]
    with pytest.raises(ValueError, match="truncated or corrupt"):
        converters.evaluate(truncated, data, np.zeros(32), runtime=runtime)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        converters.measure_arena_size(truncated)


def test_unknown_runtime_and_target(tflite_bytes, data, tmp_path):
    with pytest.raises(ValueError, match=r"`runtime` must be one of \('litert', 'tflm'\)"):
        converters.evaluate(tflite_bytes, data, np.zeros(32), runtime="coreml")
    with pytest.raises(ValueError, match=r"Unknown export target 'ios'.*\['android', 'mcu', 'pi'\]"):
        converters.export(tflite_bytes, "ios", tmp_path, data)
    assert not any(tmp_path.iterdir())  # nothing written before the check


def test_evaluate_input_mismatch(tflite_bytes, data):
    with pytest.raises(ValueError, match=r"`x` must have shape \(num_samples, 8\)"):
        converters.evaluate(tflite_bytes, data[:, :4], np.zeros(32))
    with pytest.raises(ValueError, match=r"one label per sample of `x` \(32 samples\)"):
        converters.evaluate(tflite_bytes, data, np.zeros(31))


def test_export_checks_labels_and_data(tflite_bytes, data, tmp_path):
    with pytest.raises(ValueError, match="Expected 3 labels, one per model output. Received: 2"):
        converters.export(tflite_bytes, "pi", tmp_path, data, labels=["a", "b"])
    with pytest.raises(ValueError, match=r"Received: shape=\(32, 5\)"):
        converters.export(tflite_bytes, "pi", tmp_path, data[:, :5])
    with pytest.raises(ValueError, match=r"Unknown board 'arduino-uno'"):
        converters.export(tflite_bytes, "mcu", tmp_path, data, board="arduino-uno")


def test_arena_probe_tells_allocation_failures_from_other_errors(unsupported_op_tflite,
                                                                 tflite_bytes):
    """A model TFLM cannot run at all is not "an arena too small": the error is raised with
    TFLM's own message, while a really too small arena still just answers False."""
    arena = converters.arena
    with pytest.raises(ValueError, match=r"arena size is not the problem: RuntimeError: .*"
                                         r"Didn't find op for builtin opcode 'HASHTABLE_LOOKUP'"):
        arena.runs_with_arena(unsupported_op_tflite, 64 * 1024)
    with pytest.raises(ValueError, match=r"not the problem.*HASHTABLE_LOOKUP"):
        converters.measure_arena_size(unsupported_op_tflite)
    measured = converters.measure_arena_size(tflite_bytes)
    assert arena.runs_with_arena(tflite_bytes, measured)
    assert arena.runs_with_arena(tflite_bytes, measured - arena.ALIGNMENT) is False
    # The search continues past a too small first guess instead of giving up.
    assert converters.measure_arena_size(tflite_bytes, upper=measured // 2 // 16 * 16) == measured
