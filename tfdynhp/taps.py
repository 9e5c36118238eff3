"""Thread-local recording of what dense layers see in a training step.

The gradient-variance estimate needs, for each gated dense layer, its (gated) input `x` and its
pre-activation output `h = x W + b` as tensors of the step being differentiated. Layers report
them here only while a `record_dense_taps()` block is open in the same thread, so `call` stays a
pure computation otherwise. Thread-local because `tf.distribute` runs one replica per thread.
"""

import contextlib
import threading

_state = threading.local()


@contextlib.contextmanager
def record_dense_taps():
    """Collects `(layer, inputs, preactivation)` triples reported inside the block."""
    taps = []
    previous = getattr(_state, "taps", None)
    _state.taps = taps
    try:
        yield taps
    finally:
        _state.taps = previous


def report_dense_tap(layer, inputs, preactivation):
    """Called by a dense layer in training; a no-op outside `record_dense_taps()`."""
    taps = getattr(_state, "taps", None)
    if taps is not None:
        taps.append((layer, inputs, preactivation))
