"""`DynHPCallback`: Dynamic Hard Pruning inside one `model.fit()` call."""

import dataclasses
import warnings

import keras
import numpy as np
from keras.src.utils import io_utils

from tfdynhp import distribute
from tfdynhp.costs import memory
from tfdynhp.costs import units as resources
from tfdynhp.costs.coverage import check_target
from tfdynhp.datasets.shaping import representative_subset
from tfdynhp.graph import gated_groups, probes
from tfdynhp.math import batch_rule as batch_rules
from tfdynhp.math import budget as budget_lib
from tfdynhp.math.selection import keep_mask
from tfdynhp.model.batch_norm import batch_norm_layers
from tfdynhp.model.dynamic_batches import DynamicBatches
from tfdynhp.model.folding import fold_frozen_gates
from tfdynhp.model.gated_model import VARIANCE_RATIO, GatedModel
from tfdynhp.policies import criteria as criteria_lib
from tfdynhp.policies import targets
from tfdynhp.policies import tolerance as tolerance_lib
from tfdynhp.policies.criteria import GateActivationRate
from tfdynhp.quantization import QATPhase
from tfdynhp.surgery import apply_keep_masks
from tfdynhp.validation import ConfigurationError, check_integer, check_real

LAMBDA_KEY = "dynhp/lambda"
TARGET_KEY = "dynhp/target"
QAT_KEY = "dynhp/qat"
FINAL_PHASES = ("freeze", "qat", None)
TARGET_MET_KEY = "dynhp/target_met"
TOLERANCE_PREFIX = "dynhp/tolerance/"
# One training step in VARIANCE_EVERY computes the gradient variance: measured in
# bench/speed.py, see NOTES-speed.md.
VARIANCE_EVERY = 4


