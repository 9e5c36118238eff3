"""Layers without per-channel state: activations, dropout and noise, pooling, padding and
resizing, reshapes, merges and concatenation. They carry channels through (or pin them) and
cost operations, not parameters."""

import math

import keras

from tfdynhp.layer_types import instructions
from tfdynhp.layer_types.registry import (
    BARRIER,
    CONCAT,
    FIXED_RANGE,
    FLATTEN,
    MERGE,
    PASS,
    REQUANTIZE,
    SAME_SCALE,
    UNSUPPORTED,
    CallCost,
    LayerEdit,
    Quantization,
    Role,
    fuses_activation,
    register,
)

_CHANNEL_MIXING_ACTIVATIONS = ("softmax", "log_softmax")
_HOMOGENEOUS_ACTIVATIONS = ("relu", "linear", "leaky_relu")
_FUSED_FUNCTIONS = (keras.activations.relu, keras.activations.relu6)
_HOMOGENEOUS = Role(PASS, homogeneous=True)


def _values(shape):
    return math.prod(int(d) for d in shape)


def _out_values(call):
    return sum(_values(s) for s in call.output_shapes)


# -- activations -------------------------------------------------------------------------------


def _activation_role(layer):
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name in _CHANNEL_MIXING_ACTIVATIONS:
        return Role(BARRIER, reason=f"'{name}' mixes the channels", passthrough=True)
    return Role(PASS, homogeneous=name in _HOMOGENEOUS_ACTIVATIONS)


def _homogeneous_relu(layer):
    # ReLU(max_value=6) clips: not homogeneous, though it maps 0 to 0.
    return Role(PASS, homogeneous=getattr(layer, "max_value", None) is None
                and not getattr(layer, "threshold", 0.0))


def _channel_mixing_role(layer):
    return Role(BARRIER, reason=f"{type(layer).__name__} mixes the channels", passthrough=True)


def _fusable(layer):
    """ReLU / ReLU6 (as a layer or an `Activation`): TFLite fuses it into its producer."""
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return (not config.get("negative_slope") and not config.get("threshold")
                and config.get("max_value") in (None, 6, 6.0))
    if isinstance(layer, keras.layers.Activation):
        return layer.activation in _FUSED_FUNCTIONS
    return False


def activation_cost(call):
    """One op per output value; 0 for a linear `Activation` (an identity) and for ReLU / ReLU6
    that TFLite fuses into a Dense, convolution or Add producing their input alone."""
    layer = call.layer
    if isinstance(layer, keras.layers.Activation) and layer.activation in (
            None, keras.activations.linear):
        return CallCost(folded=True)
    if (_fusable(layer) and call.producer is not None and fuses_activation(call.producer)
            and call.producer_linear and call.exclusive):
        return CallCost(folded=True, fused_activation=True)
    params = _values(layer.alpha.shape) if isinstance(layer, keras.layers.PReLU) else 0
    values = _out_values(call)
    softmax = isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation)
        and layer.activation is keras.activations.softmax)
    m4 = (instructions.estimate("softmax", outputs=values, inputs=values) if softmax
          else instructions.elementwise(values))
    return CallCost(params=params, ops=values, inference_params=params, int8_bytes=params,
                    m4_instructions=m4)


# int8 outputs TFLite fixes: scale 1/256 and zero point -128 for LOGISTIC and SOFTMAX, scale
# 1/128 and zero point 0 for TANH.
FIXED_OUTPUT_RANGES = {
    "softmax": (0.0, 255.0 / 256.0),
    "sigmoid": (0.0, 255.0 / 256.0),
    "tanh": (-1.0, 127.0 / 128.0),
}


def activation_quantization(name):
    """How TFLite quantizes a standalone activation `name` (`"relu"`, `"softmax"`, ...): a ReLU
    gets its own scale; a ReLU6 keeps its input's (TFLite Micro's RELU6 clamps the int8 values
    without rescaling), clamped on that grid; softmax, sigmoid and tanh have fixed ranges;
    linear is an identity. A ReLU or ReLU6 right after a layer that `fuses_activation` is
    fused into it instead."""
    if name == "linear":
        return Quantization(SAME_SCALE, activation=name)
    if name == "relu":
        return Quantization(REQUANTIZE, activation=name)
    if name == "relu6":
        return Quantization(SAME_SCALE, resnap="nearest", activation=name)
    if name in FIXED_OUTPUT_RANGES:
        return Quantization(FIXED_RANGE, output_range=FIXED_OUTPUT_RANGES[name], activation=name)
    return Quantization(UNSUPPORTED, activation=name,
                        reason=f"activation '{name}' is not simulated in int8 (relu, relu6, "
                        "softmax, sigmoid, tanh and linear are)")


def _activation_quantization(layer):
    return activation_quantization(getattr(layer.activation, "__name__", str(layer.activation)))


