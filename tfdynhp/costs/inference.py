"""Per-layer resource counters: parameters, multiply-accumulates (MACs) and activation values.

Complexity-aware pruning (seed 003, Zawish et al.: parameter-, FLOPs- and memory-aware modes)
and resource targets need, for every layer of a model, what it costs. This module has two parts:

- pure functions for the arithmetic (`dense_macs`, `conv_macs`, `depthwise_macs`,
  `separable_macs`, `conv_transpose_macs`, `pooling_ops`, `conv_output_length`,
  `peak_live_values`), testable with plain integers;
- `layer_costs(model)` / `model_costs(model)`, which walk the call graph of a built functional
  or Sequential Keras model (shared layers and nested models included) and apply them to the
  shapes of each layer call.

Conventions (all counts are per example, batch size 1):

- **MACs** are the multiply-accumulates of the layer's matrix products and convolutions; a MAC is
  two FLOPs. Bias additions are not counted (the usual convention), nor are the zeros of
  "same" padding (a border output position is counted with its full kernel, as TFLite and the
  published MLPerf Tiny figures count it).
- **ops** counts the other elementwise arithmetic, one per value: activations (one per output
  value, whatever the function; 0 for ReLU / ReLU6 fused into the preceding layer, as TFLite
  does, whether given as a layer or as a Dense/convolution `activation`), merges (`Add` of `n` inputs: `n - 1` per output value;
  `Average`: `n`), pooling (one per window element per output value; global pooling: one per
  input value). Pooling and merges have 0 MACs.
- **BatchNormalization** at inference is `x * scale + offset` per channel. When it directly
  follows a Dense or convolution layer with a linear activation whose output it alone consumes,
  TFLite folds it into that layer's kernel and bias: 0 MACs, 0 inference parameters (or one bias
  per channel if the layer had none), and `folded_into` names the layer. Otherwise it costs one
  MAC per value and `2 * channels` inference parameters (scale and offset).
- **params** is what Keras counts (`layer.count_params()`: trainable and non-trainable, e.g. the
  BatchNormalization moving statistics and tfdynhp's gate variables); **inference_params** is
  what remains in a deployed model: kernels and biases of Dense/convolution layers (gates are
  folded into the kernel by `tfdynhp.strip`), the folded or unfolded BatchNormalization above,
  everything `count_params` says for layers this module does not know.
- **activation_values** is the number of values of the layer's output(s). The peak
  (`ModelCost.peak_activation_values`) is the largest number of values alive at once when the
  layers run one at a time in Keras' order: every input and output of the running layer plus
  every earlier output still needed later. Layers that are identities at inference (Dropout,
  noise, linear Activation, folded BatchNormalization) and ReLU / ReLU6 activations that TFLite
  fuses into the preceding Dense, convolution or Add share their input's buffer, as in a
  converted model. Times the bytes per value (1 for int8) it is a lower bound of a TFLite Micro
  arena, which also holds scratch buffers and its own bookkeeping.

A layer this module does not know is reported with its `count_params()`, 0 MACs and 0 ops and
`supported=False`; `layer_costs` warns once, naming those layers. `register_layer_cost` adds a
layer type (e.g. a gated convolution) without editing this file.
"""

import dataclasses
import math
import numbers
import warnings

import keras

from tfdynhp.layer_types.kinds import SPATIAL_RESIZING
from tfdynhp.layers.gate import HardConcreteGate, SelectFeatures

