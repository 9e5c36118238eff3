"""Read a `.tflite` flatbuffer: validity check, operator list, tensor types, I/O quantization.

Everything here works on the raw bytes with the flatbuffer schema that ships with TensorFlow, so
it needs no interpreter and gives the same answer for LiteRT, TFLite Micro and the exporters.
"""

import dataclasses

import numpy as np

_IDENTIFIER = b"TFL3"

# TensorType enum values of the TFLite schema that are floating point.
_FLOAT_TYPE_NAMES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def _enum_names(enum_cls):
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Shape, dtype and per-tensor quantization of one model input or output.

    Attributes:
        name: Tensor name in the flatbuffer.
        shape: Static shape, batch first (the converter fixes the batch to 1).
        dtype: NumPy dtype name (`"int8"`, `"uint8"`, `"float32"`, ...).
        scale: Quantization scale (`real = scale * (q - zero_point)`), `0.0` if not quantized.
        zero_point: Quantization zero point, `0` if not quantized.
    """

    name: str
    shape: tuple
    dtype: str
    scale: float
    zero_point: int

    def to_dict(self):
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the exporters need to know about a converted model.

    Attributes:
        size_bytes: Length of the flatbuffer.
        ops: Builtin operator names in execution order of first use, e.g.
            `["FULLY_CONNECTED", "SOFTMAX"]`; custom operators appear as `"CUSTOM:<code>"`.
        float_ops: Operators that read or write a floating-point tensor, in execution order,
            with duplicates (one entry per operator instance).
        inputs: One `TensorInfo` per model input.
        outputs: One `TensorInfo` per model output.
        float_op_outputs: `(operator, name of its first output tensor)` of every operator in
            `float_ops`; the converter names tensors after the Keras layers computing them
            (`"functional_1/layer_norm_1/Neg"`).
    """

    size_bytes: int
    ops: tuple
    float_ops: tuple
    inputs: tuple
    outputs: tuple
    float_op_outputs: tuple = ()


def check_tflite_bytes(tflite_bytes):
    """Checks that `tflite_bytes` looks like a complete TFLite flatbuffer.

    Args:
        tflite_bytes: The model, as `bytes` or `bytearray`.

    Returns:
        The model as `bytes`.

    Raises:
        TypeError: If `tflite_bytes` is not bytes-like.
        ValueError: If the `TFL3` file identifier is missing or the flatbuffer is truncated or
            corrupt.
    """
    if isinstance(tflite_bytes, (bytearray, memoryview)):
        tflite_bytes = bytes(tflite_bytes)
    if not isinstance(tflite_bytes, bytes):
        raise TypeError(
            "Expected the .tflite model as `bytes` (e.g. the return value of "
            f"`to_int8_tflite` or `open(path, 'rb').read()`). Received: {type(tflite_bytes)}"
        )
    if len(tflite_bytes) < 8 or tflite_bytes[4:8] != _IDENTIFIER:
        raise ValueError(
            "These bytes are not a TFLite model: expected the flatbuffer identifier "
            f"{_IDENTIFIER!r} at bytes 4..8. Received: {tflite_bytes[4:8]!r} "
            f"({len(tflite_bytes)} bytes). Pass the bytes of a `.tflite` file, opened in 'rb' mode."
        )
    _unpack(tflite_bytes)
    return tflite_bytes


def _unpack(tflite_bytes):
    schema = _schema()
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite_bytes, 0))
    except Exception as e:  # struct.error, IndexError, ... from out-of-range reads
        raise ValueError(
            f"The TFLite flatbuffer ({len(tflite_bytes)} bytes) is truncated or corrupt and "
            f"cannot be parsed: {type(e).__name__}: {e}. Re-export the model or re-copy the file."
        ) from e
    if not model.subgraphs:
        raise ValueError("The TFLite model has no subgraph. Re-export the model.")
    return model


def _op_name(opcode, builtin_names):
    code = max(opcode.builtinCode, opcode.deprecatedBuiltinCode)
    name = builtin_names.get(code, f"BUILTIN_{code}")
    if name == "CUSTOM":
        custom = opcode.customCode
        if isinstance(custom, bytes):
            custom = custom.decode("utf-8", "replace")
        return f"CUSTOM:{custom}"
    return name


def _tensor_info(tensor, type_names):
    q = tensor.quantization
    scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
    zero_point = (
        int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
    )
    name = tensor.name.decode("utf-8", "replace") if isinstance(tensor.name, bytes) else tensor.name
    shape = () if tensor.shape is None else tuple(int(d) for d in tensor.shape)
    return TensorInfo(
        name=name or "",
        shape=shape,
        dtype=type_names[tensor.type].lower(),
        scale=scale,
        zero_point=zero_point,
    )


def _load(tflite_bytes):
    """Checks and parses a model: `(bytes, ModelT, builtin operator names, tensor type names)`."""
    tflite_bytes = check_tflite_bytes(tflite_bytes)
    schema = _schema()
    model = _unpack(tflite_bytes)
    return (tflite_bytes, model, _enum_names(schema.BuiltinOperator),
            _enum_names(schema.TensorType))


