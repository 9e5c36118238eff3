"""`export`: convert a model once to int8 and write the deployment bundle of one target.

Targets live in a registry (`TARGETS`), one module each: `pi.py`, `android.py`, `mcu.py`.
"""

import numpy as np
from tfdynhp.converters import android, boards, mcu, pi, quantize, tflite_model

TARGETS = {
    "pi": pi.write_pi,
    "android": android.write_android,
    "mcu": mcu.write_mcu,
}


def export(
    model,
    target,
    out_dir,
    representative_data,
    labels=None,
    *,
    io_dtype="int8",
    preprocessing=None,
    board=boards.DEFAULT_BOARD,
    arena_margin=0.25,
    kernels=None,
):
    """Writes an int8 TFLite deployment bundle for one target.

    Targets:

    - `"pi"`: `model.tflite`, `labels.txt`, `model.json`, `predict.py` (numpy +
      ai-edge-litert or tflite_runtime, no TensorFlow) and `sample.npy`, in `out_dir`.
    - `"android"`: `model.tflite`, `labels.txt`, `model.json`, `sample.json` in
      `out_dir/app/src/main/assets/`, the layout of `android_demo/`.
    - `"mcu"`: `model.tflite`, `model_data.cc/.h`, `model_ops.h`, `model_settings.h`
      (measured tensor arena plus `arena_margin`), test vectors, `main.cc`, a `Makefile` that
      builds the firmware against a TFLM tree for the host, Cortex-M4 or Cortex-M3 (QEMU),
      `mcu_report.json/.md` (flash and SRAM against `board`), plus `labels.txt` and
      `model.json`, in `out_dir`. Build, run and check it with `verify_mcu`.

    The first sample of `representative_data` is the bundled sample of each target; the first
    four are the test vectors of `"mcu"`.

    Args:
        model: A `keras.Model` (converted with `to_int8_tflite`; a tfdynhp gated model is
            stripped first), or the `bytes` of an already converted int8 model, to export
            several targets from one conversion.
        target: One of `"pi"`, `"android"`, `"mcu"`.
        out_dir: Destination folder (created if needed).
        representative_data: Float array `(num_samples,) + input_shape[1:]`: calibration data
            for the conversion, and the source of the bundled sample.
        labels: Class names, one per output. Defaults to `class_0, class_1, ...`.
        io_dtype: `"int8"` or `"uint8"` model input/output (Keras models only). Defaults to
            `"int8"`.
        preprocessing: Note on input preprocessing stored in `model.json`.
        board: MCU board for the `"mcu"` report: a name in `boards.BOARDS`, a dict or a
            `boards.Board`. Defaults to `"nano33ble"` (1 MB flash, 256 KB SRAM).
        arena_margin: Relative margin on the measured TFLM arena (`"mcu"`). Defaults to `0.25`.
        kernels: Kernel set of the `"mcu"` bundle's Cortex-M builds: `"cmsis-nn"` (Arm's
            CMSIS-NN) or `"reference"`. Defaults to `None` (`"cmsis-nn"`).

    Returns:
        Dict mapping file roles (`"model"`, `"labels"`, `"model_json"`, ...) to written paths.

    Raises:
        ValueError: On an unknown target, representative data that does not match the model,
            labels that do not match the outputs, ops without int8 (or, for `"mcu"`, TFLM)
            kernels, or corrupt model bytes.

    Example:

    >>> tflite_bytes = to_int8_tflite(model, x_train[:200])
    >>> for target in ("pi", "android", "mcu"):
    ...     export(tflite_bytes, target, f"out/{target}", x_train[:200], labels=class_names)
    """
    if target not in TARGETS:
        raise ValueError(
            f"Unknown export target {target!r}. Expected one of {sorted(TARGETS)}."
        )
    if isinstance(model, (bytes, bytearray, memoryview)):
        tflite_bytes = tflite_model.check_tflite_bytes(model)
        shape = tflite_model.read_model_info(tflite_bytes).inputs[0].shape
        data = quantize.check_representative_data(representative_data, shape)
    else:
        tflite_bytes = quantize.to_int8_tflite(model, representative_data, io_dtype=io_dtype)
        data = np.asarray(representative_data, dtype=np.float32)
    options = {"labels": labels, "sample": data[0], "preprocessing": preprocessing}
    if target == "mcu":
        options.update(
            board=board,
            arena_margin=arena_margin,
            test_inputs=data[: mcu.DEFAULT_TEST_VECTORS],
            kernels=kernels,
        )
    return TARGETS[target](tflite_bytes, out_dir, **options)