PADDINGS = ("valid", "same", "causal", "full")


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """What one layer call costs, per example.

    Attributes:
        name: the layer's name (`outer/inner` inside a nested model; `name:1`, `name:2`, ...
            for the second and later calls of a shared layer).
        type: the layer's class name.
        params: parameters as Keras counts them (trainable and non-trainable); 0 for the second
            and later calls of a shared layer, so the sum over a model is `count_params()`.
        trainable_params: the trainable part of `params`.
        inference_params: parameters of the deployed layer (see the module docstring).
        macs: multiply-accumulates of one inference.
        ops: other elementwise operations of one inference (activations, merges, pooling).
        activation_values: number of values of the layer's output(s).
        input_shapes: the per-example shapes (batch dimension dropped) of the inputs.
        output_shapes: the per-example shapes of the outputs.
        folded_into: the name of the layer whose output buffer this layer's output shares at
            inference (folded BatchNormalization, fused ReLU, Dropout, ...); `None` otherwise.
        supported: `False` when the layer type is unknown to this module (MACs and ops 0).
    """

    name: str
    type: str
    params: int
    trainable_params: int
    inference_params: int
    macs: int
    ops: int
    activation_values: int
    input_shapes: tuple
    output_shapes: tuple
    folded_into: str = None
    supported: bool = True


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Totals of `layer_costs` over a model (see `model_costs`).

    Attributes:
        params: sum of the layers' `params` (equals `model.count_params()`).
        trainable_params: sum of the layers' `trainable_params`.
        inference_params: sum of the layers' `inference_params`.
        macs: multiply-accumulates of one inference.
        ops: other elementwise operations of one inference.
        input_values: values of the model's input(s), per example.
        total_activation_values: sum of the layers' `activation_values` (what training keeps
            for the backward pass, per example, when every layer output is stored).
        peak_activation_values: the largest number of values alive at once at inference, input
            included (see the module docstring).
        layers: the `LayerCost` of every layer call, in execution order.
        unsupported: names of the layers counted without MACs (unknown types).
    """

    params: int
    trainable_params: int
    inference_params: int
    macs: int
    ops: int
    input_values: int
    total_activation_values: int
    peak_activation_values: int
    layers: tuple
    unsupported: tuple


# --- Pure arithmetic -----------------------------------------------------------------------


def _count(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        raise ValueError(f"Expected `{name}` to be {expected}. Received: {name}={value!r}")
    return int(value)


def _size(name, value):
    """The product of a spatial size given as an int or a sequence of ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return _count(name, value)
    try:
        dims = tuple(value)
    except TypeError:
        raise ValueError(
            f"Expected `{name}` to be a non-negative integer or a sequence of them (one per "
            f"spatial dimension). Received: {name}={value!r}"
        ) from None
    return math.prod(_count(f"{name}[{i}]", d) for i, d in enumerate(dims))


def dense_macs(in_units, out_units, positions=1):
    """MACs of a Dense layer: `positions * in_units * out_units`.

    Args:
        in_units: size of the input's last axis.
        out_units: number of output units.
        positions: number of input vectors per example (the product of the axes between the
            batch and the last one, for a Dense layer applied to a sequence or a feature map).
            Defaults to `1`.

    Returns:
        The number of multiply-accumulates (an int).

    Raises:
        ValueError: if an argument is not a non-negative integer.

    Example:

    >>> dense_macs(784, 300)
    235200
    """
    return (
        _count("positions", positions)
        * _count("in_units", in_units)
        * _count("out_units", out_units)
    )


