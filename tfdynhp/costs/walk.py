"""The one cost model: parameters, multiply-accumulates (MACs), other operations, int8 bytes and
activation values of every layer call of a model, now or after planned keep-masks.

Every layer call is priced by its layer type's cost function (`tfdynhp.layer_types`) from the
call's shapes; with `keep_masks`, the channel axis of every tensor is first narrowed to the
units the masks keep, so a target can be checked before any surgery with the same numbers the
reports give after it. Targets, the resource-aware penalty, `model_costs`, the reports and the
benches all read this walk.

Conventions (all counts are per example, batch size 1):

- **MACs** are the multiply-accumulates of matrix products and convolutions (grouped,
  transposed, depthwise and separable ones with their own formulas in `tfdynhp.math.counting`);
  a MAC is two FLOPs. Bias additions are not counted, nor the zeros of "same" padding (a
  border output position is counted with its full kernel, as TFLite and MLPerf Tiny count it).
- **ops** counts other elementwise arithmetic, one per value: activations (0 for ReLU / ReLU6
  fused into the preceding layer, as TFLite does), merges (`Add` of `n` inputs: `n - 1` per
  output value; `Average`: `n`), pooling (one per window element per output value; global
  pooling: one per input value).
- **BatchNormalization** directly after a Dense or convolution with a linear activation whose
  output it alone reads is folded into it by TFLite: 0 MACs, 0 inference parameters (or one bias
  per channel if the layer had none), and `folded_into` names the layer. Otherwise it costs one
  MAC per value and `2 * channels` inference parameters.
- **params** are the values a model stores as parameters: kernels, biases, normalization
  statistics (what Keras' `count_params()` counts, except tfdynhp's training-only gate state);
  **inference_params** what remains deployed (BatchNormalization folded, gates folded into
  kernels by `tfdynhp.strip`); **int8_bytes** an estimate of the full-int8 `.tflite` size (1
  byte per weight, 4 per bias, per-channel quantization parameters, plus a fixed overhead).
- **m4_instructions** estimates the Cortex-M4 instructions of the deployed int8 operator(s)
  with Arm's CMSIS-NN kernels under TFLite Micro: a linear model per operator kind in MACs,
  output and input values, fitted to instruction counts measured under QEMU
  (`tfdynhp.layer_types.instructions`); 0 for folded layers.
- **activation_values** is the number of values of the layer's output(s). The peak
  (`ModelCost.peak_activation_values`) is the largest number of values alive at once when the
  layers run one at a time in Keras' order. Layers that are identities at inference (Dropout,
  noise, linear Activation, folded BatchNormalization, fused ReLU) share their input's buffer,
  as in a converted model. Times the bytes per value (1 for int8) it is a lower bound of a
  TFLite Micro arena.

A layer type without a cost function is counted with its `count_params()`, 0 MACs and 0 ops and
`supported=False`; `layer_costs` warns once, naming those layers. Register a cost with
`tfdynhp.layer_types.register`.
"""

import dataclasses
import math
import warnings

import keras
import numpy as np

from tfdynhp.graph import units as unit_graphs
from tfdynhp.graph.nodes import functional_of, graph_nodes
from tfdynhp.layer_types import instructions
from tfdynhp.layer_types.registry import LayerCall, cost_of
from tfdynhp.math.counting import peak_live_values

