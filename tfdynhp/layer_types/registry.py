"""Per-layer-type rules: how channels flow through a layer, and how the layer is narrowed.

Every layer type has a *role* in the dependency graph of coupled channels
(`tfdynhp.graph.units`), and, if it holds per-channel state, an *edit* that narrows it:

- `MIXING` layers (Dense, Conv1D/2D/3D, SeparableConv1D/2D) combine all input channels into
  new output channels: they consume channels (narrowing drops kernel rows) and produce new ones
  (narrowing drops kernel columns and biases). Torch-Pruning calls the two halves
  `prune_in_channels` / `prune_out_channels`.
- `SELECT` (`SelectFeatures`) produces the model's input features as prunable units.
- `PER_UNIT` layers (BatchNormalization, gates, DepthwiseConv2D) hold one value per channel and
  map channel `c` to channel `c` (DepthwiseConv2D with a depth multiplier `m` maps it to
  channels `c*m .. c*m + m-1`).
- `PASS` layers (activations, dropout, pooling, padding, cropping, up-sampling, global pooling,
  reshapes that keep the last axis) treat channels independently and hold no per-channel state.
- `FLATTEN` (Flatten, Reshape to one axis): channels-last, channel `c` of an `H x W x C` map
  becomes features `(h*W + w)*C + c`.
- `MERGE` (Add, Subtract, Multiply, Average, Maximum, Minimum): the channels of every input are
  coupled one to one; `CONCAT` (Concatenate on the channel axis) places each input at its offset.
- `BARRIER`: anything that mixes channels in a way surgery cannot follow (Softmax over channels,
  LayerNormalization, attention, grouped convolutions, `channels_first`, unknown layers): the
  channels on both sides are kept whole ("pinned"), and the reason is reported.

Edits are `LayerEdit`s: which variables to slice along which axis and which attributes to set.
Nothing is changed here; `tfdynhp.surgery.apply` applies edits atomically. New layer types are
added with `register(layer_type, role, edit)`.
"""

import dataclasses

import keras
import numpy as np

from tfdynhp.layer_types.kinds import SPATIAL_RESIZING
from tfdynhp.layers.gate import HardConcreteGate, SelectFeatures

MIXING = "mixing"
SELECT = "select"
PER_UNIT = "per_unit"
PASS = "pass"
FLATTEN = "flatten"
MERGE = "merge"
CONCAT = "concat"
BARRIER = "barrier"
ROLES = (MIXING, SELECT, PER_UNIT, PASS, FLATTEN, MERGE, CONCAT, BARRIER)

_CHANNEL_MIXING_ACTIVATIONS = ("softmax", "log_softmax")
_HOMOGENEOUS_ACTIVATIONS = ("relu", "linear", "leaky_relu")


@dataclasses.dataclass
class LayerEdit:
    """Changes to one layer: `slices` maps a variable attribute to `{axis: kept indices}`;
    `attributes` maps a plain attribute to its new value."""

    layer: keras.layers.Layer
    slices: dict = dataclasses.field(default_factory=dict)
    attributes: dict = dataclasses.field(default_factory=dict)

    def slice(self, attribute, axis, keep):
        self.slices.setdefault(attribute, {})[axis] = np.asarray(keep, "int64")


@dataclasses.dataclass(frozen=True)
class Role:
    """A layer's role; `repeat` is DepthwiseConv2D's depth multiplier, `reason` why a layer
    is a barrier. A `passthrough` barrier (Softmax over channels) keeps the channels it
    pins: its output carries its input's units. A `homogeneous` PASS layer commutes with
    scaling a channel by `z >= 0` (`f(z x) = z f(x)`: ReLU, pooling, padding, dropout), so a
    gate may sit on either side of it."""

    name: str
    repeat: int = 1
    reason: str = ""
    passthrough: bool = False
    homogeneous: bool = False


@dataclasses.dataclass(frozen=True)
class _Rule:
    role: object  # a role name, or `callable(layer) -> Role`
    edit: object  # `callable(layer, in_keep, out_keep) -> LayerEdit`, or None


_RULES = {}