def conv_macs(out_spatial, kernel_spatial, in_channels, out_channels, groups=1):
    """MACs of a (grouped) convolution: `out_positions * kernel_positions * in/groups * out`.

    Every output value is the dot product of a `kernel_spatial` window over `in_channels /
    groups` input channels with one filter.

    Args:
        out_spatial: the output's spatial size, an int or a sequence (e.g. `(H_out, W_out)`).
        kernel_spatial: the kernel's spatial size, an int or a sequence (e.g. `(3, 3)`).
        in_channels: input channels.
        out_channels: output channels (filters).
        groups: number of channel groups. Defaults to `1`.

    Returns:
        The number of multiply-accumulates.

    Raises:
        ValueError: on a negative or non-integer size, or channels not divisible by `groups`.

    Example:

    >>> conv_macs((3, 3), (3, 3), 2, 4)   # Conv2D 3x3, 2 -> 4 channels, 5x5 input, 'valid'
    648
    """
    groups = _count("groups", groups, minimum=1)
    in_channels = _count("in_channels", in_channels)
    out_channels = _count("out_channels", out_channels)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"Expected `in_channels` and `out_channels` to be divisible by `groups`. Received: "
            f"in_channels={in_channels}, out_channels={out_channels}, groups={groups}"
        )
    return (
        _size("out_spatial", out_spatial)
        * _size("kernel_spatial", kernel_spatial)
        * (in_channels // groups)
        * out_channels
    )


def depthwise_macs(out_spatial, kernel_spatial, channels, depth_multiplier=1):
    """MACs of a depthwise convolution: `out_positions * kernel_positions * channels * dm`.

    Each input channel is convolved with its own `depth_multiplier` filters (a grouped
    convolution with `groups = channels`).

    Args:
        out_spatial: the output's spatial size, an int or a sequence.
        kernel_spatial: the kernel's spatial size, an int or a sequence.
        channels: input channels.
        depth_multiplier: filters per input channel. Defaults to `1`.

    Returns:
        The number of multiply-accumulates.

    Raises:
        ValueError: on a negative or non-integer size.

    Example:

    >>> depthwise_macs((25, 5), (3, 3), 64)   # a DS-CNN depthwise layer
    72000
    """
    return (
        _size("out_spatial", out_spatial)
        * _size("kernel_spatial", kernel_spatial)
        * _count("channels", channels)
        * _count("depth_multiplier", depth_multiplier)
    )


def separable_macs(out_spatial, kernel_spatial, in_channels, out_channels, depth_multiplier=1):
    """MACs of a separable convolution: a depthwise convolution, then a 1x1 (pointwise) one.

    Both run at the output's spatial size: `depthwise_macs(...) + out_positions * in_channels *
    depth_multiplier * out_channels`.

    Args:
        out_spatial: the output's spatial size, an int or a sequence.
        kernel_spatial: the depthwise kernel's spatial size, an int or a sequence.
        in_channels: input channels.
        out_channels: output channels of the pointwise convolution.
        depth_multiplier: depthwise filters per input channel. Defaults to `1`.

    Returns:
        The number of multiply-accumulates.

    Raises:
        ValueError: on a negative or non-integer size.

    Example:

    >>> separable_macs((4, 4), (3, 3), 8, 16)
    3200
    """
    depthwise = depthwise_macs(out_spatial, kernel_spatial, in_channels, depth_multiplier)
    pointwise = conv_macs(out_spatial, 1, in_channels * depth_multiplier, out_channels)
    return depthwise + pointwise


def conv_transpose_macs(in_spatial, kernel_spatial, in_channels, out_channels):
    """MACs of a transposed convolution: `in_positions * kernel_positions * in * out`.

    Every input value is multiplied by a whole kernel and scattered into the output, so the
    count follows the input's spatial size, not the output's.

    Args:
        in_spatial: the input's spatial size, an int or a sequence.
        kernel_spatial: the kernel's spatial size, an int or a sequence.
        in_channels: input channels.
        out_channels: output channels (filters).

    Returns:
        The number of multiply-accumulates.

    Raises:
        ValueError: on a negative or non-integer size.

    Example:

    >>> conv_transpose_macs((2, 2), (3, 3), 1, 1)
    36
    """
    return conv_macs(in_spatial, kernel_spatial, in_channels, out_channels)


def pooling_ops(out_spatial, pool_spatial, channels):
    """Elementwise operations of a local pooling layer: one per window element per output value.

    Pooling has no MACs: max pooling compares, average pooling adds (and scales once per output,
    not counted separately).

    Args:
        out_spatial: the output's spatial size, an int or a sequence.
        pool_spatial: the window's spatial size, an int or a sequence.
        channels: channels (pooling acts on each one separately).

    Returns:
        The number of operations.

    Raises:
        ValueError: on a negative or non-integer size.

    Example:

    >>> pooling_ops((12, 12), (2, 2), 20)
    11520
    """
    return (
        _size("out_spatial", out_spatial)
        * _size("pool_spatial", pool_spatial)
        * _count("channels", channels)
    )


def conv_output_length(input_length, kernel_size, stride=1, padding="valid", dilation=1):
    """Length of one spatial axis after a convolution or pooling window, as Keras computes it.

    `valid`: `floor((L - (k - 1) * d - 1) / s) + 1`; `same` and `causal`: `ceil(L / s)`;
    `full`: `(L + (k - 1) * d - 1) // s + 1`. A result below 1 means the window does not fit.

    Args:
        input_length: the axis length.
        kernel_size: the window length.
        stride: the stride. Defaults to `1`.
        padding: `"valid"`, `"same"`, `"causal"` or `"full"`. Defaults to `"valid"`.
        dilation: the dilation rate. Defaults to `1`.

    Returns:
        The output length (an int, possibly <= 0 when the window does not fit).

    Raises:
        ValueError: on a non-positive size or an unknown padding.

    Example:

    >>> conv_output_length(28, 5)            # LeNet-5's conv1
    24
    >>> conv_output_length(49, 10, 2, "same")
    25
    """
    input_length = _count("input_length", input_length)
    kernel_size = _count("kernel_size", kernel_size, minimum=1)
    stride = _count("stride", stride, minimum=1)
    dilation = _count("dilation", dilation, minimum=1)
    if padding not in PADDINGS:
        raise ValueError(f"Expected `padding` in {PADDINGS}. Received: padding={padding!r}")
    extent = (kernel_size - 1) * dilation + 1
    if padding in ("same", "causal"):
        return -(-input_length // stride)
    if padding == "full":
        return (input_length + extent - 2) // stride + 1
    return (input_length - extent) // stride + 1


def peak_live_values(sizes, producers, last_uses, step_extra=None):
    """The largest total size of the buffers alive at any step of a sequential schedule.

    Buffer `b` (size `sizes[b]`) is written at step `producers[b]` (`-1`: it exists before the
    first step, e.g. a model input) and is last read at step `last_uses[b]` (a model output's
    last use is the number of steps). At step `s` the live buffers are those with
    `producers[b] <= s <= last_uses[b]`: the running step's inputs and outputs and everything
    produced earlier and still needed later.

    Args:
        sizes: sizes of the buffers (values).
        producers: the step writing each buffer, `-1` for buffers that exist from the start.
        last_uses: the last step reading each buffer (`>= producers[b]`).
        step_extra: optional dict step -> extra values alive only during that step (e.g. the
            internal peak of a nested model, beyond its inputs and outputs). Defaults to `None`.

    Returns:
        The peak (an int; 0 for no buffers).

    Raises:
        ValueError: if the three sequences differ in length or a buffer is read before it is
            written.

    Example:

    >>> peak_live_values([784, 300, 10], [-1, 0, 1], [0, 1, 2])   # an MLP: input, two outputs
    1084
    """
    sizes, producers, last_uses = list(sizes), list(producers), list(last_uses)
    if not len(sizes) == len(producers) == len(last_uses):
        raise ValueError(
            "Expected `sizes`, `producers` and `last_uses` of the same length. Received "
            f"lengths {len(sizes)}, {len(producers)} and {len(last_uses)}."
        )
    for b, (first, last) in enumerate(zip(producers, last_uses)):
        if last < first:
            raise ValueError(
                f"Buffer {b} is last used at step {last}, before it is produced at step {first}."
            )
    step_extra = dict(step_extra or {})
    steps = set(step_extra)
    for first, last in zip(producers, last_uses):
        steps.update((max(first, 0), last))
    peak = 0
    for s in steps:
        live = sum(
            size for size, first, last in zip(sizes, producers, last_uses) if first <= s <= last
        )
        peak = max(peak, live + step_extra.get(s, 0))
    return peak


# --- Layer types ---------------------------------------------------------------------------

_DENSE = (keras.layers.Dense,)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_TRANSPOSE = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_WEIGHTED = _DENSE + _SEPARABLE + _DEPTHWISE + _TRANSPOSE + _CONV
_LOCAL_POOLING = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
)
_GLOBAL_POOLING = (
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
)
# Identities at inference: their output shares the input's buffer.
_IDENTITY = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
)
# Move or copy values without arithmetic.
_SHAPE_ONLY = (
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
    keras.layers.RepeatVector,
    *SPATIAL_RESIZING,
    keras.layers.Concatenate,
    SelectFeatures,
    HardConcreteGate,
)
_ELEMENTWISE_MERGE = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
_ACTIVATIONS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
)
_FUSED_FUNCTIONS = (keras.activations.relu, keras.activations.relu6)
# Producers TFLite fuses a following ReLU / ReLU6 into.
_FUSING = _WEIGHTED + (keras.layers.Add,)


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """What a cost function sees of one layer call (the argument of `register_layer_cost`).

    Attributes:
        layer: the layer.
        input_shapes: per-example input shapes (batch dropped), one tuple per input tensor.
        output_shapes: per-example output shapes.
        producer: the layer whose output buffer the first input is at inference (looking
            through folded layers: Dropout, folded BatchNormalization, fused ReLU); `None` for
            a model input.
        producer_linear: whether the first input still is the producer's linear output (the
            producer has a linear activation and no activation was fused into it since).
        exclusive: whether this call alone reads the first input and every tensor between it
            and the producer (none of them a model output), so folding into the producer
            changes nothing else.
    """

    layer: object
    input_shapes: tuple
    output_shapes: tuple
    producer: object = None
    producer_linear: bool = False
    exclusive: bool = False


