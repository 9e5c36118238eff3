"""Per-example gradient variance of Dense and convolution layers without a per-example loop.

Balles, Romero & Hennig (2017), "Coupling adaptive batch sizes with learning rates": the
variance of the per-example gradients `g_i` in a mini-batch of size `B` is estimated as
`S = 1/(B-1) sum_i (g_i - g_mean)^2 = 1/(B-1) (sum_i g_i^2 - B g_mean^2)`.

- Dense on `(B, n)` inputs: example i's kernel gradient is the outer product
  `outer(x_i, delta_i)` of the layer input and the gradient of example i's loss at the
  pre-activation, so `sum_i g_i^2 = (x^2)^T (delta^2)`: one extra matmul.
- Dense on `(B, T, n)` inputs and convolutions: example i's kernel gradient sums an outer
  product over output positions, `g_i = P_i^T D_i` with `P_i` the input patches (`(T, n)`,
  or `(positions, k*k*c_in)` from `tf.image.extract_patches`) and `D_i` the deltas; the
  per-example gradients are formed with one batched matmul, `(B, n, m)` values.
- DepthwiseConv2D: the same per channel, `(B, k*k, c, m)` values.

The estimate assumes examples are independent; with BatchNormalization in training mode they
are coupled through the batch statistics and `delta_i` is no longer example i's own gradient:
on the small CNN of `tests/test_variance.py` the estimate is 2.3% above a per-example loop.

Which layer types have a tap is said by their entry in `tfdynhp.layer_types`; not covered
today (their parameters add nothing to `||S||_1`): SeparableConv, Conv3D, transposed
convolutions, and layers with a fused activation (`tfdynhp.gate()` splits activations off).
"""

import tensorflow as tf
from keras import ops


def _variance_from_sums(sum_sq, mean, batch):
    """`||S||_1` from `sum_i g_i^2` and `g_mean`, for one variable."""
    return ops.sum(ops.relu(sum_sq - batch * ops.square(mean)))


def dense_gradient_variance_l1(inputs, deltas, use_bias=True):
    """Returns `||S||_1` of a dense layer's kernel (and bias) gradients over one mini-batch.

    Args:
        inputs: `(B, n)` or `(B, ..., n)` inputs of the layer.
        deltas: `(B, m)` or `(B, ..., m)` per-example gradients of each example's own loss
            with respect to the layer's pre-activation output (not divided by the batch size).
        use_bias: whether to add the bias gradients' variance.

    Returns:
        A scalar: the sum over all kernel (and bias) entries of the unbiased variance of the
        per-example gradients. Zero for a batch of one example.
    """
    batch = ops.cast(ops.shape(inputs)[0], inputs.dtype)
    if len(inputs.shape) == 2:
        mean_kernel = ops.matmul(ops.transpose(inputs), deltas) / batch
        sum_sq_kernel = ops.matmul(ops.transpose(ops.square(inputs)), ops.square(deltas))
        total = _variance_from_sums(sum_sq_kernel, mean_kernel, batch)
        bias_grads = deltas
    else:
        inputs = ops.reshape(inputs, (ops.shape(inputs)[0], -1, inputs.shape[-1]))
        deltas = ops.reshape(deltas, (ops.shape(deltas)[0], -1, deltas.shape[-1]))
        total = _per_example_variance(ops.einsum("btn,btm->bnm", inputs, deltas), batch)
        bias_grads = ops.sum(deltas, axis=1)
    if use_bias:
        total = total + _per_example_variance(bias_grads, batch)
    return ops.divide_no_nan(total, batch - 1.0)


def _per_example_variance(per_example, batch):
    """`(B-1) ||S||_1` from per-example gradients `(B, ...)`."""
    mean = ops.mean(per_example, axis=0)
    return _variance_from_sums(ops.sum(ops.square(per_example), axis=0), mean, batch)


def _patches_2d(inputs, kernel_size, strides, dilation_rate, padding):
    """Input patches of a 2-D convolution, `(B, positions, kh*kw*c_in)`."""
    patches = tf.image.extract_patches(
        inputs,
        sizes=[1, *kernel_size, 1],
        strides=[1, *strides, 1],
        rates=[1, *dilation_rate, 1],
        padding=padding.upper(),
    )
    return ops.reshape(patches, (ops.shape(inputs)[0], -1, patches.shape[-1]))


def _as_2d(layer, inputs, deltas):
    """A 1-D convolution's inputs, deltas and geometry as a 2-D one of height 1."""
    if len(inputs.shape) == 3:
        return (
            ops.expand_dims(inputs, 1),
            ops.expand_dims(deltas, 1),
            (1, *layer.kernel_size),
            (1, *layer.strides),
            (1, *layer.dilation_rate),
        )
    return inputs, deltas, layer.kernel_size, layer.strides, layer.dilation_rate


def conv_gradient_variance_l1(layer, inputs, deltas):
    """`||S||_1` of a Conv1D / Conv2D layer's kernel (and bias) gradients.

    Args:
        layer: the convolution (its kernel size, strides, dilation, padding, bias).
        inputs: `(B, ..., c_in)` inputs of the layer.
        deltas: `(B, ..., c_out)` per-example gradients at its pre-activation output.
    """
    if layer.padding == "causal":
        raise ValueError(f"Causal padding is not supported by the variance estimate "
                         f"('{layer.name}').")
    inputs, deltas, kernel, strides, dilation = _as_2d(layer, inputs, deltas)
    batch = ops.cast(ops.shape(inputs)[0], inputs.dtype)
    patches = _patches_2d(inputs, kernel, strides, dilation, layer.padding)
    deltas = ops.reshape(deltas, (ops.shape(deltas)[0], -1, deltas.shape[-1]))
    total = _per_example_variance(ops.einsum("bpk,bpo->bko", patches, deltas), batch)
    if layer.use_bias:
        total = total + _per_example_variance(ops.sum(deltas, axis=1), batch)
    return ops.divide_no_nan(total, batch - 1.0)


def depthwise_gradient_variance_l1(layer, inputs, deltas):
    """`||S||_1` of a DepthwiseConv1D / DepthwiseConv2D layer's kernel (and bias) gradients."""
    inputs, deltas, kernel, strides, dilation = _as_2d(layer, inputs, deltas)
    batch = ops.cast(ops.shape(inputs)[0], inputs.dtype)
    channels, multiplier = inputs.shape[-1], layer.depth_multiplier
    patches = _patches_2d(inputs, kernel, strides, dilation, layer.padding)
    patches = ops.reshape(patches, (ops.shape(inputs)[0], ops.shape(patches)[1], -1, channels))
    deltas = ops.reshape(deltas, (ops.shape(deltas)[0], -1, channels, multiplier))
    total = _per_example_variance(ops.einsum("bpkc,bpcm->bkcm", patches, deltas), batch)
    if layer.use_bias:
        total = total + _per_example_variance(ops.sum(deltas, axis=1), batch)
    return ops.divide_no_nan(total, batch - 1.0)