def _relu_quantization(layer):
    config = layer.get_config()
    if config.get("negative_slope") or config.get("threshold"):
        return Quantization(UNSUPPORTED, reason="a leaky or thresholded ReLU is not simulated "
                            "in int8")
    max_value = config.get("max_value")
    if max_value is None:
        return activation_quantization("relu")
    if float(max_value) == 6.0:
        return activation_quantization("relu6")
    return Quantization(UNSUPPORTED, reason=f"ReLU(max_value={max_value}) has no int8 kernel "
                        "(ReLU and ReLU6 do)")


def _softmax_quantization(layer):
    axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
    if axis not in (-1, (-1,)):
        return Quantization(UNSUPPORTED, reason=f"softmax over axis {layer.axis} (TFLite's is "
                            "over the last axis)")
    return activation_quantization("softmax")


register(keras.layers.Activation, role=_activation_role, cost=activation_cost, relevance="pass",
         quantization=_activation_quantization)
register(keras.layers.ReLU, role=_homogeneous_relu, cost=activation_cost, relevance="pass",
         quantization=_relu_quantization)
register(keras.layers.LeakyReLU, role=_HOMOGENEOUS, cost=activation_cost, relevance="pass")
register(keras.layers.ELU, role=PASS, cost=activation_cost, relevance="pass")
register(keras.layers.Softmax, role=_channel_mixing_role, cost=activation_cost,
         relevance="pass", quantization=_softmax_quantization)
register(keras.layers.PReLU, role=Role(BARRIER, reason="PReLU holds a slope per position"),
         cost=activation_cost)


# -- identities at inference -------------------------------------------------------------------


def identity_cost(call):
    """Nothing at inference: the output shares the input's buffer."""
    return CallCost(folded=True)


for _identity, _role in (
    (keras.layers.Dropout, _HOMOGENEOUS),
    (keras.layers.SpatialDropout1D, _HOMOGENEOUS),
    (keras.layers.SpatialDropout2D, _HOMOGENEOUS),
    (keras.layers.SpatialDropout3D, _HOMOGENEOUS),
    (keras.layers.GaussianDropout, _HOMOGENEOUS),
    (keras.layers.GaussianNoise, PASS),
    (keras.layers.AlphaDropout, PASS),
):
    # Identities at inference: the int8 tensor passes unchanged.
    register(_identity, role=_role, cost=identity_cost, relevance="pass",
             quantization=SAME_SCALE)
register(keras.layers.ActivityRegularization, role=_HOMOGENEOUS, cost=identity_cost,
         quantization=SAME_SCALE)
register(keras.layers.Identity, role=_HOMOGENEOUS, cost=identity_cost, quantization=SAME_SCALE)


# -- pooling -----------------------------------------------------------------------------------


def pooling_cost(call):
    """One op per window element per output value; a global pooling one per input value."""
    from tfdynhp.math import counting

    out_shape = call.output_shapes[0]
    channels = call.channels(out_shape)
    ops = counting.pooling_ops(call.spatial(out_shape), tuple(call.layer.pool_size), channels)
    kind = "max_pool" if "Max" in type(call.layer).__name__ else "average_pool"
    # CMSIS-NN's pooling reads every window element: `ops` values for the input term.
    m4 = instructions.estimate(kind, outputs=_values(out_shape), inputs=ops)
    return CallCost(ops=ops, m4_instructions=m4)


def global_pooling_cost(call):
    values = _values(call.input_shapes[0])
    average = "Average" in type(call.layer).__name__
    m4 = (instructions.estimate("mean", outputs=_out_values(call), inputs=values) if average
          else instructions.elementwise(values))
    return CallCost(ops=values, m4_instructions=m4)


# int8: MAX_POOL_2D moves values (same scale); AVERAGE_POOL_2D keeps its input's scale and
# rounds the integer average half away from zero; MEAN (global average) requantizes.
_AVERAGE = Quantization(SAME_SCALE, resnap="average")
for _pool, _quantization in (
    (keras.layers.MaxPooling1D, SAME_SCALE), (keras.layers.MaxPooling2D, SAME_SCALE),
    (keras.layers.MaxPooling3D, None),
    (keras.layers.AveragePooling1D, _AVERAGE), (keras.layers.AveragePooling2D, _AVERAGE),
    (keras.layers.AveragePooling3D, None),
):
    register(_pool, role=_HOMOGENEOUS, cost=pooling_cost, quantization=_quantization)
for _pool, _quantization in (
    (keras.layers.GlobalMaxPooling1D, None), (keras.layers.GlobalMaxPooling2D, None),
    (keras.layers.GlobalMaxPooling3D, None),
    (keras.layers.GlobalAveragePooling1D, REQUANTIZE),
    (keras.layers.GlobalAveragePooling2D, REQUANTIZE),
    (keras.layers.GlobalAveragePooling3D, None),
):
    register(_pool, role=_HOMOGENEOUS, cost=global_pooling_cost, quantization=_quantization)


# -- moving values without arithmetic ----------------------------------------------------------


