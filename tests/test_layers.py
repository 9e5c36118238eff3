import keras
import numpy as np
import pytest

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
