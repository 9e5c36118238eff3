"""Memory budgets: parsing, formatting and accounting (METHOD.md section 4).

Pure functions over counts (never over models), so the numbers can be checked by hand:

- `parse_budget("0.6MiB")` turns a user's budget into bytes;
- `format_bytes(n)` reports bytes with both MiB and MB, the unit always named;
- `paper_mbytes(n)` / `paper_mbytes_to_bytes(m)` convert to and from the paper's "MBytes",
  which are bytes / 1024 / 1000 (the paper prints LeNet-300-100's 1,066,440 bytes as
  "1.041 MBytes");
- `paper_memory_bytes(...)` is the paper's accounting (non-zero weights + one input batch);
- `full_memory_breakdown(...)` is ours (weights, gates, gradients, optimizer slots, activations
  kept for the backward pass, input batch), returned as a `MemoryBreakdown`.
"""

import dataclasses
import decimal
import math
import numbers
import re

from tfdynhp.validation import check_integer, check_real

_DECIMAL_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9}
_BINARY_UNITS = {"kib": 2**10, "mib": 2**20, "gib": 2**30}
_UNITS = {"": 1, **_DECIMAL_UNITS, **_BINARY_UNITS}
_BUDGET_RE = re.compile(
    r"^\s*(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-z]*)\s*$"
)
_ACCEPTED_FORMS = (
    "a positive number of bytes (int or float, e.g. 1066440 or 1e6) or a string "
    "'<number><unit>' with an optional unit among B, KB, MB, GB (powers of 1000) and "
    "KiB, MiB, GiB (powers of 1024), case-insensitive, e.g. '1MB', '512KiB', '0.6MiB', "
    "'1.5 GB', '2048', '1e6B'"
)


