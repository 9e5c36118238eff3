"""Batch-size rules of DynHP (paper eqs. 8-10; METHOD.md section 3), as pure functions.

- `variance_batch_candidate`: the gradient-variance candidate, eq. 8,
  `b_next = b + ceil((1 - alpha_bs) * ||S||_1 / F)`;
- `max_batch_for_budget`: the largest batch the memory budget allows, eqs. 9-10,
  `b_max = floor((C - N_i) / bytes_per_example)`;
- `next_batch_size`: combines both, `min(b_next, b_max)`, never shrinking.

The callback computes `||S||_1 / F` and the memory; these functions only do the arithmetic,
so they can be tested at exact points.
"""

import math
import numbers

from tfdynhp.validation import check_integer, check_real

# `1 - alpha_bs` is inexact in binary floating point ((1 - 0.98) * 100 == 2.0000000000000018),
# so a product within this relative tolerance of an integer is taken to be that integer.
_CEIL_RELATIVE_TOLERANCE = 1e-9


def _tolerant_ceil(value):
    nearest = round(value)
    if abs(value - nearest) <= _CEIL_RELATIVE_TOLERANCE * max(1.0, abs(value)):
        return int(nearest)
    return math.ceil(value)


def variance_batch_candidate(batch_size, alpha_bs, variance_ratio):
    """The gradient-variance batch-size candidate of DynHP (paper eq. 8).

    A noisy gradient (large variance `S` relative to the loss `F`) asks for a larger batch
    (Balles, Romero, Hennig 2017): `b_next = b + ceil((1 - alpha_bs) * ||S||_1 / F)`.
    `alpha_bs` close to 1 (the paper uses 0.97-0.99) makes the batch grow slowly. The product
    is rounded up, except that values within a relative 1e-9 of an integer count as that
    integer (so `(1 - 0.98) * 100` gives 2, not 3).

    Args:
        batch_size: the current batch size `b`, a positive integer.
        alpha_bs: the damping factor, in `[0, 1]`; 1 never grows the batch.
        variance_ratio: `||S||_1 / F`, the L1 norm of the per-parameter gradient variance
            divided by the mini-batch loss; finite and >= 0.

    Returns:
        The candidate batch size, an `int` >= `batch_size`.

    Raises:
        ValueError: if `batch_size` is not a positive integer, `alpha_bs` is outside
            `[0, 1]`, or `variance_ratio` is negative, NaN or infinite.
        TypeError: if `alpha_bs` or `variance_ratio` is not a number.

    Example:

    >>> variance_batch_candidate(16, 0.98, 100.0)
    18
    >>> variance_batch_candidate(16, 0.98, 100.5)
    19
    """
    batch_size = check_integer("batch_size", batch_size, 1)
    alpha_bs = check_real("alpha_bs", alpha_bs, 0.0, 1.0)
    variance_ratio = check_real("variance_ratio", variance_ratio)
    growth = _tolerant_ceil((1.0 - alpha_bs) * variance_ratio)
    return batch_size + max(0, growth)


def max_batch_for_budget(budget_bytes, fixed_bytes, bytes_per_example):
    """The largest batch that fits in the memory budget (paper eqs. 9-10).

    `b_max = floor((C - N_i) / bytes_per_example)`, where `C` is the budget, `N_i` the memory
    the (pruned) model needs whatever the batch size, and `bytes_per_example` the memory one
    more example adds (input values plus the activations kept for the backward pass).

    Args:
        budget_bytes: the budget `C` in bytes (see `tfdynhp.math.budget.parse_budget`), >= 0.
        fixed_bytes: the batch-independent memory `N_i` in bytes, >= 0.
        bytes_per_example: the memory of one example in the batch, > 0.

    Returns:
        The largest batch size as an `int`; 0 when there is no room (`C <= N_i`), in which
        case not even one example fits.

    Raises:
        ValueError: if an argument is negative, not finite, or `bytes_per_example` is 0.
        TypeError: if an argument is not a number.

    Example:

    >>> max_batch_for_budget(1_000_000, 600_000, 4_000)
    100
    >>> max_batch_for_budget(500_000, 600_000, 4_000)
    0
    """
    budget_bytes = check_real("budget_bytes", budget_bytes)
    fixed_bytes = check_real("fixed_bytes", fixed_bytes)
    bytes_per_example = check_real("bytes_per_example", bytes_per_example)
    if bytes_per_example == 0:
        raise ValueError(
            "Expected `bytes_per_example` > 0 (an example always takes memory). "
            f"Received: bytes_per_example={bytes_per_example!r}"
        )
    room = budget_bytes - fixed_bytes
    if room <= 0:
        return 0
    if all(isinstance(v, numbers.Integral) for v in (budget_bytes, fixed_bytes,
                                                     bytes_per_example)):
        return int(room // bytes_per_example)
    return math.floor(room / bytes_per_example)


def next_batch_size(batch_size, candidate, max_batch, max_examples=None):
    """The batch size of the next epoch: the candidate, capped by the budget, never shrinking.

    `max(b, min(b_next, b_max, max_examples))`: the paper's `min(b_next, b_max)` (eq. 10),
    capped at the data set size, and never below the current batch size `b` (DynHP only grows
    the batch). When the budget no longer allows even the current batch (`b_max < b`, e.g.
    because the caller's memory estimate went up), this returns `b` unchanged: keeping or
    shrinking it, or stopping, is the caller's decision (compare the result with `max_batch`).
    When `b` already exceeds `max_examples`, `b` is returned as well.

    Args:
        batch_size: the current batch size `b`, a positive integer.
        candidate: the proposed size (e.g. from `variance_batch_candidate`), an integer >= 0.
        max_batch: the budget's limit (from `max_batch_for_budget`), an integer >= 0.
        max_examples: the number of training examples, a positive integer, or `None` for no
            cap. Defaults to `None`.

    Returns:
        The next batch size, an `int` >= `batch_size`.

    Raises:
        ValueError: if an argument is not an integer in its range.

    Example:

    >>> next_batch_size(16, 40, 32)
    32
    >>> next_batch_size(16, 40, 8)  # over budget: keep 16, the caller decides
    16
    >>> next_batch_size(16, 40, 1000, max_examples=20)
    20
    """
    batch_size = check_integer("batch_size", batch_size, 1)
    limit = min(check_integer("candidate", candidate), check_integer("max_batch", max_batch))
    if max_examples is not None:
        limit = min(limit, check_integer("max_examples", max_examples, 1))
    return max(batch_size, limit)
