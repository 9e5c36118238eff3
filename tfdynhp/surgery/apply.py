"""Applying keep-masks to a model: all or nothing, in place, inside a running `fit()`."""

import dataclasses
import functools

import numpy as np

from tfdynhp.surgery import graph, registry
from tfdynhp.surgery import optimizer as optimizer_surgery
from tfdynhp.surgery import variables as variable_utils


@dataclasses.dataclass(frozen=True)
class SurgeryResult:
    """What `apply_keep_masks` changed: units per gated layer before and after."""

    units_before: dict
    units_after: dict

    @property
    def changed(self):
        return self.units_before != self.units_after


def _validate_masks(groups, keep_masks):
    by_name = {group.consumer.name: group for group in groups}
    unknown = sorted(set(keep_masks) - set(by_name))
    if unknown:
        raise ValueError(
            f"keep_masks names layers that are not gated layers of the model: {unknown}. "
            f"Gated layers: {sorted(by_name)}."
        )
    kept = {}
    for name, mask in keep_masks.items():
        mask = np.asarray(mask)
        units = by_name[name].units
        if mask.dtype != bool or mask.shape != (units,):
            raise ValueError(
                f"The keep-mask of '{name}' must be a boolean array of shape ({units},). "
                f"Received: dtype={mask.dtype}, shape={mask.shape}."
            )
        if not mask.any():
            raise ValueError(f"The keep-mask of '{name}' removes every unit; keep at least one.")
        kept[name] = np.flatnonzero(mask)
    return by_name, kept


def plan_edits(model, keep_masks):
    """The `LayerEdit`s (one per layer, merged) that apply `keep_masks`; changes nothing."""
    groups = graph.unit_groups(model)
    by_name, kept = _validate_masks(groups, keep_masks)
    edits = {}

    def add(edit):
        key = id(edit.layer)
        if key in edits:
            edits[key].merge(edit)
        else:
            edits[key] = edit

    for name, keep in kept.items():
        group = by_name[name]
        if len(keep) == group.units:
            continue
        add(registry.consumer_edit(group.consumer, keep))
        add(registry.producer_edit(group.producer, keep))
        for layer in group.per_unit:
            add(registry.per_unit_edit(layer, keep))
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

    For each gated layer named in `keep_masks`, its input rows and gates, the producing layer's
    output columns and biases, and the per-unit weights and statistics of the layers between
    (BatchNormalization) are sliced; variables keep their order so `.keras` files reload. The
    optimizer is rebuilt with its slots sliced the same way (`optimizer_slots="slice"`) or
    fresh (`"reset"`); Keras' train / test / predict functions are rebuilt so that training
    continues on the new variables.

    All or nothing: if anything fails, the model and its optimizer are left exactly as they
    were and the error is raised.

    Args:
        model: a model built by `tfdynhp.gate()`.
        keep_masks: `{gated layer name: boolean array over its input units}`; True keeps.
        optimizer_slots: `"slice"` or `"reset"`. Defaults to `"slice"`.

    Returns:
        A `SurgeryResult`.
    """
    if optimizer_slots not in ("slice", "reset"):
        raise ValueError(
            f"`optimizer_slots` must be 'slice' or 'reset'. Received: {optimizer_slots!r}"
        )
    units_before = {layer.name: layer.input_units for layer in graph.gated_layers(model)}
    edits = plan_edits(model, keep_masks)
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
            if optimizer_slots == "slice":
                new_optimizer = optimizer_surgery.rebuild_optimizer(
                    old_optimizer, new_trainable, slicers
                )
            else:
                new_optimizer = old_optimizer.__class__.from_config(old_optimizer.get_config())

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
    units_after = {layer.name: layer.input_units for layer in graph.gated_layers(model)}
    return SurgeryResult(units_before, units_after)
