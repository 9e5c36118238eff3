"""Build, run and check an MCU bundle's firmware: `verify_mcu`.

The bundle written by the `"mcu"` target builds itself (`make <target> TFLM_DIR=...`); this
module drives that Makefile, runs the firmware natively (host) or under `qemu-system-arm`
(Cortex-M4 on `mps2-an386`, Cortex-M3 on `mps2-an385`, with `-icount shift=0`), parses what it
prints, compares its raw outputs with TFLite Micro's Python interpreter on the same test vectors,
and reads the firmware's real size with `size` / `arm-none-eabi-size`.

Instructions per inference come from QEMU's instruction counting: with `-icount shift=0` each
guest instruction advances virtual time by 1 ns, which the firmware reads from SysTick (25 MHz,
so 40 instructions per tick) around `BENCH_REPEATS` inferences. The firmware also times a loop of
known length (2,000,000 instructions) and the count is only reported if it checks out. QEMU is
not cycle-accurate (no pipeline, caches or flash wait states): this is an instruction count,
not a cycle count.
"""

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import time

import numpy as np
from tfdynhp.converters import audio_pipeline, flash_map, mcu, runtimes, tflite_model
from tfdynhp.converters import kernels as kernel_sets

TARGETS = ("host", "cortex-m4", "cortex-m3")
QEMU_BOARDS = {"cortex-m4": "mps2-an386", "cortex-m3": "mps2-an385"}
APT_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
CALIBRATION_TOLERANCE = 0.01
BUNDLE_FILES = ("Makefile", "model.mk", "main.cc", "model.tflite", mcu.TEST_VECTORS_JSON)


class FirmwareError(RuntimeError):
    """The firmware could not be built or run. The message is one line saying what is missing
    or what failed and how to fix it; `log` holds the full build or run output."""

    def __init__(self, message, log=""):
        super().__init__(message)
        self.log = log


@dataclasses.dataclass(frozen=True)
class FirmwareResult:
    """What `verify_mcu` measured on one build of a bundle.

    Attributes:
        target: `"host"`, `"cortex-m4"` or `"cortex-m3"`.
        kernels: The TFLM kernel set built: `"reference"` or `"cmsis-nn"`.
        bit_exact: The firmware's raw outputs equal TFLite Micro's Python interpreter's on
            every test vector.
        num_vectors: Number of test vectors run.
        mismatched_vectors: Indices of the vectors whose outputs differ.
        outputs: Raw outputs printed by the firmware, `(num_vectors, num_outputs)`.
        reference_outputs: Raw outputs of the Python interpreter on the same inputs.
        text_bytes, data_bytes, bss_bytes: `size` of the firmware (Berkeley format; `text`
            includes read-only data).
        rodata_bytes: Size of `.rodata` (the model, test vectors, tables), Cortex-M only.
        flash_bytes: `text + data`.
        ram_static_bytes: `data + bss` (the tensor arena is in `bss`).
        stack_used_bytes, heap_used_bytes: Measured at run time (Cortex-M; `None` on host).
        ram_total_bytes: `ram_static_bytes` + stack and heap used.
        arena_bytes, arena_used_bytes: Tensor arena reserved and used (`arena_used_bytes()`).
        instructions_per_inference: Guest instructions per `Invoke()` under QEMU `-icount`
            (`None` on host).
        host_ns_per_inference: Wall-clock nanoseconds per `Invoke()` (host only).
        bench_inferences: Number of timed inferences.
        build_seconds, run_seconds: Wall-clock times of the build and of the run.
        tflm_sources_compiled: TFLM sources compiled by this build (0: all from the cache).
        firmware_path: The built firmware.
        run_command: The command that ran it.
        frontend_instructions_per_clip: Raw-audio bundles: guest instructions of the front end
            alone over one clip (`instructions_per_inference` is front end + classifier).
        frontend_frames: Raw-audio bundles: front-end invocations (windows) per clip.
    """

    target: str
    kernels: str
    bit_exact: bool
    num_vectors: int
    mismatched_vectors: tuple
    outputs: np.ndarray
    reference_outputs: np.ndarray
    text_bytes: int
    data_bytes: int
    bss_bytes: int
    rodata_bytes: object
    flash_bytes: int
    ram_static_bytes: int
    stack_used_bytes: object
    heap_used_bytes: object
    ram_total_bytes: int
    arena_bytes: int
    arena_used_bytes: int
    instructions_per_inference: object
    host_ns_per_inference: object
    bench_inferences: int
    build_seconds: float
    run_seconds: float
    tflm_sources_compiled: int
    firmware_path: str
    run_command: str
    frontend_instructions_per_clip: object = None
    frontend_frames: object = None

    def to_dict(self):
        """JSON-serializable dict (arrays as nested lists)."""
        d = dataclasses.asdict(self)
        d["outputs"] = self.outputs.tolist()
        d["reference_outputs"] = self.reference_outputs.tolist()
        d["mismatched_vectors"] = list(self.mismatched_vectors)
        return d


