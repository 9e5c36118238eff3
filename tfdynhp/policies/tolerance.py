"""Pruning bounded by validation: shrink the model while the monitored validation metric stays
within `tolerance` of a noise-robust best, judging every cut after the network has trained
around it, and checking it once more before the surgery.

`DynHPCallback()` uses a `Tolerance` when `fit` has validation data (`DynHPCallback(tolerance=
0.01)` says so explicitly). It drives a target that keeps falling while the validation metric
allows it, one provisional cut at a time:

1. at an epoch end, the lowest-ranked units, about `step` of the model's resource (MACs by
   default), are cut *provisionally*: their gates are closed (`log_alpha` = -50, the gate is
   then exactly 0 in training and at test time, which is what removing the units computes),
   but nothing is removed yet;
2. the network trains one epoch without them, and Keras measures the validation data at the
   epoch end on the network as it would be after the surgery;
3. within `tolerance` of the reference (the best mean of `window` consecutive epochs, not the
   luckiest single epoch), the cut is checked once more (a *trial*: the validation data with
   the cut units' gates at zero) and committed (surgery), the next cut grows (`growth`) and
   is made at once; out of tolerance, the cut is *held* for up to `patience` epochs (one noisy
   epoch does not undo it) and then *undone*: the gates get their `log_alpha` back, the units
   train again, and the next cut is smaller (`shrink`). Below `min_step` the rule stops
   (`converged`).

A cut judged right after it is made costs more than once the network has trained around it
(measured in `bench/defaults.md`: 1.8-8 points at once on a Fashion-MNIST CNN for 5-10 % of
its MACs, within a point one epoch later): the provisional cut is judged on the second number,
and is undone, never committed, when that one is out of tolerance.

Nothing is cut until the metric has improved on its value before training by `warmup` times
the tolerance (a model whose validation metric is still at chance gives no signal to judge a
cut by), and no provisional cut is made at the end of the last epoch (it could not be judged):
a fit never ends with a cut that was not judged. The gates are frozen at their test-time
values while this rule runs (`gates="frozen"`: no sampling noise, no penalty, the gated model
trains as the plain one does); the cuts close them.

Every measurement the rule makes (the epoch's metric, a trial, an undo) is taken with the
BatchNormalization statistics re-estimated on training examples for the network being measured
(`recalibrate`, `tfdynhp.model.batch_norm`): Keras' moving averages lag the weights and know
nothing of a cut, and judged with them a BatchNormalization network looked 5-30 points worse
than it was (`bench/defaults.md` §8). The epoch's value Keras logged is kept beside it
(`dynhp/tolerance/keras_value`). A fit that resumes a saved run (`GatedModel.dynhp_run`)
continues the rule: its values, step and a pending cut with the gates it closed (`state`).

Units are ranked by the loss increase a first-order Taylor expansion predicts when the unit is
zeroed (`tfdynhp.policies.criteria.Taylor`, on the validation data, at the gates' outputs),
divided by what removing the unit saves in the resource (resource-aware: of two units that
matter as little, the one that costs more goes first).

The decisions are pure functions (`infer_mode`, `within_tolerance`, `reference`,
`informative`, `verdict`, `next_step`, `rank_scores`) and `Tolerance.epoch_end` takes the
model-dependent parts as callables, so the rule is tested without a model.
"""

import dataclasses
import math

import numpy as np

from tfdynhp.graph import analyze, gated_groups
from tfdynhp.model.batch_norm import recalibrate_batch_norm, restore_batch_norm, sample_inputs
from tfdynhp.policies import targets
from tfdynhp.policies.criteria import Taylor
from tfdynhp.validation import check_integer, check_real

MODES = ("min", "max")
# A log_alpha this low gives a gate of exactly 0, in training and at test time
# (sigmoid(-50) * 1.2 - 0.1 < 0).
CLOSED_LOG_ALPHA = -50.0
DEFAULT_MONITORS = ("val_accuracy", "val_sparse_categorical_accuracy",
                    "val_categorical_accuracy", "val_binary_accuracy", "val_loss")
GATES = ("frozen", "train")
# What a cut's size and the ranking can count ("memory" is not: it depends on the batch).
RESOURCES = ("macs", "params", "int8_bytes", "units", "m4_instructions")


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


