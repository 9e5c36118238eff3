"""Full-integer (int8) post-training quantization of a Keras 3 model to TFLite.

The model is exported to a SavedModel with a batch-1 signature (`model.export`), then converted
with `tf.lite.TFLiteConverter` restricted to `TFLITE_BUILTINS_INT8`. The converter can still
leave an op in float between DEQUANTIZE/QUANTIZE pairs, or ask for Flex (TF Select) kernels;
both are rejected here with the op's name, because neither runs on a microcontroller.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile

import numpy as np
from tfdynhp.converters import convert_child, int8_check, tflite_model

IO_DTYPES = ("int8", "uint8")
_QUANT_WRAPPERS = ("QUANTIZE", "DEQUANTIZE")


def _maybe_strip(model):
    """Strips tfdynhp gates (if the model is gated), and rebuilds a model that computes in
    float16 (a `mixed_float16` policy) under float32: TFLite's int8 conversion takes float32
    graphs, and mixed precision keeps its variables in float32 anyway."""
    import keras

    try:
        from tfdynhp.model.gating import float32_model, is_gated_model, strip
    except ImportError:
        return model
    if not isinstance(model, keras.Model):
        return model  # refused with a clear message by `model_io_shape`
    if is_gated_model(model):
        model = strip(model)
    return float32_model(model)


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


def layers_named_in(texts, model):
    """The names of `model`'s layers (and `keras.ops` nodes) that the converter's tensor names
    or messages in `texts` mention, in order. Tensors are named after the name scopes of the
    traced call (`"functional_1/layer_norm_1/Neg"`: Keras adds `_1` to each scope)."""
    try:
        from tfdynhp.graph import graph_nodes

        names = {node.operation.name for node in graph_nodes(model)}
    except (ImportError, TypeError, ValueError):
        names = {layer.name for layer in getattr(model, "layers", [])}
    found = []
    for text in texts:
        for scope in re.findall(r"[\w.-]+", str(text).replace("/", " ")):
            candidates = (scope, re.sub(r"_\d+$", "", scope))
            name = next((c for c in candidates if c in names), None)
            if name is not None and name not in found:
                found.append(name)
    return found


def _layer_phrase(layers):
    if not layers:
        return ""
    shown = ", ".join(f"'{name}'" for name in layers[:6]) + (" ..." if len(layers) > 6 else "")
    return f" (computed by layer(s) {shown})"


def _reject_float_ops(info, model=None):
    compute = [op for op in info.float_ops if op not in _QUANT_WRAPPERS]
    if compute:
        names = ", ".join(dict.fromkeys(compute))
        tensors = [t for op, t in info.float_op_outputs if op not in _QUANT_WRAPPERS]
        layers = layers_named_in(tensors, model) if model is not None else []
        raise ValueError(
            f"Op(s) {names}{_layer_phrase(layers)} have no int8 kernel: the converter left "
            "them in float32 between DEQUANTIZE/QUANTIZE, which an int8-only runtime cannot "
            "run. Replace the layer that produces them (e.g. LayerNormalization with "
            "BatchNormalization, or another integer-friendly activation) before exporting."
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


class ConverterCrash(ValueError):
    """TensorFlow's converter died (a signal, e.g. a segmentation fault) converting the model:
    the conversion ran in a child process, so the caller's process lives on. A `ValueError`:
    the model, as it is, cannot be converted."""


def _recurrent_layers(model):
    import keras

    return [layer.name for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))
            and not getattr(getattr(layer, "forward_layer", layer), "unroll", False)]


def _crash_error(returncode, stderr, model):
    signal_name = ""
    if returncode < 0:
        try:
            signal_name = f" ({signal.Signals(-returncode).name})"
        except ValueError:
            pass
    how = (f"killed by signal {-returncode}{signal_name}" if returncode < 0
           else f"exited with code {returncode} without a result")
    tail = "\n".join(stderr.strip().splitlines()[-5:])
    recurrent = _recurrent_layers(model)
    cause = (
        f" The model has recurrent layer(s) {', '.join(repr(n) for n in recurrent)}: "
        "TensorFlow's int8 calibration crashes on LSTM and GRU loops "
        "(tensorflow/tensorflow#41305, #87468). Build them with `unroll=True` (a fixed number "
        "of steps; it converts to int8) or keep the model in float."
        if recurrent else
        " Convert with `isolate=False` under a debugger to see where it fails."
    )
    return ConverterCrash(
        f"TensorFlow's TFLite converter crashed converting model '{model.name}' to int8: the "
        f"conversion process was {how}.{cause}" + (f"\nLast converter output:\n{tail}"
                                                    if tail else "")
    )


class _ConverterFailure(Exception):
    """A Python exception raised by the converter (in the child or in this process)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert_child.py")


