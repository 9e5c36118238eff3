"""`gate()` turns a Keras model of Dense layers into its Hard Concrete gated equivalent;
`strip()` turns a gated model back into a plain one for deployment (a matched pair, like
TF-MOT's `prune_low_magnitude` / `strip_pruning`)."""

import keras
import numpy as np

from tfdynhp.criteria import keep_mask
from tfdynhp.layers import GatedDense, SelectFeatures
from tfdynhp.models import GatedModel
from tfdynhp.surgery import apply_keep_masks, graph, registry

_RESHAPING = (keras.layers.Flatten, keras.layers.Reshape)
_GATE_OPTIONS = (
    "l0_lambda",
    "drop_rate_init",
    "weight_by_fan_out",
    "dataset_size",
    "temperature",
    "limit_low",
    "limit_high",
)
_DENSE_OPTIONS = (
    "units",
    "activation",
    "use_bias",
    "kernel_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "bias_regularizer",
    "kernel_constraint",
    "bias_constraint",
    "name",
    "dtype",
)


def is_gated_model(model):
    """Whether `model` contains any `GatedDense` layer."""
    return isinstance(model, keras.Model) and any(
        isinstance(layer, GatedDense) for layer in model.layers
    )


def _clone_layer(layer):
    return layer.__class__.from_config(layer.get_config())


def _supported_message():
    return (
        "Supported: a single chain of Dense layers with optional Flatten/Reshape before the "
        f"first Dense and, between Dense layers, {registry.supported_names()}."
    )


def gate(model, first_layer_drop_rate=None, seed=None, **gate_options):
    """Returns the Hard Concrete gated equivalent of `model`, with the same weights.

    Every `Dense` layer becomes a `GatedDense` with one gate per input unit; a `SelectFeatures`
    layer is inserted before the first one so that DynHP can drop input features while the
    model keeps its original input. The output layer's outputs are never gated. The result is
    a `GatedModel` (a functional `keras.Model`), not compiled.

    Args:
        model: a built Sequential or functional Keras model whose layers form one chain:
            optional Flatten/Reshape, then Dense layers with activations, Dropout or
            BatchNormalization between them.
        first_layer_drop_rate: initial drop rate of the input-feature gates; defaults to the
            `drop_rate_init` of the other layers (Louizos used 0.2 for inputs, 0.5 hidden).
        seed: seed of the gates' initialisation and noise (layer i gets `seed + i`).
        **gate_options: `GatedDense` options: `l0_lambda`, `drop_rate_init`,
            `weight_by_fan_out`, `dataset_size`, `temperature`, `limit_low`, `limit_high`.

    Returns:
        A `tfdynhp.GatedModel`.

    Raises:
        ValueError: for unsupported layers or structures (naming the layer) and for an
            already gated model.
        TypeError: for an unknown gate option.

    Example:
    >>> base = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, "relu"),
    ...                          keras.layers.Dense(10, "softmax")])
    >>> gated = tfdynhp.gate(base, l0_lambda=0.01)
    """
    unknown = sorted(set(gate_options) - set(_GATE_OPTIONS))
    if unknown:
        raise TypeError(
            f"Unknown gate option(s) {unknown}. Valid options: {list(_GATE_OPTIONS)}."
        )
    if is_gated_model(model):
        raise ValueError(f"Model '{model.name}' is already gated.")
    chain = graph.layer_chain(model)
    if not any(isinstance(layer, keras.layers.Dense) for layer in chain):
        raise ValueError(f"Model '{model.name}' has no Dense layer to gate. {_supported_message()}")

    inputs = keras.Input(shape=model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    x = inputs
    seen_dense = 0
    copies = []
    for layer in chain:
        if isinstance(layer, keras.layers.Dense):
            if type(layer) is not keras.layers.Dense or layer.quantization_mode:
                raise ValueError(
                    f"Layer '{layer.name}' ({type(layer).__name__}) is not a plain float Dense "
                    f"layer. {_supported_message()}"
                )
            if len(x.shape) != 2:
                raise ValueError(
                    f"Dense layer '{layer.name}' receives a rank-{len(x.shape)} input; gating "
                    "needs rank-2 inputs (add a Flatten layer before it)."
                )
            options = dict(gate_options)
            if seen_dense == 0:
                x = SelectFeatures(name="select_features")(x)
                if first_layer_drop_rate is not None:
                    options["drop_rate_init"] = first_layer_drop_rate
            config = layer.get_config()
            gated = GatedDense(
                **{k: config[k] for k in _DENSE_OPTIONS if k in config},
                seed=None if seed is None else seed + seen_dense,
                **options,
            )
            x = gated(x)
            gated.kernel.assign(keras.ops.convert_to_numpy(layer.kernel))
            if layer.use_bias:
                gated.bias.assign(keras.ops.convert_to_numpy(layer.bias))
            seen_dense += 1
        elif isinstance(layer, _RESHAPING) and seen_dense == 0 or registry.kind_of(layer) in (registry.PER_UNIT, registry.ELEMENTWISE):
            copy = _clone_layer(layer)
            x = copy(x)
            copies.append((copy, layer))
        else:
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) is not supported by "
                f"tfdynhp.gate(). {_supported_message()}"
            )
    for copy, original in copies:
        copy.set_weights(original.get_weights())
    return GatedModel(inputs, x, name=f"{model.name}_gated")


def _copy_model(model):
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def strip(model, remove_closed_gates=True):
    """Returns a plain Keras model computing the gated model's inference outputs.

    Test-time gates are folded into the kernels (`W' = diag(z_hat) W`), gates and counters
    disappear, and `SelectFeatures` is kept so the model takes the original input. Units
    whose test-time gate is exactly 0 contribute nothing, so with `remove_closed_gates=True`
    they are removed first (on a copy), which makes the result smaller and identical in output.
    The gated model is not modified.

    Args:
        model: a model built by `tfdynhp.gate()` (pruned or not).
        remove_closed_gates: drop units with `z_hat == 0` first. Defaults to `True`.

    Returns:
        A functional `keras.Model` of stock layers (plus `SelectFeatures`).
    """
    if not is_gated_model(model):
        raise ValueError(
            f"Model '{getattr(model, 'name', model)}' has no gated layer; strip() takes a model "
            "built by tfdynhp.gate()."
        )
    model = _copy_model(model)
    if remove_closed_gates:
        # Keep units with z_hat > 0 (and at least one per layer).
        smallest_open = np.finfo("float32").tiny
        masks = {
            layer.name: keep_mask(layer.test_time_gates(), smallest_open, min_units=1)
            for layer in graph.gated_layers(model)
        }
        apply_keep_masks(model, masks)
    inputs = keras.Input(shape=model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    x = inputs
    for layer in graph.layer_chain(model):
        if isinstance(layer, GatedDense):
            dense = keras.layers.Dense(
                layer.units, activation=layer.activation, use_bias=layer.use_bias,
                name=layer.name,
            )
            x = dense(x)
            kernel = keras.ops.convert_to_numpy(layer.kernel) * layer.test_time_gates()[:, None]
            dense.kernel.assign(kernel)
            if layer.use_bias:
                dense.bias.assign(keras.ops.convert_to_numpy(layer.bias))
        else:
            copy = _clone_layer(layer)
            x = copy(x)
            copy.set_weights(layer.get_weights())
    name = model.name.removesuffix("_gated")
    return keras.Model(inputs, x, name=f"{name}_stripped")
