"""Layer-wise relevance propagation (Bach et al. 2015), epsilon rule, over a functional graph.

Relevance starts at the model output as the pre-softmax score of the target class and flows
back layer by layer. An affine or piecewise-linear layer `z = f(a)` (Dense, Conv,
DepthwiseConv, pooling, Add, Flatten, BatchNormalization, gates) redistributes it with the
epsilon rule

    R_a = a * J_f(a)^T [R_z / (z + epsilon * sign(z))]

(the gradient-times-input form; for Dense, `R_i = sum_j a_i w_ij R_j / (z_j + eps)`; max
pooling sends a window's relevance to its winner, average pooling shares it). Elementwise
nonlinearities (ReLU, the activation inside Dense or Conv, Softmax) pass relevance on
unchanged. A BatchNormalization directly after a Dense or Conv with no activation in between
is folded into it: the pair is one affine map and the rule's denominator is the normalized
output.

The alpha-beta rule (`rule="alpha_beta"`, Bach et al. eq. 60) replaces the epsilon rule in
Dense and Conv layers (BatchNormalization folded into the kernel; biases ignored):
`R_i = sum_j (alpha z_ij+ / z_j+ - beta z_ij- / z_j-) R_j`, with `z_ij = a_i w_ij` split by
sign and `alpha - beta = 1`; other layers keep the epsilon rule. Used by `tfdynhp.policies.criteria.LRP` and task specialization (Balemans et al.).
"""

import keras
import tensorflow as tf

from tfdynhp.graph import probes
from tfdynhp.graph import units as graph_lib
from tfdynhp.layer_types import registry as layer_types


def _activation_free(layer, fn):
    """Calls `fn()` with `layer.activation` set to linear (restored afterwards)."""
    activation = getattr(layer, "activation", None)
    if activation is None or activation is keras.activations.linear:
        return fn()
    layer.activation = keras.activations.linear
    try:
        return fn()
    finally:
        layer.activation = activation


def _stabilize(z, epsilon):
    sign = tf.where(z >= 0, tf.ones_like(z), -tf.ones_like(z))
    return z + epsilon * sign


def _folds(nodes):
    """`{id(producer node): batch-norm node}` for BatchNormalization directly after a layer
    with weights and a linear activation, read by nothing else."""
    readers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            readers.setdefault(id(tensor), []).append(node)
    producers = {id(t): node for node in nodes for t in node.outputs}
    folds = {}
    for node in nodes:
        if not isinstance(node.operation, keras.layers.BatchNormalization):
            continue
        producer = producers.get(id(node.input_tensors[0]))
        if producer is None or not layer_types.folds_batch_norm(producer.operation):
            continue
        activation = getattr(producer.operation, "activation", keras.activations.linear)
        if activation not in (None, keras.activations.linear):
            continue
        if len(readers.get(id(producer.outputs[0]), [])) == 1:
            folds[id(producer)] = node
    return folds


def _folded_kernel(layer, bn):
    kernel = tf.convert_to_tensor(layer.kernel)
    if bn is None:
        return kernel
    scale = 1.0 / tf.sqrt(tf.convert_to_tensor(bn.moving_variance) + bn.epsilon)
    if bn.scale:
        scale = scale * tf.convert_to_tensor(bn.gamma)
    return kernel * scale


def _alpha_beta(layer, bn, a, r_out, alpha, beta):
    kernel = _folded_kernel(layer, bn)
    kp, kn = tf.maximum(kernel, 0.0), tf.minimum(kernel, 0.0)
    ap, an = tf.maximum(a, 0.0), tf.minimum(a, 0.0)
    with tf.GradientTape() as tape:
        tape.watch([ap, an])
        linear_map = layer_types.linear_map(layer)
        zp = linear_map(layer, ap, kp) + linear_map(layer, an, kn)
        zn = linear_map(layer, ap, kn) + linear_map(layer, an, kp)
        tiny = 1e-12
        sp = tf.stop_gradient(alpha * r_out / (zp + tiny))
        sn = tf.stop_gradient(beta * r_out / (zn - tiny))
        objective = tf.reduce_sum(zp * sp) - tf.reduce_sum(zn * sn)
    gp, gn = tape.gradient(objective, [ap, an])
    return ap * gp + an * gn