def reference(values, window=2, mode="max"):
    """The noise-robust best of `values`: the best mean of `window` consecutive values (of the
    values themselves while there are fewer than `window`). One lucky epoch does not set the
    bar that every later cut is judged against; a dip after a cut does not lower it.

    Example:
    >>> reference([0.80, 0.84, 0.81, 0.82], window=2)  # best pair: (0.84 + 0.81) / 2
    0.825
    >>> reference([0.80, 0.84], window=3)
    0.84
    """
    if not values:
        return None
    values = [float(v) for v in values]
    if len(values) < window:
        means = values
    else:
        means = [sum(values[i - window + 1:i + 1]) / window
                 for i in range(window - 1, len(values))]
    best = None
    for value in means:
        best = update_best(best, value, mode)
    return best


def informative(values, start, gain, mode):
    """Whether the metric has become informative: its best value so far is better than
    `start` (its value before training) by more than `gain`. A metric still at chance level
    cannot tell a harmless cut from a harmful one. `start=None` (not measured) counts as
    informative.

    Example:
    >>> informative([0.10, 0.115], 0.10, 0.05, "max"), informative([0.10, 0.33], 0.10, 0.05, "max")
    (False, True)
    """
    if start is None or not values:
        return start is None
    best = None
    for value in values:
        best = update_best(best, value, mode)
    return bool(_gain(best, start, mode) > gain)


def verdict(within, held, patience, final=False):
    """What becomes of a provisional cut at an epoch end: `"commit"` when the metric is within
    tolerance, else `"hold"` while it has been held fewer than `patience` epochs (and the fit
    goes on), else `"undo"`.

    Example:
    >>> verdict(True, 0, 1), verdict(False, 0, 1), verdict(False, 1, 1), verdict(False, 0, 1, True)
    ('commit', 'hold', 'undo', 'undo')
    """
    if within:
        return "commit"
    if final or held >= patience:
        return "undo"
    return "hold"


