"""The gated model: `GatedModel` (its training step: gates, L0 penalty, gradient variance),
`gate()` / `strip()`, `DynamicBatches`, the feed whose batch size DynHP changes,
`Distillation`, a teacher for the training loss, and `recalibrate_batch_norm`, statistics for
the network as it is."""

from tfdynhp.model.batch_norm import recalibrate_batch_norm, restore_batch_norm
from tfdynhp.model.distillation import Distillation
from tfdynhp.model.dynamic_batches import DynamicBatches
from tfdynhp.model.folding import fold_frozen_gates, fold_gates
from tfdynhp.model.gated_model import GatedModel
from tfdynhp.model.gating import float32_model, gate, is_gated_model, strip

__all__ = ["Distillation", "DynamicBatches", "GatedModel", "float32_model", "fold_frozen_gates",
           "fold_gates",
           "gate", "is_gated_model", "recalibrate_batch_norm", "restore_batch_norm", "strip"]
