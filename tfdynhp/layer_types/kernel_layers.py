"""Layers with kernels: Dense, convolutions (grouped, transposed), separable and depthwise
convolutions. Each is registered once with its channel role, surgery edit, cost, kernels,
LRP map, activation split and gradient-variance tap."""

import math

import keras
import tensorflow as tf

from tfdynhp.layer_types import instructions
from tfdynhp.layer_types.registry import (
    BARRIER,
    DECOMPOSE,
    KERNEL,
    MIXING,
    PER_UNIT,
    UNSUPPORTED,
    CallCost,
    KernelView,
    LayerEdit,
    Quantization,
    Role,
    register,
)
from tfdynhp.math import counting
from tfdynhp.math import gradient_variance as variance

# Quantization parameters per output channel (scales, zero points) measured on TFLite's int8
# files: about 8 bytes for a FULLY_CONNECTED layer, 20 for a convolution.
DENSE_QUANT_BYTES = 8
CONV_QUANT_BYTES = 20
# TFLite fuses these activations into the layer computing their input.
FUSED_ACTIVATIONS = (keras.activations.relu, keras.activations.relu6)


def _values(shape):
    return math.prod(int(d) for d in shape)


def _uses_bias(layer):
    return 1 if getattr(layer, "use_bias", False) else 0


def activation_ops(layer, out_shape):
    """One op per output value for a built-in activation, 0 for linear and for the
    activations TFLite fuses (ReLU, ReLU6)."""
    activation = getattr(layer, "activation", None)
    linear = activation is None or activation is keras.activations.linear
    return 0 if linear or activation in FUSED_ACTIVATIONS else _values(out_shape)


def activation_instructions(layer, out_shape):
    """Cortex-M4 instructions of a layer's own activation when TFLite does not fuse it: a
    SOFTMAX operator for softmax, elementwise otherwise (0 for linear, ReLU, ReLU6)."""
    ops = activation_ops(layer, out_shape)
    if not ops:
        return 0.0
    if getattr(layer, "activation", None) is keras.activations.softmax:
        return instructions.estimate("softmax", outputs=ops, inputs=ops)
    return instructions.elementwise(ops)


def kernel_layer_cost(call, kernel_values, bias_values, out_channels, macs, quant_bytes,
                      m4_instructions=None):
    """The `CallCost` of a layer whose weights are one kernel (or two) and a bias: deployed as
    stored; int8 stores 1 byte per kernel value, 4 per bias and `quant_bytes` per output
    channel. `m4_instructions`: the operator's Cortex-M4 estimate, its activation's added."""
    params = int(kernel_values + bias_values)
    if m4_instructions is not None:
        m4_instructions += activation_instructions(call.layer, call.output_shapes[0])
    return CallCost(
        params=params,
        macs=int(macs),
        ops=activation_ops(call.layer, call.output_shapes[0]),
        inference_params=params,
        int8_bytes=int(kernel_values + 4 * bias_values + quant_bytes * out_channels),
        m4_instructions=m4_instructions,
    )


def _m4(kind, call, macs):
    """The Cortex-M4 estimate of a call deployed as one operator of `kind`."""
    out_shape = call.output_shapes[0]
    positions = math.prod(call.spatial(out_shape)) if kind != "fully_connected" else 0
    patches = macs // max(1, call.channels(out_shape)) if kind == "conv" else 0
    taps = patches // max(1, call.channels(call.input_shapes[0]))
    return instructions.estimate(kind, macs, _values(out_shape), _values(call.input_shapes[0]),
                                 positions, patches, taps)


def narrow_kernel_layer(kernel_attribute, width_attribute, in_axis=-2, out_axis=-1):
    """A `narrow` function for a layer with one kernel and an optional `bias`: input channels
    are `kernel_attribute`'s axis `in_axis`, output channels its axis `out_axis` and the
    bias; `width_attribute` (e.g. `"units"`, `"filters"`) is set to the new output width."""

    def narrow(layer, in_keep, out_keep):
        edit = LayerEdit(layer)
        rank = len(getattr(layer, kernel_attribute).shape)
        if in_keep is not None:
            edit.slice(kernel_attribute, in_axis % rank, in_keep)
        if out_keep is not None:
            edit.slice(kernel_attribute, out_axis % rank, out_keep)
            if getattr(layer, "bias", None) is not None:
                edit.slice("bias", 0, out_keep)
            edit.attributes[width_attribute] = len(out_keep)
        return edit

    return narrow


