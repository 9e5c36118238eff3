"""The one cost model: what a model costs (parameters, MACs, int8 bytes, activation values) now
or after planned keep-masks (`walk`), what one unit of a group saves (`units`), and the memory
of training it (`memory`)."""

from tfdynhp.costs.memory import (
    activation_values,
    parameter_count,
    training_memory,
    training_memory_after,
)
from tfdynhp.costs.units import RESOURCES, unit_costs, update_gate_costs
from tfdynhp.costs.walk import LayerCost, ModelCost, layer_costs, model_costs

__all__ = [
    "RESOURCES",
    "LayerCost",
    "ModelCost",
    "activation_values",
    "layer_costs",
    "model_costs",
    "parameter_count",
    "training_memory",
    "training_memory_after",
    "unit_costs",
    "update_gate_costs",
]
