"""Model surgery: physically removing units, all or nothing (`apply_keep_masks`), with the
optimizer's slots sliced the same way. What can be removed together is decided by
`tfdynhp.graph`; how each layer type narrows, by `tfdynhp.layer_types`."""

from tfdynhp.surgery.apply import SurgeryResult, apply_keep_masks, plan_edits, prunable_units

__all__ = ["SurgeryResult", "apply_keep_masks", "plan_edits", "prunable_units"]
