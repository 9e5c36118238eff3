"""The int8 arithmetic of TFLite quantization, as pure NumPy functions (float32 throughout).

These are the reference the QAT layers and tests are checked against:

- activations: per-tensor asymmetric int8. A range `[lo, hi]` is first widened to contain 0,
  then "nudged" as TensorFlow's `FakeQuantWithMinMaxVars` kernel and the TFLite converter do:
  `scale = (hi - lo) / 255`, the zero point is `round(-lo / scale)` (clamped to `[0, 255]`,
  then shifted by -128 for int8), and the representable range becomes
  `[(0 - zp) * scale, (255 - zp) * scale]`;
- weights: per-channel symmetric int8 on the narrow range `[-127, 127]`, `scale = max|w| / 127`,
  zero point 0, as the converter quantizes Conv2D, DepthwiseConv2D and FullyConnected kernels;
- BatchNormalization folding into the preceding layer, as the converter folds
  `x * inv + (beta - mean * inv)` with `inv = gamma / sqrt(var + eps)`.

Rounding: TensorFlow's fake quant rounds half up (`floor(v + 0.5)`), TFLite's runtime
quantization rounds half away from zero; both are here (`fake_quant`, `quantize`) because they
differ only on exact ties.
"""

import numpy as np

INT8_MIN = -128
INT8_MAX = 127
NARROW_MAX = 127  # weights use [-127, 127]
_STEPS = 255  # 2**8 - 1
_F32 = np.float32


def _f32(x):
    return np.asarray(x, dtype=_F32)


def widen_to_zero(range_min, range_max):
    """`(min(lo, 0), max(hi, 0))`: a range TFLite can quantize (real 0 must be representable)."""
    return _f32(np.minimum(_f32(range_min), _F32(0))), _f32(np.maximum(_f32(range_max), _F32(0)))


def nudge(range_min, range_max, narrow_range=False):
    """Nudges a float range as TensorFlow's FakeQuant kernels do (`fake_quant_ops_functor.h`).

    Args:
        range_min: Lower end (<= 0), scalar or per-channel array.
        range_max: Upper end (>= 0, > `range_min`).
        narrow_range: Quantize to `[1, 255]` instead of `[0, 255]` (the `[-127, 127]` of weights).

    Returns:
        `(nudged_min, nudged_max, scale, zero_point)` with `zero_point` in the unsigned
        `[0, 255]` convention of the TF op (subtract 128 for TFLite's int8 zero point).

    Raises:
        ValueError: If a range is empty (`range_max <= range_min`).
    """
    lo, hi = _f32(range_min), _f32(range_max)
    if np.any(hi <= lo):
        raise ValueError(
            f"A quantization range must have max > min. Received: min={lo}, max={hi}. Track "
            "or calibrate the range on data that is not constant."
        )
    quant_min = _F32(1 if narrow_range else 0)
    quant_max = _F32(_STEPS)
    scale = _f32((hi - lo) / (quant_max - quant_min))
    zero_point_from_min = _f32(quant_min - lo / scale)
    rounded = np.where(
        zero_point_from_min >= 0,
        np.floor(zero_point_from_min + _F32(0.5)),
        np.ceil(zero_point_from_min - _F32(0.5)),
    )  # std::round: half away from zero
    zero_point = np.clip(rounded, quant_min, quant_max).astype(np.int32)
    nudged_min = _f32((quant_min - zero_point) * scale)
    nudged_max = _f32((quant_max - zero_point) * scale)
    return nudged_min, nudged_max, scale, zero_point


def activation_params(range_min, range_max):
    """TFLite's int8 `(scale, zero_point)` of an activation tensor with range `[min, max]`.

    The range is widened to contain 0 and nudged (see `nudge`); the zero point is in
    `[-128, 127]`.

    Example:

    >>> activation_params(-1.28, 1.27)  # scale 2.55 / 255, zero point 0
    (0.009999999776482582, 0)
    """
    lo, hi = widen_to_zero(range_min, range_max)
    _, _, scale, zero_point = nudge(lo, hi)
    return float(scale), int(zero_point) + INT8_MIN


