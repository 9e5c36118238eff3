"""Which units to remove: pluggable criteria, apart from how they are removed (surgery).

A criterion scores every unit of a group of coupled channels (`tfdynhp.surgery.UnitGroup`);
units scoring below its `threshold` are removed. DynHP's criterion is the gate activation rate
of the last epoch (paper §4.1); later methods (activation density, magnitude) plug in the same
way.
"""

import numpy as np

from tfdynhp.validation import check_real


class GateActivationRate:
    """Scores each unit by the fraction of the epoch's examples in which its gate was open
    (`z > 0`), counted by the group's `HardConcreteGate` during training.

    Args:
        threshold: units with a rate below it are removed (the paper's `gamma`, 0.5).
    """

    def __init__(self, threshold=0.5):
        self.threshold = float(check_real("threshold", threshold, 0.0, 1.0))

    def __call__(self, group):
        if group.gate is None:
            raise ValueError(f"Group '{group.name}' has no gate; GateActivationRate needs a "
                             "model built by tfdynhp.gate().")
        return group.gate.activation_rates()

    def get_config(self):
        return {"threshold": self.threshold}


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