def _check_bundle(bundle_dir):
    bundle_dir = os.fspath(bundle_dir)
    if not os.path.isdir(bundle_dir):
        raise ValueError(
            f"`bundle_dir` {bundle_dir!r} is not a folder. Pass the folder written by "
            "`converters.export(..., 'mcu', out_dir, ...)`."
        )
    missing = [f for f in BUNDLE_FILES if not os.path.isfile(os.path.join(bundle_dir, f))]
    if missing:
        raise ValueError(
            f"{bundle_dir!r} is not a complete MCU bundle (missing {', '.join(missing)}). "
            "Re-export it with `converters.export(..., 'mcu', out_dir, ...)`."
        )
    return bundle_dir


def _tflm_dir(tflm_dir):
    tflm_dir = tflm_dir if tflm_dir is not None else os.environ.get("TFLM_DIR")
    if not tflm_dir:
        raise ValueError(
            "No TensorFlow Lite Micro tree: pass `tflm_dir=` or set TFLM_DIR to a TFLM source "
            "tree (git clone https://github.com/tensorflow/tflite-micro)."
        )
    return os.path.abspath(os.path.expanduser(os.fspath(tflm_dir)))


def _make_error(output, target, log_path):
    """One line from a failed make: its own `*** message.  Stop.` or the first compiler error."""
    stop = re.search(r"\*\*\* (.+?)\.\s+Stop\.", output)
    if stop:
        return stop.group(1).strip() + "."
    error = re.search(r"^.*\b(?:error|undefined reference)\b.*$", output, re.MULTILINE)
    lines = output.strip().splitlines()
    detail = error.group(0).strip() if error else (lines[-1] if lines else "no output")
    return f"Building the {target} firmware failed: {detail} (full log: {log_path})."


