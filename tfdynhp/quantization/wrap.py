"""`quantize_aware(model)`: the model the TFLite converter and TFLite Micro will run in int8,
simulated in float so that it can be fine-tuned with `fit`.

The model's graph is rebuilt node by node. What each layer becomes is read from its layer
type (`tfdynhp.layer_types`, `Quantization`), so a user's registered layer says how it
quantizes:

- `"kernel"` layers (Dense, Conv1D, Conv2D, DepthwiseConv2D) become a `QuantizedLayer`
  (per-channel int8 kernel) that absorbs the BatchNormalization reading only its output
  (folded, when the type `folds_batch_norm`) and the ReLU or ReLU6 reading only that (fused,
  when it `fuses_activation`); an `ActivationQuantizer` follows;
- `"requantize"` layers (Add, with its fused ReLU; global average pooling; Concatenate; a
  standalone ReLU) are followed by an `ActivationQuantizer` of their own; a `pairwise` one
  with `n` inputs becomes `n - 1` two-input layers, each quantized; a `unified_scale` one
  (Concatenate) shares its quantizer with the inputs computed only for it, as the converter
  gives them its scale (other inputs are requantized to it);
- `"fixed_range"` layers (softmax, sigmoid, tanh) get the range TFLite fixes;
- `"same_scale"` layers (max pooling, Flatten, Reshape, padding, Dropout, `SelectFeatures`)
  keep their input's scale: no quantizer follows them; those that compute new values are put
  back on that grid by their input's quantizer (a ReLU6 clamps on it; an average pooling
  averages the int8 values and rounds half away from zero, as TFLite does);
- `"decompose"` layers (SeparableConv2D) are first split into the layers the converter makes;
- the model input gets a quantizer.

Anything else (`"unsupported"`, `"folded"` where it cannot fold, a type that says nothing) is
refused with the layer's name, rather than simulated wrongly.
"""

import keras
import numpy as np

from tfdynhp.graph.nodes import functional_of, graph_nodes
from tfdynhp.layer_types import (
    DECOMPOSE,
    FIXED_RANGE,
    FOLDED,
    KERNEL,
    REMOVED,
    REQUANTIZE,
    SAME_SCALE,
    UNSUPPORTED,
    quantization_of,
)
from tfdynhp.layer_types.registry import folds_batch_norm, fuses_activation
from tfdynhp.quantization.layers import (
    FUSABLE_ACTIVATIONS,
    ActivationQuantizer,
    QuantizedLayer,
    RangeRecorder,
    activation_name,
    check_foldable,
)

RANGES = ("ema", "learned")


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


def _unified_inputs(nodes, consumers):
    """`{id(tensor): node}` for the tensors stored at the scale of a layer whose inputs all get
    its output's scale (`unified_scale`: CONCATENATION): those computed only for it (through
    layers that keep their input's scale). The converter gives their producer that scale; any
    other input is requantized to it."""
    unified = {}
    for node in nodes:
        spec = quantization_of(node.operation)
        if spec is None or not spec.unified_scale:
            continue
        for tensor in node.input_tensors:
            while len(consumers.get(id(tensor), [])) == 1:
                operation, index, _ = tensor._keras_history
                producer = operation._inbound_nodes[index]
                if producer.is_input:
                    break
                producer_spec = quantization_of(operation)
                if (producer_spec is not None and producer_spec.kind == SAME_SCALE
                        and producer_spec.resnap is None and len(producer.input_tensors) == 1):
                    tensor = producer.input_tensors[0]
                    continue
                unified[id(tensor)] = node
                break
    return unified


def _unsupported(layer, why=""):
    return ValueError(
        f"quantize_aware cannot simulate layer '{layer.name}' ({type(layer).__name__}){why}. "
        "Supported: the layers whose type in tfdynhp.layer_types has a `quantization` (Dense, "
        "Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D, each optionally followed by "
        "BatchNormalization and ReLU/ReLU6; Add, Concatenate, GlobalAveragePooling1D/2D, "
        "MaxPooling1D/2D, AveragePooling1D/2D, ZeroPadding1D/2D, Flatten, Reshape, Dropout, "
        "SelectFeatures; activations relu, relu6, softmax, sigmoid, tanh, linear). Register "
        "another layer type with `tfdynhp.layer_types.register(..., quantization=...)`."
    )


def _spec(layer):
    spec = quantization_of(layer)
    if spec is None:
        raise _unsupported(layer, ": its layer type does not say how TFLite quantizes it")
    if spec.kind == UNSUPPORTED:
        raise _unsupported(layer, f": {spec.reason}")
    return spec


def _scale_source(tensor):
    """The `ActivationQuantizer` that sets the int8 scale of a tensor of the new graph (through
    layers that keep their input's scale), or `None`."""
    while True:
        operation = tensor._keras_history.operation
        if isinstance(operation, ActivationQuantizer):
            return operation
        spec = quantization_of(operation)
        if spec is None or spec.kind != SAME_SCALE:
            return None
        tensor = operation._inbound_nodes[tensor._keras_history.node_index].input_tensors[0]


