"""Child process for `arena.py`: bisect the smallest TFLite Micro arena that runs a model.

Run as a script (`python _tflm_probe.py MODEL LO HI`), not imported: TFLM's Python interpreter
crashes (SIGSEGV) when an arena is too small for even its own bookkeeping, so every probe runs
outside the caller's process. Imports only numpy and tflite_micro, so it starts fast.

Sizes are in bytes and multiples of 16; LO is known to fail, HI is to be checked first. For
each probe it prints `try N`, then `ok N` or `fail N <reason>` (the exception and what TFLM
logged, as a JSON string), flushing each line; a crash shows as a `try N` without an answer and
death by a signal. A failure says only that this size did not work: whether the arena was too
small is decided by the caller (the same model works with a larger arena).
"""

import json
import os
import sys
import tempfile

import numpy as np
from tflite_micro.python.tflite_micro import runtime

STEP = 16


def _run(model, size):
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=size)
    for i in range(64):
        try:
            details = interpreter.get_input_details(i)
        except (IndexError, RuntimeError, ValueError):
            break
        zero_point = details["quantization_parameters"]["zero_points"]
        fill = int(zero_point[0]) if len(zero_point) else 0
        interpreter.set_input(np.full(details["shape"], fill, dtype=details["dtype"]), i)
    interpreter.invoke()


def _runs(model, size):
    """Returns `None` if the model runs with `size` bytes, else why not (exception + TFLM log)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)  # TFLM's MicroPrintf writes to file descriptor 2
        try:
            _run(model, size)
            reason = None
        except Exception as e:  # noqa: BLE001  (any failure is reported, the caller classifies)
            reason = f"{type(e).__name__}: {e}"
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        said = log.read().decode("utf-8", "replace").strip()
    if reason is not None and said:
        reason = f"{reason}; TFLM: {' | '.join(said.splitlines()[-6:])}"
    return reason


def _probe(model, size):
    print(f"try {size}", flush=True)
    reason = _runs(model, size)
    print(f"ok {size}" if reason is None else f"fail {size} {json.dumps(reason)}", flush=True)
    return reason is None


def _no_core_dumps():
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def main(argv):
    _no_core_dumps()
    path, lo, hi = argv[1], int(argv[2]) // STEP, int(argv[3]) // STEP
    with open(path, "rb") as f:
        model = f.read()
    if not _probe(model, hi * STEP):
        return 3
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _probe(model, mid * STEP):
            hi = mid
        else:
            lo = mid
    print(f"result {hi * STEP}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
