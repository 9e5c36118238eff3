"""A minimal writer of TFLite flatbuffers: tensors, constant buffers, builtin and custom ops.

TFLite Micro's audio front end is a graph of custom operators (`SignalWindow`, `SignalRfft`,
...) that TensorFlow's converter only emits from TensorFlow ops whose Python bindings are not
in any installable package. `Graph` writes such a model directly with the flatbuffer schema that
ships with TensorFlow (`tensorflow.lite.python.schema_py_generated`, object API), and custom
options as FlexBuffers maps (the format TFLM's signal kernels read).

Example:

>>> g = Graph()
>>> x = g.input("x", "int16", (1, 480))
>>> w = g.constant("w", np.ones(480, np.int16))
>>> y = g.tensor("y", "int16", (1, 480))
>>> g.custom("SignalWindow", [x, w], [y], {"shift": 12})
>>> g.output(y)
>>> tflite_bytes = g.to_bytes()
"""

import numpy as np

# numpy dtype name -> TFLite TensorType name.
_TYPES = {
    "float32": "FLOAT32", "int8": "INT8", "uint8": "UINT8", "int16": "INT16",
    "uint16": "UINT16", "int32": "INT32", "uint32": "UINT32", "int64": "INT64",
    "uint64": "UINT64", "bool": "BOOL",
}


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def custom_options(options):
    """FlexBuffers map of `options` (keys sorted, as TFLM's index-based readers expect)."""
    from flatbuffers import flexbuffers

    return flexbuffers.Dumps(dict(sorted(options.items())))


class Graph:
    """One-subgraph TFLite model under construction. Tensors are referred to by index."""

    def __init__(self, description="tfdynhp"):
        self._schema = _schema()
        self.description = description
        self.tensors = []
        self.buffers = [self._schema.BufferT()]  # buffer 0: the empty sentinel
        self.operators = []
        self.opcodes = []  # (builtin code, custom name)
        self.inputs = []
        self.outputs = []

    def tensor(self, name, dtype, shape, data=None, scale=None, zero_point=None,
               quantized_dimension=0):
        """Adds a tensor; `data` (array) makes it a constant. Returns its index.

        Args:
            name: Tensor name.
            dtype: numpy dtype name (`"int8"`, `"int16"`, `"uint32"`, ...).
            shape: Static shape.
            data: Constant values, or `None` for an activation.
            scale, zero_point: Affine quantization, per tensor (scalars) or per channel
                (sequences along `quantized_dimension`).
            quantized_dimension: Channel axis of per-channel quantization. Defaults to `0`.
        """
        schema = self._schema
        t = schema.TensorT()
        t.name = name
        t.type = getattr(schema.TensorType, _TYPES[np.dtype(dtype).name])
        t.shape = [int(d) for d in shape]
        t.buffer = 0
        if data is not None:
            array = np.ascontiguousarray(np.asarray(data, dtype=dtype).reshape(t.shape))
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(array.tobytes(), np.uint8)
            self.buffers.append(buffer)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = schema.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(scale)]
            q.zeroPoint = [int(z) for z in np.atleast_1d(0 if zero_point is None
                                                         else zero_point)]
            q.quantizedDimension = int(quantized_dimension)
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def constant(self, name, data, dtype=None, **quantization):
        """Adds a constant tensor of `data`'s shape. Returns its index."""
        data = np.asarray(data, dtype=dtype)
        return self.tensor(name, data.dtype.name, data.shape, data, **quantization)

    def input(self, name, dtype, shape, **quantization):
        """Adds a model input. Returns its index."""
        index = self.tensor(name, dtype, shape, **quantization)
        self.inputs.append(index)
        return index

    def output(self, index):
        """Marks tensor `index` as a model output."""
        self.outputs.append(index)

    def _opcode(self, builtin, custom=None):
        key = (builtin, custom)
        if key not in self.opcodes:
            self.opcodes.append(key)
        return self.opcodes.index(key)

    def builtin(self, op, inputs, outputs, options=None, options_type=None):
        """Adds a builtin operator (`"RESHAPE"`, `"FULLY_CONNECTED"`, ...).

        Args:
            op: `BuiltinOperator` name.
            inputs, outputs: Tensor indices (`-1` for an omitted optional input).
            options: A `*OptionsT` object of the schema, or `None`.
            options_type: Its `BuiltinOptions` name (e.g. `"FullyConnectedOptions"`).
        """
        schema = self._schema
        o = schema.OperatorT()
        o.opcodeIndex = self._opcode(getattr(schema.BuiltinOperator, op))
        o.inputs, o.outputs = list(inputs), list(outputs)
        if options is not None:
            o.builtinOptionsType = getattr(schema.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.operators.append(o)

    def custom(self, name, inputs, outputs, options=None):
        """Adds a custom operator `name` with FlexBuffers `options` (a dict)."""
        schema = self._schema
        o = schema.OperatorT()
        o.opcodeIndex = self._opcode(schema.BuiltinOperator.CUSTOM, name)
        o.inputs, o.outputs = list(inputs), list(outputs)
        o.customOptions = list(custom_options(options or {}))
        o.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
        self.operators.append(o)

    def to_bytes(self):
        """The model as `.tflite` bytes (schema version 3, file identifier `TFL3`)."""
        import flatbuffers

        schema = self._schema
        subgraph = schema.SubGraphT()
        subgraph.tensors = self.tensors
        subgraph.inputs, subgraph.outputs = list(self.inputs), list(self.outputs)
        subgraph.operators = self.operators
        subgraph.name = "main"
        codes = []
        for builtin, custom in self.opcodes:
            code = schema.OperatorCodeT()
            code.builtinCode = builtin
            code.deprecatedBuiltinCode = min(builtin, 127)
            code.version = 1
            if custom is not None:
                code.customCode = custom
            codes.append(code)
        model = schema.ModelT()
        model.version = 3
        model.description = self.description
        model.operatorCodes = codes
        model.subgraphs = [subgraph]
        model.buffers = self.buffers
        builder = flatbuffers.Builder(4096)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())
