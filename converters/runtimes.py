"""Run an int8 `.tflite` model one sample at a time in LiteRT or TFLite Micro, and evaluate it.

Both runtimes get the same quantized input (`tflite_model.quantize` with the model's own input
scale and zero point), so their raw outputs can be compared exactly.
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

    def __call__(self, q):
        self._interpreter.set_tensor(self._in, q)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._out)


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


def evaluate(tflite_bytes, x, y, runtime="litert", arena_size=None):
    """Measures accuracy and per-sample latency of an int8 classifier in one runtime.

    Inputs are quantized with the model's own input scale and zero point and run one at a time
    (batch 1), as on a device. The predicted class is the argmax of the raw output.

    Args:
        tflite_bytes: The `.tflite` model.
        x: Float array of shape `(num_samples,) + input_shape[1:]`.
        y: Integer class labels, shape `(num_samples,)` (or one-hot, shape
            `(num_samples, num_classes)`).
        runtime: `"litert"` or `"tflm"`. Defaults to `"litert"`.
        arena_size: TFLM arena size in bytes (TFLM only); `None` for TFLM's default.

    Returns:
        A dict with `accuracy`, `latency_ms_mean`, `latency_ms_p50`, `latency_ms_p95`,
        `num_samples`, `runtime` and `predictions` (NumPy int array).

    Raises:
        ValueError: On an unknown runtime, a corrupt model, or `x`/`y` that do not match.

    Example:

    >>> result = evaluate(tflite_bytes, x_test, y_test, runtime="tflm")
    >>> result["accuracy"], result["latency_ms_mean"]
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
    return {
        "runtime": runtime,
        "num_samples": len(y),
        "accuracy": float(np.mean(predictions == y)),
        "latency_ms_mean": float(np.mean(latencies)),
        "latency_ms_p50": float(np.percentile(latencies, 50)),
        "latency_ms_p95": float(np.percentile(latencies, 95)),
        "predictions": predictions,
    }
