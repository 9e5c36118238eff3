"""Which units to remove: pluggable criteria, apart from how they are removed (surgery).

A criterion gives one score per unit of every prunable group of coupled channels
(`tfdynhp.surgery.UnitGroup`); a *rule* turns the scores into keep-masks: units below a
`threshold`, the lowest `fraction` of each group, or the lowest `count` of each group
(`select`). Surgery (`tfdynhp.surgery.apply_keep_masks`) removes them, whatever the criterion.

Criteria (named by string in `get`, or passed as objects):

- `"gate_rate"` (`GateActivationRate`): DynHP's gate activation rate of the last epoch (paper
  §4.1); gated models only.
- `"magnitude"` (`Magnitude`): the L1 or L2 norm of the weights that create the unit in every
  layer of the group (Li et al. 2017, filter norms), optionally with the weights reading it.
- `"taylor"` (`Taylor`): first-order Taylor expansion of the loss when the unit is zeroed,
  `mean_n |mean_hw a * dL/da|` (Molchanov et al. 2017), over data.
- `"activation_density"` (`ActivationDensity`): the fraction of non-zero values of the unit
  over data (Foldy-Porto et al.).
- `"lrp"` (`LRP`): mean layer-wise relevance of the unit over data, epsilon rule (Balemans et
  al.; `tfdynhp.policies.lrp`).
- `"random"` (`Random`): a control.

A criterion object has `name`, `needs_data` and `scores(model, data=None, unit_graph=None) ->
{group name: scores}`; groups it cannot score are absent or NaN (kept).
"""

import numpy as np
import tensorflow as tf

from tfdynhp.graph import probes
from tfdynhp.graph import units as graph_lib
from tfdynhp.layer_types import registry
from tfdynhp.math.selection import keep_mask, lowest_removed
from tfdynhp.policies import lrp as lrp_lib
from tfdynhp.validation import check_integer, check_real


def _prunable(unit_graph):
    return [group for group in unit_graph.groups if group.prunable]


def _positions(group):
    return {int(root): position for position, root in enumerate(group.ids)}


class GateActivationRate:
    """Scores each unit by the fraction of the epoch's examples in which its gate was open
    (`z > 0`), counted by the group's `HardConcreteGate` during training.

    Args:
        threshold: units with a rate below it are removed (the paper's `gamma`, 0.5).
    """

    name = "gate_rate"
    needs_data = False

    def __init__(self, threshold=0.5):
        self.threshold = float(check_real("threshold", threshold, 0.0, 1.0))

    def __call__(self, group):
        if group.gate is None:
            raise ValueError(f"Group '{group.name}' has no gate; GateActivationRate needs a "
                             "model built by tfdynhp.gate().")
        return group.gate.activation_rates()

    def scores(self, model, data=None, unit_graph=None):
        unit_graph = unit_graph or graph_lib.analyze(model)
        gated = [g for g in _prunable(unit_graph) if g.gate is not None]
        if not gated:
            raise ValueError(f"Criterion 'gate_rate' needs a gated model; '{model.name}' has "
                             "no gates. Use tfdynhp.gate(model) and train it, or another "
                             f"criterion ({', '.join(sorted(CRITERIA))}).")
        return {g.name: self(g) for g in gated}

    def get_config(self):
        return {"threshold": self.threshold}


def _per_channel(weights, axis):
    """`weights` summed over every axis but `axis`."""
    axis %= weights.ndim
    return weights.sum(tuple(a for a in range(weights.ndim) if a != axis))


def _add_by_root(totals, unit_graph, tensor, per_channel):
    """Adds `per_channel` (one value per channel of `tensor`) to `totals[root]`."""
    for root, value in zip(unit_graph.roots(unit_graph.labels(tensor)).tolist(), per_channel):
        totals[root] = totals.get(root, 0.0) + float(value)