def _convert_in_child(saved_model_dir, data, io_dtype, model):
    """Runs `convert_child.py` on the SavedModel in a new Python process; the converter's
    crash is its own."""
    work = os.path.dirname(saved_model_dir)
    data_path = os.path.join(work, "representative.npy")
    out_path = os.path.join(work, "model.tflite")
    np.save(data_path, data)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    result = subprocess.run(
        [sys.executable, _CHILD, saved_model_dir, data_path, io_dtype, out_path],
        capture_output=True, text=True, env=env, check=False,
    )
    if result.returncode == 0 and os.path.isfile(out_path):
        with open(out_path, "rb") as f:
            return f.read()
    error_path = out_path + ".error.json"
    if result.returncode == 1 and os.path.isfile(error_path):
        with open(error_path) as f:
            error = json.load(f)
        raise _ConverterFailure(error["type"], error["message"])
    raise _crash_error(result.returncode, result.stderr, model)


def _convert_in_process(saved_model_dir, data, io_dtype):
    try:
        return convert_child.convert(saved_model_dir, data, io_dtype)
    except Exception as e:  # ConverterError: its class moved across TF versions.
        raise _ConverterFailure(type(e).__name__, str(e)) from e


ISOLATE_OPTIONS = ("auto", True, False)


def to_int8_tflite(model, representative_data=None, io_dtype="int8", max_samples=500,
                   isolate="auto"):
    """Converts a Keras 3 model to a full-integer (int8) TFLite flatbuffer.

    Weights and activations are int8 (biases int32), every op uses a TFLite builtin int8
    kernel, and the model input and output are `io_dtype`. A tfdynhp gated model is stripped
    of its gates first (`tfdynhp.model.gating.strip`), and a model trained under a
    `mixed_float16` policy is rebuilt in float32 with its weights (`float32_model`). The model
    is exported with a batch size of 1, as microcontrollers and the demo apps run it.

    TensorFlow's converter can crash the process running it (a segmentation fault calibrating
    an LSTM or GRU loop); run in a child Python process, the crash raises `ConverterCrash`
    here instead of ending the caller's run. The child costs a Python process importing
    TensorFlow, about 10 times a small model's conversion (`bench/converter_isolation.py`),
    so by default (`isolate="auto"`) only models with the layers known to crash it (recurrent
    layers that are not unrolled) are converted in a child.

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
        isolate: `True` converts in a child process, `False` in this one (a converter
            crash then ends it), `"auto"` in a child for models with recurrent layers that are
            not unrolled. Defaults to `"auto"`.

    Returns:
        The `.tflite` model as `bytes`.

    Raises:
        TypeError: If `model` is not a `keras.Model`.
        ValueError: If `io_dtype` is unknown, `representative_data` does not match the model
            input, or an op would need float or Flex (TF Select) kernels (naming the layers
            computing it).
        ConverterCrash: (a `ValueError`) if the converter crashed, with the likely cause.

    Example:

    >>> tflite_bytes = to_int8_tflite(model, x_train[:200])
    >>> open("model.tflite", "wb").write(tflite_bytes)
    """
    import tensorflow as tf

    if io_dtype not in IO_DTYPES:
        raise ValueError(f"`io_dtype` must be one of {IO_DTYPES}. Received: io_dtype={io_dtype!r}")
    if not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"`max_samples` must be a positive integer. Received: {max_samples!r}")
    if not any(isolate is option for option in ISOLATE_OPTIONS) and isolate != "auto":
        raise ValueError(f"`isolate` must be one of {ISOLATE_OPTIONS}. Received: {isolate!r}")
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
    data = None
    if representative_data is not None:
        data = check_representative_data(representative_data, input_shape)[:max_samples]
    if isolate == "auto":
        isolate = bool(_recurrent_layers(model))
    # A QAT graph carries its ranges in FakeQuant ops: converted without calibration, in
    # this process (quantize_aware takes no recurrent layer).
    convert_data = data if frozen is None else None
    if frozen is not None:
        isolate = False
    signature = [tf.TensorSpec((1,) + tuple(input_shape[1:]), tf.float32)]
    with tempfile.TemporaryDirectory(prefix="tfdynhp-export-") as work:
        saved_model_dir = os.path.join(work, "saved_model")
        model.export(
            saved_model_dir, format="tf_saved_model", input_signature=signature, verbose=False
        )
        try:
            if isolate:
                tflite_bytes = _convert_in_child(saved_model_dir, convert_data, io_dtype, model)
            else:
                tflite_bytes = _convert_in_process(saved_model_dir, convert_data, io_dtype)
        except _ConverterFailure as e:
            message = str(e)
            ops = _ops_from_converter_error(message)
            if not ops:
                raise ValueError(f"TensorFlow's converter failed ({e.kind}): {message}") from e
            layers = layers_named_in(re.findall(r'"([^"]+@)', message) or [message], model)
            raise ValueError(
                f"Op(s) {', '.join(ops)}{_layer_phrase(layers)} have no TFLite int8 builtin "
                "kernel (they would need Flex/TF Select kernels). Replace the layer that uses "
                "them before exporting."
            ) from e
    info = tflite_model.read_model_info(tflite_bytes)
    _reject_float_ops(info, model)
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


__all__ = [
    "IO_DTYPES",
    "ConverterCrash",
    "check_representative_data",
    "model_io_shape",
    "to_int8_tflite",
]

