"""Tests for tfdynhp.math.budget: exact, hand-computed byte counts."""

import dataclasses
import math

import pytest

from tfdynhp.math import budget

# LeNet-300-100: 784*300 + 300 + 300*100 + 100 + 100*10 + 10.
LENET_PARAMS = 266_610
LENET_BYTES = 1_066_440


def test_lenet_parameter_count_is_hand_computed():
    assert 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10 == LENET_PARAMS
    assert LENET_PARAMS * 4 == LENET_BYTES


@pytest.mark.parametrize(
    "value, expected",
    [
        (2048, 2048),
        (1e6, 1_000_000),
        (1066440.9, 1_066_440),
        ("2048", 2048),
        ("1MB", 1_000_000),
        ("1mb", 1_000_000),
        ("1Mb", 1_000_000),
        ("512KiB", 524_288),
        ("512kib", 524_288),
        ("0.6MiB", 629_145),  # 0.6 * 1,048,576 = 629,145.6, rounded down
        ("1.5 GB", 1_500_000_000),
        ("1e6B", 1_000_000),
        ("0.3MB", 300_000),  # exact thanks to Decimal, not 299,999
        ("1.1MB", 1_100_000),
        (" 2 GiB ", 2 * 2**30),
        ("3KB", 3000),
        ("7B", 7),
        (".5KiB", 512),
    ],
)
def test_parse_budget_accepted_forms(value, expected):
    result = budget.parse_budget(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "value",
    ["", "   ", "1XB", "MB", "-1MB", "0", "0MB", "nan", "inf", "1.2.3MB", "1 M B", "0.5B",
     "1TB", "1e", 0, -5, -1.0, 0.4, math.nan, math.inf],
)
def test_parse_budget_rejects_with_accepted_forms(value):
    with pytest.raises(ValueError) as info:
        budget.parse_budget(value)
    assert "KiB" in str(info.value) and "MB" in str(info.value)


@pytest.mark.parametrize("value", [None, [1], True, b"1MB"])
def test_parse_budget_rejects_wrong_types(value):
    with pytest.raises(TypeError, match="Received"):
        budget.parse_budget(value)


def test_format_bytes_names_both_units():
    assert budget.format_bytes(LENET_BYTES) == "1,066,440 B (1.017 MiB, 1.066 MB)"
    assert budget.format_bytes(0) == "0 B (0.000 MiB, 0.000 MB)"
    assert budget.format_bytes(2**20) == "1,048,576 B (1.000 MiB, 1.049 MB)"
    with pytest.raises(ValueError, match="non-negative integer"):
        budget.format_bytes(-1)
    with pytest.raises(ValueError, match="non-negative integer"):
        budget.format_bytes(1.5)


def test_paper_mbytes_matches_the_papers_figures():
    # The paper prints LeNet-300-100 (1,066,440 bytes) as "1.041 MBytes".
    assert budget.paper_mbytes(LENET_BYTES) == pytest.approx(1.04144531, abs=1e-8)
    assert round(budget.paper_mbytes(LENET_BYTES), 3) == 1.041
    assert budget.paper_mbytes(1024 * 1000) == 1.0
    # METHOD.md section 4: 0.124 -> 126,976 bytes (31,744 floats), 0.611 -> 625,664 bytes.
    assert budget.paper_mbytes_to_bytes(0.124) == 126_976
    assert budget.paper_mbytes_to_bytes(0.124) // 4 == 31_744
    assert budget.paper_mbytes_to_bytes(0.611) == 625_664
    assert budget.paper_mbytes_to_bytes(budget.paper_mbytes(LENET_BYTES)) == LENET_BYTES
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(ValueError, match="non-negative, finite"):
            budget.paper_mbytes(bad)
        with pytest.raises(ValueError, match="non-negative, finite"):
            budget.paper_mbytes_to_bytes(bad)
    with pytest.raises(TypeError, match="Received"):
        budget.paper_mbytes("1")
    with pytest.raises(TypeError, match="Received"):
        budget.paper_mbytes_to_bytes(None)


def test_paper_memory_bytes():
    assert budget.paper_memory_bytes(LENET_PARAMS, 784, 0) == LENET_BYTES
    # Dense LeNet-300-100 with a batch of 128: weights + 784 * 128 floats.
    assert budget.paper_memory_bytes(LENET_PARAMS, 784, 128) == 1_066_440 + 401_408
    assert budget.paper_memory_bytes(10, 3, 2, bytes_per_value=2) == (10 + 6) * 2
    with pytest.raises(ValueError, match="batch_size"):
        budget.paper_memory_bytes(10, 3, -1)
    with pytest.raises(ValueError, match="bytes_per_value"):
        budget.paper_memory_bytes(10, 3, 1, bytes_per_value=0)


def test_full_memory_breakdown_lenet_with_adam():
    # LeNet-300-100 with one gate per input unit of each layer: 784 + 300 + 100 gates.
    gates = 784 + 300 + 100
    trainable = LENET_PARAMS + gates
    m = budget.full_memory_breakdown(
        n_weights=LENET_PARAMS,
        n_gates=gates,
        n_trainable=trainable,
        n_slot_values=2 * trainable,  # Adam: two moments
        activation_values_per_example=300 + 100 + 10,
        input_values_per_example=784,
        batch_size=16,
    )
    assert m.weights == 1_066_440
    assert m.gates == 4_736
    assert m.gradients == 1_071_176
    assert m.optimizer_slots == 2_142_352
    assert m.activations == 410 * 16 * 4 == 26_240
    assert m.input_batch == 784 * 16 * 4 == 50_176
    assert m.fixed == 1_066_440 + 4_736 + 1_071_176 + 2_142_352
    assert m.per_batch == 26_240 + 50_176
    assert m.total == 4_361_120
    assert m.as_dict() == {
        "weights": 1_066_440,
        "gates": 4_736,
        "gradients": 1_071_176,
        "optimizer_slots": 2_142_352,
        "activations": 26_240,
        "input_batch": 50_176,
        "total": 4_361_120,
    }


def test_memory_breakdown_is_frozen_and_validated():
    m = budget.MemoryBreakdown(1, 2, 3, 4, 5, 6)
    assert m.total == 21
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.weights = 0
    with pytest.raises(ValueError, match="activations"):
        budget.MemoryBreakdown(1, 2, 3, 4, -5, 6)
    with pytest.raises(ValueError, match="n_slot_values"):
        budget.full_memory_breakdown(1, 1, 1, -1, 1, 1, 1)
