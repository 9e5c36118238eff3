import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdynhp.layers.gate import HardConcreteGate, SelectFeatures
from tfdynhp.math import hard_concrete as gates


def test_gate_at_inference_scales_channels_by_test_time_gates():
    gate = HardConcreteGate(seed=0)
    x = np.arange(12, dtype="float32").reshape(1, 2, 2, 3)
    gate.build(x.shape)
    gate.log_alpha.assign(np.array([10.0, 0.0, -10.0], "float32"))
    z = np.array([1.0, 0.5, 0.0])  # clip(sigmoid(la) * 1.2 - 0.1, 0, 1)
    np.testing.assert_allclose(gate(x), x * z, rtol=1e-5)
    np.testing.assert_allclose(gate.test_time_gates(), z, atol=1e-4)


def test_default_initialisation_keeps_outputs_exactly():
    # drop_rate_init=0.05: sigmoid(log 19) * 1.2 - 0.1 > 1, so z_hat is exactly 1.
    gate = HardConcreteGate(seed=0)
    x = np.random.default_rng(0).normal(size=(4, 7)).astype("float32")
    np.testing.assert_array_equal(gate(x), x)
    # Louizos' 0.5 halves every channel at first: documented, not hidden.
    half = HardConcreteGate(drop_rate_init=0.5, seed=0)
    np.testing.assert_allclose(half(x), 0.5 * x, rtol=0.02)


def test_gate_counts_open_gates_per_example_in_training():
    gate = HardConcreteGate(seed=1)
    gate.build((None, 4, 2))
    gate.log_alpha.assign(np.array([30.0, -30.0], "float32"))  # always open / always closed
    gate(np.ones((5, 4, 2), "float32"), training=True)
    gate(np.ones((3, 4, 2), "float32"), training=True)
    gate(np.ones((4, 4, 2), "float32"), training=False)  # inference does not count
    np.testing.assert_array_equal(gate.activation_rates(), [1.0, 0.0])
    assert float(keras.ops.convert_to_numpy(gate.gate_observations)) == 8
    gate.reset_gate_statistics()
    assert np.isnan(gate.activation_rates()).all()


def test_one_gate_sample_per_example_and_channel_shared_over_positions():
    gate = HardConcreteGate(drop_rate_init=0.5, seed=2)
    out = np.asarray(gate(np.ones((64, 3, 3, 5), "float32"), training=True))
    # Every spatial position of one example and channel has the same gate value ...
    assert np.all(out == out[:, :1, :1, :])
    # ... and the examples sample their own.
    assert len(np.unique(np.round(out[:, 0, 0, 0], 5))) > 10


def test_batch_sampling_shares_one_sample_and_counts_every_example():
    gate = HardConcreteGate(drop_rate_init=0.5, sampling="batch", seed=3)
    out = np.asarray(gate(np.ones((16, 4), "float32"), training=True))
    assert np.all(out == out[:1])
    counts = keras.ops.convert_to_numpy(gate.gate_active_count)
    assert set(np.unique(counts)) <= {0.0, 16.0}


def test_penalty_is_lambda_cost_times_expected_open_gates_over_n():
    gate = HardConcreteGate(l0_lambda=0.5, unit_cost=3.0, dataset_size=10, seed=0)
    gate.build((None, 4))
    expected = gates.expected_l0_penalty(gate.log_alpha, 0.5, 3.0, 10)
    assert float(gate.l0_penalty()) == pytest.approx(float(expected))
    gate.set_penalty(l0_lambda=2.0, dataset_size=20)
    expected = gates.expected_l0_penalty(gate.log_alpha, 2.0, 3.0, 20)
    assert float(gate.l0_penalty()) == pytest.approx(float(expected))


@pytest.mark.parametrize("layer", [HardConcreteGate(l0_lambda=0.2, unit_cost=2.5, seed=4),
                                   SelectFeatures([0, 2, 5])])
def test_config_round_trip(layer):
    layer.build((None, 6))
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"l0_lambda": -1.0}, "l0_lambda"),
        ({"drop_rate_init": 0.0}, "drop_rate_init"),
        ({"limit_low": 0.1}, "limit_low"),
        ({"dataset_size": 0}, "dataset_size"),
        ({"sampling": "pixel"}, "sampling"),
        ({"unit_cost": float("nan")}, "unit_cost"),
    ],
)
def test_gate_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HardConcreteGate(**kwargs)


