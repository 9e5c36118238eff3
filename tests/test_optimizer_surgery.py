"""Surgery rebuilds the optimizer: every option and every slot must survive, sliced.

The property checked: one optimizer step on the pruned model equals the same step on the
unpruned model, sliced (`step(slice(state)) == slice(step(state))`), which holds exactly for
optimizers that act elementwise. A lost option (AdamW's exclusions) or a reset slot (the
moments under a `LossScaleOptimizer`, amsgrad's maxima, the EMA copies, the gradient
accumulators) makes the two differ.
"""

import keras
import numpy as np
import pytest
from conftest import make_mlp
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp.surgery import apply_keep_masks
from tfdynhp.surgery import variables as variable_utils

KEEP_1 = np.array([1, 0, 1, 1, 0], bool)  # of the first hidden layer's 5 units
KEEP_2 = np.array([0, 1, 1, 1], bool)  # of the second's 4


def _numpy(v):
    return np.array(keras.ops.convert_to_numpy(v))


def _mlp():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(5, activation="relu", name="d1")(inputs)
    x = keras.layers.Dense(4, activation="relu", name="d2")(x)
    outputs = keras.layers.Dense(3, name="d3")(x)
    return keras.Model(inputs, outputs)


# How each trainable variable of `_mlp` is sliced by KEEP_1 / KEEP_2.
SLICING = {
    "d1/kernel": {1: np.flatnonzero(KEEP_1)},
    "d1/bias": {0: np.flatnonzero(KEEP_1)},
    "d2/kernel": {0: np.flatnonzero(KEEP_1), 1: np.flatnonzero(KEEP_2)},
    "d2/bias": {0: np.flatnonzero(KEEP_2)},
    "d3/kernel": {0: np.flatnonzero(KEEP_2)},
    "d3/bias": {},
}


def _adamw_excluding_names(model):
    optimizer = keras.optimizers.AdamW(0.01, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer


def _adamw_excluding_variables(model):
    optimizer = keras.optimizers.AdamW(0.01, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_list=[model.get_layer("d1").bias,
                                                  model.get_layer("d2").kernel])
    return optimizer


OPTIMIZERS = {
    "adam": lambda model: keras.optimizers.Adam(0.01),
    "adamw_names": _adamw_excluding_names,
    "adamw_variables": _adamw_excluding_variables,
    "sgd_momentum": lambda model: keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
    "rmsprop": lambda model: keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    "adam_amsgrad": lambda model: keras.optimizers.Adam(0.01, amsgrad=True),
    "adam_ema": lambda model: keras.optimizers.Adam(0.01, use_ema=True, ema_momentum=0.9),
    "loss_scale": lambda model: keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(0.01), initial_scale=64.0, dynamic_growth_steps=3),
    "mixed_precision": lambda model: keras.optimizers.Adam(0.01),  # compile wraps it
    "sgd_accumulation": lambda model: keras.optimizers.SGD(
        0.01, momentum=0.9, gradient_accumulation_steps=2),
}


def _trained(name):
    policy = keras.config.dtype_policy()
    if name == "mixed_precision":
        keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _mlp()
        model.compile(OPTIMIZERS[name](model), keras.losses.MeanSquaredError())
    finally:
        keras.config.set_dtype_policy(policy)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype("float32")
    y = rng.normal(size=(40, 3)).astype("float32")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)  # 10 steps: every slot is non-zero
    return model


def _gradients(model, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables]


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_step_after_surgery_equals_the_unpruned_step_sliced(name):
    model = _trained(name)
    assert (name in ("loss_scale", "mixed_precision")) == isinstance(
        model.optimizer, keras.optimizers.LossScaleOptimizer)
    optimizer = model.optimizer
    weights = model.get_weights()
    state = [_numpy(v) for v in optimizer.variables]
    steps = [_gradients(model, seed) for seed in (1, 2, 3)]

    # Reference: three more steps of the unpruned model (EMA averages included).
    for gradients in steps:
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    paths = [v.path for v in model.trainable_variables]
    expected = {p: _numpy(v) for p, v in zip(paths, model.trainable_variables)}
    if _inner(optimizer).use_ema:
        averages = _inner(optimizer)._model_variables_moving_average
        expected_averages = {p: _numpy(a) for p, a in zip(paths, averages)}
    scale = _numpy(optimizer.dynamic_scale) if hasattr(optimizer, "dynamic_scale") else None

    # Back to the state before the reference steps, then surgery and the same steps, sliced.
    model.set_weights(weights)
    for variable, value in zip(optimizer.variables, state):
        variable.assign(value)
    config = optimizer.get_config()
    apply_keep_masks(model, {"d1": KEEP_1, "d2": KEEP_2})
    assert model.optimizer is not optimizer
    assert model.optimizer.get_config() == config  # every option of the config
    for gradients in steps:
        sliced = [variable_utils.slice_array(g, SLICING[p]) for g, p in zip(gradients, paths)]
        model.optimizer.apply_gradients(zip(sliced, model.trainable_variables))

    for variable in model.trainable_variables:
        want = variable_utils.slice_array(expected[variable.path], SLICING[variable.path])
        np.testing.assert_allclose(_numpy(variable), want, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name}: {variable.path}")
    if _inner(optimizer).use_ema:
        averages = _inner(model.optimizer)._model_variables_moving_average
        for variable, average in zip(model.trainable_variables, averages):
            want = variable_utils.slice_array(expected_averages[variable.path],
                                              SLICING[variable.path])
            np.testing.assert_allclose(_numpy(average), want, rtol=1e-5, atol=1e-6)
    if scale is not None:
        assert _numpy(model.optimizer.dynamic_scale) == scale


