"""Running a functional model node by node to read, and differentiate, the tensors whose
channels are a group's units.

Data-driven criteria (Taylor, activation density, LRP) score a unit from the values it takes
where it is *read*: the input of every channel-mixing layer consuming the group, moved back
through `Flatten` and `Concatenate` until the tensor carries exactly the group's channels in
order (the places `tfdynhp.gate()` puts gates, `UnitGraph.gate_sites()`). A group read where
no such tensor exists gets no score (NaN: the unit is kept).
"""

import keras
import numpy as np
import tensorflow as tf

from tfdynhp.graph import units as graph_lib


def score_sites(unit_graph):
    """`{group name: [KerasTensor, ...]}`: the tensors of each prunable group's channels that
    channel-mixing layers read, each listed once."""
    sites = {}
    for tensor, _, group in unit_graph.gate_sites():
        tensors = sites.setdefault(group.name, [])
        if all(tensor is not t for t in tensors):
            tensors.append(tensor)
    return sites


def call_layer(node, values, training=False):
    """Calls `node`'s layer eagerly on the computed values of its inputs."""
    args, kwargs = node.arguments.fill_in(values)
    layer = node.operation
    if getattr(layer, "_call_has_training_arg", False):
        kwargs["training"] = training
    return keras.tree.flatten(layer(*args, **kwargs))


def forward(model, x, watch=(), tape=None):
    """Runs `model` on `x` in inference mode, node by node.

    Args:
        model: a built functional or Sequential model.
        x: one batch (an array, or a list of arrays for several inputs).
        watch: symbolic tensors of the model whose values `tape` should watch.
        tape: a `tf.GradientTape`, or None.

    Returns:
        `(outputs, values)`: the model's output values (a list) and `{id(symbolic tensor):
        value}` for every tensor of the graph.
    """
    graph_model = graph_lib.functional_of(model)
    xs = x if isinstance(x, (list, tuple)) else [x]
    values = {id(t): tf.convert_to_tensor(v, dtype=t.dtype) for t, v in zip(graph_model.inputs,
                                                                             xs)}
    watched = {id(t) for t in watch}
    for node in graph_lib.graph_nodes(model):
        for tensor, value in zip(node.outputs, call_layer(node, values)):
            values[id(tensor)] = value
            if tape is not None and id(tensor) in watched:
                tape.watch(value)
    return [values[id(t)] for t in graph_model.outputs], values


def per_channel(value, reduce="mean"):
    """`(batch, channels)`: `value` reduced over its spatial axes (all but first and last)."""
    value = tf.convert_to_tensor(value)
    if value.shape.rank <= 2:
        return value
    axes = list(range(1, value.shape.rank - 1))
    return tf.reduce_mean(value, axes) if reduce == "mean" else tf.reduce_sum(value, axes)


def batches(data, batch_size):
    """Yields `(x, y)` slices of `data` (`x`, or `(x, y)`); `y` is None without labels."""
    x, y = (data if isinstance(data, tuple) and len(data) == 2 else (data, None))
    x = np.asarray(x)
    n = len(x)
    for start in range(0, n, batch_size):
        yield x[start:start + batch_size], (None if y is None else np.asarray(y)[start:start
                                                                                 + batch_size])


def check_data(data, name, needs_labels=False):
    """Validates `data` for a criterion: arrays `x` or a tuple `(x, y)` of equal length."""
    if data is None:
        raise ValueError(
            f"Criterion '{name}' scores units from data; pass `data=x` or `data=(x, y)` "
            "(a few hundred examples are enough)."
        )
    if isinstance(data, list):
        data = tuple(data)
    x, y = (data if isinstance(data, tuple) and len(data) == 2 else (data, None))
    if needs_labels and y is None:
        raise ValueError(f"Criterion '{name}' needs labels: pass `data=(x, y)`.")
    if len(np.asarray(x)) == 0:
        raise ValueError(f"Criterion '{name}' received no examples (len(x) == 0).")
    if y is not None and len(np.asarray(y)) != len(np.asarray(x)):
        raise ValueError(f"`data=(x, y)` must have as many labels as examples. Received: "
                         f"{len(np.asarray(x))} examples and {len(np.asarray(y))} labels.")
    return (x, y) if y is not None else x


def example_count(data):
    x = data[0] if isinstance(data, tuple) else data
    return len(np.asarray(x))