def shape_only_cost(call):
    """No arithmetic: values are moved or copied (a new buffer at inference)."""
    return CallCost()


# Pad, crop or repeat positions along the spatial axes: channels untouched. int8: PAD pads
# with the zero point (same scale).
for _resize in (
    keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D, keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D, keras.layers.Cropping2D, keras.layers.Cropping3D,
    keras.layers.UpSampling1D, keras.layers.UpSampling2D, keras.layers.UpSampling3D,
):
    register(_resize, role=_HOMOGENEOUS, cost=shape_only_cost,
             quantization=SAME_SCALE if _resize in (keras.layers.ZeroPadding1D,
                                                    keras.layers.ZeroPadding2D) else None)


def _reshape_role(layer):
    target = tuple(layer.target_shape)
    in_shape = tuple(layer.input.shape[1:]) if layer._inbound_nodes else None
    if len(target) == 1:
        return Role(FLATTEN)
    if in_shape is not None and target[-1] == in_shape[-1] and target[-1] != -1:
        return _HOMOGENEOUS
    return Role(BARRIER, reason=f"reshape to {target} moves the channel axis")


def narrow_reshape(layer, in_keep, out_keep):
    if out_keep is None:
        return None
    target = list(layer.target_shape)
    if len(target) == 1:
        target = [-1] if target[0] == -1 else [len(out_keep)]
    else:
        target[-1] = len(out_keep)
    return LayerEdit(layer, attributes={"target_shape": tuple(target)})


def _concatenate_role(layer):
    rank = len(layer.output.shape) if layer._inbound_nodes else None
    if layer.axis == -1 or (rank is not None and layer.axis == rank - 1):
        return Role(CONCAT)
    return Role(MERGE)


register(keras.layers.Reshape, role=_reshape_role, narrow=narrow_reshape, cost=shape_only_cost,
         quantization=SAME_SCALE)
register(keras.layers.Flatten, role=FLATTEN, cost=shape_only_cost, quantization=SAME_SCALE)
# int8: CONCATENATION's inputs all have its output's scale.
register(keras.layers.Concatenate, role=_concatenate_role, cost=shape_only_cost,
         quantization=Quantization(REQUANTIZE, unified_scale=True))
register(keras.layers.Permute, role=Role(BARRIER, reason="Permute moves the channel axis"),
         cost=shape_only_cost)
register(keras.layers.RepeatVector, role=Role(BARRIER, reason="RepeatVector adds an axis"),
         cost=shape_only_cost)


# -- merges ------------------------------------------------------------------------------------


def merge_cost(call):
    """`n - 1` ops per output value for `n` inputs (`Average`: `n`)."""
    inputs = len(call.input_shapes)
    per_value = inputs if isinstance(call.layer, keras.layers.Average) else inputs - 1
    values = _values(call.output_shapes[0])
    # TFLite's ADD takes two inputs: `n - 1` of them.
    m4 = ((inputs - 1) * instructions.estimate("add", outputs=values, inputs=values)
          if isinstance(call.layer, keras.layers.Add) else instructions.elementwise(
              per_value * values))
    return CallCost(ops=per_value * values, m4_instructions=m4)


for _merge in (keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
               keras.layers.Average, keras.layers.Maximum, keras.layers.Minimum):
    # int8: TFLite's ADD takes two inputs; a sum of n is n - 1 ADDs, each stored in int8.
    register(_merge, role=MERGE, cost=merge_cost, fuses_activation=_merge is keras.layers.Add,
             quantization=Quantization(REQUANTIZE, pairwise=True)
             if _merge is keras.layers.Add else None)


def dot_cost(call):
    """`Dot`: every output value is a sum over the contracted axis of the first input."""
    layer = call.layer
    axes = layer.axes if isinstance(layer.axes, (list, tuple)) else (layer.axes, layer.axes)
    first = call.input_shapes[0]
    axis = axes[0] if axes[0] < 0 else axes[0] - 1  # in the per-example shape
    return CallCost(macs=_values(call.output_shapes[0]) * int(first[axis]))


register(keras.layers.Dot, role=Role(BARRIER, reason="Dot contracts the channel axis"),
         cost=dot_cost)


# -- Rescaling -----------------------------------------------------------------------------------


def _scalar(value):
    import numpy as np

    return np.size(value) == 1


def _rescaling_role(layer):
    if _scalar(layer.scale) and _scalar(layer.offset):
        return Role(PASS, homogeneous=not layer.offset)
    return Role(BARRIER, reason="Rescaling with one scale or offset per channel (surgery does "
                "not slice them)")


def rescaling_cost(call):
    """`x * scale + offset`: one op per value, two with an offset."""
    offset = call.layer.offset
    per_value = 1 + (not _scalar(offset) or bool(offset))
    return CallCost(ops=per_value * _out_values(call))


register(keras.layers.Rescaling, role=_rescaling_role, cost=rescaling_cost, relevance="pass")