_CUSTOM_COSTS = []


def register_layer_cost(layer_class, cost_fn):
    """Registers how to count a layer type (checked before the built-in types).

    Args:
        layer_class: a `keras.layers.Layer` subclass (its subclasses match too).
        cost_fn: `cost_fn(call: LayerCall) -> dict` with keys `macs`, `ops` and
            `inference_params` (ints), and optionally `folded` (bool: the output shares the
            producer's buffer at inference). The latest registration matching a layer wins.

    Raises:
        TypeError: if `layer_class` is not a Layer subclass or `cost_fn` is not callable.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            f"Expected `layer_class` to be a keras.layers.Layer subclass. Received: {layer_class!r}"
        )
    if not callable(cost_fn):
        raise TypeError(f"Expected `cost_fn` to be callable. Received: {cost_fn!r}")
    _CUSTOM_COSTS.insert(0, (layer_class, cost_fn))


def _values(shape):
    return math.prod(int(d) for d in shape)


def _channel_axis(layer, rank):
    """Index (in the per-example shape of length `rank`) of the channel axis."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return 0
    return rank - 1


def _spatial(layer, shape):
    axis = _channel_axis(layer, len(shape))
    return tuple(d for i, d in enumerate(shape) if i != axis)


def _weights_size(*variables):
    return sum(_values(v.shape) for v in variables if v is not None)


