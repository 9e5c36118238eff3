"""`GatedModel`: the functional Keras model `tfdynhp.gate()` returns. It adds the gates' L0
penalty to the loss, finds the training-set size the penalty is divided by, and can measure the
variance of the per-example gradients (the signal DynHP grows the batch with)."""

import math
import typing

import keras
import tensorflow as tf
from keras.src.losses import loss as loss_module

from tfdynhp import distribute
from tfdynhp.distribute import keras_fix as _keras_compat
from tfdynhp.graph import units as graph
from tfdynhp.layer_types.registry import gradient_variance_l1, tracks_gradient_variance
from tfdynhp.layers.gate import HardConcreteGate
from tfdynhp.model.dynamic_batches import DynamicBatches, ignore_ran_out_of_data_warning
from tfdynhp.validation import ConfigurationError, check_integer

GRADIENT_VARIANCE = "grad_variance_l1"
VARIANCE_RATIO = "grad_variance_ratio"
L0_PENALTY = "l0_penalty"
TRAINING_ONLY_METRICS = (GRADIENT_VARIANCE, VARIANCE_RATIO, L0_PENALTY)


class DatasetExtent(typing.NamedTuple):
    """How much a finite `tf.data` dataset of batches holds: `batches` per pass, `examples`,
    and `batch_size`, its (largest) batch."""

    batches: int
    examples: int
    batch_size: int


def _static_batch(dataset):
    spec = keras.tree.flatten(dataset.element_spec)[0]
    return int(spec.shape[0]) if spec.shape.rank and spec.shape[0] is not None else None


def _batching_step(dataset):
    """`(batch_size, input cardinality, drop_remainder)` of the `.batch()` step behind
    `dataset` (reached through `.prefetch()`, `.map()`, ...), or None. tf.data's own
    (private) chain of datasets; checked against the cardinality before it is trusted."""
    current = dataset
    while current is not None:
        if hasattr(current, "_batch_size") and hasattr(current, "_input_dataset"):
            try:
                drop = bool(tf.get_static_value(current._drop_remainder))
                return (int(current._batch_size), int(current._input_dataset.cardinality()),
                        drop)
            except (AttributeError, TypeError, ValueError):
                return None
        current = getattr(current, "_input_dataset", None)
    return None


def _one_pass(dataset):
    """`(batches, examples, largest batch)` counted by iterating `dataset` once."""
    def add(state, element):
        size = tf.cast(tf.shape(tf.nest.flatten(element)[0])[0], tf.int64)
        return state[0] + 1, state[1] + size, tf.maximum(state[2], size)

    zero = tf.constant(0, tf.int64)
    batches, examples, largest = dataset.reduce((zero, zero, zero), add)
    return int(batches), int(examples), int(largest)


def dataset_extent(dataset):
    """The `DatasetExtent` of a batched `tf.data` dataset, or None for an infinite one.

    Read without iterating when tf.data says it: a static batch size and a known cardinality
    (the last batch counted as full, as `drop_remainder=True` makes it), or the `.batch()`
    step's size and input cardinality (`.batch(32).prefetch(...)` without `drop_remainder`).
    Otherwise (a `filter`, a generator: cardinality unknown) the dataset is iterated once and
    its batches counted, as Keras counts the steps of such a dataset in its first epoch.
    """
    cardinality = int(dataset.cardinality())
    if cardinality == int(tf.data.INFINITE_CARDINALITY):
        return None
    static = _static_batch(dataset)
    if cardinality >= 0 and static is not None:
        return DatasetExtent(cardinality, cardinality * static, static)
    step = _batching_step(dataset) if cardinality >= 0 else None
    if step is not None:
        batch, inputs, drop = step
        if inputs >= 0 and batch > 0:
            batches = inputs // batch if drop else -(-inputs // batch)
            if batches == cardinality:
                return DatasetExtent(batches, batches * batch if drop else inputs, batch)
    batches, examples, largest = _one_pass(dataset)
    return DatasetExtent(batches, examples, largest) if batches else None


