"""The gates learn with their own Adam, at a pace set in epochs: independent of the model's
optimizer, learning rate and data set size."""

import keras
import numpy as np
import pytest
from conftest import make_mlp
from tfdynhp.callbacks import DynHPCallback

import tfdynhp


def test_gates_are_not_trained_by_the_models_optimizer():
    model = tfdynhp.gate(make_mlp(6, [5], 3), seed=0)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(40, 6)).astype("float32")
    model.fit(x, np.arange(40) % 3, epochs=1, batch_size=8, verbose=0)
    gate_ids = {id(g.log_alpha) for g in model.gate_layers}
    assert not gate_ids & {id(v) for v in model.trainable_variables}
    assert len(model.optimizer._trainable_variables) == len(model.trainable_variables)
    for gate in model.gate_layers:
        assert int(keras.ops.convert_to_numpy(gate.gate_steps)) == 5  # 40 examples / 8


def test_gates_learn_at_gate_speed_per_epoch_whatever_the_data_size_and_optimizer():
    """With the model frozen (learning rate 0) and a strong penalty, every gate closes at the
    same pace in epochs: about `gate_speed` in log_alpha per epoch, for 40 or 800 examples."""
    moved = []
    for n in (40, 800):
        keras.utils.set_random_seed(0)
        model = tfdynhp.gate(make_mlp(6, [5], 3), l0_lambda=1e6, gate_speed=0.5, seed=0)
        model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
        x = np.random.default_rng(0).normal(size=(n, 6)).astype("float32")
        start = [keras.ops.convert_to_numpy(g.log_alpha).copy() for g in model.gate_layers]
        model.fit(x, np.arange(n) % 3, epochs=2, batch_size=8, verbose=0)
        moved.append(np.mean([np.mean(s - keras.ops.convert_to_numpy(g.log_alpha))
                              for s, g in zip(start, model.gate_layers)]))
    # About 2 epochs x 0.5 in both, though 20 times more steps ran for 800 examples (the
    # penalty's gradient grows as a gate closes, so Adam's normalised steps run a bit ahead).
    assert 0.8 < moved[0] < 1.1
    assert 0.8 < moved[1] < 1.3


def test_dynamic_batches_give_the_gates_each_epochs_step(digits):
    x, y, _, _ = digits
    model = tfdynhp.gate(make_mlp(64, [16], 10), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    data = tfdynhp.DynamicBatches(x, y, batch_size=16, seed=0)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            gate = self.model.gate_layers[0]
            seen.append((data.batch_size,
                         float(keras.ops.convert_to_numpy(gate.gate_learning_rate))))

    model.fit(data, epochs=3, verbose=0,
              callbacks=[Spy(), DynHPCallback(budget="20MB", alpha_bs=0.5)])
    for batch, rate in seen:
        assert rate == np.float32(1.0 / np.ceil(len(x) / batch))
    assert seen[-1][0] > seen[0][0]  # the batch grew, so the step grew


def test_a_step_the_loss_scale_skips_leaves_the_gates_alone(digits):
    """Under mixed precision `LossScaleOptimizer` skips a step whose scaled gradients overflow
    float16 (and halves the scale); the gates' own Adam must skip it too, not take an inf."""
    x, y, _, _ = digits
    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = tfdynhp.gate(make_mlp(64, [16], 10), drop_rate_init=0.5, seed=0)
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01),
                                                      initial_scale=2.0**40),
                  "sparse_categorical_crossentropy")
    before = [g.log_alpha.numpy().copy() for g in model.gate_layers]
    model.train_on_batch(x[:64], y[:64])
    assert float(model.optimizer.dynamic_scale.numpy()) == 2.0**39  # the step was skipped
    for gate, log_alpha in zip(model.gate_layers, before):
        np.testing.assert_array_equal(gate.log_alpha.numpy(), log_alpha)
        assert float(gate.gate_steps.numpy()) == 0.0
    for _ in range(40):  # the scale comes down to a finite one and the gates train
        model.train_on_batch(x[:64], y[:64])
    for gate, log_alpha in zip(model.gate_layers, before):
        assert np.all(np.isfinite(gate.log_alpha.numpy()))
        assert not np.array_equal(gate.log_alpha.numpy(), log_alpha)


def test_fit_before_compile_gives_keras_message_and_changes_nothing(digits):
    x, y, _, _ = digits
    model = tfdynhp.gate(make_mlp(64, [8], 10), seed=0)
    sizes = [gate.dataset_size for gate in model.gate_layers]
    with pytest.raises(ValueError, match=r"call `compile\(\)`"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[DynHPCallback()])
    assert [gate.dataset_size for gate in model.gate_layers] == sizes