def _bias(layer):
    return getattr(layer, "bias", None) if getattr(layer, "use_bias", True) else None


def _weighted_cost(call):
    layer = call.layer
    (in_shape,) = call.input_shapes[:1]
    (out_shape,) = call.output_shapes[:1]
    bias = _bias(layer)
    if isinstance(layer, _DENSE):
        in_units, out_units = layer.kernel.shape
        macs = dense_macs(int(in_units), int(out_units), _values(in_shape[:-1]))
        params = _weights_size(layer.kernel, bias)
    elif isinstance(layer, _SEPARABLE):
        kernel_spatial = layer.depthwise_kernel.shape[:-2]
        in_channels, multiplier = layer.depthwise_kernel.shape[-2:]
        macs = separable_macs(
            _spatial(layer, out_shape),
            tuple(int(k) for k in kernel_spatial),
            int(in_channels),
            int(layer.pointwise_kernel.shape[-1]),
            int(multiplier),
        )
        params = _weights_size(layer.depthwise_kernel, layer.pointwise_kernel, bias)
    elif isinstance(layer, _DEPTHWISE):
        *kernel_spatial, channels, multiplier = layer.kernel.shape
        macs = depthwise_macs(
            _spatial(layer, out_shape),
            tuple(int(k) for k in kernel_spatial),
            int(channels),
            int(multiplier),
        )
        params = _weights_size(layer.kernel, bias)
    elif isinstance(layer, _TRANSPOSE):
        # Keras stores transposed kernels as kernel_size + (filters, in_channels).
        *kernel_spatial, out_channels, in_channels = layer.kernel.shape
        macs = conv_transpose_macs(
            _spatial(layer, in_shape),
            tuple(int(k) for k in kernel_spatial),
            int(in_channels),
            int(out_channels),
        )
        params = _weights_size(layer.kernel, bias)
    else:
        *kernel_spatial, group_in, out_channels = layer.kernel.shape
        groups = int(getattr(layer, "groups", 1))
        macs = conv_macs(
            _spatial(layer, out_shape),
            tuple(int(k) for k in kernel_spatial),
            int(group_in) * groups,
            int(out_channels),
            groups,
        )
        params = _weights_size(layer.kernel, bias)
    # A built-in activation costs one op per output value, unless TFLite fuses it (ReLU, ReLU6).
    activation = getattr(layer, "activation", None)
    fused = _is_linear(activation) or activation in _FUSED_FUNCTIONS
    return {"macs": macs, "ops": 0 if fused else _values(out_shape), "inference_params": params}


