"""Full-integer (int8) post-training quantization of a Keras 3 model to TFLite.

The model is exported to a SavedModel with a batch-1 signature (`model.export`), then converted
with `tf.lite.TFLiteConverter` restricted to `TFLITE_BUILTINS_INT8`. The converter can still
leave an op in float between DEQUANTIZE/QUANTIZE pairs, or ask for Flex (TF Select) kernels;
both are rejected here with the op's name, because neither runs on a microcontroller.
"""

import re
import tempfile

import numpy as np
from tfdynhp.converters import int8_check, tflite_model

IO_DTYPES = ("int8", "uint8")
_QUANT_WRAPPERS = ("QUANTIZE", "DEQUANTIZE")


def _maybe_strip(model):
    """Strips tfdynhp gates (if the gating module exists and the model is gated)."""
    try:
        from tfdynhp.model.gating import is_gated_model, strip
    except ImportError:
        return model
    if is_gated_model(model):
        return strip(model)
    return model


def _maybe_freeze_qat(model):
    """The export form of a quantization-aware model (`tfdynhp.quantize_aware`, or a gated
    model in its QAT phase), else `None`."""
    from tfdynhp.quantization import freeze, is_quantized_model, quantized_forward

    forward = quantized_forward(model)
    if forward is not None:
        return freeze(forward)
    return freeze(model) if is_quantized_model(model) else None


def _on_input_scale(model, data, io_dtype, mismatches):
    """The int8 file of a float model whose standalone ReLU6 the converter gave an output scale
    TFLite Micro ignores: the same post-training calibration through `quantize_aware`, which
    keeps each standalone ReLU6 on its input's scale."""
    from tfdynhp.quantization import quantize_aware

    ops = ", ".join(f"{name} (op {index}: input scale {i[0]:.4g} zero point {i[1]}, output "
                    f"{o[0]:.4g} / {o[1]})" for name, index, i, o in mismatches)
    try:
        qat = quantize_aware(model, calibration_data=data)
    except ValueError as e:
        raise ValueError(
            f"The int8 model has {ops}: TFLite Micro's RELU6 clamps on its input's scale and "
            "ignores the output's, so LiteRT and TFLite Micro would compute different outputs. "
            "tfdynhp re-quantizes such a ReLU6 on its input's scale through "
            f"`tfdynhp.quantize_aware`, which cannot take this model ({e}). Fuse the ReLU6 "
            "(right after the Conv/Dense/Add whose output it alone reads) or use ReLU."
        ) from e
    return to_int8_tflite(qat, io_dtype=io_dtype)


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


def to_int8_tflite(model, representative_data=None, io_dtype="int8", max_samples=500):
    """Converts a Keras 3 model to a full-integer (int8) TFLite flatbuffer.

    Weights and activations are int8 (biases int32), every op uses a TFLite builtin int8
    kernel, and the model input and output are `io_dtype`. A tfdynhp gated model is stripped
    of its gates first (`tfdynhp.model.gating.strip`). The model is exported with a batch size of 1,
    as microcontrollers and the demo apps run it.

    A quantization-aware model (`tfdynhp.quantize_aware`, or a gated model fine-tuned by
    `DynHPCallback(final_phase="qat")`) is converted with its own ranges and int8 kernels (its
    `tfdynhp.quantization.freeze` form): no calibration, and `representative_data` is optional
    (only checked against the input shape when given).

    A standalone ReLU6 (not fused into the layer before it) is kept on its input's scale:
    the converter's calibration gives it an output scale of its own, which TFLite Micro's
    RELU6 ignores (LiteRT and TFLite Micro would disagree), so such a model is calibrated
    through `tfdynhp.quantize_aware` instead (same ranges elsewhere); a model it cannot take
    is refused.

    Args:
        model: A built single-input, single-output `keras.Model`.
        representative_data: Float array of shape `(num_samples,) + input_shape[1:]` used to
            calibrate activation ranges; training samples preprocessed as for `fit`. Required
            unless `model` is quantization-aware.
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
    frozen = _maybe_freeze_qat(model)
    model = frozen if frozen is not None else _maybe_strip(model)
    input_shape = model_io_shape(model)
    if frozen is None and representative_data is None:
        raise ValueError(
            "`representative_data` is required to calibrate a float model: pass 100-500 "
            "training samples of shape (num_samples, "
            + ", ".join(str(d) for d in input_shape[1:])
            + "). A quantization-aware model (`tfdynhp.quantize_aware`) needs none."
        )
    if representative_data is not None:
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
        if frozen is None:
            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # A QAT graph carries its ranges in FakeQuant ops. TFLITE_BUILTINS_INT8 alone would make
        # the converter demand a representative data set; an op left in float is rejected
        # below by `_reject_float_ops` instead.
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
    mismatches = int8_check.rescaling_ignored(tflite_bytes)
    if mismatches and frozen is None:
        return _on_input_scale(model, data, io_dtype, mismatches)
    if mismatches:
        raise ValueError(
            f"The int8 model of this quantization-aware model has {mismatches} (op, index, "
            "input and output scale / zero point): TFLite Micro would ignore those output "
            "scales. Expected quantize_aware to keep such ops on their input's scale; please "
            "report the model."
        )
    return tflite_bytes


__all__ = ["IO_DTYPES", "check_representative_data", "model_io_shape", "to_int8_tflite"]

