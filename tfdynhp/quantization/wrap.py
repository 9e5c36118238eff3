"""`quantize_aware(model)`: the model the TFLite converter and TFLite Micro will run in int8,
simulated in float so that it can be fine-tuned with `fit`.

The model's graph is rebuilt node by node with the converter's rules:

- each Dense, Conv1D, Conv2D and DepthwiseConv2D becomes a `QuantizedLayer` (per-channel int8
  kernel) that absorbs the BatchNormalization reading only its output (folded) and the ReLU or
  ReLU6 reading only that (fused);
- an `ActivationQuantizer` follows every tensor TFLite stores with its own scale: the model
  input, each fused layer's output, `Add` (with its fused ReLU), global average pooling
  (`MEAN`), standalone ReLU/ReLU6; softmax and sigmoid outputs get the fixed range TFLite
  requires (scale 1/256, zero point -128), tanh scale 1/128, zero point 0;
- max pooling, Flatten, Reshape, Dropout and `SelectFeatures` keep their input's scale (their
  int8 kernels move values without rescaling), so no quantizer follows them; a standalone
  ReLU6 keeps it too (TFLite Micro's RELU6 kernel clamps without rescaling), so it reuses its
  input's quantizer.

Anything else is refused with the layer's name, rather than simulated wrongly.
"""

import keras
import numpy as np

from tfdynhp.graph.nodes import functional_of, graph_nodes
from tfdynhp.quantization.layers import (
    FUSABLE_ACTIVATIONS,
    QUANTIZABLE_LAYERS,
    ActivationQuantizer,
    QuantizedLayer,
    RangeRecorder,
    activation_name,
    check_foldable,
)

RANGES = ("ema", "learned")
# Output ranges TFLite fixes for these activations (int8): scale 1/256 zero point -128, and
# scale 1/128 zero point 0 for tanh.
FIXED_RANGES = {
    "softmax": (0.0, 255.0 / 256.0),
    "sigmoid": (0.0, 255.0 / 256.0),
    "tanh": (-1.0, 127.0 / 128.0),
}


def _same_scale_layers():
    from tfdynhp.layers import SelectFeatures

    return (
        keras.layers.Flatten,
        keras.layers.Reshape,
        keras.layers.MaxPooling1D,
        keras.layers.MaxPooling2D,
        keras.layers.Dropout,
        keras.layers.SpatialDropout1D,
        keras.layers.SpatialDropout2D,
        SelectFeatures,
    )


_NEW_SCALE_LAYERS = (
    keras.layers.Add,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
)


def _activation_of(layer):
    """The activation a standalone activation layer computes (`"relu"`, `"softmax"`, ...), or
    `None` if `layer` is not one (or is a ReLU variant TFLite has no fused form of)."""
    if isinstance(layer, keras.layers.Activation):
        return activation_name(layer.activation)
    if isinstance(layer, keras.layers.ReLU):
        if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            return "leaky_or_thresholded_relu"
        if layer.max_value is None:
            return "relu"
        return "relu6" if float(layer.max_value) == 6.0 else "clipped_relu"
    if isinstance(layer, keras.layers.Softmax):
        axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
        return "softmax" if axis in (-1, (-1,)) else "softmax_not_last_axis"
    return None


def _scale_source(tensor, same_scale):
    """The `ActivationQuantizer` that sets the int8 scale of a tensor of the new graph (through
    ops that keep their input's scale), or `None`."""
    while True:
        operation = tensor._keras_history.operation
        if isinstance(operation, ActivationQuantizer):
            return operation
        if not isinstance(operation, same_scale):
            return None
        tensor = operation._inbound_nodes[tensor._keras_history.node_index].input_tensors[0]


def _maybe_strip(model):
    from tfdynhp.model.gating import is_gated_model, strip

    return strip(model) if is_gated_model(model) else model


def _clone(layer, **overrides):
    return layer.__class__.from_config({**layer.get_config(), **overrides})


class _Names:
    def __init__(self, taken):
        self.taken = set(taken)

    def __call__(self, base):
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name


def _consumers(graph_model, nodes):
    """`{id(tensor): [consumer nodes]}`; a model output also counts as a consumer (`None`)."""
    consumers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            consumers.setdefault(id(tensor), []).append(node)
    for tensor in graph_model.outputs:
        consumers.setdefault(id(tensor), []).append(None)
    return consumers


def _only_consumer(node, consumers):
    """The node that alone reads `node`'s single output, else `None`."""
    if len(node.outputs) != 1:
        return None
    readers = consumers.get(id(node.outputs[0]), [])
    return readers[0] if len(readers) == 1 else None


def _unsupported(layer, why=""):
    return ValueError(
        f"quantize_aware cannot simulate layer '{layer.name}' ({type(layer).__name__}){why}. "
        "Supported: Dense, Conv1D, Conv2D, DepthwiseConv2D (each optionally followed by "
        "BatchNormalization and ReLU/ReLU6), Add, GlobalAveragePooling1D/2D, MaxPooling1D/2D, "
        "Flatten, Reshape, Dropout, SelectFeatures, and activations relu, relu6, softmax, "
        "sigmoid, tanh, linear."
    )


