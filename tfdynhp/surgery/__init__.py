"""Model surgery: physically removing units from a gated model (see `apply_keep_masks`)."""

from tfdynhp.surgery.apply import SurgeryResult, apply_keep_masks, plan_edits
from tfdynhp.surgery.graph import UnitGroup, gated_layers, layer_chain, unit_groups
from tfdynhp.surgery.registry import (
    LayerEdit,
    register_consumer,
    register_elementwise,
    register_per_unit,
    register_producer,
)

__all__ = [
    "LayerEdit",
    "SurgeryResult",
    "UnitGroup",
    "apply_keep_masks",
    "gated_layers",
    "layer_chain",
    "plan_edits",
    "register_consumer",
    "register_elementwise",
    "register_per_unit",
    "register_producer",
    "unit_groups",
]