class Magnitude:
    """Scores each unit by the L_p norm of its weights over the coupled group: the kernel
    slices creating it in every Dense / Conv / SeparableConv producing the group's channels
    (for an `Add`-coupled group, every branch), and with `include="both"` also the kernel rows
    reading it.

    Args:
        p: 1 (L1) or 2 (L2). Defaults to 1.
        include: `"out"` (weights creating the unit, Li et al.'s filter norm) or `"both"`.
            Defaults to `"out"`.
    """

    name = "magnitude"
    needs_data = False

    def __init__(self, p=1, include="out"):
        if p not in (1, 2):
            raise ValueError(f"Expected `p` to be 1 or 2. Received: p={p!r}")
        if include not in ("out", "both"):
            raise ValueError(f"Expected `include` to be 'out' or 'both'. Received: {include!r}")
        self.p, self.include = p, include

    def scores(self, model, data=None, unit_graph=None):
        unit_graph = unit_graph or graph_lib.analyze(model)
        totals = {}
        for node in unit_graph.nodes:
            if unit_graph.roles[id(node)].name != registry.MIXING:
                continue
            for view in registry.kernels_of(node.operation):
                weights = np.abs(np.asarray(getattr(node.operation, view.attribute))) ** self.p
                if view.out_axis is not None:
                    _add_by_root(totals, unit_graph, node.outputs[0],
                                 _per_channel(weights, view.out_axis))
                if view.in_axis is not None and self.include == "both":
                    _add_by_root(totals, unit_graph, node.input_tensors[0],
                                 _per_channel(weights, view.in_axis))
        out = {}
        for group in _prunable(unit_graph):
            values = np.array([totals.get(int(r), np.nan) for r in group.ids])
            if not np.all(np.isnan(values)):
                out[group.name] = values ** (1.0 / self.p)
        return out

    def get_config(self):
        return {"p": self.p, "include": self.include}


class _SiteCriterion:
    """Base of the criteria reading the values of each group's channels over data."""

    needs_data = True
    needs_labels = False

    def __init__(self, batch_size=128):
        self.batch_size = check_integer("batch_size", batch_size, 1)

    def scores(self, model, data=None, unit_graph=None):
        data = probes.check_data(data, self.name, self.needs_labels)
        unit_graph = unit_graph or graph_lib.analyze(model)
        sites = probes.score_sites(unit_graph)
        tensors = [t for ts in sites.values() for t in ts]
        sums = {id(t): 0.0 for t in tensors}
        for x, y in probes.batches(data, self.batch_size):
            for key, value in self._batch(model, x, y, tensors).items():
                sums[key] = sums[key] + value
        n = probes.example_count(data)
        return {name: sum(sums[id(t)] for t in ts) / (n * self._per_example_divisor(len(ts)))
                for name, ts in sites.items()}

    def _per_example_divisor(self, site_count):
        return 1.0

    def get_config(self):
        return {"batch_size": self.batch_size}


class ActivationDensity(_SiteCriterion):
    """Scores each unit by the fraction of its values that are non-zero over the data (over
    examples and spatial positions; Foldy-Porto et al.'s activation density, read after the
    activation). For a group read at several tensors, the mean over them.

    Args:
        batch_size: examples per forward pass. Defaults to 128.
    """

    name = "activation_density"

    def _batch(self, model, x, y, tensors):
        _, values = probes.forward(model, x)
        out = {}
        for t in tensors:
            nonzero = tf.cast(tf.not_equal(values[id(t)], 0), tf.float64)
            out[id(t)] = probes.per_channel(nonzero, "mean").numpy().sum(0)
        return out

    def _per_example_divisor(self, site_count):
        return float(site_count)


def _per_example_loss(model, loss):
    import keras

    if loss is not None:
        fn = keras.losses.get(loss)
        return lambda y, p: fn(y, p)
    from_logits = not _ends_with_softmax(model)
    return lambda y, p: keras.losses.sparse_categorical_crossentropy(y, p,
                                                                     from_logits=from_logits)


