"""Memory of a gated model in training, in bytes, under the paper's or the full accounting.

Counts the values the model really holds (variables, optimizer slots, activations per example)
and hands them to the pure functions of `tfdynhp.budget`.
"""

import math

import keras
import numpy as np

from tfdynhp import budget
from tfdynhp.layers import GatedDense, SelectFeatures
from tfdynhp.surgery import graph, registry

ACCOUNTINGS = ("full", "paper")

# Slot values per trainable value for optimizers that are not built yet.
_SLOTS_PER_VALUE = {"Adam": 2, "AdamW": 2, "Nadam": 2, "Adamax": 2, "Adagrad": 1, "Lion": 1}


def check_accounting(accounting):
    if accounting not in ACCOUNTINGS:
        raise ValueError(
            f"`accounting` must be one of {ACCOUNTINGS}. Received: accounting={accounting!r}"
        )
    return accounting


def _size(variable):
    return int(np.prod(variable.shape, dtype=np.int64))


def _is_gate_state(layer, variable):
    return isinstance(layer, GatedDense) and variable.name in (
        "log_alpha",
        "gate_active_count",
        "gate_observations",
    )


def optimizer_slot_values(optimizer, n_trainable):
    """Number of optimizer slot values: counted when built, else estimated by type."""
    if optimizer is None:
        return 0
    if optimizer.built:
        skip = {id(optimizer.iterations)}
        if isinstance(optimizer._learning_rate, keras.Variable):
            skip.add(id(optimizer._learning_rate))
        return sum(_size(v) for v in optimizer.variables if id(v) not in skip)
    name = type(optimizer).__name__
    if name == "SGD":
        return n_trainable if optimizer.momentum else 0
    if name == "RMSprop":
        return n_trainable * (1 + bool(optimizer.momentum) + bool(optimizer.centered))
    return _SLOTS_PER_VALUE.get(name, 2) * n_trainable


def activation_values_per_example(model):
    """Activation values kept for the backward pass, per example: every layer's output, plus
    each gated layer's sampled gates and gated inputs."""
    total = 0
    width = input_values_per_example(model)
    for layer in graph.layer_chain(model):
        if isinstance(layer, GatedDense):
            total += 2 * layer.input_units
            width = layer.units
        elif isinstance(layer, keras.layers.Dense):
            width = layer.units
        elif isinstance(layer, SelectFeatures):
            width = layer.output_units or width
        elif registry.kind_of(layer) is None:  # Flatten / Reshape before the first Dense
            width = math.prod(layer.output.shape[1:])
        total += width
    return total


def dense_weight_count(model):
    """Kernel and bias values of the model's dense layers: the paper's weight count (after
    hard pruning every remaining weight is a real, generally non-zero, parameter)."""
    count = 0
    for layer in model.layers:
        for attribute in ("kernel", "bias"):
            variable = getattr(layer, attribute, None)
            if isinstance(variable, keras.Variable):
                count += _size(variable)
    return count


def input_values_per_example(model):
    return math.prod(model.inputs[0].shape[1:])


def full_breakdown(model, batch_size, optimizer=None):
    """The `MemoryBreakdown` of training `model` at `batch_size` (full accounting)."""
    n_weights = n_gates = n_trainable = 0
    for layer in model.layers:
        for variable in layer.weights:
            if _is_gate_state(layer, variable):
                n_gates += _size(variable) if variable.name == "log_alpha" else 0
            else:
                n_weights += _size(variable)
            if variable.trainable:
                n_trainable += _size(variable)
    optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    return budget.full_memory_breakdown(
        n_weights=n_weights,
        n_gates=n_gates,
        n_trainable=n_trainable,
        n_slot_values=optimizer_slot_values(optimizer, n_trainable),
        activation_values_per_example=activation_values_per_example(model),
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
        fixed = budget.paper_memory_bytes(dense_weight_count(model), 0, 0)
        per_example = budget.paper_memory_bytes(0, input_values_per_example(model), 1)
    else:
        breakdown = full_breakdown(model, 1)
        per_example = breakdown.per_batch
        fixed = breakdown.fixed
    return fixed + per_example * batch_size, fixed, per_example