def _is_linear(activation):
    return activation is None or activation is keras.activations.linear


def _batch_norm_cost(call):
    layer = call.layer
    (shape,) = call.input_shapes[:1]
    axis = layer.axis if layer.axis >= 0 else layer.axis + len(shape) + 1
    channels = int(shape[axis - 1])
    producer = call.producer
    foldable = (
        isinstance(producer, _WEIGHTED)
        and call.producer_linear
        and call.exclusive
        and axis - 1 == _channel_axis(producer, len(shape))
    )
    if foldable:
        # The folded layer gets a bias of `channels` values if it had none.
        new_bias = 0 if _bias(producer) is not None else channels
        return {"macs": 0, "ops": 0, "inference_params": new_bias, "folded": True}
    return {"macs": _values(shape), "ops": 0, "inference_params": 2 * channels}


def _fusable_activation(layer):
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return (
            not config.get("negative_slope")
            and not config.get("threshold")
            and config.get("max_value") in (None, 6, 6.0)
        )
    if isinstance(layer, keras.layers.Activation):
        return layer.activation in _FUSED_FUNCTIONS
    return False


def _activation_cost(call):
    layer = call.layer
    values = sum(_values(s) for s in call.output_shapes)
    if isinstance(layer, keras.layers.Activation) and _is_linear(layer.activation):
        return {"macs": 0, "ops": 0, "inference_params": 0, "folded": True}
    if (
        _fusable_activation(layer)
        and isinstance(call.producer, _FUSING)
        and call.producer_linear
        and call.exclusive
    ):
        return {"macs": 0, "ops": 0, "inference_params": 0, "folded": True}
    params = _values(layer.alpha.shape) if isinstance(layer, keras.layers.PReLU) else 0
    return {"macs": 0, "ops": values, "inference_params": params}


def _merge_cost(call):
    out_values = _values(call.output_shapes[0])
    inputs = len(call.input_shapes)
    per_value = inputs if isinstance(call.layer, keras.layers.Average) else inputs - 1
    return {"macs": 0, "ops": per_value * out_values, "inference_params": 0}


def _pooling_cost(call):
    layer = call.layer
    out_shape = call.output_shapes[0]
    if isinstance(layer, _GLOBAL_POOLING):
        ops = _values(call.input_shapes[0])
    else:
        channels = out_shape[_channel_axis(layer, len(out_shape))]
        ops = pooling_ops(_spatial(layer, out_shape), tuple(layer.pool_size), int(channels))
    return {"macs": 0, "ops": ops, "inference_params": 0}


def _layer_cost(call):
    """Returns (cost dict, supported) for one layer call."""
    layer = call.layer
    for layer_class, cost_fn in _CUSTOM_COSTS:
        if isinstance(layer, layer_class):
            return cost_fn(call), True
    if isinstance(layer, _WEIGHTED):
        return _weighted_cost(call), True
    if isinstance(layer, keras.layers.BatchNormalization):
        return _batch_norm_cost(call), True
    if isinstance(layer, _ACTIVATIONS):
        return _activation_cost(call), True
    if isinstance(layer, _ELEMENTWISE_MERGE + (keras.layers.Average,)):
        return _merge_cost(call), True
    if isinstance(layer, _LOCAL_POOLING + _GLOBAL_POOLING):
        return _pooling_cost(call), True
    if isinstance(layer, _IDENTITY):
        return {"macs": 0, "ops": 0, "inference_params": 0, "folded": True}, True
    if isinstance(layer, _SHAPE_ONLY):
        return {"macs": 0, "ops": 0, "inference_params": 0}, True
    params = layer.count_params() if getattr(layer, "built", False) else 0
    return {"macs": 0, "ops": 0, "inference_params": params}, False


