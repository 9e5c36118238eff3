"""`freeze(qat_model)`: the plain Keras model the int8 converter reads for a QAT model.

Each `QuantizedLayer` becomes its stock layer (fused activation kept) holding the folded kernel
already on its per-channel int8 grid and the folded bias; each `ActivationQuantizer` becomes a
fixed-range one (a `FakeQuantWithMinMaxVars` op with constant min/max). The TFLite converter
reads those ops as the quantization parameters of the tensors (no representative data set),
and re-quantizes the kernels per channel with `max|w| / 127`, which lands exactly on the
values the QAT model used. Inference outputs of the frozen model equal the QAT model's (up
to ties of the int8 average of an average pooling, which the int8 file rounds as simulated).
"""

import keras

from tfdynhp.graph.nodes import functional_of, graph_nodes
from tfdynhp.quantization.layers import ActivationQuantizer, QuantizedLayer
from tfdynhp.quantization.wrap import is_quantized_model, quantizers


def _clone(layer, **overrides):
    return layer.__class__.from_config({**layer.get_config(), **overrides})


def _stock_layer(layer):
    """`(layer, set_weights(layer))`: the stock layer a `QuantizedLayer` exports as, with its
    fused activation (its own, or an `Activation` after it for a layer without one, which the
    converter fuses), and the function giving it the folded kernel (on its int8 grid) and
    bias once built."""
    inner, spec = layer.layer, layer.spec
    config = inner.get_config()
    overrides = {"name": inner.name}
    if layer.activation_name != "linear" and "activation" in config:
        overrides["activation"] = layer.activation_name
    if "use_bias" in config and layer.batch_norm is not None:
        overrides["use_bias"] = True
    new = _clone(inner, **overrides)
    kernel, bias = layer.export_weights()

    def set_weights(new):
        values = {v.name: v for v in inner.weights}
        for variable in new.weights:
            if variable.name in values:
                variable.assign(values[variable.name])
        getattr(new, spec.kernel).assign(kernel)
        target = getattr(new, spec.bias, None)
        if target is not None:
            target.assign(bias)

    return new, set_weights


def check_ranges_set(model):
    """Raises a `ValueError` naming the quantizers whose range never saw data."""
    unset = [q.name for q in quantizers(model) if not q.is_range_set]
    if unset:
        raise ValueError(
            f"Quantizer(s) {', '.join(unset)} have no range yet (still TF-MOT's initial "
            "[-6, 6]). Fine-tune the model with `fit`, or call "
            "`tfdynhp.quantization.calibrate(model, x)`, before exporting."
        )


def freeze(model):
    """Returns the export form of a quantization-aware model.

    Args:
        model: A model returned by `tfdynhp.quantize_aware` (fine-tuned or calibrated).

    Returns:
        A functional `keras.Model` of stock layers and fixed-range `ActivationQuantizer`s whose
        inference outputs equal `model`'s.

    Raises:
        ValueError: If `model` is not quantization-aware, or a range was never set from data.
    """
    if not is_quantized_model(model):
        raise ValueError(
            f"Model '{model.name}' is not quantization-aware (no ActivationQuantizer). Build "
            "one with `tfdynhp.quantize_aware(model)`."
        )
    check_ranges_set(model)
    graph_model = functional_of(model)
    inputs = [
        keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t._keras_history.operation.name)
        for t in graph_model.inputs
    ]
    tensors = {id(old): new for old, new in zip(graph_model.inputs, inputs)}
    made = {}  # id(old layer) -> (new layer, weights); shared layers stay shared
    for node in graph_nodes(model):
        layer = node.operation
        args, kwargs = node.arguments.fill_in(tensors)
        if isinstance(layer, ActivationQuantizer) and kwargs.get("integer") == "encode":
            # The int8 values of an average: the converter averages the int8 tensor itself.
            tensors[id(node.outputs[0])] = args[0]
            continue
        if id(layer) not in made:
            if isinstance(layer, ActivationQuantizer):
                new = ActivationQuantizer(
                    "fixed", fixed_range=layer.quantized_range(), name=layer.name
                )
                weights = None
            elif isinstance(layer, QuantizedLayer):
                new, weights = _stock_layer(layer)
            else:
                new = _clone(layer)
                weights = layer.get_weights()
            made[id(layer)] = (new, weights)
        new, _ = made[id(layer)]
        if isinstance(layer, ActivationQuantizer):
            outputs = new(args[0])  # a FakeQuant op with the range, whatever the call did
        else:
            outputs = new(*args, **kwargs)
        if isinstance(layer, QuantizedLayer) and layer.activation_name != "linear" and (
                "activation" not in layer.layer.get_config()):
            outputs = keras.layers.Activation(layer.activation_name)(outputs)
        for old, out in zip(node.outputs, keras.tree.flatten(outputs)):
            tensors[id(old)] = out
    for new, weights in made.values():
        if callable(weights):
            weights(new)
        elif weights:
            new.set_weights(weights)
    outputs = [tensors[id(t)] for t in graph_model.outputs]
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=model.name.removesuffix("_qat"),
    )


def quantization_table(model):
    """`[(quantizer name, scale, zero_point, (min, max))]` of a quantization-aware model: the
    int8 parameters its export gives each quantized tensor, in graph order."""
    return [(q.name, *q.quantization_params(), q.quantized_range()) for q in quantizers(model)]


def logits_model(model):
    """The quantization-aware model up to its logits: without a final softmax (or sigmoid) and
    its fixed-range quantizer. Its int8 export is the full model's file without the last op,
    so the logits of the int8 model can be compared with the simulation (e.g. "within one
    quantization step"), and deployed when the application takes the argmax anyway.

    Raises:
        ValueError: If `model` is not quantization-aware or does not end in a softmax or
            sigmoid followed by its fixed-range quantizer.
    """
    if not is_quantized_model(model):
        raise ValueError(
            f"Model '{model.name}' is not quantization-aware. Build one with "
            "`tfdynhp.quantize_aware(model)`."
        )
    last = model.outputs[0]._keras_history.operation if len(model.outputs) == 1 else None
    activation = None
    if isinstance(last, ActivationQuantizer) and last.mode == "fixed":
        activation = last._inbound_nodes[0].input_tensors[0]._keras_history.operation
    name = getattr(getattr(activation, "activation", None), "__name__", None)
    if name not in ("softmax", "sigmoid"):
        raise ValueError(
            f"Model '{model.name}' does not end in a softmax or sigmoid with its fixed int8 "
            "range; its outputs are already the logits."
        )
    logits = activation._inbound_nodes[0].input_tensors[0]
    return keras.Model(model.inputs, logits, name=f"{model.name}_logits")
