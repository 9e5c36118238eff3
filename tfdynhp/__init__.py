"""tfdynhp: Dynamic Hard Pruning (DynHP) for Keras 3.

Train a network under a fixed memory budget by physically removing units whose Hard Concrete
gates stay closed, reuse the freed memory for larger mini-batches, and export int8 TFLite.
"""

from tfdynhp import (
    architectures,
    batch_size,
    budget,
    complexity,
    complexity_pruning,
    criteria,
    datasets,
    distribute,
    gates,
    inputs,
    lrp,
    memory,
    probes,
    resources,
    surgery,
    targets,
)
from tfdynhp.batches import DynamicBatches
from tfdynhp.budget import MemoryBreakdown, format_bytes, paper_mbytes, parse_budget
from tfdynhp.complexity_pruning import complexity_prune
from tfdynhp.criteria import GateActivationRate
from tfdynhp.gating import gate, is_gated_model, strip
from tfdynhp.layers import HardConcreteGate, SelectFeatures
from tfdynhp.models import GatedModel
from tfdynhp.pruning import PruneReport, prune
from tfdynhp.specialization import specialize
from tfdynhp.surgery import apply_keep_masks
from tfdynhp.targets import Target

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `tfdynhp.callbacks` imports the core, so the core cannot import it eagerly; the
    # converters and the training helpers import TFLite runtimes and matplotlib on demand.
    if name in ("DynHPCallback", "ActivationDensityCallback"):
        from tfdynhp import callbacks

        return getattr(callbacks, name)
    if name in ("callbacks", "converters", "training", "reports"):
        import importlib

        return importlib.import_module(f"tfdynhp.{name}")
    raise AttributeError(f"module 'tfdynhp' has no attribute {name!r}")


__all__ = [
    "ActivationDensityCallback",
    "DynHPCallback",
    "DynamicBatches",
    "GateActivationRate",
    "GatedModel",
    "HardConcreteGate",
    "MemoryBreakdown",
    "PruneReport",
    "SelectFeatures",
    "Target",
    "apply_keep_masks",
    "architectures",
    "batch_size",
    "budget",
    "callbacks",
    "complexity",
    "complexity_prune",
    "complexity_pruning",
    "converters",
    "criteria",
    "datasets",
    "distribute",
    "format_bytes",
    "gate",
    "gates",
    "inputs",
    "is_gated_model",
    "lrp",
    "memory",
    "paper_mbytes",
    "parse_budget",
    "probes",
    "prune",
    "resources",
    "specialize",
    "strip",
    "surgery",
    "targets",
]
