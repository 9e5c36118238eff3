"""Keep-masks from per-unit scores, as pure functions: keep the units scoring at least a
threshold, or remove the lowest ones, never below a minimum and never emptying a segment (the
part of a coupled group one layer creates)."""

import numpy as np


def _keep_best(keep, scores, positions, min_units):
    min_units = min(int(min_units), len(positions))
    if keep[positions].sum() < min_units:
        order = np.argsort(-np.nan_to_num(scores[positions], nan=np.inf), kind="stable")
        keep[positions[order[:min_units]]] = True


def keep_mask(scores, threshold, min_units=1, segments=None):
    """Boolean mask of the units to keep: `scores >= threshold`, and at least the `min_units`
    best-scoring units (ties broken by position). NaN scores (nothing observed) keep the unit.

    Args:
        scores: one score per unit.
        threshold: units scoring below it go.
        min_units: units always kept. Defaults to 1.
        segments: optional `{name: positions}` of parts of the group that must each keep at
            least one unit (`UnitGroup.segments`).
    """
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.isnan(scores) | (scores >= threshold)
    _keep_best(keep, scores, np.arange(scores.size), min_units)
    for positions in (segments or {}).values():
        _keep_best(keep, scores, np.asarray(positions), 1)
    return keep


def lowest_removed(scores, count, min_units=1, segments=None):
    """Keep-mask removing the `count` lowest-scoring units (NaN never goes; ties by
    position), never below `min_units` nor emptying a segment."""
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.ones(scores.size, bool)
    removable = np.flatnonzero(~np.isnan(scores))
    count = max(0, min(int(count), removable.size, scores.size - int(min_units)))
    order = removable[np.argsort(scores[removable], kind="stable")]
    keep[order[:count]] = False
    for positions in (segments or {}).values():
        _keep_best(keep, scores, np.asarray(positions), 1)
    return keep