def _mixing_role(layer):
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        return Role(BARRIER, reason="quantized or LoRA layer")
    if getattr(layer, "groups", 1) != 1:
        return Role(BARRIER, reason=f"grouped convolution (groups={layer.groups})")
    return Role(MIXING)


def _kernel_quantization(channel_axes=1):
    """int8: the kernel per output channel (`channel_axes` trailing axes), as the converter
    quantizes FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D; refused where TFLite (Micro)
    has no such int8 kernel."""

    def quantization(layer):
        if getattr(layer, "quantization_mode", None):
            return Quantization(UNSUPPORTED, reason="already quantized by Keras "
                                f"(quantization_mode={layer.quantization_mode!r}); pass the "
                                "float model")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return Quantization(UNSUPPORTED, reason="data_format='channels_first' (TFLite "
                                "kernels are channels-last)")
        if getattr(layer, "groups", 1) != 1:
            return Quantization(UNSUPPORTED, reason=f"grouped convolution (groups="
                                f"{layer.groups}): TFLite Micro has no int8 kernel for it")
        return Quantization(KERNEL, channel_axes=channel_axes)

    return quantization


# -- Dense -----------------------------------------------------------------------------------


def dense_cost(call):
    in_shape, out_shape = call.input_shapes[0], call.output_shapes[0]
    cin, cout = int(in_shape[-1]), int(out_shape[-1])
    macs = counting.dense_macs(cin, cout, _values(in_shape[:-1]))
    return kernel_layer_cost(call, cin * cout, _uses_bias(call.layer) * cout, cout, macs,
                             DENSE_QUANT_BYTES, _m4("fully_connected", call, macs))


def dense_linear_map(layer, inputs, kernel):
    return tf.tensordot(inputs, kernel, 1)


def dense_gradient_variance(layer, inputs, deltas):
    return variance.dense_gradient_variance_l1(inputs, deltas, layer.use_bias)


register(
    keras.layers.Dense,
    role=_mixing_role,
    narrow=narrow_kernel_layer("_kernel", "units"),
    cost=dense_cost,
    kernels=(KernelView("kernel", out_axis=-1, in_axis=-2),),
    linear_map=dense_linear_map,
    splits_activation=True,
    gradient_variance=dense_gradient_variance,
    folds_batch_norm=True,
    fuses_activation=True,
    quantization=_kernel_quantization(),
)


# -- convolutions ----------------------------------------------------------------------------


