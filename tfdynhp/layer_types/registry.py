"""One entry per Keras layer type: everything tfdynhp knows about it, in one place.

A `LayerType` says, for one layer class (and its subclasses):

- its **role** in the graph of coupled channels (`tfdynhp.graph`):
  - `MIXING` layers (Dense, Conv, transposed and separable convolutions) combine all input
    channels into new output channels: they consume channels (narrowing drops kernel rows)
    and produce new ones (narrowing drops kernel columns and biases); Torch-Pruning calls the
    two halves `prune_in_channels` / `prune_out_channels`;
  - `SELECT` (`SelectFeatures`) produces the model's input features as prunable units;
  - `PER_UNIT` layers (BatchNormalization, gates, DepthwiseConv) hold one value per channel
    and map channel `c` to channel `c` (a depth multiplier `m` maps it to `c*m .. c*m+m-1`);
  - `PASS` layers (activations, dropout, pooling, padding, global pooling, reshapes that keep
    the last axis) treat channels independently and hold no per-channel state; a
    `homogeneous` one commutes with scaling a channel by `z >= 0`, so a gate may sit on
    either side of it;
  - `FLATTEN` (Flatten, Reshape to one axis): channel `c` of an `H x W x C` map becomes
    features `(h*W + w)*C + c`;
  - `MERGE` (Add, Multiply, ...) couples the channels of its inputs one to one; `CONCAT`
    (Concatenate on the channel axis) places each input at its offset;
  - `BARRIER`: anything surgery cannot follow (Softmax over channels, LayerNormalization,
    grouped convolutions, `channels_first`, unknown layers): the channels on both sides are
    kept whole ("pinned") and the reason is reported;
- its **surgery edit** (`narrow`): which variables to slice, along which axis, when its input
  and output channels shrink;
- its **cost** (`cost`): parameters, multiply-accumulates, other operations and int8 bytes of
  one call, from the call's shapes, so the same function prices the model now and after
  planned keep-masks (`tfdynhp.costs`);
- its **kernels** (`kernels`): the weights creating its output channels and reading its input
  channels (magnitude criteria; `strip()` folds gates into the kernel rows);
- its **relevance rule** for LRP (`relevance`): `"linear"` (epsilon rule on the layer's
  linear map), `"pass"` (elementwise nonlinearities and identities pass relevance on), with
  `linear_map` for the alpha-beta rule;
- whether `gate()` **splits its fused activation** off (`splits_activation`), so its output is
  the pre-activation the gradient-variance estimate needs;
- its **gradient-variance tap** (`gradient_variance`): `||S||_1` of its parameters' per-example
  gradients from its inputs and output deltas (`tfdynhp.math.gradient_variance`);
- what TFLite fuses into it: a following BatchNormalization (`folds_batch_norm`) or
  ReLU/ReLU6 (`fuses_activation`);
- how the TFLite converter and TFLite Micro quantize it to int8 (`quantization`, a
  `Quantization`: per-channel int8 kernel, output on its input's scale, output with its own
  scale, output range fixed by TFLite, ...), which `tfdynhp.quantization` simulates.

- how `gate()` and `strip()` **clone** it (`clone`): by default a layer is rebuilt from its
  config; a `Lambda` (whose config Keras refuses to load back) is rebuilt from its function,
  and an operation node (a `keras.ops` call in a functional graph, such as `x + 3.0`) is
  copied.

Entries are looked up by the class of a node's *operation*, so the `keras.ops` calls of a
functional graph (classes of `keras.src.ops`, e.g. the `Add` of `x + 3.0`) have entries too
(`operations.py`): elementwise ones with scalar or broadcast constants carry channels through,
two tensors are merged, and an operation without an entry pins its channels with the reason.

Built-in layers register through the same `register` call a user makes for a custom layer;
an unregistered layer is a barrier counted with its `count_params()` and 0 MACs.
"""

import copy
import dataclasses
import math

import keras

