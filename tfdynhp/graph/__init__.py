"""The graph of a functional Keras model: its layer calls in order (`nodes`), the graph of
coupled units every channel belongs to (`units`: which channels are pruned together, which
are pinned and why), and probes that evaluate it node by node."""

from tfdynhp.graph.nodes import functional_of, graph_nodes
from tfdynhp.graph.units import (
    UnitGraph,
    UnitGroup,
    analyze,
    gate_layers,
    gated_groups,
    refresh_symbolic_shapes,
)

__all__ = [
    "UnitGraph",
    "UnitGroup",
    "analyze",
    "functional_of",
    "gate_layers",
    "gated_groups",
    "graph_nodes",
    "refresh_symbolic_shapes",
]
