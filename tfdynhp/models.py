"""`GatedModel`: a functional Keras model whose training step can also measure the variance of
the per-example gradients of its gated dense layers (the signal DynHP grows the batch with)."""

import math

import keras
import tensorflow as tf
from keras.src.losses import loss as loss_module

from tfdynhp.batches import DynamicBatches, ignore_ran_out_of_data_warning
from tfdynhp.taps import record_dense_taps
from tfdynhp.variance import dense_gradient_variance_l1

GRADIENT_VARIANCE = "grad_variance_l1"
VARIANCE_RATIO = "grad_variance_ratio"


@keras.saving.register_keras_serializable(package="tfdynhp")
class GatedModel(keras.Model):
    """Functional model built by `tfdynhp.gate()`.

    Behaves exactly like `keras.Model` until `enable_gradient_variance()` is called (the DynHP
    callback does it when the batch size is dynamic). From then on every training step also
    reports, as metrics in `logs`:

    - `grad_variance_l1`: `||S||_1`, the summed unbiased variance of the per-example gradients
      of every gated dense kernel and bias (Balles et al., 2017), computed from the layer inputs
      and the per-example gradients at the pre-activations, with no per-example gradients;
    - `grad_variance_ratio`: `||S||_1 / F`, with `F` the mini-batch data loss (the loss
      without the L0 penalty, so the rule does not depend on `lambda`), averaged over the
      epoch: the quantity of the DynHP batch-size rule (paper eq. 8).

    The estimate assumes a loss averaged over the batch (Keras' default reduction).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._variance_trackers = None
        object.__setattr__(self, "_dynhp_fit_data", None)
        object.__setattr__(self, "_dynhp_fit_batch_size", None)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, plus the checks and context the DynHP callback needs.

        Refuses `EarlyStopping(restore_best_weights=True)` next to a pruning `DynHPCallback`
        (weights saved before a pruning step no longer fit the model), and lets the callback
        reach the training data (to resize `DynamicBatches`) and the fixed batch size.
        """
        _check_callbacks(callbacks)
        callbacks = list(callbacks or [])
        verbose = kwargs.get("verbose", "auto")
        if (
            isinstance(x, DynamicBatches)
            and verbose != 0
            and not any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks)
        ):
            callbacks.append(_EpochStepsProgbar(x))
        object.__setattr__(self, "_dynhp_fit_data", x)
        # Keras batches arrays with `batch_size` (32 by default); other inputs batch themselves.
        fixed_batch = (batch_size or 32) if hasattr(x, "shape") else None
        object.__setattr__(self, "_dynhp_fit_batch_size", fixed_batch)
        try:
            # A grown DynamicBatches batch ends an epoch in fewer steps than Keras counted when
            # fit started; Keras then warns, wrongly, that training is interrupted.
            with ignore_ran_out_of_data_warning():
                return super().fit(x, y, batch_size, epochs, *args, callbacks=callbacks, **kwargs)
        finally:
            object.__setattr__(self, "_dynhp_fit_data", None)
            object.__setattr__(self, "_dynhp_fit_batch_size", None)

    @property
    def tracks_gradient_variance(self):
        return self._variance_trackers is not None

    def enable_gradient_variance(self):
        """Starts reporting the gradient-variance metrics; rebuilds the train function."""
        if self._variance_trackers is None:
            with self.distribute_strategy.scope():
                self._variance_trackers = (
                    keras.metrics.Mean(name=GRADIENT_VARIANCE),
                    keras.metrics.Mean(name=VARIANCE_RATIO),
                )
            self.train_function = None

    def test_step(self, data):
        logs = super().test_step(data)
        if self._variance_trackers is None:
            return logs
        # The variance metrics belong to training; keep `val_*` logs free of them.
        return {k: v for k, v in logs.items() if k not in (GRADIENT_VARIANCE, VARIANCE_RATIO)}

    def train_step(self, data):
        if self._variance_trackers is None:
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape, record_dense_taps() as taps:
            y_pred = self(x, training=True)
            loss = self._compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
            batch_loss = loss_module.unscale_loss_for_distribution(loss)
            self._loss_tracker.update_state(batch_loss, sample_weight=batch_size)
            # F of the batch rule: the data loss, without the L0 penalty and other additional
            # losses, so that the rule does not depend on lambda.
            penalties = self.losses
            data_loss = batch_loss - (tf.add_n(penalties) if penalties else 0.0)
            if self.optimizer is not None:
                loss = self.optimizer.scale_loss(loss)

        weights = self.trainable_weights
        preactivations = [preactivation for _, _, preactivation in taps]
        gradients = tape.gradient(loss, weights + preactivations)
        self.optimizer.apply_gradients(zip(gradients[: len(weights)], weights))

        # The loss is a mean over the local batch, divided again by the number of replicas:
        # undo both to get each example's own gradient at the pre-activations.
        per_example_scale = tf.cast(
            batch_size * self.distribute_strategy.num_replicas_in_sync, loss.dtype
        )
        variance = tf.add_n(
            [tf.constant(0.0)]
            + [
                dense_gradient_variance_l1(inputs, delta * per_example_scale, layer.use_bias)
                for (layer, inputs, _), delta in zip(taps, gradients[len(weights) :])
                if delta is not None
            ]
        )
        variance_tracker, ratio_tracker = self._variance_trackers
        variance_tracker.update_state(variance)
        ratio_tracker.update_state(tf.math.divide_no_nan(variance, data_loss))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _check_callbacks(callbacks):
    callbacks = list(callbacks or [])
    pruning = any(
        type(c).__name__ == "DynHPCallback" and getattr(c, "prune", False) for c in callbacks
    )
    restoring = [
        c
        for c in callbacks
        if isinstance(c, keras.callbacks.EarlyStopping) and c.restore_best_weights
    ]
    if pruning and restoring:
        raise ValueError(
            "EarlyStopping(restore_best_weights=True) cannot restore weights saved before "
            "DynHP removed units: they no longer fit the model. Use "
            "EarlyStopping(restore_best_weights=False) together with "
            "ModelCheckpoint(path, save_best_only=True) and reload the best `.keras` file."
        )


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
