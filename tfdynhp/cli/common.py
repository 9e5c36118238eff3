"""What every `tfdynhp` command shares: the usage error, argument types, loaders of data sets and
models that turn bad input into one-line errors, and the texts of common results."""

import argparse
import os

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(text, convert, accept, expected):
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text):
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def positive_float(text):
    return _number(text, float, lambda v: v > 0, "a positive number")


def non_negative_float(text):
    return _number(text, float, lambda v: v >= 0, "a number >= 0")


def unit_float(text):
    return _number(text, float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def open_unit_float(text):
    return _number(text, float, lambda v: 0.0 < v < 1.0, "a number in (0, 1)")


def say(message, quiet=False):
    if not quiet:
        print(message, flush=True)


def add_verify_options(parser, bundle, note):
    """`--verify` and `--tflm-dir`, shared by `train` and `export`."""
    parser.add_argument("--verify", default="",
                        help=f"build {bundle} firmware against TFLite Micro, run it and check "
                        "it bit for bit against Python TFLM: comma-separated among host, "
                        f"cortex-m4, cortex-m3 ({note})")
    parser.add_argument("--tflm-dir", default=os.environ.get("TFLM_DIR"),
                        help="TensorFlow Lite Micro source tree for --verify (default: $TFLM_DIR)")
    parser.add_argument("--kernels", default=None, choices=("cmsis-nn", "reference"),
                        help="TFLM kernels of the Cortex-M firmware: cmsis-nn (Arm's CMSIS-NN, "
                        "the default) or reference; the host build uses the reference kernels")


def check_out_dir(path):
    """Creates `path` if needed and checks that a file can be written in it."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"output folder {path!r} exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".tfdynhp-write-test")
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"output folder {path!r} is not writable ({e.strerror or e})") from e
    return path


def load_data(dataset, limit_train=None, seed=0):
    """`((x_train, y_train), (x_test, y_test))` of a data set name or `.npz` path."""
    from tfdynhp.datasets import shaping

    if isinstance(dataset, str) and dataset.endswith(".npz") and not os.path.isfile(dataset):
        raise UsageError(f"data set file {dataset!r} not found")
    try:
        return shaping.load_data(dataset, limit_train=limit_train, seed=seed)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise UsageError(str(e)) from e


def shaped(x, shape, dataset):
    """`x` reshaped to a model's per-example input `shape`, or a usage error."""
    from tfdynhp.datasets import shaping

    try:
        return shaping.shape_for(x, shape, dataset)
    except ValueError as e:
        raise UsageError(str(e)) from e


def check_model_file(path):
    if not os.path.isfile(path):
        raise UsageError(f"model file {path!r} not found")
    if not path.endswith(".keras"):
        raise UsageError(f"expected a .keras model file, got {path!r}")


def load_keras_model(path, compile=True):
    from tfdynhp.training.run import load_model_file

    check_model_file(path)
    try:
        return load_model_file(path, compile=compile)
    except ValueError as e:  # a ConfigurationError: Keras' reason, and the fix for a Lambda
        raise UsageError(str(e)) from e


def export_targets(text):
    """The export targets of a comma-separated list (pi, android, mcu)."""
    from tfdynhp import training

    try:
        return training.check_exports(text)
    except ValueError as e:
        raise UsageError(str(e)) from e


def verify_targets(text, targets, tflm_dir, option):
    """The firmware targets of `--verify`, checked against the export targets (named by
    `option`) and the TFLite Micro tree."""
    from tfdynhp.converters import firmware

    verify = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in verify if t not in firmware.TARGETS]
    if unknown:
        raise UsageError(
            f"--verify: unknown target(s) {', '.join(unknown)}; expected among "
            f"{', '.join(firmware.TARGETS)}"
        )
    if verify and "mcu" not in targets:
        raise UsageError(f"--verify builds the mcu bundle: add mcu to {option}")
    if verify and not tflm_dir:
        raise UsageError(
            "--verify needs a TensorFlow Lite Micro source tree: pass --tflm-dir or set "
            "TFLM_DIR (git clone https://github.com/tensorflow/tflite-micro)"
        )
    return verify


def latency_text(result):
    batched = result.get("batched_ms_per_example")
    return (
        f"{result['latency_batch1_ms']:.4f} ms per invoke at batch 1 (tight loop), "
        + (
            f"{batched:.4f} ms per example batched ({result['batched_batch_size']})"
            if batched is not None
            else f"no batched figure ({result['batched_note']})"
        )
    )


def firmware_text(r):
    speed = (
        f"{r.instructions_per_inference:,.0f} instructions per inference (QEMU -icount; not "
        "cycle-accurate)"
        if r.instructions_per_inference is not None
        else f"{r.host_ns_per_inference / 1e3:.1f} us per inference on this host"
    )
    if r.frontend_instructions_per_clip:  # raw-audio bundle: front end + classifier per clip
        speed += (f", of which the front end {r.frontend_instructions_per_clip:,.0f} "
                  f"({r.frontend_instructions_per_clip / r.frontend_frames:,.0f} per window)")
    extra = (
        f" + stack {r.stack_used_bytes:,} + heap {r.heap_used_bytes:,}"
        if r.stack_used_bytes is not None
        else ""
    )
    return (
        f"mcu firmware {r.target} ({r.kernels} kernels): "
        + ("bit-exact" if r.bit_exact else f"MISMATCH on vectors {list(r.mismatched_vectors)}")
        + f" vs Python TFLM on {r.num_vectors} test vectors; flash {r.flash_bytes:,} B, RAM "
        f"{r.ram_total_bytes:,} B (data+bss {r.ram_static_bytes:,}{extra}); {speed}; build "
        f"{r.build_seconds:.1f} s, run {r.run_seconds:.1f} s"
    )
