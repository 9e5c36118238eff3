"""tfdynhp: Dynamic Hard Pruning (DynHP) for Keras 3.

Train a network under a fixed memory budget by physically removing units whose Hard Concrete
gates stay closed, reuse the freed memory for larger mini-batches, and export int8 TFLite.

The package reads bottom to top (each layer imports only the ones below it):

- `tfdynhp.math`: the formulas (Hard Concrete, gradient variance, batch rule, budgets, MACs);
- `tfdynhp.layers`: `HardConcreteGate`, `SelectFeatures`;
- `tfdynhp.layer_types`: one entry per Keras layer type (channel role, surgery, cost, ...);
- `tfdynhp.graph`: the graph of coupled units of a functional model;
- `tfdynhp.surgery`: narrowing layers and optimizer state, all or nothing;
- `tfdynhp.costs`: the one cost model (parameters, MACs, int8 bytes, training memory);
- `tfdynhp.model`: `GatedModel`, `gate()` / `strip()`, `DynamicBatches`;
- `tfdynhp.quantization`: int8 quantization-aware training (`quantize_aware`, the QAT phase);
- `tfdynhp.policies`: which units go (criteria) and how far (targets);
- `tfdynhp.methods`, `tfdynhp.callbacks`: pruning methods and the Keras callbacks;
- `tfdynhp.converters`: int8 TFLite, LiteRT / TFLite Micro, pi / android / mcu bundles;
- `tfdynhp.training`, `tfdynhp.cli`: training runs, reports and the `tfdynhp` command;
- beside them: `tfdynhp.datasets`, `tfdynhp.distribute`, `tfdynhp.architectures`.

This module is the public API; nothing inside the package imports it.
"""

from tfdynhp import (
    architectures,
    costs,
    datasets,
    distribute,
    graph,
    layer_types,
    math,
    policies,
    quantization,
    surgery,
)
from tfdynhp.costs.memory import parameter_count, training_memory
from tfdynhp.costs.walk import layer_costs, model_costs
from tfdynhp.layers import HardConcreteGate, SelectFeatures
from tfdynhp.math.budget import MemoryBreakdown, format_bytes, paper_mbytes, parse_budget
from tfdynhp.methods import PruneReport, complexity_prune, prune, specialize
from tfdynhp.model import (
    DynamicBatches,
    GatedModel,
    gate,
    is_gated_model,
    recalibrate_batch_norm,
    strip,
)
from tfdynhp.policies.criteria import GateActivationRate
from tfdynhp.policies.targets import Target
from tfdynhp.quantization import quantize_aware
from tfdynhp.surgery import apply_keep_masks

__version__ = "0.1.0"

_LAZY_SUBPACKAGES = ("callbacks", "converters", "training", "cli")


def __getattr__(name):
    # Lazy: the callbacks, converters and training runs import TFLite runtimes, matplotlib
    # and the whole engine; `import tfdynhp` stays light.
    if name in ("DynHPCallback", "ActivationDensityCallback"):
        from tfdynhp import callbacks

        return getattr(callbacks, name)
    if name in _LAZY_SUBPACKAGES:
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
    "callbacks",
    "complexity_prune",
    "converters",
    "costs",
    "datasets",
    "distribute",
    "format_bytes",
    "gate",
    "graph",
    "is_gated_model",
    "layer_costs",
    "layer_types",
    "math",
    "model_costs",
    "paper_mbytes",
    "parameter_count",
    "parse_budget",
    "policies",
    "prune",
    "quantization",
    "quantize_aware",
    "recalibrate_batch_norm",
    "specialize",
    "strip",
    "surgery",
    "training",
    "training_memory",
]
