"""What one unit of each prunable group costs, in the resource a target or penalty counts.

A unit's saving is the walk's price of the layer calls it touches (`tfdynhp.costs.walk`),
once with and once without the channel positions it occupies: the resource-aware L0 penalty
of Zawish et al.'s PA / FA / MA modes applied to DynHP's gates, and the step a target
controller takes.

Resources:
- `"units"`: every unit costs 1 (the paper's penalty);
- `"params"`: stored values (kernels, biases, BatchNormalization statistics; gates excluded);
- `"macs"`: multiply-accumulates of one inference;
- `"int8_bytes"`: an estimate of the int8 `.tflite` size;
- `"m4_instructions"`: estimated Cortex-M4 instructions of one inference with CMSIS-NN kernels
  (`tfdynhp.layer_types.instructions`): a depthwise channel costs more than its MACs say, a
  pointwise one less;
- `"memory"`: training-memory values, `params * (2 + slots)` (weights, gradients, optimizer
  slots) plus the activations one example keeps for the backward pass times the batch size.
"""

import dataclasses

import numpy as np

from tfdynhp.costs import memory
from tfdynhp.costs.walk import model_costs, walk
from tfdynhp.graph import units as graph_lib
from tfdynhp.layer_types import instructions, registry

RESOURCES = ("units", "params", "macs", "int8_bytes", "memory", "m4_instructions")


def check_resource(resource):
    if resource not in RESOURCES:
        raise ValueError(f"Unknown resource {resource!r}. Expected one of "
                         f"{', '.join(repr(r) for r in RESOURCES)}.")
    return resource


def model_cost(model, keep_masks=None, unit_graph=None):
    """The model's `ModelCost` (params, MACs, int8 bytes, ...), now or after `keep_masks`."""
    return model_costs(model, keep_masks, unit_graph)


def _narrowed(shape, hits):
    return shape[:-1] + (shape[-1] - hits,) if hits else shape


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
    calls = walk(model, unit_graph=unit_graph, warn=False).calls
    roots = {}

    def hits(tensor, unit):
        if id(tensor) not in roots:
            roots[id(tensor)] = unit_graph.roots(unit_graph.labels(tensor))
        return int(np.count_nonzero(roots[id(tensor)] == unit))

    savings = {}
    for group in groups:
        unit = int(group.ids[0])
        params = macs = int8_bytes = activations = m4 = 0
        for node, call in calls:
            out_hits = [hits(t, unit) for t in node.outputs]
            narrowed_outputs = tuple(_narrowed(s, h) for s, h in zip(call.output_shapes,
                                                                     out_hits))
            activations += (memory.stored_activation_values(node.operation, call.output_shapes)
                            - memory.stored_activation_values(node.operation, narrowed_outputs))
            if len(node.input_tensors) != 1 or unit_graph.roles[id(node)].name == registry.BARRIER:
                continue
            in_hit = hits(node.input_tensors[0], unit)
            if not in_hit and not any(out_hits):
                continue
            narrowed = dataclasses.replace(
                call,
                input_shapes=(_narrowed(call.input_shapes[0], in_hit),),
                output_shapes=narrowed_outputs,
            )
            before, _ = registry.cost_of(call)
            after, _ = registry.cost_of(narrowed)
            params += before.params - after.params
            macs += before.macs - after.macs
            int8_bytes += before.int8_bytes - after.int8_bytes
            m4 += instructions.of(before) - instructions.of(after)
        if resource == "memory":
            savings[group.name] = params * (2 + slots) + batch_size * activations
        else:
            savings[group.name] = {"params": params, "macs": macs, "int8_bytes": int8_bytes,
                                   "m4_instructions": m4}[resource]
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
