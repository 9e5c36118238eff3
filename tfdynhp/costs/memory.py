"""Memory of a model in training, in bytes, under the paper's or the full accounting.

Counts the values the model really holds (variables, optimizer slots, the tensors one training
step produces per example) and hands them to the pure functions of `tfdynhp.math.budget`. Works
for any graph the engine handles (Dense chains, CNNs, residual and concatenating branches).
"""

import math

import numpy as np

from tfdynhp.costs.walk import NarrowedShapes, model_costs
from tfdynhp.graph import units as units_graph
from tfdynhp.graph.nodes import functional_of, graph_nodes
from tfdynhp.layers.gate import HardConcreteGate
from tfdynhp.math import budget

ACCOUNTINGS = ("full", "paper")

# Slot values per trainable value of Keras' optimizers that are not built yet (others: 2).
_SLOTS_PER_VALUE = {"Adam": 2, "AdamW": 2, "Nadam": 2, "Adamax": 2, "Adadelta": 2, "Ftrl": 2,
                    "Lamb": 2, "Adagrad": 1, "Lion": 1}
_GATE_STATE = ("log_alpha", "gate_active_count", "gate_observations", "penalty_weight",
               "gate_first_moment", "gate_second_moment", "gate_steps", "gate_learning_rate")
# Per gate: `log_alpha` and its Adam moments are held, and one gradient is computed.
_GATE_VALUES = ("log_alpha", "gate_first_moment", "gate_second_moment")


def check_accounting(accounting):
    if accounting not in ACCOUNTINGS:
        raise ValueError(
            f"`accounting` must be one of {ACCOUNTINGS}. Received: accounting={accounting!r}"
        )
    return accounting


def _size(variable):
    return int(np.prod(variable.shape, dtype=np.int64))


def is_gate_state(layer, variable):
    return isinstance(layer, HardConcreteGate) and variable.name in _GATE_STATE


def optimizer_slot_values(optimizer, n_trainable):
    """Number of optimizer slot values: counted when built, else estimated from the type and
    the options that add a copy of every weight (`amsgrad`, `use_ema`,
    `gradient_accumulation_steps`; the optimizer inside a `LossScaleOptimizer`)."""
    if optimizer is None:
        return 0
    if optimizer.built:
        skip = {id(optimizer.iterations)}
        learning_rate = getattr(optimizer, "_learning_rate", None)
        if hasattr(learning_rate, "assign"):
            skip.add(id(learning_rate))
        return sum(_size(v) for v in optimizer.variables if id(v) not in skip)
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:  # LossScaleOptimizer: the wrapped optimizer's slots
        return optimizer_slot_values(inner, n_trainable)
    name = type(optimizer).__name__
    if name == "SGD":
        slots = 1 if optimizer.momentum else 0
    elif name == "RMSprop":
        slots = 1 + bool(optimizer.momentum) + bool(optimizer.centered)
    else:
        slots = _SLOTS_PER_VALUE.get(name, 2) + bool(getattr(optimizer, "amsgrad", False))
    slots += bool(getattr(optimizer, "use_ema", False))
    slots += bool(getattr(optimizer, "gradient_accumulation_steps", None))
    return slots * n_trainable


def slots_per_trainable_value(model):
    """Optimizer slot values per trainable value (2 for Adam; 2 when not compiled)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return 2.0
    trainable = sum(_size(v) for v in model.trainable_variables) or 1
    return optimizer_slot_values(optimizer, trainable) / trainable


def parameter_count(model):
    """Values of the model's non-gate variables: kernels, biases and normalisation statistics
    (the paper's weight count; after hard pruning every remaining weight is a real parameter).
    """
    return sum(
        _size(variable)
        for layer in model.layers
        for variable in layer.weights
        if not is_gate_state(layer, variable)
    )


def _values(shape):
    return math.prod(int(d) for d in shape)


def stored_activation_values(operation, output_shapes):
    """Values one training example keeps for the backward pass from one layer call: its
    outputs (a gate's output is the gated tensor), plus, for a gate, the gate values it
    samples (one per channel)."""
    total = sum(_values(s) for s in output_shapes)
    if isinstance(operation, HardConcreteGate):
        total += int(output_shapes[0][-1])
    return total


def activation_values(model, keep_masks=None, unit_graph=None):
    """Activation values one training step keeps for the backward pass, per example, now or
    after `keep_masks`."""
    shapes = NarrowedShapes(model, keep_masks, unit_graph)
    return sum(stored_activation_values(node.operation, [shapes(t) for t in node.outputs])
               for node in graph_nodes(model))


def input_values_per_example(model):
    return sum(_values(t.shape[1:]) for t in functional_of(model).inputs)


def full_breakdown(model, batch_size, optimizer=None):
    """The `MemoryBreakdown` of training `model` at `batch_size` (full accounting)."""
    n_weights = n_gates = n_trainable = n_gate_gradients = 0
    for layer in model.layers:
        for variable in layer.weights:
            if is_gate_state(layer, variable):
                n_gates += _size(variable) if variable.name in _GATE_VALUES else 0
                n_gate_gradients += _size(variable) if variable.name == "log_alpha" else 0
            else:
                n_weights += _size(variable)
            if variable.trainable:
                n_trainable += _size(variable)
    optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    return budget.full_memory_breakdown(
        n_weights=n_weights,
        n_gates=n_gates,
        n_trainable=n_trainable + n_gate_gradients,
        n_slot_values=optimizer_slot_values(optimizer, n_trainable),  # the gates' are in n_gates
        activation_values_per_example=activation_values(model),
        input_values_per_example=input_values_per_example(model),
        batch_size=batch_size,
    )


def training_memory(model, batch_size, accounting="full"):
    """Bytes needed to train `model` at `batch_size`: `(fixed, per_example)` and the total.

    Returns:
        A tuple `(total_bytes, fixed_bytes, bytes_per_example)`.
    """
    check_accounting(accounting)
    if accounting == "paper":
        fixed = budget.paper_memory_bytes(parameter_count(model), 0, 0)
        per_example = budget.paper_memory_bytes(0, input_values_per_example(model), 1)
    else:
        breakdown = full_breakdown(model, 1)
        per_example = breakdown.per_batch
        fixed = breakdown.fixed
    return fixed + per_example * batch_size, fixed, per_example


def training_memory_after(model, keep_masks=None, batch_size=32, accounting="full",
                          unit_graph=None):
    """Bytes `training_memory` would give after `keep_masks` were applied (nothing is
    changed): the removed parameters with their gradients and optimizer slots, the removed
    gates' state and the activations they no longer produce come off today's total."""
    total, _, _ = training_memory(model, batch_size, accounting)
    if not keep_masks:
        return total
    unit_graph = unit_graph or units_graph.analyze(model)
    removed_params = (model_costs(model, unit_graph=unit_graph).params
                      - model_costs(model, keep_masks, unit_graph).params)
    if accounting == "paper":
        return total - 4 * removed_params
    slots = slots_per_trainable_value(model)
    activations = (activation_values(model, unit_graph=unit_graph)
                   - activation_values(model, keep_masks, unit_graph))
    gate_units = sum(
        int(np.count_nonzero(~np.asarray(mask, bool)))
        for name, mask in keep_masks.items() if unit_graph.group(name).gate is not None
    )
    # Per removed gate: `log_alpha`, its gradient and its two Adam moments.
    return total - 4 * (removed_params * (2 + slots) + (len(_GATE_VALUES) + 1) * gate_units
                        + activations * batch_size)
