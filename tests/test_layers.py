import keras
import numpy as np
import pytest

from tfdynhp import gates
from tfdynhp.layers import GatedDense, SelectFeatures


def test_gated_dense_inference_uses_test_time_gates():
    layer = GatedDense(2, use_bias=True, seed=0)
    x = np.array([[1.0, 2.0, 3.0]], "float32")
    layer.build(x.shape)
    layer.kernel.assign(np.arange(6, dtype="float32").reshape(3, 2))
    layer.bias.assign(np.array([0.5, -0.5], "float32"))
    layer.log_alpha.assign(np.array([10.0, 0.0, -10.0], "float32"))
    z = np.array([1.0, 0.5, 0.0])  # clip(sigmoid(la) * 1.2 - 0.1, 0, 1)
    expected = (x * z) @ np.arange(6).reshape(3, 2) + np.array([0.5, -0.5])
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5)
    np.testing.assert_allclose(layer.test_time_gates(), z, atol=1e-4)


def test_gated_dense_counts_open_gates_per_example_in_training():
    layer = GatedDense(3, seed=1)
    layer.build((None, 2))
    layer.log_alpha.assign(np.array([30.0, -30.0], "float32"))  # always open / always closed
    layer(np.ones((5, 2), "float32"), training=True)
    layer(np.ones((3, 2), "float32"), training=True)
    layer(np.ones((4, 2), "float32"), training=False)  # inference does not count
    np.testing.assert_array_equal(layer.activation_rates(), [1.0, 0.0])
    assert float(keras.ops.convert_to_numpy(layer.gate_observations)) == 8
    layer.reset_gate_statistics()
    assert np.isnan(layer.activation_rates()).all()


def test_gated_dense_adds_the_expected_l0_penalty():
    layer = GatedDense(4, l0_lambda=0.5, dataset_size=10, seed=0)
    layer(np.ones((1, 3), "float32"))
    expected = gates.expected_l0_penalty(layer.log_alpha, 0.5, 4, 10)
    assert len(layer.losses) == 1
    assert float(layer.losses[0]) == pytest.approx(float(expected))


def test_gated_dense_samples_gates_per_example():
    layer = GatedDense(1, use_bias=False, kernel_initializer="ones", seed=2)
    out = layer(np.ones((64, 5), "float32"), training=True)
    assert len(np.unique(np.round(np.asarray(out), 5))) > 10


@pytest.mark.parametrize("layer", [GatedDense(3, "relu", l0_lambda=0.2, seed=4),
                                   SelectFeatures([0, 2, 5])])
def test_config_round_trip(layer):
    layer.build((None, 6))
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": 0}, "units"),
        ({"units": 2, "l0_lambda": -1.0}, "l0_lambda"),
        ({"units": 2, "drop_rate_init": 0.0}, "drop_rate_init"),
        ({"units": 2, "limit_low": 0.1}, "limit_low"),
        ({"units": 2, "dataset_size": 0}, "dataset_size"),
    ],
)
def test_gated_dense_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GatedDense(**kwargs)


def test_select_features_gathers_and_validates():
    layer = SelectFeatures([1, 3])
    np.testing.assert_array_equal(layer(np.arange(8.0).reshape(2, 4)), [[1, 3], [5, 7]])
    assert SelectFeatures()(np.ones((2, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match="strictly increasing"):
        SelectFeatures([3, 1])
    with pytest.raises(ValueError, match="out of range"):
        SelectFeatures([0, 9])(np.ones((1, 4)))
