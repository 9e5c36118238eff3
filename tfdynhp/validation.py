"""Argument checks shared across tfdynhp: each error names the argument, what was expected and
what was received."""

import math
import numbers


def check_integer(name, value, minimum=0):
    """Returns `value` as an `int`.

    Raises:
        ValueError: unless `value` is an integer (not a bool) >= `minimum`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise ValueError(f"Expected `{name}` to be {expected}. Received: {name}={value!r}")
    return int(value)


def check_real(name, value, low=0.0, high=math.inf):
    """Returns `value`, a finite real number in `[low, high]`.

    Raises:
        TypeError: unless `value` is a real number (not a bool).
        ValueError: if it is not finite or outside `[low, high]`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Expected `{name}` to be a number. Received: {name}={value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        if low == 0 and high == math.inf:
            expected = "a non-negative, finite number"
        else:
            expected = f"a finite number in [{low:g}, {high:g}]"
        raise ValueError(f"Expected `{name}` to be {expected}. Received: {name}={value!r}")
    return value


class ConfigurationError(ValueError):
    """A run's configuration cannot work (a budget too small for the model, an unreachable
    target, data that does not fit the model): raised before any training, with the numbers
    and the fix. The command line reports these in one line; other errors keep their
    traceback."""
