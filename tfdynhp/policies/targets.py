"""Targets: "32k params", "2.5M MACs", "40KB" (int8 model), "900KB memory" (training),
"25% m4_instructions" (Cortex-M4 instructions with CMSIS-NN kernels).

Users think in what their device holds, not in `lambda`. A `Target` names a resource and an
amount (or a fraction of the starting model) and the epoch by which to reach it. The pieces,
pure where they can be, that `DynHPCallback(target=...)` puts together each epoch:

- `scheduled_amount`: where the model should be at an epoch: TF-MOT's polynomial decay
  (Zhu & Gupta, 2017), `T_e = T + (R_0 - T) (1 - e / E)^3`, so most of the pruning happens
  early, while the network can still recover, and none in the last epochs;
- `next_lambda`: the penalty's controller, a multiplicative (log-space) integral rule
  `lambda <- lambda * exp(gain * (R_e - T_e) / T_e)`, clipped per epoch: a dual-ascent step on
  the constraint `R <= T_e` taken in `log(lambda)`, which keeps `lambda > 0` and makes the step
  independent of `lambda`'s scale (any dataset size, any resource). When the gates close
  fewer units than the schedule asks, `lambda` grows; when they close more, it shrinks;
- `units_to_meet`: what is removed: the units with the lowest scores (gate activation rates)
  until the model is at `T_e`, and no further: the gates' own choice, completed when they
  lag the schedule and held back when they run ahead of it (a unit removed too early cannot
  come back). Since units never come back, a model that reached the target stays within it.
"""

import dataclasses
import math
import re

import numpy as np

from tfdynhp.costs import memory
from tfdynhp.costs import units as resources
from tfdynhp.graph import units as graph
from tfdynhp.math import budget as budget_lib
from tfdynhp.math.selection import keep_mask
from tfdynhp.validation import ConfigurationError, check_real

TARGET_RESOURCES = ("params", "macs", "int8_bytes", "memory", "m4_instructions")
# Resources counted in plain numbers ("2.5M macs", "25% m4_instructions"), not bytes.
_COUNTED = ("params", "macs", "m4_instructions")
_WORDS = {
    "params": "params", "param": "params", "parameters": "params", "weights": "params",
    "macs": "macs", "mac": "macs", "mult-adds": "macs",
    "int8": "int8_bytes", "model": "int8_bytes", "tflite": "int8_bytes", "flash": "int8_bytes",
    "int8_bytes": "int8_bytes",
    "memory": "memory", "training memory": "memory", "ram": "memory",
    "m4_instructions": "m4_instructions", "m4 instructions": "m4_instructions",
    "m4": "m4_instructions", "instructions": "m4_instructions",
    "cortex-m4 instructions": "m4_instructions",
}
_COUNT_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_TARGET_RE = re.compile(
    r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*"
    r"(?P<unit>%|[kKmMgG]i?[bB](?=\s|$)|[kKmMgGbB](?=\s|$))?\s*(?P<word>[A-Za-z][A-Za-z0-9 _-]*)?\s*$"
)
_FORMS = (
    "a Target, or a string such as '32k params', '31744 params', '25% params', '2.5M macs', "
    "'40KB' or '40KiB int8' (the int8 .tflite size), '900KB memory' (training memory), "
    "'25% m4_instructions' or '2M m4_instructions' (Cortex-M4 instructions per inference with "
    "CMSIS-NN kernels, estimated by tfdynhp.layer_types.instructions)"
)