def fake_quant(x, range_min, range_max, narrow_range=False):
    """`FakeQuantWithMinMaxVars` (per-tensor, or per-channel on the last axis), bit for bit.

    As TensorFlow's kernel (`fake_quant_ops_functor.h`): with `inv = steps / (max - min)`
    computed separately from `scale`, `zero = floor(-nudged_min * inv + 0.5)`, the output is
    `(floor((clamp(x) - nudged_min) * inv - zero + 0.5)) * scale`: an integer number of steps
    (rounded half up) times the scale, so real 0 stays exactly 0.
    """
    x = _f32(x)
    lo, hi = _f32(range_min), _f32(range_max)
    nudged_min, nudged_max, scale, _ = nudge(lo, hi, narrow_range)
    steps = _F32(_STEPS - (1 if narrow_range else 0))
    inv_scale = _f32(steps / _f32(hi - lo))
    zero = np.floor(_f32(-nudged_min * inv_scale) + _F32(0.5))
    clamped = np.minimum(np.maximum(x, nudged_min), nudged_max)
    shifted = _f32(clamped - nudged_min)
    return _f32(np.floor(_f32(_f32(shifted * inv_scale) - zero) + _F32(0.5)) * scale)


def weight_scales(kernel, channel_axis=-1):
    """Per-channel symmetric scales `max|w| / 127` over every axis but `channel_axis`.

    A channel of zeros gets the scale of its largest value, 0; callers that divide by the
    scale must treat it (`fake_quant_weights` does).
    """
    kernel = _f32(kernel)
    axes = tuple(a for a in range(kernel.ndim) if a != channel_axis % kernel.ndim)
    return _f32(np.max(np.abs(kernel), axis=axes) / _F32(NARROW_MAX))


def fake_quant_weights(kernel, channel_axis=-1):
    """Per-channel symmetric narrow-range fake quantization of a kernel (TF's per-channel op
    with `min = -max|w|`, `max = max|w|`, `narrow_range=True`); all-zero channels stay 0."""
    kernel = _f32(kernel)
    moved = np.moveaxis(kernel, channel_axis, -1)
    amax = np.max(np.abs(moved.reshape(-1, moved.shape[-1])), axis=0)
    amax = np.maximum(amax, _F32(MIN_WEIGHT_RANGE))
    out = fake_quant(moved, -amax, amax, narrow_range=True)
    return np.moveaxis(out, -1, channel_axis)


# Smallest per-channel weight range: keeps a channel of zeros (or near zeros) finite.
MIN_WEIGHT_RANGE = 1e-8


def quantize(x, scale, zero_point):
    """TFLite's runtime quantization: `clamp(round(x / scale) + zero_point, -128, 127)`, rounding
    half away from zero; returns int8."""
    v = _f32(x) / _F32(scale)
    q = np.sign(v) * np.floor(np.abs(v) + _F32(0.5)) + zero_point
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize(q, scale, zero_point):
    """`scale * (q - zero_point)` in float32."""
    return _f32(_F32(scale) * (np.asarray(q, np.float32) - _F32(zero_point)))


def fold_batch_norm(kernel, bias, gamma, beta, mean, variance, epsilon, depthwise=False):
    """Folds an inference-mode BatchNormalization into the preceding layer's kernel and bias.

    `inv = gamma / sqrt(variance + epsilon)`; `kernel' = kernel * inv` on the output channels;
    `bias' = bias * inv + (beta - mean * inv)`: the order of operations of
    `tf.nn.batch_normalization` the converter folds.

    Args:
        kernel: Dense `(in, out)`, Conv `(..., in, out)` or depthwise `(..., in, multiplier)`.
        bias: `(channels,)` or `None` (zeros).
        gamma, beta: `(channels,)` or `None` (ones, zeros: BN without `scale` / `center`).
        mean, variance: Moving statistics, `(channels,)`.
        epsilon: BN epsilon.
        depthwise: `kernel` is depthwise; its channels are `in * multiplier` (in-major).

    Returns:
        `(kernel', bias')` as float32 arrays.
    """
    kernel = _f32(kernel)
    channels = int(np.prod(kernel.shape[-2:])) if depthwise else kernel.shape[-1]
    gamma = np.ones(channels, _F32) if gamma is None else _f32(gamma)
    beta = np.zeros(channels, _F32) if beta is None else _f32(beta)
    bias = np.zeros(channels, _F32) if bias is None else _f32(bias)
    inv = _f32(_F32(1) / np.sqrt(_f32(variance) + _F32(epsilon)))
    inv = _f32(inv * gamma)
    scale = inv.reshape(kernel.shape[-2:]) if depthwise else inv
    folded_kernel = _f32(kernel * scale)
    folded_bias = _f32(bias * inv + _f32(beta - _f32(mean) * inv))
    return folded_kernel, folded_bias
