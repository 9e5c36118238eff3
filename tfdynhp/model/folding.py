"""Folding frozen gates into the layers that read their channels, in place, inside a running
`fit`: the frozen phase of a DynHP target then trains the stripped layers at the speed of a
plain model."""

import numpy as np

from tfdynhp.graph import units as graph
from tfdynhp.layer_types import registry
from tfdynhp.layers.gate import HardConcreteGate
from tfdynhp.math.selection import keep_mask
from tfdynhp.model.gating import _gate_scale, _scale_input_channels, is_gated_model
from tfdynhp.surgery import apply_keep_masks
from tfdynhp.surgery.optimizer import rescale_gradient_slots


def fold_frozen_gates(model, optimizer_slots="slice", remove_closed=True):
    """Folds every frozen gate of `model` into the layers that read its channels, as
    `tfdynhp.model.strip` does, and makes the gate an identity (`HardConcreteGate.fold`).

    1. Channels whose test-time gate is exactly 0 are removed (`apply_keep_masks`): they
       contribute nothing, and a folded zero would train again. With `remove_closed=False`
       they stay and train again from zero reading weights (the function is unchanged at the
       fold): a target's frozen phase keeps the units the target kept, so the model ends at
       the size asked for instead of below it.
    2. Every channel-mixing layer reading a frozen gate's channels gets its input weights
       scaled by the gate's test-time values (`W' = diag(z_hat) W`), so the model computes
       the same function, and the optimizer's state of those weights is rescaled to the new
       parameters (`tfdynhp.surgery.optimizer.rescale_gradient_slots`: Adam and its family;
       other optimizers keep theirs).
    3. The gates become identities: no gate work is left in the training step.

    Training the folded weights is training the stripped model, the one deployed. It is the
    frozen-gate training exactly for channels whose gate is 1 (the default initial gates and
    every gate past `log_alpha = 2.4`); for a channel with `0 < z_hat < 1` the steps differ:
    Adam moves `W'` by about its learning rate per step where the frozen gate moved it by
    `z_hat` times that. A gate whose kept channels include a closed one (a group kept at
    `min_units` with every gate closed) is left frozen, unfolded.

    Retrace the train function afterwards (`model.make_train_function(force=True)`).

    Args:
        model: a model built by `tfdynhp.gate()`.
        optimizer_slots: passed to `apply_keep_masks` for step 1. Defaults to `"slice"`.
        remove_closed: whether step 1 runs. Defaults to `True`.

    Returns:
        The names of the gates folded (empty when no frozen gate was left to fold).
    """
    gates = [layer for layer in model.layers
             if isinstance(layer, HardConcreteGate) and layer.frozen and not layer.folded]
    if not gates:
        return []
    if remove_closed:
        smallest_open = np.finfo("float32").tiny
        masks = {
            group.name: keep_mask(group.gate.test_time_gates(), smallest_open, min_units=1,
                                  segments=group.segments)
            for group in graph.gated_groups(model) if any(group.gate is g for g in gates)
        }
        apply_keep_masks(model, masks, optimizer_slots=optimizer_slots)
        foldable = [gate for gate in gates if np.all(gate.test_time_gates() > 0.0)]
    else:
        foldable = gates
    unit_graph = graph.analyze(model)
    optimizer = getattr(model, "optimizer", None)
    for node in unit_graph.nodes:
        if unit_graph.roles[id(node)].name != registry.MIXING:
            continue
        scale = _gate_scale(node.input_tensors[0], foldable)
        if np.all(scale == 1.0):
            continue
        for variable, factor in _scale_input_channels(node.operation, scale):
            if optimizer is not None:
                # W' = z W: the gradient of W' is the gradient of W divided by z; a weight
                # folded to zero (a closed channel kept) starts with fresh state.
                inverse = np.divide(1.0, factor, out=np.zeros_like(factor), where=factor > 0)
                rescale_gradient_slots(optimizer, variable, inverse)
    for gate in foldable:
        gate.fold()
    return [gate.name for gate in foldable]


def fold_gates(model, optimizer_slots="slice"):
    """Folds every gate of a gated model into its own weights, in place: `strip()` without the
    copy, for a model that keeps training (a QAT phase in the same `fit`).

    The gates are frozen and folded (`fold_frozen_gates`): channels whose test-time gate is
    exactly 0 are removed, the other gate values folded into the weights reading them, the
    gates become identities; a group kept at `min_units` with every gate closed folds to zero
    weights. The model computes the same inference outputs and `strip(model)` has the same
    weights.

    Args:
        model: a model built by `tfdynhp.gate()`.
        optimizer_slots: `"slice"` or `"reset"` for the removed channels. Defaults to `"slice"`.

    Returns:
        `model`.

    Raises:
        ValueError: for a model without gates.
    """
    if not is_gated_model(model):
        raise ValueError(
            f"Model '{getattr(model, 'name', model)}' has no gated layer; fold_gates() takes a "
            "model built by tfdynhp.gate()."
        )
    for layer in model.layers:
        if isinstance(layer, HardConcreteGate) and not layer.frozen:
            layer.freeze()
    fold_frozen_gates(model, optimizer_slots)
    fold_frozen_gates(model, optimizer_slots, remove_closed=False)  # every gate closed
    return model
