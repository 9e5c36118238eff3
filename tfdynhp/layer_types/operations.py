"""Operation nodes: the `keras.ops` calls of a functional graph (`x + 3.0`, `x * y`,
`keras.ops.relu6(x)`, ...), and `Lambda` layers.

A `keras.ops` call on a symbolic tensor adds a node whose operation is an instance of a
`keras.src.ops` class (`x + 3.0` is an `Add` with the operands `x` and `3.0`); Keras'
MobileNetV3 writes its hard-sigmoid that way (`ReLU(6)(x + 3.0) * (1 / 6)`). Their role
depends on the operands of the call:

- elementwise operations whose other operands are constants that do not vary along the channel
  axis (a scalar, or an array whose last axis has size 1) treat channels independently: `PASS`
  (`homogeneous` for `x * c`, `x / c`, ReLU, ...);
- elementwise operations of several tensors couple their channels one to one, as the `Add` or
  `Multiply` layer does: `MERGE`;
- a constant with one value per channel (shape `(..., C)`) would have to be sliced with the
  channels: the channels are pinned, with the reason;
- `concatenate` on the channel axis is a `CONCAT`; softmax over the channel axis and reductions
  over it are barriers; reductions over other axes pass channels;
- any other operation (transpose, matmul, reshape, ...) has no entry and pins the channels on
  both sides, naming the operation.

Operations hold no weights: `gate()` and `strip()` copy them (`registry.copy_operation`).

A `Lambda` layer runs an arbitrary Python function: tfdynhp cannot tell what it does to the
channels, so it pins them (write the function with `keras.ops` calls, or as a registered
layer, to prune through it). Keras refuses to load a `Lambda` back from its config
(`safe_mode`), so `gate()` and `strip()` rebuild it from its function instead.
"""

import math

import keras
import numpy as np
from keras.src.ops import core as ops_core
from keras.src.ops import math as ops_math
from keras.src.ops import nn as ops_nn
from keras.src.ops import numpy as ops_numpy

from tfdynhp.layer_types.registry import (
    BARRIER,
    CONCAT,
    MERGE,
    PASS,
    CallCost,
    Role,
    register,
)


def _values(shape):
    return math.prod(int(d) for d in shape)


def call_node(operation):
    """The node of `operation`'s (first) call."""
    nodes = getattr(operation, "_inbound_nodes", [])
    return nodes[0] if nodes else None


def _constants(node):
    return [a for a in node.arguments._flat_arguments
            if a is not None and not isinstance(a, keras.KerasTensor)]


def _channel_varying(constant):
    shape = tuple(getattr(constant, "shape", None) or np.shape(constant))
    return bool(shape) and shape[-1] not in (1, None)


def _operand_role(homogeneous):
    """The role of an elementwise operation from its operands (see the module docstring);
    `homogeneous(operation, node)` says whether the one-tensor form commutes with a gate."""

    def role(operation):
        node = call_node(operation)
        if node is None:
            return Role(PASS)
        varying = [c for c in _constants(node) if _channel_varying(c)]
        if varying:
            shape = tuple(np.shape(varying[0]))
            return Role(BARRIER, reason=f"{type(operation).__name__} with a constant of shape "
                        f"{shape}, one value per channel (surgery does not slice constants)")
        tensors = node.arguments.keras_tensors
        if len(tensors) > 1:
            return Role(MERGE)
        return Role(PASS, homogeneous=bool(homogeneous(operation, node)))

    return role


def _never(operation, node):
    return False


def _always(operation, node):
    return True


def _tensor_first(operation, node):
    """`x / c` is linear in `x`; `c / x` is not."""
    first = node.arguments._flat_arguments[0] if node.arguments._flat_arguments else None
    return isinstance(first, keras.KerasTensor)


def elementwise_cost(call):
    """One op per output value."""
    return CallCost(ops=sum(_values(s) for s in call.output_shapes))


def no_arithmetic_cost(call):
    """No arithmetic (a cast, a copy, a gradient stop): the values are moved at most."""
    return CallCost()