def standard_error(accuracy, examples):
    """One binomial standard error of an accuracy measured on `examples` examples: how far a
    validation accuracy moves by the luck of the draw alone.

    Example:
    >>> round(standard_error(0.9, 270), 4), round(standard_error(0.9, 6000), 4)
    (0.0183, 0.0039)
    """
    p = min(max(float(accuracy), 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / max(int(examples), 1))


def resolution_message(monitor, accuracy, examples, tolerance):
    """A warning when `tolerance` is below one standard error of the monitored accuracy on
    `examples` validation examples (the rule would then judge cuts by noise), else None.
    Only for accuracy-like monitors (a loss has no such bound)."""
    if "acc" not in monitor.lower() or not examples:
        return None
    error = standard_error(accuracy, examples)
    if error <= tolerance:
        return None
    suggested = math.ceil(200 * error) / 100  # two standard errors, rounded up to a point
    return (f"DynHPCallback: the validation data has {examples} examples; at {monitor} "
            f"{accuracy:.2f} one standard error is {error:.3f}, more than the tolerance "
            f"{tolerance:g}: cuts were judged on noise, and the pruned model can be several "
            "points below the plain one (bench/defaults.md section 9). Next time pass more "
            f"validation data, or DynHPCallback(tolerance={suggested:g}) for a bar the data "
            "can resolve.")


def last_cut_epoch(epochs, until):
    """The last epoch (1-based) at whose end a provisional cut is made: `until` of the fit's
    `epochs` (rounded, at least 1), so that the network has the remaining epochs to train
    around what was cut; `None` for every epoch but the last.

    Example:
    >>> last_cut_epoch(8, 2 / 3), last_cut_epoch(20, 2 / 3), last_cut_epoch(8, None)
    (5, 13, 7)
    """
    if until is None:
        return max(1, epochs - 1)
    return max(1, min(epochs - 1, round(until * epochs)))


def next_step(step, committed, growth=1.5, shrink=0.5, low=0.01, high=0.3):
    """The next cut's size: `step * growth` after a committed cut, `step * shrink` after an
    undone one, clipped to `[low, high]` (an undone cut may end below `low`: the caller stops
    cutting then)."""
    step = step * (growth if committed else shrink)
    return float(max(low, min(high, step)) if committed else step)


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
    """A check of a cut: the fraction of the resource it removes, what it leaves, its units,
    the validation metric with the cut units' gates at zero, and whether it was committed."""

    step: float
    amount_after: float
    units: int
    metric: float
    committed: bool
    kind: str = "commit"  # "commit": before surgery; "cut": before a provisional cut


@dataclasses.dataclass
class Pending:
    """A provisional cut: its keep-masks, size, what it leaves, units, and the epochs it has
    been held out of tolerance."""

    masks: dict
    step: float
    amount_after: float
    units: int
    held: int = 0


class Tolerance:
    """Prunes as far as the monitored validation metric allows (see the module docstring).

    Args:
        tolerance: how much worse than the reference the metric may get, in its own units
            (0.01 = one point of accuracy). Defaults to `0.01`.
        monitor: the `logs` key, e.g. `"val_accuracy"` or `"val_loss"`; `None` takes the
            first of `DEFAULT_MONITORS` present in the first epoch's logs. Defaults to `None`.
        mode: `"auto"`, `"max"` or `"min"` (as `keras.callbacks.EarlyStopping`).
        resource: what a cut's size and the ranking count: `"macs"`, `"params"`,
            `"int8_bytes"`, `"units"` or `"m4_instructions"` (Cortex-M4 CMSIS-NN
            instructions, `tfdynhp.layer_types.instructions`). Defaults to `"macs"`.
        step: the first cut, as a fraction of the model's resource. Defaults to `0.1`.
        min_step, max_step: bounds of a cut; after an undone cut below `min_step` the rule
            stops. Defaults to `0.01` and `0.3`.
        growth, shrink: factors of `step` after a committed and an undone cut. Defaults to
            `1.5` and `0.5`.
        patience: epochs a provisional cut is held while the metric is out of tolerance before
            it is undone. Defaults to `1`.
        window: consecutive epochs averaged in the reference (`reference`). Defaults to `2`.
        warmup: the first cut waits until the metric is better than before training by
            `warmup * tolerance`; `None` or 0 cuts from the first epoch. Defaults to `5`.
        until: the fraction of the fit's epochs by whose end the last provisional cut is
            made (`last_cut_epoch`); the epochs after it train the network around what was
            cut. `None`: until the last epoch but one. Defaults to `2/3`.
        max_drop: a proposed cut that costs more than `max_drop * tolerance` at once (its
            trial against the epoch's metric, before the network trains around it) is
            halved, at most `max_trials` times; `None`: no such check. Defaults to `10`
            (5 stopped MobileNet 0.25 at 1.7x fewer MACs, 10 reached 2.8x at better accuracy:
            `bench/defaults.md` §9; the epoch of training around the cut judges it anyway).
        max_trials: trials of a proposed cut per epoch. Defaults to `3`.
        resource_aware: rank by importance per unit of resource saved. Defaults to `True`.
        gates: `"frozen"` fixes the gates at their test-time values while the rule runs (no
            sampling noise, no L0 penalty: the gated model trains as the plain one), `"train"`
            lets them train as the `threshold` rule does. Defaults to `"frozen"`.
        recalibrate: re-estimate the BatchNormalization statistics on `recalibration_examples`
            training examples before every measurement (the epoch's metric, a trial, an undo;
            `tfdynhp.model.batch_norm`): the moving averages lag the weights and do not know
            a cut, so without it a BatchNormalization network's cuts look 5-30 points worse
            than they are. No effect on a model without such layers. Defaults to `True`.
        recalibration_examples: training examples the statistics are estimated on. Defaults
            to `2048`.
    """

    def __init__(self, tolerance=0.01, monitor=None, mode="auto", resource="macs", step=0.1,
                 min_step=0.01, max_step=0.3, growth=1.5, shrink=0.5, patience=1, window=2,
                 warmup=5.0, until=2 / 3, max_drop=10.0, max_trials=3, resource_aware=True,
                 gates="frozen", recalibrate=True, recalibration_examples=2048):
        self.tolerance = float(check_real("tolerance", tolerance))
        if resource not in RESOURCES:
            raise ValueError(f"`resource` must be one of {RESOURCES}. Received: "
                             f"resource={resource!r}")
        if mode not in ("auto",) + MODES:
            raise ValueError(f"`mode` must be 'auto', 'min' or 'max'. Received: mode={mode!r}")
        if gates not in GATES:
            raise ValueError(f"`gates` must be one of {GATES}. Received: gates={gates!r}")
        self.monitor = monitor
        self.mode = mode
        self.resource = resource
        self.min_step = float(check_real("min_step", min_step, 1e-6, 1.0))
        self.max_step = float(check_real("max_step", max_step, self.min_step, 1.0))
        self.step = float(check_real("step", step, self.min_step, self.max_step))
        self.growth = float(check_real("growth", growth, 1.0))
        self.shrink = float(check_real("shrink", shrink, 1e-3, 1.0 - 1e-3))
        self.patience = check_integer("patience", patience, 0)
        self.window = check_integer("window", window, 1)
        self.warmup = float(check_real("warmup", warmup or 0.0))
        self.until = None if until is None else float(check_real("until", until, 0.0, 1.0))
        self.max_drop = None if max_drop is None else float(check_real("max_drop", max_drop))
        self.max_trials = check_integer("max_trials", max_trials, 1)
        self.resource_aware = bool(resource_aware)
        self.gates = gates
        self.recalibrate = bool(recalibrate)
        self.recalibration_examples = check_integer("recalibration_examples",
                                                    recalibration_examples, 1)
        self.reset()

    def reset(self):
        """Forgets the run (called at `on_train_begin`)."""
        self.best = None
        self.values = []
        self.start = None
        self.first = None if self.warmup else 0  # the first informative epoch's index
        self.current_step = self.step
        self.pending = None
        self.converged = False

    def begin(self, start):
        """Records the metric before training (`start`), which `warmup` is measured from."""
        self.start = None if start is None else float(start)

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

    def epoch_end(self, value, propose, trial, commit, cut, undo, final=False, may_cut=True):
        """One epoch's decisions.

        Args:
            value: the monitored metric of this epoch, measured with the pending provisional
                cut's gates at zero.
            propose: `callable(step) -> (masks, amount_after, units_removed)`: the cut of
                about `step` of the resource of the model as it is now
                (`units_removed == 0`: nothing left to cut).
            trial: `callable(masks) -> metric` with the cut units' gates at zero; leaves the
                model unchanged.
            commit: `callable(masks)`: the surgery.
            cut: `callable(masks)`: closes the gates of the units `masks` removes (the
                provisional cut).
            undo: `callable(masks) -> metric`: gives them their gates back; returns the
                metric then.
            final: the last epoch of the fit: a pending cut is committed or undone now,
                whichever leaves the better model (undoing a cut the network trained around
                for an epoch can cost more than the cut: then the cut is kept, `"kept"`).
            may_cut: whether a new provisional cut may be made (`last_cut_epoch`).

        Returns:
            A dict: `reference`, `value`, `state` ("warmup", "committed", "holding",
            "undone", "kept", "recovering", "refused", "converged", "exhausted", "cutting",
            "done" or "idle"), `trials` (the checks, `Trial`s: before a provisional cut and
            before surgery), `cut` (the new provisional cut: fraction,
            amount after, units; or None), `restored` (the metric after an undo) and `step`
            (the next cut's size).
        """
        mode = self.resolved_mode
        self.values.append(float(value))
        if self.first is None and informative(self.values, self.start,
                                              self.warmup * self.tolerance, mode):
            self.first = len(self.values) - 1
        self.best = (None if self.first is None
                     else reference(self.values[self.first:], self.window, mode))
        within = self.best is not None and within_tolerance(value, self.best, self.tolerance,
                                                            mode)
        record = {"reference": self.best, "value": float(value), "trials": [], "cut": None,
                  "restored": None}
        state = "idle"
        if self.pending is not None:
            pending = self.pending
            decision = verdict(within, pending.held, self.patience, final)
            if decision == "commit":
                metric = float(trial(pending.masks))
                ok = within_tolerance(metric, self.best, self.tolerance, mode)
                record["trials"].append(Trial(pending.step, pending.amount_after,
                                              pending.units, metric, ok))
                if ok:
                    commit(pending.masks)
                    state = "committed"
                    self.current_step = next_step(pending.step, True, self.growth,
                                                  self.shrink, self.min_step, self.max_step)
                else:
                    decision = "undo"
            if decision == "hold":
                pending.held += 1
                record.update(state="holding", step=self.current_step)
                return record
            if decision == "undo":
                restored = float(undo(pending.masks))
                record["restored"] = restored
                state = "undone"
                if final and _gain(value, restored, mode) > 0:
                    # No epoch is left to train the units back in: keep the better model.
                    cut(pending.masks)
                    commit(pending.masks)
                    state = "kept"
                self.current_step = next_step(pending.step, False, self.growth, self.shrink,
                                              self.min_step, self.max_step)
                self.converged = self.current_step < self.min_step
            self.pending = None
        if self.first is None:
            state = "warmup"
        elif final or state in ("undone", "kept"):
            pass
        elif not may_cut:
            state = "done" if state == "idle" else state
        elif self.converged:
            state = "converged"
        elif not within:
            state = "recovering"
        else:
            state = self._propose(value, propose, trial, cut, record, state, mode)
        record.update(state=state, step=self.current_step)
        return record

    def _propose(self, value, propose, trial, cut, record, state, mode):
        """The epoch's new provisional cut: about `current_step` of the resource, halved
        while its immediate cost is above `max_drop * tolerance`."""
        step = self.current_step
        for _ in range(self.max_trials):
            masks, amount_after, units = propose(step)
            if units == 0:
                self.converged = True
                return "exhausted" if state == "idle" else state
            ok = True
            if self.max_drop is not None:
                metric = float(trial(masks))
                ok = _gain(value, metric, mode) <= self.max_drop * self.tolerance + 1e-12
                record["trials"].append(Trial(step, float(amount_after), int(units), metric,
                                              ok, kind="cut"))
            if ok:
                cut(masks)
                self.current_step = step
                self.pending = Pending(masks, step, float(amount_after), int(units))
                record["cut"] = (step, float(amount_after), int(units))
                return "cutting" if state == "idle" else state
            step *= self.shrink
            if step < self.min_step:
                break
        self.current_step = max(self.min_step, step)
        return "refused" if state == "idle" else state

    def finish(self, trial, commit, undo):
        """A provisional cut still pending when training stops early (before the epoch
        `final` was passed for): checked once more and committed when within tolerance of
        the reference, else undone. Returns its `Trial`, or None."""
        if self.pending is None:
            return None
        pending, self.pending = self.pending, None
        metric = float(trial(pending.masks))
        ok = self.best is not None and within_tolerance(metric, self.best, self.tolerance,
                                                        self.resolved_mode)
        if ok:
            commit(pending.masks)
        else:
            undo(pending.masks)
        return Trial(pending.step, pending.amount_after, pending.units, metric, ok)

    def check_cuts(self, value, cut, trial, commit, max_trials=3):
        """Target plus tolerance: `cut(k) -> (masks, amount after, units removed)` is the
        target's cut of the epoch for `k = 0` and its halves for `k = 1, 2, ...`; the first
        that stays within tolerance of the reference is committed, at most `max_trials` are
        tried.

        Returns:
            A record as `epoch_end`'s, with `binding`: "target" when the target's own cut
            passed (or nothing was due), "tolerance" when only a smaller one or none did.
        """
        mode = self.resolved_mode
        self.values.append(float(value))
        self.first = 0 if self.first is None else self.first
        self.best = reference(self.values, self.window, mode)
        record = {"reference": self.best, "value": float(value), "trials": [], "cut": None,
                  "restored": None, "step": self.current_step}
        for k in range(max_trials):
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

    def state(self):
        """The run so far as JSON-able values (saved with the model in
        `GatedModel.dynhp_run`, so that a resumed fit continues the rule; `restore`)."""
        pending = None
        if self.pending is not None:
            pending = {"masks": {name: np.asarray(mask, bool).tolist()
                                 for name, mask in self.pending.masks.items()},
                       "step": self.pending.step, "amount_after": self.pending.amount_after,
                       "units": self.pending.units, "held": self.pending.held}
        return {"monitor": self.monitor, "values": list(self.values), "start": self.start,
                "first": self.first, "step": self.current_step, "converged": self.converged,
                "pending": pending}

    def restore(self, state):
        """Continues the run `state` describes (what `state()` returned)."""
        self.reset()
        self.monitor = state.get("monitor") or self.monitor
        self.values = [float(v) for v in state.get("values", [])]
        self.start = state.get("start")
        self.first = state.get("first")
        self.current_step = float(state.get("step", self.step))
        self.converged = bool(state.get("converged", False))
        if self.values and self.first is not None:
            self.best = reference(self.values[self.first:], self.window, self.resolved_mode)
        pending = state.get("pending")
        if pending is not None:
            self.pending = Pending({name: np.asarray(mask, bool)
                                    for name, mask in pending["masks"].items()},
                                   float(pending["step"]), float(pending["amount_after"]),
                                   int(pending["units"]), int(pending.get("held", 0)))

    def get_config(self):
        return {"tolerance": self.tolerance, "monitor": self.monitor, "mode": self.mode,
                "resource": self.resource, "step": self.step, "min_step": self.min_step,
                "max_step": self.max_step, "growth": self.growth, "shrink": self.shrink,
                "patience": self.patience, "window": self.window, "warmup": self.warmup,
                "until": self.until, "max_drop": self.max_drop, "max_trials": self.max_trials,
                "resource_aware": self.resource_aware, "gates": self.gates,
                "recalibrate": self.recalibrate,
                "recalibration_examples": self.recalibration_examples}


def parse_tolerance(value):
    """`None`, a number (the tolerance) or a `Tolerance` -> `Tolerance` or None."""
    if value is None or isinstance(value, Tolerance):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        raise TypeError("`tolerance` must be a non-negative number (e.g. 0.01: one point of "
                        "accuracy), a tfdynhp.policies.tolerance.Tolerance or None. "
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


def training_inputs(fit_args, limit=2048):
    """Up to `limit` training inputs of a `fit` call (`fit_args` as in `validation_of`; a
    `validation_split` is left out), for re-estimating BatchNormalization statistics; None
    when the data give no single input array."""
    if not fit_args or fit_args.get("x") is None:
        return None
    x = fit_args["x"]
    split = fit_args.get("validation_split") or 0.0
    if split and hasattr(x, "shape"):
        x = x[:math.floor(int(x.shape[0]) * (1.0 - split))]
    return sample_inputs(x, limit)


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
    logs = evaluate_all(model, data, batch_size)
    if key not in logs:
        raise ValueError(f"The monitored metric {key!r} is not among the model's evaluation "
                         f"metrics {sorted(logs)}. Compile the model with it, or monitor "
                         "another one.")
    return float(logs[key])


def evaluate_all(model, data, batch_size=256):
    """Every metric of `model.evaluate` on `data` (inference mode), as a dict."""
    if isinstance(data, tuple):
        return model.evaluate(data[0], data[1], batch_size=batch_size, verbose=0,
                              return_dict=True)
    return model.evaluate(data, verbose=0, return_dict=True)


def trial_metric(model, masks, data, key, batch_size=256, inputs=None):
    """The `key` metric on `data` with the gates of the units `masks` removes (False) at
    zero: what the model computes after that surgery; with `inputs` (training inputs), after
    re-estimating the BatchNormalization statistics on them for that network
    (`tfdynhp.model.batch_norm`). Gates and statistics are restored afterwards: the model is
    unchanged."""
    saved = set_gates(model, masks, CLOSED_LOG_ALPHA)
    statistics = []
    try:
        if inputs is not None:
            statistics = recalibrate_batch_norm(model, inputs)
        return evaluate(model, data, key, batch_size)
    finally:
        restore_batch_norm(statistics)
        restore_gates(saved)


def current_metric(model, data, key, batch_size=256, inputs=None):
    """The `key` metric on `data` of the model as it is; with `inputs`, after re-estimating
    its BatchNormalization statistics on them (kept: they describe the network as it is)."""
    if inputs is not None:
        recalibrate_batch_norm(model, inputs)
    return evaluate(model, data, key, batch_size)


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


def gates_state(saved):
    """`set_gates`' record as JSON-able values, `{gate name: [positions, old values]}`."""
    return {gate.name: [np.asarray(positions).tolist(), np.asarray(values).tolist()]
            for gate, positions, values in saved}


def gates_from_state(state, model):
    """The inverse of `gates_state` on `model` (its gates by name)."""
    gates = {gate.name: gate for gate in model.gate_layers}
    return [(gates[name], np.asarray(positions, np.int64), np.asarray(values, np.float32))
            for name, (positions, values) in state.items()]


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
    loss increase predicted when the unit's gate goes to zero, summed over the unit's spatial
    positions (`tfdynhp.policies.criteria.Taylor(spatial="sum")`, with the model's own loss
    when it is named). Units of every layer are ranked together: the per-position mean of
    Molchanov's criterion would make a channel at 16x16 look 256 times less important than
    one after global pooling (on MobileNet, a 5 % cut then took 3 of the first layer's 8
    channels and cost 14 points; by the sum it took late pointwise channels and cost none)."""
    loss = model.loss if isinstance(model.loss, str) else None
    return Taylor(loss=loss, spatial="sum").scores(model, data)


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
