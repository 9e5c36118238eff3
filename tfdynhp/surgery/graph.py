"""The layer graph DynHP can prune: a chain of layers, and the groups of coupled layers that
share one set of units (a producer, per-unit layers after it, and the gated consumer)."""

import dataclasses

import keras

from tfdynhp.layers import GatedDense
from tfdynhp.surgery import registry


@dataclasses.dataclass(frozen=True)
class UnitGroup:
    """Layers coupled through the input units of one gated `consumer`.

    Removing input unit j of `consumer` removes output unit j of `producer` and unit j of every
    layer in `per_unit` (e.g. BatchNormalization); `elementwise` layers need no change.
    """

    consumer: keras.layers.Layer
    producer: keras.layers.Layer
    per_unit: tuple = ()
    elementwise: tuple = ()

    @property
    def units(self):
        return self.consumer.input_units


def _inbound_layer(layer):
    """The single layer feeding `layer`, or None for the model input."""
    nodes = layer._inbound_nodes
    if len(nodes) != 1:
        raise ValueError(
            f"Layer '{layer.name}' is called {len(nodes)} times; shared layers are not "
            "supported. Use a separate layer for each call."
        )
    inputs = nodes[0].input_tensors
    if len(inputs) != 1:
        raise ValueError(
            f"Layer '{layer.name}' has {len(inputs)} inputs; only a chain of single-input "
            "layers is supported (no branches or merges)."
        )
    history = inputs[0]._keras_history
    parent = history.operation
    return None if isinstance(parent, keras.layers.InputLayer) else parent


def layer_chain(model):
    """The layers of `model` from input to output, checked to form a single chain.

    Raises:
        ValueError: for a model that is not built, has several inputs or outputs, branches,
            merges, or calls a layer more than once.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model. Received: {type(model).__name__}")
    if not model.built or not hasattr(model, "inputs") or model.inputs is None:
        raise ValueError(
            f"Model '{model.name}' is not built. Build it first, e.g. with an `keras.Input` "
            "as its first layer or by calling it on a batch."
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Model '{model.name}' has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; only single-input, single-output chains are supported."
        )
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    previous = None
    for layer in layers:
        parent = _inbound_layer(layer)
        if parent is not previous:
            raise ValueError(
                f"Layer '{layer.name}' takes its input from "
                f"'{getattr(parent, 'name', 'the model input')}', not from the layer before it; "
                "branches and skip connections are not supported yet."
            )
        previous = layer
    if layers and model.outputs[0]._keras_history.operation is not layers[-1]:
        raise ValueError(f"Model '{model.name}' does not end with its last layer.")
    return layers


def gated_layers(model):
    """The `GatedDense` layers of `model`, input to output."""
    return [layer for layer in model.layers if isinstance(layer, GatedDense)]


def unit_groups(model):
    """One `UnitGroup` per gated layer, walking back from it to the layer that produces its
    input units.

    Raises:
        ValueError: when a layer between a gated layer and its producer is of a type whose
            units cannot be followed (see `tfdynhp.surgery.registry`).
    """
    chain = layer_chain(model)
    groups = []
    for position, layer in enumerate(chain):
        if not isinstance(layer, GatedDense):
            continue
        per_unit, elementwise = [], []
        for candidate in reversed(chain[:position]):
            kind = registry.kind_of(candidate)
            if kind == registry.PRODUCER:
                groups.append(
                    UnitGroup(layer, candidate, tuple(reversed(per_unit)), tuple(elementwise))
                )
                break
            if kind == registry.PER_UNIT:
                per_unit.append(candidate)
            elif kind == registry.ELEMENTWISE:
                elementwise.append(candidate)
            else:
                raise ValueError(
                    f"Cannot follow the input units of '{layer.name}' through layer "
                    f"'{candidate.name}' ({type(candidate).__name__}). Supported between "
                    f"units: {registry.supported_names()}."
                )
        else:
            raise ValueError(
                f"Gated layer '{layer.name}' has no layer producing its input units. "
                "Build the model with `tfdynhp.gate(model)`, which adds a `SelectFeatures` "
                "layer for the input features."
            )
    return groups


def refresh_symbolic_shapes(model):
    """Re-derives the shapes of the model's symbolic tensors after surgery, so that
    `model.summary()` and `layer.output.shape` show the narrowed widths."""
    shape = tuple(model.inputs[0].shape)
    for layer in layer_chain(model):
        shape = tuple(layer.compute_output_shape(shape))
        for node in layer._inbound_nodes:
            for tensor in node.output_tensors:
                tensor._shape = shape
