"""What a model costs, and what one unit of each prunable group costs: parameters, MACs, int8
model bytes and training memory.

One function per layer type gives the layer's cost from its input and output channel counts
(`layer_cost`); the model's cost sums it over the graph, for the current widths or for the
widths a set of keep-masks would leave (`model_cost`, so a target can be checked before any
surgery). What one unit of a group saves is the same sum, once with and once without the
channel positions the unit occupies (`unit_costs`): the resource-aware L0 penalty of Zawish et
al.'s PA / FA / MA modes applied to DynHP's gates.

Resources:
- `"units"`: every unit costs 1 (the paper's penalty);
- `"params"`: stored values (kernels, biases, BatchNormalization statistics; gates excluded);
- `"macs"`: multiply-accumulates of one inference;
- `"int8_bytes"`: an estimate of the int8 `.tflite` size (1 byte per weight, 4 per bias, per
  output channel quantization parameters, BatchNormalization folded, a fixed overhead);
- `"memory"`: training-memory values, `params * (2 + slots)` (weights, gradients, optimizer
  slots) plus the activations one example keeps for the backward pass times the batch size.
"""

import dataclasses
import math

import keras
import numpy as np

from tfdynhp.costs import inference as complexity
from tfdynhp.costs import memory
from tfdynhp.graph import units as graph_lib
from tfdynhp.layer_types import registry
from tfdynhp.layers.gate import HardConcreteGate, SelectFeatures

RESOURCES = ("units", "params", "macs", "int8_bytes", "memory")
# Quantization parameters per output channel (scales, zero points) measured on TFLite's int8
# files: about 8 bytes for a FULLY_CONNECTED layer, 20 for a convolution.
_DENSE_QUANT_BYTES = 8
_CONV_QUANT_BYTES = 20
# Flatbuffer header, tables and tensor metadata of a small model, plus per-layer tensors, and a
# GATHER (SelectFeatures) with its int32 indices. `DynHPCallback` measures the real file once
# and corrects the constant part.
_TFLITE_BASE_BYTES = 1500
_TFLITE_BYTES_PER_LAYER = 180
_GATHER_BYTES = 420


def check_resource(resource):
    if resource not in RESOURCES:
        raise ValueError(f"`resource` must be one of {RESOURCES}. Received: {resource!r}")
    return resource


@dataclasses.dataclass(frozen=True)
class Cost:
    """What a layer or model costs: stored values, MACs per inference, int8 bytes."""

    params: float = 0.0
    macs: float = 0.0
    int8_bytes: float = 0.0

    def __add__(self, other):
        return Cost(self.params + other.params, self.macs + other.macs,
                    self.int8_bytes + other.int8_bytes)

    def __sub__(self, other):
        return Cost(self.params - other.params, self.macs - other.macs,
                    self.int8_bytes - other.int8_bytes)


def _spatial(shape):
    return math.prod(int(s) for s in shape[1:-1])


def _kernel_layer_cost(kernel_values, bias_values, out_channels, macs, quant_bytes):
    return Cost(
        params=kernel_values + bias_values,
        macs=macs,
        int8_bytes=kernel_values + 4 * bias_values + quant_bytes * out_channels,
    )


def layer_cost(layer, in_shape, out_shape, cin=None, cout=None):
    """The `Cost` of `layer` with `cin` input and `cout` output channel positions (defaults:
    the shapes' last axes), with `tfdynhp.costs.inference`'s MAC formulas. Layers without weights
    cost nothing; a layer type not known here costs its current `count_params()` whatever the
    widths."""
    cin = int(in_shape[-1]) if cin is None else int(cin)
    cout = int(out_shape[-1]) if cout is None else int(cout)
    bias = 1 if getattr(layer, "use_bias", False) else 0
    spatial = tuple(int(s) for s in out_shape[1:-1])
    if isinstance(layer, HardConcreteGate):
        return Cost()
    if isinstance(layer, SelectFeatures):  # a GATHER once it drops features
        return Cost(int8_bytes=_GATHER_BYTES + 4 * cout if cout < layer.input_features else 0)
    if isinstance(layer, keras.layers.Dense):
        return _kernel_layer_cost(cin * cout, bias * cout, cout,
                                  complexity.dense_macs(cin, cout, math.prod(spatial)),
                                  _DENSE_QUANT_BYTES)
    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        kernel, multiplier = math.prod(layer.kernel_size), layer.depth_multiplier
        macs = complexity.separable_macs(spatial, layer.kernel_size, cin, cout, multiplier)
        return _kernel_layer_cost(kernel * cin * multiplier + cin * multiplier * cout,
                                  bias * cout, cout, macs, _CONV_QUANT_BYTES)
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        multiplier = layer.depth_multiplier
        macs = complexity.depthwise_macs(spatial, layer.kernel_size, cin, multiplier)
        return _kernel_layer_cost(math.prod(layer.kernel_size) * cin * multiplier,
                                  bias * cin * multiplier, cin * multiplier, macs,
                                  _CONV_QUANT_BYTES)
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        values = math.prod(layer.kernel_size) * cin * cout
        macs = complexity.conv_macs(spatial, layer.kernel_size, cin, cout)
        return _kernel_layer_cost(values, bias * cout, cout, macs, _CONV_QUANT_BYTES)
    if isinstance(layer, keras.layers.BatchNormalization):
        stored = sum(getattr(layer, a, None) is not None
                     for a in ("gamma", "beta", "moving_mean", "moving_variance"))
        return Cost(params=stored * cin)  # folded into the layer before it in int8
    count = layer.count_params() if layer.built else 0
    return Cost(params=count, int8_bytes=count)


