"""Model surgery: the dependency graph of coupled channels (`graph`), per-layer-type rules
(`registry`), and physically removing units, all or nothing (`apply_keep_masks`)."""

from tfdynhp.graph.units import (
    UnitGraph,
    UnitGroup,
    analyze,
    gate_layers,
    gated_groups,
    graph_nodes,
)
from tfdynhp.layer_types.registry import LayerEdit, Role, register, role_of
from tfdynhp.surgery.apply import SurgeryResult, apply_keep_masks, plan_edits, prunable_units

__all__ = [
    "LayerEdit",
    "Role",
    "SurgeryResult",
    "UnitGraph",
    "UnitGroup",
    "analyze",
    "apply_keep_masks",
    "gate_layers",
    "gated_groups",
    "graph_nodes",
    "plan_edits",
    "prunable_units",
    "register",
    "role_of",
]
