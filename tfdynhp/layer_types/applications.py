"""Layers that `keras.applications` models define for themselves: ConvNeXt's `LayerScale`
(one learned scale per channel) and Inception-ResNet-v2's `CustomScaleLayer`
(`x + scale * r`, a residual merge)."""

import math

from keras.src.applications.convnext import LayerScale
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

from tfdynhp.layer_types.registry import MERGE, PER_UNIT, CallCost, LayerEdit, register


def _values(shape):
    return math.prod(int(d) for d in shape)


def narrow_layer_scale(layer, in_keep, out_keep):
    if in_keep is None:
        return None
    edit = LayerEdit(layer)
    edit.slice("gamma", 0, in_keep)
    edit.attributes["projection_dim"] = len(in_keep)
    return edit


def layer_scale_cost(call):
    """One scale per channel, one multiplication per value."""
    channels = int(call.input_shapes[0][-1])
    values = _values(call.output_shapes[0])
    return CallCost(params=channels, macs=values, inference_params=channels,
                    int8_bytes=channels)


def custom_scale_cost(call):
    """`x + scale * r`: two operations per output value."""
    return CallCost(ops=2 * _values(call.output_shapes[0]))


register(LayerScale, role=PER_UNIT, narrow=narrow_layer_scale, cost=layer_scale_cost)
register(CustomScaleLayer, role=MERGE, cost=custom_scale_cost)