# Flatbuffer header, tables and tensor metadata of a small model, and per-layer tensors.
# `DynHPCallback` measures the real file once and corrects the constant part.
TFLITE_BASE_BYTES = 1500
TFLITE_BYTES_PER_LAYER = 180


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """What one layer call costs, per example.

    Attributes:
        name: the layer's name (`outer/inner` inside a nested model; `name:1`, `name:2`, ...
            for the second and later calls of a shared layer).
        type: the layer's class name.
        params: parameters the layer stores (see the module docstring); 0 for the second and
            later calls of a shared layer.
        inference_params: parameters of the deployed layer.
        macs: multiply-accumulates of one inference.
        ops: other elementwise operations of one inference.
        int8_bytes: estimated bytes of the layer in a full-int8 `.tflite` file.
        activation_values: number of values of the layer's output(s).
        m4_instructions: estimated Cortex-M4 instructions of the deployed operator(s) with
            CMSIS-NN kernels (`tfdynhp.layer_types.instructions`).
        input_shapes: the per-example shapes (batch dimension dropped) of the inputs.
        output_shapes: the per-example shapes of the outputs.
        folded_into: the name of the layer whose output buffer this layer's output shares at
            inference (folded BatchNormalization, fused ReLU, Dropout, ...); `None` otherwise.
        supported: `False` when the layer type has no cost function (MACs and ops 0).
    """

    name: str
    type: str
    params: int
    inference_params: int
    macs: int
    ops: int
    int8_bytes: int
    activation_values: int
    input_shapes: tuple
    output_shapes: tuple
    folded_into: str = None
    supported: bool = True
    m4_instructions: float = 0.0


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Totals of `layer_costs` over a model (see `model_costs`).

    Attributes:
        params: sum of the layers' `params` (`count_params()` of a model without gates).
        inference_params: sum of the layers' `inference_params`.
        macs: multiply-accumulates of one inference.
        ops: other elementwise operations of one inference.
        int8_bytes: estimated size of the full-int8 `.tflite` file, overhead included.
        input_values: values of the model's input(s), per example.
        total_activation_values: sum of the layers' `activation_values`.
        peak_activation_values: the largest number of values alive at once at inference, input
            included (see the module docstring).
        layers: the `LayerCost` of every layer call, in execution order.
        unsupported: names of the layers counted without MACs (types without a cost).
        m4_instructions: estimated Cortex-M4 instructions of one inference with CMSIS-NN
            kernels (the operators' sum; TFLite Micro's own loop not included).
    """

    params: int
    inference_params: int
    macs: int
    ops: int
    int8_bytes: int
    input_values: int
    total_activation_values: int
    peak_activation_values: int
    layers: tuple
    unsupported: tuple
    m4_instructions: float = 0.0


def _values(shape):
    return math.prod(int(d) for d in shape)


class NarrowedShapes:
    """`shapes(tensor)`: the per-example shape of a tensor of the model, with the channel axis
    narrowed to what `keep_masks` keep (the model's own shapes without masks)."""

    def __init__(self, model, keep_masks, unit_graph):
        self.unit_graph = None
        if keep_masks:
            self.unit_graph = unit_graph or unit_graphs.analyze(model)
            self.removed = removed_units(self.unit_graph, keep_masks)

    def __call__(self, tensor):
        shape = tuple(int(d) if d is not None else 0 for d in tensor.shape[1:])
        if self.unit_graph is None or not len(self.removed) or not shape:
            return shape
        if not self.unit_graph.has_labels(tensor):
            return shape
        kept = self.unit_graph.kept_positions(tensor, self.removed)
        return shape if kept is None else shape[:-1] + (len(kept),)


def removed_units(unit_graph, keep_masks):
    """The unit ids `keep_masks` (`{group name: boolean keep-mask}`) remove."""
    removed = []
    for name, mask in (keep_masks or {}).items():
        group = unit_graph.group(name)
        removed.extend(int(i) for i in group.ids[~np.asarray(mask, bool)])
    return np.asarray(removed, np.int64)


@dataclasses.dataclass
class _Buffer:
    """One inference buffer: `root` computed it; `linear`: it still is root's linear output;
    `exclusive`: every tensor aliasing it so far had a single reader."""

    index: int
    root: object
    linear: bool
    exclusive: bool


@dataclasses.dataclass
class Walk:
    """What one walk found: the costs, the calls it priced (`(node, LayerCall)` of the
    top-level graph, for re-pricing with other channel counts) and the buffers' liveness."""

    costs: list = dataclasses.field(default_factory=list)
    calls: list = dataclasses.field(default_factory=list)
    sizes: list = dataclasses.field(default_factory=list)
    producers: list = dataclasses.field(default_factory=list)
    last_uses: list = dataclasses.field(default_factory=list)
    step_extra: dict = dataclasses.field(default_factory=dict)
    unsupported: list = dataclasses.field(default_factory=list)
    counted: dict = dataclasses.field(default_factory=dict)  # id(layer) -> params counted

    def new_buffer(self, shape, step, root):
        self.sizes.append(_values(shape))
        self.producers.append(step)
        self.last_uses.append(step)
        activation = getattr(root, "activation", None)
        linear = root is not None and activation in (None, keras.activations.linear)
        return _Buffer(len(self.sizes) - 1, root, linear, True)


def _graph_costs(model, prefix, seen_layers, channels):
    """Costs of every layer call of `model` and the inference liveness of its buffers."""
    graph = functional_of(model)
    nodes = graph_nodes(model)
    walk = Walk()
    readers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            readers[id(tensor)] = readers.get(id(tensor), 0) + 1
    model_outputs = {id(t) for t in graph.outputs}
    shapes = {}

    def shape(tensor):
        if id(tensor) not in shapes:
            shapes[id(tensor)] = channels(tensor) if prefix == "" else tuple(
                int(d) if d is not None else 0 for d in tensor.shape[1:])
        return shapes[id(tensor)]

    buffers = {id(t): walk.new_buffer(shape(t), -1, None) for t in graph.inputs}
    calls = {}
    for step, node in enumerate(nodes):
        layer, inputs = node.operation, node.input_tensors
        for tensor in inputs:
            if id(tensor) in buffers:
                index = buffers[id(tensor)].index
                walk.last_uses[index] = max(walk.last_uses[index], step)
        calls[id(layer)] = calls.get(id(layer), 0) + 1
        name = prefix + layer.name + (f":{calls[id(layer)] - 1}" if calls[id(layer)] > 1 else "")
        first_call = id(layer) not in seen_layers
        seen_layers.add(id(layer))
        if isinstance(layer, keras.Model):
            child = _graph_costs(layer, name + "/", seen_layers, channels)
            walk.costs.extend(child.costs)
            walk.unsupported.extend(child.unsupported)
            walk.counted.update(child.counted)
            ends = sum(_values(shape(t)) for t in (*inputs, *node.outputs))
            inner = peak_live_values(child.sizes, child.producers, child.last_uses,
                                     child.step_extra)
            walk.step_extra[step] = max(0, inner - ends)
            for tensor in node.outputs:
                buffers[id(tensor)] = walk.new_buffer(shape(tensor), step, layer)
            continue
        source = buffers.get(id(inputs[0])) if inputs else None
        sole_reader = (
            bool(inputs) and readers[id(inputs[0])] == 1 and id(inputs[0]) not in model_outputs
        )
        call = LayerCall(
            layer=layer,
            input_shapes=tuple(shape(t) for t in inputs),
            output_shapes=tuple(shape(t) for t in node.outputs),
            producer=source.root if source else None,
            producer_linear=bool(source and source.linear),
            exclusive=bool(source and source.exclusive and sole_reader),
        )
        walk.calls.append((node, call))
        cost, supported = cost_of(call)
        folded = cost.folded and len(inputs) == 1 and source is not None
        if folded:
            alias = _Buffer(source.index, source.root,
                            source.linear and not cost.fused_activation, call.exclusive)
            for tensor in node.outputs:
                buffers[id(tensor)] = alias
        else:
            for tensor in node.outputs:
                buffers[id(tensor)] = walk.new_buffer(shape(tensor), step, layer)
        if not supported:
            walk.unsupported.append(name)
        if first_call:
            walk.counted[id(layer)] = cost.params
        walk.costs.append(
            LayerCost(
                name=name,
                type=type(layer).__name__,
                params=cost.params if first_call else 0,
                inference_params=cost.inference_params if first_call else 0,
                macs=cost.macs,
                ops=cost.ops,
                int8_bytes=cost.int8_bytes if first_call else 0,
                activation_values=sum(_values(s) for s in call.output_shapes),
                input_shapes=call.input_shapes,
                output_shapes=call.output_shapes,
                folded_into=(source.root.name if source.root is not None else "input")
                if folded
                else None,
                supported=supported,
                m4_instructions=instructions.of(cost),
            )
        )
    for tensor in graph.outputs:
        walk.last_uses[buffers[id(tensor)].index] = len(nodes)
    return walk


def walk(model, keep_masks=None, unit_graph=None, warn=True):
    """Prices every layer call of `model` (after `keep_masks`, if given): a `Walk`."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a `keras.Model`. Received: {type(model).__name__}")
    found = _graph_costs(model, "", set(), NarrowedShapes(model, keep_masks, unit_graph))
    if warn and found.unsupported:
        warnings.warn(
            f"{len(found.unsupported)} layer(s) of a type without a cost function counted with "
            f"their parameters but 0 MACs: {', '.join(found.unsupported)}. Register one with "
            "`tfdynhp.layer_types.register(..., cost=...)`.",
            stacklevel=3,
        )
    return found


def layer_costs(model, keep_masks=None, unit_graph=None):
    """Per-layer parameters, MACs, other ops, int8 bytes and activation values of a model.

    Args:
        model: a built functional or Sequential `keras.Model` (nested models and shared layers
            allowed; a tfdynhp `GatedModel` too).
        keep_masks: optional `{group name: boolean keep-mask}`: the costs after these units
            were removed (nothing is changed). Defaults to `None` (the model as it is).
        unit_graph: the model's `UnitGraph`, when already built.

    Returns:
        A list of `LayerCost`, one per layer call in execution order (the layers of nested
        models in place, named `outer/inner`).

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: if it is a subclassed model or an unbuilt Sequential model.

    Warns:
        UserWarning: naming the layers whose type has no cost function (counted with 0 MACs).

    Example:

    >>> for cost in layer_costs(model):
    ...     print(cost.name, cost.params, cost.macs, cost.activation_values)
    """
    return walk(model, keep_masks, unit_graph).costs


def totals(model, found):
    """The `ModelCost` of a `Walk` of `model`."""
    costs = found.costs
    counted_layers = sum(c.inference_params > 0 for c in costs)
    return ModelCost(
        params=sum(c.params for c in costs),
        inference_params=sum(c.inference_params for c in costs),
        macs=sum(c.macs for c in costs),
        ops=sum(c.ops for c in costs),
        int8_bytes=sum(c.int8_bytes for c in costs) + TFLITE_BASE_BYTES
        + TFLITE_BYTES_PER_LAYER * counted_layers,
        input_values=sum(size for size, producer in zip(found.sizes, found.producers)
                         if producer == -1),
        total_activation_values=sum(c.activation_values for c in costs),
        peak_activation_values=peak_live_values(found.sizes, found.producers,
                                                found.last_uses, found.step_extra),
        layers=tuple(costs),
        unsupported=tuple(found.unsupported),
        m4_instructions=sum(c.m4_instructions for c in costs),
    )


def model_costs(model, keep_masks=None, unit_graph=None):
    """Totals over a model: parameters, MACs, ops, int8 bytes, activation values, Cortex-M4
    instructions.

    Args:
        model: a built functional or Sequential `keras.Model`.
        keep_masks: optional `{group name: boolean keep-mask}`: the totals after these units
            were removed (nothing is changed). Defaults to `None`.
        unit_graph: the model's `UnitGraph`, when already built.

    Returns:
        A `ModelCost`.

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: if it is a subclassed model or an unbuilt Sequential model.

    Example:

    >>> costs = model_costs(tfdynhp.architectures.build("ds-cnn"))
    >>> costs.macs, costs.inference_params
    """
    return totals(model, walk(model, keep_masks, unit_graph))
