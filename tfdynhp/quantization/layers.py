"""The two layers of a quantization-aware model.

- `ActivationQuantizer`: fake-quantizes a tensor to per-tensor asymmetric int8 with a range that
  is tracked (exponential moving average of the batch min/max, as TF-MOT does), learned
  (trainable min/max, gradients of TensorFlow's FakeQuant op), or fixed (softmax, sigmoid,
  tanh outputs, whose int8 range TFLite fixes; and every range of an exported model). Called
  again with `track=False` it puts another tensor on the same grid (a ReLU6), and with
  `integer="encode"` / `"decode"` it brackets an average computed on the int8 values
  (TFLite's AVERAGE_POOL_2D: same scale, integer average rounded half away from zero).
- `QuantizedLayer`: a layer whose layer type quantizes a kernel per channel
  (`tfdynhp.layer_types`, `quantization="kernel"`: Dense, Conv1D, Conv2D, DepthwiseConv2D, or a
  user's registered layer), with the BatchNormalization that follows it folded in (moving
  statistics, as the converter folds it) and its kernel fake-quantized per output channel,
  symmetric, narrow range `[-127, 127]`; a ReLU or ReLU6 activation stays fused, as the
  converter fuses it. The layer itself computes, with its kernel and bias replaced by the
  quantized, folded values.

Both pass gradients straight through the rounding (TensorFlow's FakeQuant gradients: identity
inside the range, zero outside).
"""

import keras
import numpy as np
from keras import ops

from tfdynhp.layer_types import KERNEL, quantization_of
from tfdynhp.layer_types.kernel_layers import FUSED_ACTIVATIONS
from tfdynhp.quantization import arithmetic

# What a layer quantized per channel may compute after its bias: TFLite's fused activations.
FUSABLE_ACTIVATIONS = ("linear", *(f.__name__ for f in FUSED_ACTIVATIONS))
INTEGER_MODES = (None, "encode", "decode")
RANGE_MODES = ("ema", "learned", "fixed")
# TF-MOT's initial activation range, used until the first training batch (or calibration).
INITIAL_RANGE = (-6.0, 6.0)
# Smallest activation range: keeps a constant tensor (e.g. a dead ReLU) quantizable.
MIN_ACTIVATION_RANGE = 1e-6


def activation_name(activation):
    """The registered name of a Keras activation function (`"relu"`, `"linear"`, ...)."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation
    return keras.activations.serialize(activation)


def usable_range(range_min, range_max):
    """The range actually quantized to: widened to contain 0, at least `MIN_ACTIVATION_RANGE`
    wide (works on tensors and NumPy values)."""
    lo = ops.minimum(range_min, 0.0)
    hi = ops.maximum(ops.maximum(range_max, 0.0), lo + MIN_ACTIVATION_RANGE)
    return lo, hi


def round_half_away_from_zero(x):
    """TFLite's rounding (`TfLiteRound`, and its integer average) on tensors."""
    return ops.sign(x) * ops.floor(ops.abs(x) + 0.5)


def grid(lo, hi):
    """`(scale, zero_point)` of int8 range `[lo, hi]` (already containing 0) as tensors, nudged
    as `arithmetic.nudge` (zero point in `[-128, 127]`)."""
    scale = (hi - lo) / float(arithmetic.INT8_MAX - arithmetic.INT8_MIN)
    zero_point = ops.clip(round_half_away_from_zero(-lo / scale), 0.0, 255.0)
    return scale, zero_point + float(arithmetic.INT8_MIN)


class RangeRecorder:
    """Min and max over every batch seen (a plain object: Keras does not track it)."""

    def __init__(self):
        self.min, self.max, self.batches = None, None, 0

    def add(self, lo, hi):
        self.min = lo if self.batches == 0 else min(self.min, lo)
        self.max = hi if self.batches == 0 else max(self.max, hi)
        self.batches += 1