def _make(bundle_dir, args, timeout, nice):
    make = shutil.which("make")
    if make is None:
        raise FirmwareError(
            "make not found: install it (Debian/Ubuntu: sudo apt-get install make g++)."
        )
    command = [make, *args]
    if nice and shutil.which("nice"):
        command = ["nice", "-n", str(int(nice)), *command]
    try:
        proc = subprocess.run(
            command, cwd=bundle_dir, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise FirmwareError(f"`{shlex.join(command)}` did not finish within {timeout} s.") from e
    return proc


def bundle_kernels(bundle_dir, target, kernels=None):
    """The kernel set a build of the bundle uses: `kernels`, else the bundle's default.

    The bundle's default is `"reference"` on the host and, on Cortex-M, what it was exported
    with (`CORTEX_M_KERNELS` in `model.mk`; `"cmsis-nn"` unless chosen otherwise).

    Raises:
        ValueError: For an unknown kernel set or CMSIS-NN on the host.
    """
    if kernels is None and target != "host":
        with open(os.path.join(bundle_dir, "model.mk"), encoding="utf-8") as f:
            found = re.search(r"^CORTEX_M_KERNELS \??:?= *(\S+)", f.read(), re.MULTILINE)
        kernels = found.group(1) if found else "cmsis-nn"
    return kernel_sets.check_kernels(kernels, target)


def _make_vars(tflm_dir, cache_dir, bench_repeats, make_args):
    variables = {"TFLM_DIR": tflm_dir}
    if cache_dir is not None:
        variables["TFLM_CACHE"] = os.path.abspath(os.fspath(cache_dir))
    if bench_repeats is not None:
        variables["BENCH_REPEATS"] = str(int(bench_repeats))
    variables.update({str(k): str(v) for k, v in (make_args or {}).items()})
    return [f"{k}={v}" for k, v in variables.items()]


def _kernel_arg(kernels):
    return "KERNELS=" + kernels.replace("-", "_")


def build_dir(bundle_dir, target, kernels, make_args=None):
    """The folder the bundle's Makefile builds `target` with `kernels` into (asks make;
    `make_args` as for `build_firmware`, e.g. a `BUILD_DIR`)."""
    variables = [f"{k}={v}" for k, v in (make_args or {}).items()]
    proc = _make(bundle_dir, ["-s", f"TARGET={target}", _kernel_arg(kernels), "build-dir",
                              *variables], 60, None)
    if proc.returncode != 0:
        raise FirmwareError(_make_error(proc.stdout + proc.stderr, target, "(make build-dir)"))
    return os.path.join(bundle_dir, proc.stdout.strip())


def build_firmware(
    bundle_dir, tflm_dir=None, target="cortex-m4", *, kernels=None, cache_dir=None, jobs=2,
    nice=10, bench_repeats=None, make_args=None, timeout=1800,
):
    """Builds a bundle's firmware with its Makefile; returns `(firmware_path, seconds, compiled)`.

    Args:
        bundle_dir: Folder written by the `"mcu"` export.
        tflm_dir: TFLM source tree. Defaults to the `TFLM_DIR` environment variable.
        target: One of `TARGETS`. Defaults to `"cortex-m4"`.
        kernels: `"cmsis-nn"` or `"reference"` (see `bundle_kernels`). Defaults to the
            bundle's: CMSIS-NN on Cortex-M, reference on the host.
        cache_dir: Cache of compiled TFLM objects (`TFLM_CACHE`). Defaults to the Makefile's
            (`~/.cache/tfdynhp/tflm`).
        jobs: Parallel compile jobs. Defaults to `2`.
        nice: Niceness of the compilers (`None` or `0` for none). Defaults to `10`.
        bench_repeats: Timed inferences compiled into `main.cc`. Defaults to the Makefile's 10.
        make_args: Extra make variables, e.g. `{"ARM_PREFIX": "/opt/arm/bin/arm-none-eabi-"}`.
        timeout: Seconds allowed for the build. Defaults to `1800`.

    Returns:
        `(firmware_path, build_seconds, tflm_sources_compiled)`.

    Raises:
        ValueError: On an unknown target, a folder that is not a bundle, or no TFLM tree given.
        FirmwareError: If the toolchain or TFLM tree is missing or the build fails (one line
            naming what is missing and how to get it).
    """
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {TARGETS}. Received: target={target!r}")
    bundle_dir = _check_bundle(bundle_dir)
    kernels = bundle_kernels(bundle_dir, target, kernels)
    variables = _make_vars(_tflm_dir(tflm_dir), cache_dir, bench_repeats, make_args)
    start = time.perf_counter()
    proc = _make(bundle_dir, [f"-j{int(jobs)}", f"TARGET={target}", _kernel_arg(kernels),
                              "firmware", *variables], timeout, nice)
    seconds = time.perf_counter() - start
    out_dir = build_dir(bundle_dir, target, kernels, make_args)
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, "build.log")
    log = proc.stdout + proc.stderr
    with open(log_path, "w", encoding="utf-8") as f:
        f.write(log)
    if proc.returncode != 0:
        raise FirmwareError(_make_error(log, target, log_path), log)
    compiled = len(re.findall(r"^(?:CXX  (?:tensorflow|signal)/|CC   cmsis_nn/)", proc.stdout,
                              re.MULTILINE))
    firmware = os.path.join(out_dir, "firmware" if target == "host" else "firmware.elf")
    return firmware, seconds, compiled


