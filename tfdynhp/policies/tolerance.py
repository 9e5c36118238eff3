"""Pruning bounded by validation: remove units while the monitored validation metric stays
within `tolerance` of the best the run has seen, and check every cut before making it.

`DynHPCallback(tolerance=0.01)` uses a `Tolerance` at the end of each epoch, after Keras has
measured the validation data:

1. `best` is the best value of the monitored metric the run has seen (before any cut of this
   epoch); nothing is cut while the run is still learning fast (`ready`: the last epoch
   improved on the best by `tolerance` or more, or the run has not yet improved on its first
   epoch by more than `tolerance`), nor while the metric is out of tolerance (a recovering
   model);
2. a *trial*: the lowest-ranked units, about `step` of the model's resource (MACs by default),
   get their gates forced to zero (`log_alpha` = -50, the test-time gate is then exactly 0,
   which is what removing them computes), and the validation data are evaluated;
3. within tolerance: the cut is committed (surgery) and `step` grows, and the next cut is
   tried on the model as it now is (at most `max_trials` trials, i.e. validation passes, per
   epoch); outside: the gates are restored (the model is unchanged) and, with `fade=True`
   (an option),
   the same units are *faded*: their gates are set nearly closed (`log_alpha` =
   `FADE_LOG_ALPHA`) for the next epoch, so the network learns to do without them, and the
   cut is tried again at the next epoch end, committed if it is then within tolerance, else
   undone (the faded gates get their `log_alpha` back) with a smaller `step`. Without
   fading, a refused cut is dropped and a smaller one tried at once.

A cut usually costs more right after it is made than once the network has trained around it
(measured in `bench/defaults.md`): fading lets the trial see the second number while the
commit still never happens unchecked.

Units are ranked by the loss increase a first-order Taylor expansion predicts when the unit is
zeroed (`tfdynhp.policies.criteria.Taylor`, on the validation data, at the gates' outputs, so a closed
gate scores 0), divided by what removing the unit saves in the resource (resource-aware: of
two units that matter as little, the one that costs more goes first).

The decisions are pure functions (`infer_mode`, `within_tolerance`, `ready`, `next_step`,
`rank_scores`) and `Tolerance.epoch_end` takes the model-dependent parts as callables, so the
rule is tested without a model.
"""

import dataclasses
import math

import numpy as np

from tfdynhp.graph import analyze, gated_groups
from tfdynhp.policies import targets
from tfdynhp.policies.criteria import Taylor
from tfdynhp.validation import check_integer, check_real

MODES = ("min", "max")
# A log_alpha this low gives a test-time gate of exactly 0 (sigmoid(-50) * 1.2 - 0.1 < 0).
CLOSED_LOG_ALPHA = -50.0
# A faded unit: test-time gate 0.043, open in training in about 40% of the examples.
FADE_LOG_ALPHA = -2.0
DEFAULT_MONITORS = ("val_accuracy", "val_sparse_categorical_accuracy",
                    "val_categorical_accuracy", "val_binary_accuracy", "val_loss")


def infer_mode(monitor, mode="auto"):
    """`"max"` or `"min"`; `"auto"` reads it from the name as Keras' `EarlyStopping` does
    (accuracy and AUC are maximized, anything else minimized)."""
    if mode in MODES:
        return mode
    if mode != "auto":
        raise ValueError(f"`mode` must be 'auto', 'min' or 'max'. Received: mode={mode!r}")
    name = monitor.lower()
    return "max" if ("acc" in name or "auc" in name) else "min"


def update_best(best, value, mode):
    """The better of `best` (None at first) and `value`."""
    if best is None:
        return float(value)
    return float(max(best, value) if mode == "max" else min(best, value))