# --- Graph walk ----------------------------------------------------------------------------


def _functional_of(model):
    """The functional graph of a Functional or Sequential model, or a clear error."""
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(
                f"The Sequential model {model.name!r} is not built, so its layer shapes are "
                "unknown. Start it with `keras.Input(shape)` or call `model.build(input_shape)`."
            )
        return functional
    if not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            f"Expected a functional or Sequential Keras model. Received the subclassed model "
            f"{model.name!r} ({type(model).__name__}), whose layer calls are not recorded. "
            "Build it with the functional API (`keras.Model(inputs, outputs)`)."
        )
    return model


def _execution_order(graph):
    """The model's layer-call nodes in the order Keras runs them."""
    by_depth = graph._nodes_by_depth
    return [
        node
        for depth in sorted(by_depth, reverse=True)
        for node in by_depth[depth]
        if node.operation is not None and not node.is_input
    ]


def _shape(tensor):
    return tuple(int(d) if d is not None else 0 for d in tensor.shape[1:])


@dataclasses.dataclass
class _Buffer:
    """One inference buffer: `root` computed it; `linear`: it still is root's linear output;
    `exclusive`: every tensor aliasing it so far had a single reader."""

    index: int
    root: object
    linear: bool
    exclusive: bool


@dataclasses.dataclass
class _Walk:
    costs: list = dataclasses.field(default_factory=list)
    sizes: list = dataclasses.field(default_factory=list)
    producers: list = dataclasses.field(default_factory=list)
    last_uses: list = dataclasses.field(default_factory=list)
    step_extra: dict = dataclasses.field(default_factory=dict)
    unsupported: list = dataclasses.field(default_factory=list)

    def new_buffer(self, tensor, step, root):
        self.sizes.append(_values(_shape(tensor)))
        self.producers.append(step)
        self.last_uses.append(step)
        linear = root is not None and _is_linear(getattr(root, "activation", None))
        return _Buffer(len(self.sizes) - 1, root, linear, True)


def _call_cost(layer, call):
    if isinstance(layer, keras.layers.Layer):
        return _layer_cost(call)
    # A bare `keras.ops` call in a functional model.
    return {"macs": 0, "ops": 0, "inference_params": 0}, False


def _graph_costs(model, prefix, seen_layers):
    """Costs of every layer call of `model` and the inference liveness of its buffers."""
    graph = _functional_of(model)
    nodes = _execution_order(graph)
    walk = _Walk()
    readers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            readers[id(tensor)] = readers.get(id(tensor), 0) + 1
    model_outputs = {id(t) for t in graph.outputs}
    buffers = {id(t): walk.new_buffer(t, -1, None) for t in graph.inputs}
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
            child = _graph_costs(layer, name + "/", seen_layers)
            walk.costs.extend(child.costs)
            walk.unsupported.extend(child.unsupported)
            ends = sum(_values(_shape(t)) for t in (*inputs, *node.outputs))
            inner = peak_live_values(
                child.sizes, child.producers, child.last_uses, child.step_extra
            )
            walk.step_extra[step] = max(0, inner - ends)
            for tensor in node.outputs:
                buffers[id(tensor)] = walk.new_buffer(tensor, step, layer)
            continue
        source = buffers.get(id(inputs[0])) if inputs else None
        sole_reader = (
            bool(inputs) and readers[id(inputs[0])] == 1 and id(inputs[0]) not in model_outputs
        )
        call = LayerCall(
            layer=layer,
            input_shapes=tuple(_shape(t) for t in inputs),
            output_shapes=tuple(_shape(t) for t in node.outputs),
            producer=source.root if source else None,
            producer_linear=bool(source and source.linear),
            exclusive=bool(source and source.exclusive and sole_reader),
        )
        cost, supported = _call_cost(layer, call)
        folded = bool(cost.get("folded")) and len(inputs) == 1 and source is not None
        if folded:
            fused_activation = isinstance(layer, _ACTIVATIONS)
            alias = _Buffer(
                source.index,
                source.root,
                source.linear and not fused_activation,
                call.exclusive,
            )
            for tensor in node.outputs:
                buffers[id(tensor)] = alias
        else:
            for tensor in node.outputs:
                buffers[id(tensor)] = walk.new_buffer(tensor, step, layer)
        built = first_call and isinstance(layer, keras.layers.Layer) and layer.built
        if not supported:
            walk.unsupported.append(name)
        walk.costs.append(
            LayerCost(
                name=name,
                type=type(layer).__name__,
                params=layer.count_params() if built else 0,
                trainable_params=sum(_values(w.shape) for w in layer.trainable_weights)
                if built
                else 0,
                inference_params=cost["inference_params"] if first_call else 0,
                macs=cost["macs"],
                ops=cost["ops"],
                activation_values=sum(_values(s) for s in call.output_shapes),
                input_shapes=call.input_shapes,
                output_shapes=call.output_shapes,
                folded_into=(source.root.name if source.root is not None else "input")
                if folded
                else None,
                supported=supported,
            )
        )
    for tensor in graph.outputs:
        walk.last_uses[buffers[id(tensor)].index] = len(nodes)
    return walk