def _operators(model, builtin_names):
    """`(name, op, tensors, tensor indices)` of every operator instance of every subgraph, in
    order; the indices are the op's inputs then outputs, optional ones left out."""
    for subgraph in model.subgraphs:
        tensors = subgraph.tensors or []
        for op in subgraph.operators or []:
            name = _op_name(model.operatorCodes[op.opcodeIndex], builtin_names)
            indices = [i for i in list(op.inputs) + list(op.outputs) if i >= 0]
            yield name, op, tensors, indices


def read_model_info(tflite_bytes):
    """Reads operators, floating-point operators and I/O tensors of a `.tflite` model.

    Args:
        tflite_bytes: The model bytes.

    Returns:
        A `ModelInfo`.

    Raises:
        ValueError: If the bytes are not a valid TFLite model (see `check_tflite_bytes`).
    """
    tflite_bytes, model, builtin_names, type_names = _load(tflite_bytes)
    float_types = {getattr(_schema().TensorType, n) for n in _FLOAT_TYPE_NAMES}
    ops, float_ops, float_op_outputs = [], [], []
    for name, op, tensors, indices in _operators(model, builtin_names):
        if name not in ops:
            ops.append(name)
        if any(tensors[i].type in float_types for i in indices):
            float_ops.append(name)
            outputs = [i for i in op.outputs if i >= 0]
            tensor = _tensor_info(tensors[outputs[0]], type_names).name if outputs else ""
            float_op_outputs.append((name, tensor))
    main = model.subgraphs[0]
    inputs = tuple(_tensor_info(main.tensors[i], type_names) for i in main.inputs)
    outputs = tuple(_tensor_info(main.tensors[i], type_names) for i in main.outputs)
    return ModelInfo(
        size_bytes=len(tflite_bytes),
        ops=tuple(ops),
        float_ops=tuple(float_ops),
        inputs=inputs,
        outputs=outputs,
        float_op_outputs=tuple(float_op_outputs),
    )


def op_tensor_types(tflite_bytes):
    """Every operator instance with the types of its tensors, in execution order.

    Args:
        tflite_bytes: The model bytes.

    Returns:
        A list of `(op_name, [(dtype, is_constant), ...])`, one entry per operator instance,
        its inputs then outputs (optional inputs left out). `dtype` is the lower-case TFLite
        type name (`"int8"`, `"int32"`, `"float32"`, `"int4"`, ...); a tensor is constant when
        its buffer holds data (weights, bias, shapes).

    Raises:
        ValueError: If the bytes are not a valid TFLite model (see `check_tflite_bytes`).
    """
    _, model, builtin_names, type_names = _load(tflite_bytes)
    buffers = model.buffers or []

    def constant(tensor):
        buffer = buffers[tensor.buffer] if 0 < tensor.buffer < len(buffers) else None
        has_data = buffer is not None and buffer.data is not None and len(buffer.data) > 0
        return bool(has_data or (buffer is not None and buffer.size))

    return [(name, [(type_names[tensors[i].type].lower(), constant(tensors[i])) for i in indices])
            for name, _, tensors, indices in _operators(model, builtin_names)]


def op_shapes(tflite_bytes):
    """Every operator instance with the shapes of its tensors, in execution order.

    Args:
        tflite_bytes: The model bytes.

    Returns:
        A list of `(op_name, input_shapes, output_shapes)`, one entry per operator instance of
        the main subgraph; shapes are tuples (optional inputs left out).

    Raises:
        ValueError: If the bytes are not a valid TFLite model (see `check_tflite_bytes`).
    """
    _, model, builtin_names, _ = _load(tflite_bytes)
    main = model.subgraphs[0]
    tensors = main.tensors or []

    def shape(i):
        return () if tensors[i].shape is None else tuple(int(d) for d in tensors[i].shape)

    return [(_op_name(model.operatorCodes[op.opcodeIndex], builtin_names),
             [shape(i) for i in op.inputs if i >= 0], [shape(i) for i in op.outputs if i >= 0])
            for op in main.operators or []]


def quantize(x, info):
    """Quantizes float values for a tensor: `q = clip(round(x / scale) + zero_point)`.

    Rounds half away from zero, as TFLite's reference kernels do.

    Args:
        x: Float array.
        info: The `TensorInfo` of the tensor to fill.

    Returns:
        Array of dtype `info.dtype`. Float tensors are returned unchanged (as float32).
    """
    dtype = np.dtype(info.dtype)
    x = np.asarray(x, dtype=np.float32)
    if not np.issubdtype(dtype, np.integer) or info.scale == 0.0:
        return x.astype(dtype)
    v = x / np.float32(info.scale)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + info.zero_point
    limits = np.iinfo(dtype)
    return np.clip(q, limits.min, limits.max).astype(dtype)


def dequantize(q, info):
    """Maps quantized values back to floats: `scale * (q - zero_point)`."""
    q = np.asarray(q)
    if info.scale == 0.0:
        return q.astype(np.float32)
    return (np.float32(info.scale) * (q.astype(np.float32) - info.zero_point)).astype(np.float32)