def within_tolerance(value, best, tolerance, mode):
    """Whether `value` is at most `tolerance` worse than `best` (absolute, in the metric's
    units).

    Example:
    >>> within_tolerance(0.905, 0.91, 0.01, "max"), within_tolerance(0.89, 0.91, 0.01, "max")
    (True, False)
    """
    if mode == "max":
        return value >= best - tolerance - 1e-12
    return value <= best + tolerance + 1e-12


def _gain(new, old, mode):
    return (new - old) if mode == "max" else (old - new)


def learnt(values, tolerance, mode):
    """Whether the run has improved on its first epoch by more than `tolerance`: it learns
    something a trial can measure.

    Example:
    >>> learnt([0.10, 0.105], 0.01, "max"), learnt([0.10, 0.3], 0.01, "max")
    (False, True)
    """
    best = values[0]
    for value in values[1:]:
        best = update_best(best, value, mode)
    return bool(len(values) >= 2 and _gain(best, values[0], mode) > tolerance)


def ready(values, tolerance, mode):
    """Whether pruning may start after the epochs whose metric values are `values`: the run
    has improved on its first epoch by more than `tolerance` (it learns something the trials
    can measure), and the last epoch improved on the best before it by less than `tolerance`
    (learning has slowed: what a cut costs is no longer hidden by what training still gains).

    Example:
    >>> ready([0.10, 0.10], 0.01, "max")        # nothing learnt yet
    False
    >>> ready([0.10, 0.60, 0.85], 0.01, "max")  # still gaining fast
    False
    >>> ready([0.10, 0.60, 0.85, 0.855], 0.01, "max")
    True
    """
    if len(values) < 2:
        return False
    best_before = values[0]
    for value in values[1:-1]:
        best_before = update_best(best_before, value, mode)
    best = update_best(best_before, values[-1], mode)
    learnt = _gain(best, values[0], mode) > tolerance
    slowed = _gain(values[-1], best_before, mode) < tolerance
    return bool(learnt and slowed)


def next_step(step, committed, growth=1.5, shrink=0.5, low=0.01, high=0.5):
    """The next cut's size: `step * growth` after a committed cut, `step * shrink` after a
    refused one, clipped to `[low, high]` (a refused cut may end below `low`: the caller stops
    trying then)."""
    step = step * (growth if committed else shrink)
    return float(min(high, step) if committed else step)


def rank_scores(importance, unit_costs, resource_aware=True):
    """Per-group ranking keys, lowest removed first: each unit's importance divided by what it
    saves relative to the mean saving (`resource_aware`), or the importance alone.

    Args:
        importance: `{group: array}` of non-negative importances (NaN keeps the unit).
        unit_costs: `{group: saving of one unit}` (a scalar per group).

    Example:
    >>> keys = rank_scores({"a": [1.0, 2.0], "b": [1.0]}, {"a": 1.0, "b": 3.0})
    >>> [round(float(v), 3) for v in keys["a"]], [round(float(v), 3) for v in keys["b"]]
    ([1.667, 3.333], [0.556])
    """
    if not resource_aware:
        return {name: np.asarray(v, np.float64) for name, v in importance.items()}
    counts = {name: len(np.asarray(v)) for name, v in importance.items()}
    total = sum(counts.values())
    mean_cost = sum(float(unit_costs[n]) * c for n, c in counts.items()) / max(total, 1)
    keys = {}
    for name, values in importance.items():
        relative = max(float(unit_costs[name]) / mean_cost, 1e-12) if mean_cost > 0 else 1.0
        keys[name] = np.asarray(values, np.float64) / relative
    return keys


@dataclasses.dataclass
class Trial:
    """One trial of an epoch: the fraction of the resource asked, what the cut would leave,
    the metric with the cut units' gates at zero, whether it was committed, and whether the
    units had been faded for an epoch before it."""

    step: float
    amount_after: float
    units: int
    metric: float
    committed: bool
    faded: bool = False