def _ends_with_softmax(model):
    import keras

    graph_model = graph_lib.functional_of(model)
    output = graph_model.outputs[0]
    for node in graph_lib.graph_nodes(model):
        if any(output is t for t in node.outputs):
            layer = node.operation
            if isinstance(layer, keras.layers.Softmax):
                return True
            activation = getattr(layer, "activation", None)
            return activation is keras.activations.softmax or getattr(
                activation, "__name__", "") == "softmax"
    return False


class Taylor(_SiteCriterion):
    """First-order Taylor criterion (Molchanov et al. 2017, eq. 8): the change of the loss
    when the unit is zeroed, `Theta_j = mean_n |mean_hw a_nj * dL_n / da_nj|`, with `a` the
    unit's values where it is read and `L_n` the loss of example `n`.

    Args:
        loss: a Keras loss giving one value per example; defaults to sparse categorical
            cross-entropy (from logits unless the model ends with a softmax).
        batch_size: examples per pass. Defaults to 128.
        spatial: how a channel's spatial positions combine: `"mean"` (Molchanov's eq. 8,
            which ranks channels within a layer; across layers it divides a channel's loss
            change by its positions) or `"sum"` (the loss change itself, comparable across
            layers of different resolution: what a rule that cuts across layers needs).
            Defaults to `"mean"`.
    """

    name = "taylor"
    needs_labels = True

    def __init__(self, loss=None, batch_size=128, spatial="mean"):
        super().__init__(batch_size)
        self.loss = loss
        if spatial not in ("mean", "sum"):
            raise ValueError("`spatial` must be 'mean' or 'sum'. Received: "
                             f"spatial={spatial!r}")
        self.spatial = spatial

    def _batch(self, model, x, y, tensors):
        loss_fn = _per_example_loss(model, self.loss)
        with tf.GradientTape() as tape:
            outputs, values = probes.forward(model, x, watch=tensors, tape=tape)
            total = tf.reduce_sum(loss_fn(tf.convert_to_tensor(y), outputs[0]))
        activations = [values[id(t)] for t in tensors]
        grads = tape.gradient(total, activations)
        out = {}
        for t, a, g in zip(tensors, activations, grads):
            g = tf.zeros_like(a) if g is None else g
            out[id(t)] = tf.abs(probes.per_channel(a * g, self.spatial)).numpy().astype(
                np.float64).sum(0)
        return out

    def get_config(self):
        return {"loss": self.loss, "batch_size": self.batch_size, "spatial": self.spatial}


class LRP(_SiteCriterion):
    """Mean relevance of each unit over the data (layer-wise relevance propagation, epsilon
    rule, BatchNormalization folded; see `tfdynhp.policies.lrp`), summed over the unit's spatial
    positions; relevance starts from the true class when labels are given, else from the
    predicted class (Balemans et al.'s criterion for task specialization). Relevance is
    signed: units that argue against the class score lowest.

    Args:
        epsilon: the epsilon rule's stabilizer. Defaults to `1e-3`.
        rule: "epsilon", or "alpha_beta" (Dense and Conv layers; others keep epsilon).
            Defaults to "epsilon".
        alpha: the alpha-beta rule's `alpha`; `beta = alpha - 1`. Defaults to 1.
        batch_size: examples per pass. Defaults to 128.
    """

    name = "lrp"

    def __init__(self, epsilon=1e-3, rule="epsilon", alpha=1.0, batch_size=128):
        super().__init__(batch_size)
        self.epsilon = float(check_real("epsilon", epsilon))
        if rule not in ("epsilon", "alpha_beta"):
            raise ValueError(f"Expected `rule` to be 'epsilon' or 'alpha_beta'. Received: "
                             f"{rule!r}")
        self.rule = rule
        self.alpha = float(check_real("alpha", alpha, 1.0))

    def _batch(self, model, x, y, tensors):
        relevances = lrp_lib.relevance(model, x, tensors, target=y, epsilon=self.epsilon,
                                       rule=self.rule, alpha=self.alpha,
                                       beta=self.alpha - 1.0)
        out = {}
        for t in tensors:
            r = relevances.get(id(t))
            out[id(t)] = 0.0 if r is None else probes.per_channel(r, "sum").numpy().astype(
                np.float64).sum(0)
        return out

    def get_config(self):
        return {"epsilon": self.epsilon, "rule": self.rule, "alpha": self.alpha,
                "batch_size": self.batch_size}


