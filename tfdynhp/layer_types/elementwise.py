"""Layers without per-channel state: activations, dropout and noise, pooling, padding and
resizing, reshapes, merges and concatenation. They carry channels through (or pin them) and
cost operations, not parameters."""

import math

import keras

from tfdynhp.layer_types.registry import (
    BARRIER,
    CONCAT,
    FLATTEN,
    MERGE,
    PASS,
    CallCost,
    LayerEdit,
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
    return CallCost(params=params, ops=_out_values(call), inference_params=params,
                    int8_bytes=params)


register(keras.layers.Activation, role=_activation_role, cost=activation_cost, relevance="pass")
register(keras.layers.ReLU, role=_homogeneous_relu, cost=activation_cost, relevance="pass")
register(keras.layers.LeakyReLU, role=_HOMOGENEOUS, cost=activation_cost, relevance="pass")
register(keras.layers.ELU, role=PASS, cost=activation_cost, relevance="pass")
register(keras.layers.Softmax, role=_channel_mixing_role, cost=activation_cost,
         relevance="pass")
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
    register(_identity, role=_role, cost=identity_cost, relevance="pass")
register(keras.layers.ActivityRegularization, role=_HOMOGENEOUS, cost=identity_cost)
register(keras.layers.Identity, role=_HOMOGENEOUS, cost=identity_cost)


# -- pooling -----------------------------------------------------------------------------------


def pooling_cost(call):
    """One op per window element per output value; a global pooling one per input value."""
    from tfdynhp.math import counting

    out_shape = call.output_shapes[0]
    channels = call.channels(out_shape)
    return CallCost(ops=counting.pooling_ops(call.spatial(out_shape),
                                             tuple(call.layer.pool_size), channels))


def global_pooling_cost(call):
    return CallCost(ops=_values(call.input_shapes[0]))


for _pool in (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
              keras.layers.AveragePooling1D, keras.layers.AveragePooling2D,
              keras.layers.AveragePooling3D):
    register(_pool, role=_HOMOGENEOUS, cost=pooling_cost)
for _pool in (keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D,
              keras.layers.GlobalMaxPooling3D, keras.layers.GlobalAveragePooling1D,
              keras.layers.GlobalAveragePooling2D, keras.layers.GlobalAveragePooling3D):
    register(_pool, role=_HOMOGENEOUS, cost=global_pooling_cost)


# -- moving values without arithmetic ----------------------------------------------------------


def shape_only_cost(call):
    """No arithmetic: values are moved or copied (a new buffer at inference)."""
    return CallCost()


# Pad, crop or repeat positions along the spatial axes: channels untouched.
for _resize in (
    keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D, keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D, keras.layers.Cropping2D, keras.layers.Cropping3D,
    keras.layers.UpSampling1D, keras.layers.UpSampling2D, keras.layers.UpSampling3D,
):
    register(_resize, role=_HOMOGENEOUS, cost=shape_only_cost)


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


register(keras.layers.Reshape, role=_reshape_role, narrow=narrow_reshape, cost=shape_only_cost)
register(keras.layers.Flatten, role=FLATTEN, cost=shape_only_cost)
register(keras.layers.Concatenate, role=_concatenate_role, cost=shape_only_cost)
register(keras.layers.Permute, role=Role(BARRIER, reason="Permute moves the channel axis"),
         cost=shape_only_cost)
register(keras.layers.RepeatVector, role=Role(BARRIER, reason="RepeatVector adds an axis"),
         cost=shape_only_cost)


# -- merges ------------------------------------------------------------------------------------


def merge_cost(call):
    """`n - 1` ops per output value for `n` inputs (`Average`: `n`)."""
    inputs = len(call.input_shapes)
    per_value = inputs if isinstance(call.layer, keras.layers.Average) else inputs - 1
    return CallCost(ops=per_value * _values(call.output_shapes[0]))


for _merge in (keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
               keras.layers.Average, keras.layers.Maximum, keras.layers.Minimum):
    register(_merge, role=MERGE, cost=merge_cost, fuses_activation=_merge is keras.layers.Add)


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
