"""One-shot structured pruning of a trained Keras model: score the units with a criterion,
choose the ones to remove with a rule, remove them with surgery."""

import dataclasses

from tfdynhp.graph import probes
from tfdynhp.graph import units as graph_lib
from tfdynhp.policies import criteria as criteria_lib
from tfdynhp.surgery import apply_keep_masks


@dataclasses.dataclass(frozen=True)
class PruneReport:
    """What `prune` did: the criterion's scores, the keep-masks applied, units per prunable
    group before and after."""

    criterion: str
    scores: dict
    keep_masks: dict
    units_before: dict
    units_after: dict

    @property
    def removed(self):
        return sum(self.units_before.values()) - sum(self.units_after.values())


def prune(model, criterion="magnitude", fraction=None, count=None, threshold=None, data=None,
          min_units=1, groups=None, optimizer_slots="slice"):
    """Removes the lowest-scoring units of every prunable group of `model`, in place.

    Works on plain (ungated) functional and Sequential models as well as gated ones. Units
    reaching the model's output or input are never removed (see `tfdynhp.graph.units`).

    Args:
        model: a built Keras model (compiled or not).
        criterion: a name (`tfdynhp.policies.criteria.CRITERIA`: "magnitude", "taylor", "lrp",
            "activation_density", "random", "gate_rate") or a criterion object. Defaults to
            "magnitude".
        fraction: remove this fraction of each group (float, or `{group: fraction}`).
        count: remove this many units of each group (int, or `{group: count}`).
        threshold: remove the units scoring below it.
        data: `x` or `(x, y)` for the criteria that read data ("taylor" needs labels).
        min_units: units every group keeps. Defaults to 1.
        groups: names of the groups to prune; defaults to all.
        optimizer_slots: "slice" or "reset" (see `apply_keep_masks`). Defaults to "slice".

    Returns:
        A `PruneReport`.

    Raises:
        ValueError: unknown criterion, no or several rules, data missing for a criterion that
            needs it, unknown group names. The model is untouched on any error.

    Example:
    >>> report = tfdynhp.prune(model, "taylor", fraction=0.5, data=(x[:512], y[:512]))
    >>> report.units_after
    """
    criterion = criteria_lib.get(criterion)
    name = getattr(criterion, "name", type(criterion).__name__)
    if getattr(criterion, "needs_data", False):
        data = probes.check_data(data, name, getattr(criterion, "needs_labels", False))
    if sum(v is not None for v in (fraction, count, threshold)) != 1:
        raise ValueError("Give exactly one of `fraction`, `count` or `threshold` to `prune`.")
    unit_graph = graph_lib.analyze(model)
    prunable = {g.name for g in unit_graph.groups if g.prunable}
    if groups is not None:
        unknown = sorted(set(groups) - prunable)
        if unknown:
            raise ValueError(f"`groups` names groups that are not prunable: {unknown}. "
                             f"Prunable groups: {sorted(prunable)}.")
    scores = criterion.scores(model, data, unit_graph)
    if groups is not None:
        scores = {k: v for k, v in scores.items() if k in set(groups)}
    masks = criteria_lib.select(scores, unit_graph, threshold=threshold, fraction=fraction,
                                count=count, min_units=min_units)
    result = apply_keep_masks(model, masks, optimizer_slots=optimizer_slots)
    return PruneReport(name, scores, masks, result.units_before, result.units_after)