class Random:
    """Uniform random scores: the control every criterion should beat.

    Args:
        seed: NumPy seed. Defaults to 0.
    """

    name = "random"
    needs_data = False

    def __init__(self, seed=0):
        self.seed = check_integer("seed", seed, 0)

    def scores(self, model, data=None, unit_graph=None):
        unit_graph = unit_graph or graph_lib.analyze(model)
        rng = np.random.default_rng(self.seed)
        return {g.name: rng.random(g.units) for g in _prunable(unit_graph)}

    def get_config(self):
        return {"seed": self.seed}


CRITERIA = {
    "gate_rate": GateActivationRate,
    "magnitude": Magnitude,
    "taylor": Taylor,
    "activation_density": ActivationDensity,
    "lrp": LRP,
    "random": Random,
}


def get(identifier, **kwargs):
    """A criterion from its name (`CRITERIA`, with `kwargs` for its constructor) or an object
    with a `scores(model, data, unit_graph)` method (returned as is).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
        TypeError: for anything else.
    """
    if isinstance(identifier, str):
        key = identifier.strip().lower().replace("-", "_")
        if key not in CRITERIA:
            raise ValueError(f"Unknown criterion {identifier!r}. Expected one of: "
                             f"{', '.join(sorted(CRITERIA))}, or an object with a "
                             "`scores(model, data, unit_graph)` method.")
        return CRITERIA[key](**kwargs)
    if callable(getattr(identifier, "scores", None)):
        if kwargs:
            raise TypeError("Criterion arguments go to the constructor; pass them only with "
                            "a criterion name.")
        return identifier
    raise TypeError(f"A criterion is a name ({', '.join(sorted(CRITERIA))}) or an object with "
                    f"a `scores` method. Received: {identifier!r}")


# -- rules: scores -> keep-masks (the per-group rules are in `tfdynhp.math.selection`) ------


def select(scores, unit_graph, threshold=None, fraction=None, count=None, min_units=1):
    """Keep-masks from scores under one rule, per group.

    Args:
        scores: `{group name: scores}` (a criterion's `scores`).
        unit_graph: the model's `UnitGraph` (for segments and sizes).
        threshold: remove units scoring below it.
        fraction: remove this fraction (rounded down) of each group's units; a float in
            [0, 1) or `{group name: fraction}`.
        count: remove this many units of each group; an int or `{group name: count}`.
        min_units: units every group keeps. Defaults to 1.

    Returns:
        `{group name: boolean keep-mask}` for the groups that lose units.

    Raises:
        ValueError: unless exactly one rule is given, or for values out of range.
    """
    given = [name for name, value in (("threshold", threshold), ("fraction", fraction),
                                      ("count", count)) if value is not None]
    if len(given) != 1:
        raise ValueError("Give exactly one rule: `threshold`, `fraction` or `count`. "
                         f"Received: {given or 'none'}.")
    check_integer("min_units", min_units, 1)
    masks = {}
    for name, values in scores.items():
        group = unit_graph.group(name)
        values = np.asarray(values, np.float64)
        if values.shape != (group.units,):
            raise ValueError(f"Criterion gave {values.shape} scores for group '{name}' of "
                             f"{group.units} units.")
        if threshold is not None:
            mask = keep_mask(values, float(threshold), min_units, group.segments)
        else:
            rule = fraction if fraction is not None else count
            amount = rule.get(name) if isinstance(rule, dict) else rule
            if amount is None:
                continue
            if fraction is not None:
                check_real("fraction", amount, 0.0, 1.0)
                amount = int(np.floor(amount * group.units + 1e-9))
            else:
                amount = check_integer("count", amount, 0)
            mask = lowest_removed(values, amount, min_units, group.segments)
        if not mask.all():
            masks[name] = mask
    return masks
