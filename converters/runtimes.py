"""Run an int8 `.tflite` model one sample at a time in LiteRT or TFLite Micro, and evaluate it.

Both runtimes get the same quantized input (`tflite_model.quantize` with the model's own input
scale and zero point), so their raw outputs can be compared exactly.

Latency is measured three ways, because a single Python call per sample mostly measures Python
(the round trip costs ~6 us whatever the model size):

- `latency_batch1_ms`: one `invoke()` at batch 1, timed over many back-to-back invokes on one
  input already in the interpreter (no quantization, no tensor copies);
- `batched_ms_per_example`: one `invoke()` on a batch of examples (LiteRT, input tensor resized
  to the batch), divided by the batch size; `None` when the model's graph fixes batch 1;
- `roundtrip_ms_*`: set input, invoke and read output from Python, per sample, as `evaluate`
  runs the data set (includes the Python overhead).
"""

import time

import numpy as np
from tfdynhp.converters import tflite_model

RUNTIMES = ("litert", "tflm")


class _LiteRTRunner:
    def __init__(self, tflite_bytes, num_threads):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_content=tflite_bytes, num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"LiteRT could not load the .tflite model: {e}") from e
        self._in = self._interpreter.get_input_details()[0]["index"]
        self._out = self._interpreter.get_output_details()[0]["index"]
        self._bytes, self._num_threads = tflite_bytes, num_threads

    def __call__(self, q):
        self._interpreter.set_tensor(self._in, q)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._out)

    def prepare(self, q):
        """Loads `q` and returns the bare `invoke` for timing."""
        self._interpreter.set_tensor(self._in, q)
        return self._interpreter.invoke

    def batched(self, q_batch):
        """Returns `(invoke, read_output)` of a second interpreter resized to the batch, or
        `None` if the model does not accept a batch (e.g. a reshape fixed to batch 1)."""
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(
                model_content=self._bytes, num_threads=self._num_threads
            )
            interpreter.resize_tensor_input(self._in, list(q_batch.shape), strict=False)
            interpreter.allocate_tensors()
            interpreter.set_tensor(self._in, q_batch)
            interpreter.invoke()
        except (ValueError, RuntimeError):
            return None
        return interpreter.invoke, lambda: interpreter.get_tensor(self._out)


class _TFLMRunner:
    def __init__(self, tflite_bytes, arena_size):
        from tflite_micro.python.tflite_micro import runtime

        try:
            self._interpreter = runtime.Interpreter.from_bytes(
                tflite_bytes, arena_size=arena_size
            )
        except (ValueError, RuntimeError) as e:
            raise ValueError(
                f"TFLite Micro could not load the .tflite model (arena_size={arena_size}): {e}"
            ) from e

    def __call__(self, q):
        self._interpreter.set_input(q, 0)
        self._interpreter.invoke()
        return self._interpreter.get_output(0)

    def prepare(self, q):
        """Loads `q` and returns the bare `invoke` for timing."""
        self._interpreter.set_input(q, 0)
        return self._interpreter.invoke

    def batched(self, q_batch):
        """TFLite Micro runs batch 1 only: always `None`."""
        return