def count_examples(x, validation_split=0.0, extent=None):
    """The number of training examples in a `fit` input, or None when it cannot be known.

    Arrays (and lists / dicts of them), `tfdynhp.DynamicBatches`, a finite `tf.data.Dataset`
    of batches (see `dataset_extent`; pass its `extent` when already known), and a Keras
    `PyDataset` (its length times the size of its first batch).
    """
    if isinstance(x, DynamicBatches):
        return x.num_examples
    if isinstance(x, tf.data.Dataset):
        extent = extent or dataset_extent(x)
        return None if extent is None else extent.examples
    if isinstance(x, keras.utils.PyDataset):
        try:
            first = x[0]
            batch = len(keras.tree.flatten(first[0] if isinstance(first, tuple) else first)[0])
            return len(x) * batch
        except (TypeError, IndexError, NotImplementedError):
            return None
    leaves = keras.tree.flatten(x) if x is not None else []
    if leaves and all(hasattr(leaf, "shape") and len(leaf.shape) for leaf in leaves):
        return math.floor(int(leaves[0].shape[0]) * (1.0 - (validation_split or 0.0)))
    return None


def fixed_batch_size(x, batch_size, extent=None):
    """The batch size `fit` trains with, when it is fixed and known: Keras batches arrays with
    `batch_size` (32 by default); a finite `tf.data` dataset batches with its `.batch()` size
    (the last batch may be smaller); other inputs (and `DynamicBatches`, whose size changes)
    give None."""
    if isinstance(x, tf.data.Dataset):
        static = _static_batch(x)
        if static is not None:
            return static
        extent = extent or dataset_extent(x)
        return None if extent is None else extent.batch_size
    if isinstance(x, (DynamicBatches, keras.utils.PyDataset)):
        return None
    leaves = keras.tree.flatten(x) if x is not None else []
    if leaves and all(hasattr(leaf, "shape") for leaf in leaves):
        return batch_size or 32
    return None