def register(layer_type, role, edit=None):
    """Registers how `layer_type` (and its subclasses) takes part in surgery.

    Args:
        layer_type: a `keras.layers.Layer` subclass.
        role: one of `ROLES`, a `Role`, or `callable(layer) -> Role` deciding from the
            layer's config.
        edit: `callable(layer, in_keep, out_keep) -> LayerEdit` for layers with per-channel
            state; `in_keep` / `out_keep` are the kept positions of the last axis of the
            layer's input / output, or `None` when that side does not change.
    """
    if isinstance(role, Role) or callable(role) or role in ROLES:
        _RULES[layer_type] = _Rule(role, edit)
        return
    raise ValueError(f"Unknown role {role!r}. Expected one of {ROLES} or a callable.")


def _lookup(layer):
    for layer_type in type(layer).__mro__:
        if layer_type in _RULES:
            return _RULES[layer_type]
    return None


def role_of(layer):
    """The `Role` of `layer`; unknown layer types are barriers."""
    rule = _lookup(layer)
    if rule is None:
        return Role(BARRIER, reason=f"tfdynhp has no surgery rule for {type(layer).__name__}")
    if isinstance(rule.role, Role):
        role = rule.role
    else:
        role = rule.role(layer) if callable(rule.role) else Role(rule.role)
    if role.name != BARRIER and getattr(layer, "data_format", "channels_last") == "channels_first":
        return Role(BARRIER, reason="data_format='channels_first' (only channels_last is handled)")
    return role


def edit_for(layer, in_keep, out_keep):
    """The `LayerEdit` narrowing `layer`, or None for a layer without per-channel state."""
    rule = _lookup(layer)
    if rule is None or rule.edit is None:
        return None
    return rule.edit(layer, in_keep, out_keep)


def supported_names():
    return ", ".join(sorted(t.__name__ for t in _RULES))


# -- mixing layers ----------------------------------------------------------------------------


def _mixing_role(layer):
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        return Role(BARRIER, reason="quantized or LoRA layer")
    if getattr(layer, "groups", 1) != 1:
        return Role(BARRIER, reason=f"grouped convolution (groups={layer.groups})")
    return Role(MIXING)


def _narrow_kernel_layer(layer, in_keep, out_keep, kernel_attribute, width_attribute):
    edit = LayerEdit(layer)
    kernel = getattr(layer, kernel_attribute)
    in_axis, out_axis = len(kernel.shape) - 2, len(kernel.shape) - 1
    if in_keep is not None:
        edit.slice(kernel_attribute, in_axis, in_keep)
    if out_keep is not None:
        edit.slice(kernel_attribute, out_axis, out_keep)
        if layer.bias is not None:
            edit.slice("bias", 0, out_keep)
        edit.attributes[width_attribute] = len(out_keep)
    return edit


def narrow_dense(layer, in_keep, out_keep):
    return _narrow_kernel_layer(layer, in_keep, out_keep, "_kernel", "units")


def narrow_conv(layer, in_keep, out_keep):
    return _narrow_kernel_layer(layer, in_keep, out_keep, "_kernel", "filters")


def narrow_separable_conv(layer, in_keep, out_keep):
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


register(keras.layers.Dense, _mixing_role, narrow_dense)
for _conv in (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D):
    register(_conv, _mixing_role, narrow_conv)
for _conv in (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D):
    register(_conv, _mixing_role, narrow_separable_conv)


def narrow_selected_features(layer, in_keep, out_keep):
    if out_keep is None:
        return None
    current = np.arange(layer.input_features) if layer.indices is None else layer.indices
    return LayerEdit(layer, attributes={"indices": [int(i) for i in np.asarray(current)[out_keep]]})


register(SelectFeatures, SELECT, narrow_selected_features)


# -- per-unit layers --------------------------------------------------------------------------


def _batch_normalization_role(layer):
    axis = layer.axis if isinstance(layer.axis, int) else None
    if isinstance(layer.axis, (list, tuple)) and len(layer.axis) == 1:
        axis = layer.axis[0]
    rank = len(layer.input.shape) if layer._inbound_nodes else None
    if axis == -1 or (rank is not None and axis == rank - 1):
        return Role(PER_UNIT)
    return Role(BARRIER, reason=f"normalises axis {layer.axis}, not the channel axis")