def relevance(model, x, tensors, target=None, epsilon=1e-3, rule="epsilon", alpha=1.0,
              beta=0.0):
    """Relevance reaching each of `tensors` for one batch `x`.

    Args:
        model: a built functional or Sequential model.
        x: a batch of inputs.
        tensors: symbolic tensors of the model (e.g. `probes.score_sites`).
        target: class index per example; defaults to the predicted class.
        epsilon: the epsilon rule's stabilizer. Defaults to `1e-3`.
        rule: "epsilon", or "alpha_beta" for Dense and Conv layers. Defaults to "epsilon".
        alpha, beta: the alpha-beta rule's weights (`alpha - beta = 1`). Defaults to 1, 0.

    Returns:
        `{id(tensor): relevance value}` of the tensor's shape (batch included).
    """
    nodes = graph_lib.graph_nodes(model)
    graph_model = graph_lib.functional_of(model)
    if len(graph_model.outputs) != 1:
        raise ValueError("LRP needs a model with one output.")
    _, values = probes.forward(model, x)
    folds = _folds(nodes)
    folded = {id(bn) for bn in folds.values()}
    output = graph_model.outputs[0]
    out_node = nodes[-1] if any(output is t for t in nodes[-1].outputs) else next(
        n for n in nodes if any(output is t for t in n.outputs))
    # Start from the pre-softmax score of the target class.
    if layer_types.relevance_rule(out_node.operation) == "pass":
        logits = values[id(out_node.input_tensors[0])]
    else:
        logits = _activation_free(out_node.operation,
                                  lambda: probes.call_layer(out_node, values)[0])
    logits = tf.reshape(logits, (tf.shape(logits)[0], -1))
    if target is None:
        target = tf.argmax(values[id(output)], axis=-1)
    target = tf.cast(tf.reshape(tf.convert_to_tensor(target), [-1]), tf.int32)
    mask = tf.one_hot(target, logits.shape[-1], dtype=logits.dtype)
    relevances = {id(output): tf.reshape(mask * logits, tf.shape(values[id(output)]))}
    for node in reversed(nodes):
        r_out = relevances.get(id(node.outputs[0]))
        if r_out is None or len(node.outputs) != 1:
            continue
        layer = node.operation
        inputs = node.input_tensors
        if layer_types.relevance_rule(layer) == "pass" or id(node) in folded:
            r_in = [r_out]
        elif (rule == "alpha_beta" and layer_types.linear_map(layer) is not None
              and len(inputs) == 1):
            bn_node = folds.get(id(node))
            r_in = [_alpha_beta(layer, None if bn_node is None else bn_node.operation,
                                values[id(inputs[0])], r_out, alpha, beta)]
        else:
            in_values = [values[id(t)] for t in inputs]
            bn_node = folds.get(id(node))
            with tf.GradientTape() as tape:
                tape.watch(in_values)
                local = {id(t): v for t, v in zip(inputs, in_values)}
                z = _activation_free(layer, lambda: probes.call_layer(node, local)[0])  # noqa: B023
                if bn_node is not None:
                    z = probes.call_layer(bn_node, {id(bn_node.input_tensors[0]): z})[0]
            s = tf.stop_gradient(r_out / _stabilize(z, epsilon))
            grads = tape.gradient(z, in_values, output_gradients=s)
            r_in = [a * (g if g is not None else tf.zeros_like(a))
                    for a, g in zip(in_values, grads)]
        for tensor, r in zip(inputs, r_in):
            key = id(tensor)
            relevances[key] = relevances[key] + r if key in relevances else r
    wanted = {id(t) for t in tensors}
    return {key: value for key, value in relevances.items() if key in wanted}
