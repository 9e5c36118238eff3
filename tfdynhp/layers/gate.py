"""Keras layers of tfdynhp: `HardConcreteGate` (Hard Concrete L0 gates on the channels of a
tensor) and `SelectFeatures` (a gather of the surviving input features)."""

import itertools
import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfdynhp.math import hard_concrete as gate_math
from tfdynhp.validation import check_real

SAMPLING = ("example", "batch")
PHILOX = 1  # tf.random.Algorithm.PHILOX


def philox_uniform(shape, seed_generator):
    """`keras.random.uniform(shape, seed=seed_generator)` with the Philox generator named.

    Keras leaves the algorithm to TensorFlow, which picks Philox on CPU but ThreeFry under XLA,
    about 100x slower there (a `jit_compile=True` gated step took 85 ms instead of 10 ms on
    LeNet-300-100, batch 128). Same seeds and, without XLA, the same numbers as Keras.
    """
    seed = seed_generator.next()
    seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    # `tf.random.stateless_uniform(shape, seed, alg="philox")` in two ops instead of about
    # forty: the kernel scrambles the seed into Philox's key and counter the way its Python
    # wrapper does (the same numbers).
    key, counter = tf.raw_ops.StatelessRandomGetKeyCounter(seed=seed)
    return tf.raw_ops.StatelessRandomUniformV2(
        shape=tf.convert_to_tensor(shape, tf.int32), key=key, counter=counter,
        alg=PHILOX, dtype=tf.float32)


def _handle(variable):
    """The resource handle of a Keras variable (under a distribution strategy, the current
    replica's)."""
    return variable.value.handle


def _gate(inputs, log_alpha, noise, beta, gamma, zeta):
    """`(inputs * z, z_stretched)` for Hard Concrete gates `z` drawn from `noise`, with the
    gradient written out: `dz/dlog_alpha = (zeta - gamma) s (1 - s) / beta` where `0 < z < 1`
    (else 0). Autodiff of the same formula gives the same numbers with about twice the ops.
    `noise` has the shape of the sample: `(batch, 1, .., units)` per example, `(units,)` per
    batch."""

    @tf.custom_gradient
    def gate(x, log_alpha):
        s = gate_math.concrete_sample(log_alpha, noise, beta)
        stretched = s * (zeta - gamma) + gamma
        z = tf.clip_by_value(stretched, 0.0, 1.0)
        y = x * tf.cast(z, x.dtype)

        def gradient(dy, d_stretched=None):
            # Sum over the positions sharing one gate sample, then over the samples.
            dx = dy * tf.cast(z, dy.dtype)
            product = tf.cast(dy * x, tf.float32)
            spatial = list(range(1, len(x.shape) - 1))
            if len(noise.shape) == 1:
                product = tf.reduce_sum(product, axis=list(range(len(x.shape) - 1)))
            elif spatial:
                product = tf.reduce_sum(product, axis=spatial, keepdims=True)
            slope = tf.where((stretched > 0.0) & (stretched < 1.0), s * (1.0 - s), 0.0)
            d_log_alpha = product * slope * ((zeta - gamma) / beta)
            if len(noise.shape) > 1:
                d_log_alpha = tf.reshape(d_log_alpha, (-1, d_log_alpha.shape[-1]))
                d_log_alpha = tf.reduce_sum(d_log_alpha, axis=0)
            return dx, d_log_alpha

        return (y, tf.stop_gradient(stretched)), gradient

    return gate(inputs, log_alpha)