MIXING = "mixing"
SELECT = "select"
PER_UNIT = "per_unit"
PASS = "pass"
FLATTEN = "flatten"
MERGE = "merge"
CONCAT = "concat"
BARRIER = "barrier"
ROLES = (MIXING, SELECT, PER_UNIT, PASS, FLATTEN, MERGE, CONCAT, BARRIER)
RELEVANCE_RULES = ("linear", "pass")

# How TFLite quantizes a layer to int8 (`Quantization.kind`).
KERNEL = "kernel"
SAME_SCALE = "same_scale"
REQUANTIZE = "requantize"
FIXED_RANGE = "fixed_range"
FOLDED = "folded"
REMOVED = "removed"
DECOMPOSE = "decompose"
UNSUPPORTED = "unsupported"
QUANTIZATION_KINDS = (KERNEL, SAME_SCALE, REQUANTIZE, FIXED_RANGE, FOLDED, REMOVED, DECOMPOSE,
                      UNSUPPORTED)
RESNAP_MODES = (None, "nearest", "average")


@dataclasses.dataclass(frozen=True)
class Role:
    """A layer's role; `repeat` is a depthwise layer's depth multiplier, `reason` why a layer
    is a barrier. A `passthrough` barrier (Softmax over channels) keeps the channels it pins:
    its output carries its input's units. A `homogeneous` PASS layer satisfies
    `f(z x) = z f(x)` for `z >= 0` (ReLU, pooling, padding, dropout)."""

    name: str
    repeat: int = 1
    reason: str = ""
    passthrough: bool = False
    homogeneous: bool = False


@dataclasses.dataclass
class LayerEdit:
    """Changes to one layer: `slices` maps a variable attribute to `{axis: kept indices}`;
    `attributes` maps a plain attribute to its new value."""

    layer: keras.layers.Layer
    slices: dict = dataclasses.field(default_factory=dict)
    attributes: dict = dataclasses.field(default_factory=dict)

    def slice(self, attribute, axis, keep):
        import numpy as np

        self.slices.setdefault(attribute, {})[axis] = np.asarray(keep, "int64")


@dataclasses.dataclass(frozen=True)
class KernelView:
    """A weight of a channel-mixing layer: `attribute` names the variable; `out_axis` is its
    axis of output channels (`None`: it creates none), `in_axis` its axis of input channels
    (`None`: it reads none). Axes may be negative."""

    attribute: str
    out_axis: int = None
    in_axis: int = None


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """What a cost function sees of one layer call.

    Attributes:
        layer: the layer.
        input_shapes: per-example input shapes (batch dropped), one tuple per input; their
            channel axis may be narrower than the layer's today when a cost is computed for
            planned keep-masks.
        output_shapes: per-example output shapes.
        producer: the layer whose output buffer the first input is at inference (looking
            through folded layers: Dropout, folded BatchNormalization, fused ReLU); `None` for
            a model input.
        producer_linear: whether the first input still is the producer's linear output.
        exclusive: whether this call alone reads the first input and every tensor between it
            and the producer (none of them a model output), so folding into the producer
            changes nothing else.
    """

    layer: object
    input_shapes: tuple
    output_shapes: tuple
    producer: object = None
    producer_linear: bool = False
    exclusive: bool = False

    def channel_axis(self, rank):
        """Index of the channel axis in a per-example shape of length `rank`."""
        data_format = getattr(self.layer, "data_format", "channels_last")
        return 0 if data_format == "channels_first" else rank - 1

    def channels(self, shape):
        return int(shape[self.channel_axis(len(shape))])

    def spatial(self, shape):
        axis = self.channel_axis(len(shape))
        return tuple(int(d) for i, d in enumerate(shape) if i != axis)


