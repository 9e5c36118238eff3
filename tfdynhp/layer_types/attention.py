"""Attention layers and `EinsumDense`: priced, and barriers for surgery (their kernels have
head axes surgery does not slice, and attention mixes positions of every channel).

Costs are computed from the shapes the layers were built with (a barrier's channels never
narrow): the projections' kernels times the query or key positions, plus the scores and the
weighted sum for every pair of a query and an attended key position
(`tfdynhp.math.counting.attention_macs`); one op per score (the softmax).
"""

import math

import keras

from tfdynhp.layer_types.registry import BARRIER, CallCost, Role, own_params, register
from tfdynhp.math import counting


def _values(shape):
    return math.prod(int(d) for d in shape)


def _known(shape):
    return tuple(0 if d is None else int(d) for d in shape)


def _stored(call, macs, ops):
    """A barrier's `CallCost`: its parameters exactly as it stores them, deployed as stored."""
    params = own_params(call.layer)
    return CallCost(params=params, macs=int(macs), ops=int(ops), inference_params=params,
                    int8_bytes=params)


def _attended_positions(layer, key_shape):
    """Key positions one query position attends to: the key's positions along the attention
    axes (all of them by default)."""
    axes = getattr(layer, "_attention_axes", None)
    if axes is None:
        return _values(key_shape[1:-1])
    return math.prod(key_shape[a] for a in axes)


def attention_cost(call):
    """`MultiHeadAttention` and `GroupQueryAttention`."""
    layer = call.layer
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    if "query_shape" not in shapes or "value_shape" not in shapes:
        return None
    query = _known(shapes["query_shape"])
    key = _known(shapes.get("key_shape") or shapes["value_shape"])
    query_side = [layer._query_dense, layer._output_dense]
    if getattr(layer, "_gate_dense", None) is not None:
        query_side.append(layer._gate_dense)
    key_side = [layer._key_dense, layer._value_dense]
    query_kernel = tuple(layer._query_dense.kernel.shape)
    value_kernel = tuple(layer._value_dense.kernel.shape)
    # Kernels end with (heads, key_dim) and (heads, value_dim).
    score_width = (query_kernel[-2] * query_kernel[-1]
                   + query_kernel[-2] * value_kernel[-1])
    query_positions = _values(query[1:-1])
    attended = _attended_positions(layer, key)
    macs = counting.attention_macs(
        query_positions, _values(key[1:-1]),
        (sum(_values(d.kernel.shape) for d in query_side),
         sum(_values(d.kernel.shape) for d in key_side)),
        score_width, attended,
    )
    return _stored(call, macs, ops=query_positions * attended * query_kernel[-2])


def dot_product_attention_cost(call):
    """`Attention` and `AdditiveAttention`: `inputs = [query, value(, key)]`; the scores cost
    `d` per pair of a query and a value position, the weighted sum `d_value`."""
    if len(call.input_shapes) < 2:
        return None
    query, value = call.input_shapes[0], call.input_shapes[1]
    pairs = _values(query[:-1]) * _values(value[:-1])
    macs = pairs * (int(query[-1]) + int(value[-1]))
    additive = isinstance(call.layer, keras.layers.AdditiveAttention)
    return _stored(call, macs, ops=pairs * (2 * int(query[-1]) + 1 if additive else 1))


def einsum_dense_cost(call):
    layer = call.layer
    macs = counting.einsum_macs(layer.equation, (1, *call.input_shapes[0]),
                                tuple(layer.kernel.shape))
    return _stored(call, macs, ops=0)


_ATTENTION = Role(BARRIER, reason="attention mixes positions and its kernels have head axes "
                  "(not pruned)")
register(keras.layers.MultiHeadAttention, role=_ATTENTION, cost=attention_cost)
register(keras.layers.GroupQueryAttention, role=_ATTENTION, cost=attention_cost)
register(keras.layers.Attention, role=_ATTENTION, cost=dot_product_attention_cost)
register(keras.layers.AdditiveAttention, role=_ATTENTION, cost=dot_product_attention_cost)
register(keras.layers.EinsumDense,
         role=Role(BARRIER, reason="EinsumDense kernels are not sliced by surgery"),
         cost=einsum_dense_cost)
