"""tfdynhp: Dynamic Hard Pruning (DynHP) for Keras 3.

Train a network under a fixed memory budget by physically removing units whose Hard Concrete
gates stay closed, reuse the freed memory for larger mini-batches, and export int8 TFLite.
"""

from tfdynhp import budget, criteria, gates, memory, surgery
from tfdynhp.budget import MemoryBreakdown, format_bytes, parse_budget
from tfdynhp.criteria import GateActivationRate
from tfdynhp.gating import gate, is_gated_model, strip
from tfdynhp.layers import GatedDense, SelectFeatures
from tfdynhp.models import GatedModel
from tfdynhp.surgery import apply_keep_masks

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `tfdynhp.callbacks` imports the core, so the core cannot import it eagerly.
    if name == "DynHPCallback":
        from tfdynhp.callbacks import DynHPCallback

        return DynHPCallback
    if name == "DynamicBatches":
        from tfdynhp.batches import DynamicBatches

        return DynamicBatches
    raise AttributeError(f"module 'tfdynhp' has no attribute {name!r}")


__all__ = [
    "DynHPCallback",
    "DynamicBatches",
    "GateActivationRate",
    "GatedDense",
    "GatedModel",
    "MemoryBreakdown",
    "SelectFeatures",
    "apply_keep_masks",
    "budget",
    "criteria",
    "format_bytes",
    "gate",
    "gates",
    "is_gated_model",
    "memory",
    "parse_budget",
    "strip",
    "surgery",
]
