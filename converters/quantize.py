"""Full-integer (int8) post-training quantization of a Keras 3 model to TFLite.

The model is exported to a SavedModel with a batch-1 signature (`model.export`), then converted
with `tf.lite.TFLiteConverter` restricted to `TFLITE_BUILTINS_INT8`. The converter can still
leave an op in float between DEQUANTIZE/QUANTIZE pairs, or ask for Flex (TF Select) kernels;
both are rejected here with the op's name, because neither runs on a microcontroller.
"""

import re
import tempfile

import numpy as np
from tfdynhp.converters import tflite_model

IO_DTYPES = ("int8", "uint8")
_QUANT_WRAPPERS = ("QUANTIZE", "DEQUANTIZE")


def _maybe_strip(model):
    """Strips tfdynhp gates (if the model is gated), and rebuilds a model that computes in
    float16 (a `mixed_float16` policy) under float32: TFLite's int8 conversion takes float32
    graphs, and mixed precision keeps its variables in float32 anyway."""
    try:
        from tfdynhp.model.gating import float32_model, is_gated_model, strip
    except ImportError:
        return model
    if is_gated_model(model):
        model = strip(model)
    return float32_model(model)


def model_io_shape(model):
    """Returns the input shape (batch dimension first, usually `None`) of a one-input model.

    Raises:
        TypeError: If `model` is not a built `keras.Model`.
        ValueError: If the model does not have exactly one input and one output.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a `keras.Model`. Received: {type(model).__name__}. Build a Keras model "
            "(or pass the bytes returned by `to_int8_tflite` where a model is accepted)."
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError) as e:
        raise ValueError(
            "The model has no defined inputs. Build it first, e.g. start a Sequential model "
            "with `keras.Input(shape)` or call it once on data."
        ) from e
    if inputs is None or len(inputs) != 1 or outputs is None or len(outputs) != 1:
        n_in = 0 if inputs is None else len(inputs)
        n_out = 0 if outputs is None else len(outputs)
        raise ValueError(
            "Expected a model with exactly one input and one output. "
            f"Received: {n_in} inputs and {n_out} outputs."
        )
    return tuple(inputs[0].shape)


def check_representative_data(representative_data, input_shape):
    """Validates calibration samples against the model's input shape.

    Args:
        representative_data: Array-like of shape `(num_samples,) + input_shape[1:]`.
        input_shape: The model input shape, batch first.

    Returns:
        The data as a float32 NumPy array.

    Raises:
        ValueError: On a shape mismatch, an empty array or non-finite values.
    """
    expected = "(num_samples, " + ", ".join(str(d) for d in input_shape[1:]) + ")"
    try:
        data = np.asarray(representative_data, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"`representative_data` must be a float array of shape {expected}. It could not be "
            f"converted to float32: {e}"
        ) from e
    if data.ndim != len(input_shape) or tuple(data.shape[1:]) != tuple(input_shape[1:]):
        raise ValueError(
            f"`representative_data` must have shape {expected} to match the model input "
            f"{tuple(input_shape)}. Received: shape={data.shape}. Pass a batch of training "
            "samples, preprocessed exactly as for `model.fit`."
        )
    if data.shape[0] == 0:
        raise ValueError(
            f"`representative_data` is empty. Expected shape {expected} with at least one "
            "sample (100-500 training samples are typical)."
        )
    if not np.all(np.isfinite(data)):
        raise ValueError("`representative_data` contains NaN or infinite values. Clean it first.")
    return data


def _ops_from_converter_error(message):
    ops = re.findall(r"TF Select ops: ([^\n]+)", message)
    if ops:
        return [o.strip() for o in ops[0].split(",") if o.strip()]
    found = re.findall(r"'(tf\.\w+|tfl\.\w+)' op", message)
    return list(dict.fromkeys(found))


def _reject_float_ops(info):
    compute = [op for op in info.float_ops if op not in _QUANT_WRAPPERS]
    if compute:
        names = ", ".join(dict.fromkeys(compute))
        raise ValueError(
            f"Op(s) {names} have no int8 kernel: the converter left them in float32 between "
            "DEQUANTIZE/QUANTIZE, which an int8-only runtime cannot run. Replace the layer "
            "that produces them (e.g. with an integer-friendly activation) before exporting."
        )
    if info.float_ops:
        names = ", ".join(dict.fromkeys(info.float_ops))
        raise ValueError(
            f"The converted model still has float32 tensors around op(s) {names}. Expected a "
            "fully int8 graph; check that the model input and output are float32 Keras tensors."
        )
    custom = [op for op in info.ops if op.startswith("CUSTOM:")]
    if custom:
        raise ValueError(
            f"Op(s) {', '.join(custom)} need custom or Flex kernels, which int8 TFLite and TFLite "
            "Micro builds do not have. Use layers made of TFLite builtin ops."
        )


def to_int8_tflite(model, representative_data, io_dtype="int8", max_samples=500):
    """Converts a Keras 3 model to a full-integer (int8) TFLite flatbuffer.

    Weights and activations are int8 (biases int32), every op uses a TFLite builtin int8
    kernel, and the model input and output are `io_dtype`. A tfdynhp gated model is stripped
    of its gates first (`tfdynhp.model.gating.strip`), and a model trained under a
    `mixed_float16` policy is rebuilt in float32 with its weights (`float32_model`). The model is exported with a batch size of 1,
    as microcontrollers and the demo apps run it.

    Args:
        model: A built single-input, single-output `keras.Model`.
        representative_data: Float array of shape `(num_samples,) + input_shape[1:]` used to
            calibrate activation ranges; training samples preprocessed as for `fit`.
        io_dtype: `"int8"` or `"uint8"`, the type of the model's input and output tensors.
            Defaults to `"int8"`.
        max_samples: At most this many calibration samples are used. Defaults to `500`.

    Returns:
        The `.tflite` model as `bytes`.

    Raises:
        TypeError: If `model` is not a `keras.Model`.
        ValueError: If `io_dtype` is unknown, `representative_data` does not match the model
            input, or an op would need float or Flex (TF Select) kernels.

    Example:

    >>> tflite_bytes = to_int8_tflite(model, x_train[:200])
    >>> open("model.tflite", "wb").write(tflite_bytes)
    """
    import tensorflow as tf

    if io_dtype not in IO_DTYPES:
        raise ValueError(f"`io_dtype` must be one of {IO_DTYPES}. Received: io_dtype={io_dtype!r}")
    if not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"`max_samples` must be a positive integer. Received: {max_samples!r}")
    model = _maybe_strip(model)
    input_shape = model_io_shape(model)
    data = check_representative_data(representative_data, input_shape)[:max_samples]

    def representative_dataset():
        for i in range(data.shape[0]):
            yield [data[i : i + 1]]

    tf_io_dtype = tf.int8 if io_dtype == "int8" else tf.uint8
    signature = [tf.TensorSpec((1,) + tuple(input_shape[1:]), tf.float32)]
    with tempfile.TemporaryDirectory(prefix="tfdynhp-export-") as saved_model_dir:
        model.export(
            saved_model_dir, format="tf_saved_model", input_signature=signature, verbose=False
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf_io_dtype
        converter.inference_output_type = tf_io_dtype
        try:
            tflite_bytes = converter.convert()
        except Exception as e:  # ConverterError: its class moved across TF versions.
            message = str(e)
            ops = _ops_from_converter_error(message)
            if not ops:
                raise
            raise ValueError(
                f"Op(s) {', '.join(ops)} have no TFLite int8 builtin kernel (they would need "
                "Flex/TF Select kernels). Replace the layer that uses them before exporting."
            ) from e
    info = tflite_model.read_model_info(tflite_bytes)
    _reject_float_ops(info)
    return tflite_bytes


__all__ = ["IO_DTYPES", "check_representative_data", "model_io_shape", "to_int8_tflite"]

