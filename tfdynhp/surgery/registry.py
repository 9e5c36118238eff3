"""Per-layer-type surgery: how a layer of each type is narrowed when some of its units go.

Three roles (Torch-Pruning calls the first two `prune_out_channels` / `prune_in_channels`):

- a *producer* creates units (Dense, GatedDense, SelectFeatures): narrowing keeps some of its
  output units;
- a *consumer* (GatedDense) reads units through its gates: narrowing keeps some input rows;
- a *per-unit* layer (BatchNormalization) holds one value per unit and is narrowed in passing;
- an *elementwise* layer (activations, dropout) is left alone.

Each function returns a `LayerEdit`: which variables to slice along which axis and which
attributes to set. Nothing is changed here; `tfdynhp.surgery.apply` applies edits atomically.
New layer types are added with `register_producer`, `register_consumer`, `register_per_unit`
and `register_elementwise`.
"""

import dataclasses

import keras
import numpy as np

from tfdynhp.layers import GatedDense, SelectFeatures

PRODUCER = "producer"
PER_UNIT = "per_unit"
ELEMENTWISE = "elementwise"

_PRODUCERS = {}
_CONSUMERS = {}
_PER_UNIT = {}
_ELEMENTWISE = set()


@dataclasses.dataclass
class LayerEdit:
    """Changes to one layer: `slices` maps a variable attribute to `{axis: kept indices}`;
    `attributes` maps a plain attribute to its new value."""

    layer: keras.layers.Layer
    slices: dict = dataclasses.field(default_factory=dict)
    attributes: dict = dataclasses.field(default_factory=dict)

    def slice(self, attribute, axis, keep):
        self.slices.setdefault(attribute, {})[axis] = np.asarray(keep, "int64")

    def merge(self, other):
        for attribute, axes in other.slices.items():
            self.slices.setdefault(attribute, {}).update(axes)
        self.attributes.update(other.attributes)


def _register(table, layer_type):
    def decorator(function):
        table[layer_type] = function
        return function

    return decorator


def register_producer(layer_type):
    """Registers `function(layer, keep) -> LayerEdit` keeping output units `keep`."""
    return _register(_PRODUCERS, layer_type)


def register_consumer(layer_type):
    """Registers `function(layer, keep) -> LayerEdit` keeping input units `keep`."""
    return _register(_CONSUMERS, layer_type)


def register_per_unit(layer_type):
    """Registers `function(layer, keep) -> LayerEdit` for a layer with per-unit state."""
    return _register(_PER_UNIT, layer_type)


def register_elementwise(*layer_types):
    """Registers layer types that act on each unit independently and hold no per-unit state."""
    _ELEMENTWISE.update(layer_types)


def _lookup(table, layer):
    for layer_type in type(layer).__mro__:
        if layer_type in table:
            return table[layer_type]
    return None


def kind_of(layer):
    """`PRODUCER`, `PER_UNIT`, `ELEMENTWISE` or None for a layer type surgery cannot cross."""
    if _lookup(_PRODUCERS, layer) is not None:
        return PRODUCER
    if _lookup(_PER_UNIT, layer) is not None:
        return PER_UNIT
    if any(isinstance(layer, t) for t in _ELEMENTWISE):
        return ELEMENTWISE
    return None


def supported_names():
    names = {t.__name__ for t in (*_PRODUCERS, *_PER_UNIT, *_ELEMENTWISE)}
    return ", ".join(sorted(names))


def producer_edit(layer, keep):
    return _lookup(_PRODUCERS, layer)(layer, keep)


def consumer_edit(layer, keep):
    function = _lookup(_CONSUMERS, layer)
    if function is None:
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) cannot drop inputs.")
    return function(layer, keep)


def per_unit_edit(layer, keep):
    return _lookup(_PER_UNIT, layer)(layer, keep)


def _input_metadata(ndim, units):
    return {
        "input_spec": keras.InputSpec(ndim=ndim, axes={-1: units}),
        "_build_shapes_dict": {"input_shape": (None,) * (ndim - 1) + (units,)},
    }


def _dense_output_edit(layer, keep, kernel_attribute):
    edit = LayerEdit(layer, attributes={"units": len(keep)})
    edit.slice(kernel_attribute, 1, keep)
    if layer.use_bias:
        edit.slice("bias", 0, keep)
    return edit


@register_producer(GatedDense)
def narrow_gated_dense_outputs(layer, keep):
    return _dense_output_edit(layer, keep, "kernel")


@register_consumer(GatedDense)
def narrow_gated_dense_inputs(layer, keep):
    edit = LayerEdit(layer, attributes=_input_metadata(2, len(keep)))
    for attribute in ("kernel", "log_alpha", "gate_active_count"):
        edit.slice(attribute, 0, keep)
    return edit


@register_producer(keras.layers.Dense)
def narrow_dense_outputs(layer, keep):
    if layer.quantization_mode or layer.lora_enabled:
        raise ValueError(f"Layer '{layer.name}' is quantized or uses LoRA; cannot narrow it.")
    return _dense_output_edit(layer, keep, "_kernel")


@register_producer(SelectFeatures)
def narrow_selected_features(layer, keep):
    current = np.arange(layer.input_spec.axes[-1]) if layer.indices is None else layer.indices
    return LayerEdit(layer, attributes={"indices": [int(i) for i in np.asarray(current)[keep]]})


@register_per_unit(keras.layers.BatchNormalization)
def narrow_batch_normalization(layer, keep):
    if layer.axis not in (-1, 1):
        raise ValueError(f"BatchNormalization '{layer.name}' must normalise the last axis.")
    edit = LayerEdit(layer, attributes=_input_metadata(2, len(keep)))
    for attribute in ("gamma", "beta", "moving_mean", "moving_variance"):
        if getattr(layer, attribute, None) is not None:
            edit.slice(attribute, 0, keep)
    return edit


register_elementwise(
    keras.layers.Activation,
    keras.layers.Dropout,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)