@dataclasses.dataclass(frozen=True)
class CallCost:
    """What one layer call costs, per example.

    Attributes:
        params: values the layer stores as parameters (kernels, biases, normalization
            statistics; not tfdynhp's training-only gate state).
        macs: multiply-accumulates of one inference.
        ops: other elementwise operations (activations, merges, pooling).
        inference_params: parameters of the deployed layer (BatchNormalization folded, gates
            folded into kernels).
        int8_bytes: an estimate of the layer's bytes in a full-int8 `.tflite` file (1 byte per
            weight, 4 per bias, per-channel quantization parameters).
        folded: the output shares the producer's buffer at inference (folded BatchNorm, fused
            ReLU, Dropout, ...).
        fused_activation: the layer is an activation fused into its producer.
        m4_instructions: estimated Cortex-M4 instructions of the deployed operator(s) with
            CMSIS-NN kernels (`tfdynhp.layer_types.instructions`); `None` (the default) for a
            type without an estimate of its own: priced from `macs` and `ops` at generic
            rates (`instructions.fallback`).
    """

    params: int = 0
    macs: int = 0
    ops: int = 0
    inference_params: int = 0
    int8_bytes: int = 0
    folded: bool = False
    fused_activation: bool = False
    m4_instructions: float = None


@dataclasses.dataclass(frozen=True)
class Quantization:
    """How the TFLite converter and TFLite Micro quantize one layer to int8: what
    `tfdynhp.quantization` simulates for it.

    Attributes:
        kind: one of `QUANTIZATION_KINDS`:
            - `"kernel"`: its weight `kernel` is quantized per output channel (symmetric int8,
              `[-127, 127]`) and its output is stored with its own scale; a following
              BatchNormalization folds into it when the type `folds_batch_norm`, a following
              ReLU/ReLU6 fuses when it `fuses_activation`. The layer is called as it is, with
              its kernel (and bias) replaced by their quantized (folded) values;
            - `"same_scale"`: its output is on its input's int8 grid (TFLite's reshapes,
              pooling by max, padding, dropout; a standalone ReLU6, whose TFLite Micro kernel
              clamps without rescaling);
            - `"requantize"`: its output is stored with a scale of its own (ADD, MEAN,
              CONCATENATION, a standalone ReLU);
            - `"fixed_range"`: its output range is fixed by TFLite (`output_range`: softmax,
              sigmoid, tanh);
            - `"folded"`: not an op of its own, folded into the layer before it
              (BatchNormalization after a layer that `folds_batch_norm`);
            - `"removed"`: not in the deployed model (`strip()` folds it; gates);
            - `"decompose"`: converted as several layers, `decompose(layer)` (separable
              convolutions: depthwise, then pointwise, with an int8 tensor between);
            - `"unsupported"`: refused, with `reason`.
        kernel: `"kernel"`: the attribute of the weight quantized per channel. Defaults to
            `"kernel"`.
        channel_axes: `"kernel"`: how many trailing axes of the kernel index its output
            channels (2 for a depthwise kernel `(..., in, multiplier)`). Defaults to 1.
        bias: `"kernel"`: the attribute of the bias (if the layer has one). Defaults to
            `"bias"`.
        resnap: `"same_scale"` layers whose outputs are new values: `"nearest"` (put back on
            the input's grid, e.g. ReLU6 clamping at 6) or `"average"` (TFLite's integer
            average of int8 values, rounded half away from zero: AVERAGE_POOL_2D); `None` for
            layers that only move values. Defaults to `None`.
        pairwise: `"requantize"`: `n` inputs are computed as `n - 1` two-input ops, each
            stored in int8 (TFLite's ADD). Defaults to `False`.
        unified_scale: `"requantize"`: every input gets the output's scale (TFLite's
            CONCATENATION): an input computed only for this layer is stored at that scale
            directly, any other is requantized to it. Defaults to `False`.
        output_range: `"fixed_range"`: `(min, max)` of the output.
        activation: for activation layers, the function computed (`"relu"`, `"relu6"`, ...):
            a ReLU or ReLU6 fuses into a producer that `fuses_activation`.
        decompose: `"decompose"`: `callable(layer) -> [layers]`, built layers holding the
            weights, to apply one after the other.
        reason: `"unsupported"`: why.
    """

    kind: str
    kernel: str = "kernel"
    channel_axes: int = 1
    bias: str = "bias"
    resnap: object = None
    pairwise: bool = False
    unified_scale: bool = False
    output_range: tuple = None
    activation: str = None
    decompose: object = None
    reason: str = ""

    def __post_init__(self):
        if self.kind not in QUANTIZATION_KINDS:
            raise ValueError(f"Unknown quantization kind {self.kind!r}. Expected one of "
                             f"{QUANTIZATION_KINDS}.")
        if self.resnap not in RESNAP_MODES:
            raise ValueError(f"Unknown `resnap` {self.resnap!r}. Expected one of {RESNAP_MODES}.")
        if self.kind == FIXED_RANGE and (
                self.output_range is None or len(self.output_range) != 2
                or not self.output_range[1] > self.output_range[0]):
            raise ValueError("A 'fixed_range' quantization needs `output_range=(min, max)` with "
                             f"max > min. Received: {self.output_range!r}")
        if self.kind == DECOMPOSE and not callable(self.decompose):
            raise TypeError("A 'decompose' quantization needs `decompose=callable(layer) -> "
                            f"[layers]`. Received: {self.decompose!r}")
        if self.channel_axes not in (1, 2):
            raise ValueError(f"`channel_axes` must be 1 or 2. Received: {self.channel_axes!r}")


