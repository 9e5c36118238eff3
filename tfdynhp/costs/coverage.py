"""Whether the cost model covers a model: every parameter counted by some layer call, every
layer priced.

A target ("50% params", "2M macs") is a fraction or an amount of what the walk
(`tfdynhp.costs.walk`) counts; a parameter the walk does not see (a cost function that
undercounts, a variable held by the model itself, a layer never called in the graph) would
make a target look met while the real model is larger. `coverage_of(model)` lists them, and
`DynHPCallback` refuses a target when it finds any (`check_target`).
"""

import dataclasses

import keras
import numpy as np

from tfdynhp.costs.memory import is_gate_state
from tfdynhp.costs.walk import walk
from tfdynhp.graph.nodes import functional_of
from tfdynhp.layer_types.registry import describe
from tfdynhp.validation import ConfigurationError


@dataclasses.dataclass(frozen=True)
class Coverage:
    """What the cost model misses in a model.

    Attributes:
        uncounted: `{name: (stored values, values counted)}` of every layer (or the model
            itself) holding parameters the walk does not count.
        unpriced: names of the layer calls whose type has no cost function (MACs and ops
            unknown, counted as 0).
        unpriced_weights: the unpriced ones whose layer holds weights (the ones whose MACs
            matter).
    """

    uncounted: dict
    unpriced: tuple
    unpriced_weights: tuple


def _size(variable):
    return int(np.prod(variable.shape, dtype=np.int64))


def _stored(layer):
    return sum(_size(v) for v in layer.weights if not is_gate_state(layer, v))


def _graph_layers(model):
    """The layers of the model's graph, and those of the models nested in it."""
    for layer in functional_of(model).layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            yield from _graph_layers(layer)
        else:
            yield layer


def coverage_of(model, found=None):
    """The `Coverage` of `model` by the cost model (one walk, unless `found` is given)."""
    found = found or walk(model, warn=False)
    uncounted = {}
    seen = set()
    for layer in _graph_layers(model):
        seen.update(id(v) for v in layer.weights)
        stored = _stored(layer)
        counted = found.counted.get(id(layer), 0)
        if stored > counted:
            uncounted[describe(layer)] = (stored, counted)
    own = sum(_size(v) for v in model.weights if id(v) not in seen)
    if own:
        uncounted[f"model '{model.name}' itself"] = (own, 0)
    by_name = {cost.name: cost for cost in found.costs}
    unpriced = tuple(found.unsupported)
    weighted = tuple(name for name in unpriced if by_name[name].params > 0)
    return Coverage(uncounted, unpriced, weighted)


def _listing(names, limit=6):
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_target(model, resource):
    """Refuses a target the cost model cannot measure on `model`.

    Raises:
        ConfigurationError: when parameters of `model` are not counted (any resource), or,
            for a `"macs"` target, layers holding weights have no cost function. Names the
            layers and says how to fix it.

    Returns:
        The `Coverage` (its weightless `unpriced` calls count 0 MACs; the caller may warn).
    """
    found = coverage_of(model)
    if found.uncounted:
        items = [f"{name}: {stored:,} stored, {counted:,} counted"
                 for name, (stored, counted) in found.uncounted.items()]
        raise ConfigurationError(
            "A target needs every parameter of the model counted, but the cost model misses "
            f"some: {_listing(items)}. Register a cost function counting them "
            "(tfdynhp.layer_types.register(LayerClass, ..., cost=...)), or keep the weights in "
            "layers called in the model's graph."
        )
    if resource in ("macs", "m4_instructions") and found.unpriced_weights:
        raise ConfigurationError(
            f"A {'MACs' if resource == 'macs' else resource} target needs the MACs of every "
            "layer with weights, but these have "
            f"no cost function: {_listing(found.unpriced_weights)}. Register one with "
            "tfdynhp.layer_types.register(LayerClass, ..., cost=...), or aim at a params target."
        )
    return found