def quantize_aware(
    model,
    calibration_data=None,
    *,
    ranges="ema",
    ema_decay=0.99,
    batch_size=128,
):
    """Returns a quantization-aware copy of `model` to fine-tune with `fit`, then export to int8.

    The copy computes in float what the int8 TFLite model will compute: BatchNormalization
    folded into the preceding Dense/Conv/DepthwiseConv, per-channel symmetric int8 kernels
    (`[-127, 127]`), per-tensor asymmetric int8 activations where TFLite stores them, ReLU and
    ReLU6 fused as the converter fuses them, straight-through gradients. Shapes are unchanged
    (a pruned model stays as small). `tfdynhp.converters.to_int8_tflite(qat_model)` then writes
    the int8 file with the ranges of the quantizers (no representative data needed).

    Args:
        model: A built functional or Sequential Keras 3 model (a gated model is stripped
            first with `tfdynhp.strip`). It is not modified.
        calibration_data: Optional float array of inputs. If given, every activation range is
            set to the min/max over these samples, exactly as the converter's post-training
            calibration would set it, so the returned model starts as the post-training int8
            model. Otherwise the first training batch sets the ranges.
        ranges: `"ema"` (ranges track an exponential moving average of each batch's min/max,
            as TF-MOT does) or `"learned"` (trainable min/max). Defaults to `"ema"`.
        ema_decay: Decay of the moving average. Defaults to `0.99`.
        batch_size: Batch size of the calibration pass. Defaults to `128`.

    Returns:
        A new, uncompiled functional `keras.Model` named `<name>_qat`.

    Raises:
        ValueError: On a layer the converter would not quantize as simulated here (named in
            the message), a BatchNormalization that cannot be folded, or calibration data of
            the wrong shape.

    Example:

    >>> qat = tfdynhp.quantize_aware(model, calibration_data=x_train[:500])
    >>> qat.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    >>> qat.fit(x_train, y_train, epochs=1)
    >>> tflite_bytes = tfdynhp.converters.to_int8_tflite(qat)
    """
    if ranges not in RANGES:
        raise ValueError(f"`ranges` must be one of {RANGES}. Received: ranges={ranges!r}")
    model = _maybe_strip(model)
    graph_model = functional_of(model)
    nodes = graph_nodes(model)
    consumers = _consumers(graph_model, nodes)
    names = _Names(layer.name for layer in model.layers)
    same_scale = _same_scale_layers()
    clones = []  # (new layer, old layer) pairs whose weights are copied once built

    def quantizer(base, fixed=None):
        if fixed is not None:
            return ActivationQuantizer("fixed", fixed_range=fixed, name=names(f"{base}_quantizer"))
        return ActivationQuantizer(ranges, ema_decay=ema_decay, name=names(f"{base}_quantizer"))

    def fused_activation(node):
        """The relu/relu6 node reading only `node`'s output, which the converter fuses."""
        reader = _only_consumer(node, consumers)
        if reader is not None and _activation_of(reader.operation) in ("relu", "relu6"):
            return reader
        return None

    input_names = [t._keras_history.operation.name for t in graph_model.inputs]
    inputs = [
        keras.Input(shape=t.shape[1:], dtype=t.dtype, name=name)
        for t, name in zip(graph_model.inputs, input_names)
    ]
    tensors = {
        id(old): quantizer(name)(new)
        for old, new, name in zip(graph_model.inputs, inputs, input_names)
    }
    absorbed = set()
    for node in nodes:
        if id(node) in absorbed:
            continue
        layer = node.operation
        args, kwargs = node.arguments.fill_in(tensors)
        last = node  # the last node of the group computed here
        if isinstance(layer, QUANTIZABLE_LAYERS):
            activation = activation_name(layer.activation)
            batch_norm = None
            reader = _only_consumer(node, consumers)
            if reader is not None and isinstance(
                reader.operation, keras.layers.BatchNormalization
            ):
                batch_norm = reader.operation
                check_foldable(batch_norm, layer, len(node.outputs[0].shape))
                absorbed.add(id(reader))
                last = reader
            inner_activation = activation if activation in FUSABLE_ACTIVATIONS else "linear"
            if inner_activation == "linear":
                fused = fused_activation(last)
                if fused is not None:
                    inner_activation = _activation_of(fused.operation)
                    absorbed.add(id(fused))
                    last = fused
            inner = _clone(layer, activation=inner_activation)
            bn = None if batch_norm is None else _clone(batch_norm)
            wrapped = QuantizedLayer(inner, bn, name=names(f"quant_{layer.name}"))
            outputs = wrapped(*args, **kwargs)
            clones.append((inner, layer))
            if bn is not None:
                clones.append((bn, batch_norm))
            outputs = quantizer(last.operation.name)(outputs)
            if activation not in FUSABLE_ACTIVATIONS:
                if activation not in FIXED_RANGES:
                    raise _unsupported(layer, f": activation '{activation}' has no int8 kernel")
                act = keras.layers.Activation(activation, name=names(f"{layer.name}_{activation}"))
                outputs = quantizer(act.name, FIXED_RANGES[activation])(act(outputs))
        elif isinstance(layer, same_scale):
            clone = _clone(layer)
            outputs = clone(*args, **kwargs)
            clones.append((clone, layer))
        elif isinstance(layer, keras.layers.BatchNormalization):
            raise _unsupported(
                layer,
                ": a BatchNormalization folds only into a Dense/Conv/DepthwiseConv whose output "
                "it alone reads",
            )
        elif isinstance(layer, _NEW_SCALE_LAYERS) or _activation_of(layer) is not None:
            activation = _activation_of(layer)
            if activation is not None and activation not in (
                "linear", "relu", "relu6", *FIXED_RANGES
            ):
                raise _unsupported(layer, f": activation '{activation}'")
            if activation == "linear":
                tensors[id(node.outputs[0])] = args[0]
                continue
            if isinstance(layer, keras.layers.Add) and len(args[0]) > 2:
                # TFLite's ADD takes two inputs: a sum of n is n - 1 ADDs, each stored in int8.
                outputs = args[0][0]
                for i, term in enumerate(args[0][1:-1], start=1):
                    partial = keras.layers.Add(name=names(f"{layer.name}_{i}"))
                    outputs = quantizer(partial.name)(partial([outputs, term]))
                args = ([outputs, args[0][-1]],)
            clone = _clone(layer)
            outputs = clone(*args, **kwargs)
            clones.append((clone, layer))
            if activation == "relu6":
                # TFLite Micro's standalone RELU6 clamps the int8 values without rescaling
                # (its output must have its input's scale): share the input's quantizer.
                source = _scale_source(args[0], same_scale)
                if source is None:
                    raise _unsupported(layer, ": its input has no int8 scale of its own")
                tensors[id(node.outputs[0])] = source(outputs, track=False)
                continue
            if isinstance(layer, keras.layers.Add):
                fused = fused_activation(node)
                if fused is not None:
                    relu = _clone(fused.operation)
                    outputs = relu(outputs)
                    absorbed.add(id(fused))
                    last = fused
            outputs = quantizer(last.operation.name, FIXED_RANGES.get(activation))(outputs)
        else:
            raise _unsupported(layer)
        tensors[id(last.outputs[0])] = outputs

    outputs = [tensors[id(t)] for t in graph_model.outputs]
    qat = keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=f"{model.name}_qat",
    )
    for new, old in clones:
        new.set_weights(old.get_weights())
    if calibration_data is not None:
        calibrate(qat, calibration_data, batch_size=batch_size)
    return qat


