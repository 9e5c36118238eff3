"""Applying keep-masks to a model: all or nothing, in place, inside a running `fit()`."""

import dataclasses
import functools

import numpy as np

from tfdynhp.graph import units as graph
from tfdynhp.layer_types import registry
from tfdynhp.surgery import optimizer as optimizer_surgery
from tfdynhp.surgery import variables as variable_utils


@dataclasses.dataclass(frozen=True)
class SurgeryResult:
    """What `apply_keep_masks` changed: units per prunable group before and after."""

    units_before: dict
    units_after: dict

    @property
    def changed(self):
        return self.units_before != self.units_after


def prunable_units(model, unit_graph=None):
    """`{group name: units}` of every prunable group of `model`."""
    unit_graph = unit_graph or graph.analyze(model)
    return {group.name: group.units for group in unit_graph.groups if group.prunable}


def _removed_roots(unit_graph, keep_masks):
    """Validates `keep_masks` and returns the set of unit ids they remove."""
    by_name = {group.name: group for group in unit_graph.groups}
    unknown = sorted(set(keep_masks) - set(by_name))
    if unknown:
        prunable = sorted(g.name for g in unit_graph.groups if g.prunable)
        raise ValueError(
            f"keep_masks names groups the model does not have: {unknown}. Prunable groups "
            f"(named after the layer creating their channels): {prunable}."
        )
    removed = set()
    for name, mask in keep_masks.items():
        group = by_name[name]
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (group.units,):
            raise ValueError(
                f"The keep-mask of '{name}' must be a boolean array of shape ({group.units},). "
                f"Received: dtype={mask.dtype}, shape={mask.shape}."
            )
        if mask.all():
            continue
        if group.pinned:
            raise ValueError(f"Group '{name}' cannot lose units: it {group.pinned}.")
        if not mask.any():
            raise ValueError(f"The keep-mask of '{name}' removes every unit; keep at least one.")
        for layer_name, positions in group.segments.items():
            if not mask[positions].any():
                raise ValueError(
                    f"The keep-mask of '{name}' removes every channel '{layer_name}' creates; "
                    "keep at least one (tfdynhp.math.selection.keep_mask(..., segments=group.segments) does)."
                )
        removed.update(int(i) for i in group.ids[~mask])
    return removed


def plan_edits(model, keep_masks, unit_graph=None):
    """The `LayerEdit`s (one per layer) that apply `keep_masks`; changes nothing."""
    unit_graph = unit_graph or graph.analyze(model)
    removed = _removed_roots(unit_graph, keep_masks)
    if not removed:
        return []
    edits = {}
    for node in unit_graph.nodes:
        layer = node.operation
        if id(layer) in edits or unit_graph.roles[id(node)].name == registry.BARRIER:
            continue
        inputs = node.input_tensors
        in_keep = unit_graph.kept_positions(inputs[0], removed) if len(inputs) == 1 else None
        out_keep = unit_graph.kept_positions(node.outputs[0], removed)
        if in_keep is None and out_keep is None:
            continue
        edit = registry.edit_for(layer, in_keep, out_keep)
        if edit is not None and (edit.slices or edit.attributes):
            edits[id(layer)] = edit
    return list(edits.values())


def _snapshot(layer):
    tracker = getattr(layer, "_tracker", None)
    return (
        dict(vars(layer)),
        list(layer._trainable_variables),
        list(layer._non_trainable_variables),
        {k: set(v) for k, v in tracker.stored_ids.items()} if tracker is not None else None,
    )


def _restore(layer, snapshot):
    attributes, trainable, non_trainable, stored_ids = snapshot
    layer._trainable_variables[:] = trainable
    layer._non_trainable_variables[:] = non_trainable
    vars(layer).clear()
    vars(layer).update(attributes)
    if stored_ids is not None:
        for key, ids in stored_ids.items():
            layer._tracker.stored_ids[key] = ids