def narrow_batch_normalization(layer, in_keep, out_keep):
    if in_keep is None:
        return None
    edit = LayerEdit(layer)
    for attribute in ("gamma", "beta", "moving_mean", "moving_variance"):
        if getattr(layer, attribute, None) is not None:
            edit.slice(attribute, 0, in_keep)
    return edit


def narrow_gate(layer, in_keep, out_keep):
    if in_keep is None:
        return None
    edit = LayerEdit(layer)
    for attribute in ("log_alpha", "gate_active_count", "gate_first_moment",
                      "gate_second_moment"):
        edit.slice(attribute, 0, in_keep)
    return edit


def _depthwise_role(layer):
    return Role(PER_UNIT, repeat=int(layer.depth_multiplier))


def narrow_depthwise_conv(layer, in_keep, out_keep):
    edit = LayerEdit(layer)
    if in_keep is not None:
        edit.slice("kernel", len(layer.kernel.shape) - 2, in_keep)
    if out_keep is not None and layer.bias is not None:
        edit.slice("bias", 0, out_keep)
    return edit


register(keras.layers.BatchNormalization, _batch_normalization_role, narrow_batch_normalization)
register(HardConcreteGate, PER_UNIT, narrow_gate)
for _conv in (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D):
    register(_conv, _depthwise_role, narrow_depthwise_conv)


# -- layers without per-channel state -----------------------------------------------------------


def _activation_role(layer):
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name in _CHANNEL_MIXING_ACTIVATIONS:
        return Role(BARRIER, reason=f"'{name}' mixes the channels", passthrough=True)
    return Role(PASS, homogeneous=name in _HOMOGENEOUS_ACTIVATIONS)


def _channel_mixing_role(layer):
    return Role(BARRIER, reason=f"{type(layer).__name__} mixes the channels", passthrough=True)


def _reshape_role(layer):
    target = tuple(layer.target_shape)
    in_shape = tuple(layer.input.shape[1:]) if layer._inbound_nodes else None
    if len(target) == 1:
        return Role(FLATTEN)
    if in_shape is not None and target[-1] == in_shape[-1] and target[-1] != -1:
        return Role(PASS, homogeneous=True)
    return Role(BARRIER, reason=f"reshape to {target} moves the channel axis")


def narrow_reshape(layer, in_keep, out_keep):
    if out_keep is None:
        return None
    target = list(layer.target_shape)
    if len(target) == 1:
        target = [-1] if target[0] == -1 else [len(out_keep)]
    else:
        target[-1] = len(out_keep)
    return LayerEdit(layer, attributes={"target_shape": tuple(target)})


def _concatenate_role(layer):
    rank = len(layer.output.shape) if layer._inbound_nodes else None
    if layer.axis == -1 or (rank is not None and layer.axis == rank - 1):
        return Role(CONCAT)
    return Role(MERGE)


register(keras.layers.Activation, _activation_role)
register(keras.layers.Softmax, _channel_mixing_role)
register(keras.layers.LayerNormalization, _channel_mixing_role)
register(keras.layers.UnitNormalization, _channel_mixing_role)
register(keras.layers.Reshape, _reshape_role, narrow_reshape)
register(keras.layers.Flatten, FLATTEN)
register(keras.layers.Concatenate, _concatenate_role)
for _merge in (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
):
    register(_merge, MERGE)
_HOMOGENEOUS = Role(PASS, homogeneous=True)


def _homogeneous_relu(layer):
    # ReLU(max_value=6) clips: not homogeneous, though it maps 0 to 0.
    return Role(PASS, homogeneous=getattr(layer, "max_value", None) is None
                and not getattr(layer, "threshold", 0.0))


register(keras.layers.ReLU, _homogeneous_relu)
for _pass in (keras.layers.ELU, keras.layers.GaussianNoise, keras.layers.AlphaDropout):
    register(_pass, PASS)
for _pass in (
    keras.layers.LeakyReLU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    *SPATIAL_RESIZING,
):
    register(_pass, _HOMOGENEOUS)