@dataclasses.dataclass(frozen=True)
class Target:
    """A resource amount to reach by an epoch.

    Args:
        resource: `"params"`, `"macs"`, `"int8_bytes"` (estimated int8 `.tflite` size),
            `"memory"` (training memory under the callback's accounting) or
            `"m4_instructions"` (estimated Cortex-M4 instructions per inference with CMSIS-NN
            kernels).
        amount: the absolute amount, or None when `fraction` is given.
        fraction: the amount as a fraction of the starting model, in (0, 1].
        by_epoch: the epoch (1-based) by whose end the target is met; None lets the callback
            choose two thirds of the fit's epochs.
    """

    resource: str
    amount: float = None
    fraction: float = None
    by_epoch: int = None

    def __post_init__(self):
        if self.resource not in TARGET_RESOURCES:
            raise ValueError(f"Unknown target resource {self.resource!r}. Expected one of "
                             f"{', '.join(repr(r) for r in TARGET_RESOURCES)}.")
        if (self.amount is None) == (self.fraction is None):
            raise ValueError("A target needs exactly one of `amount` or `fraction`. Received: "
                             f"amount={self.amount!r}, fraction={self.fraction!r}")
        if self.amount is not None and not check_real("amount", self.amount) > 0:
            raise ValueError(f"A target amount must be > 0. Received: {self.amount!r}")
        if self.fraction is not None and not 0 < check_real("fraction", self.fraction) <= 1:
            raise ValueError(f"A target fraction must be in (0, 1]. Received: {self.fraction!r}")
        if self.by_epoch is not None and (not isinstance(self.by_epoch, int)
                                          or self.by_epoch < 1):
            raise ValueError(f"`by_epoch` must be a positive integer. Received: {self.by_epoch!r}")

    def resolve(self, initial):
        """The absolute amount, given the starting model's amount."""
        return float(self.amount) if self.amount is not None else self.fraction * initial

    def describe(self, amount=None):
        amount = self.resolve(0) if amount is None and self.amount is not None else amount
        if self.resource in ("int8_bytes", "memory"):
            what = "int8 model" if self.resource == "int8_bytes" else "training memory"
            return f"{budget_lib.format_bytes(int(amount))} {what}"
        if self.resource == "m4_instructions":
            return f"{amount:,.0f} Cortex-M4 instructions (estimated)"
        return f"{amount:,.0f} {self.resource}"


def parse_target(value, by_epoch=None):
    """Parses a target: a `Target`, or a string (see `Target` and the examples).

    Raises:
        ValueError: for a string in none of the accepted forms, or an unknown resource word.
        TypeError: for another type.

    Example:
    >>> parse_target("32k params")
    Target(resource='params', amount=32000.0, fraction=None, by_epoch=None)
    >>> parse_target("40KiB").amount
    40960.0
    """
    if isinstance(value, Target):
        return value if by_epoch is None else dataclasses.replace(value, by_epoch=by_epoch)
    if not isinstance(value, str):
        raise TypeError(f"Expected the target to be {_FORMS}. Received: {value!r}")
    match = _TARGET_RE.match(value)
    if match is None:
        raise ValueError(f"Could not parse the target {value!r}. Expected {_FORMS}.")
    number, unit = match.group("number"), match.group("unit") or ""
    word = (match.group("word") or "").strip().lower()
    if unit.lower() in {u.lower() for u in ("B", "KB", "MB", "GB", "KiB", "MiB", "GiB")}:
        resource = _WORDS.get(word or "int8")
        if resource not in ("int8_bytes", "memory"):
            raise ValueError(f"Target {value!r}: a size in bytes is an int8 model ('40KB') or "
                             f"training memory ('900KB memory'), not {word!r}.")
        return Target(resource, amount=float(budget_lib.parse_budget(number + unit)),
                      by_epoch=by_epoch)
    resource = _WORDS.get(word)
    if resource not in _COUNTED:
        words = ", ".join(repr(w) for w, r in _WORDS.items() if r in _COUNTED)
        raise ValueError(f"Target {value!r}: unknown or missing resource {word!r}; name what "
                         f"to count, one of {words}. Expected {_FORMS}.")
    if unit == "%":
        return Target(resource, fraction=float(number) / 100.0, by_epoch=by_epoch)
    return Target(resource, amount=float(number) * _COUNT_SUFFIXES[unit.lower()],
                  by_epoch=by_epoch)


def measure(model, resource, keep_masks=None, unit_graph=None, batch_size=32,
            accounting="full"):
    """The model's amount of `resource`, now or after `keep_masks` were applied."""
    if resource == "memory":
        return float(memory.training_memory_after(model, keep_masks, batch_size, accounting,
                                                  unit_graph))
    cost = resources.model_cost(model, keep_masks, unit_graph=unit_graph)
    return float(getattr(cost, resource))