def decompose(model):
    """A copy of `model` where each layer whose type says `"decompose"` (SeparableConv2D) is
    replaced by the layers the converter makes of it; `model` itself if there is none."""
    nodes = graph_nodes(model)
    if not any(_spec(node.operation).kind == DECOMPOSE for node in nodes):
        return model
    graph_model = functional_of(model)
    inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t._keras_history.operation.name)
              for t in graph_model.inputs]
    tensors = {id(old): new for old, new in zip(graph_model.inputs, inputs)}
    made = {}
    for node in nodes:
        layer = node.operation
        args, kwargs = node.arguments.fill_in(tensors)
        spec = _spec(layer)
        if id(layer) not in made:
            if spec.kind == DECOMPOSE:
                made[id(layer)] = list(spec.decompose(layer))
            else:
                clone = _clone(layer)
                made[id(layer)] = [clone]
        parts = made[id(layer)]
        if spec.kind == DECOMPOSE:
            outputs = args[0]
            for part in parts:
                outputs = part(outputs)
        else:
            outputs = parts[0](*args, **kwargs)
            if layer.weights:
                parts[0].set_weights(layer.get_weights())
        for old, new in zip(node.outputs, keras.tree.flatten(outputs)):
            tensors[id(old)] = new
    outputs = [tensors[id(t)] for t in graph_model.outputs]
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                       outputs[0] if len(outputs) == 1 else outputs, name=model.name)


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
    ReLU6 fused as the converter fuses them, average pooling rounded as TFLite rounds it,
    straight-through gradients. Shapes are unchanged (a pruned model stays as small).
    `tfdynhp.converters.to_int8_tflite(qat_model)` then writes the int8 file with the ranges of
    the quantizers (no representative data needed).

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
    model = decompose(_maybe_strip(model))
    qat = build(model, ranges=ranges, ema_decay=ema_decay)
    if calibration_data is not None:
        calibrate(qat, calibration_data, batch_size=batch_size)
    return qat


