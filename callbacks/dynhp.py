"""`DynHPCallback`: Dynamic Hard Pruning inside one `model.fit()` call."""

import keras
from keras.src.utils import io_utils

from tfdynhp import batch_size as batch_rules
from tfdynhp import budget as budget_lib
from tfdynhp import memory, resources
from tfdynhp.batches import DynamicBatches
from tfdynhp.criteria import GateActivationRate, keep_mask
from tfdynhp.models import VARIANCE_RATIO, GatedModel
from tfdynhp.surgery import apply_keep_masks, gated_groups
from tfdynhp.validation import check_integer, check_real


class DynHPCallback(keras.callbacks.Callback):
    """Dynamic Hard Pruning (Valerio et al., "Dynamic Hard Pruning of Neural Networks at the
    Edge of the Internet", §4) as a Keras callback.

    At the end of every `frequency`-th epoch, the input units of each gated layer whose gate was
    open in fewer than `threshold` of the epoch's examples are physically removed (kernels,
    biases, gates, BatchNormalization statistics and optimizer slots shrink; see
    `tfdynhp.surgery.apply_keep_masks`), never leaving fewer than `min_units` in a layer.
    With `dynamic_batch=True` the memory freed is reused: the mini-batch of a
    `tfdynhp.DynamicBatches` input grows by the gradient-variance rule
    `b + ceil((1 - alpha_bs) ||S||_1 / F)` (paper eq. 8), never beyond what fits in `budget`
    (eqs. 9-10), and never shrinks.

    Per epoch it writes to `logs` (so `CSVLogger`, `TensorBoard` and `History` record them; put
    this callback before them in the list):

    - what the epoch trained with: `dynhp/batch_size`, `dynhp/memory_bytes` (training memory
      under `accounting`), `dynhp/paper_memory_bytes`, `dynhp/full_memory_bytes`;
    - the model after the epoch's pruning: `dynhp/params` (kernel and bias values) and
      `dynhp/units/<layer>` (input units of each gated layer);
    - what the next epoch will train with: `dynhp/next_batch_size`, `dynhp/next_memory_bytes`;
    - with a budget, `dynhp/budget_bytes`.

    `history` keeps the same per epoch.

    Args:
        threshold: minimum gate activation rate to keep a unit (the paper's 0.5). Defaults to
            `0.5`.
        min_units: units never removed from a layer. Defaults to `1`.
        frequency: prune every `frequency` epochs. Defaults to `1`.
        prune: `False` trains the gates without removing anything (the paper's soft-pruning
            baseline, SP). Defaults to `True`.
        criterion: a callable `criterion(layer) -> scores` with a `threshold` attribute; units
            scoring below it go. Defaults to `GateActivationRate(threshold)`.
        budget: memory budget in bytes or as a string ("1MB", "512KiB", "0.6MiB"). `None` for
            no budget. Defaults to `None`.
        alpha_bs: `alpha_bs` of the batch-size rule, in [0, 1]. Defaults to `0.98`.
        accounting: `"full"` (weights, gates, gradients, optimizer slots, activations, input
            batch) or `"paper"` (weights plus one input batch); the budget applies to it.
            Defaults to `"full"`.
        dynamic_batch: grow the batch between epochs; needs a `tfdynhp.DynamicBatches` input.
            Defaults to `True` when `budget` is given, else `False`.
        optimizer_slots: `"slice"` keeps the optimizer state of surviving units, `"reset"`
            starts it afresh. Defaults to `"slice"`.
        verbose: 1 logs one line per epoch with Keras' `print_msg`. Defaults to 0.

    Raises:
        ValueError: at construction for arguments out of range; at `on_train_begin` for a
            model without gated layers, an uncompiled model, a budget too small for the model
            and the first batch, or `dynamic_batch=True` without `DynamicBatches`.

    Example:
    >>> model = tfdynhp.gate(base_model, l0_lambda=0.1)
    >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> data = tfdynhp.DynamicBatches(x_train, y_train, batch_size=16, seed=0)
    >>> model.fit(data, epochs=20, callbacks=[DynHPCallback(budget="1MB", alpha_bs=0.98)])
    """

    def __init__(
        self,
        threshold=0.5,
        min_units=1,
        frequency=1,
        prune=True,
        criterion=None,
        budget=None,
        alpha_bs=0.98,
        accounting="full",
        dynamic_batch=None,
        optimizer_slots="slice",
        verbose=0,
    ):
        super().__init__()
        self.criterion = criterion or GateActivationRate(threshold)
        if not callable(self.criterion) or not hasattr(self.criterion, "threshold"):
            raise TypeError(
                "`criterion` must be callable as criterion(layer) -> scores and have a "
                f"`threshold` attribute. Received: {self.criterion!r}"
            )
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
        self.verbose = verbose
        self.history = []
        self._data = None

    # -- validation -----------------------------------------------------------------------

    def _check_model(self):
        model = self.model
        if not gated_groups(model):
            raise ValueError(
                f"DynHPCallback needs a model with gated layers; '{model.name}' has none. "
                "Build it with `tfdynhp.gate(model)` and compile it before `fit`."
            )
        if not getattr(model, "compiled", False) or model.optimizer is None:
            raise ValueError(
                "The model is not compiled. Call `model.compile(optimizer, loss)` before `fit`."
            )

    def _training_data(self):
        data = getattr(self.model, "_dynhp_fit_data", None)
        if not isinstance(data, DynamicBatches) or not isinstance(self.model, GatedModel):
            raise ValueError(  # noqa: TRY004 (a wrong fit input is a value error to the user)
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
        return getattr(self.model, "_dynhp_fit_batch_size", None)

    def _memory(self, batch_size):
        return memory.training_memory(self.model, batch_size, self.accounting)

    # -- hooks ----------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._check_model()
        self.history = []
        self._data = self._training_data() if self.dynamic_batch else None
        if self.budget_bytes is not None:
            batch = self._epoch_batch_size()
            if batch is None:
                raise ValueError(
                    "A memory budget needs the batch size, which this training input does not "
                    f"say ({type(getattr(self.model, '_dynhp_fit_data', None)).__name__}). "
                    "Pass arrays with `batch_size=`, a tf.data dataset batched with a static "
                    "size (`.batch(n, drop_remainder=True)`), or `tfdynhp.DynamicBatches`."
                )
            total, fixed, per_example = self._memory(batch)
            if total > self.budget_bytes:
                raise ValueError(
                    f"The budget of {budget_lib.format_bytes(self.budget_bytes)} is too small: "
                    f"the model needs {budget_lib.format_bytes(fixed)} plus "
                    f"{budget_lib.format_bytes(per_example)} per example, "
                    f"{budget_lib.format_bytes(total)} at batch size {batch} "
                    f"({self.accounting} accounting). Raise the budget or start from a "
                    "smaller model or batch."
                )
        if self._data is not None:
            self.model.enable_gradient_variance()
            self.model.make_train_function(force=True)
        self._cost_scale = resources.update_gate_costs(
            self.model, batch_size=self._epoch_batch_size() or 32
        )

    def on_train_end(self, logs=None):
        # Later fits of the same model should not pay for the estimate.
        if self._data is not None:
            self.model.disable_gradient_variance()
        self._data = None

    def on_epoch_begin(self, epoch, logs=None):
        for gate in self.model.gate_layers:
            gate.reset_gate_statistics()

    def _keep_masks(self):
        masks = {}
        for group in gated_groups(self.model):
            scores = self.criterion(group)
            masks[group.name] = keep_mask(
                scores, self.criterion.threshold, self.min_units, group.segments
            )
        return masks

    def _next_batch_size(self, batch_size, logs):
        ratio = float(logs.get(VARIANCE_RATIO, 0.0))
        candidate = batch_rules.variance_batch_candidate(batch_size, self.alpha_bs, ratio)
        max_batch = candidate
        if self.budget_bytes is not None:
            _, fixed, per_example = self._memory(batch_size)
            max_batch = batch_rules.max_batch_for_budget(self.budget_bytes, fixed, per_example)
        return batch_rules.next_batch_size(
            batch_size, candidate, max_batch, max_examples=self._data.num_examples
        )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        model = self.model
        batch_size = self._epoch_batch_size()
        memory_batch = batch_size or 0
        epoch_memory = {
            accounting: memory.training_memory(model, memory_batch, accounting)[0]
            for accounting in memory.ACCOUNTINGS
        }
        if self.prune and (epoch + 1) % self.frequency == 0:
            result = apply_keep_masks(
                model, self._keep_masks(), optimizer_slots=self.optimizer_slots
            )
            if result.changed:
                # What a unit saves changed with the widths around it (resource-aware penalty).
                resources.update_gate_costs(model, batch_size=batch_size or 32,
                                            scale=self._cost_scale)
        next_batch = batch_size
        if self._data is not None:
            next_batch = self._next_batch_size(batch_size, logs)
            self._data.set_batch_size(next_batch)
        record = {
            "dynhp/params": memory.parameter_count(model),
            "dynhp/memory_bytes": epoch_memory[self.accounting],
            "dynhp/paper_memory_bytes": epoch_memory["paper"],
            "dynhp/full_memory_bytes": epoch_memory["full"],
        }
        for group in gated_groups(model):
            record[f"dynhp/units/{group.name}"] = group.units
        if batch_size is not None:
            record["dynhp/batch_size"] = batch_size
            record["dynhp/next_batch_size"] = next_batch
            record["dynhp/next_memory_bytes"] = self._memory(next_batch)[0]
        if self.budget_bytes is not None:
            record["dynhp/budget_bytes"] = self.budget_bytes
        logs.update(record)
        self.history.append({"epoch": epoch, **record, **{
            k: float(v) for k, v in logs.items() if not k.startswith("dynhp/")
        }})
        if self.verbose:
            units = "-".join(str(group.units) for group in gated_groups(model))
            io_utils.print_msg(
                f"DynHP epoch {epoch + 1}: units {units}, params {record['dynhp/params']}, "
                f"batch {batch_size} -> {next_batch}, memory "
                f"{budget_lib.format_bytes(record['dynhp/memory_bytes'])}"
                + (
                    f" / budget {budget_lib.format_bytes(self.budget_bytes)}"
                    if self.budget_bytes is not None
                    else ""
                )
            )
