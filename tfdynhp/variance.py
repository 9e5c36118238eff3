"""Per-example gradient variance of dense layers without per-example gradients.

Balles, Romero & Hennig (2017), "Coupling adaptive batch sizes with learning rates": the
variance of the per-example gradients `g_i` in a mini-batch of size `B` is estimated as
`S = 1/(B-1) sum_i (g_i - g_mean)^2 = 1/(B-1) (sum_i g_i^2 - B g_mean^2)`. For a dense kernel the
per-example gradient is the outer product `outer(x_i, delta_i)` of the layer input and the
gradient of example i's loss with respect to the pre-activation, so
`sum_i g_i^2 = (x^2)^T (delta^2)`: one extra matmul, no `(B, n, m)` tensor.
"""

from keras import ops


def dense_gradient_variance_l1(inputs, deltas, use_bias=True):
    """Returns `||S||_1` of a dense layer's kernel (and bias) gradients over one mini-batch.

    Args:
        inputs: `(B, n)` inputs of the layer (after any input gating).
        deltas: `(B, m)` per-example gradients of each example's own loss with respect to the
            layer's pre-activation output (not divided by the batch size).
        use_bias: whether to add the bias gradients' variance.

    Returns:
        A scalar: the sum over all kernel (and bias) entries of the unbiased variance of the
        per-example gradients. Zero for a batch of one example.
    """
    batch = ops.cast(ops.shape(inputs)[0], inputs.dtype)
    mean_kernel = ops.matmul(ops.transpose(inputs), deltas) / batch
    sum_sq_kernel = ops.matmul(ops.transpose(ops.square(inputs)), ops.square(deltas))
    total = ops.sum(ops.relu(sum_sq_kernel - batch * ops.square(mean_kernel)))
    if use_bias:
        mean_bias = ops.mean(deltas, axis=0)
        sum_sq_bias = ops.sum(ops.square(deltas), axis=0)
        total = total + ops.sum(ops.relu(sum_sq_bias - batch * ops.square(mean_bias)))
    return ops.divide_no_nan(total, batch - 1.0)