def _functions_reset(model):
    model.train_function = None
    model.test_function = None
    model.predict_function = None
    if getattr(model, "compiled", False):
        model.make_train_function(force=True)


def apply_keep_masks(model, keep_masks, optimizer_slots="slice"):
    """Removes the units whose keep-mask entry is False, physically and in place.

    A removed unit leaves every layer its group passes through (see `tfdynhp.graph.units`):
    the output columns and biases of the layers creating it, the input rows of the layers
    consuming it (every `h*W + w` feature of it behind a `Flatten`), its gates,
    BatchNormalization statistics and depthwise filters. Variables keep their order so `.keras`
    files reload. The optimizer is rebuilt with every option and its slots sliced the same
    way (`optimizer_slots="slice"`) or zeroed (`"reset"`; the step count, the learning rate,
    a loss scale and EMA copies of the weights carry over either way; see
    `tfdynhp.surgery.optimizer`); Keras' train / test / predict functions are rebuilt so that
    training continues on the new variables. Works on gated and plain models alike.

    All or nothing: if anything fails, the model and its optimizer are left exactly as they
    were and the error is raised.

    Args:
        model: a built functional or Sequential Keras model (gated or not).
        keep_masks: `{group name: boolean array over the group's units}`; True keeps. Group
            names are those of the layers creating the channels (`prunable_units(model)`).
        optimizer_slots: `"slice"` or `"reset"`. Defaults to `"slice"`.

    Returns:
        A `SurgeryResult`.
    """
    if optimizer_slots not in ("slice", "reset"):
        raise ValueError(
            f"`optimizer_slots` must be 'slice' or 'reset'. Received: {optimizer_slots!r}"
        )
    unit_graph = graph.analyze(model)
    units_before = prunable_units(model, unit_graph)
    edits = plan_edits(model, keep_masks, unit_graph)
    if not edits:
        return SurgeryResult(units_before, dict(units_before))

    # Phase 1: build every new variable and the new optimizer; the model is untouched.
    replacements = []
    with model.distribute_strategy.scope():
        for edit in edits:
            for attribute, axes in edit.slices.items():
                old = getattr(edit.layer, attribute)
                value = variable_utils.slice_array(variable_utils.to_numpy(old), axes)
                new = variable_utils.new_variable_like(edit.layer, old, value)
                replacements.append((edit.layer, old, new, axes))
        by_id = {id(old): (new, axes) for _, old, new, axes in replacements}
        old_trainable = model.trainable_variables
        new_trainable = [by_id.get(id(v), (v, None))[0] for v in old_trainable]
        slicers = [
            functools.partial(variable_utils.slice_array, axes=by_id[id(v)][1])
            if id(v) in by_id
            else optimizer_surgery.identity_slicer
            for v in old_trainable
        ]
        old_optimizer = getattr(model, "optimizer", None)
        new_optimizer = old_optimizer
        if old_optimizer is not None:
            new_optimizer = optimizer_surgery.rebuild_optimizer(
                old_optimizer, new_trainable, slicers, reset_slots=optimizer_slots == "reset"
            )

    # Phase 2: commit; undo everything on any failure.
    snapshots = [(edit.layer, _snapshot(edit.layer)) for edit in edits]
    model_functions = (model.train_function, model.test_function, model.predict_function)
    try:
        for layer, old, new, _ in replacements:
            variable_utils.swap_variable(layer, old, new)
        for edit in edits:
            for name, value in edit.attributes.items():
                setattr(edit.layer, name, value)
        if old_optimizer is not None:
            model.optimizer = new_optimizer
        graph.refresh_symbolic_shapes(model)
        _functions_reset(model)
    except BaseException:
        for layer, snapshot in snapshots:
            _restore(layer, snapshot)
        graph.refresh_symbolic_shapes(model)
        if old_optimizer is not None:
            model.optimizer = old_optimizer
        model.train_function, model.test_function, model.predict_function = model_functions
        raise
    units_after = prunable_units(model)
    return SurgeryResult(units_before, units_after)
