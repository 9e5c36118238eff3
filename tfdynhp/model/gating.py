"""`gate()` puts Hard Concrete gates on the prunable channels of a Keras model; `strip()` turns
a gated model back into a plain one for deployment (a matched pair, like TF-MOT's
`prune_low_magnitude` / `strip_pruning`)."""

import warnings

import keras
import numpy as np

from tfdynhp.costs import units as resources
from tfdynhp.graph import units as graph
from tfdynhp.layer_types import registry
from tfdynhp.layers.gate import HardConcreteGate, SelectFeatures
from tfdynhp.math.selection import keep_mask
from tfdynhp.model.gated_model import GatedModel
from tfdynhp.surgery import apply_keep_masks
from tfdynhp.validation import ConfigurationError

GATE_OPTIONS = (
    "l0_lambda",
    "drop_rate_init",
    "dataset_size",
    "gate_speed",
    "sampling",
    "temperature",
    "limit_low",
    "limit_high",
)
def is_gated_model(model):
    """Whether `model` contains any `HardConcreteGate` layer."""
    return isinstance(model, keras.Model) and any(
        isinstance(layer, HardConcreteGate) for layer in model.layers
    )


def _clone(layer, **overrides):
    """A new, uncalled copy of a layer or operation node (its layer type's `clone`: config
    round trip for most layers, a copy for `keras.ops` nodes, the function for `Lambda`)."""
    if overrides:
        return layer.__class__.from_config({**layer.get_config(), **overrides})
    return registry.clone_of(layer)


def _unique_name(base, taken):
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _rebuild(model, make_outputs, model_class=keras.Model, name=None, float_inputs=None):
    """A new functional model computing `model`'s graph node by node.

    `make_outputs(node, args, kwargs, tensors) -> outputs` computes each node from its mapped
    inputs (`tensors` maps `id(old symbolic tensor)` to its new one); `float_inputs` sets the
    dtype of the float inputs (default: the model's).
    """
    graph_model = graph.functional_of(model)

    def dtype(tensor):
        floating = "float" in str(tensor.dtype)
        return float_inputs if float_inputs and floating else tensor.dtype

    inputs = [keras.Input(shape=t.shape[1:], dtype=dtype(t), name=t.name)
              for t in graph_model.inputs]
    tensors = {id(old): new for old, new in zip(graph_model.inputs, inputs)}
    for node in graph.graph_nodes(model):
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = keras.tree.flatten(make_outputs(node, args, kwargs, tensors))
        for old, new in zip(node.outputs, outputs):
            tensors[id(old)] = new
    outputs = [tensors[id(t)] for t in graph_model.outputs]
    return model_class(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=name or model.name,
    )


def _copy_weights(pairs):
    for new, old in pairs:
        if not registry.is_operation(old) and old.weights:
            new.set_weights(old.get_weights())


def _feature_selection_points(model):
    """Model-input tensors (or their Flatten) read directly by a Dense layer: where
    `SelectFeatures` makes input features prunable."""
    graph_model = graph.functional_of(model)
    inputs = {id(t) for t in graph_model.inputs}
    points = set()
    for node in graph.graph_nodes(model):
        if not isinstance(node.operation, keras.layers.Dense):
            continue
        tensor = node.input_tensors[0]
        if id(tensor) in inputs and len(tensor.shape) == 2:
            points.add(id(tensor))
            continue
        parent = tensor._keras_history.operation
        if isinstance(parent, keras.layers.Flatten) and id(parent.input) in inputs:
            points.add(id(tensor))
    return points


def _prepare(model):
    """Pass 1: a copy of `model` with activations split from the layers that have weights
    (their outputs become the pre-activations the gradient-variance estimate needs) and a
    `SelectFeatures` layer where input features can be pruned."""
    points = _feature_selection_points(model)
    taken = {layer.name for layer in model.layers}
    clones, pairs, selected = {}, [], {}

    def make(node, args, kwargs, tensors):
        layer = node.operation
        for tensor in node.input_tensors:
            if id(tensor) in points and id(tensor) not in selected:
                select = SelectFeatures(name=_unique_name("select_features", taken))
                selected[id(tensor)] = select(tensors[id(tensor)])
        if selected:
            args, kwargs = node.arguments.fill_in({**tensors, **selected})
        activation = getattr(layer, "activation", None)
        split = registry.splits_activation(layer)
        # The activity regularizer reads the layer's output: it moves to the activation.
        regularizer = layer.activity_regularizer if split else None
        if id(layer) not in clones:
            clones[id(layer)] = (
                _clone(layer, activation="linear", activity_regularizer=None) if split
                else _clone(layer)
            )
            pairs.append((clones[id(layer)], layer))
        outputs = clones[id(layer)](*args, **kwargs)
        if split:
            name = _unique_name(f"{layer.name}_activation", taken)
            outputs = keras.layers.Activation(activation, name=name,
                                              activity_regularizer=regularizer)(outputs)
        for tensor in node.outputs:
            if id(tensor) in points and id(tensor) not in selected:
                select = SelectFeatures(name=_unique_name("select_features", taken))
                selected[id(tensor)] = select(outputs)
                outputs = selected[id(tensor)]
        return outputs

    prepared = _rebuild(model, make)
    _copy_weights(pairs)
    return prepared