@dataclasses.dataclass(frozen=True)
class LayerType:
    """Everything tfdynhp knows about one layer class; see the module docstring and
    `register`."""

    layer_class: type
    role: object = BARRIER
    narrow: object = None
    cost: object = None
    kernels: object = ()
    relevance: str = "linear"
    linear_map: object = None
    splits_activation: bool = False
    gradient_variance: object = None
    folds_batch_norm: bool = False
    fuses_activation: bool = False
    quantization: object = None
    clone: object = None

    def role_of(self, layer):
        if isinstance(self.role, Role):
            return self.role
        if callable(self.role):
            return self.role(layer)
        return Role(self.role)

    def kernels_of(self, layer):
        return tuple(self.kernels(layer) if callable(self.kernels) else self.kernels)

    def quantization_of(self, layer):
        spec = self.quantization
        if callable(spec) and not isinstance(spec, Quantization):
            spec = spec(layer)
        if isinstance(spec, str):
            spec = Quantization(spec)
        return spec


_TYPES = {}
_GENERATION = [0]  # bumped by every register(): analyses made before are stale


def generation():
    """How many times `register` has been called (keys the cached `UnitGraph`s)."""
    return _GENERATION[0]


def register(
    layer_class,
    *,
    role,
    narrow=None,
    cost=None,
    kernels=(),
    relevance="linear",
    linear_map=None,
    splits_activation=False,
    gradient_variance=None,
    folds_batch_norm=False,
    fuses_activation=False,
    quantization=None,
    clone=None,
):
    """Registers everything tfdynhp needs to know about `layer_class` (and its subclasses).

    Built-in Keras layers are registered with this same call; registering a class again
    replaces its entry.

    Args:
        layer_class: a `keras.layers.Layer` subclass, or a `keras.Operation` subclass for the
            nodes a `keras.ops` call makes in a functional graph.
        role: one of `ROLES`, a `Role`, or `callable(layer) -> Role` deciding from the
            layer's config.
        narrow: `callable(layer, in_keep, out_keep) -> LayerEdit` for a layer with
            per-channel state; `in_keep` / `out_keep` are the kept positions of the last axis
            of its input / output, or `None` when that side does not change.
        cost: `callable(call: LayerCall) -> CallCost` (or `None` for a call it cannot price).
            Defaults to `None`: the layer costs its `count_params()` and 0 MACs, and is
            reported as not counted.
        kernels: `KernelView`s (or `callable(layer) -> KernelView`s) of a MIXING layer.
        relevance: `"linear"` or `"pass"` (LRP). Defaults to `"linear"`.
        linear_map: `callable(layer, inputs, kernel) -> outputs`, the layer's map without bias
            and activation with another kernel (LRP's alpha-beta rule). Defaults to `None`.
        splits_activation: whether `gate()` moves the layer's fused `activation` into an
            `Activation` layer after it. Defaults to `False`.
        gradient_variance: `callable(layer, inputs, deltas) -> ||S||_1` of its parameters.
            Defaults to `None` (not tracked).
        folds_batch_norm: whether TFLite folds a following BatchNormalization into it.
        fuses_activation: whether TFLite fuses a following ReLU / ReLU6 into it.
        quantization: how TFLite quantizes it to int8, for `tfdynhp.quantize_aware`: a
            `Quantization`, a kind (`"kernel"`, `"same_scale"`, `"requantize"`, ...; see
            `Quantization`), or `callable(layer) -> Quantization` deciding from the layer's
            config. Defaults to `None`: `quantize_aware` refuses the layer.
        clone: `callable(layer) -> new layer` with the same configuration (weights are copied
            afterwards), for a type whose config does not round-trip. Defaults to `None`:
            `layer.__class__.from_config(layer.get_config())` for a layer, a copy for an
            operation.

    Returns:
        The `LayerType`.

    Raises:
        TypeError: if `layer_class` is not a Layer (or Operation) subclass or a callable
            argument is not callable.
        ValueError: for an unknown role or relevance rule.

    Example:

    >>> tfdynhp.layer_types.register(
    ...     MyDense, role="mixing", narrow=narrow_kernel_layer("kernel", "units"),
    ...     cost=dense_cost, kernels=(KernelView("kernel", -1, -2),))
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.Operation)):
        raise TypeError(
            "Expected `layer_class` to be a keras.layers.Layer subclass (or a keras.Operation "
            f"subclass). Received: {layer_class!r}"
        )
    if not (isinstance(role, Role) or callable(role) or role in ROLES):
        raise ValueError(f"Unknown role {role!r}. Expected one of {ROLES}, a Role or a callable.")
    if relevance not in RELEVANCE_RULES:
        raise ValueError(
            f"Unknown relevance rule {relevance!r}. Expected one of {RELEVANCE_RULES}."
        )
    if isinstance(quantization, str):
        quantization = Quantization(quantization)
    for name, value in (("narrow", narrow), ("cost", cost), ("linear_map", linear_map),
                        ("gradient_variance", gradient_variance), ("clone", clone),
                        ("quantization", None if isinstance(quantization, Quantization)
                         else quantization)):
        if value is not None and not callable(value):
            raise TypeError(f"Expected `{name}` to be callable or None. Received: {value!r}")
    entry = LayerType(
        layer_class, role, narrow, cost, kernels, relevance, linear_map,
        bool(splits_activation), gradient_variance, bool(folds_batch_norm),
        bool(fuses_activation), quantization, clone,
    )
    _TYPES[layer_class] = entry
    _GENERATION[0] += 1
    return entry


def lookup(layer):
    """The `LayerType` of `layer` (its class or the nearest registered base), or `None`."""
    for layer_class in type(layer).__mro__:
        if layer_class in _TYPES:
            return _TYPES[layer_class]
    return None


def registered_names():
    return ", ".join(sorted(t.__name__ for t in _TYPES))


# -- what the rest of the library asks ---------------------------------------------------------


def is_operation(layer):
    """Whether `layer` is a bare operation node (a `keras.ops` call), not a Layer."""
    return not isinstance(layer, keras.layers.Layer)


def describe(layer):
    """`'name' (Type)`, or `'name' (keras.ops Type)` for an operation node."""
    kind = "keras.ops " if is_operation(layer) else ""
    return f"'{layer.name}' ({kind}{type(layer).__name__})"


def role_of(layer):
    """The `Role` of `layer`; unknown layer types and `channels_first` layers are barriers."""
    entry = lookup(layer)
    if entry is None:
        if is_operation(layer):
            return Role(BARRIER, reason=f"tfdynhp has no entry for the keras.ops operation "
                        f"{type(layer).__name__}")
        return Role(BARRIER, reason=f"tfdynhp has no layer type for {type(layer).__name__}")
    role = entry.role_of(layer)
    if role.name != BARRIER and getattr(layer, "data_format", "channels_last") == "channels_first":
        return Role(BARRIER, reason="data_format='channels_first' (only channels_last is handled)")
    return role


def edit_for(layer, in_keep, out_keep):
    """The `LayerEdit` narrowing `layer`, or None for a layer without per-channel state."""
    entry = lookup(layer)
    if entry is None or entry.narrow is None:
        return None
    return entry.narrow(layer, in_keep, out_keep)


def copy_operation(operation):
    """A new operation node like `operation` (a `keras.ops` call), not yet called: operations
    hold no weights, only the arguments of their constructor."""
    new = copy.copy(operation)
    new._inbound_nodes = []
    new._outbound_nodes = []
    return new


def clone_of(layer):
    """A new, uncalled layer (or operation) configured like `layer`, weights not copied.

    Raises:
        ValueError: naming the layer when its config does not round-trip and its type has no
            `clone` (register one).
    """
    entry = lookup(layer)
    if entry is not None and entry.clone is not None:
        return entry.clone(layer)
    if is_operation(layer):
        return copy_operation(layer)
    try:
        return layer.__class__.from_config(layer.get_config())
    except Exception as e:  # any error of a user's from_config
        raise ValueError(
            f"Cannot clone layer {describe(layer)} from its config: {type(e).__name__}: {e}. "
            "Give its class a get_config() whose output its constructor accepts, or register "
            "a clone: tfdynhp.layer_types.register(MyLayer, ..., clone=lambda layer: ...)."
        ) from e


def _values(shape):
    return math.prod(int(d) for d in shape)


def own_params(layer):
    """Values of the variables `layer` holds (0 for an operation node or an unbuilt layer)."""
    if is_operation(layer) or not layer.built:
        return 0
    return layer.count_params()


def cost_of(call):
    """`(CallCost, counted)` of one layer call; `counted` is False for a type without a cost
    function: it costs its `count_params()` (an operation node: nothing) and 0 MACs."""
    layer = call.layer
    entry = lookup(layer)
    cost = None if entry is None or entry.cost is None else entry.cost(call)
    if cost is None:
        count = own_params(layer)
        return CallCost(params=count, inference_params=count, int8_bytes=count), False
    return cost, True


def kernels_of(layer):
    """The `KernelView`s of `layer` (empty for a layer without channel-mixing weights)."""
    entry = lookup(layer)
    return () if entry is None else entry.kernels_of(layer)


def splits_activation(layer):
    """Whether `gate()` splits `layer`'s fused, non-linear activation into its own layer."""
    entry = lookup(layer)
    activation = getattr(layer, "activation", None)
    return bool(entry is not None and entry.splits_activation and activation is not None
                and activation is not keras.activations.linear)


