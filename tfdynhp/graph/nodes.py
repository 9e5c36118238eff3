"""The layer calls of a functional or Sequential Keras model, in the order Keras runs them."""

import keras

from tfdynhp.validation import ConfigurationError


def functional_of(model):
    """The functional graph behind `model` (a Sequential model's inner Functional).

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ConfigurationError: (a `ValueError`) for a subclassed model or an unbuilt Sequential
            model, saying how to build one with a graph.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model. Received: {type(model).__name__}")
    inner = getattr(model, "_functional", None)
    graph_model = inner if isinstance(model, keras.Sequential) and inner is not None else model
    if isinstance(model, keras.Sequential) and inner is None:
        raise ConfigurationError(
            f"The Sequential model {model.name!r} is not built, so its layer shapes are "
            "unknown. Start it with `keras.Input(shape)` or call `model.build(input_shape)`."
        )
    if not hasattr(graph_model, "_nodes_by_depth") or not getattr(graph_model, "built", False):
        raise ConfigurationError(
            f"Expected a built functional or Sequential Keras model. Received {model.name!r} "
            f"({type(model).__name__}), whose layer calls are not recorded (subclassed models "
            "have no graph). Build it with the functional API (`keras.Model(inputs, outputs)`) "
            "or a Sequential model starting with `keras.Input`."
        )
    return graph_model


def graph_nodes(model):
    """The model's layer-call nodes in topological (execution) order, without input layers."""
    graph_model = functional_of(model)
    return [
        node
        for depth in sorted(graph_model._nodes_by_depth, reverse=True)
        for node in graph_model._nodes_by_depth[depth]
        if node.operation is not None and not node.is_input
    ]
