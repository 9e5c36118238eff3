"""Tests for tfdynhp.math.batch_rule: hand-computed points plus hypothesis properties."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfdynhp.math import batch_rule as bs


@pytest.mark.parametrize(
    "b, alpha, ratio, expected",
    [
        (16, 0.98, 100.0, 18),  # (1 - 0.98) * 100 = 2 exactly (float gives 2.0000000000000018)
        (16, 0.98, 100.5, 19),  # 2.01 -> 3
        (16, 0.99, 0.0, 16),
        (16, 1.0, 1e9, 16),  # alpha_bs = 1 never grows
        (16, 0.0, 3.2, 20),  # ceil(3.2) = 4
        (1, 0.5, 1.0, 2),  # ceil(0.5) = 1
        (128, 0.989, 1000.0, 139),  # (1 - 0.989) * 1000 = 11
        (128, 0.975, 40.0, 129),  # 1.0000000000000009 -> 1
    ],
)
def test_variance_batch_candidate_exact_points(b, alpha, ratio, expected):
    assert bs.variance_batch_candidate(b, alpha, ratio) == expected


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0, "alpha_bs": 0.9, "variance_ratio": 1.0}, "batch_size"),
        ({"batch_size": 2.0, "alpha_bs": 0.9, "variance_ratio": 1.0}, "batch_size"),
        ({"batch_size": True, "alpha_bs": 0.9, "variance_ratio": 1.0}, "batch_size"),
        ({"batch_size": 2, "alpha_bs": 1.01, "variance_ratio": 1.0}, r"alpha_bs.*\[0, 1\]"),
        ({"batch_size": 2, "alpha_bs": -0.1, "variance_ratio": 1.0}, "alpha_bs"),
        ({"batch_size": 2, "alpha_bs": math.nan, "variance_ratio": 1.0}, "alpha_bs"),
        ({"batch_size": 2, "alpha_bs": 0.9, "variance_ratio": -1.0}, "variance_ratio"),
        ({"batch_size": 2, "alpha_bs": 0.9, "variance_ratio": math.nan}, "variance_ratio"),
        ({"batch_size": 2, "alpha_bs": 0.9, "variance_ratio": math.inf}, "variance_ratio"),
    ],
)
def test_variance_batch_candidate_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bs.variance_batch_candidate(**kwargs)


def test_max_batch_for_budget_exact_points():
    assert bs.max_batch_for_budget(1_000_000, 600_000, 4_000) == 100
    assert bs.max_batch_for_budget(1_003_999, 600_000, 4_000) == 100
    assert bs.max_batch_for_budget(1_004_000, 600_000, 4_000) == 101
    assert bs.max_batch_for_budget(600_000, 600_000, 4_000) == 0
    assert bs.max_batch_for_budget(500_000, 600_000, 4_000) == 0
    assert bs.max_batch_for_budget(10.0, 0, 2.5) == 4
    # LeNet-300-100 paper accounting: 2 MB budget, dense weights, 784 floats per example.
    assert bs.max_batch_for_budget(2_000_000, 1_066_440, 784 * 4) == 297


def test_max_batch_for_budget_errors():
    with pytest.raises(ValueError, match="bytes_per_example"):
        bs.max_batch_for_budget(100, 0, 0)
    with pytest.raises(ValueError, match="budget_bytes"):
        bs.max_batch_for_budget(-1, 0, 1)
    with pytest.raises(ValueError, match="fixed_bytes"):
        bs.max_batch_for_budget(1, math.inf, 1)


def test_next_batch_size_exact_points():
    assert bs.next_batch_size(16, 18, 100) == 18
    assert bs.next_batch_size(16, 40, 32) == 32  # capped by the budget
    assert bs.next_batch_size(16, 10, 100) == 16  # candidate below b: never shrink
    assert bs.next_batch_size(16, 40, 8) == 16  # budget below b: keep b, caller decides
    assert bs.next_batch_size(16, 40, 0) == 16
    assert bs.next_batch_size(16, 40, 1000, max_examples=20) == 20
    assert bs.next_batch_size(30, 40, 1000, max_examples=20) == 30


def test_next_batch_size_errors():
    with pytest.raises(ValueError, match="batch_size"):
        bs.next_batch_size(0, 1, 1)
    with pytest.raises(ValueError, match="candidate"):
        bs.next_batch_size(1, -1, 1)
    with pytest.raises(ValueError, match="max_batch"):
        bs.next_batch_size(1, 1, 1.5)
    with pytest.raises(ValueError, match="max_examples"):
        bs.next_batch_size(1, 1, 1, max_examples=0)


_batch = st.integers(min_value=1, max_value=10_000)
_alpha = st.floats(min_value=0.0, max_value=1.0)
_ratio = st.floats(min_value=0.0, max_value=1e6)


@given(_batch, _alpha, _alpha, _ratio)
def test_candidate_is_monotone_non_increasing_in_alpha(b, a1, a2, ratio):
    lo, hi = min(a1, a2), max(a1, a2)
    assert bs.variance_batch_candidate(b, lo, ratio) >= bs.variance_batch_candidate(b, hi, ratio)


@given(_batch, _alpha, _ratio, _ratio)
def test_candidate_never_below_b_and_monotone_in_ratio(b, alpha, r1, r2):
    lo, hi = min(r1, r2), max(r1, r2)
    c_lo = bs.variance_batch_candidate(b, alpha, lo)
    assert c_lo >= b
    assert bs.variance_batch_candidate(b, alpha, hi) >= c_lo


@given(
    _batch,
    st.integers(min_value=0, max_value=20_000),
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=1, max_value=10**5),
    st.one_of(st.none(), st.integers(min_value=1, max_value=20_000)),
)
def test_next_batch_never_shrinks_and_fits_when_room_allows(
    b, candidate, budget, fixed, per_example, max_examples
):
    b_max = bs.max_batch_for_budget(budget, fixed, per_example)
    nxt = bs.next_batch_size(b, candidate, b_max, max_examples=max_examples)
    assert nxt >= b
    assert nxt <= max(b, candidate)
    if max_examples is not None:
        assert nxt <= max(b, max_examples)
    if b_max >= b:  # the current batch fits, so the next one must fit too
        assert nxt <= b_max
        assert fixed + nxt * per_example <= budget