def parse_budget(value):
    """Parses a memory budget into a whole number of bytes.

    A budget is the `C` of the paper's eqs. 9-10: the memory training may use. Units follow
    the SI / IEC convention (MB = 10^6 bytes, MiB = 2^20 bytes) so "1MB" and "1MiB" differ,
    as they do in the paper's Table 3 once its "MBytes" are read correctly (METHOD.md
    section 4). Fractional byte counts are rounded down, so the parsed budget never exceeds
    the one asked for. Decimal arithmetic is used, so "0.3MB" is exactly 300,000 bytes.

    Args:
        value: the budget: an `int` or `float` number of bytes, or a string such as
            `"1MB"`, `"512KiB"`, `"0.6MiB"`, `"1.5 GB"`, `"2048"` or `"1e6B"`. Units
            (case-insensitive): B, KB, MB, GB (powers of 1000), KiB, MiB, GiB (powers of
            1024); no unit means bytes.

    Returns:
        The budget in bytes, a positive `int`.

    Raises:
        ValueError: if the value is not positive and finite, rounds down to 0 bytes, or is a
            string in none of the accepted forms (e.g. `""`, `"1XB"`, `"-1MB"`, `"nan"`).
        TypeError: if the value is neither a number nor a string.

    Example:

    >>> parse_budget("0.6MiB")
    629145
    >>> parse_budget("1.5 GB")
    1500000000
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise TypeError(
            f"Expected the budget to be {_ACCEPTED_FORMS}. "
            f"Received: {value!r} of type {type(value).__name__}"
        )
    if isinstance(value, str):
        match = _BUDGET_RE.match(value)
        unit = match.group("unit").lower() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(f"Could not parse the budget {value!r}. Expected {_ACCEPTED_FORMS}.")
        amount = decimal.Decimal(match.group("number")) * _UNITS[unit]
    else:
        if not math.isfinite(value):
            raise ValueError(f"Expected the budget to be {_ACCEPTED_FORMS}. Received: {value!r}")
        # `str` gives the shortest repr, so 0.1 is read as the decimal 0.1 the user typed.
        amount = decimal.Decimal(str(value)) if isinstance(value, float) else value
    if amount <= 0:
        raise ValueError(
            f"Expected a positive budget. Received: {value!r}. Accepted forms: {_ACCEPTED_FORMS}."
        )
    n_bytes = int(amount)  # Decimal and int truncate towards zero, i.e. round down here.
    if n_bytes < 1:
        raise ValueError(
            f"The budget {value!r} is less than one byte. Expected {_ACCEPTED_FORMS}."
        )
    return n_bytes


def format_bytes(n_bytes):
    """Formats a byte count with its MiB and MB values, naming each unit.

    Args:
        n_bytes: a non-negative integer number of bytes.

    Returns:
        A string such as `"1,066,440 B (1.017 MiB, 1.066 MB)"`.

    Raises:
        ValueError: if `n_bytes` is not a non-negative integer.

    Example:

    >>> format_bytes(1066440)
    '1,066,440 B (1.017 MiB, 1.066 MB)'
    """
    n_bytes = check_integer("n_bytes", n_bytes)
    return f"{n_bytes:,} B ({n_bytes / 2**20:.3f} MiB, {n_bytes / 10**6:.3f} MB)"


def paper_mbytes(n_bytes):
    """Converts bytes to the paper's "MBytes" unit: `n_bytes / 1024 / 1000`.

    The paper (Valerio et al., Tables 2-3) prints LeNet-300-100's 266,610 float32 parameters
    (1,066,440 bytes) as "1.041 MBytes", i.e. bytes / 1024 / 1000 (METHOD.md section 4).
    Use this only to compare with the paper; report bytes, MiB or MB otherwise.

    Args:
        n_bytes: a non-negative number of bytes.

    Returns:
        The value in the paper's "MBytes" as a float.

    Raises:
        ValueError: if `n_bytes` is negative or not finite.
        TypeError: if `n_bytes` is not a number.

    Example:

    >>> round(paper_mbytes(1066440), 3)
    1.041
    """
    return check_real("n_bytes", n_bytes) / 1024 / 1000


def paper_mbytes_to_bytes(mbytes):
    """Converts the paper's "MBytes" back to bytes: `round(mbytes * 1024 * 1000)`.

    The inverse of `paper_mbytes`, e.g. the paper's DynHP model of 0.124 "MBytes" is
    126,976 bytes (31,744 float32 parameters) and its 0.611 "MBytes" training memory is
    625,664 bytes.

    Args:
        mbytes: a non-negative, finite value in the paper's "MBytes".

    Returns:
        The number of bytes, an `int` (rounded to the nearest byte).

    Raises:
        ValueError: if `mbytes` is negative or not finite.
        TypeError: if `mbytes` is not a number.

    Example:

    >>> paper_mbytes_to_bytes(0.124)
    126976
    """
    mbytes = check_real("mbytes", mbytes)
    return round(decimal.Decimal(str(mbytes)) * 1024 * 1000)


@dataclasses.dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes of training memory, per component (the "full" accounting of METHOD.md section 4).

    Args:
        weights: bytes of the model's non-gate variables (kernels, biases, normalisation
            statistics).
        gates: bytes of the Hard Concrete gate parameters (`log_alpha`) and their Adam moments.
        gradients: bytes of one gradient per trainable value.
        optimizer_slots: bytes of the optimizer's slot variables (momentum, Adam moments).
        activations: bytes of the activations kept for the backward pass, for the whole batch.
        input_batch: bytes of one input mini-batch.

    Raises:
        ValueError: if a field is not a non-negative integer.

    Example:

    >>> m = MemoryBreakdown(weights=40, gates=8, gradients=48, optimizer_slots=0,
    ...                     activations=64, input_batch=32)
    >>> m.total, m.fixed, m.per_batch
    (192, 96, 96)
    """

    weights: int
    gates: int
    gradients: int
    optimizer_slots: int
    activations: int
    input_batch: int

    def __post_init__(self):
        for field in dataclasses.fields(self):
            check_integer(field.name, getattr(self, field.name))

    @property
    def fixed(self):
        """Bytes that do not depend on the batch size (the paper's `N_i`, eqs. 9-10)."""
        return self.weights + self.gates + self.gradients + self.optimizer_slots

    @property
    def per_batch(self):
        """Bytes that grow with the batch size (activations and the input batch)."""
        return self.activations + self.input_batch

    @property
    def total(self):
        """All bytes: `fixed + per_batch`."""
        return self.fixed + self.per_batch

    def as_dict(self):
        """Returns the fields plus `"total"` as a plain `dict` (e.g. for `logs` or JSON)."""
        return {**dataclasses.asdict(self), "total": self.total}


