"""Normalization layers: BatchNormalization (per channel, folded into the layer before it by
TFLite), and the normalizations that mix channels (barriers)."""

import math

import keras

from tfdynhp.layer_types.registry import (
    BARRIER,
    FOLDED,
    PER_UNIT,
    CallCost,
    LayerEdit,
    Role,
    folds_batch_norm,
    register,
)

_STATISTICS = ("gamma", "beta", "moving_mean", "moving_variance")


def _batch_normalization_axis(layer):
    if isinstance(layer.axis, (list, tuple)):
        return layer.axis[0] if len(layer.axis) == 1 else None
    return layer.axis


def _batch_normalization_role(layer):
    axis = _batch_normalization_axis(layer)
    rank = len(layer.input.shape) if layer._inbound_nodes else None
    if axis == -1 or (rank is not None and axis == rank - 1):
        return Role(PER_UNIT)
    return Role(BARRIER, reason=f"normalises axis {layer.axis}, not the channel axis")


def narrow_batch_normalization(layer, in_keep, out_keep):
    if in_keep is None:
        return None
    edit = LayerEdit(layer)
    for attribute in _STATISTICS:
        if getattr(layer, attribute, None) is not None:
            edit.slice(attribute, 0, in_keep)
    return edit


def batch_normalization_cost(call):
    """At inference `x * scale + offset` per channel. Directly after a layer TFLite folds it
    into (linear activation, output read by this layer alone, on the channel axis): 0 MACs, 0
    inference parameters (or a new bias per channel if the layer had none), 0 int8 bytes.
    Otherwise one MAC per value and `2 * channels` parameters."""
    layer = call.layer
    shape = call.input_shapes[0]
    axis = _batch_normalization_axis(layer)
    if axis is None:  # several axes: never folded
        count = layer.count_params()
        return CallCost(params=count, macs=math.prod(int(d) for d in shape),
                        inference_params=count, int8_bytes=count)
    axis = (axis if axis >= 0 else axis + len(shape) + 1) - 1  # in the per-example shape
    channels = int(shape[axis])
    stored = sum(getattr(layer, a, None) is not None for a in _STATISTICS) * channels
    producer = call.producer
    producer_channels = (0 if getattr(producer, "data_format", None) == "channels_first"
                         else len(shape) - 1)
    foldable = (
        producer is not None
        and folds_batch_norm(producer)
        and call.producer_linear
        and call.exclusive
        and axis == producer_channels
    )
    if foldable:
        has_bias = getattr(producer, "use_bias", True) and getattr(producer, "bias", None) is not None
        new_bias = 0 if has_bias else channels
        return CallCost(params=stored, inference_params=new_bias, int8_bytes=4 * new_bias,
                        folded=True)
    return CallCost(params=stored, macs=math.prod(int(d) for d in shape),
                    inference_params=2 * channels, int8_bytes=2 * channels)


register(
    keras.layers.BatchNormalization,
    role=_batch_normalization_role,
    narrow=narrow_batch_normalization,
    cost=batch_normalization_cost,
    # int8: folded into the layer before it (one that `folds_batch_norm`).
    quantization=FOLDED,
)


def _channel_mixing_role(layer):
    return Role(BARRIER, reason=f"{type(layer).__name__} mixes the channels", passthrough=True)


# Per value: the mean, the centring, the variance and the division (LayerNormalization,
# GroupNormalization); the sum of squares and the division (RMS, unit normalization).
STATISTICS_OPS = {keras.layers.LayerNormalization: 4, keras.layers.GroupNormalization: 4,
                  keras.layers.RMSNormalization: 2, keras.layers.UnitNormalization: 2}


def channel_normalization_cost(call):
    """Statistics over the channels (`STATISTICS_OPS` ops per value), then the learned scale
    (one MAC per value) and offset; the layer's parameters exactly as stored."""
    layer = call.layer
    values = sum(math.prod(int(d) for d in s) for s in call.output_shapes)
    per_value = next(n for c, n in STATISTICS_OPS.items() if isinstance(layer, c))
    params = layer.count_params() if layer.built else 0
    scaled = bool(params) and getattr(layer, "scale", True) is not False
    return CallCost(params=params, macs=values if scaled else 0, ops=per_value * values,
                    inference_params=params, int8_bytes=params)


for _normalization in STATISTICS_OPS:
    register(_normalization, role=_channel_mixing_role, cost=channel_normalization_cost)


def input_normalization_cost(call):
    """`Normalization` (preprocessing): `(x - mean) / sqrt(variance)`, two ops per value; it
    stores the mean, the variance and the count of the data it was adapted to."""
    layer = call.layer
    values = sum(math.prod(int(d) for d in s) for s in call.output_shapes)
    params = layer.count_params() if layer.built else 0
    return CallCost(params=params, ops=2 * values, inference_params=params, int8_bytes=params)


register(
    keras.layers.Normalization,
    role=Role(BARRIER, reason="Normalization holds a mean and variance per channel that "
              "surgery does not slice"),
    cost=input_normalization_cost,
)