def test_select_features_gathers_and_validates():
    layer = SelectFeatures([1, 3])
    np.testing.assert_array_equal(layer(np.arange(8.0).reshape(2, 4)), [[1, 3], [5, 7]])
    assert SelectFeatures()(np.ones((2, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match="strictly increasing"):
        SelectFeatures([3, 1])
    with pytest.raises(ValueError, match="out of range"):
        SelectFeatures([0, 9])(np.ones((1, 4)))


def test_adam_update_matches_a_hand_computed_step():
    g, m, v = (np.array(a, "float32") for a in ([0.5, -2.0], [0.1, 0.0], [0.01, 0.0]))
    delta, m1, v1 = gates.adam_update(g, m, v, step=3, learning_rate=0.1)
    m_ref = 0.9 * m + 0.1 * g
    v_ref = 0.999 * v + 0.001 * g**2
    step_ref = -0.1 * (m_ref / (1 - 0.9**3)) / (np.sqrt(v_ref / (1 - 0.999**3)) + 1e-8)
    np.testing.assert_allclose(m1, m_ref, rtol=1e-5)
    np.testing.assert_allclose(v1, v_ref, rtol=1e-5)
    np.testing.assert_allclose(delta, step_ref, rtol=1e-5)


def test_gate_applies_its_own_adam_step_and_none_when_frozen():
    gate = HardConcreteGate(gate_speed=2.0, seed=0)
    gate.build((None, 3))
    gate.set_steps_per_epoch(4)  # step 2.0 / 4
    before = keras.ops.convert_to_numpy(gate.log_alpha).copy()
    gate.apply_gradient(np.array([1.0, -1.0, 0.0], "float32"))
    after = keras.ops.convert_to_numpy(gate.log_alpha)
    # The first bias-corrected Adam step moves each gate by the learning rate against its sign.
    np.testing.assert_allclose(after - before, [-0.5, 0.5, 0.0], atol=1e-5)
    gate.freeze()
    gate.apply_gradient(np.array([1.0, 1.0, 1.0], "float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(gate.log_alpha), after)
    assert float(gate.l0_penalty()) == 0.0


@pytest.mark.parametrize(
    "shape, sampling, dtype",
    [((6, 5), "example", "float32"), ((3, 4, 4, 5), "example", "float32"),
     ((3, 7, 5), "example", "float32"), ((6, 5), "batch", "float32"),
     ((3, 4, 4, 5), "batch", "float32"), ((6, 5), "example", "float16")],
)
def test_gate_gradients_equal_autodiff_of_the_reference_formula(shape, sampling, dtype):
    """The gate's written-out gradient (and its cheaper sample) against TensorFlow's autodiff
    of `sigmoid((log u - log(1 - u) + log_alpha) / beta)`, stretched and clipped."""
    import tensorflow as tf

    policy = "mixed_float16" if dtype == "float16" else "float32"
    gate = HardConcreteGate(seed=3, sampling=sampling, dtype=policy)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape), dtype)
    gate.build(shape)
    # Gates open, closed and in between, so every branch of the clip is taken.
    gate.log_alpha.assign(np.array([-3.0, -0.5, 0.3, 1.5, 4.0], "float32"))
    upstream = tf.constant(rng.normal(size=shape), dtype)
    state = np.array(keras.ops.convert_to_numpy(gate.seed_generator.state))
    with tf.GradientTape() as tape:
        tape.watch(gate.log_alpha.value)
        tape.watch(x)
        loss = tf.reduce_sum(tf.cast(gate(x, training=True) * upstream, tf.float32))
    got = tape.gradient(loss, [gate.log_alpha.value, x])
    gate.seed_generator.state.assign(state)  # the same noise again
    noise_shape = (shape[0],) + (1,) * (len(shape) - 2) + (5,) if sampling == "example" else (5,)
    from tfdynhp.layers.gate import philox_uniform

    u = philox_uniform(noise_shape, gate.seed_generator)
    log_alpha = tf.constant(keras.ops.convert_to_numpy(gate.log_alpha))
    with tf.GradientTape() as tape:
        tape.watch(log_alpha)
        tape.watch(x)
        s = tf.sigmoid((tf.math.log(u) - tf.math.log(1.0 - u) + log_alpha) / gates.BETA)
        z = tf.clip_by_value(s * 1.2 - 0.1, 0.0, 1.0)
        loss = tf.reduce_sum(tf.cast(x * tf.cast(z, dtype) * upstream, tf.float32))
    expected = tape.gradient(loss, [log_alpha, x])
    tolerance = 2e-3 if dtype == "float16" else 2e-5
    np.testing.assert_allclose(got[0], expected[0], rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(got[1], expected[1], rtol=tolerance, atol=tolerance)


def test_gate_adam_equals_the_reference_update_over_steps():
    """The fused Adam kernel is the reference update; a skipped step (a boolean tensor, the
    loss scale's) changes nothing."""
    gate = HardConcreteGate(seed=0)
    gate.build((None, 4))
    gate.set_steps_per_epoch(3)
    log_alpha = keras.ops.convert_to_numpy(gate.log_alpha).astype("float64")
    m = v = np.zeros(4)
    rng = np.random.default_rng(1)
    for step in range(1, 6):
        gradient = rng.normal(size=4).astype("float32")
        gate.apply_gradient(gradient)
        gate.apply_gradient(gradient * 100, apply=tf.constant(False))  # skipped
        delta, m, v = (np.asarray(a, "float64") for a in gates.adam_update(
            gradient, m.astype("float32"), v.astype("float32"), float(step), 1.0 / 3))
        log_alpha = log_alpha + delta
    # float32 steps of ~0.3 accumulate ~1e-5 of rounding against the float64 reference.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gate.log_alpha), log_alpha,
                               rtol=1e-5, atol=3e-5)
    assert float(keras.ops.convert_to_numpy(gate.gate_steps)) == 5.0


def test_a_folded_gate_is_an_identity_with_open_test_time_gates():
    gate = HardConcreteGate(seed=0, drop_rate_init=0.3)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    gate(x)
    with pytest.raises(ValueError, match="freeze"):
        gate.fold()
    gate.freeze()
    gate.fold()
    np.testing.assert_array_equal(gate.test_time_gates(), np.ones(3))
    np.testing.assert_array_equal(gate(x, training=True), x)
    assert gate.get_config()["folded"] and float(gate.l0_penalty()) == 0.0
    clone = HardConcreteGate.from_config(gate.get_config())
    assert clone.folded and clone.frozen
    gate.unfreeze()
    assert not gate.folded
    with pytest.raises(ValueError, match="must be frozen"):
        HardConcreteGate(folded=True)