def gate(model, seed=None, penalty="units", first_layer_drop_rate=None, **gate_options):
    """Returns a copy of `model` with a Hard Concrete gate on every prunable group of channels.

    The dependency graph of the model's channels (`tfdynhp.graph.units`) decides what can be
    pruned: the units of Dense layers, the filters of convolutions, the channels of residual
    `Add` chains (one gate for the whole chain) and of `Concatenate` inputs, and, through a
    `SelectFeatures` layer inserted after the input, the input features of a model whose first
    layer is Dense. A gate goes on the input of each layer that mixes channels (Dense, Conv,
    SeparableConv), so a removed channel is removed from every layer it passes through.
    Channels that reach a model output or a layer surgery cannot follow (Softmax over
    channels, attention, grouped convolutions, unknown layers) are left alone, with a warning
    naming the layer. Activations of layers with weights become separate `Activation` layers.
    The weights are the model's.

    With the default `drop_rate_init` (0.05) the test-time gates are exactly 1, so the gated
    model computes what `model` computes until training moves the gates; a larger initial drop
    rate scales each channel by `z_hat < 1` at first.

    Args:
        model: a built functional or Sequential Keras model, channels-last.
        seed: seed of the gates' initialisation and noise (gate i gets `seed + i`).
        penalty: what a unit costs in the L0 penalty: `"units"` (every unit the same, the
            paper), `"params"`, `"macs"` or `"memory"` (what removing it saves; see
            `tfdynhp.costs.units`), normalised to a mean of 1. Defaults to `"units"`.
        first_layer_drop_rate: initial drop rate of the input-feature gates; defaults to
            `drop_rate_init`.
        **gate_options: `HardConcreteGate` options: `l0_lambda`, `drop_rate_init`,
            `dataset_size` (found at `fit` when not given), `gate_speed`, `sampling`,
            `temperature`, `limit_low`, `limit_high`.

    Returns:
        A `tfdynhp.GatedModel`, not compiled.

    Raises:
        ConfigurationError: (a `ValueError`; the command line reports it in one line) for a
            model without prunable channels, or a model that is not a built functional /
            Sequential model.
        ValueError: for an already gated model.
        TypeError: for an unknown gate option.

    Example:
    >>> base = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3),
    ...                          keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    >>> gated = tfdynhp.gate(base, l0_lambda=0.1)
    """
    unknown = sorted(set(gate_options) - set(GATE_OPTIONS))
    if unknown:
        raise TypeError(f"Unknown gate option(s) {unknown}. Valid options: {list(GATE_OPTIONS)}.")
    resources.check_resource(penalty)
    if is_gated_model(model):
        raise ValueError(f"Model '{model.name}' is already gated.")
    prepared = _prepare(model)
    unit_graph = graph.analyze(prepared)
    sites = unit_graph.gate_sites()
    if not sites:
        raise ConfigurationError(
            f"Model '{model.name}' has no channels tfdynhp can prune. "
            + _pinned_summary(unit_graph)
        )
    _warn_barriers(unit_graph)
    _warn_ungated(unit_graph)

    gates, taken = {}, {layer.name for layer in prepared.layers}
    input_features = {l.name for l in prepared.layers if isinstance(l, SelectFeatures)}
    for _, _, group in sites:
        if group.name in gates:
            continue
        options = dict(gate_options)
        if first_layer_drop_rate is not None and group.name in input_features:
            options["drop_rate_init"] = first_layer_drop_rate
        gates[group.name] = HardConcreteGate(
            name=_unique_name(f"{group.name}_gate", taken),
            seed=None if seed is None else seed + len(gates),
            cost_resource=penalty,
            **options,
        )
    gated_inputs = {}
    by_user = {}
    for tensor, user, group in sites:
        by_user.setdefault(id(user), []).append((tensor, group))
    clones, pairs = {}, []

    def make(node, args, kwargs, tensors):
        replacements = {}
        for tensor, group in by_user.get(id(node), ()):
            key = (id(tensor), group.name)
            if key not in gated_inputs:
                gated_inputs[key] = gates[group.name](tensors[id(tensor)])
            replacements[id(tensor)] = gated_inputs[key]
        if replacements:
            args, kwargs = node.arguments.fill_in({**tensors, **replacements})
        layer = node.operation
        if id(layer) not in clones:
            clones[id(layer)] = _clone(layer)
            pairs.append((clones[id(layer)], layer))
        return clones[id(layer)](*args, **kwargs)

    gated = _rebuild(prepared, make, model_class=GatedModel, name=f"{model.name}_gated")
    _copy_weights(pairs)
    resources.update_gate_costs(gated, penalty)
    return gated