def _walk(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a `keras.Model`. Received: {type(model).__name__}")
    walk = _graph_costs(model, "", set())
    if walk.unsupported:
        warnings.warn(
            f"complexity: {len(walk.unsupported)} layer(s) of unknown type counted with their "
            f"parameters but 0 MACs: {', '.join(walk.unsupported)}. Use "
            "`tfdynhp.costs.inference.register_layer_cost` to count them.",
            stacklevel=3,
        )
    return walk


def layer_costs(model):
    """Per-layer parameters, MACs, other ops and activation values of a built Keras model.

    Args:
        model: a built functional or Sequential `keras.Model` (nested models and shared layers
            allowed; a tfdynhp `GatedModel` too).

    Returns:
        A list of `LayerCost`, one per layer call in execution order (the layers of nested
        models in place, named `outer/inner`).

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: if it is a subclassed model or an unbuilt Sequential model.

    Warns:
        UserWarning: naming the layers of unknown type (counted with 0 MACs).

    Example:

    >>> for cost in layer_costs(model):
    ...     print(cost.name, cost.params, cost.macs, cost.activation_values)
    """
    return _walk(model).costs


def model_costs(model):
    """Totals of `layer_costs` over a model: parameters, MACs, ops, activation values.

    Args:
        model: a built functional or Sequential `keras.Model`.

    Returns:
        A `ModelCost`.

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: if it is a subclassed model or an unbuilt Sequential model.

    Example:

    >>> costs = model_costs(tfdynhp.architectures.build("ds-cnn"))
    >>> costs.macs, costs.inference_params
    """
    walk = _walk(model)
    costs = walk.costs
    graph = _functional_of(model)
    return ModelCost(
        params=sum(c.params for c in costs),
        trainable_params=sum(c.trainable_params for c in costs),
        inference_params=sum(c.inference_params for c in costs),
        macs=sum(c.macs for c in costs),
        ops=sum(c.ops for c in costs),
        input_values=sum(_values(_shape(t)) for t in graph.inputs),
        total_activation_values=sum(c.activation_values for c in costs),
        peak_activation_values=peak_live_values(
            walk.sizes, walk.producers, walk.last_uses, walk.step_extra
        ),
        layers=tuple(costs),
        unsupported=tuple(walk.unsupported),
    )


__all__ = [
    "LayerCall",
    "LayerCost",
    "ModelCost",
    "conv_macs",
    "conv_output_length",
    "conv_transpose_macs",
    "dense_macs",
    "depthwise_macs",
    "layer_costs",
    "model_costs",
    "peak_live_values",
    "pooling_ops",
    "register_layer_cost",
    "separable_macs",
]