def relevance_rule(layer):
    """`"pass"` or `"linear"`: how LRP sends relevance through `layer`."""
    entry = lookup(layer)
    return "linear" if entry is None else entry.relevance


def linear_map(layer):
    """The layer type's `linear_map` (LRP's alpha-beta rule), or None."""
    entry = lookup(layer)
    return None if entry is None else entry.linear_map


def tracks_gradient_variance(layer):
    """Whether the gradient-variance estimate covers `layer`: a type with a tap, without a
    fused activation (its output is the pre-activation), trainable and not quantized."""
    entry = lookup(layer)
    return (
        entry is not None
        and entry.gradient_variance is not None
        and getattr(layer, "activation", None) in (None, keras.activations.linear)
        and layer.trainable
        and not getattr(layer, "quantization_mode", None)
    )


def gradient_variance_l1(layer, inputs, deltas):
    """`||S||_1` of one tracked layer's parameters (see `tracks_gradient_variance`)."""
    return lookup(layer).gradient_variance(layer, inputs, deltas)


def folds_batch_norm(layer):
    entry = lookup(layer)
    return entry is not None and entry.folds_batch_norm


def fuses_activation(layer):
    entry = lookup(layer)
    return entry is not None and entry.fuses_activation


def quantization_of(layer):
    """The `Quantization` of `layer` (how TFLite quantizes it to int8), or `None` when its
    layer type does not say."""
    entry = lookup(layer)
    return None if entry is None else entry.quantization_of(layer)