def conv_cost(call):
    layer = call.layer
    in_shape, out_shape = call.input_shapes[0], call.output_shapes[0]
    cin, cout = call.channels(in_shape), call.channels(out_shape)
    groups = int(getattr(layer, "groups", 1))
    kernel = math.prod(layer.kernel_size)
    macs = counting.conv_macs(call.spatial(out_shape), tuple(layer.kernel_size), cin, cout,
                              groups)
    # CMSIS-NN's 1x1 kernel (arm_convolve_1x1_s8_fast) for a 1x1 stride-1 convolution.
    pointwise = kernel == 1 and all(s == 1 for s in layer.strides) and groups == 1
    return kernel_layer_cost(call, kernel * (cin // groups) * cout, _uses_bias(layer) * cout,
                             cout, macs, CONV_QUANT_BYTES,
                             _m4("pointwise" if pointwise else "conv", call, macs))


def conv_linear_map(layer, inputs, kernel):
    return keras.ops.conv(inputs, kernel, strides=layer.strides, padding=layer.padding,
                          data_format=layer.data_format, dilation_rate=layer.dilation_rate)


def conv_gradient_variance(layer, inputs, deltas):
    return variance.conv_gradient_variance_l1(layer, inputs, deltas)


_CONV_KERNELS = (KernelView("kernel", out_axis=-1, in_axis=-2),)
_NO_CONV_3D = Quantization(UNSUPPORTED, reason="TFLite Micro has no int8 CONV_3D")
for _conv, _variance, _quantization in (
    (keras.layers.Conv1D, conv_gradient_variance, _kernel_quantization()),
    (keras.layers.Conv2D, conv_gradient_variance, _kernel_quantization()),
    (keras.layers.Conv3D, None, _NO_CONV_3D),
):
    register(
        _conv,
        role=_mixing_role,
        narrow=narrow_kernel_layer("_kernel", "filters"),
        cost=conv_cost,
        kernels=_CONV_KERNELS,
        linear_map=conv_linear_map,
        splits_activation=True,
        gradient_variance=_variance,
        folds_batch_norm=True,
        fuses_activation=True,
        quantization=_quantization,
    )


def conv_transpose_cost(call):
    """Keras stores a transposed kernel as `kernel_size + (filters, in_channels)`; every input
    value is multiplied by a whole kernel, so MACs follow the input's spatial size."""
    layer = call.layer
    in_shape, out_shape = call.input_shapes[0], call.output_shapes[0]
    cin, cout = call.channels(in_shape), call.channels(out_shape)
    macs = counting.conv_transpose_macs(call.spatial(in_shape), tuple(layer.kernel_size), cin,
                                        cout)
    return kernel_layer_cost(call, math.prod(layer.kernel_size) * cin * cout,
                             _uses_bias(layer) * cout, cout, macs, CONV_QUANT_BYTES)


for _conv in (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
              keras.layers.Conv3DTranspose):
    register(
        _conv,
        role=_mixing_role,
        narrow=narrow_kernel_layer("kernel", "filters", in_axis=-1, out_axis=-2),
        cost=conv_transpose_cost,
        kernels=(KernelView("kernel", out_axis=-2, in_axis=-1),),
        splits_activation=True,
        folds_batch_norm=True,
        fuses_activation=True,
        quantization=Quantization(UNSUPPORTED, reason="transposed convolutions are not "
                                  "simulated in int8 yet"),
    )


# -- separable and depthwise convolutions ------------------------------------------------------


def narrow_separable_conv(layer, in_keep, out_keep):
    import numpy as np

    edit = LayerEdit(layer)
    depthwise_rank = len(layer.depthwise_kernel.shape)
    if in_keep is not None:
        multiplier = layer.depth_multiplier
        expanded = (np.asarray(in_keep)[:, None] * multiplier + np.arange(multiplier)).ravel()
        edit.slice("depthwise_kernel", depthwise_rank - 2, in_keep)
        edit.slice("pointwise_kernel", depthwise_rank - 2, expanded)
    if out_keep is not None:
        edit.slice("pointwise_kernel", depthwise_rank - 1, out_keep)
        if layer.bias is not None:
            edit.slice("bias", 0, out_keep)
        edit.attributes["filters"] = len(out_keep)
    return edit


def separable_cost(call):
    layer = call.layer
    in_shape, out_shape = call.input_shapes[0], call.output_shapes[0]
    cin, cout = call.channels(in_shape), call.channels(out_shape)
    multiplier = int(layer.depth_multiplier)
    macs = counting.separable_macs(call.spatial(out_shape), tuple(layer.kernel_size), cin, cout,
                                   multiplier)
    values = math.prod(layer.kernel_size) * cin * multiplier + cin * multiplier * cout
    # Deployed as a DEPTHWISE_CONV_2D, then a 1x1 CONV_2D (`split_separable_conv`).
    positions = math.prod(call.spatial(out_shape))
    depthwise_macs = counting.depthwise_macs(call.spatial(out_shape), tuple(layer.kernel_size),
                                             cin, multiplier)
    between = positions * cin * multiplier
    m4 = (instructions.estimate("depthwise", depthwise_macs, between, _values(in_shape),
                                positions)
          + instructions.estimate("pointwise", macs - depthwise_macs, _values(out_shape),
                                  between, positions))
    return kernel_layer_cost(call, values, _uses_bias(layer) * cout, cout, macs,
                             CONV_QUANT_BYTES, m4)


def split_separable_conv(layer):
    """A SeparableConv2D as the converter lowers it: a DepthwiseConv2D without bias (its own
    int8 output), then a 1x1 Conv2D with the bias and activation; built, with the weights."""
    input_shape = (None, *layer.input.shape[1:])
    depthwise = keras.layers.DepthwiseConv2D(
        layer.kernel_size, strides=layer.strides, padding=layer.padding,
        depth_multiplier=layer.depth_multiplier, dilation_rate=layer.dilation_rate,
        use_bias=False, name=f"{layer.name}_depthwise",
    )
    pointwise = keras.layers.Conv2D(
        layer.filters, 1, use_bias=layer.use_bias, activation=layer.activation,
        name=f"{layer.name}_pointwise",
    )
    depthwise.build(input_shape)
    pointwise.build(depthwise.compute_output_shape(input_shape))
    depthwise.kernel.assign(layer.depthwise_kernel)
    pointwise.kernel.assign(layer.pointwise_kernel)
    if layer.use_bias:
        pointwise.bias.assign(layer.bias)
    return [depthwise, pointwise]


def _separable_quantization(layer):
    if isinstance(layer, keras.layers.SeparableConv1D):
        return Quantization(UNSUPPORTED, reason="SeparableConv1D is not simulated in int8 "
                            "(use SeparableConv2D, or DepthwiseConv2D then Conv2D)")
    if layer.data_format != "channels_last":
        return Quantization(UNSUPPORTED, reason="data_format='channels_first'")
    return Quantization(DECOMPOSE, decompose=split_separable_conv)


for _conv in (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D):
    register(
        _conv,
        role=_mixing_role,
        narrow=narrow_separable_conv,
        cost=separable_cost,
        kernels=(KernelView("pointwise_kernel", out_axis=-1),
                 KernelView("depthwise_kernel", in_axis=-2)),
        splits_activation=True,
        folds_batch_norm=True,
        fuses_activation=True,
        quantization=_separable_quantization,
    )


def _depthwise_role(layer):
    return Role(PER_UNIT, repeat=int(layer.depth_multiplier))


def narrow_depthwise_conv(layer, in_keep, out_keep):
    edit = LayerEdit(layer)
    if in_keep is not None:
        edit.slice("kernel", len(layer.kernel.shape) - 2, in_keep)
    if out_keep is not None and layer.bias is not None:
        edit.slice("bias", 0, out_keep)
    return edit


def depthwise_cost(call):
    layer = call.layer
    in_shape, out_shape = call.input_shapes[0], call.output_shapes[0]
    cin, multiplier = call.channels(in_shape), int(layer.depth_multiplier)
    macs = counting.depthwise_macs(call.spatial(out_shape), tuple(layer.kernel_size), cin,
                                   multiplier)
    return kernel_layer_cost(call, math.prod(layer.kernel_size) * cin * multiplier,
                             _uses_bias(layer) * cin * multiplier, cin * multiplier, macs,
                             CONV_QUANT_BYTES, _m4("depthwise", call, macs))


def depthwise_gradient_variance(layer, inputs, deltas):
    return variance.depthwise_gradient_variance_l1(layer, inputs, deltas)


for _conv, _quantization in (
    (keras.layers.DepthwiseConv1D,
     Quantization(UNSUPPORTED, reason="DepthwiseConv1D is not simulated in int8")),
    (keras.layers.DepthwiseConv2D, _kernel_quantization(channel_axes=2)),
):
    register(
        _conv,
        role=_depthwise_role,
        narrow=narrow_depthwise_conv,
        cost=depthwise_cost,
        splits_activation=True,
        gradient_variance=depthwise_gradient_variance,
        folds_batch_norm=True,
        fuses_activation=True,
        quantization=_quantization,
    )
