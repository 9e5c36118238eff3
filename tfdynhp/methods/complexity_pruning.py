"""Complexity-driven structured pruning (Zawish et al., "Complexity-Driven CNN Compression for
Resource-constrained Edge AI"): the layers that dominate a resource lose the most units.

Three modes name the resource: parameter-aware (`"pa"`, parameters), FLOPs-aware (`"fa"`,
multiply-accumulates) and memory-aware (`"ma"`, activation values per example). A prunable
group's *share* is what all its units cost in that resource (its own weights or MACs or
outputs and those of the layers reading it: `tfdynhp.costs.units`) over the total of all groups.
Groups with an above-average share are selected, and each loses `amount * share / max share`
of its units (the most complex group loses `amount`); the others are left whole. The plan is
applied to a freshly built model, which is then trained directly: no ranking over data, no
prune / fine-tune loop. Which units of a selected group go is a criterion's choice
(`"magnitude"` at initialization by default).
"""

import numpy as np

from tfdynhp.costs import memory
from tfdynhp.costs import units as resources
from tfdynhp.graph import units as graph_lib
from tfdynhp.methods.pruning import prune
from tfdynhp.validation import check_real

MODES = {"pa": "params", "fa": "macs", "ma": "activations"}


def check_mode(mode):
    key = str(mode).lower()
    if key not in MODES:
        raise ValueError(f"Unknown complexity mode {mode!r}. Expected one of: 'pa' (parameters),"
                         " 'fa' (FLOPs / MACs), 'ma' (activation memory).")
    return key


def _activation_costs(model, unit_graph):
    """Activation values one unit of each prunable group accounts for, per example."""
    full = memory.activation_values(model, unit_graph=unit_graph)
    costs = {}
    for group in unit_graph.groups:
        if group.prunable:
            mask = np.ones(group.units, bool)
            mask[0] = False
            costs[group.name] = full - memory.activation_values(model, {group.name: mask},
                                                                   unit_graph)
    return costs


def group_costs(model, mode, unit_graph=None):
    """`{group name: what all its units cost}` in the mode's resource."""
    mode = check_mode(mode)
    unit_graph = unit_graph or graph_lib.analyze(model)
    if MODES[mode] == "activations":
        per_unit = _activation_costs(model, unit_graph)
    else:
        per_unit = resources.unit_costs(model, MODES[mode], unit_graph=unit_graph)
    return {g.name: float(per_unit[g.name]) * g.units for g in unit_graph.groups if g.prunable}


def shares(costs):
    """Each group's share of the total cost (pure)."""
    total = sum(costs.values())
    if total <= 0:
        return {name: 0.0 for name in costs}
    return {name: cost / total for name, cost in costs.items()}


def plan(shares_by_group, amount):
    """`{group: fraction to remove}`: groups at or above the mean share lose
    `amount * share / max share`; the others nothing (pure).

    Args:
        shares_by_group: `{group: share}` (`shares`).
        amount: fraction the most complex group loses, in [0, 1).
    """
    check_real("amount", amount, 0.0, 1.0)
    if not shares_by_group:
        return {}
    mean = 1.0 / len(shares_by_group)
    top = max(shares_by_group.values())
    return {name: (amount * share / top if share >= mean - 1e-12 and top > 0 else 0.0)
            for name, share in shares_by_group.items()}


def complexity_prune(model, mode="pa", amount=0.5, criterion="magnitude", data=None,
                     min_units=1):
    """Prunes `model` in place by the complexity plan of `mode` (see module doc).

    Args:
        model: a built Keras model, usually freshly initialized (train it afterwards).
        mode: "pa", "fa" or "ma". Defaults to "pa".
        amount: fraction of units the most complex group loses. Defaults to 0.5.
        criterion: which units of a selected group go. Defaults to "magnitude".
        data: for criteria that need it.
        min_units: units every group keeps. Defaults to 1.

    Returns:
        `(plan, report)`: `{group: fraction}` and the `tfdynhp.PruneReport`.

    Example:
    >>> model = tfdynhp.architectures.build("lenet5")
    >>> fractions, report = complexity_prune(model, "fa", amount=0.6)
    >>> model.compile("adam", "sparse_categorical_crossentropy"); model.fit(x, y)
    """
    mode = check_mode(mode)
    unit_graph = graph_lib.analyze(model)
    fractions = plan(shares(group_costs(model, mode, unit_graph)), amount)
    report = prune(model, criterion, fraction=fractions, data=data, min_units=min_units)
    return fractions, report
