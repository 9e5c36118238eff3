"""What one unit of each prunable group costs: parameters, MACs or training memory.

The resource-aware L0 penalty (Zawish et al.'s PA / FA / MA modes, applied to DynHP's gates)
weights each gate by what removing its unit saves. A unit of a group appears at some channel
positions of some tensors; every layer it passes through spends a fixed amount of the resource
per input position and per output position (a Dense layer `n -> m` holds `m` weights per input
unit and `n + 1` per output unit). Summing over the unit's positions gives the saving of
removing it, to first order (removing two coupled units at once also removes their shared
weights, which the sum counts twice).

Resources:
- `"units"`: every unit costs 1 (the paper's penalty);
- `"params"`: stored values (kernels, biases, BatchNormalization statistics);
- `"macs"`: multiply-accumulates of one inference;
- `"memory"`: training-memory values, `params * (2 + slots)` (weights, gradients, optimizer
  slots) plus the activations one example keeps for the backward pass times the batch size.
"""

import math

import keras

from tfdynhp import memory
from tfdynhp.layers import HardConcreteGate, SelectFeatures
from tfdynhp.surgery import graph as graph_lib
from tfdynhp.surgery import registry

RESOURCES = ("units", "params", "macs", "memory")


def check_resource(resource):
    if resource not in RESOURCES:
        raise ValueError(f"`resource` must be one of {RESOURCES}. Received: {resource!r}")
    return resource


def _spatial(shape):
    return math.prod(int(s) for s in shape[1:-1])


def layer_costs_per_position(layer, in_shape, out_shape):
    """`(params, macs)` spent per input channel position and per output channel position.

    Returns:
        `((params_in, macs_in), (params_out, macs_out))` for one example.
    """
    cin, cout = int(in_shape[-1]), int(out_shape[-1])
    bias = 1 if getattr(layer, "use_bias", False) else 0
    if isinstance(layer, keras.layers.Dense):
        positions = _spatial(out_shape) or 1
        return (cout, cout * positions), (cin + bias, cin * positions)
    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        kernel = math.prod(layer.kernel_size)
        multiplier = layer.depth_multiplier
        positions = _spatial(out_shape)
        return (
            (kernel * multiplier + multiplier * cout,
             positions * (kernel * multiplier + multiplier * cout)),
            (cin * multiplier + bias, positions * cin * multiplier),
        )
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        kernel = math.prod(layer.kernel_size)
        multiplier = layer.depth_multiplier
        return (kernel * multiplier, _spatial(out_shape) * kernel * multiplier), (bias, 0)
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        kernel = math.prod(layer.kernel_size)
        positions = _spatial(out_shape)
        return (kernel * cout, positions * kernel * cout), (kernel * cin + bias,
                                                            positions * kernel * cin)
    if isinstance(layer, keras.layers.BatchNormalization):
        stored = sum(getattr(layer, a, None) is not None
                     for a in ("gamma", "beta", "moving_mean", "moving_variance"))
        return (stored, 0), (0, 0)
    return (0, 0), (0, 0)


def unit_costs(model, resource="params", batch_size=32, unit_graph=None):
    """What removing one unit of each prunable group saves in `resource`.

    Args:
        model: a built functional or Sequential model (gated or not).
        resource: one of `RESOURCES`. Defaults to `"params"`.
        batch_size: the batch the `"memory"` resource counts activations for. Defaults to 32.
        unit_graph: a `UnitGraph` of `model`, when already built.

    Returns:
        `{group name: cost of one unit}` for every prunable group.
    """
    check_resource(resource)
    unit_graph = unit_graph or graph_lib.analyze(model)
    groups = [g for g in unit_graph.groups if g.prunable]
    if resource == "units":
        return {g.name: 1.0 for g in groups}
    owner = {int(root): g.name for g in groups for root in g.ids}
    totals = {g.name: 0.0 for g in groups}

    def spend(tensor, amount):
        if not amount:
            return
        for root in unit_graph.roots(unit_graph.labels(tensor)):
            name = owner.get(int(root))
            if name is not None:
                totals[name] += amount

    slots = memory.slots_per_trainable_value(model) if resource == "memory" else 0
    for node in unit_graph.nodes:
        layer = node.operation
        role = unit_graph.roles[id(node)].name
        if role == registry.BARRIER or isinstance(layer, (HardConcreteGate, SelectFeatures)):
            per_in = per_out = (0, 0)
        elif len(node.input_tensors) == 1:
            per_in, per_out = layer_costs_per_position(
                layer, node.input_tensors[0].shape, node.outputs[0].shape
            )
        else:
            per_in = per_out = (0, 0)
        if resource == "params":
            spend(node.input_tensors[0], per_in[0])
            spend(node.outputs[0], per_out[0])
        elif resource == "macs":
            spend(node.input_tensors[0], per_in[1])
            spend(node.outputs[0], per_out[1])
        else:
            spend(node.input_tensors[0], per_in[0] * (2 + slots))
            spend(node.outputs[0], per_out[0] * (2 + slots)
                  + batch_size * (_spatial(node.outputs[0].shape) or 1))
    return {g.name: totals[g.name] / g.units for g in groups}


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
    resource = resource or gated[0].gate.cost_resource
    costs = unit_costs(model, resource, batch_size, unit_graph)
    if scale is None:
        total_units = sum(g.units for g in gated)
        scale = sum(costs[g.name] * g.units for g in gated) / total_units or 1.0
    for group in gated:
        group.gate.cost_resource = resource
        group.gate.set_penalty(unit_cost=costs[group.name] / scale)
    return scale