class Tolerance:
    """Prunes as far as the monitored validation metric allows (see the module docstring).

    Args:
        tolerance: how much worse than the best value seen the metric may get, in its own
            units (0.01 = one point of accuracy). Defaults to `0.01`.
        monitor: the `logs` key, e.g. `"val_accuracy"` or `"val_loss"`; `None` takes the
            first of `DEFAULT_MONITORS` present in the first epoch's logs. Defaults to `None`.
        mode: `"auto"`, `"max"` or `"min"` (as `keras.callbacks.EarlyStopping`).
        resource: what a cut's size and the ranking count: `"macs"`, `"params"`,
            `"int8_bytes"` or `"units"`. Defaults to `"macs"`.
        step: the first cut, as a fraction of the model's resource. Defaults to `0.1`.
        min_step, max_step: bounds of the cut; below `min_step` the epoch stops trying.
            Defaults to `0.01` and `0.5`.
        growth, shrink: factors of `step` after a committed and a refused cut. Defaults to
            `1.5` and `0.5`.
        max_trials: trials (validation passes) per epoch at most. Defaults to `3`.
        resource_aware: rank by importance per unit of resource saved. Defaults to `True`.
        fade: fade a refused cut for one epoch and try it again (see above). Defaults to
            `False` (measured: `bench/defaults.md`).
        warmup: when the first cut may come: `"plateau"` waits for `ready` (learning has
            slowed), `"learnt"` only for `learnt` (the run improved on its first epoch by
            more than `tolerance`), `None` cuts from the first epoch. Defaults to
            `"plateau"` (`"learnt"` pruned more on the Fashion CNN but cut MobileNet while its
            validation accuracy was still at chance; `bench/defaults.md`).
    """

    def __init__(self, tolerance=0.01, monitor=None, mode="auto", resource="macs", step=0.1,
                 min_step=0.01, max_step=0.5, growth=1.5, shrink=0.5, max_trials=3,
                 resource_aware=True, fade=False, warmup="plateau"):
        self.tolerance = float(check_real("tolerance", tolerance))
        if resource not in ("macs", "params", "int8_bytes", "units"):
            raise ValueError("`resource` must be 'macs', 'params', 'int8_bytes' or 'units'. "
                             f"Received: resource={resource!r}")
        if mode not in ("auto",) + MODES:
            raise ValueError(f"`mode` must be 'auto', 'min' or 'max'. Received: mode={mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.resource = resource
        self.min_step = float(check_real("min_step", min_step, 1e-6, 1.0))
        self.max_step = float(check_real("max_step", max_step, self.min_step, 1.0))
        self.step = float(check_real("step", step, self.min_step, self.max_step))
        self.growth = float(check_real("growth", growth, 1.0))
        self.shrink = float(check_real("shrink", shrink, 1e-3, 1.0 - 1e-3))
        self.max_trials = check_integer("max_trials", max_trials, 1)
        self.resource_aware = bool(resource_aware)
        self.fade = bool(fade)
        if warmup not in ("plateau", "learnt", None, False):
            raise ValueError("`warmup` must be 'plateau', 'learnt' or None. "
                             f"Received: warmup={warmup!r}")
        self.warmup = warmup or None
        self.reset()

    def reset(self):
        """Forgets the run (called at `on_train_begin`)."""
        self.best = None
        self.values = []
        self.started = self.warmup is None
        self.current_step = self.step
        self.pending = None  # a faded cut waiting for its second trial

    def resolve_monitor(self, logs):
        """The monitored key, checked against `logs` (the first epoch's)."""
        if self.monitor is None:
            found = next((key for key in DEFAULT_MONITORS if key in logs), None)
            if found is None:
                return None
            self.monitor = found
        if self.monitor not in logs:
            available = sorted(k for k in logs if not k.startswith("dynhp/"))
            raise ValueError(
                f"Tolerance monitors {self.monitor!r}, which is not in the epoch's logs "
                f"{available}. Pass validation data to fit (validation_data= or "
                "validation_split=) and monitor one of its `val_` metrics.")
        return self.monitor

    @property
    def resolved_mode(self):
        return infer_mode(self.monitor or "val_loss", self.mode)

    def metric_key(self):
        """The key of `model.evaluate(..., return_dict=True)` that matches the monitor."""
        return self.monitor.removeprefix("val_")

    def epoch_end(self, value, propose, trial, commit, fade=None, unfade=None):
        """One epoch's decision.

        Args:
            value: the monitored metric of this epoch (before any cut).
            propose: `callable(step) -> (masks, amount_after, units_removed)`: the cut of
                about `step` of the resource of the model as it is now, after the epoch's
                earlier commits (`units_removed == 0`: nothing left to cut).
            trial: `callable(masks) -> metric` with the cut units' gates at zero; leaves
                the model unchanged.
            commit: `callable(masks)`: the surgery.
            fade: `callable(masks)`: nearly close the gates of the units `masks` removes,
                for the next epoch's training. With it, a cut that fails its trial is not
                dropped but faded: the network trains one epoch without those units (mostly)
                and the same cut is tried again at the next epoch end, where it is committed
                or undone. `None`: refused cuts are dropped and smaller ones tried at once.
            unfade: `callable(masks) -> metric or None`: undoes `fade` and returns the
                metric of the model with the units back; a faded cut out of tolerance is
                kept anyway when the units' return is no better (the trial's `committed`
                then says so while the metric is out of tolerance).

        Returns:
            A dict: `best`, `value`, `state` ("warmup", "recovering", "committed", "fading",
            "refused", "exhausted"), the `trials` (list of `Trial`) and `step` (the next
            epoch's first cut).
        """
        mode = self.resolved_mode
        self.values.append(float(value))
        self.best = update_best(self.best, value, mode)
        record = {"best": self.best, "value": float(value), "trials": []}
        state = "refused"
        trials = self.max_trials
        if self.pending is not None:  # a faded cut from the last epoch: now or never
            masks, step, amount_after, units = self.pending
            self.pending = None
            metric = float(trial(masks))
            ok = within_tolerance(metric, self.best, self.tolerance, mode)
            record["trials"].append(Trial(step, amount_after, units, metric, ok, faded=True))
            self.current_step = max(self.min_step, next_step(
                step, ok, self.growth, self.shrink, self.min_step, self.max_step))
            trials -= 1
            if ok or self._keep_anyway(metric, unfade(masks), mode):
                commit(masks)
                state = "committed"
        if not self.started:
            rule = ready if self.warmup == "plateau" else learnt
            self.started = rule(self.values, self.tolerance, mode)
            if not self.started:
                record.update(state="warmup", step=self.current_step)
                return record
        if not within_tolerance(value, self.best, self.tolerance, mode):
            record.update(state="recovering" if state == "refused" else state,
                          step=self.current_step)
            return record
        for _ in range(trials):
            masks, amount_after, units = propose(self.current_step)
            if units == 0:
                state = "exhausted" if state == "refused" else state
                break
            metric = float(trial(masks))
            ok = within_tolerance(metric, self.best, self.tolerance, mode)
            record["trials"].append(Trial(self.current_step, float(amount_after), int(units),
                                          metric, ok))
            if not ok and fade is not None:
                fade(masks)
                self.pending = (masks, self.current_step, float(amount_after), int(units))
                state = "fading" if state == "refused" else state
                break
            self.current_step = next_step(self.current_step, ok, self.growth, self.shrink,
                                          self.min_step, self.max_step)
            if ok:
                commit(masks)
                state = "committed"
            if self.current_step < self.min_step:
                self.current_step = self.min_step
                break
        record.update(state=state, step=self.current_step)
        return record

    def finish(self, trial, commit, unfade):
        """At the end of training: the faded cut still pending, if any, is tried once more
        and committed or undone (a fit never ends with units faded but unchecked). Returns
        its `Trial`, or None."""
        if self.pending is None:
            return None
        masks, step, amount_after, units = self.pending
        self.pending = None
        metric = float(trial(masks))
        mode = self.resolved_mode
        ok = within_tolerance(metric, self.best, self.tolerance, mode)
        committed = ok or self._keep_anyway(metric, unfade(masks), mode)
        if committed:
            commit(masks)
        return Trial(step, amount_after, units, metric, committed, faded=True)

    @staticmethod
    def _keep_anyway(cut_metric, restored_metric, mode):
        """A faded cut out of tolerance is still kept when undoing it is no better: the
        network has trained around the units, and bringing them back does not help."""
        return restored_metric is not None and not (
            _gain(restored_metric, cut_metric, mode) > 0)

    def check_cuts(self, value, cut, trial, commit):
        """Target plus tolerance: `cut(k) -> (masks, amount after, units removed)` is the
        target's cut of the epoch for `k = 0` and its halves for `k = 1, 2, ...`; the first
        that stays within tolerance is committed, at most `max_trials` are tried.

        Returns:
            The record of `epoch_end`, with `binding`: "target" when the target's own cut
            passed (or nothing was due), "tolerance" when only a smaller one or none did.
        """
        mode = self.resolved_mode
        self.values.append(float(value))
        self.best = update_best(self.best, value, mode)
        record = {"best": self.best, "value": float(value), "trials": [],
                  "step": self.current_step}
        for k in range(self.max_trials):
            masks, amount_after, units = cut(k)
            if units == 0:
                record.update(state="nothing_due" if k == 0 else "refused",
                              binding="target" if k == 0 else "tolerance")
                return record
            metric = float(trial(masks))
            ok = within_tolerance(metric, self.best, self.tolerance, mode)
            record["trials"].append(Trial(0.5 ** k, float(amount_after), int(units), metric,
                                          ok))
            if ok:
                commit(masks)
                record.update(state="committed", binding="target" if k == 0 else "tolerance")
                return record
        record.update(state="refused", binding="tolerance")
        return record

    def get_config(self):
        return {"tolerance": self.tolerance, "monitor": self.monitor, "mode": self.mode,
                "resource": self.resource, "step": self.step, "min_step": self.min_step,
                "max_step": self.max_step, "growth": self.growth, "shrink": self.shrink,
                "max_trials": self.max_trials, "resource_aware": self.resource_aware,
                "fade": self.fade, "warmup": self.warmup}


def parse_tolerance(value):
    """`None`, a number (the tolerance) or a `Tolerance` -> `Tolerance` or None."""
    if value is None or isinstance(value, Tolerance):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        raise TypeError("`tolerance` must be a non-negative number (e.g. 0.01: one point of "
                        "accuracy) or a tfdynhp.policies.tolerance.Tolerance. "
                        f"Received: tolerance={value!r}")
    return Tolerance(value)


# -- the model side: validation data, trials, cuts ----------------------------------------


def validation_of(fit_args):
    """The validation data of a `fit` call as `(x, y)` arrays or a `tf.data.Dataset`, or None.

    `fit_args` is what `tfdynhp.GatedModel.fit` records: `x`, `y`, `validation_data`,
    `validation_split`. A `validation_split` takes the last fraction of the array inputs
    before shuffling, as Keras does.
    """
    if not fit_args:
        return None
    data = fit_args.get("validation_data")
    if data is not None:
        if isinstance(data, (tuple, list)):
            return tuple(data[:2]) if len(data) >= 2 else None
        return data
    split = fit_args.get("validation_split") or 0.0
    x, y = fit_args.get("x"), fit_args.get("y")
    if split and x is not None and y is not None and hasattr(x, "shape") and hasattr(
            y, "shape"):
        split_at = math.floor(int(x.shape[0]) * (1.0 - split))
        return x[split_at:], y[split_at:]
    return None


def as_arrays(data, limit=512):
    """Up to `limit` examples of `data` (`(x, y)` arrays, or a dataset of `(x, y)` batches)
    as `(x, y)` NumPy arrays, for a criterion that reads data."""
    if isinstance(data, tuple):
        return np.asarray(data[0])[:limit], np.asarray(data[1])[:limit]
    xs, ys, count = [], [], 0
    for element in data:
        x, y = element[0], element[1]
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
        count += len(xs[-1])
        if count >= limit:
            break
    return np.concatenate(xs)[:limit], np.concatenate(ys)[:limit]


def evaluate(model, data, key, batch_size=256):
    """The model's `key` metric on `data` (inference mode)."""
    if isinstance(data, tuple):
        logs = model.evaluate(data[0], data[1], batch_size=batch_size, verbose=0,
                              return_dict=True)
    else:
        logs = model.evaluate(data, verbose=0, return_dict=True)
    if key not in logs:
        raise ValueError(f"The monitored metric {key!r} is not among the model's evaluation "
                         f"metrics {sorted(logs)}. Compile the model with it, or monitor "
                         "another one.")
    return float(logs[key])


def trial_metric(model, masks, data, key, batch_size=256):
    """The `key` metric on `data` with the gates of the units `masks` removes (False) at
    zero: what the model computes after that surgery. The gates are restored afterwards, so
    the model is unchanged."""
    saved = set_gates(model, masks, CLOSED_LOG_ALPHA)
    try:
        return evaluate(model, data, key, batch_size)
    finally:
        restore_gates(saved)


def set_gates(model, masks, value):
    """Sets `log_alpha` of the units `masks` removes (False) to `value`; returns what it
    replaced, `[(gate, positions, old values)]`, for `restore_gates`."""
    saved = []
    for group in gated_groups(model):
        mask = masks.get(group.name)
        if mask is None or np.all(mask):
            continue
        positions = np.flatnonzero(~np.asarray(mask, bool))
        log_alpha = np.asarray(group.gate.log_alpha.numpy())
        saved.append((group.gate, positions, log_alpha[positions].copy()))
        log_alpha[positions] = value
        group.gate.log_alpha.assign(log_alpha)
    return saved


def restore_gates(saved):
    """Undoes `set_gates` on those positions (the other gates keep what they learnt)."""
    for gate, positions, values in saved:
        log_alpha = np.asarray(gate.log_alpha.numpy())
        log_alpha[positions] = values
        gate.log_alpha.assign(log_alpha)


def measure(model, resource, masks=None, unit_graph=None):
    """The model's amount of `resource` ("units": the units of the gated groups), now or
    after `masks`."""
    if resource == "units":
        unit_graph = unit_graph or analyze(model)
        return float(sum(
            int(np.count_nonzero(masks[g.name])) if masks and g.name in masks else g.units
            for g in unit_graph.groups if g.gate is not None))
    return targets.measure(model, resource, masks, unit_graph)


def importance(model, data):
    """First-order Taylor importance of every gated unit on `data` (`(x, y)` arrays): the
    loss increase predicted when the unit's gate goes to zero
    (`tfdynhp.policies.criteria.Taylor`, with the model's own loss when it is named)."""
    loss = model.loss if isinstance(model.loss, str) else None
    return Taylor(loss=loss).scores(model, data)


def propose_cut(model, keys, step, resource, min_units=1, unit_graph=None):
    """Keep-masks removing the lowest-keyed units until about `step` of the model's
    `resource` is gone. Returns `(masks, amount after, units removed)`."""
    unit_graph = unit_graph or analyze(model)
    groups = [g for g in unit_graph.groups if g.gate is not None and g.name in keys]
    now = measure(model, resource, unit_graph=unit_graph)
    masks, _ = targets.units_to_meet(
        groups, keys, {}, (1.0 - step) * now,
        lambda trial: measure(model, resource, trial, unit_graph), min_units)
    removed = sum(int(np.count_nonzero(~m)) for m in masks.values())
    return masks, measure(model, resource, masks, unit_graph), removed
