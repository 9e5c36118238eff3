"""The one cost model: what a model costs (parameters, MACs, int8 bytes, activation values,
estimated Cortex-M4 CMSIS-NN instructions) now or after planned keep-masks (`walk`), what one
unit of a group saves (`units`), the memory of training it (`memory`), and whether the walk
covers every parameter (`coverage`)."""

from tfdynhp.costs.coverage import Coverage, check_target, coverage_of
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
    "Coverage",
    "LayerCost",
    "ModelCost",
    "activation_values",
    "check_target",
    "coverage_of",
    "layer_costs",
    "model_costs",
    "parameter_count",
    "training_memory",
    "training_memory_after",
    "unit_costs",
    "update_gate_costs",
]
