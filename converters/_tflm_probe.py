"""Child process for `arena.py`: bisect the smallest TFLite Micro arena that runs a model.

Run as a script (`python _tflm_probe.py MODEL LO HI`), not imported: TFLM's Python interpreter
crashes (SIGSEGV) when an arena is too small for even its own bookkeeping, so every probe runs
outside the caller's process. Imports only numpy and tflite_micro, so it starts fast.

Sizes are in bytes and multiples of 16; LO is known to fail, HI is to be checked first. For
each probe it prints `try N`, then `ok N` or `fail N`, flushing each line; a crash shows as a
`try N` without an answer and a non-zero exit status.
"""

import sys

import numpy as np
from tflite_micro.python.tflite_micro import runtime

STEP = 16


def _runs(model, size):
    try:
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
    except RuntimeError:
        return False
    return True


def _probe(model, size):
    print(f"try {size}", flush=True)
    ok = _runs(model, size)
    print(f"{'ok' if ok else 'fail'} {size}", flush=True)
    return ok


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