def quantizers(model):
    """The `ActivationQuantizer` layers of `model`, in graph order."""
    return [layer for layer in model.layers if isinstance(layer, ActivationQuantizer)]


def is_quantized_model(model):
    """Whether `model` is a quantization-aware model (has an `ActivationQuantizer`)."""
    return isinstance(model, keras.Model) and bool(quantizers(model))


def _check_samples(model, x):
    shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    expected = "(num_samples, " + ", ".join(map(str, shape or ())) + ")"
    try:
        x = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Calibration data must be a float array {expected}: {e}") from e
    if shape is None:
        raise ValueError("Calibration supports one-input models. Received a multi-input model.")
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or len(x) == 0:
        raise ValueError(
            f"Calibration data must have shape {expected} to match the model input. "
            f"Received: shape={x.shape}. Pass training samples preprocessed as for `fit`."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("Calibration data contains NaN or infinite values. Clean it first.")
    return x


def calibrate(model, x, batch_size=128):
    """Sets every tracked activation range of a quantization-aware model from data.

    The float model (no fake quantization, kernels not quantized) is run on `x` and each
    range becomes the min/max of its tensor over all samples: what the TFLite converter's
    post-training calibration computes from a representative data set.

    Args:
        model: A model returned by `quantize_aware`.
        x: Float array `(num_samples,) + input_shape`.
        batch_size: Samples per forward pass. Defaults to `128`.

    Returns:
        `model`, with its ranges set.

    Raises:
        ValueError: If `model` has no quantizers or `x` does not match its input.
    """
    if not is_quantized_model(model):
        raise ValueError(
            f"Model '{model.name}' has no ActivationQuantizer. Pass the model returned by "
            "`tfdynhp.quantize_aware`."
        )
    x = _check_samples(model, x)
    tracked = [q for q in quantizers(model) if q.mode != "fixed"]
    wrapped = [layer for layer in model.layers if isinstance(layer, QuantizedLayer)]
    for layer in tracked:
        layer._calibration = RangeRecorder()
    for layer in wrapped:
        layer._calibration = True
    try:
        for start in range(0, len(x), int(batch_size)):
            model(x[start : start + int(batch_size)], training=False)
        results = [layer._calibration for layer in tracked]
    finally:
        for layer in tracked + wrapped:
            layer._calibration = None
    for layer, result in zip(tracked, results):
        layer.range_min.assign(result.min)
        layer.range_max.assign(result.max)
        layer.initialized.assign(1.0)
    return model