def build(model, *, ranges="ema", ema_decay=0.99, share=False, name=None):
    """The quantization-aware graph of `model` (see the module docstring).

    With `share=False` every layer is a copy (the weights copied once built). With
    `share=True` the layers quantized per channel and their folded BatchNormalizations are
    `model`'s own (the graph trains `model`'s variables: a gated model's QAT phase); the other
    layers hold no weights and are copies; gates (`"removed"`) are skipped, so they must be
    identities (`tfdynhp.model.fold_gates`).
    """
    graph_model = functional_of(model)
    nodes = graph_nodes(model)
    consumers = _consumers(graph_model, nodes)
    unified = _unified_inputs(nodes, consumers)
    names = _Names(layer.name for layer in model.layers)
    clones = []  # (new layer, old layer) pairs whose weights are copied once built
    shared = {}  # id(node) -> the quantizer of a `unified_scale` layer and of its inputs

    def copy(layer, **overrides):
        if share and layer.weights:
            raise _unsupported(layer, ": it holds weights, and only layers quantized per "
                               "channel (and their BatchNormalization) are shared")
        clone = _clone(layer, **overrides)
        clones.append((clone, layer))
        return clone

    def quantizer(base, fixed=None):
        if fixed is not None:
            return ActivationQuantizer("fixed", fixed_range=fixed, name=names(f"{base}_quantizer"))
        return ActivationQuantizer(ranges, ema_decay=ema_decay, name=names(f"{base}_quantizer"))

    def quantize_output(last, outputs, fixed=None):
        """`outputs` (the output of node `last`, a group's last) quantized where TFLite stores
        it: at the scale of the layer reading it alone whose inputs take its output's scale
        (untracked there: that layer's range covers all its inputs), else with a range of its
        own (or `fixed`)."""
        reader = unified.get(id(last.outputs[0]))
        if reader is not None and fixed is None:
            return unified_quantizer(reader)(outputs, track=False)
        return quantizer(last.operation.name, fixed)(outputs)

    def unified_quantizer(node):
        if id(node) not in shared:
            shared[id(node)] = quantizer(node.operation.name)
        return shared[id(node)]

    def fused_activation(node, producer):
        """The relu/relu6 node reading only `node`'s output, which the converter fuses into
        `producer`, or `None`."""
        reader = _only_consumer(node, consumers)
        if reader is None or not fuses_activation(producer):
            return None
        spec = quantization_of(reader.operation)
        if spec is not None and spec.kind != UNSUPPORTED and spec.activation in (
                FUSABLE_ACTIVATIONS[1:]):
            return reader
        return None

    def after_activation(layer, outputs, activation):
        """A standalone activation `activation` applied to `outputs` (a kernel layer's
        activation the converter does not fuse)."""
        act = keras.layers.Activation(activation, name=names(f"{layer.name}_{activation}"))
        spec = quantization_of(act)
        if spec is None or spec.kind != FIXED_RANGE:
            why = spec.reason if spec is not None and spec.reason else "no int8 kernel"
            raise _unsupported(layer, f": activation '{activation}': {why}")
        return quantizer(act.name, spec.output_range)(act(outputs))

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
        spec = _spec(layer)
        last = node  # the last node of the group computed here
        if spec.kind == KERNEL:
            activation = activation_name(getattr(layer, "activation", None))
            batch_norm = None
            reader = _only_consumer(node, consumers)
            reader_spec = None if reader is None else quantization_of(reader.operation)
            if reader_spec is not None and reader_spec.kind == FOLDED and folds_batch_norm(layer):
                batch_norm = reader.operation
                check_foldable(batch_norm, layer, len(node.outputs[0].shape))
                absorbed.add(id(reader))
                last = reader
            fused = activation if activation in FUSABLE_ACTIVATIONS else "linear"
            if fused == "linear":
                reader = fused_activation(last, layer)
                if reader is not None:
                    fused = quantization_of(reader.operation).activation
                    absorbed.add(id(reader))
                    last = reader
            if share:
                if activation not in FUSABLE_ACTIVATIONS:
                    raise _unsupported(layer, f": its activation '{activation}' is not fused; "
                                       "split it into its own layer")
                inner, bn = layer, batch_norm
                if activation != "linear":
                    fused = "linear"  # the layer applies its own
            else:
                overrides = {"activation": "linear"} if "activation" in layer.get_config() else {}
                if not overrides and activation != "linear":
                    raise _unsupported(layer, ": its activation cannot be set to linear")
                inner = _clone(layer, **overrides)
                bn = None if batch_norm is None else _clone(batch_norm)
                clones.append((inner, layer))
                if bn is not None:
                    clones.append((bn, batch_norm))
            wrapped = QuantizedLayer(inner, bn, activation=fused,
                                     name=names(f"quant_{layer.name}"))
            outputs = wrapped(*args, **kwargs)
            if activation not in FUSABLE_ACTIVATIONS:
                outputs = after_activation(layer, quantizer(layer.name)(outputs), activation)
            else:
                outputs = quantize_output(last, outputs)
        elif spec.kind == REMOVED:
            if not share:
                raise _unsupported(layer, ": it is not part of the deployed model (strip the "
                                   "model first)")
            outputs = args[0]
        elif spec.kind == SAME_SCALE:
            clone = copy(layer)
            if spec.resnap is None:
                outputs = clone(*args, **kwargs)
            else:
                source = _scale_source(args[0])
                if source is None:
                    raise _unsupported(layer, ": its input has no int8 scale of its own")
                if spec.resnap == "nearest":
                    # TFLite Micro clamps the int8 values without rescaling (e.g. RELU6): the
                    # output keeps the input's scale.
                    outputs = source(clone(*args, **kwargs), track=False)
                else:
                    # TFLite averages the int8 values, rounds half away from zero, and keeps
                    # the input's scale (AVERAGE_POOL_2D).
                    encoded = source(args[0], track=False, integer="encode")
                    outputs = source(clone(encoded, *args[1:], **kwargs), track=False,
                                     integer="decode")
        elif spec.kind in (REQUANTIZE, FIXED_RANGE):
            if spec.pairwise and len(args[0]) > 2:
                # TFLite's op takes two inputs: n inputs are n - 1 ops, each stored in int8.
                outputs = args[0][0]
                for i, term in enumerate(args[0][1:-1], start=1):
                    partial = _clone(layer, name=names(f"{layer.name}_{i}"))
                    outputs = quantizer(partial.name)(partial([outputs, term]))
                args = ([outputs, args[0][-1]],)
            outputs = copy(layer)(*args, **kwargs)
            if spec.kind == REQUANTIZE:
                reader = fused_activation(node, layer)
                if reader is not None:
                    outputs = copy(reader.operation)(outputs)
                    absorbed.add(id(reader))
                    last = reader
            if spec.unified_scale:
                outputs = unified_quantizer(node)(outputs)
            else:
                outputs = quantize_output(last, outputs, spec.output_range)
        elif spec.kind == FOLDED:
            raise _unsupported(
                layer,
                ": a BatchNormalization folds only into a Dense/Conv/DepthwiseConv whose output "
                "it alone reads",
            )
        elif spec.kind == DECOMPOSE:
            raise _unsupported(layer, ": split it first (`tfdynhp.quantization.wrap.decompose`)"
                               + ("; a gated model's QAT phase cannot share its weights" if share
                                  else ""))
        else:
            raise _unsupported(layer)
        tensors[id(last.outputs[0])] = outputs

    outputs = [tensors[id(t)] for t in graph_model.outputs]
    qat = keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=name or f"{model.name}_qat",
    )
    for new, old in clones:
        if old.weights:
            new.set_weights(old.get_weights())
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
