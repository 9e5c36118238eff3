"""Counting arithmetic, as pure functions of integers: multiply-accumulates (MACs) of Dense and
convolution layers, pooling operations, convolution output lengths, and the peak of values
alive at once in a sequential schedule. Conventions are in `tfdynhp.costs.inference`; the
functions are testable with plain integers (their examples are doctests).
"""

import math
import numbers

PADDINGS = ("valid", "same", "causal", "full")


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


def einsum_macs(equation, input_shape, kernel_shape):
    """MACs of `einsum(equation, input, kernel)` (Keras' `EinsumDense`): the product of the
    sizes of every distinct index, the dimensions `...` stands for included.

    Args:
        equation: `"<input>,<kernel>-><output>"`, e.g. `"abc,cd->abd"` or `"...b,bc->...c"`.
        input_shape: the input's full shape (batch first; pass 1 for the batch).
        kernel_shape: the kernel's shape.

    Returns:
        The number of multiply-accumulates (an int).

    Raises:
        ValueError: for an equation that is not of that form, or shapes that do not match it.

    Example:

    >>> einsum_macs("abc,cd->abd", (1, 7, 12), (12, 5))
    420
    >>> einsum_macs("...b,bc->...c", (1, 3, 4), (4, 6))
    72
    """
    try:
        operands, _ = equation.split("->")
        left, right = operands.split(",")
    except ValueError:
        raise ValueError(f"Expected an equation '<input>,<kernel>-><output>'. Received: "
                         f"{equation!r}") from None
    sizes = {}
    factor = 1
    for letters, shape, name in ((left, input_shape, "input"), (right, kernel_shape, "kernel")):
        shape = tuple(shape)
        if "..." in letters:
            head, tail = letters.split("...")
            covered = len(shape) - len(head) - len(tail)
            factor *= math.prod(_count(f"{name}_shape", int(d))
                                for d in shape[len(head):len(head) + covered])
            letters, shape = head + tail, shape[:len(head)] + shape[len(head) + covered:]
        if len(letters) != len(shape):
            raise ValueError(f"The {name} part {letters!r} of {equation!r} does not match the "
                             f"shape {shape}.")
        for letter, size in zip(letters, shape):
            sizes[letter] = _count(f"{name}_shape", int(size))
    return factor * math.prod(sizes.values())


def attention_macs(query_positions, key_positions, projection_values, score_width,
                   attended_positions=None):
    """MACs of a multi-head attention call (`MultiHeadAttention`, `GroupQueryAttention`).

    The projections multiply every query position by the query (and gate and output) kernels
    and every key position by the key and value kernels; the scores `Q K^T` and the weighted
    sum `A V` cost `score_width = heads * (key_dim + value_dim)` MACs per pair of a query and
    an attended key position.

    Args:
        query_positions: positions of the query (its shape without batch and features).
        key_positions: key positions each query position attends to.
        projection_values: `(query-side kernel values, key-side kernel values)`.
        score_width: `heads * (key_dim + value_dim)`.
        attended_positions: key positions each query position attends to (fewer than
            `key_positions` when attention runs along some axes only). Defaults to
            `key_positions`.

    Returns:
        The number of multiply-accumulates (an int).

    Example:

    >>> attention_macs(16, 16, (2 * 32 * 16, 2 * 32 * 16), 2 * (16 + 16))
    49152
    """
    query_side, key_side = projection_values
    query_positions = _count("query_positions", query_positions)
    key_positions = _count("key_positions", key_positions)
    attended = key_positions if attended_positions is None else _count(
        "attended_positions", attended_positions)
    return (query_positions * _count("query_side", query_side)
            + key_positions * _count("key_side", key_side)
            + query_positions * attended * _count("score_width", score_width))


def recurrent_macs(steps, positions, kernel_values, recurrent_kernel_values):
    """MACs of a recurrent layer (LSTM, GRU, SimpleRNN, ConvLSTM): at every step, every
    position multiplies its input by the kernel and its state by the recurrent kernel (the
    gates' kernels side by side).

    Example:

    >>> recurrent_macs(10, 1, 8 * 4 * 16, 16 * 4 * 16)  # LSTM(16) on 10 steps of 8 features
    15360
    """
    return (_count("steps", steps) * _count("positions", positions)
            * (_count("kernel_values", kernel_values)
               + _count("recurrent_kernel_values", recurrent_kernel_values)))


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
