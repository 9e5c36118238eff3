"""Measure the TFLite Micro tensor arena a model needs, by running it.

TFLM's Python interpreter has no "arena used bytes" getter (only `print_allocations`, which
writes to stderr), so the smallest working arena is found by bisection: a size works when the
interpreter allocates its tensors and invokes once on a zero-point input. The interpreter
crashes the process (SIGSEGV) on arenas too small for its own bookkeeping, so every probe runs
in a child process (`_tflm_probe.py`, which imports only numpy and tflite_micro).

A failed probe is an allocation failure only if the same model runs with a larger arena: TFLM
reports a missing kernel or a bad model with the same `RuntimeError` as a full arena. So when
the first size tried fails, the largest arena (64 MiB) is tried next; if that fails too, the
error is not about the arena and is raised with TFLM's own message.

The measurement uses the host (64-bit) build of TFLM. Its bookkeeping structs hold pointers,
so a 32-bit microcontroller usually needs slightly less; the margin added by
`arena_size_with_margin` covers kernel differences (e.g. CMSIS-NN scratch buffers).
"""

import json
import math
import os
import subprocess
import sys
import tempfile

from tfdynhp.converters import tflite_model

ALIGNMENT = 16
MAX_ARENA = 64 * 1024 * 1024
_PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tflm_probe.py")


def _bisect_in_child(model_path, lo, hi, timeout):
    """Runs one probe session; returns (answers: dict size -> bool, result or None, reasons).

    `reasons` maps each failed size to the child's explanation (exception and TFLM log).
    """
    proc = subprocess.run(
        [sys.executable, _PROBE, model_path, str(lo), str(hi)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    answers, reasons, pending, result = {}, {}, None, None
    for line in proc.stdout.splitlines():
        word, _, rest = line.partition(" ")
        value, _, reason = rest.partition(" ")
        if word == "try":
            pending = int(value)
        elif word in ("ok", "fail"):
            answers[int(value)] = word == "ok"
            if reason:
                reasons[int(value)] = json.loads(reason)
            pending = None
        elif word == "result":
            result = int(value)
    if proc.returncode < 0 and pending is not None:
        answers[pending] = False  # killed by a signal mid-probe: the arena crashed TFLM
        reasons[pending] = f"the interpreter crashed (signal {-proc.returncode})"
    elif proc.returncode not in (0, 3):
        raise RuntimeError(
            f"The TFLite Micro probe exited with status {proc.returncode}: "
            f"{proc.stderr.strip()[-2000:]}"
        )
    return answers, result, reasons


def _not_an_arena_problem(reason):
    return ValueError(
        f"The model does not run in TFLite Micro even with a {MAX_ARENA} byte arena, so the "
        f"arena size is not the problem: {reason}. Check that every op has a TFLM kernel "
        "(see `tfdynhp.converters.c_source.TFLM_OPS`) and that the model is a valid int8 model."
    )


def _check_runs_at_all(model_path, failed_reason, timeout):
    """Raises the real error if the model also fails with the largest arena."""
    answers, _, reasons = _bisect_in_child(model_path, MAX_ARENA - ALIGNMENT, MAX_ARENA, timeout)
    if not answers.get(MAX_ARENA):
        raise _not_an_arena_problem(reasons.get(MAX_ARENA, failed_reason))


def _measure(model_path, upper, timeout):
    lo, hi = 0, upper
    answers, result, reasons = _bisect_in_child(model_path, lo, hi, timeout)
    if result is not None:
        return result
    if answers.get(hi) is False:  # the assumed upper bound does not work
        _check_runs_at_all(model_path, reasons.get(hi), timeout)
        lo, hi = hi, MAX_ARENA
    while True:
        # The child crashed mid-bisection: keep what it learned and start a new one.
        lo = max([lo] + [s for s, ok in answers.items() if not ok])
        hi = min([hi] + [s for s, ok in answers.items() if ok])
        if hi - lo <= ALIGNMENT:
            return hi
        answers, result, _ = _bisect_in_child(model_path, lo, hi, timeout)
        if result is not None:
            return result


def measure_arena_size(tflite_bytes, upper=None, timeout=120):
    """Finds the smallest TFLM tensor arena (in 16-byte steps) that runs the model.

    Args:
        tflite_bytes: The `.tflite` model.
        upper: A size expected to work, where the bisection starts (if it does not work,
            the search goes on up to 64 MiB). Defaults to `max(16 KiB, 4 x model size)`.
        timeout: Seconds allowed for each child process. Defaults to `120`.

    Returns:
        The smallest working arena size in bytes, a multiple of 16.

    Raises:
        ValueError: If the bytes are not a valid model, or the model does not run in TFLM
            even with 64 MiB (e.g. it uses an op TFLM has no kernel for); the message carries
            TFLM's own error.
    """
    tflite_bytes = tflite_model.check_tflite_bytes(tflite_bytes)
    upper = upper or max(16 * 1024, 4 * len(tflite_bytes))
    upper = min(MAX_ARENA, int(math.ceil(upper / ALIGNMENT) * ALIGNMENT))
    with tempfile.TemporaryDirectory(prefix="tfdynhp-arena-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(tflite_bytes)
        return _measure(path, upper, timeout)


def runs_with_arena(tflite_bytes, arena_size, timeout=120):
    """Returns True if TFLM allocates and invokes the model with `arena_size` bytes.

    The run happens in a child process, so an arena too small for TFLM's own bookkeeping
    (which crashes the interpreter) simply returns False. A failure that persists with the
    largest arena (64 MiB) is not about the arena and is raised.

    Args:
        tflite_bytes: The `.tflite` model.
        arena_size: Tensor arena size in bytes, a positive multiple of 16.
        timeout: Seconds allowed for the child process. Defaults to `120`.

    Raises:
        ValueError: If `arena_size` is not a positive multiple of 16, the model is invalid, or
            it does not run in TFLM with any arena (the message carries TFLM's error).
    """
    if int(arena_size) <= 0 or int(arena_size) % ALIGNMENT:
        raise ValueError(
            f"`arena_size` must be a positive multiple of {ALIGNMENT}. Received: {arena_size}"
        )
    tflite_bytes = tflite_model.check_tflite_bytes(tflite_bytes)
    with tempfile.TemporaryDirectory(prefix="tfdynhp-arena-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(tflite_bytes)
        # lo = hi - 16 makes the child check exactly one size.
        size = int(arena_size)
        answers, _, reasons = _bisect_in_child(path, size - ALIGNMENT, size, timeout)
        if answers.get(size):
            return True
        if size < MAX_ARENA:
            _check_runs_at_all(path, reasons.get(size), timeout)
        else:
            raise _not_an_arena_problem(reasons.get(size))
    return False


def arena_size_with_margin(measured, margin=0.25):
    """Adds a relative safety margin to a measured arena and rounds up to 16 bytes.

    Args:
        measured: Measured arena size in bytes.
        margin: Relative margin, e.g. `0.25` for +25%. Defaults to `0.25`.

    Returns:
        `ceil(measured * (1 + margin) / 16) * 16`.

    Raises:
        ValueError: If `margin` is negative.
    """
    if margin < 0:
        raise ValueError(f"`margin` must be >= 0. Received: margin={margin}")
    return int(math.ceil(measured * (1.0 + margin) / ALIGNMENT) * ALIGNMENT)
