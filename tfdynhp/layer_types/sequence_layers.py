"""Embeddings, recurrent layers (LSTM, GRU, SimpleRNN, ConvLSTM, any `RNN` of those cells,
`Bidirectional`) and wrappers (`TimeDistributed`, `SpectralNormalization`).

An `Embedding` creates its output channels (the embedding dimensions) from indices: it is a
`MIXING` layer whose table loses columns when its channels are pruned. Recurrent layers are
barriers (their gates' kernels are not sliced by surgery), priced with
`tfdynhp.math.counting.recurrent_macs`: per step and position, the input times the kernel and
the state times the recurrent kernel, plus the elementwise work of the cell per output unit
(`STEP_OPS`). Wrappers cost what the layer they wrap costs (per time step for
`TimeDistributed`) and store exactly what they hold.
"""

import math

import keras
from keras.src.layers.rnn.conv_lstm import ConvLSTMCell

from tfdynhp.layer_types.kernel_layers import narrow_kernel_layer
from tfdynhp.layer_types.registry import (
    BARRIER,
    MIXING,
    CallCost,
    KernelView,
    Role,
    cost_of,
    own_params,
    register,
)
from tfdynhp.math import counting

# Elementwise operations per output unit and step, beside the matrix products: an LSTM cell
# computes 4 gate activations, tanh(c), f*c + i*g (3) and o*tanh(c) (1); a GRU cell 2 sigmoid
# gates, 1 tanh, r*h and z*h + (1 - z)*h~ (4); a simple RNN its activation.
STEP_OPS = {
    keras.layers.LSTMCell: 9,
    keras.layers.GRUCell: 8,
    keras.layers.SimpleRNNCell: 1,
}
CONV_LSTM_STEP_OPS = 9


def _values(shape):
    return math.prod(int(d) for d in shape)


# -- Embedding -----------------------------------------------------------------------------------


def _embedding_role(layer):
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        return Role(BARRIER, reason="quantized or LoRA layer")
    return Role(MIXING)


def embedding_cost(call):
    """A table lookup: no arithmetic; the table is stored (1 byte per value in int8)."""
    out_shape = call.output_shapes[0]
    params = int(call.layer.input_dim) * int(out_shape[-1])
    return CallCost(params=params, inference_params=params, int8_bytes=params)


register(
    keras.layers.Embedding,
    role=_embedding_role,
    narrow=narrow_kernel_layer("_embeddings", "output_dim", in_axis=0, out_axis=1),
    cost=embedding_cost,
    kernels=(KernelView("embeddings", out_axis=1),),
)


# -- recurrent layers ----------------------------------------------------------------------------


def _cells(cell):
    return list(getattr(cell, "cells", [cell]))


def recurrent_cost(call):
    """Any `RNN` whose cells are LSTM, GRU, SimpleRNN or ConvLSTM cells (None for others)."""
    layer = call.layer
    cells = _cells(getattr(layer, "cell", None))
    in_shape = call.input_shapes[0]
    steps = int(in_shape[0]) if len(in_shape) else 0
    macs = ops = 0
    for cell in cells:
        kernel = getattr(cell, "kernel", None)
        recurrent = getattr(cell, "recurrent_kernel", None)
        if kernel is None or recurrent is None:
            return None
        if isinstance(cell, ConvLSTMCell):
            # The output's positions: the axes between the (optional) time axis and channels.
            out_shape = call.output_shapes[0]
            positions = _values(out_shape[len(out_shape) - 1 - cell.rank:-1])
            units, per_unit = int(cell.filters), CONV_LSTM_STEP_OPS
        else:
            positions = 1
            units = int(getattr(cell, "units", 0))
            per_unit = next((n for c, n in STEP_OPS.items() if isinstance(cell, c)), None)
            if per_unit is None:
                return None
        macs += counting.recurrent_macs(steps, positions, _values(kernel.shape),
                                        _values(recurrent.shape))
        ops += steps * positions * units * per_unit
    params = own_params(layer)
    return CallCost(params=params, macs=macs, ops=ops, inference_params=params,
                    int8_bytes=params)


def _inner_cost(call, layer, input_shapes, output_shapes):
    inner, counted = cost_of(type(call)(layer=layer, input_shapes=input_shapes,
                                        output_shapes=output_shapes))
    return inner if counted else None


def bidirectional_cost(call):
    """The forward and the backward layer on the same input."""
    layer = call.layer
    halves = [_inner_cost(call, half, call.input_shapes, call.output_shapes)
              for half in (layer.forward_layer, layer.backward_layer)]
    if any(h is None for h in halves):
        return None
    params = own_params(layer)
    return CallCost(params=params, macs=sum(h.macs for h in halves),
                    ops=sum(h.ops for h in halves), inference_params=params,
                    int8_bytes=params)


def time_distributed_cost(call):
    """The wrapped layer once per time step."""
    steps = int(call.input_shapes[0][0])
    inner = _inner_cost(call, call.layer.layer, tuple(s[1:] for s in call.input_shapes),
                        tuple(s[1:] for s in call.output_shapes))
    if inner is None:
        return None
    params = own_params(call.layer)
    return CallCost(params=params, macs=steps * inner.macs, ops=steps * inner.ops,
                    inference_params=params, int8_bytes=params)


def wrapper_cost(call):
    """What the wrapped layer costs (`SpectralNormalization` normalises the kernel in
    training only); the parameters the wrapper stores (its own included)."""
    inner = _inner_cost(call, call.layer.layer, call.input_shapes, call.output_shapes)
    if inner is None:
        return None
    params = own_params(call.layer)
    return CallCost(params=params, macs=inner.macs, ops=inner.ops,
                    inference_params=inner.inference_params, int8_bytes=inner.int8_bytes)


_RECURRENT = Role(BARRIER, reason="recurrent layer (its gates' kernels are not pruned)")
register(keras.layers.RNN, role=_RECURRENT, cost=recurrent_cost)
register(keras.layers.Bidirectional, role=_RECURRENT, cost=bidirectional_cost)
register(keras.layers.TimeDistributed,
         role=Role(BARRIER, reason="TimeDistributed wraps a layer surgery does not reach"),
         cost=time_distributed_cost)
register(keras.layers.Wrapper,
         role=Role(BARRIER, reason="a wrapper layer (surgery does not reach the wrapped one)"),
         cost=wrapper_cost)
