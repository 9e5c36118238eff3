import math

import numpy as np
import pytest

from tfdynhp.math import hard_concrete as gates


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_deterministic_gates_match_hand_values():
    log_alpha = np.array([0.0, 10.0, -10.0, 1.0], "float32")
    expected = [
        0.5 * 1.2 - 0.1,  # sigmoid(0) stretched
        1.0,  # clipped at 1
        0.0,  # clipped at 0
        sigmoid(1.0) * 1.2 - 0.1,
    ]
    np.testing.assert_allclose(gates.deterministic_gates(log_alpha), expected, rtol=1e-6)


def test_sample_gates_match_hand_values():
    log_alpha = np.array([0.5, 0.5, -2.0], "float32")
    u = np.array([0.3, 0.9, 0.999], "float32")
    expected = []
    for la, ui in zip(log_alpha, u):
        s = sigmoid((math.log(ui) - math.log(1 - ui) + la) / (2 / 3))
        expected.append(min(1.0, max(0.0, s * 1.2 - 0.1)))
    np.testing.assert_allclose(gates.sample_gates(log_alpha, u), expected, rtol=1e-5)


def test_prob_nonzero_matches_formula_and_monte_carlo():
    log_alpha = np.array([-1.0, 0.0, 2.0], "float32")
    expected = [sigmoid(a - (2 / 3) * math.log(0.1 / 1.1)) for a in log_alpha]
    np.testing.assert_allclose(gates.prob_nonzero(log_alpha), expected, rtol=1e-6)
    rng = np.random.default_rng(0)
    u = rng.uniform(size=(200_000, 3)).astype("float32")
    empirical = (np.asarray(gates.sample_gates(log_alpha, u)) > 0).mean(axis=0)
    np.testing.assert_allclose(empirical, expected, atol=0.005)


def test_expected_l0_penalty_counts_weights_and_divides_by_dataset_size():
    log_alpha = np.array([0.0, 1.0], "float32")
    p = [sigmoid(a - (2 / 3) * math.log(0.1 / 1.1)) for a in log_alpha]
    value = gates.expected_l0_penalty(log_alpha, 0.1, unit_cost=300, dataset_size=1000)
    assert float(value) == pytest.approx(0.1 * 300 * sum(p) / 1000, rel=1e-6)
    assert float(gates.expected_l0_penalty(log_alpha, 2.0)) == pytest.approx(2 * sum(p), 1e-6)


def test_initial_log_alpha():
    assert gates.initial_log_alpha(0.5) == 0.0
    assert gates.initial_log_alpha(0.2) == pytest.approx(math.log(4.0))
    with pytest.raises(ValueError, match="drop_rate_init"):
        gates.initial_log_alpha(1.0)
