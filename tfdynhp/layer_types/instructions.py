"""Cortex-M4 instructions of one int8 operator with Arm's CMSIS-NN kernels, from its shape.

MACs are the wrong price for a microcontroller: under CMSIS-NN a depthwise convolution takes
about 8 instructions per MAC and a pointwise one about 1.2, plus a fixed cost per output value
(requantization, clamping) that a layer with fewer input channels spreads over fewer MACs. The
`"m4_instructions"` resource (`tfdynhp.costs`) prices every layer call with a small linear
model per operator kind,

    instructions = a * MACs + b * output values + c * input values + d * output positions
                   + e * patch values + f * kernel taps + g,

(output positions: the output's spatial size; patch values: the MACs per output channel,
what a convolution's im2col copies; kernel taps: output positions times kernel elements, the
rows of those copies, dearest with one input channel; g: per call)
fitted (non-negative least squares on the relative error) to the per-operator instruction
counts of calibration models profiled under QEMU (`qemu-system-arm -icount`, Cortex-M4,
TFLite Micro with CMSIS-NN, the bundle's default `-O` levels) by the project's firmware
profiler. The table and its points: `bench/results/m4_instructions_fit.md`, measured by

    python bench/fit_m4_instructions.py

An instruction count is not a cycle count (QEMU has no pipeline, caches or wait states), but it
is what the chip executes and it moves with cycles for the same kernels.
"""

# kind: (a per MAC, b per output value, c per input value, d per output position, e per patch
# value, f per kernel tap, g per call); fitted by
# `python bench/fit_m4_instructions.py` (bench/results/m4_instructions_fit.json).
CORTEX_M4_CMSIS_NN = {
    "add": (0.0, 80.997, 0.0, 0.0, 0.0, 0.0, 0.0),
    "average_pool": (0.0, 0.0, 5.41, 0.0, 0.0, 0.0, 2761.157),
    "conv": (1.548, 50.632, 0.0, 115.368, 3.855, 37.314, 3723.912),
    "depthwise": (7.197, 0.0, 0.0, 209.378, 0.0, 0.0, 357.178),
    "fully_connected": (1.639, 67.91, 6.226, 0.0, 0.0, 0.0, 367.712),
    "max_pool": (0.0, 0.0, 9.282, 0.0, 0.0, 0.0, 0.0),
    "mean": (0.0, 0.0, 171.333, 0.0, 0.0, 0.0, 0.0),
    "pointwise": (1.425, 44.458, 3.59, 0.0, 0.0, 0.0, 0.0),
    "reshape": (0.0, 2.121, 0.0, 0.0, 0.0, 0.0, 0.0),
    "softmax": (0.0, 512.13, 0.0, 0.0, 0.0, 0.0, 282.445),
}

# Elementwise operators without a kind of their own (activations that are not fused,
# BatchNormalization that is not folded, ...): instructions per value of `ops`. Not fitted to
# those operators: MAX_POOL_2D's rate per value read above (a loop over int8 values without
# requantization), a floor rather than a measurement.
ELEMENTWISE_PER_OP = CORTEX_M4_CMSIS_NN["max_pool"][2]

KINDS = tuple(CORTEX_M4_CMSIS_NN)


def estimate(kind, macs=0, outputs=0, inputs=0, positions=0, patches=0, taps=0):
    """Cortex-M4 CMSIS-NN instructions of one operator of `kind` (one of `KINDS`).

    Args:
        kind: the operator kind: `"conv"` (CONV_2D with a kernel larger than 1x1 or strides),
            `"pointwise"` (1x1 CONV_2D), `"depthwise"`, `"fully_connected"`, `"average_pool"`,
            `"max_pool"`, `"softmax"`, `"add"`, ...
        macs: multiply-accumulates of the operator.
        outputs: values of its output.
        inputs: values of its (first) input.
        positions: output positions (its spatial size) of a convolution.
        patches: values a convolution's im2col copies: MACs per output channel.
        taps: output positions times kernel elements of a convolution (patches per input
            channel).

    Returns:
        The estimated instructions, a float (0 for an operator that computes nothing).

    Raises:
        ValueError: for an unknown kind, listing the known ones.

    Example:

    >>> estimate("pointwise", macs=64 * 64 * 125, outputs=64 * 125, inputs=64 * 125) > 0
    True
    """
    if kind not in CORTEX_M4_CMSIS_NN:
        raise ValueError(f"Unknown operator kind {kind!r} for the Cortex-M4 instruction model. "
                         f"Expected one of {KINDS}.")
    if not (macs or outputs or inputs):
        return 0.0
    a, b, c, d, e, f, g = CORTEX_M4_CMSIS_NN[kind]
    return float(a * macs + b * outputs + c * inputs + d * positions + e * patches + f * taps
                 + g)


def elementwise(ops):
    """Instructions of `ops` elementwise operations of a layer without a kind of its own."""
    return float(ELEMENTWISE_PER_OP * ops)


def of(cost):
    """The Cortex-M4 instructions of a `CallCost`: its own estimate, or for a layer type
    without one, its MACs at the pointwise rate and its other ops at the elementwise rate."""
    if cost.m4_instructions is not None:
        return float(cost.m4_instructions)
    return float(CORTEX_M4_CMSIS_NN["pointwise"][0] * cost.macs + elementwise(cost.ops))