@keras.saving.register_keras_serializable(package="tfdynhp")
class GatedModel(keras.Model):
    """Functional model built by `tfdynhp.gate()`.

    - It trains on the compiled loss plus the expected-L0 penalty of every `HardConcreteGate`
      (counted once per gate even when a gate is called at several places), but reports them
      apart: `loss` and `val_loss` (and `evaluate()`) are the task loss (the compiled loss
      and any other losses of the model, as in Keras), `l0_penalty` (training only) the
      penalty; the gradient is that of `loss + l0_penalty`. The penalty's weight changes
      during a DynHP fit (lambda control, the frozen phase), so a `val_loss` including it
      would mislead `ModelCheckpoint(save_best_only=True)`, `EarlyStopping` and
      `ReduceLROnPlateau`.
    - `fit` sets `dataset_size` (the `N` the penalty is divided by) on every gate created
      without one, from the training data (a `tf.data` dataset whose size tf.data does not
      know is counted in one pass, see `dataset_extent`); it raises a clear error when the
      data cannot tell (a generator, an infinite dataset): pass `dataset_size` to
      `tfdynhp.gate()` then.
    - After `enable_gradient_variance()` (the DynHP callback calls it when the batch size is
      dynamic) every training step (one in `k` with `every=k`) also reports, as metrics in
      `logs`:
      `grad_variance_l1`, `||S||_1`, the summed unbiased variance of the per-example gradients
      of every Dense, Conv1D/2D and DepthwiseConv layer (Balles et al., 2017, see
      `tfdynhp.math.gradient_variance`), and `grad_variance_ratio`, `||S||_1 / F` with `F` the mini-batch
      data loss (without the L0 penalty, so the rule does not depend on `lambda`): the quantity
      of the DynHP batch-size rule (paper eq. 8). Loss scaling (`loss_scale_factor`, mixed
      precision's `LossScaleOptimizer`) is undone before the estimate.

    The estimate assumes a loss averaged over the batch (Keras' default reduction).

    With `model.distillation = tfdynhp.model.Distillation(teacher)` the training loss also
    distils the teacher's softened outputs (`tfdynhp.model.distillation`).
    """

    def __init__(self, *args, dynhp_run=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._variance_trackers = None
        self._penalty_tracker = None
        object.__setattr__(self, "_variance_every", 1)
        object.__setattr__(self, "_variance_step", None)
        object.__setattr__(self, "_tap_model", None)
        object.__setattr__(self, "_dynhp_fit_data", None)
        object.__setattr__(self, "_dynhp_fit_batch_size", None)
        object.__setattr__(self, "_dynhp_fit_initial_epoch", 0)
        object.__setattr__(self, "_dynhp_fit_args", None)
        object.__setattr__(self, "_dynhp_run", None if dynhp_run is None else dict(dynhp_run))
        object.__setattr__(self, "_forward", None)
        object.__setattr__(self, "_distillation", None)

    @property
    def dynhp_run(self):
        """The state of the DynHP run that trained this model (epochs done, a target's
        reference and schedule; a JSON-ready dict, or `None`), saved with the model: set by
        `DynHPCallback` at every epoch end, read back when `fit(initial_epoch=...)` continues
        the run after `tfdynhp.distribute.resume` or `keras.models.load_model`."""
        return None if self._dynhp_run is None else dict(self._dynhp_run)

    @dynhp_run.setter
    def dynhp_run(self, state):
        object.__setattr__(self, "_dynhp_run", None if state is None else dict(state))

    def get_config(self):
        config = super().get_config()
        if self._dynhp_run is not None:
            config["dynhp_run"] = dict(self._dynhp_run)
        return config

    @property
    def fit_initial_epoch(self):
        """The `initial_epoch` of the running `fit` (0 outside `fit`): above 0, the fit
        continues an earlier run."""
        return self._dynhp_fit_initial_epoch

    @property
    def distillation(self):
        """The teacher of the training loss (`tfdynhp.model.distillation.Distillation`), or
        `None` (the compiled loss alone). Setting it rebuilds the train function; the teacher
        is not part of this model (not saved, not pruned)."""
        return self._distillation

    @distillation.setter
    def distillation(self, value):
        if value is not None:
            if not callable(getattr(value, "combine", None)):
                raise TypeError("Expected `distillation` to be a tfdynhp.model.Distillation "
                                f"(or None). Received: {type(value).__name__}")
            value.check_student(self)
        object.__setattr__(self, "_distillation", value)
        self.train_function = None

    @property
    def forward(self):
        """The model run instead of this model's graph (see `replace_forward`), or `None`."""
        return self._forward

    def replace_forward(self, forward):
        """Runs `forward` instead of this model's graph in every call (`fit`, `evaluate`,
        `predict`), until `replace_forward(None)`.

        `forward` is a model over this model's own variables (not tracked by it, so neither
        saved nor counted with it), e.g. its quantization-aware simulation, which
        `DynHPCallback(final_phase="qat")` switches to once the target is met. The train,
        test and predict functions are rebuilt; the gradient-variance estimate is off while
        `forward` runs (its taps are on this model's graph).
        """
        object.__setattr__(self, "_forward", forward)
        object.__setattr__(self, "_tap_model", None)
        self.test_function = None
        self.predict_function = None
        self.make_train_function(force=True)

    def call(self, inputs, training=None, mask=None, **kwargs):
        if self._forward is not None:
            return self._forward(inputs, training=training)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    @property
    def fit_data(self):
        """The training input of the running `fit` (`None` outside `fit`): how callbacks such
        as `DynHPCallback` reach a `DynamicBatches` to resize it."""
        return self._dynhp_fit_data

    @property
    def fit_args(self):
        """`{"x", "y", "validation_data", "validation_split"}` of the running `fit` (`None`
        outside `fit`): how a tolerance (`tfdynhp.policies.tolerance`) finds the validation
        data."""
        return self._dynhp_fit_args

    @property
    def fit_batch_size(self):
        """The fixed batch size of the running `fit`, when the input says it (`None` for
        `DynamicBatches`, whose batch changes, and outside `fit`)."""
        return self._dynhp_fit_batch_size

    @property
    def gate_layers(self):
        """The model's `HardConcreteGate` layers."""
        return [layer for layer in self.layers if isinstance(layer, HardConcreteGate)]

    def l0_penalty(self):
        """The sum of the gates' expected-L0 penalties (a scalar tensor)."""
        penalties = [gate.l0_penalty() for gate in self.gate_layers]
        return tf.add_n(penalties) if penalties else tf.constant(0.0)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss (and the model's other losses) plus, in training only, the
        teacher's distillation term (when set) and the L0 penalty: evaluation reports the task
        loss."""
        loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if not training:
            return loss
        if self._distillation is not None:
            loss = self._distillation.combine(loss, x, y_pred)
        # Keras divides each replica's loss by the number of replicas (the gradients are then
        # summed); the penalty too, or it would count once per replica.
        penalty = loss_module.scale_loss_for_distribution(self.l0_penalty())
        return loss + tf.cast(penalty, loss.dtype)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, plus the checks and context the gates and DynHP need.

        Sets each gate's training-set size, refuses `EarlyStopping(restore_best_weights=True)`
        next to a callback that removes units (a pruning `DynHPCallback`,
        `ActivationDensityCallback`: weights saved before a removal no longer fit the model),
        and lets the callback reach the training data (to resize `DynamicBatches`), the fixed
        batch size and `initial_epoch`. A `DynamicBatches` input is read in the order of its
        own seeded permutations: Keras' `shuffle` (which would reorder its batches with
        Python's global `random`) is turned off for it.
        """
        check_restoring_callbacks(callbacks)
        if _keras_compat.is_multi_worker(self.distribute_strategy):
            _keras_compat.install()  # keras-team/keras#20585; a no-op once Keras is fixed
            _check_multi_worker_data(x)
        if isinstance(x, DynamicBatches):
            distribute.check_divisible(x.batch_size, distribute.replicas(self.distribute_strategy))
        extent = dataset_extent(x) if isinstance(x, tf.data.Dataset) else None
        previous_sizes = self._set_dataset_size(x, kwargs.get("validation_split", 0.0), extent)
        callbacks = list(callbacks or [])
        verbose = kwargs.get("verbose", "auto")
        if (
            isinstance(x, DynamicBatches)
            and verbose != 0
            and not any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks)
        ):
            callbacks.append(_EpochStepsProgbar(x))
        callbacks.append(_GateStepsPerEpoch(x, batch_size, kwargs.get("steps_per_epoch"),
                                            extent))
        if isinstance(x, DynamicBatches):
            # It draws its own seeded permutation every epoch. Keras' `shuffle=True` (the
            # default) would also shuffle the order of its batches with Python's global
            # `random`, which differs between processes: workers would read different global
            # batches.
            kwargs["shuffle"] = False
        object.__setattr__(self, "_dynhp_fit_data", x)
        object.__setattr__(self, "_dynhp_fit_batch_size", fixed_batch_size(x, batch_size, extent))
        object.__setattr__(self, "_dynhp_fit_initial_epoch", int(kwargs.get("initial_epoch", 0)))
        object.__setattr__(self, "_dynhp_fit_args", {
            "x": x, "y": y, "validation_data": kwargs.get("validation_data"),
            "validation_split": kwargs.get("validation_split", 0.0)})
        try:
            # A grown DynamicBatches batch ends an epoch in fewer steps than Keras counted when
            # fit started; Keras then warns, wrongly, that training is interrupted.
            with ignore_ran_out_of_data_warning():
                return super().fit(x, y, batch_size, epochs, *args, callbacks=callbacks, **kwargs)
        except BaseException:
            optimizer = getattr(self, "optimizer", None)  # absent before compile()
            if optimizer is None or int(optimizer.iterations.numpy()) == 0:
                for gate, size in previous_sizes:  # refused before training: change nothing
                    gate.dataset_size = size
                    gate.set_penalty()
            raise
        finally:
            object.__setattr__(self, "_dynhp_fit_data", None)
            object.__setattr__(self, "_dynhp_fit_batch_size", None)
            object.__setattr__(self, "_dynhp_fit_initial_epoch", 0)
            object.__setattr__(self, "_dynhp_fit_args", None)

    def _set_dataset_size(self, x, validation_split, extent=None):
        """Sets `N` on the gates that take it from the data; returns their previous values."""
        automatic = [gate for gate in self.gate_layers if gate.auto_dataset_size]
        if not automatic:
            return []
        examples = count_examples(x, validation_split, extent)
        if not examples:
            raise ConfigurationError(
                "The L0 penalty is divided by the number of training examples, which cannot be "
                f"read from training data of type {type(x).__name__} (a generator, or an "
                "infinite or empty tf.data dataset). Pass it to the gates: "
                "tfdynhp.gate(model, dataset_size=N)."
            )
        previous = [(gate, gate.dataset_size) for gate in automatic]
        for gate in automatic:
            gate.set_penalty(dataset_size=examples)
        return previous

    @property
    def tracks_gradient_variance(self):
        return self._variance_trackers is not None

    @property
    def variance_every(self):
        """`k`: the variance is computed on one training step in `k` (see
        `enable_gradient_variance`)."""
        return self._variance_every

    def enable_gradient_variance(self, every=1):
        """Starts reporting the gradient-variance metrics; rebuilds the train function.

        Args:
            every: `k`, compute the variance on one step in `k` only: the first step after a
                metric reset (every epoch start; every `train_on_batch` call by default),
                then every `k`-th. The logged values are the means over the steps computed,
                an estimate of the epoch mean the DynHP batch rule uses, at about `1/k` of the
                variance's cost. `1` computes it on every step. Defaults to `1`.

        Raises:
            ValueError: if `every` is not a positive integer.
        """
        every = check_integer("every", every, 1)
        if self._variance_trackers is None:
            with self.distribute_strategy.scope():
                self._variance_trackers = (
                    keras.metrics.Mean(name=GRADIENT_VARIANCE),
                    keras.metrics.Mean(name=VARIANCE_RATIO),
                )
            self.train_function = None
        if every != self._variance_every:
            object.__setattr__(self, "_variance_every", every)
            self.train_function = None
        if every > 1 and self._variance_step is None:
            # Not a tracked weight: it is neither saved nor seen by surgery or accounting.
            with self.distribute_strategy.scope():
                step = tf.Variable(0, dtype=tf.int64, trainable=False, name="variance_step",
                                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            object.__setattr__(self, "_variance_step", step)

    def disable_gradient_variance(self):
        """Stops reporting the gradient-variance metrics (and paying for them)."""
        if self._variance_trackers is not None:
            # Keras tracked the two metrics when they were assigned; untrack them too, or
            # later fits would keep logging them (as zeros).
            trackers = self._variance_trackers
            self._metrics[:] = [m for m in self._metrics if all(m is not t for t in trackers)]
            self._variance_trackers = None
            self.train_function = None

    def reset_metrics(self):
        """Keras' metric reset (every epoch start), which also restarts the count of steps
        `enable_gradient_variance(every=k)` computes the variance on."""
        super().reset_metrics()
        if self._variance_step is not None:
            self._variance_step.assign(0)

    def make_train_function(self, force=False):
        if self._penalty_tracker is None:  # the `l0_penalty` metric, created before tracing
            with self.distribute_strategy.scope():
                self._penalty_tracker = keras.metrics.Mean(name=L0_PENALTY)
        if force or self.train_function is None:
            object.__setattr__(self, "_tap_model", None)  # the graph may have been narrowed
        return super().make_train_function(force=force)

    def _variance_taps(self):
        """A functional model sharing this model's layers whose outputs are the model's
        outputs, then the input and output of every layer the variance estimate tracks."""
        if self._tap_model is None:
            tracked = [
                node for node in graph.graph_nodes(self)
                if tracks_gradient_variance(node.operation) and len(node.input_tensors) == 1
            ]
            outputs = list(self.outputs)
            for node in tracked:
                outputs += [node.input_tensors[0], node.outputs[0]]
            tap_model = keras.Model(self.inputs, outputs, name=f"{self.name}_taps")
            object.__setattr__(self, "_tap_model", (tap_model, [n.operation for n in tracked]))
        return self._tap_model

    def test_step(self, data):
        logs = super().test_step(data)
        # The penalty and variance metrics belong to training; keep `val_*` logs (and
        # `evaluate()`) free of them.
        return {k: v for k, v in logs.items() if k not in TRAINING_ONLY_METRICS}

    # Not converted by AutoGraph (nothing here needs it): the retrace after surgery is about
    # twice as fast (bench/speed.py, part `surgery`).
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        """Keras' training step, plus the gates' own Adam step and, when enabled, the
        gradient-variance statistics of the batch rule."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        tracking = self._variance_trackers is not None and self._forward is None
        gates = [gate for gate in self.gate_layers if not gate.frozen]
        gate_values = [gate.log_alpha.value for gate in gates]
        with tf.GradientTape() as tape:
            tape.watch(gate_values)
            if tracking:
                tap_model, tracked = self._variance_taps()
                flat = tap_model(x, training=True)
                n_outputs = len(self.outputs)
                y_pred = flat[0] if n_outputs == 1 else list(flat[:n_outputs])
                taps = flat[n_outputs:]
            else:
                y_pred, taps, tracked = self(x, training=True), [], []
            loss = self._compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
            batch_loss = loss_module.unscale_loss_for_distribution(loss)
            penalty = tf.cast(self.l0_penalty(), batch_loss.dtype)
            task_loss = batch_loss - penalty  # what `loss` reports (see the class doc)
            self._loss_tracker.update_state(task_loss, sample_weight=batch_size)
            if self._penalty_tracker is not None:
                self._penalty_tracker.update_state(penalty)
            scaled_loss = self.optimizer.scale_loss(loss)

        weights = self.trainable_weights
        preactivations = list(taps[1::2])
        gradients = tape.gradient(scaled_loss, weights + gate_values + preactivations)
        self.optimizer.apply_gradients(zip(gradients[: len(weights)], weights))
        # Undo the optimizer's loss scale; the loss is already divided by the number of
        # replicas, so the sum over replicas is the batch gradient.
        loss_scale = tf.cast(self.optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        gate_gradients = [
            tf.zeros_like(value) if g is None else tf.cast(g, tf.float32) / loss_scale
            for g, value in zip(gradients[len(weights): len(weights) + len(gates)], gate_values)
        ]
        if gate_gradients:
            context = tf.distribute.get_replica_context()
            if context is not None and context.num_replicas_in_sync > 1:
                gate_gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gate_gradients)
            # A loss-scaled step that overflowed (LossScaleOptimizer skips it and lowers the
            # scale) gives inf / nan gradients: the gates skip it too. Without a loss scale
            # no step is skipped, and the gates' Adam runs in its fused kernel.
            finite = True
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                finite = tf.reduce_all(
                    [tf.reduce_all(tf.math.is_finite(g)) for g in gate_gradients])
            for gate, gradient in zip(gates, gate_gradients):
                gate.apply_gradient(gradient, apply=finite)
        if tracking:
            # F of the batch rule: the data loss, without the L0 penalty and other additional
            # losses, so that the rule does not depend on lambda.
            def track():
                other_losses = [tf.constant(0.0), *self.losses]
                data_loss = task_loss - tf.cast(tf.add_n(other_losses), task_loss.dtype)
                self._track_variance(tracked, taps, gradients[len(weights) + len(gates):],
                                     batch_size, loss_scale, data_loss)
                return tf.constant(True)

            if self._variance_every == 1:
                track()
            else:
                step = self._variance_step
                tf.cond(tf.equal(step % self._variance_every, 0), track,
                        lambda: tf.constant(False))
                step.assign_add(1)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _track_variance(self, tracked, taps, deltas, batch_size, loss_scale, data_loss):
        # Each example's own gradient at the pre-activations: undo the mean over the local
        # batch, the division by the number of replicas, and the loss scale.
        per_example_scale = (
            tf.cast(batch_size * self.distribute_strategy.num_replicas_in_sync, tf.float32)
            / loss_scale
        )
        terms = [tf.constant(0.0)]
        for layer, inputs, delta in zip(tracked, taps[0::2], deltas):
            if delta is not None:
                terms.append(gradient_variance_l1(
                    layer, tf.cast(inputs, tf.float32),
                    tf.cast(delta, tf.float32) * per_example_scale,
                ))
        total_variance = tf.add_n(terms)
        variance_tracker, ratio_tracker = self._variance_trackers
        variance_tracker.update_state(total_variance)
        ratio_tracker.update_state(
            tf.math.divide_no_nan(total_variance, tf.cast(data_loss, tf.float32))
        )


def _check_multi_worker_data(x):
    """Every worker builds the same global batches and keeps its replicas' share of each, so a
    shuffled `DynamicBatches` must draw the same permutations on every worker."""
    if isinstance(x, DynamicBatches) and x._shuffle and x._seed is None:
        raise ConfigurationError(
            "Under MultiWorkerMirroredStrategy every worker must draw the same batches (each "
            "keeps its share of every global batch), but this DynamicBatches shuffles without "
            "a seed. Pass the same `seed=` on every worker, e.g. DynamicBatches(x, y, "
            "batch_size=32, seed=0)."
        )


def removes_units(callback):
    """Whether `callback` physically removes units during `fit`: its `removes_units`
    attribute (`ActivationDensityCallback`), or a pruning `DynHPCallback`."""
    if type(callback).__name__ == "DynHPCallback":
        return bool(getattr(callback, "prune", False))
    return bool(getattr(callback, "removes_units", False))


def check_restoring_callbacks(callbacks):
    """Refuses `EarlyStopping(restore_best_weights=True)` next to a callback that removes
    units: the weights it saves before a removal no longer fit the model at `fit`'s end.

    Raises:
        ValueError: naming both callbacks and the alternative.
    """
    callbacks = list(callbacks or [])
    pruning = [c for c in callbacks if removes_units(c)]
    restoring = [
        c
        for c in callbacks
        if isinstance(c, keras.callbacks.EarlyStopping) and c.restore_best_weights
    ]
    if pruning and restoring:
        raise ValueError(
            "EarlyStopping(restore_best_weights=True) cannot restore weights saved before "
            f"{type(pruning[0]).__name__} removed units: they no longer fit the model. Use "
            "EarlyStopping(restore_best_weights=False) together with "
            "ModelCheckpoint(path, save_best_only=True) and reload the best `.keras` file."
        )


class _GateStepsPerEpoch(keras.callbacks.Callback):
    """Gives the gates' Adam its per-epoch step, `gate_speed / steps`, at every epoch start
    (a growing `DynamicBatches` batch makes epochs shorter)."""

    def __init__(self, data, batch_size, steps_per_epoch, extent=None):
        super().__init__()
        self._data, self._batch_size, self._steps = data, batch_size, steps_per_epoch
        self._extent = extent

    def _epoch_steps(self):
        if self._steps:
            return self._steps
        if isinstance(self._data, DynamicBatches):
            return math.ceil(self._data.num_examples / self._data.batch_size)
        steps = self.params.get("steps") if self.params else None
        if steps:
            return steps
        if self._extent is not None:
            return self._extent.batches
        examples = count_examples(self._data)
        return math.ceil(examples / (self._batch_size or 32)) if examples else 1

    def on_epoch_begin(self, epoch, logs=None):
        steps = self._epoch_steps()
        for gate in self.model.gate_layers:
            gate.set_steps_per_epoch(steps)


class _EpochStepsProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, with each epoch's real number of steps: Keras counts the steps once
    when `fit` starts, but a growing `DynamicBatches` batch makes later epochs shorter."""

    def __init__(self, data):
        super().__init__()
        self._data = data

    def on_epoch_begin(self, epoch, logs=None):
        # The size requested for this epoch (applied by the data set right after this hook).
        self.target = math.ceil(self._data.num_examples / self._data.batch_size)
        super().on_epoch_begin(epoch, logs)
