"""Keras layers of tfdynhp: `GatedDense` (Hard Concrete L0 gates on input units) and
`SelectFeatures` (a gather of the surviving input features)."""

import itertools

import keras
import numpy as np
from keras import ops

from tfdynhp import gates as gate_math
from tfdynhp.taps import report_dense_tap
from tfdynhp.validation import check_integer


@keras.saving.register_keras_serializable(package="tfdynhp")
class GatedDense(keras.layers.Layer):
    """Dense layer with one Hard Concrete L0 gate per input unit (Louizos et al., 2018).

    In training every example samples its own gates `z ~ HardConcrete(log_alpha)` and the layer
    computes `activation((x * z) W + b)`; at inference the gates are the deterministic
    `z_hat = clip(sigmoid(log_alpha) (zeta - gamma) + gamma, 0, 1)`. The expected L0 norm of the
    gated weights, `lambda sum_j P(z_j > 0) * units / N`, is added with `add_loss`. While
    training, the layer counts for each gate in how many examples it was open (`z > 0`): DynHP
    removes the input units whose activation rate falls below a threshold (see
    `tfdynhp.callbacks.DynHPCallback`).

    Args:
        units: number of output units.
        activation: activation function, as for `keras.layers.Dense`. Defaults to `None`.
        use_bias: whether the layer has a bias. Defaults to `True`.
        l0_lambda: strength `lambda` of the expected-L0 penalty. Defaults to `0.1`.
        drop_rate_init: initial probability `p` that a gate is closed; `log_alpha` starts at
            `N(log(1 - p) - log(p), 0.01)`. Defaults to `0.5` (Louizos' hidden layers).
        weight_by_fan_out: count the weights a gate switches off (`units` per gate) rather than
            gates in the penalty. Defaults to `True`.
        dataset_size: training-set size `N` the penalty is divided by (Louizos' reference
            code); `None` does not divide. Defaults to `None`.
        temperature: `beta` of the Hard Concrete distribution. Defaults to `2/3`.
        limit_low: `gamma`, the lower stretch limit. Defaults to `-0.1`.
        limit_high: `zeta`, the upper stretch limit. Defaults to `1.1`.
        seed: seed of the gate noise. Defaults to `None`.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        kernel_constraint, bias_constraint: as for `keras.layers.Dense`.

    Example:
    >>> layer = GatedDense(4, activation="relu", l0_lambda=0.01)
    >>> layer(np.ones((2, 3), "float32")).shape
    (2, 4)
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        l0_lambda=0.1,
        drop_rate_init=0.5,
        weight_by_fan_out=True,
        dataset_size=None,
        temperature=gate_math.BETA,
        limit_low=gate_math.GAMMA,
        limit_high=gate_math.ZETA,
        seed=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_integer("units", units, 1)
        if not l0_lambda >= 0:
            raise ValueError(f"`l0_lambda` must be >= 0. Received: l0_lambda={l0_lambda}")
        gate_math.initial_log_alpha(drop_rate_init)  # validates the range
        if dataset_size is not None:
            check_integer("dataset_size", dataset_size, 1)
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")
        if not (limit_low < 0.0 and limit_high > 1.0):
            raise ValueError(
                "The stretch limits must satisfy limit_low < 0 < 1 < limit_high so that gates "
                f"can be exactly 0 or 1. Received: limit_low={limit_low}, limit_high={limit_high}"
            )
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.l0_lambda = float(l0_lambda)
        self.drop_rate_init = float(drop_rate_init)
        self.weight_by_fan_out = weight_by_fan_out
        self.dataset_size = dataset_size
        self.temperature = float(temperature)
        self.limit_low = float(limit_low)
        self.limit_high = float(limit_high)
        self.seed = seed
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.input_spec = keras.InputSpec(min_ndim=2, max_ndim=2)

    def build(self, input_shape):
        input_units = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_units, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.log_alpha = self.add_weight(
            name="log_alpha",
            shape=(input_units,),
            initializer=keras.initializers.RandomNormal(
                mean=gate_math.initial_log_alpha(self.drop_rate_init), stddev=0.01, seed=self.seed
            ),
        )
        self.gate_active_count = self.add_weight(
            name="gate_active_count",
            shape=(input_units,),
            initializer="zeros",
            trainable=False,
            aggregation="sum",
        )
        self.gate_observations = self.add_weight(
            name="gate_observations",
            shape=(),
            initializer="zeros",
            trainable=False,
            aggregation="sum",
        )
        self.input_spec = keras.InputSpec(ndim=2, axes={-1: input_units})

    @property
    def input_units(self):
        """Current number of input units (gates)."""
        return int(self.kernel.shape[0])

    def _gate_kwargs(self):
        return {"gamma": self.limit_low, "zeta": self.limit_high}

    def call(self, inputs, training=False):
        if training:
            noise = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator)
            z = gate_math.sample_gates(
                self.log_alpha, noise, beta=self.temperature, **self._gate_kwargs()
            )
            active = ops.cast(ops.greater(z, 0.0), self.gate_active_count.dtype)
            self.gate_active_count.assign_add(ops.sum(active, axis=0))
            self.gate_observations.assign_add(ops.cast(ops.shape(inputs)[0], "float32"))
        else:
            z = gate_math.deterministic_gates(self.log_alpha, **self._gate_kwargs())
        gated = inputs * ops.cast(z, inputs.dtype)
        outputs = ops.matmul(gated, self.kernel)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if training:
            report_dense_tap(self, gated, outputs)
        self.add_loss(self.l0_penalty())
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def l0_penalty(self):
        """The layer's expected-L0 penalty (a scalar tensor)."""
        return gate_math.expected_l0_penalty(
            self.log_alpha,
            self.l0_lambda,
            weights_per_gate=self.units if self.weight_by_fan_out else 1,
            dataset_size=self.dataset_size,
            beta=self.temperature,
            **self._gate_kwargs(),
        )

    def test_time_gates(self):
        """The deterministic gates `z_hat` as a NumPy array."""
        return np.asarray(
            keras.ops.convert_to_numpy(
                gate_math.deterministic_gates(self.log_alpha, **self._gate_kwargs())
            )
        )

    def activation_rates(self):
        """Fraction of the examples seen since the last reset in which each gate was open.

        Returns NaN for every gate when no example was seen.
        """
        observations = float(keras.ops.convert_to_numpy(self.gate_observations))
        counts = np.asarray(keras.ops.convert_to_numpy(self.gate_active_count), np.float64)
        if observations <= 0:
            return np.full(counts.shape, np.nan)
        return counts / observations

    def reset_gate_statistics(self):
        """Zeroes the per-gate activation counters (DynHP does it at every epoch start)."""
        self.gate_active_count.assign(np.zeros(self.gate_active_count.shape, "float32"))
        self.gate_observations.assign(0.0)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "l0_lambda": self.l0_lambda,
            "drop_rate_init": self.drop_rate_init,
            "weight_by_fan_out": self.weight_by_fan_out,
            "dataset_size": self.dataset_size,
            "temperature": self.temperature,
            "limit_low": self.limit_low,
            "limit_high": self.limit_high,
            "seed": self.seed,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
        }
        return {**base_config, **config}


@keras.saving.register_keras_serializable(package="tfdynhp")
class SelectFeatures(keras.layers.Layer):
    """Keeps the features of the last axis listed in `indices` (a gather), in that order.

    DynHP removes input features of the first gated layer by narrowing this layer, so the model
    keeps taking its original input. `indices=None` keeps every feature (identity).

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
        self.input_spec = keras.InputSpec(min_ndim=2, axes={-1: features})

    @property
    def output_units(self):
        return None if self.indices is None else len(self.indices)

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