class DynHPCallback(keras.callbacks.Callback):
    """Dynamic Hard Pruning (Valerio et al., "Dynamic Hard Pruning of Neural Networks at the
    Edge of the Internet", §4) as a Keras callback, optionally driven to a target.

    At the end of every `frequency`-th epoch, the units of each gated group whose gate was
    open in fewer than `threshold` of the epoch's examples are physically removed (kernels,
    biases, gates, BatchNormalization statistics and optimizer slots shrink; see
    `tfdynhp.surgery.apply_keep_masks`), never leaving fewer than `min_units` in a group.
    With `dynamic_batch=True` the memory freed is reused: the mini-batch of a
    `tfdynhp.DynamicBatches` input grows by the gradient-variance rule
    `b + ceil((1 - alpha_bs) ||S||_1 / F)` (paper eq. 8), never beyond what fits in `budget`
    (eqs. 9-10), and never shrinks.

    With validation data in `fit` and no rule named (no `threshold`, `criterion` or
    `target`), `DynHPCallback()` prunes by the tolerance rule instead: as far as the
    validation accuracy stays within one point of its reference, every cut made
    provisionally, judged after an epoch of training around it, and removed only then (see
    `tolerance`); without validation data it warns and uses the threshold rule.

    With a `target` ("32k params", "2.5M macs", "40KB", "900KB memory", or a
    `tfdynhp.policies.targets.Target`) the model is brought to it by `target_epoch` (see
    `tfdynhp.policies.targets`): the amount due follows a cubic schedule, `lambda` is raised or lowered
    every epoch so that the gates close about as many units as the schedule asks, and each
    epoch removes the units of lowest activation rate until the model is at the amount due
    (more than `threshold` removes when the gates lag, fewer when they run ahead); from
    `target_epoch` on the gates are frozen at their test-time values and the narrowed model is
    fine-tuned (`final_phase="freeze"`). With `final_phase="qat"` the narrowed model is
    fine-tuned quantization-aware instead, in the same `fit`: the gates are folded into the
    kernels and the model runs its int8 simulation from then on (see
    `tfdynhp.quantization.QATPhase`; `to_int8_tflite(model)` exports it with its learned
    ranges). The gates' penalty then counts what a unit costs in the target's resource,
    unless `penalty` says otherwise.

    Per epoch it writes to `logs` (so `CSVLogger`, `TensorBoard` and `History` record them; put
    this callback before them in the list):

    - what the epoch trained with: `dynhp/batch_size`, `dynhp/memory_bytes` (training memory
      under `accounting`), `dynhp/paper_memory_bytes`, `dynhp/full_memory_bytes`,
      `dynhp/lambda`;
    - the model after the epoch's pruning: `dynhp/params`, `dynhp/macs`, `dynhp/int8_bytes`
      (estimated) and `dynhp/units/<group>` (units of each gated group);
    - what the next epoch will train with: `dynhp/next_batch_size`, `dynhp/next_memory_bytes`;
    - with a budget, `dynhp/budget_bytes`; with a target, `dynhp/target` (the amount due) and,
      at the target epoch, `dynhp/target_met` (a target missed also warns, saying by how much);
      with `final_phase="qat"`, `dynhp/qat` (1 for an epoch trained quantization-aware).

    `history` keeps the same per epoch.

    A fit is a new pruning run, unless it continues the run saved with the model
    (`GatedModel.dynhp_run`, written at every epoch end): `fit(initial_epoch=k)` with `k > 0`
    (e.g. after `tfdynhp.distribute.resume`) continues it, with the same target reference
    ("25% params" of the model the run started from) and schedule, and gates frozen by its
    target stay frozen. A new run (`initial_epoch=0`) takes a percentage target of the model
    as it is, and unfreezes gates an earlier target froze, so that they train again.

    Args:
        threshold: minimum gate activation rate to keep a unit (the paper's 0.5). Naming it
            chooses this rule over the tolerance rule (see `tolerance`). Defaults to `None`
            (`0.5` wherever the rule applies).
        min_units: units never removed from a group. Defaults to `1`.
        frequency: prune every `frequency` epochs (and, with a target, at its epoch).
            Defaults to `1`.
        prune: `False` trains the gates without removing anything (the paper's soft-pruning
            baseline, SP). Defaults to `True`.
        criterion: a criterion name of `tfdynhp.policies.criteria` ("gate_rate",
            "magnitude", "taylor", "lrp", "activation_density", "random") or an object with
            `scores(model, data=None, unit_graph=None) -> {group name: scores}`, scored on the
            whole model at each pruning epoch; units scoring below `threshold` go (the
            criterion's own `threshold` when it has one). Defaults to
            `GateActivationRate(threshold)`.
        criterion_data: `x` or `(x, y)` for a criterion that reads data. Defaults to `None`.
        budget: memory budget in bytes or as a string ("1MB", "512KiB", "0.6MiB"), per
            replica under a distribution strategy (the model, its optimizer state and the
            replica's share of the global batch; the batch grows in multiples of the number
            of replicas). `None` for no budget. Defaults to `None`.
        alpha_bs: `alpha_bs` of the batch-size rule, in [0, 1]. Defaults to `0.98`.
        accounting: `"full"` (weights, gates, gradients, optimizer slots, activations, input
            batch) or `"paper"` (weights plus one input batch); the budget and a memory target
            apply to it. Defaults to `"full"`.
        dynamic_batch: grow the batch between epochs; needs a `tfdynhp.DynamicBatches` input.
            Defaults to `True` when `budget` is given, else `False`.
        optimizer_slots: `"slice"` keeps the optimizer state of surviving units, `"reset"`
            zeroes it. Defaults to `"slice"`.
        target: what to bring the model to (see above). Defaults to `None`.
        target_epoch: the epoch (1-based) by whose end the target is met. Defaults to the
            target's own `by_epoch`, else two thirds of the fit's epochs.
        final_phase: `"freeze"` (freeze the gates once the target is met and fine-tune),
            `"qat"` (then fine-tune quantization-aware; the ranges start from up to 500
            training samples when the training data are arrays or `DynamicBatches`), a
            `tfdynhp.quantization.QATPhase` (the same, with its options) or `None` (keep
            training the gates). Defaults to `"freeze"`.
        penalty: the resource the gates' penalty counts (`tfdynhp.costs.units.RESOURCES`);
            `None` keeps the gates' own unless a target gives one. Defaults to `None`.
        tolerance: prune as far as validation allows (`tfdynhp.policies.tolerance`): a
            number (e.g. `0.01`, one point of accuracy), a
            `tfdynhp.policies.tolerance.Tolerance` (monitor, mode, resource, step sizes),
            `"auto"` or `None`. At an epoch end the lowest-ranked units (Taylor importance
            per MAC saved) are cut provisionally (their gates closed, nothing removed yet);
            the network trains one epoch without them and the cut is committed (surgery,
            after one more check on the validation data) only if the monitored validation
            metric is within `tolerance` of its reference (the best mean of two consecutive
            epochs), else it is undone (the units get their gates back) and the next cut is
            smaller. The gates are frozen at their test-time values while the rule runs (no
            sampling noise, no L0 penalty). Needs `validation_data` or `validation_split` in
            `fit`; without them it warns and uses the `threshold` rule. With a `target`,
            every scheduled cut is checked before surgery, and pruning stops at whichever
            binds first (`binding` says which). `"auto"` is `Tolerance()` (0.01, MACs) when
            no `threshold`, `criterion` or `target` is named and `prune=True`, else `None`
            (the named rule alone). Logs `dynhp/tolerance/value`, `.../best` (the
            reference), `.../after`, `.../cut` (fraction of the resource removed this epoch),
            `.../pending` (of the provisional cut), `.../trials`, `.../step`; `history` also
            keeps `.../state`, `.../tried` (every check: size, units, metric, committed)
            and `.../provisional`. Defaults to `"auto"`.
        variance_every: with `dynamic_batch`, compute the gradient variance of the batch rule
            on one training step in `variance_every` (the rule uses its epoch mean; see
            `tfdynhp.GatedModel.enable_gradient_variance`); `1` for every step. Defaults to
            `4` (`VARIANCE_EVERY`, measured in `bench/speed.py`).
        verbose: 1 logs one line per epoch with Keras' `print_msg`. Defaults to 0.

    Raises:
        ValueError: at construction for arguments out of range; at `on_train_begin` (before
            any training) for a model without gated groups, an uncompiled model, a budget too
            small for the model (its optimizer's real state counted) and the first batch or
            that cannot be checked, a target that cannot be reached, contradicts the budget
            or cannot be measured (parameters the cost model does not count, layers with
            weights and no MACs for a MACs target; `tfdynhp.costs.coverage`), a fit that
            continues a run (`initial_epoch > 0`) with another target than the run's, or
            `dynamic_batch=True` without `DynamicBatches`.

    Example:
    >>> model = tfdynhp.gate(base_model)
    >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> data = tfdynhp.DynamicBatches(x_train, y_train, batch_size=16, seed=0)
    >>> model.fit(data, epochs=30, callbacks=[DynHPCallback(target="32k params",
    ...                                                     budget="1MB")])
    """

    def __init__(
        self,
        threshold=None,
        min_units=1,
        frequency=1,
        prune=True,
        criterion=None,
        criterion_data=None,
        budget=None,
        alpha_bs=0.98,
        accounting="full",
        dynamic_batch=None,
        optimizer_slots="slice",
        target=None,
        target_epoch=None,
        final_phase="freeze",
        penalty=None,
        variance_every=None,
        tolerance="auto",
        verbose=0,
    ):
        super().__init__()
        # A rule the caller names (a threshold, a criterion, a target, soft pruning) is that
        # rule; with none named, `tolerance="auto"` prunes as far as validation allows.
        names_a_rule = threshold is not None or criterion is not None or target is not None
        auto = isinstance(tolerance, str) and tolerance == "auto"
        if isinstance(tolerance, str) and not auto:
            raise ValueError("`tolerance` must be 'auto', a non-negative number (e.g. 0.01: one "
                             "point of accuracy), a tfdynhp.policies.tolerance.Tolerance or "
                             f"None. Received: tolerance={tolerance!r}")
        if auto:
            tolerance = None if (names_a_rule or not prune) else tolerance_lib.Tolerance()
        self._auto_tolerance = auto and tolerance is not None
        threshold = 0.5 if threshold is None else threshold
        if isinstance(criterion, str):
            options = {"threshold": threshold} if criterion == "gate_rate" else {}
            criterion = criteria_lib.get(criterion, **options)
        self.criterion = criterion or GateActivationRate(threshold)
        if not callable(getattr(self.criterion, "scores", None)):
            raise TypeError(
                "`criterion` must be a name (tfdynhp.policies.criteria.CRITERIA) or an object "
                "with `scores(model, data=None, unit_graph=None) -> {group name: scores}`. "
                f"Received: {self.criterion!r}"
            )
        self.threshold = float(getattr(self.criterion, "threshold", threshold))
        self.criterion_data = criterion_data
        if getattr(self.criterion, "needs_data", False):
            self.criterion_data = probes.check_data(
                criterion_data, self.criterion.name, getattr(self.criterion, "needs_labels",
                                                             False))
        self.min_units = check_integer("min_units", min_units, 1)
        self.frequency = check_integer("frequency", frequency, 1)
        self.prune = bool(prune)
        self.budget_bytes = None if budget is None else budget_lib.parse_budget(budget)
        self.alpha_bs = check_real("alpha_bs", alpha_bs, 0.0, 1.0)
        self.accounting = memory.check_accounting(accounting)
        self.dynamic_batch = (budget is not None) if dynamic_batch is None else bool(dynamic_batch)
        if optimizer_slots not in ("slice", "reset"):
            raise ValueError(
                f"`optimizer_slots` must be 'slice' or 'reset'. Received: {optimizer_slots!r}"
            )
        self.optimizer_slots = optimizer_slots
        if target_epoch is not None:
            check_integer("target_epoch", target_epoch, 1)
        self.target = None if target is None else targets.parse_target(target, target_epoch)
        if self.target is not None and not self.prune:
            raise ValueError("A target needs pruning; `prune=False` (soft pruning) cannot "
                             "reach one. Drop `target` or set `prune=True`.")
        self._qat = QATPhase() if final_phase == "qat" else (
            final_phase if isinstance(final_phase, QATPhase) else None)
        if self._qat is None and final_phase not in FINAL_PHASES:
            raise ValueError(f"`final_phase` must be one of {FINAL_PHASES} or a "
                             f"tfdynhp.quantization.QATPhase. Received: {final_phase!r}")
        if self._qat is not None and self.target is None:
            raise ValueError("`final_phase='qat'` starts once the target is met; give a "
                             "`target` (and optionally `target_epoch`).")
        self.final_phase = "qat" if self._qat is not None else final_phase
        self.qat_model = None
        self.penalty = None if penalty is None else resources.check_resource(penalty)
        self.variance_every = check_integer(
            "variance_every", VARIANCE_EVERY if variance_every is None else variance_every, 1
        )
        self.tolerance = tolerance_lib.parse_tolerance(tolerance)
        if self.tolerance is not None and not self.prune:
            raise ValueError("A tolerance needs pruning; `prune=False` (soft pruning) removes "
                             "nothing. Drop `tolerance` or set `prune=True`.")
        self.binding = None
        self._validation = None
        self.verbose = verbose
        self.history = []
        self._data = None
        self._controller = None
        self._frozen = False

    # -- validation -----------------------------------------------------------------------

    def _check_model(self):
        model = self.model
        if not isinstance(model, GatedModel) or not gated_groups(model):
            raise ValueError(
                f"DynHPCallback needs a model with gated layers; '{model.name}' has none. "
                "Build it with `tfdynhp.gate(model)` and compile it before `fit`."
            )
        if not getattr(model, "compiled", False) or model.optimizer is None:
            raise ValueError(
                "The model is not compiled. Call `model.compile(optimizer, loss)` before `fit`."
            )

    def _build_optimizer(self):
        """Builds the optimizer now (Keras would at the first step), so that the budget counts
        its real state: `amsgrad`, `use_ema` and `gradient_accumulation_steps` each hold one
        more value per weight."""
        model = self.model
        if not model.optimizer.built:
            with model.distribute_strategy.scope():
                model.optimizer.build(model.trainable_variables)

    def _continued_run(self):
        """The saved run this fit continues (`GatedModel.dynhp_run`), or None for a new run."""
        model = self.model
        initial_epoch = model.fit_initial_epoch
        run = model.dynhp_run
        if initial_epoch == 0:
            return None
        if run is None:
            if self.target is not None and self.target.fraction is not None:
                warnings.warn(
                    f"fit(initial_epoch={initial_epoch}) but the model carries no DynHP run to "
                    f"continue: the target {self.target.fraction:.0%} {self.target.resource} is "
                    "taken of the model as it is now, not of the model an earlier run started "
                    "from. Save the model after DynHPCallback (e.g. with "
                    "`tfdynhp.distribute.ChiefCheckpoint`) to resume a run.",
                    stacklevel=2,
                )
            return None
        ours = None if self.target is None else dataclasses.asdict(self.target)
        if run.get("target") != ours:
            raise ConfigurationError(
                f"fit(initial_epoch={initial_epoch}) continues the DynHP run saved with the "
                f"model ({run.get('epoch')} epochs done, target "
                f"{_describe_target(run.get('target'))}), but this callback has target "
                f"{_describe_target(ours)}. Pass the run's target to continue it, or fit with "
                "initial_epoch=0 to start a new pruning run from this model."
            )
        return run

    def _run_state(self, epochs_done):
        """What `fit(initial_epoch=...)` needs to continue this run, saved with the model."""
        state = {"epoch": int(epochs_done),
                 "target": None if self.target is None else dataclasses.asdict(self.target),
                 "cost_scale": None if self._cost_scale is None else float(self._cost_scale)}
        if self._controller is not None:
            state.update(self._controller.reference())
        if self.tolerance is not None and self._validation is not None and (
                self._controller is None):
            state["tolerance"] = {
                "rule": self.tolerance.state(),
                "gates": tolerance_lib.gates_state(self._saved_gates or []),
                "froze": [gate.name for gate in self._tolerance_froze]}
        return state

    def _prunes_at(self, epoch):
        """Whether the end of `epoch` (1-based) prunes: every `frequency`-th epoch, and the
        target's epoch (else a target would be met only at the next multiple of
        `frequency`)."""
        if epoch % self.frequency == 0:
            return True
        return self._controller is not None and epoch == self._controller.by_epoch

    def _training_data(self):
        data = self.model.fit_data
        if not isinstance(data, DynamicBatches):
            raise ConfigurationError(
                "`dynamic_batch=True` needs the training data as `tfdynhp.DynamicBatches(x, y, "
                "batch_size=16)` passed to `fit` of a model built by `tfdynhp.gate()`: Keras "
                "fixes the batch of arrays and `tf.data` datasets when `fit` starts. Received "
                f"training data of type {type(data).__name__}. Or pass `dynamic_batch=False`."
            )
        return data

    def _epoch_batch_size(self):
        """The batch size of the coming epoch, when known (None for self-batching inputs)."""
        if self._data is not None:
            return self._data.batch_size
        return self.model.fit_batch_size

    def _replicas(self):
        return distribute.replicas(self.model.distribute_strategy)

    def _memory(self, batch_size):
        """Training memory of one replica: the model, its optimizer state and its share of the
        global batch `batch_size` (the budget is what one device holds)."""
        return memory.training_memory(
            self.model, -(-batch_size // self._replicas()), self.accounting
        )

    def _check_budget(self):
        batch = self._epoch_batch_size()
        if batch is None:
            raise ConfigurationError(
                "A memory budget needs the batch size, which this training input does not "
                f"say ({type(self.model.fit_data).__name__}). "
                "Pass arrays with `batch_size=`, a tf.data dataset batched with a static "
                "size (`.batch(n, drop_remainder=True)`), or `tfdynhp.DynamicBatches`."
            )
        total, fixed, per_example = self._memory(batch)
        replicas = self._replicas()
        if total > self.budget_bytes:
            share = f" ({batch // replicas} per replica of {replicas})" if replicas > 1 else ""
            raise ConfigurationError(
                f"The budget of {budget_lib.format_bytes(self.budget_bytes)} is too small: "
                f"the model needs {budget_lib.format_bytes(fixed)} plus "
                f"{budget_lib.format_bytes(per_example)} per example, "
                f"{budget_lib.format_bytes(total)} at batch size {batch}{share} "
                f"({self.accounting} accounting). The budget is per replica (what one device "
                "holds). Raise the budget or start from a smaller model or batch."
            )

    def _start_target(self, run=None):
        target = self.target
        if target.resource == "memory" and self.budget_bytes is not None and (
            target.amount is not None and target.amount > self.budget_bytes
        ):
            raise ConfigurationError(
                f"The target of {target.describe()} is above the budget of "
                f"{budget_lib.format_bytes(self.budget_bytes)}: the budget already keeps "
                "training memory lower. Lower the target or raise the budget."
            )
        found = check_target(self.model, target.resource)
        if target.resource == "macs" and found.unpriced:
            warnings.warn(
                f"DynHPCallback: the MACs target counts 0 MACs for {len(found.unpriced)} "
                f"weightless call(s) without a cost function: {', '.join(found.unpriced[:6])}"
                f"{' ...' if len(found.unpriced) > 6 else ''}.",
                stacklevel=2,
            )
        controller = targets.TargetController(
            target, int(self.params.get("epochs") or 1), self.min_units,
            batch_size=self._epoch_batch_size() or 32, accounting=self.accounting,
        )
        if run is not None and "initial" in run:  # the run's reference, not today's model
            controller.restore(run)
            return controller
        offset = _int8_overhead(self.model) if target.resource == "int8_bytes" else 0.0
        controller.begin(self.model, _analyze(self.model), offset)
        return controller

    # -- hooks ----------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._check_model()
        self.history = []
        self._build_optimizer()
        run = self._continued_run()
        data = self._training_data() if self.dynamic_batch else None
        self._data = data
        batch = self._epoch_batch_size()
        if batch is not None:
            distribute.check_divisible(batch, self._replicas())
        if self.budget_bytes is not None:
            self._check_budget()
        self._controller = self._start_target(run) if self.target is not None else None
        self._start_tolerance(run)
        retrace = self._data is not None
        if run is None and getattr(self.model, "forward", None) is not None:
            raise ConfigurationError(
                f"Model '{self.model.name}' runs its quantization-aware simulation (the QAT "
                "phase of an earlier DynHP run); a new pruning run trains the float graph. Call "
                "`model.replace_forward(None)` first, or continue the run with "
                "`fit(initial_epoch=...)`."
            )
        if run is None and any(gate.frozen for gate in self.model.gate_layers):
            # A new pruning run: the gates an earlier target froze train again.
            for gate in self.model.gate_layers:
                gate.unfreeze()
            retrace = True
        # Frozen by a target's final phase, not by the tolerance rule of the run it continues.
        self._frozen = all(gate.frozen for gate in self.model.gate_layers) and not (
            self._tolerance_froze)
        if self._frozen and fold_frozen_gates(self.model, optimizer_slots=self.optimizer_slots,
                                              remove_closed=False):
            retrace = True  # a continued run's frozen phase, saved before gates were folded
        retrace = self._freeze_for_tolerance() or retrace
        penalty = self.penalty
        if penalty is None and self._controller is not None and all(
            gate.cost_resource == "units" for gate in self.model.gate_layers
        ):
            penalty = targets.PENALTY_FOR_TARGET[self.target.resource]
        if self._data is not None:
            self.model.enable_gradient_variance(every=self.variance_every)
        if retrace:
            self.model.make_train_function(force=True)
        self._cost_scale = resources.update_gate_costs(
            self.model, penalty, batch_size=self._epoch_batch_size() or 32,
            scale=None if run is None else run.get("cost_scale"),
        )
        if run is not None and self._qat is not None and self._frozen and (
                self.model.forward is None):
            # A resumed run past its target: the QAT phase starts again (ranges recalibrated).
            self._start_qat()

    def on_train_end(self, logs=None):
        if self.tolerance is not None and self.tolerance.pending is not None:
            # The fit stopped before its last epoch (e.g. EarlyStopping): the provisional
            # cut is judged now, on the validation data, never left behind.
            last = self.tolerance.finish(lambda masks: self._trial(self.tolerance, masks),
                                         self._commit, self._undo)
            if self.history:
                self.history[-1][TOLERANCE_PREFIX + "final_trial"] = vars(last)
        if self.tolerance is not None and self._validation is not None:
            self._warn_resolution(self.tolerance)
        if self._tolerance_froze:
            for gate in self._tolerance_froze:
                gate.unfreeze()
            self.model.train_function = None  # the next fit traces the gates' noise again
            self._tolerance_froze = []
        # Later fits of the same model should not pay for the estimate.
        if self._data is not None:
            self.model.disable_gradient_variance()
        self._data = None

    def on_epoch_begin(self, epoch, logs=None):
        for gate in self.model.gate_layers:
            gate.reset_gate_statistics()

    def _scores_and_masks(self, groups):
        scores, masks = {}, {}
        model_scores = self.criterion.scores(self.model, self.criterion_data)
        for group in groups:
            scores[group.name] = np.asarray(
                model_scores.get(group.name, np.full(group.units, np.nan)), np.float64)
            masks[group.name] = keep_mask(
                scores[group.name], self.threshold, self.min_units, group.segments
            )
        return scores, masks

    def _next_batch_size(self, batch_size, logs):
        ratio = float(logs.get(VARIANCE_RATIO, 0.0))
        candidate = batch_rules.variance_batch_candidate(batch_size, self.alpha_bs, ratio)
        max_batch = candidate
        if self.budget_bytes is not None:
            _, fixed, per_example = self._memory(batch_size)
            max_batch = self._replicas() * batch_rules.max_batch_for_budget(
                self.budget_bytes, fixed, per_example
            )
        next_batch = batch_rules.next_batch_size(
            batch_size, candidate, max_batch, max_examples=self._data.num_examples
        )
        # Grow in whole per-replica batches (`batch_size` already is a multiple).
        return max(batch_size, distribute.round_to_replicas(next_batch, self._replicas()))

    def _commit(self, masks):
        result = apply_keep_masks(self.model, masks, optimizer_slots=self.optimizer_slots)
        if result.changed:
            # What a unit saves changed with the widths around it (resource-aware penalty).
            resources.update_gate_costs(self.model, batch_size=self._epoch_batch_size() or 32,
                                        scale=self._cost_scale)

    def _prune(self, epoch, record, logs=None):
        model = self.model
        tolerance = self._tolerance_monitor(logs or {})
        if tolerance is not None and self._controller is None:
            self._tolerance_epoch(tolerance, logs, record, epoch)
            return
        groups = gated_groups(model)
        scores, masks = self._scores_and_masks(groups)
        gates = model.gate_layers
        l0_lambda = gates[0].l0_lambda
        if self._controller is not None:
            masks, l0_lambda, target_record = self._controller.epoch_end(
                model, epoch + 1, groups, scores, masks, l0_lambda
            )
            record[TARGET_KEY] = target_record["scheduled"]
            for gate in gates:
                gate.set_penalty(l0_lambda=l0_lambda)
            if tolerance is not None:
                masks = self._tolerance_check(tolerance, logs, record, groups, scores,
                                              target_record["scheduled"], masks)
        self._commit(masks)
        if self._controller is not None and epoch + 1 == self._controller.by_epoch:
            if tolerance is not None and self.binding == "tolerance":
                missed = self._controller.missed(model, why=(
                    f"The tolerance on {tolerance.monitor} refused the larger cuts first "
                    "(binding='tolerance'): loosen it, or train longer before the target."))
            else:
                missed = self._controller.missed(model)
            record[TARGET_MET_KEY] = missed is None
            if missed:
                warnings.warn(f"DynHPCallback: {missed}", stacklevel=2)
        if self._controller is not None and self.final_phase is not None and (
            self._controller.freezes_after(epoch + 1)
        ):
            for gate in model.gate_layers:
                gate.freeze()
            # The frozen phase trains the stripped layers: no gate work left in the step. The
            # units the target kept stay, closed ones too (they train again from zero), so
            # the model ends at the amount asked for, not below it.
            fold_frozen_gates(model, optimizer_slots=self.optimizer_slots, remove_closed=False)
            model.make_train_function(force=True)
            self._frozen = True
            if self._qat is not None:
                self._start_qat()

    def _start_qat(self):
        """The QAT phase: the model trains as its int8 simulation from the next epoch on (the
        gradient variance, measured on the float graph, stops: the batch stays)."""
        model = self.model
        model.disable_gradient_variance()
        data = model.fit_data
        x = data.x if isinstance(data, DynamicBatches) else data
        samples = None
        if isinstance(x, np.ndarray) and x.ndim >= 2:
            samples = representative_subset(x, self._qat.calibration_samples)
        self.qat_model = self._qat.start(model, samples)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        model = self.model
        batch_size = self._epoch_batch_size()
        memory_batch = -(-(batch_size or 0) // self._replicas())  # one replica's share
        epoch_memory = {
            accounting: memory.training_memory(model, memory_batch, accounting)[0]
            for accounting in memory.ACCOUNTINGS
        }
        record = {LAMBDA_KEY: model.gate_layers[0].l0_lambda}
        if self._qat is not None:
            record[QAT_KEY] = float(self.qat_model is not None)  # this epoch trained in QAT
        if self.prune and not self._frozen and self._prunes_at(epoch + 1):
            self._prune(epoch, record, logs)
        next_batch = batch_size
        if self._data is not None:
            next_batch = self._next_batch_size(batch_size, logs)
            self._data.set_batch_size(next_batch)
        cost = resources.model_cost(model)
        record.update({
            "dynhp/params": memory.parameter_count(model),
            "dynhp/macs": cost.macs,
            "dynhp/int8_bytes": cost.int8_bytes,
            "dynhp/memory_bytes": epoch_memory[self.accounting],
            "dynhp/paper_memory_bytes": epoch_memory["paper"],
            "dynhp/full_memory_bytes": epoch_memory["full"],
        })
        for group in gated_groups(model):
            record[f"dynhp/units/{group.name}"] = group.units
        if batch_size is not None:
            record["dynhp/batch_size"] = batch_size
            record["dynhp/next_batch_size"] = next_batch
            record["dynhp/next_memory_bytes"] = self._memory(next_batch)[0]
        if self.budget_bytes is not None:
            record["dynhp/budget_bytes"] = self.budget_bytes
        state = record.pop(TOLERANCE_PREFIX + "state", None)
        tried = record.pop(TOLERANCE_PREFIX + "tried", None)
        provisional = record.pop(TOLERANCE_PREFIX + "provisional", None)
        logs.update(record)
        model.dynhp_run = self._run_state(epoch + 1)
        self.history.append({"epoch": epoch, **record, **{
            k: float(v) for k, v in logs.items() if not k.startswith("dynhp/")
        }})
        if state is not None:  # not scalars: kept out of `logs` (TensorBoard writes scalars)
            self.history[-1][TOLERANCE_PREFIX + "state"] = state
            self.history[-1][TOLERANCE_PREFIX + "tried"] = tried
            self.history[-1][TOLERANCE_PREFIX + "provisional"] = provisional
        if self.verbose:
            self._print_epoch(epoch, record, batch_size, next_batch)

    def _print_epoch(self, epoch, record, batch_size, next_batch):
        units = "-".join(str(group.units) for group in gated_groups(self.model))
        line = (f"DynHP epoch {epoch + 1}: units {units}, params {record['dynhp/params']:,}, "
                f"batch {batch_size} -> {next_batch}, memory "
                f"{budget_lib.format_bytes(record['dynhp/memory_bytes'])}")
        if self.budget_bytes is not None:
            line += f" / budget {budget_lib.format_bytes(self.budget_bytes)}"
        if TARGET_KEY in record:
            line += (f", target due {self.target.describe(record[TARGET_KEY])}, "
                     f"lambda {record[LAMBDA_KEY]:.3g}")
        if TOLERANCE_PREFIX + "value" in record:
            best = record.get(TOLERANCE_PREFIX + "best")
            line += (f", {self.tolerance.monitor} {record[TOLERANCE_PREFIX + 'value']:.4g} "
                     f"(reference {'-' if best is None else format(best, '.4g')}), "
                     f"{self._tolerance_text}")
            if self.binding:
                line += f", {self.binding} binds"
        if self._frozen:
            line += ", gates frozen"
        if self.qat_model is not None:
            line += ", quantization-aware"
        io_utils.print_msg(line)

    # -- tolerance (tfdynhp.policies.tolerance) --------------------------------------------

    def _start_tolerance(self, run=None):
        self.binding = None
        self._validation = None
        self._tolerance_warned = False
        self._tolerance_froze = []
        self._tolerance_text = ""
        self._saved_gates = None
        self._recalibration_inputs = None
        if self.tolerance is None:
            return
        self.tolerance.reset()
        self._validation = tolerance_lib.validation_of(self.model.fit_args)
        if self._validation is None:
            self._warn_no_validation()
            return
        if self.tolerance.recalibrate and batch_norm_layers(self.model):
            self._recalibration_inputs = tolerance_lib.training_inputs(
                self.model.fit_args, self.tolerance.recalibration_examples)
        saved = None if run is None else run.get("tolerance")
        if saved is not None:  # a resumed fit continues the rule where it was
            self.tolerance.restore(saved["rule"])
            self._saved_gates = tolerance_lib.gates_from_state(saved["gates"], self.model)
            froze = set(saved["froze"])
            self._tolerance_froze = [g for g in self.model.gate_layers if g.name in froze]
            return
        if self._controller is None and self.tolerance.warmup:
            # The metric before training, which the warm-up is measured from.
            logs = tolerance_lib.evaluate_all(self.model, self._validation,
                                              self._epoch_batch_size() or 256)
            monitor = self.tolerance.resolve_monitor({f"val_{k}": v for k, v in logs.items()})
            if monitor is not None:
                self.tolerance.begin(logs[self.tolerance.metric_key()])

    def _freeze_for_tolerance(self):
        """Freezes the gates while the tolerance rule runs (`Tolerance(gates="frozen")`);
        returns whether the train function must be traced again."""
        tolerance = self.tolerance
        if (tolerance is None or self._validation is None or self._controller is not None
                or tolerance.gates != "frozen"):
            return False
        # A resumed run keeps the list of the run it continues (its gates may load unfrozen).
        froze = self._tolerance_froze or [g for g in self.model.gate_layers if not g.frozen]
        newly = [gate for gate in froze if not gate.frozen]
        for gate in newly:
            gate.freeze()
        self._tolerance_froze = froze
        return bool(newly)

    def _warn_no_validation(self):
        if not self._tolerance_warned:
            what = ("DynHPCallback() prunes as far as validation accuracy allows when `fit` has "
                    "validation data" if self._auto_tolerance else
                    "DynHPCallback(tolerance=...) checks every cut on validation data")
            warnings.warn(
                f"{what}, and this fit has none: it prunes with the `threshold` rule instead "
                "(units whose gates the L0 penalty closed go, unchecked). Pass "
                "`validation_data=(x_val, y_val)` or `validation_split=0.1` to `fit`, or "
                "`DynHPCallback(tolerance=None)` to choose the threshold rule.", stacklevel=2)
            self._tolerance_warned = True

    def _warn_resolution(self, tolerance):
        """At the end of a fit, at the accuracy the run reached (its reference): warns when
        the validation arrays were too few to resolve the tolerance
        (`tolerance_lib.resolution_message`), so that the next run can choose better."""
        if tolerance.best is None:
            return
        examples = (len(self._validation[0]) if isinstance(self._validation, tuple)
                    else None)
        message = tolerance_lib.resolution_message(tolerance.monitor, tolerance.best, examples,
                                                   tolerance.tolerance)
        if message:
            warnings.warn(message, stacklevel=2)

    def _tolerance_monitor(self, logs):
        """The `Tolerance` when this epoch can use it (validation data and the monitored
        metric in `logs`), else None (the `threshold` rule)."""
        if self.tolerance is None:
            return None
        if self._validation is None or self.tolerance.resolve_monitor(logs) is None:
            self._warn_no_validation()
            return None
        return self.tolerance

    def _undo(self, masks=None):
        """Gives the provisionally cut units their gates back; returns the validation metric
        then."""
        tolerance_lib.restore_gates(self._saved_gates or [])
        self._saved_gates = None
        return self._measure(self.tolerance)

    def _measure(self, tolerance):
        """The monitored metric of the model as it is, on the validation data, with its
        BatchNormalization statistics re-estimated first (`Tolerance.recalibrate`)."""
        return tolerance_lib.current_metric(self.model, self._validation,
                                            tolerance.metric_key(),
                                            self._epoch_batch_size() or 256,
                                            self._recalibration_inputs)

    def _epoch_value(self, tolerance, logs, record):
        """The epoch's monitored value the rule judges by: Keras' `logs` value, or the
        value after re-estimating the BatchNormalization statistics (both logged)."""
        value = float(logs[tolerance.monitor])
        if self._recalibration_inputs is None:
            return value
        record[TOLERANCE_PREFIX + "keras_value"] = value
        return self._measure(tolerance)

    def _trial(self, tolerance, masks):
        return tolerance_lib.trial_metric(self.model, masks, self._validation,
                                          tolerance.metric_key(),
                                          self._epoch_batch_size() or 256,
                                          self._recalibration_inputs)

    def _record_tolerance(self, tolerance, result, before, after, record, provisional=0.0):
        committed = [t for t in result["trials"] if t.committed and t.kind == "commit"]
        record.update({
            TOLERANCE_PREFIX + "value": result["value"],
            TOLERANCE_PREFIX + "after": committed[-1].metric if committed else result["value"],
            TOLERANCE_PREFIX + "cut": 1.0 - after / before if before else 0.0,
            TOLERANCE_PREFIX + "trials": float(len(result["trials"])),  # validation passes
            TOLERANCE_PREFIX + "step": result["step"],
            TOLERANCE_PREFIX + "state": result["state"],
            TOLERANCE_PREFIX + "tried": [
                {"step": t.step, "amount_after": t.amount_after, "units": t.units,
                 "metric": t.metric, "committed": t.committed, "kind": t.kind}
                for t in result["trials"]],
            TOLERANCE_PREFIX + "provisional": None if result.get("cut") is None else {
                "step": result["cut"][0], "amount_after": result["cut"][1],
                "units": result["cut"][2]},
        })
        if result["reference"] is not None:  # None during the warm-up
            record[TOLERANCE_PREFIX + "best"] = result["reference"]
        record[TOLERANCE_PREFIX + "pending"] = provisional
        text = result["state"]
        if committed:
            text += f" ({1.0 - after / before:.1%} of {tolerance.resource} removed)"
        if result.get("cut") is not None:
            text += f", next cut {result['cut'][0]:.1%} ({result['cut'][2]} units) on trial"
        if result.get("restored") is not None:
            text += f", units back: {result['restored']:.4g}"
        self._tolerance_text = text

    def _tolerance_epoch(self, tolerance, logs, record, epoch):
        model = self.model

        def propose(step):
            data = tolerance_lib.as_arrays(self._validation)
            resource = {"int8_bytes": "params"}.get(tolerance.resource, tolerance.resource)
            keys = tolerance_lib.rank_scores(
                tolerance_lib.importance(model, data),
                resources.unit_costs(model, resource), tolerance.resource_aware)
            return tolerance_lib.propose_cut(model, keys, step, tolerance.resource,
                                             self.min_units)

        def commit(masks):
            self._saved_gates = None
            self._commit(masks)

        def cut(masks):
            self._saved_gates = tolerance_lib.set_gates(model, masks,
                                                        tolerance_lib.CLOSED_LOG_ALPHA)

        before = tolerance_lib.measure(model, tolerance.resource)
        epochs = int(self.params.get("epochs") or 0)
        final = epoch + 1 >= epochs
        may_cut = epoch + 1 <= tolerance_lib.last_cut_epoch(epochs, tolerance.until)
        result = tolerance.epoch_end(
            self._epoch_value(tolerance, logs, record), propose,
            lambda masks: self._trial(tolerance, masks), commit, cut, self._undo, final,
            may_cut)
        if result["state"] == "kept" and self._recalibration_inputs is not None:
            # The undo re-estimated the statistics with the units back; they are cut again.
            self._measure(tolerance)
        after = tolerance_lib.measure(model, tolerance.resource)
        provisional = 0.0
        if tolerance.pending is not None:
            provisional = 1.0 - tolerance.pending.amount_after / after if after else 0.0
        self._record_tolerance(tolerance, result, before, after, record, provisional)
        if result["state"] in ("converged", "exhausted") or (
                result["state"] == "undone" and tolerance.converged):
            self.binding = "tolerance"

    def _tolerance_check(self, tolerance, logs, record, groups, scores, due, masks):
        """Target plus tolerance: the target's cut, then halves of it, until one stays within
        tolerance; returns the masks to commit (all True when none does)."""
        model = self.model
        unit_graph = _analyze(model)
        now = self._controller.measure(model, unit_graph=unit_graph)

        def cut(k):
            if k == 0:
                trial = masks
            else:
                amount = now - (now - due) * 0.5 ** k
                trial, _ = targets.units_to_meet(
                    groups, scores, {}, amount,
                    lambda m: self._controller.measure(model, m, unit_graph), self.min_units)
            removed = sum(int(np.count_nonzero(~np.asarray(m, bool))) for m in trial.values())
            return trial, self._controller.measure(model, trial, unit_graph), removed

        chosen = {}
        result = tolerance.check_cuts(self._epoch_value(tolerance, logs, record), cut,
                                      lambda m: self._trial(tolerance, m), chosen.update)
        committed = [t for t in result["trials"] if t.committed]
        after = committed[-1].amount_after if committed else now
        self._record_tolerance(tolerance, result, now, after, record)
        if result["state"] != "nothing_due":
            self.binding = result["binding"]
        if self._controller.measure(model, chosen or None, unit_graph) <= (
                self._controller.amount):
            self.binding = "target"
        return chosen or {g.name: np.ones(g.units, bool) for g in groups}


def _describe_target(spec):
    """"none", "25% params", "1,642 params", "40.0 KB int8 model", with its epoch if given."""
    if spec is None:
        return "none"
    target = targets.Target(**spec)
    text = (f"{target.fraction:.0%} {target.resource}" if target.fraction is not None
            else target.describe())
    return text if target.by_epoch is None else f"{text} by epoch {target.by_epoch}"


def _analyze(model):
    from tfdynhp.graph import analyze

    return analyze(model)


def _int8_overhead(model):
    """Measured int8 `.tflite` bytes of the model (stripped) minus the estimate: the fixed
    part of the file the estimate cannot know. Converts once, with random calibration data
    (the size does not depend on the data)."""
    from tfdynhp import converters
    from tfdynhp.model import strip

    stripped = strip(model)
    shape = (16, *stripped.inputs[0].shape[1:])
    calibration = np.random.default_rng(0).uniform(size=shape).astype("float32")
    real = len(converters.to_int8_tflite(stripped, calibration))
    return real - resources.model_cost(stripped).int8_bytes
