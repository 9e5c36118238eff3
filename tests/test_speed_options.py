"""The speed options of the gated training step: the gradient variance on one step in k
(`enable_gradient_variance(every=k)`, `DynHPCallback(variance_every=k)`) and
`jit_compile=True` on gated models, before and after surgery."""

import keras
import numpy as np
import pytest
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp import architectures
from tfdynhp.layers.gate import HardConcreteGate, philox_uniform

RATIO = "grad_variance_ratio"


def _deterministic_gated_mlp(seed=0):
    """A gated 12-8-3 MLP whose training gates are exactly 0 or 1 (log_alpha = +-30), so a
    step with SGD(0) depends only on its batch."""
    model = tfdynhp.gate(architectures.mlp(12, hidden=(8,), num_classes=3, seed=seed + 1),
                         seed=seed, dataset_size=64)
    rng = np.random.default_rng(seed)
    for gate in model.gate_layers:
        gate.log_alpha.assign(np.where(rng.random(gate.units) < 0.8, 30.0, -30.0))
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    return model


def _data(n=56, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 12)).astype("float32"), rng.integers(0, 3, n).astype("int32")


class _StepLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(logs[RATIO]))


def _per_batch_ratios(x, y, batch):
    """`||S||_1 / F` of each batch alone, computed on every step (k = 1)."""
    model = _deterministic_gated_mlp()
    model.enable_gradient_variance()
    return [
        model.train_on_batch(x[i:i + batch], y[i:i + batch], return_dict=True)[RATIO]
        for i in range(0, len(x), batch)
    ]


def test_every_k_computes_on_steps_0_k_2k_of_each_epoch_only():
    x, y = _data()
    single = _per_batch_ratios(x, y, 8)  # 7 batches
    assert len(set(np.round(single, 6))) == 7  # every batch gives another value
    model = _deterministic_gated_mlp()
    model.enable_gradient_variance(every=3)
    steps = _StepLogs()
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                        callbacks=[steps])
    # The running mean moves at steps 0, 3 and 6 of each epoch and nowhere else.
    expected_running = [single[0]] * 3 + [np.mean(single[0:4:3])] * 3 + [
        np.mean(single[0:7:3])]
    np.testing.assert_allclose(steps.values[:7], expected_running, rtol=1e-5)
    np.testing.assert_allclose(steps.values[7:], expected_running, rtol=1e-5)  # restarted
    np.testing.assert_allclose(history.history[RATIO], [np.mean(single[0:7:3])] * 2,
                               rtol=1e-5)
    assert abs(np.mean(single[0:7:3]) - np.mean(single)) > 1e-3 * np.mean(single)


def test_every_1_is_the_every_step_mean_and_k_can_change_between_fits():
    x, y = _data()
    single = _per_batch_ratios(x, y, 8)
    model = _deterministic_gated_mlp()
    model.enable_gradient_variance(every=2)
    assert model.variance_every == 2
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.enable_gradient_variance(every=1)
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert history.history[RATIO][0] == pytest.approx(np.mean(single), rel=1e-5)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "4"])
def test_bad_k_is_a_clear_error(bad):
    model = _deterministic_gated_mlp()
    with pytest.raises(ValueError, match="every"):
        model.enable_gradient_variance(every=bad)
    assert not model.tracks_gradient_variance  # untouched
    with pytest.raises(ValueError, match="variance_every"):
        DynHPCallback(variance_every=bad)


def test_dynhp_callback_passes_k_and_grows_the_batch():
    x, y = _data(n=96)
    model = _deterministic_gated_mlp()
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((self.model.variance_every, logs[RATIO]))

    data = tfdynhp.DynamicBatches(x, y, batch_size=8, seed=0)
    dynhp = DynHPCallback(prune=False, dynamic_batch=True, alpha_bs=0.5, variance_every=4)
    model.fit(data, epochs=2, verbose=0, callbacks=[Spy(), dynhp])
    assert [k for k, _ in seen] == [4, 4]
    assert all(ratio > 0 for _, ratio in seen)
    assert dynhp.history[0]["dynhp/next_batch_size"] > 8
    assert not model.tracks_gradient_variance  # switched off after fit


def test_philox_noise_is_keras_uniform_without_xla():
    a = philox_uniform((5, 7), keras.random.SeedGenerator(11))
    b = keras.random.uniform((5, 7), seed=keras.random.SeedGenerator(11))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _weights_after_one_step(jit, x, y):
    model = _deterministic_gated_mlp()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  jit_compile=jit)
    model.enable_gradient_variance()
    logs = model.train_on_batch(x, y, return_dict=True)
    return logs, [w.numpy() for w in model.weights], model


def test_jit_compiled_step_matches_the_graph_step():
    x, y = _data(n=16)
    plain_logs, plain_weights, _ = _weights_after_one_step(False, x, y)
    jit_logs, jit_weights, model = _weights_after_one_step(True, x, y)
    assert model.jit_compile
    for key in ("loss", RATIO):
        assert jit_logs[key] == pytest.approx(plain_logs[key], rel=1e-4)
    for a, b in zip(plain_weights, jit_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_jit_compile_keeps_working_after_surgery():
    """A jit-compiled gated model is pruned at an epoch end and the next epoch retraces and
    trains the narrower model; gate statistics still count every example."""
    x, y = _data(n=64)
    model = tfdynhp.gate(architectures.mlp(12, hidden=(16,), num_classes=3, seed=2), seed=0,
                         drop_rate_init=0.5, l0_lambda=50.0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  jit_compile=True)
    widths, counts = [], []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # before DynHP's pruning
            gate = self.model.gate_layers[-1]
            counts.append(float(gate.gate_observations.numpy()))
            widths.append(gate.units)

    dynhp = DynHPCallback(threshold=0.6)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[Spy(), dynhp])
    assert model.jit_compile
    assert counts == [64.0, 64.0, 64.0]
    assert widths[0] == 16 and widths[-1] < 16  # pruned, then trained narrower
    assert all(np.isfinite(history.history["loss"]))
    assert model.predict(x, verbose=0).shape == (64, 3)
    assert isinstance(model.gate_layers[0], HardConcreteGate)