@keras.saving.register_keras_serializable(package="tfdynhp")
class HardConcreteGate(keras.layers.Layer):
    """One Hard Concrete L0 gate per channel (last axis) of its input (Louizos et al., 2018).

    `tfdynhp.gate()` puts a gate on the input of every layer that mixes channels (Dense, Conv,
    SeparableConv): gating the *input* units of a layer, as DynHP's paper does for Dense layers,
    is gating the *output* feature maps of the layers that produced them, after their
    BatchNormalization and activation, as Louizos et al. do for convolutions. A gate at that
    place is exact to remove: when `z_j = 0` no later layer sees channel `j`, so the channel can
    be cut out of every layer it passes through (see `tfdynhp.surgery`).

    In training each example samples its own gates `z ~ HardConcrete(log_alpha)` (one value per
    channel, shared by the spatial positions of a feature map) and the layer returns `x * z`;
    at inference it uses the deterministic `z_hat = clip(sigmoid(log_alpha) (zeta - gamma) +
    gamma, 0, 1)`. It counts in how many examples each gate was open (`z > 0`): DynHP removes
    the channels whose activation rate falls below a threshold.

    The expected-L0 penalty, `l0_lambda * unit_cost * sum_j P(z_j > 0) / dataset_size`, is
    returned by `l0_penalty()` and added once per gate by `tfdynhp.GatedModel` (a gate may be
    called at several places of a residual network). `l0_lambda`, `unit_cost` and
    `dataset_size` live in one non-trainable variable, so a controller can change them between
    epochs without retracing the training step.

    Deterministic gates are exactly 1 only when `sigmoid(log_alpha) >= (1 - gamma) / (zeta -
    gamma)`, i.e. for `drop_rate_init <= 1/12` with the default stretch: with a larger initial
    drop rate a freshly gated trained model's test-time outputs are scaled by `z_hat < 1` until
    training moves `log_alpha` (see `tfdynhp.gate`).

    Args:
        l0_lambda: strength `lambda` of the penalty. Defaults to `1.0`.
        drop_rate_init: initial probability `p` that a gate is closed; `log_alpha` starts at
            `N(log(1 - p) - log(p), 0.01)`. Defaults to `0.05` (test-time gates exactly 1).
        unit_cost: what one channel costs in the penalty (1 counts channels; the engine sets
            it to the parameters, MACs or memory a channel holds). Defaults to `1.0`.
        cost_resource: what `unit_cost` measures, one of `tfdynhp.costs.units.RESOURCES`
            (`"units"`, `"params"`, `"macs"`, `"memory"`); `tfdynhp.costs.units.update_gate_costs`
            recomputes the cost after surgery. Defaults to `"units"`.
        dataset_size: `N`, the number of training examples the penalty is divided by
            (Louizos' convention); `None` lets `tfdynhp.GatedModel.fit` set it from the
            training data at every `fit`. Defaults to `None`.
        sampling: `"example"` (one gate sample per example, Louizos) or `"batch"` (one sample
            per mini-batch, cheaper, noisier statistics). Defaults to `"example"`.
        temperature: `beta` of the Hard Concrete distribution. Defaults to `2/3`.
        limit_low: `gamma`, the lower stretch limit. Defaults to `-0.1`.
        limit_high: `zeta`, the upper stretch limit. Defaults to `1.1`.
        seed: seed of the initialisation and the gate noise. Defaults to `None`.
        gate_speed: how far `log_alpha` may move per epoch: the gates learn with their own
            Adam, of step `gate_speed / steps per epoch` (set by `tfdynhp.GatedModel.fit`), so
            they prune at the same pace in epochs whatever the model's optimizer, learning
            rate, data set size or batch size. Defaults to `1.0`.
        frozen: `True` fixes the gates at their test-time values in training too (no noise,
            no counting, no penalty, no gradient to `log_alpha`): the final fine-tuning phase
            of a target (see `freeze`). Defaults to `False`.
        folded: `True` (only with `frozen`) makes the layer an identity: its test-time values
            were folded into the weights of the layers reading its channels (see `fold` and
            `tfdynhp.model.fold_frozen_gates`). Defaults to `False`.

    Example:
    >>> gate = HardConcreteGate(l0_lambda=0.1)
    >>> gate(np.ones((2, 4, 4, 3), "float32")).shape
    (2, 4, 4, 3)
    """

    def __init__(
        self,
        l0_lambda=1.0,
        drop_rate_init=0.05,
        unit_cost=1.0,
        cost_resource="units",
        dataset_size=None,
        sampling="example",
        temperature=gate_math.BETA,
        limit_low=gate_math.GAMMA,
        limit_high=gate_math.ZETA,
        seed=None,
        gate_speed=1.0,
        frozen=False,
        folded=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_real("l0_lambda", l0_lambda)
        check_real("unit_cost", unit_cost)
        gate_math.initial_log_alpha(drop_rate_init)  # validates the range
        if dataset_size is not None:
            check_real("dataset_size", dataset_size, 1.0)
        if sampling not in SAMPLING:
            raise ValueError(f"`sampling` must be one of {SAMPLING}. Received: {sampling!r}")
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")
        if not (limit_low < 0.0 and limit_high > 1.0):
            raise ValueError(
                "The stretch limits must satisfy limit_low < 0 < 1 < limit_high so that gates "
                f"can be exactly 0 or 1. Received: limit_low={limit_low}, limit_high={limit_high}"
            )
        self.l0_lambda = float(l0_lambda)
        self.drop_rate_init = float(drop_rate_init)
        self.unit_cost = float(unit_cost)
        self.cost_resource = cost_resource
        self.dataset_size = None if dataset_size is None else int(dataset_size)
        # `None` means "the number of training examples, set by GatedModel.fit".
        self.auto_dataset_size = dataset_size is None
        self.sampling = sampling
        self.temperature = float(temperature)
        self.limit_low = float(limit_low)
        self.limit_high = float(limit_high)
        self.seed = seed
        self.frozen = bool(frozen)
        if folded and not frozen:
            raise ValueError("A folded gate must be frozen. Received: folded=True, frozen=False")
        self.folded = bool(folded)
        self.gate_speed = float(check_real("gate_speed", gate_speed))
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def build(self, input_shape):
        units = input_shape[-1]
        if units is None:
            raise ValueError("HardConcreteGate needs a known number of channels (last axis).")
        # The gates learn with their own Adam (see `apply_gradient`), not the model's
        # optimizer: every replica computes the same update, so the first replica's is kept.
        self.log_alpha = self.add_weight(
            name="log_alpha",
            shape=(units,),
            initializer=keras.initializers.RandomNormal(
                mean=gate_math.initial_log_alpha(self.drop_rate_init), stddev=0.01, seed=self.seed
            ),
            trainable=False,
            aggregation="only_first_replica",
        )
        self.gate_first_moment = self.add_weight(
            name="gate_first_moment", shape=(units,), initializer="zeros", trainable=False,
            aggregation="only_first_replica",
        )
        self.gate_second_moment = self.add_weight(
            name="gate_second_moment", shape=(units,), initializer="zeros", trainable=False,
            aggregation="only_first_replica",
        )
        self.gate_steps = self.add_weight(
            name="gate_steps", shape=(), initializer="zeros", trainable=False,
            aggregation="only_first_replica",
        )
        self.gate_learning_rate = self.add_weight(
            name="gate_learning_rate", shape=(),
            initializer=keras.initializers.Constant(self.gate_speed), trainable=False,
            aggregation="only_first_replica",
        )
        self.gate_active_count = self.add_weight(
            name="gate_active_count", shape=(units,), initializer="zeros", trainable=False,
            aggregation="sum",
        )
        self.gate_observations = self.add_weight(
            name="gate_observations", shape=(), initializer="zeros", trainable=False,
            aggregation="sum",
        )
        self.penalty_weight = self.add_weight(
            name="penalty_weight", shape=(),
            initializer=keras.initializers.Constant(self._penalty_weight_value()),
            trainable=False,
        )

    @property
    def units(self):
        """Current number of gated channels."""
        return int(self.log_alpha.shape[0])

    def set_steps_per_epoch(self, steps):
        """Sets the gates' Adam step to `gate_speed / steps`: whatever the data set and batch
        size, `log_alpha` moves by at most about `gate_speed` per epoch."""
        self.gate_learning_rate.assign(self.gate_speed / max(1, int(steps)))

    def apply_gradient(self, gradient, apply=True):
        """One Adam step of `log_alpha` along `gradient` (already summed over replicas).

        `tfdynhp.math.hard_concrete.adam_update`, in TensorFlow's fused Adam kernel (one op
        instead of about twenty): its `lr sqrt(1 - b2^t) / (1 - b1^t)` step with the epsilon
        rescaled by `sqrt(1 - b2^t)` is the same update.

        `apply` may be a boolean tensor: when it is False the step is skipped and nothing
        changes (selected, not branched on, so it also runs inside a distribution strategy's
        replica context; this path uses the reference update, not the fused kernel)."""
        if self.frozen:
            return
        if apply is not True:
            self._apply_selected(gradient, apply)
            return
        step = self.gate_steps.value + 1.0
        beta_1 = tf.constant(gate_math.ADAM_BETA_1, tf.float32)
        beta_2 = tf.constant(gate_math.ADAM_BETA_2, tf.float32)
        beta_2_power = tf.pow(beta_2, step)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(self.log_alpha), m=_handle(self.gate_first_moment),
            v=_handle(self.gate_second_moment), beta1_power=tf.pow(beta_1, step),
            beta2_power=beta_2_power, lr=self.gate_learning_rate.value, beta1=beta_1,
            beta2=beta_2, epsilon=gate_math.ADAM_EPSILON * tf.sqrt(1.0 - beta_2_power),
            grad=tf.cast(gradient, tf.float32),
        )
        self.gate_steps.assign(step)

    def _apply_selected(self, gradient, apply):
        """`apply_gradient` with `apply` a boolean tensor (the reference Adam, selected)."""
        step = self.gate_steps + 1.0
        delta, first, second = gate_math.adam_update(
            ops.cast(gradient, "float32"), self.gate_first_moment, self.gate_second_moment,
            step, self.gate_learning_rate,
        )
        delta = ops.where(apply, delta, ops.zeros_like(delta))
        first = ops.where(apply, first, self.gate_first_moment)
        second = ops.where(apply, second, self.gate_second_moment)
        step = ops.where(apply, step, self.gate_steps)
        self.gate_first_moment.assign(first)
        self.gate_second_moment.assign(second)
        self.gate_steps.assign(step)
        self.log_alpha.assign_add(delta)

    def _penalty_weight_value(self):
        if self.frozen:
            return 0.0
        return self.l0_lambda * self.unit_cost / (self.dataset_size or 1)

    def freeze(self):
        """Fixes the gates at their test-time values for the rest of training (retrace the
        train function afterwards: `model.make_train_function(force=True)`)."""
        self.frozen = True
        if self.built:
            self.penalty_weight.assign(0.0)

    def unfreeze(self):
        """Lets the gates train again (noise, counting, penalty and `log_alpha` updates), from
        where they were frozen: a new pruning run after a frozen one. Retrace the train
        function afterwards: `model.make_train_function(force=True)`."""
        self.frozen = False
        self.folded = False
        if self.built:
            self.penalty_weight.assign(self._penalty_weight_value())

    def fold(self):
        """Makes this frozen gate an identity, once the caller has folded its test-time values
        into the weights of the layers reading its channels (`W' = diag(z_hat) W`, as
        `tfdynhp.model.strip` does): the frozen phase then trains the stripped layers, at the
        speed of a plain model. `log_alpha` moves to where the test-time gates are exactly 1
        (so `test_time_gates()`, `strip()` and an `unfreeze()` see an open gate) and the
        gates' Adam state restarts. Retrace the train function afterwards.

        Raises:
            ValueError: if the gate is not frozen.
        """
        if not self.frozen:
            raise ValueError(f"Gate '{self.name}' is not frozen: freeze() it before fold().")
        self.log_alpha.assign(np.full(self.units, self.open_log_alpha(), "float32"))
        for moment in (self.gate_first_moment, self.gate_second_moment):
            moment.assign(np.zeros(self.units, "float32"))
        self.gate_steps.assign(0.0)
        self.folded = True

    def open_log_alpha(self):
        """A `log_alpha` whose test-time gate is exactly 1: the initial one when it is (the
        default `drop_rate_init`), else the smallest with a margin of 0.1."""
        # z_hat = 1 when sigmoid(log_alpha) >= (1 - gamma) / (zeta - gamma).
        smallest = math.log((1.0 - self.limit_low) / (self.limit_high - 1.0))
        return max(gate_math.initial_log_alpha(self.drop_rate_init), smallest + 0.1)

    def set_penalty(self, l0_lambda=None, unit_cost=None, dataset_size=None):
        """Changes `lambda`, the cost of a channel or `N` (takes effect at the next step,
        without retracing)."""
        if l0_lambda is not None:
            self.l0_lambda = float(check_real("l0_lambda", l0_lambda))
        if unit_cost is not None:
            self.unit_cost = float(check_real("unit_cost", unit_cost))
        if dataset_size is not None:
            self.dataset_size = int(check_real("dataset_size", dataset_size, 1.0))
        if self.built:
            self.penalty_weight.assign(self._penalty_weight_value())

    def _gate_kwargs(self):
        return {"gamma": self.limit_low, "zeta": self.limit_high}

    def call(self, inputs, training=False):
        if self.folded:
            return inputs  # its test-time values live in the next layer's weights
        if not training or self.frozen:
            log_alpha = ops.stop_gradient(self.log_alpha) if self.frozen else self.log_alpha
            z = gate_math.deterministic_gates(log_alpha, **self._gate_kwargs())
            return inputs * ops.cast(z, inputs.dtype)
        batch = ops.shape(inputs)[0]
        rank = len(inputs.shape)
        if self.sampling == "example":
            noise_shape = (batch,) + (1,) * (rank - 2) + (self.units,)
        else:
            noise_shape = (self.units,)
        noise = philox_uniform(noise_shape, self.seed_generator)
        # In float32 under a mixed policy too (Keras autocasts the variable to the compute
        # dtype inside `call`).
        log_alpha = ops.cast(self.log_alpha.value, "float32")
        outputs, stretched = _gate(inputs, log_alpha, noise, self.temperature, self.limit_low,
                                   self.limit_high)
        open_gates = ops.cast(ops.greater(stretched, 0.0), self.gate_active_count.dtype)
        examples = ops.cast(batch, "float32")
        if self.sampling == "example":
            self.gate_active_count.assign_add(
                ops.sum(ops.reshape(open_gates, (-1, self.units)), axis=0))
        else:
            self.gate_active_count.assign_add(open_gates * examples)
        self.gate_observations.assign_add(examples)
        return outputs

    def l0_penalty(self):
        """The expected-L0 penalty `penalty_weight * sum_j P(z_j > 0)` (a scalar tensor; a
        constant 0 for a frozen gate, whose penalty weight is 0)."""
        if self.frozen:
            return tf.constant(0.0)
        probabilities = gate_math.prob_nonzero(
            self.log_alpha, beta=self.temperature, **self._gate_kwargs()
        )
        return self.penalty_weight * ops.sum(probabilities)

    def test_time_gates(self):
        """The deterministic gates `z_hat` as a NumPy array."""
        return np.asarray(
            ops.convert_to_numpy(gate_math.deterministic_gates(self.log_alpha, **self._gate_kwargs()))
        )

    def activation_rates(self):
        """Fraction of the examples seen since the last reset in which each gate was open.

        NaN for every gate when no example was seen.
        """
        observations = float(ops.convert_to_numpy(self.gate_observations))
        counts = np.asarray(ops.convert_to_numpy(self.gate_active_count), np.float64)
        if observations <= 0:
            return np.full(counts.shape, np.nan)
        return counts / observations

    def reset_gate_statistics(self):
        """Zeroes the activation counters (DynHP does it at every epoch start)."""
        self.gate_active_count.assign(np.zeros(self.gate_active_count.shape, "float32"))
        self.gate_observations.assign(0.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = {
            "l0_lambda": self.l0_lambda,
            "drop_rate_init": self.drop_rate_init,
            "unit_cost": self.unit_cost,
            "cost_resource": self.cost_resource,
            "dataset_size": None if self.auto_dataset_size else self.dataset_size,
            "sampling": self.sampling,
            "temperature": self.temperature,
            "limit_low": self.limit_low,
            "limit_high": self.limit_high,
            "seed": self.seed,
            "gate_speed": self.gate_speed,
            "frozen": self.frozen,
            "folded": self.folded,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="tfdynhp")
class SelectFeatures(keras.layers.Layer):
    """Keeps the features of the last axis listed in `indices` (a gather), in that order.

    DynHP removes input features by narrowing this layer, so the model keeps taking its
    original input. `indices=None` keeps every feature (identity).

    Args:
        indices: sorted list of the feature indices to keep, or `None` for all.
    """

    def __init__(self, indices=None, **kwargs):
        super().__init__(**kwargs)
        if indices is not None:
            indices = [int(i) for i in indices]
            if not indices:
                raise ValueError("`indices` must keep at least one feature. Received: []")
            if min(indices) < 0 or any(b <= a for a, b in itertools.pairwise(indices)):
                raise ValueError(
                    "`indices` must be non-negative and strictly increasing. "
                    f"Received: indices={indices[:10]}{'...' if len(indices) > 10 else ''}"
                )
        self.indices = indices

    def build(self, input_shape):
        features = input_shape[-1]
        if self.indices is not None and features is not None and self.indices[-1] >= features:
            raise ValueError(
                f"SelectFeatures index {self.indices[-1]} is out of range for inputs with "
                f"{features} features."
            )
        self.input_features = features
        self.input_spec = keras.InputSpec(min_ndim=2, axes={-1: features})

    @property
    def output_units(self):
        return self.input_features if self.indices is None else len(self.indices)

    def call(self, inputs):
        if self.indices is None:
            return inputs
        return ops.take(inputs, np.asarray(self.indices, "int32"), axis=-1)

    def compute_output_shape(self, input_shape):
        if self.indices is None:
            return tuple(input_shape)
        return (*input_shape[:-1], len(self.indices))

    def get_config(self):
        return {**super().get_config(), "indices": self.indices}