def paper_memory_bytes(nonzero_weights, input_features, batch_size, bytes_per_value=4):
    """The paper's training-memory accounting, in bytes.

    Valerio et al. count the non-zero float32 weights of all layers plus one input
    mini-batch: `(nonzero_weights + input_features * batch_size) * bytes_per_value`.

    Args:
        nonzero_weights: number of non-zero weights (biases included) of the model.
        input_features: number of input values of one example (784 for Fashion-MNIST).
        batch_size: the mini-batch size.
        bytes_per_value: bytes of one value. Defaults to 4 (float32).

    Returns:
        The number of bytes, an `int`.

    Raises:
        ValueError: if an argument is not a non-negative integer (`bytes_per_value` must be
            positive).

    Example:

    >>> paper_memory_bytes(266610, 784, 0)  # LeNet-300-100, weights only
    1066440
    """
    nonzero_weights = check_integer("nonzero_weights", nonzero_weights)
    input_features = check_integer("input_features", input_features)
    batch_size = check_integer("batch_size", batch_size)
    bytes_per_value = check_integer("bytes_per_value", bytes_per_value, 1)
    return (nonzero_weights + input_features * batch_size) * bytes_per_value


def full_memory_breakdown(
    n_weights,
    n_gates,
    n_trainable,
    n_slot_values,
    activation_values_per_example,
    input_values_per_example,
    batch_size,
    bytes_per_value=4,
):
    """Our training-memory accounting (METHOD.md section 4, "full"), from value counts.

    Counts, not models: the caller counts the values (the engine does it from the model), so
    this stays a pure function that tests can check by hand.

    Args:
        n_weights: number of non-gate values of the model (kernels, biases, normalisation
            statistics).
        n_gates: number of gate values (`log_alpha` and its two Adam moments per gate).
        n_trainable: number of values a gradient is held for (trainable values and gates).
        n_slot_values: number of optimizer slot values (e.g. 2 * n_trainable for Adam,
            n_trainable for SGD with momentum, 0 for plain SGD).
        activation_values_per_example: number of activation values kept for the backward
            pass for one example.
        input_values_per_example: number of input values of one example.
        batch_size: the mini-batch size.
        bytes_per_value: bytes of one value. Defaults to 4 (float32).

    Returns:
        A `MemoryBreakdown` in bytes: weights, gates, gradients (`n_trainable` values),
        optimizer slots, activations (`activation_values_per_example * batch_size` values)
        and input batch (`input_values_per_example * batch_size` values).

    Raises:
        ValueError: if a count is not a non-negative integer or `bytes_per_value` is not a
            positive integer.

    Example:

    >>> m = full_memory_breakdown(266610, 1184, 267794, 0, 410, 784, 16)
    >>> m.activations, m.input_batch
    (26240, 50176)
    """
    counts = {
        "n_weights": n_weights,
        "n_gates": n_gates,
        "n_trainable": n_trainable,
        "n_slot_values": n_slot_values,
        "activation_values_per_example": activation_values_per_example,
        "input_values_per_example": input_values_per_example,
        "batch_size": batch_size,
    }
    c = {name: check_integer(name, value) for name, value in counts.items()}
    bpv = check_integer("bytes_per_value", bytes_per_value, 1)
    return MemoryBreakdown(
        weights=c["n_weights"] * bpv,
        gates=c["n_gates"] * bpv,
        gradients=c["n_trainable"] * bpv,
        optimizer_slots=c["n_slot_values"] * bpv,
        activations=c["activation_values_per_example"] * c["batch_size"] * bpv,
        input_batch=c["input_values_per_example"] * c["batch_size"] * bpv,
    )