def _kept(unit_graph, tensor, removed):
    if not len(removed):
        return int(tensor.shape[-1])
    roots = unit_graph.roots(unit_graph.labels(tensor))
    return int(np.count_nonzero(~np.isin(roots, removed)))


def _removed_ids(unit_graph, keep_masks):
    removed = []
    for name, mask in (keep_masks or {}).items():
        group = unit_graph.group(name)
        removed.extend(int(i) for i in group.ids[~np.asarray(mask, bool)])
    return np.asarray(removed, np.int64)


def model_cost(model, keep_masks=None, unit_graph=None):
    """The model's `Cost`, now or after `keep_masks` (`{group: boolean mask}`) were applied.

    `int8_bytes` includes an estimated fixed overhead of the `.tflite` file (see the module
    docstring); the other two are exact counts.
    """
    unit_graph = unit_graph or graph_lib.analyze(model)
    removed = _removed_ids(unit_graph, keep_masks)
    total, layers = Cost(), 0
    for node in unit_graph.nodes:
        layer = node.operation
        if len(node.input_tensors) != 1 or not (layer.weights or isinstance(layer,
                                                                            SelectFeatures)):
            continue
        tensor_in, tensor_out = node.input_tensors[0], node.outputs[0]
        total += layer_cost(layer, tensor_in.shape, tensor_out.shape,
                            _kept(unit_graph, tensor_in, removed),
                            _kept(unit_graph, tensor_out, removed))
        layers += not isinstance(layer, (HardConcreteGate, SelectFeatures,
                                         keras.layers.BatchNormalization))
    overhead = _TFLITE_BASE_BYTES + _TFLITE_BYTES_PER_LAYER * layers
    return Cost(total.params, total.macs, total.int8_bytes + overhead)


def activation_values(model, keep_masks=None, unit_graph=None):
    """Activation values one training example keeps (see `tfdynhp.costs.memory`), now or after
    `keep_masks`."""
    unit_graph = unit_graph or graph_lib.analyze(model)
    removed = _removed_ids(unit_graph, keep_masks)
    total = 0
    for node in unit_graph.nodes:
        for tensor in node.outputs:
            kept = _kept(unit_graph, tensor, removed)
            total += kept * (_spatial(tensor.shape) or 1)
            if isinstance(node.operation, HardConcreteGate):
                total += kept
    return total


def unit_costs(model, resource="params", batch_size=32, unit_graph=None):
    """What removing one unit of each prunable group saves in `resource`.

    Args:
        model: a built functional or Sequential model (gated or not).
        resource: one of `RESOURCES`. Defaults to `"params"`.
        batch_size: the batch the `"memory"` resource counts activations for. Defaults to 32.
        unit_graph: a `UnitGraph` of `model`, when already built.

    Returns:
        `{group name: saving of one unit}` for every prunable group (removing two coupled
        units at once also removes their shared weights, so savings add up to first order).
    """
    check_resource(resource)
    unit_graph = unit_graph or graph_lib.analyze(model)
    groups = [g for g in unit_graph.groups if g.prunable]
    if resource == "units":
        return {g.name: 1.0 for g in groups}
    slots = memory.slots_per_trainable_value(model) if resource == "memory" else 0
    savings = {}
    for group in groups:
        unit = np.asarray([group.ids[0]], np.int64)
        saved = Cost()
        activations = 0
        for node in unit_graph.nodes:
            layer = node.operation
            if len(node.input_tensors) != 1:
                continue
            tensor_in, tensor_out = node.input_tensors[0], node.outputs[0]
            in_hits = int(np.count_nonzero(unit_graph.roots(unit_graph.labels(tensor_in))
                                           == unit[0]))
            out_hits = int(np.count_nonzero(unit_graph.roots(unit_graph.labels(tensor_out))
                                            == unit[0]))
            activations += out_hits * (_spatial(tensor_out.shape) or 1)
            if isinstance(layer, HardConcreteGate):
                activations += out_hits  # the gates an example samples
            if (in_hits or out_hits) and (layer.weights or isinstance(layer, SelectFeatures)) and (
                unit_graph.roles[id(node)].name != registry.BARRIER
            ):
                cin, cout = int(tensor_in.shape[-1]), int(tensor_out.shape[-1])
                saved += (layer_cost(layer, tensor_in.shape, tensor_out.shape, cin, cout)
                          - layer_cost(layer, tensor_in.shape, tensor_out.shape,
                                       cin - in_hits, cout - out_hits))
        if resource == "memory":
            savings[group.name] = saved.params * (2 + slots) + batch_size * activations
        else:
            savings[group.name] = getattr(saved, resource)
    return savings


def update_gate_costs(model, resource=None, batch_size=32, scale=None):
    """Sets every gate's `unit_cost` to what its unit saves in `resource`, divided by `scale`.

    Args:
        model: a gated model.
        resource: one of `RESOURCES`; defaults to the `cost_resource` the gates were built
            with.
        batch_size: the batch of the `"memory"` resource. Defaults to 32.
        scale: divisor of the costs; defaults to their mean over the gated units, so that
            `l0_lambda` keeps the meaning "penalty of an average unit".

    Returns:
        The scale used (keep it to divide later costs by the same number).
    """
    unit_graph = graph_lib.analyze(model)
    gated = [g for g in unit_graph.groups if g.gate is not None]
    if not gated:
        return scale
    resource = check_resource(resource or gated[0].gate.cost_resource)
    costs = unit_costs(model, resource, batch_size, unit_graph)
    if scale is None:
        total_units = sum(g.units for g in gated)
        scale = sum(costs[g.name] * g.units for g in gated) / total_units or 1.0
    for group in gated:
        group.gate.cost_resource = resource
        group.gate.set_penalty(unit_cost=costs[group.name] / scale)
    return scale