def _pinned_summary(unit_graph):
    reasons = sorted({g.pinned for g in unit_graph.groups if g.pinned})
    reasons += sorted({f"'{name}' gets no gate: {reason}"
                       for name, reason in unit_graph.ungated_groups().items()})
    return "No channel group can be gated: " + "; ".join(reasons[:6]) + (
        f" (and {len(reasons) - 6} more)" if len(reasons) > 6 else ""
    ) + ". See tfdynhp.layer_types.registry for the layers surgery can follow."


def _warn_barriers(unit_graph):
    barriers = [f"'{name}' ({reason})" for name, reason in unit_graph.needless_barriers().items()]
    if barriers:
        warnings.warn(
            "tfdynhp.gate(): channels next to these layers are not pruned: "
            + ", ".join(barriers[:8]) + (" ..." if len(barriers) > 8 else ""),
            stacklevel=3,
        )


def _warn_ungated(unit_graph):
    ungated = [f"'{name}' ({reason})" for name, reason in unit_graph.ungated_groups().items()]
    if ungated:
        warnings.warn(
            "tfdynhp.gate(): these channel groups get no gate and are not pruned: "
            + ", ".join(ungated[:8]) + (" ..." if len(ungated) > 8 else ""),
            stacklevel=3,
        )


def _float32_config(value):
    """`value` (a layer config) with every dtype policy, nested layers' included, float32."""
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy" and isinstance(value.get("config"), dict):
            return {**value, "config": {**value["config"], "name": "float32"}}
        return {key: _float32_config(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_float32_config(item) for item in value)
    return value


def _clone_float32(layer):
    """A clone of `layer` computing in float32 (an operation node computes in its inputs'
    dtype)."""
    if registry.is_operation(layer):
        return registry.clone_of(layer)
    entry = registry.lookup(layer)
    if entry is not None and entry.clone is not None:
        clone = registry.clone_of(layer)
        clone.dtype_policy = "float32"
        return clone
    return layer.__class__.from_config(_float32_config(layer.get_config()))


def copy_model(model, float32=False):
    """A new model with `model`'s architecture and weights (no optimizer), cloned node by node
    (a `Lambda` or a `keras.ops` node does not round-trip through the model's config); with
    `float32=True` every layer computes in float32 (a `mixed_float16` model rebuilt for
    export) and float inputs are float32."""
    clones, pairs = {}, []

    def make(node, args, kwargs, tensors):
        layer = node.operation
        if id(layer) not in clones:
            clones[id(layer)] = _clone_float32(layer) if float32 else _clone(layer)
            pairs.append((clones[id(layer)], layer))
        return clones[id(layer)](*args, **kwargs)

    copy = _rebuild(model, make,
                    model_class=GatedModel if isinstance(model, GatedModel) else keras.Model,
                    float_inputs="float32" if float32 else None)
    _copy_weights(pairs)
    if isinstance(model, GatedModel):
        copy.dynhp_run = model.dynhp_run  # the run's target reference, saved with the model
    return copy


def computes_in_float32(model):
    """Whether every layer of `model` (nested models' included) computes in float32."""
    layers = model._flatten_layers(include_self=False, recursive=True)
    return all(getattr(layer, "compute_dtype", "float32") == "float32" for layer in layers
               if not isinstance(layer, keras.layers.InputLayer))


def float32_model(model):
    """`model` itself when it computes in float32, else a float32 copy with its weights: how a
    `mixed_float16` model is exported (TFLite's int8 kernels take float32 graphs; Keras keeps
    mixed-precision variables in float32, so nothing is lost).

    Example:

    >>> keras.mixed_precision.set_global_policy("mixed_float16")
    >>> model = build()  # trained in mixed precision
    >>> tflite_bytes = to_int8_tflite(float32_model(tfdynhp.strip(model)), x[:200])
    """
    return model if computes_in_float32(model) else copy_model(model, float32=True)


def _gate_scale(tensor, include=None):
    """Per-position test-time gate values of `tensor`'s last axis: the gate's values when a gate
    made it, followed back through the layers `gate()` lets a gate move across (Flatten,
    Concatenate, ReLU, pooling, dropout; see `UnitGraph.gate_sites`), else 1. With `include`
    (a collection of gates), the other gates count as 1."""
    parent = tensor._keras_history.operation
    if isinstance(parent, HardConcreteGate):
        if include is not None and all(parent is not g for g in include):
            return np.ones(int(tensor.shape[-1]), np.float32)
        return parent.test_time_gates().astype(np.float32)
    if parent is None or isinstance(parent, keras.layers.InputLayer):
        return np.ones(int(tensor.shape[-1]), np.float32)
    role = registry.role_of(parent)
    if role.name == registry.CONCAT:
        return np.concatenate([_gate_scale(t, include) for t in parent.input])
    if role.name == registry.FLATTEN:
        inner = _gate_scale(parent.input, include)
        return np.tile(inner, int(tensor.shape[-1]) // len(inner))
    if role.name == registry.PASS and role.homogeneous:
        return _gate_scale(parent.input, include)
    return np.ones(int(tensor.shape[-1]), np.float32)


def strip(model, remove_closed_gates=True):
    """Returns a plain Keras model computing the gated model's inference outputs.

    Gates disappear: each test-time gate value is folded into the input weights of the layers
    that read its channels (`W' = diag(z_hat) W`; for a convolution, its input-channel
    slices), which is exact since every gate sits right in front of such layers. Channels whose
    test-time gate is exactly 0 contribute nothing; with `remove_closed_gates=True` they are
    removed first (on a copy), which makes the result smaller and identical in output.
    `SelectFeatures` stays, so the model takes the original input. The gated model is not
    modified.

    Args:
        model: a model built by `tfdynhp.gate()` (pruned or not).
        remove_closed_gates: drop channels with `z_hat == 0` first. Defaults to `True`.

    Returns:
        A functional `keras.Model` of stock layers (plus `SelectFeatures`).
    """
    if not is_gated_model(model):
        raise ValueError(
            f"Model '{getattr(model, 'name', model)}' has no gated layer; strip() takes a model "
            "built by tfdynhp.gate()."
        )
    model = copy_model(model)
    if remove_closed_gates:
        smallest_open = np.finfo("float32").tiny
        masks = {
            group.name: keep_mask(
                group.gate.test_time_gates(), smallest_open, min_units=1, segments=group.segments
            )
            for group in graph.gated_groups(model)
        }
        apply_keep_masks(model, masks)
    unit_graph = graph.analyze(model)
    clones, scaled = {}, []

    def make(node, args, kwargs, tensors):
        layer = node.operation
        if isinstance(layer, HardConcreteGate):
            return args[0]
        if id(layer) not in clones:
            clones[id(layer)] = _clone(layer)
            scale = None
            if unit_graph.roles[id(node)].name == registry.MIXING:
                scale = _gate_scale(node.input_tensors[0])
            scaled.append((clones[id(layer)], layer, scale))
        return clones[id(layer)](*args, **kwargs)

    name = model.name.removesuffix("_gated")
    plain = _rebuild(model, make, name=f"{name}_stripped")
    for clone, layer, scale in scaled:
        _copy_weights([(clone, layer)])
        if scale is not None and not np.all(scale == 1.0):
            _scale_input_channels(clone, scale)
    return plain


def _scale_input_channels(layer, scale):
    """Multiplies the weights reading each input channel of `layer` by `scale[channel]`;
    returns `[(variable, factor)]`, `factor` broadcasting against the variable."""
    scaled = []
    for view in registry.kernels_of(layer):
        if view.in_axis is None:
            continue
        variable = getattr(layer, view.attribute)
        kernel = keras.ops.convert_to_numpy(variable)
        shape = [1] * kernel.ndim
        shape[view.in_axis % kernel.ndim] = len(scale)
        factor = scale.reshape(shape)
        variable.assign(kernel * factor)
        scaled.append((variable, factor))
    return scaled
