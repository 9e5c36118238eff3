"""Model surgery: the dependency graph of coupled channels (`graph`), per-layer-type rules
(`registry`), and physically removing units, all or nothing (`apply_keep_masks`)."""

from tfdynhp.surgery.apply import SurgeryResult, apply_keep_masks, plan_edits, prunable_units
from tfdynhp.surgery.graph import (
    UnitGraph,
    UnitGroup,
    analyze,
    gate_layers,
    gated_groups,
    graph_nodes,
)
from tfdynhp.surgery.registry import LayerEdit, Role, register, role_of

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