def parse_size(text):
    """Parses Berkeley-format `size` output into `{"text", "data", "bss"}` (bytes)."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and all(f.isdigit() for f in fields[:3]):
            return dict(zip(("text", "data", "bss"), map(int, fields[:3])))
    raise ValueError(f"Not the output of `size` (Berkeley format): {text[:200]!r}")


def parse_sections(text):
    """Parses SysV-format `size -A` output into `{section: bytes}`."""
    sections = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0].startswith(".") and fields[1].isdigit():
            sections[fields[0]] = int(fields[1])
    return sections


def firmware_size(bundle_dir, target="cortex-m4", kernels=None, make_args=None):
    """Flash and static RAM of a built firmware, in total and per part.

    Reads `size.txt` and, on Cortex-M, the linker map (`firmware.map`) of the build that
    `build_firmware(bundle_dir, ..., target, kernels=kernels, make_args=make_args)` made, and
    attributes every input section to a part (`flash_map.PARTS`: application, arenas, TFLM
    runtime, kernels, front-end model, classifier model, test vectors, C library, linker).

    Returns:
        Dict: `flash_bytes` (text + data), `ram_static_bytes` (data + bss), and on Cortex-M
        `flash_parts` / `ram_parts` (`{part: bytes}`, `total` equal to the two figures).
    """
    bundle_dir = _check_bundle(bundle_dir)
    out_dir = build_dir(bundle_dir, target, bundle_kernels(bundle_dir, target, kernels),
                        make_args)
    with open(os.path.join(out_dir, "size.txt"), encoding="utf-8") as f:
        size = parse_size(f.read())
    figures = {"flash_bytes": size["text"] + size["data"],
               "ram_static_bytes": size["data"] + size["bss"]}
    map_path = os.path.join(out_dir, "firmware.map")
    if target != "host" and os.path.isfile(map_path):
        parts = flash_map.map_breakdown(map_path)
        figures["flash_parts"], figures["ram_parts"] = parts["flash"], parts["ram"]
    return figures


def parse_run_output(text):
    """Parses what `main.cc` prints: `{"outputs": {i: [...]}, key: int, ...}`.

    Lines `output <i> <v>...` go to `outputs`, `eval <i> <class> <v>...` (raw-audio bundles
    classifying extra clips) to `eval` as `(class, [v...])`; `<key> <int>` lines become integer
    entries; `error <words>` lines are collected in `errors`.
    """
    record = {"outputs": {}, "errors": [], "eval": {}}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "output" and len(fields) >= 2:
            record["outputs"][int(fields[1])] = [int(v) for v in fields[2:]]
        elif fields[0] == "detect" and len(fields) == 4:
            record.setdefault("detect", []).append(tuple(int(v) for v in fields[1:]))
        elif fields[0] == "op_ticks" and len(fields) == 4:
            record.setdefault("op_ticks", {})[(fields[1], fields[2])] = int(fields[3])
        elif fields[0] == "op_layer" and len(fields) == 5:
            record.setdefault("op_layers", {}).setdefault(fields[1], []).append(
                (int(fields[2]), fields[3], int(fields[4])))
        elif fields[0] == "eval" and len(fields) >= 3:
            record["eval"][int(fields[1])] = (int(fields[2]), [int(v) for v in fields[3:]])
        elif fields[0] == "error":
            record["errors"].append(" ".join(fields[1:]))
        elif len(fields) == 2 and re.fullmatch(r"-?\d+", fields[1]):
            record[fields[0]] = int(fields[1])
        elif fields[0] == "done":
            record["done"] = True
    return record


def _run_command(bundle_dir, target, kernels, make_args):
    variables = [f"{k}={v}" for k, v in (make_args or {}).items()]
    proc = _make(bundle_dir, ["-s", f"TARGET={target}", _kernel_arg(kernels), "run-command",
                              *variables], 60, None)
    if proc.returncode != 0:
        raise FirmwareError(_make_error(proc.stdout + proc.stderr, target, "(make run-command)"))
    return proc.stdout.strip()


def _run_error(record, proc, target, settings_hint):
    stderr = proc.stderr.strip()
    tflm_lines = [line for line in stderr.splitlines() if line.strip()]
    if any("arena_too_small" in e for e in record["errors"]) or "Failed to allocate" in stderr:
        said = next((line for line in tflm_lines if "Failed to allocate" in line), "")
        return (
            f"The tensor arena ({record.get('arena_bytes') or settings_hint} B, "
            f"kTensorArenaSize in model_settings.h) is too small for this model on {target}"
            f"{f' (TFLM: {said.strip()})' if said else ''}: re-export with a larger "
            "`arena_margin` or raise kTensorArenaSize."
        )
    if record["errors"]:
        return f"The {target} firmware stopped with an error: {record['errors'][0]}."
    last = tflm_lines[-1] if tflm_lines else "no output"
    return (
        f"The {target} firmware exited with status {proc.returncode} before finishing: {last}."
    )


def _arena_setting(bundle_dir):
    with open(os.path.join(bundle_dir, "model_settings.h"), encoding="utf-8") as f:
        found = re.search(r"kTensorArenaSize = (\d+);", f.read())
    return int(found.group(1)) if found else "?"


def run_firmware(bundle_dir, target="cortex-m4", *, kernels=None, make_args=None, timeout=600):
    """Runs a built firmware (natively or under QEMU); returns `(record, seconds, command)`.

    Raises:
        FirmwareError: If QEMU is missing, the firmware times out, crashes or reports an error
            (an arena too small is named as such).
    """
    bundle_dir = _check_bundle(bundle_dir)
    kernels = bundle_kernels(bundle_dir, target, kernels)
    command = _run_command(bundle_dir, target, kernels, make_args)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            shlex.split(command), cwd=bundle_dir, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise FirmwareError(f"The {target} firmware did not finish within {timeout} s.") from e
    seconds = time.perf_counter() - start
    log_path = os.path.join(build_dir(bundle_dir, target, kernels, make_args), "run.log")
    with open(log_path, "w", encoding="utf-8") as f:
        f.write(f"$ {command}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    record = parse_run_output(proc.stdout)
    if proc.returncode not in (0, 3) or not record.get("done"):
        raise FirmwareError(
            _run_error(record, proc, target, _arena_setting(bundle_dir)),
            proc.stdout + proc.stderr,
        )
    return record, seconds, command


def reference_outputs(bundle_dir):
    """Runs the bundle's test vectors in TFLite Micro's Python interpreter, now.

    For a raw-audio bundle (`audio_mcu`), the inputs are its clips and the outputs those of its
    front end then classifier (`audio_pipeline.bundle_pipeline_outputs`).

    Returns:
        `(inputs, outputs)`: quantized inputs and raw outputs, one row per vector.
    """
    if audio_pipeline.is_audio_bundle(bundle_dir):
        with open(os.path.join(bundle_dir, mcu.TEST_VECTORS_JSON), encoding="utf-8") as f:
            clips = np.asarray(json.load(f)["inputs"], np.int16)
        return clips, audio_pipeline.bundle_pipeline_outputs(bundle_dir)[1]
    with open(os.path.join(bundle_dir, mcu.TEST_VECTORS_JSON), encoding="utf-8") as f:
        vectors = json.load(f)
    with open(os.path.join(bundle_dir, "model.tflite"), "rb") as f:
        tflite_bytes = f.read()
    info = tflite_model.read_model_info(tflite_bytes)
    shape = (1,) + tuple(info.inputs[0].shape[1:])
    inputs = np.asarray(vectors["inputs"], dtype=info.inputs[0].dtype)
    runner = runtimes.make_runner(tflite_bytes, "tflm")
    outputs = np.stack([np.asarray(runner(q.reshape(shape))).reshape(-1) for q in inputs])
    return inputs, outputs


def _instructions(record, target):
    if target == "host":
        return None
    per_tick = record.get("instructions_per_tick", 0)
    expected = record.get("calibration_instructions", 0)
    counted = record.get("calibration_ticks", 0) * per_tick
    if not expected or abs(counted - expected) > CALIBRATION_TOLERANCE * expected:
        raise FirmwareError(
            f"QEMU's instruction count does not check out on {target}: a loop of {expected} "
            f"instructions took {counted} by SysTick. Run QEMU with -icount shift=0 (the "
            "Makefile's run command does)."
        )
    return record["bench_ticks"] * per_tick / record["bench_inferences"]


def _result(bundle_dir, target, kernels, record, build, run_seconds, command):
    firmware, build_seconds, compiled = build
    out_dir = os.path.dirname(firmware)
    with open(os.path.join(out_dir, "size.txt"), encoding="utf-8") as f:
        size = parse_size(f.read())
    sections = {}
    if os.path.isfile(os.path.join(out_dir, "sections.txt")):
        with open(os.path.join(out_dir, "sections.txt"), encoding="utf-8") as f:
            sections = parse_sections(f.read())
    _, reference = reference_outputs(bundle_dir)
    n = len(reference)
    got = [record["outputs"].get(i) for i in range(n)]
    if any(row is None or len(row) != reference.shape[1] for row in got):
        raise FirmwareError(
            f"The {target} firmware printed outputs for {len(record['outputs'])} of {n} test "
            "vectors: rebuild it from this bundle (make clean)."
        )
    outputs = np.asarray(got, dtype=np.int64)
    mismatched = tuple(i for i in range(n) if not np.array_equal(outputs[i], reference[i]))
    on_device = target != "host"
    stack = record.get("stack_used_bytes") if on_device else None
    heap = record.get("heap_used_bytes") if on_device else None
    ram_static = size["data"] + size["bss"]
    return FirmwareResult(
        target=target,
        kernels=kernels,
        bit_exact=not mismatched,
        num_vectors=n,
        mismatched_vectors=mismatched,
        outputs=outputs,
        reference_outputs=reference.astype(np.int64),
        text_bytes=size["text"],
        data_bytes=size["data"],
        bss_bytes=size["bss"],
        rodata_bytes=sections.get(".rodata") if on_device else None,
        flash_bytes=size["text"] + size["data"],
        ram_static_bytes=ram_static,
        stack_used_bytes=stack,
        heap_used_bytes=heap,
        ram_total_bytes=ram_static + (stack or 0) + (heap or 0),
        arena_bytes=record["arena_bytes"],
        arena_used_bytes=record["arena_used_bytes"],
        instructions_per_inference=_instructions(record, target),
        host_ns_per_inference=(
            record["bench_ticks"] / record["bench_inferences"] if not on_device else None
        ),
        bench_inferences=record["bench_inferences"],
        build_seconds=build_seconds,
        run_seconds=run_seconds,
        tflm_sources_compiled=compiled,
        firmware_path=firmware,
        run_command=command,
        frontend_instructions_per_clip=(
            record["frontend_bench_ticks"] * record["instructions_per_tick"]
            / record["bench_inferences"]
            if on_device and "frontend_bench_ticks" in record else None),
        frontend_frames=record.get("frontend_frames"),
    )


def profile_ops(bundle_dir, tflm_dir=None, target="cortex-m4", *, kernels=None, cache_dir=None,
                timeout=1800, per_layer=False):
    """Instructions per operator type over one inference, from a profiling build.

    Builds the bundle with `PROFILE=1` (into `build/profile/`, a `MicroProfilerInterface` that
    reads SysTick around every operator) and runs it under QEMU. The profiled build is not the
    one `verify_mcu` measures: its per-operator hooks cost a few instructions each.

    Args:
        per_layer: Also return every operator instance of the classifier, in execution order.

    Returns:
        `{"model": {op: instructions}}` (raw-audio bundles also `"frontend"`, summed over the
        clip's windows); with `per_layer`, also `"layers": [(op, instructions), ...]`, one entry
        per operator of the classifier's graph (mcu bundles with a feature input only).
    """
    if target == "host":
        raise ValueError("Profiling counts QEMU instructions: use a Cortex-M target.")
    make_args = {"PROFILE": 1, "BUILD_DIR": "build/profile"}
    build_firmware(bundle_dir, tflm_dir, target, kernels=kernels, cache_dir=cache_dir,
                   make_args=make_args, timeout=timeout)
    record, _, _ = run_firmware(bundle_dir, target, kernels=kernels, make_args=make_args,
                                timeout=timeout)
    per_tick = record["instructions_per_tick"]
    result = {}
    for (model, op), ticks in record.get("op_ticks", {}).items():
        result.setdefault(model, {})[op] = ticks * per_tick
    if per_layer:
        layers = sorted(record.get("op_layers", {}).get("model", []))
        if not layers:
            raise RuntimeError(
                f"The profiling firmware of {bundle_dir} printed no per-operator records "
                "('op_layer'); per_layer=True needs a bundle exported by this version of "
                "tfdynhp with a feature input (not a raw-audio bundle). Re-export the bundle.")
        result["layers"] = [(op, ticks * per_tick) for _, op, ticks in layers]
    return result


def report_figures(result):
    """The subset of a `FirmwareResult` recorded in `mcu_report.json`."""
    d = result.to_dict()
    for key in ("outputs", "reference_outputs", "firmware_path", "run_command"):
        d.pop(key)
    d["instructions_note"] = (
        "guest instructions counted by QEMU -icount shift=0 (not cycle-accurate)"
        if result.instructions_per_inference is not None
        else "host build: wall-clock time only"
    )
    return d


def verify_mcu(
    bundle_dir,
    tflm_dir=None,
    target="cortex-m4",
    *,
    kernels=None,
    cache_dir=None,
    jobs=2,
    nice=10,
    bench_repeats=None,
    make_args=None,
    update_report=True,
    timeout=1800,
):
    """Builds an MCU bundle's firmware, runs it and checks it bit for bit against Python TFLM.

    The bundle's Makefile compiles the TFLM core and this model's kernels from `tflm_dir`
    (Arm's CMSIS-NN kernels on Cortex-M by default, TFLM's reference kernels on the host or
    with `kernels="reference"`; objects cached: a rebuild costs seconds), links the firmware, and runs it natively (`"host"`) or
    under `qemu-system-arm -icount shift=0` (`"cortex-m4"`: mps2-an386, `"cortex-m3"`:
    mps2-an385). The raw outputs it prints for the shipped test vectors must equal those of
    TFLite Micro's Python interpreter (`tflite_micro`) on the same inputs. Flash and RAM are read
    from `size` / `arm-none-eabi-size`; stack and heap use are measured in the running firmware;
    instructions per inference are counted by QEMU (not cycle-accurate: an instruction count).

    Args:
        bundle_dir: Folder written by `converters.export(..., "mcu", ...)`.
        tflm_dir: TFLM source tree (e.g. a `git clone` of tflite-micro with its third-party
            downloads). Defaults to the `TFLM_DIR` environment variable.
        target: `"host"`, `"cortex-m4"` or `"cortex-m3"`. Defaults to `"cortex-m4"`.
        kernels: `"cmsis-nn"` (Arm's optimized kernels; Cortex-M only; needs CMSIS-NN and
            CMSIS in the tree, as TFLM's `third_party_downloads` with
            `OPTIMIZED_KERNEL_DIR=cmsis_nn` puts them) or `"reference"`. Defaults to `None`:
            the bundle's (CMSIS-NN on Cortex-M unless exported otherwise, reference on host).
        cache_dir: Cache of compiled TFLM objects. Defaults to `~/.cache/tfdynhp/tflm`.
        jobs: Parallel compile jobs. Defaults to `2`.
        nice: Niceness of the build. Defaults to `10`.
        bench_repeats: Timed inferences. Defaults to the Makefile's `10`.
        make_args: Extra make variables (`ARM_PREFIX`, `QEMU`, `STACK_SIZE`, ...).
        update_report: Add the measured figures to the bundle's `mcu_report.json/.md`.
            Defaults to `True`.
        timeout: Seconds allowed for the build and for the run, each. Defaults to `1800`.

    Returns:
        A `FirmwareResult` (`.bit_exact`, `.flash_bytes`, `.ram_total_bytes`,
        `.instructions_per_inference`, ...; `.to_dict()` for JSON).

    Raises:
        ValueError: On an unknown target or kernel set, CMSIS-NN for the host, a folder that is
            not a bundle, or no TFLM tree.
        FirmwareError: If TFLM, the toolchain or QEMU is missing, the build fails, the arena is
            too small, or the firmware crashes; the message names what is missing and how to
            get it.

    Example:

    >>> converters.export(tflite_bytes, "mcu", "out/mcu", x_train[:200])
    >>> result = converters.verify_mcu("out/mcu", tflm_dir="~/tflite-micro", target="cortex-m4")
    >>> result.bit_exact, result.flash_bytes, result.instructions_per_inference
    >>> converters.verify_mcu("out/mcu", target="cortex-m4", kernels="reference")  # to compare
    """
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {TARGETS}. Received: target={target!r}")
    kernels = bundle_kernels(_check_bundle(bundle_dir), target, kernels)
    build = build_firmware(
        bundle_dir, tflm_dir, target, kernels=kernels, cache_dir=cache_dir, jobs=jobs,
        nice=nice, bench_repeats=bench_repeats, make_args=make_args, timeout=timeout,
    )
    record, run_seconds, command = run_firmware(
        bundle_dir, target, kernels=kernels, make_args=make_args, timeout=timeout
    )
    result = _result(os.fspath(bundle_dir), target, kernels, record, build, run_seconds,
                     command)
    if update_report:
        key = mcu.firmware_key(target, kernels, bundle_kernels(bundle_dir, target))
        report = mcu.with_firmware(mcu.read_report(bundle_dir), key, report_figures(result))
        mcu.write_report(bundle_dir, report)
    return result