def scheduled_amount(initial, final, epoch, by_epoch, power=3):
    """Where the model should be at the end of `epoch` (1-based): polynomial decay from
    `initial` to `final`, reached at `by_epoch` and kept after it.

    Example:
    >>> scheduled_amount(1000, 100, 1, 2)
    212.5
    >>> scheduled_amount(1000, 100, 2, 2), scheduled_amount(1000, 100, 5, 2)
    (100.0, 100.0)
    """
    if initial <= final:
        return float(final)
    progress = min(1.0, epoch / max(1, by_epoch))
    return float(final + (initial - final) * (1.0 - progress) ** power)


def next_lambda(current, measured, scheduled, gain=2.0, max_factor=4.0):
    """The penalty strength for the next epoch: `lambda * exp(gain * (R - T) / T)`, the change
    clipped to `[1/max_factor, max_factor]` per epoch.

    Example:
    >>> round(next_lambda(1.0, 120.0, 100.0), 4)
    1.4918
    >>> next_lambda(1.0, 100.0, 100.0)
    1.0
    """
    relative_error = (measured - scheduled) / max(scheduled, 1e-12)
    factor = math.exp(max(-math.log(max_factor), min(math.log(max_factor),
                                                    gain * relative_error)))
    return float(current * factor)


def units_to_meet(groups, scores, base_masks, amount, measure_masks, min_units=1):
    """Keep-masks that also remove the lowest-scoring units until `measure_masks(masks) <=
    amount`, removing as few as possible (or every removable unit when even that is not
    enough).

    Args:
        groups: the prunable `UnitGroup`s to choose from.
        scores: `{group name: scores}`; lower goes first, NaN last.
        base_masks: `{group name: mask}` of what is removed anyway (True keeps).
        amount: the amount to reach.
        measure_masks: `callable(masks) -> amount`.
        min_units: units kept in every group (and one per segment).

    Returns:
        `(masks, reached)`.
    """
    masks = {g.name: np.array(base_masks.get(g.name, np.ones(g.units, bool)), bool)
             for g in groups}
    if measure_masks(masks) <= amount:
        return masks, True
    candidates = []
    for group in groups:
        group_scores = np.nan_to_num(np.asarray(scores[group.name], np.float64), nan=np.inf)
        kept = masks[group.name]
        # The best `min_units` kept units (and one per segment) stay whatever the amount.
        protected = keep_mask(np.where(kept, group_scores, -np.inf), np.inf, min_units,
                              group.segments)
        for position in np.flatnonzero(kept & ~protected):
            candidates.append((group_scores[position], group.name, position))
    candidates.sort(key=lambda c: (c[0], c[1], c[2]))

    def masks_removing(count):
        trial = {name: mask.copy() for name, mask in masks.items()}
        for _, name, position in candidates[:count]:
            trial[name][position] = False
        return trial

    low, high = 0, len(candidates)
    if measure_masks(masks_removing(high)) > amount:
        return masks_removing(high), False
    while low < high:  # the smallest count that meets the amount
        middle = (low + high) // 2
        if measure_masks(masks_removing(middle)) <= amount:
            high = middle
        else:
            low = middle + 1
    return masks_removing(low), True


def minimum_amount(model, resource, unit_graph, min_units=1, **measure_kwargs):
    """The smallest amount surgery can reach: every prunable group down to `min_units` (of a
    gated model, every gated group: the others are never pruned)."""
    gated = any(group.gate is not None for group in unit_graph.groups)
    masks = {}
    for group in unit_graph.groups:
        if group.prunable and (group.gate is not None or not gated):
            masks[group.name] = keep_mask(np.zeros(group.units), 1.0, min_units, group.segments)
    return measure(model, resource, masks, unit_graph, **measure_kwargs)


# Which cost a target's resource gives the gates when they only count units.
PENALTY_FOR_TARGET = {"params": "params", "macs": "macs", "int8_bytes": "params",
                      "memory": "memory", "m4_instructions": "m4_instructions"}