def test_weight_decay_exclusions_follow_the_new_variables():
    model = _trained("adamw_variables")
    apply_keep_masks(model, {"d1": KEEP_1, "d2": KEEP_2})
    optimizer = model.optimizer
    decayed = {v.path: optimizer._use_weight_decay(v) for v in model.trainable_variables}
    assert decayed == {"d1/kernel": True, "d1/bias": False, "d2/kernel": False,
                       "d2/bias": True, "d3/kernel": True, "d3/bias": True}


@pytest.mark.parametrize("name", ["loss_scale", "sgd_accumulation", "adam_ema"])
def test_reset_zeroes_the_slots_only(name):
    model = _trained(name)
    old = model.optimizer
    iterations, rate = int(_numpy(old.iterations)), float(_numpy(old.learning_rate))
    scale = _numpy(old.dynamic_scale) if hasattr(old, "dynamic_scale") else None
    apply_keep_masks(model, {"d1": KEEP_1, "d2": KEEP_2}, optimizer_slots="reset")
    new = model.optimizer
    assert int(_numpy(new.iterations)) == iterations > 0
    assert float(_numpy(new.learning_rate)) == pytest.approx(rate)
    if scale is not None:
        assert _numpy(new.dynamic_scale) == scale
    inner = _inner(new)
    slots = [*getattr(inner, "_momentums", []), *getattr(inner, "_velocities", []),
             *getattr(inner, "momentums", []), *getattr(inner, "_accumulated_gradients", [])]
    assert slots and not any(np.any(_numpy(s)) for s in slots)
    if inner.use_ema:  # the averages are copies of the weights, not moments: sliced
        for variable, average in zip(model.trainable_variables,
                                     inner._model_variables_moving_average):
            assert average.shape == variable.shape and np.any(_numpy(average))


def test_factored_slots_that_cannot_be_sliced_restart_with_a_warning():
    model = _mlp()
    model.compile(keras.optimizers.Adafactor(0.01), keras.losses.MeanSquaredError())
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(16, 6)), rng.normal(size=(16, 3)), batch_size=8, verbose=0)
    old = model.optimizer
    factored = [(_numpy(r), _numpy(c)) for r, c in zip(old._r, old._c)]
    with pytest.warns(UserWarning, match=r"Adafactor: the slots \['_c', '_r'\] .* restart"):
        apply_keep_masks(model, {"d2": KEEP_2})
    new = model.optimizer
    for index in (2, 4):  # d2/kernel, d3/kernel: narrowed, restarted
        assert np.any(factored[index][0]) and not np.any(_numpy(new._r[index]))
        assert not np.any(_numpy(new._c[index]))
    for index in (0,):  # d1/kernel: unchanged, kept
        np.testing.assert_array_equal(_numpy(new._r[index]), factored[index][0])
        np.testing.assert_array_equal(_numpy(new._c[index]), factored[index][1])
    model.fit(rng.normal(size=(16, 6)), rng.normal(size=(16, 3)), batch_size=8, verbose=0)


def test_dynhp_fit_under_mixed_precision_keeps_adamw_exclusions_and_moments(digits):
    """End to end: the surgeries of a DynHP fit keep the biases out of weight decay and the
    Adam moments of a loss-scaled (mixed precision) AdamW."""
    x, y, x_test, y_test = digits
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = tfdynhp.gate(make_mlp(64, [32, 16], 10), l0_lambda=1.0, drop_rate_init=0.5,
                             seed=0)
        optimizer = keras.optimizers.AdamW(0.01, weight_decay=0.1)
        optimizer.exclude_from_weight_decay(var_names=["bias"])
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    finally:
        keras.config.set_dtype_policy(policy)

    class Moments(keras.callbacks.Callback):  # after DynHPCallback: sees each surgery's result
        def __init__(self):
            super().__init__()
            self.zero_after_surgery = []

        def on_epoch_end(self, epoch, logs=None):
            inner = self.model.optimizer.inner_optimizer
            self.zero_after_surgery.append(
                [not np.any(_numpy(m)) for m in inner._momentums + inner._velocities])

    moments = Moments()
    history = model.fit(x, y, epochs=4, batch_size=64, verbose=0,
                        callbacks=[DynHPCallback(threshold=0.5), moments])
    params = history.history["dynhp/params"]
    assert params[-1] < params[0]  # surgeries happened
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    inner = model.optimizer.inner_optimizer
    assert isinstance(inner, keras.optimizers.AdamW)
    for variable in model.trainable_variables:
        if variable.name in ("bias", "kernel"):
            assert inner._use_weight_decay(variable) == (variable.name == "kernel")
    # Moments of the weights the main optimizer trains are never reset to zero.
    assert not any(any(zeros) for zeros in moments.zero_after_surgery)
    assert model.evaluate(x_test, y_test, verbose=0)[-1] > 0.8