@keras.saving.register_keras_serializable("tfdynhp")
class ActivationQuantizer(keras.layers.Layer):
    """Fake-quantizes its input to per-tensor asymmetric int8, as TFLite will quantize it.

    The range is widened to contain 0 and nudged so that 0 is exactly representable
    (`tfdynhp.quantization.arithmetic.nudge`); the output is on the int8 grid of that range.

    Args:
        mode: How the range is set. `"ema"`: tracked during training as an exponential moving
            average of each batch's min and max (the first batch sets it). `"learned"`: trainable
            min and max, started from the first batch (or calibration). `"fixed"`: `fixed_range`.
            Defaults to `"ema"`.
        ema_decay: Decay of the moving average (`"ema"`). Defaults to `0.99`.
        fixed_range: `(min, max)` for `mode="fixed"`.

    Call arguments:
        inputs: The tensor to quantize.
        training: Track (`"ema"`) or start (`"learned"`) the range from this batch.
        track: `False` quantizes with the current range without tracking it: for a second
            tensor that must share this one's scale (a standalone ReLU6). Defaults to `True`.
        integer: `"encode"` returns the int8 values `x / scale + zero_point` of a tensor on
            this grid, `"decode"` rounds values half away from zero to int8 and maps them back
            (`(q - zero_point) * scale`): around an average of int8 values they give TFLite's
            integer average (AVERAGE_POOL_2D). Neither tracks. Defaults to `None`.

    Until a range is set by training or `tfdynhp.quantization.calibrate`, inference quantizes
    to TF-MOT's initial range `[-6, 6]`.
    """

    def __init__(self, mode="ema", ema_decay=0.99, fixed_range=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in RANGE_MODES:
            raise ValueError(f"`mode` must be one of {RANGE_MODES}. Received: mode={mode!r}")
        if not 0.0 < float(ema_decay) < 1.0:
            raise ValueError(f"`ema_decay` must be in (0, 1). Received: ema_decay={ema_decay!r}")
        if mode == "fixed":
            if fixed_range is None or len(fixed_range) != 2:
                raise ValueError(
                    "`mode='fixed'` needs `fixed_range=(min, max)`. "
                    f"Received: fixed_range={fixed_range!r}"
                )
            lo, hi = (float(v) for v in fixed_range)
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise ValueError(
                    f"`fixed_range` must be finite with max > min. Received: {fixed_range!r}"
                )
            fixed_range = (lo, hi)
        self.mode = mode
        self.ema_decay = float(ema_decay)
        self.fixed_range = fixed_range
        self._calibration = None

    def build(self, input_shape):
        if self.mode == "fixed":
            return
        trainable = self.mode == "learned"
        self.range_min = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(INITIAL_RANGE[0]),
            trainable=trainable,
            aggregation="mean",
            name="range_min",
        )
        self.range_max = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(INITIAL_RANGE[1]),
            trainable=trainable,
            aggregation="mean",
            name="range_max",
        )
        self.initialized = self.add_weight(
            shape=(),
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="initialized",
        )

    def call(self, inputs, training=None, track=True, integer=None):
        if integer not in INTEGER_MODES:
            raise ValueError(f"`integer` must be one of {INTEGER_MODES}. Received: {integer!r}")
        track = track and integer is None
        if self._calibration is not None:
            if track:
                self._record(inputs)
            return inputs
        if self.mode == "fixed":
            lo, hi = self.fixed_range
        else:
            lo, hi = self.range_min, self.range_max
            if training and track:
                lo, hi = self._update(inputs, lo, hi)
        lo, hi = usable_range(lo, hi)
        if integer is not None:
            return self._integer(inputs, lo, hi, integer)
        return keras.quantizers.fake_quant_with_min_max_vars(inputs, lo, hi, num_bits=8)

    def _integer(self, inputs, lo, hi, integer):
        """int8 values of `inputs` (`"encode"`), or `inputs` rounded as int8 values and mapped
        back (`"decode"`); straight-through gradients."""
        scale, zero_point = grid(ops.stop_gradient(lo), ops.stop_gradient(hi))
        if integer == "encode":
            values = ops.divide(inputs, scale) + zero_point
            return values + ops.stop_gradient(ops.round(values) - values)
        rounded = ops.clip(round_half_away_from_zero(inputs), arithmetic.INT8_MIN,
                           arithmetic.INT8_MAX)
        values = ops.multiply(inputs - zero_point, scale)
        return values + ops.stop_gradient(ops.multiply(rounded - zero_point, scale) - values)

    def _update(self, inputs, lo, hi):
        # As TF-MOT: each batch's range is widened to contain 0 before it is averaged.
        batch_lo = ops.stop_gradient(ops.minimum(ops.cast(ops.min(inputs), "float32"), 0.0))
        batch_hi = ops.stop_gradient(ops.maximum(ops.cast(ops.max(inputs), "float32"), 0.0))
        started = ops.greater(self.initialized, 0.0)
        if self.mode == "ema":
            decay = self.ema_decay
            new_lo = ops.where(started, decay * lo + (1.0 - decay) * batch_lo, batch_lo)
            new_hi = ops.where(started, decay * hi + (1.0 - decay) * batch_hi, batch_hi)
            self.range_min.assign(new_lo)
            self.range_max.assign(new_hi)
            self.initialized.assign(1.0)
            return new_lo, new_hi
        # learned: the first batch sets the range, then gradients move it.
        new_lo = ops.where(started, lo, batch_lo)
        new_hi = ops.where(started, hi, batch_hi)
        self.range_min.assign(ops.stop_gradient(new_lo))
        self.range_max.assign(ops.stop_gradient(new_hi))
        self.initialized.assign(1.0)
        return new_lo, new_hi

    def _record(self, inputs):
        x = ops.convert_to_numpy(inputs)
        self._calibration.add(float(np.min(x)), float(np.max(x)))

    @property
    def is_range_set(self):
        """Whether the range comes from data (training or calibration) or is fixed."""
        if self.mode == "fixed":
            return True
        return bool(ops.convert_to_numpy(self.initialized) > 0)

    def quantized_range(self):
        """The `(min, max)` quantized to (widened to contain 0), as Python floats."""
        if self.mode == "fixed":
            lo, hi = self.fixed_range
        else:
            lo, hi = (float(ops.convert_to_numpy(v)) for v in (self.range_min, self.range_max))
        lo, hi = usable_range(np.float32(lo), np.float32(hi))
        return float(ops.convert_to_numpy(lo)), float(ops.convert_to_numpy(hi))

    def quantization_params(self):
        """TFLite's int8 `(scale, zero_point)` for this tensor."""
        return arithmetic.activation_params(*self.quantized_range())

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            mode=self.mode,
            ema_decay=self.ema_decay,
            fixed_range=None if self.fixed_range is None else list(self.fixed_range),
        )
        return config


