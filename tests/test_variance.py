import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdynhp
from tfdynhp.variance import dense_gradient_variance_l1


def brute_force_variance_l1(x, deltas, use_bias=True):
    per_example = [np.outer(xi, di).ravel() for xi, di in zip(x, deltas)]
    if use_bias:
        per_example = [np.concatenate([g, d]) for g, d in zip(per_example, deltas)]
    return np.var(np.stack(per_example), axis=0, ddof=1).sum()


@pytest.mark.parametrize("use_bias", [True, False])
def test_matches_brute_force_per_example_gradients(use_bias):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 6))
    deltas = rng.normal(size=(17, 4))
    got = float(dense_gradient_variance_l1(x, deltas, use_bias))
    assert got == pytest.approx(brute_force_variance_l1(x, deltas, use_bias), rel=1e-6)


def test_training_step_statistic_matches_per_example_loop(digits):
    """The metric the training step reports equals a per-example-gradient loop, same noise;
    F is the data loss (the L0 penalty, here non-zero, is left out)."""
    x, y, _, _ = digits
    x, y = x[:32], y[:32]
    keras.utils.set_random_seed(3)
    base = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(12, activation="tanh"), keras.layers.Dense(10)]
    )
    model = tfdynhp.gate(base, l0_lambda=0.5, seed=1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(0.0), loss_fn)
    model.enable_gradient_variance()
    gated = [layer for layer in model.layers if isinstance(layer, tfdynhp.GatedDense)]
    seeds = [np.array(keras.ops.convert_to_numpy(g.seed_generator.state)) for g in gated]
    logs = model.train_on_batch(x, y, return_dict=True)

    # Replay the same gate noise example by example.
    for g, state in zip(gated, seeds):
        g.seed_generator.state.assign(state)
    noise = [keras.random.uniform((32, g.input_units), seed=g.seed_generator) for g in gated]
    weights = [v for g in gated for v in (g.kernel, g.bias)]
    per_example = []
    total_loss = 0.0
    for i in range(32):
        with tf.GradientTape() as tape:
            h = x[i : i + 1]
            h = model.layers[1](h)  # SelectFeatures
            for g, u in zip(gated, noise):
                z = tfdynhp.gates.sample_gates(g.log_alpha, u[i : i + 1])
                h = (h * z) @ g.kernel + g.bias
                if g.activation is not None:
                    h = g.activation(h)
            loss = loss_fn(y[i : i + 1], h)
        total_loss += float(loss)
        grads = tape.gradient(loss, weights)
        per_example.append(np.concatenate([np.ravel(gr) for gr in grads]))
    expected = np.var(np.stack(per_example), axis=0, ddof=1).sum()
    assert logs["grad_variance_l1"] == pytest.approx(expected, rel=1e-4)
    assert logs["grad_variance_ratio"] == pytest.approx(expected / (total_loss / 32), rel=1e-4)