def make_runner(tflite_bytes, runtime="litert", arena_size=None, num_threads=1):
    """Creates a callable that runs one quantized input tensor and returns the raw output.

    Args:
        tflite_bytes: The `.tflite` model.
        runtime: `"litert"` (ai-edge-litert) or `"tflm"` (TFLite Micro's Python interpreter).
            Defaults to `"litert"`.
        arena_size: TFLM tensor arena size in bytes; `None` lets TFLM use 10x the model size.
        num_threads: LiteRT CPU threads. Defaults to `1`.

    Returns:
        A callable `runner(q) -> np.ndarray` for input arrays of the model's input shape/dtype.

    Raises:
        ValueError: If `runtime` is unknown or the runtime cannot load the model.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {RUNTIMES}. Received: runtime={runtime!r}")
    tflite_bytes = tflite_model.check_tflite_bytes(tflite_bytes)
    if runtime == "litert":
        return _LiteRTRunner(tflite_bytes, num_threads)
    return _TFLMRunner(tflite_bytes, arena_size)


def _check_x(x, info):
    x = np.asarray(x, dtype=np.float32)
    expected = tuple(info.shape[1:])
    if x.ndim != len(info.shape) or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"`x` must have shape (num_samples, {', '.join(map(str, expected))}) to match the "
            f"model input {tuple(info.shape)}. Received: shape={x.shape}."
        )
    if x.shape[0] == 0:
        raise ValueError("`x` is empty. Pass at least one sample.")
    return x


def run_tflite(tflite_bytes, x, runtime="litert", arena_size=None):
    """Runs float samples through the model with batch size 1, returning raw outputs.

    Args:
        tflite_bytes: The `.tflite` model.
        x: Float array of shape `(num_samples,) + input_shape[1:]`.
        runtime: `"litert"` or `"tflm"`. Defaults to `"litert"`.
        arena_size: TFLM arena size in bytes (TFLM only).

    Returns:
        Tuple `(outputs, latencies_ms)`: the raw (quantized) outputs stacked to
        `(num_samples,) + output_shape[1:]`, and the wall-clock time of each
        set-input/invoke/get-output step in milliseconds.

    Raises:
        ValueError: On an unknown runtime, a corrupt model or a shape mismatch.
    """
    runner = make_runner(tflite_bytes, runtime, arena_size=arena_size)
    info = tflite_model.read_model_info(tflite_bytes)
    x = _check_x(x, info.inputs[0])
    q = tflite_model.quantize(x, info.inputs[0])
    outputs, latencies = [], []
    for i in range(q.shape[0]):
        start = time.perf_counter()
        out = runner(q[i : i + 1])
        latencies.append((time.perf_counter() - start) * 1e3)
        outputs.append(np.array(out)[0])
    return np.stack(outputs), np.asarray(latencies)


def time_calls(call, min_round_s=0.02, rounds=5, max_repeats=100_000):
    """Median wall-clock seconds of one `call()`, timed in tight loops.

    The loop length is chosen so one round lasts at least `min_round_s`; the result is the
    median over `rounds` rounds of (round time / calls per round).

    Returns:
        `(seconds_per_call, calls_per_round)`.
    """
    call()  # warm-up (first invoke allocates scratch buffers in some kernels)
    repeats, elapsed = 1, 0.0
    while repeats < max_repeats:
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= min_round_s:
            break
        repeats = min(max_repeats, repeats * 4)
    per_round = [elapsed / repeats]
    for _ in range(rounds - 1):
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        per_round.append((time.perf_counter() - start) / repeats)
    return float(np.median(per_round)), repeats


def measure_latency(tflite_bytes, x, runtime="litert", arena_size=None, max_batch=256):
    """Times one model invocation at batch 1 and on a batch, excluding Python-side work.

    Args:
        tflite_bytes: The `.tflite` model.
        x: Float samples `(num_samples,) + input_shape[1:]`; the first is timed at batch 1,
            the first `min(num_samples, max_batch)` as one batch.
        runtime: `"litert"` or `"tflm"`. Defaults to `"litert"`.
        arena_size: TFLM arena size in bytes (TFLM only).
        max_batch: Largest batch timed. Defaults to `256`.

    Returns:
        Dict with `latency_batch1_ms` (one `invoke()` on a preloaded input, median over tight
        loops), `latency_batch1_calls` (invokes per timed loop), `batched_ms_per_example`
        (one `invoke()` on `batched_batch_size` examples, divided by that size; `None` if the
        runtime or model cannot batch, see `batched_note`).

    Raises:
        ValueError: On an unknown runtime, a corrupt model or a shape mismatch.
    """
    runner = make_runner(tflite_bytes, runtime, arena_size=arena_size)
    info = tflite_model.read_model_info(tflite_bytes)
    q = tflite_model.quantize(_check_x(x, info.inputs[0]), info.inputs[0])
    seconds, calls = time_calls(runner.prepare(q[:1]))
    result = {
        "latency_batch1_ms": seconds * 1e3,
        "latency_batch1_calls": calls,
        "batched_ms_per_example": None,
        "batched_batch_size": None,
        "batched_note": "TFLite Micro runs batch 1 only" if runtime == "tflm" else "",
    }
    size = min(len(q), int(max_batch))
    batched = runner.batched(q[:size]) if runtime == "litert" and size > 1 else None
    if batched is None:
        if runtime == "litert":
            result["batched_note"] = (
                "one example only" if size <= 1 else "the model's graph fixes the batch to 1"
            )
        return result
    invoke, read = batched
    expected = np.stack([np.asarray(runner(q[i : i + 1]))[0] for i in range(size)])
    if not np.array_equal(np.asarray(read()), expected):
        result["batched_note"] = "batched outputs differ from batch-1 outputs; not timed"
        return result
    seconds, _ = time_calls(invoke)
    result.update(
        batched_ms_per_example=seconds * 1e3 / size,
        batched_batch_size=size,
        batched_note=f"one invoke on {size} examples, per example",
    )
    return result


def evaluate(tflite_bytes, x, y, runtime="litert", arena_size=None, time_latency=True):
    """Measures accuracy and latency of an int8 classifier in one runtime.

    Inputs are quantized with the model's own input scale and zero point and run one at a time
    (batch 1), as on a device. The predicted class is the argmax of the raw output. Latency is
    then measured without the Python overhead (`measure_latency`).

    Args:
        tflite_bytes: The `.tflite` model.
        x: Float array of shape `(num_samples,) + input_shape[1:]`.
        y: Integer class labels, shape `(num_samples,)` (or one-hot, shape
            `(num_samples, num_classes)`).
        runtime: `"litert"` or `"tflm"`. Defaults to `"litert"`.
        arena_size: TFLM arena size in bytes (TFLM only); `None` for TFLM's default.
        time_latency: Also run `measure_latency`. Defaults to `True`.

    Returns:
        A dict with `accuracy`, `num_samples`, `runtime`, `predictions` (NumPy int array);
        `latency_batch1_ms`, `batched_ms_per_example`, `batched_batch_size`, `batched_note`
        (see `measure_latency`; present when `time_latency`); `roundtrip_ms_mean`,
        `roundtrip_ms_p50`, `roundtrip_ms_p95` (set input + invoke + read output from Python,
        per sample: mostly Python overhead on small models). `latency_ms_mean`,
        `latency_ms_p50` and `latency_ms_p95` are deprecated aliases of the `roundtrip_ms_*`
        values.

    Raises:
        ValueError: On an unknown runtime, a corrupt model, or `x`/`y` that do not match.

    Example:

    >>> result = evaluate(tflite_bytes, x_test, y_test, runtime="litert")
    >>> result["accuracy"], result["latency_batch1_ms"], result["batched_ms_per_example"]
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {RUNTIMES}. Received: runtime={runtime!r}")
    y = np.asarray(y)
    if y.ndim == 2:
        y = np.argmax(y, axis=-1)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"`y` must hold one label per sample of `x` ({len(x)} samples). "
            f"Received: y.shape={y.shape}."
        )
    outputs, latencies = run_tflite(tflite_bytes, x, runtime, arena_size=arena_size)
    predictions = np.argmax(outputs.reshape(len(outputs), -1), axis=-1)
    roundtrip = {
        "roundtrip_ms_mean": float(np.mean(latencies)),
        "roundtrip_ms_p50": float(np.percentile(latencies, 50)),
        "roundtrip_ms_p95": float(np.percentile(latencies, 95)),
    }
    result = {
        "runtime": runtime,
        "num_samples": len(y),
        "accuracy": float(np.mean(predictions == y)),
        **(measure_latency(tflite_bytes, x, runtime, arena_size) if time_latency else {}),
        **roundtrip,
        **{k.replace("roundtrip_", "latency_"): v for k, v in roundtrip.items()},
        "predictions": predictions,
    }
    return result