def kernel_quantization(layer):
    """The layer type's `Quantization` of a layer `QuantizedLayer` can wrap (kind `"kernel"`);
    raises a `TypeError` naming the layer otherwise."""
    spec = quantization_of(layer)
    if spec is None or spec.kind != KERNEL:
        why = f" ({spec.reason})" if spec is not None and spec.reason else ""
        raise TypeError(
            "QuantizedLayer wraps layers whose layer type quantizes a kernel per channel "
            "(`quantization='kernel'` in tfdynhp.layer_types: Dense, Conv1D, Conv2D, "
            f"DepthwiseConv2D, or a registered layer). Received: {type(layer).__name__} "
            f"'{layer.name}'{why}."
        )
    if getattr(layer, "lora_enabled", False):
        raise ValueError(f"Layer '{layer.name}' has LoRA enabled; merge it first.")
    return spec


def check_foldable(batch_norm, layer, rank):
    """Raises a `ValueError` if `batch_norm` cannot be folded into `layer`, whose output has
    `rank` dimensions (batch included)."""
    axis = batch_norm.axis
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if axis not in (-1, rank - 1):
        raise ValueError(
            f"BatchNormalization '{batch_norm.name}' normalizes axis {batch_norm.axis}; only "
            f"the channel (last) axis folds into '{layer.name}'."
        )
    if activation_name(getattr(layer, "activation", None)) != "linear":
        raise ValueError(
            f"BatchNormalization '{batch_norm.name}' follows '{layer.name}', which has an "
            "activation, so it cannot be folded into it (the converter cannot either). Put the "
            "activation after the BatchNormalization."
        )
    spec = kernel_quantization(layer)
    if getattr(layer, spec.bias, None) is None and "use_bias" not in layer.get_config():
        raise ValueError(
            f"BatchNormalization '{batch_norm.name}' folds into '{layer.name}' as a bias, but "
            f"'{layer.name}' has no `{spec.bias}` and no `use_bias` option. Give it a bias."
        )


