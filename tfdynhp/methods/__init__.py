"""Pruning methods on top of the engine: one-shot pruning of a trained model (`prune`), task
specialization (`specialize`) and complexity-driven PA / FA / MA selection (`complexity_prune`)."""

from tfdynhp.methods.complexity_pruning import complexity_prune
from tfdynhp.methods.pruning import PruneReport, prune
from tfdynhp.methods.specialization import specialize

__all__ = ["PruneReport", "complexity_prune", "prune", "specialize"]