class TargetController:
    """The per-epoch logic of a target (see the module docstring): schedule, `lambda`
    control, the completing removal, and when to freeze the gates.

    Args:
        target: a `Target`.
        epochs: the epochs of the fit (to place `by_epoch` when the target does not say).
        min_units: units never removed from a group.
        gain: the controller's gain. Defaults to 2.
        measure_kwargs: `batch_size` and `accounting` for a memory target.
    """

    def __init__(self, target, epochs, min_units=1, gain=2.0, **measure_kwargs):
        self.target = target
        self.epochs = epochs
        self.by_epoch = target.by_epoch or max(1, round(2 * epochs / 3))
        self._check_by_epoch()
        self.min_units = min_units
        self.gain = gain
        self.measure_kwargs = measure_kwargs
        self.offset = 0.0  # measured minus estimated int8 bytes (fixed file overhead)
        self.initial = self.amount = None

    def _check_by_epoch(self):
        if self.by_epoch > self.epochs:
            raise ConfigurationError(
                f"The target is to be met by epoch {self.by_epoch}, but fit runs {self.epochs} "
                "epochs. Lower `by_epoch` or train longer."
            )

    def measure(self, model, keep_masks=None, unit_graph=None):
        value = measure(model, self.target.resource, keep_masks, unit_graph,
                        **self.measure_kwargs)
        return value + self.offset

    def begin(self, model, unit_graph, int8_offset=0.0):
        """Resolves the amount and checks it can be reached; returns it."""
        self.offset = float(int8_offset)
        self.initial = self.measure(model, unit_graph=unit_graph)
        self.amount = self.target.resolve(self.initial)
        smallest = minimum_amount(model, self.target.resource, unit_graph, self.min_units,
                                  **self.measure_kwargs) + self.offset
        if self.amount < smallest:
            raise ConfigurationError(
                f"The target of {self.target.describe(self.amount)} cannot be reached: with "
                f"min_units={self.min_units} unit(s) left in every prunable group the model "
                f"still needs {self.target.describe(smallest)} (starting from "
                f"{self.target.describe(self.initial)}). Aim higher, or start from a smaller "
                "model (a target met only by removing a whole layer is not reachable)."
            )
        return self.amount

    def reference(self):
        """What the schedule starts from and aims at (JSON-ready): saved with the model, so
        that a resumed run (`restore`) follows the schedule of the run it continues."""
        return {"initial": self.initial, "amount": self.amount, "by_epoch": self.by_epoch,
                "offset": self.offset, "measure_batch_size": self.measure_kwargs.get("batch_size")}

    def restore(self, reference):
        """Continues the run whose `reference()` this is, instead of `begin`: a percentage
        target stays a percentage of the model the run started from, not of the (already
        pruned) model it resumes with."""
        self.initial = float(reference["initial"])
        self.amount = float(reference["amount"])
        self.by_epoch = int(reference["by_epoch"])
        self.offset = float(reference["offset"])
        if reference.get("measure_batch_size") is not None:  # a memory target's batch
            self.measure_kwargs["batch_size"] = int(reference["measure_batch_size"])
        self._check_by_epoch()
        return self.amount

    def scheduled(self, epoch):
        """The amount due at the end of `epoch` (1-based)."""
        return scheduled_amount(self.initial, self.amount, epoch, self.by_epoch)

    def epoch_end(self, model, epoch, groups, scores, masks, l0_lambda):
        """Returns `(masks, next lambda, record)` for the end of `epoch` (1-based)."""
        unit_graph = graph.analyze(model)
        due = self.scheduled(epoch)
        by_gates = self.measure(model, masks, unit_graph)
        new_lambda = next_lambda(l0_lambda, by_gates, due, self.gain)
        # Remove the lowest-scoring units until the model is at the amount due, no further:
        # more than the gates closed when they lag the schedule, fewer when they run ahead
        # (a unit removed too early cannot come back; a closed gate costs nothing meanwhile).
        masks, reached = units_to_meet(
            groups, scores, {}, due,
            lambda trial: self.measure(model, trial, unit_graph), self.min_units,
        )
        record = {"scheduled": due, "by_gates": by_gates, "reached": reached}
        return masks, new_lambda, record

    def missed(self, model, why="Every removable unit was not enough; aim higher or prune "
               "more layers."):
        """`None` when `model` is within the target, else a message saying by how much it
        misses it, and `why` (for the callback to warn with once the target is due)."""
        now = self.measure(model)
        if now <= self.amount * (1 + 1e-9):
            return None
        return (f"The target of {self.target.describe(self.amount)} was due by epoch "
                f"{self.by_epoch} but the model has {self.target.describe(now)} "
                f"({now / self.initial:.1%} of the starting {self.target.describe(self.initial)}"
                f"). {why}")

    def freezes_after(self, epoch):
        return epoch >= self.by_epoch