@keras.saving.register_keras_serializable("tfdynhp")
class QuantizedLayer(keras.layers.Layer):
    """A layer quantized per output channel (its layer type says `quantization="kernel"`:
    Dense, Conv1D, Conv2D, DepthwiseConv2D, or a registered layer), with an optional
    BatchNormalization folded in, whose kernel is fake-quantized per output channel to
    symmetric int8 `[-127, 127]`.

    The forward pass is what the int8 TFLite model computes (up to integer rounding): the
    layer, called with `kernel' = fq(kernel * inv)` and `bias' = bias * inv + beta - mean * inv`
    (`inv = gamma / sqrt(moving_variance + epsilon)`), then `activation`. The
    BatchNormalization statistics are frozen (its moving mean and variance are used in
    training too, so training and the exported model fold the same way); `gamma`, `beta`,
    the kernel and the bias train. The weight range of each channel is its current `max|w|`
    (no gradient through the range).

    Args:
        layer: The layer (or its `keras.layers.serialize` config). Its own activation must be
            `"linear"`, `"relu"` or `"relu6"` (only `"linear"` with a BatchNormalization or
            a fused `activation`).
        batch_norm: A BatchNormalization on the layer's output channels (or its config), or
            `None`.
        activation: The activation fused after the folded bias: `"linear"`, `"relu"` or
            `"relu6"`. Defaults to `"linear"`.
    """

    def __init__(self, layer, batch_norm=None, activation="linear", **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.layers.deserialize(layer)
        if isinstance(batch_norm, dict):
            batch_norm = keras.layers.deserialize(batch_norm)
        self.spec = kernel_quantization(layer)
        activation = activation_name(activation)
        own = activation_name(getattr(layer, "activation", None))
        for name in (activation, own):
            if name not in FUSABLE_ACTIVATIONS:
                raise ValueError(
                    f"Layer '{layer.name}' would compute activation '{name}', which the "
                    f"converter does not fuse. Expected one of {FUSABLE_ACTIVATIONS}; put other "
                    "activations in their own layer (`quantize_aware` does this)."
                )
        if own != "linear" and (batch_norm is not None or activation != "linear"):
            raise ValueError(
                f"Layer '{layer.name}' has activation '{own}': nothing can be folded or fused "
                "after it. Give it a linear activation."
            )
        self.layer = layer
        self.batch_norm = batch_norm
        self.activation_name = activation
        self.activation = keras.activations.get(activation)
        self._calibration = None

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        if self.batch_norm is not None and not self.batch_norm.built:
            self.batch_norm.build(self.layer.compute_output_shape(input_shape))
        self.kernel_variable()  # fails early on a layer without its kernel

    def kernel_variable(self):
        variable = getattr(self.layer, self.spec.kernel, None)
        if not isinstance(variable, keras.Variable):
            raise TypeError(
                f"Layer '{self.layer.name}' has no variable `{self.spec.kernel}` (its layer "
                f"type's quantization says the kernel is there). Received: {variable!r}"
            )
        return variable

    def bias_variable(self):
        variable = getattr(self.layer, self.spec.bias, None)
        return variable if isinstance(variable, keras.Variable) else None

    def folded_weights(self):
        """`(kernel, bias)` with the BatchNormalization folded in (float, not quantized)."""
        kernel = ops.convert_to_tensor(self.kernel_variable())
        channel_shape = tuple(kernel.shape[-self.spec.channel_axes:])
        channels = int(np.prod(channel_shape))
        bias = self.bias_variable()
        bias = ops.zeros((channels,), kernel.dtype) if bias is None else (
            ops.convert_to_tensor(bias))
        bn = self.batch_norm
        if bn is None:
            return kernel, bias
        inv = ops.rsqrt(ops.add(bn.moving_variance, bn.epsilon))
        if bn.scale:
            inv = ops.multiply(inv, bn.gamma)
        beta = bn.beta if bn.center else ops.zeros((channels,), kernel.dtype)
        kernel = ops.multiply(kernel, ops.reshape(inv, channel_shape))
        bias = ops.add(ops.multiply(bias, inv), ops.subtract(beta, ops.multiply(bn.moving_mean, inv)))
        return kernel, bias

    def quantized_kernel(self, kernel):
        """Per-channel symmetric narrow-range fake quantization of a (folded) kernel."""
        shape = tuple(kernel.shape)
        axes = self.spec.channel_axes
        flat = ops.reshape(kernel, shape[:-axes] + (int(np.prod(shape[-axes:])),)) if (
            axes > 1) else kernel
        reduce = tuple(range(len(flat.shape) - 1))
        amax = ops.stop_gradient(ops.max(ops.abs(flat), axis=reduce))
        amax = ops.maximum(amax, arithmetic.MIN_WEIGHT_RANGE)
        quantized = keras.quantizers.fake_quant_with_min_max_vars(
            flat, -amax, amax, num_bits=8, narrow_range=True, axis=-1
        )
        return ops.reshape(quantized, shape) if axes > 1 else quantized

    def export_weights(self):
        """NumPy `(kernel, bias)` of the exported layer: folded, kernel on its int8 grid."""
        kernel, bias = self.folded_weights()
        return (
            ops.convert_to_numpy(self.quantized_kernel(kernel)),
            ops.convert_to_numpy(bias),
        )

    def call(self, inputs):
        kernel, bias = self.folded_weights()
        if self._calibration is None:
            kernel = self.quantized_kernel(kernel)
        mapping = [(self.kernel_variable(), kernel)]
        bias_variable = self.bias_variable()
        if bias_variable is not None:
            mapping.append((bias_variable, bias))
        # The layer computes as it always does, reading the quantized, folded values.
        with keras.StatelessScope(state_mapping=mapping):
            outputs = self.layer(inputs)
        if bias_variable is None and self.batch_norm is not None:
            outputs = ops.add(outputs, bias)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            layer=keras.layers.serialize(self.layer),
            batch_norm=None
            if self.batch_norm is None
            else keras.layers.serialize(self.batch_norm),
            activation=self.activation_name,
        )
        return config
