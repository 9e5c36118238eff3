"""The gated model: `GatedModel` (its training step: gates, L0 penalty, gradient variance),
`gate()` / `strip()`, and `DynamicBatches`, the feed whose batch size DynHP changes."""

from tfdynhp.model.dynamic_batches import DynamicBatches
from tfdynhp.model.gated_model import GatedModel
from tfdynhp.model.gating import float32_model, gate, is_gated_model, strip

__all__ = ["DynamicBatches", "GatedModel", "float32_model", "gate", "is_gated_model", "strip"]