# Operations of one or more tensors and constants, elementwise; the homogeneous ones commute
# with scaling a channel by z >= 0.
_LINEAR_IN_TENSOR = {
    ops_numpy.Multiply: _always,
    ops_numpy.Divide: _tensor_first,
    ops_numpy.TrueDivide: _tensor_first,
    ops_numpy.DivideNoNan: _tensor_first,
    ops_numpy.Negative: _always,
    ops_numpy.Absolute: _always,
    ops_numpy.Abs: _always,
    ops_nn.Relu: _always,
    ops_nn.LeakyRelu: _always,
}
_OTHER_ELEMENTWISE = (
    ops_numpy.Add, ops_numpy.Subtract, ops_numpy.Maximum, ops_numpy.Minimum, ops_numpy.Power,
    ops_numpy.Square, ops_numpy.Sqrt, ops_numpy.Exp, ops_numpy.Log, ops_numpy.Log1p,
    ops_numpy.Expm1, ops_numpy.Tanh, ops_numpy.Sin, ops_numpy.Cos, ops_numpy.Sign,
    ops_numpy.Round, ops_numpy.Floor, ops_numpy.Ceil, ops_numpy.Reciprocal, ops_numpy.Clip,
    ops_numpy.NanToNum, ops_numpy.Cbrt, ops_numpy.Trunc,
    ops_nn.Relu6, ops_nn.Sigmoid, ops_nn.HardSigmoid, ops_nn.Silu, ops_nn.HardSilu,
    ops_nn.Gelu, ops_nn.Elu, ops_nn.Selu, ops_nn.Celu, ops_nn.Softplus, ops_nn.Softsign,
    ops_nn.LogSigmoid, ops_nn.HardTanh, ops_nn.HardShrink, ops_nn.SoftShrink,
    ops_nn.TanhShrink, ops_nn.Squareplus, ops_nn.SparsePlus, ops_nn.SparseSigmoid,
    ops_nn.Threshold,
    ops_math.Erf, ops_math.Erfc, ops_math.Rsqrt,
)
# Affine in their tensor operand(s): LRP's epsilon rule applies; the rest pass relevance on.
_AFFINE = (ops_numpy.Add, ops_numpy.Subtract, ops_numpy.Multiply, ops_numpy.Divide,
           ops_numpy.TrueDivide, ops_numpy.Negative)

for _operation, _homogeneous in (*_LINEAR_IN_TENSOR.items(),
                                 *((o, _never) for o in _OTHER_ELEMENTWISE)):
    register(_operation, role=_operand_role(_homogeneous), cost=elementwise_cost,
             relevance="linear" if _operation in _AFFINE else "pass")
for _operation in (ops_core.Cast, ops_core.StopGradient, ops_numpy.Copy):
    register(_operation, role=_operand_role(_always), cost=no_arithmetic_cost, relevance="pass")


# -- operations with an axis -------------------------------------------------------------------


def _last_axis(operation, axis):
    """Whether `axis` (an int, a sequence, or None for all) includes the channel axis of the
    operation's input."""
    node = call_node(operation)
    rank = len(node.input_tensors[0].shape) if node is not None and node.input_tensors else None
    axes = [axis] if isinstance(axis, int) else axis
    if axes is None:
        return True
    return any(a == -1 or (rank is not None and a == rank - 1) for a in axes)


def _softmax_role(operation):
    if _last_axis(operation, operation.axis):
        return Role(BARRIER, reason=f"{type(operation).__name__} over the channel axis mixes "
                    "the channels", passthrough=True)
    return Role(PASS)


def _concatenate_role(operation):
    if operation.axis == 0:
        return Role(BARRIER, reason="concatenates along the batch axis")
    return Role(CONCAT) if _last_axis(operation, operation.axis) else Role(MERGE)


def _reduction_role(operation):
    if _last_axis(operation, operation.axis):
        return Role(BARRIER, reason=f"{type(operation).__name__} reduces the channel axis")
    return Role(PASS, homogeneous=not isinstance(operation, (ops_numpy.Min, ops_numpy.Amin)))


def reduction_cost(call):
    """One op per input value."""
    return CallCost(ops=_values(call.input_shapes[0]))


register(ops_nn.Softmax, role=_softmax_role, cost=elementwise_cost, relevance="pass")
register(ops_nn.LogSoftmax, role=_softmax_role, cost=elementwise_cost, relevance="pass")
register(ops_numpy.Concatenate, role=_concatenate_role, cost=no_arithmetic_cost)
for _operation in (ops_numpy.Mean, ops_numpy.Sum, ops_numpy.Max, ops_numpy.Min,
                   ops_numpy.Amax, ops_numpy.Amin):
    register(_operation, role=_reduction_role, cost=reduction_cost)


# -- Lambda --------------------------------------------------------------------------------------


def clone_lambda(layer):
    """A new `Lambda` running the same function (its config would hold the function as Python
    bytecode, which Keras refuses to load outside `safe_mode=False`)."""
    return keras.layers.Lambda(
        layer.function,
        output_shape=layer._output_shape,
        mask=layer.mask,
        arguments=dict(layer.arguments),
        name=layer.name,
        dtype=layer.dtype_policy,
        trainable=layer.trainable,
    )


register(
    keras.layers.Lambda,
    role=Role(BARRIER, reason="a Lambda layer's function is opaque to tfdynhp (write it with "
              "keras.ops calls or as a registered layer to prune through it)"),
    clone=clone_lambda,
)
