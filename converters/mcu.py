"""Target "mcu": a TensorFlow Lite Micro firmware bundle that builds as it is, plus its report.

Files: `model.tflite`, `model_data.cc`/`.h` (the model as a 16-byte aligned C array),
`model_ops.h` (a `MicroMutableOpResolver` with exactly the model's ops), `model_settings.h`
(measured arena size with margin, I/O quantization, one quantized sample), `test_vectors.cc/.h`
and `test_vectors.json` (a few real quantized inputs and the outputs TFLite Micro's Python
interpreter gives for them), `main.cc` (runs and checks the vectors, times inferences) and
`firmware_util.h` (what it shares with the raw-audio `main.cc`: printing, the profiler),
`Makefile` + `model.mk` (builds against the user's TFLM tree for the host, Cortex-M4 or Cortex-M3;
only the core and this model's kernels are compiled), `platform/` (host timer; bare-metal
start-up, linker script and semihosting for QEMU's MPS2 boards), `README.md`, and
`mcu_report.json`/`.md`. `tfdynhp.converters.verify_mcu` builds and runs it and adds the measured
firmware figures to the report.
"""

import json
import os
import shutil
from importlib import resources

import numpy as np
from tfdynhp.converters import arena, boards, c_source, metadata, runtimes, tflite_model
from tfdynhp.converters import kernels as kernels_module

DEFAULT_TEST_VECTORS = 4
TEST_VECTORS_JSON = "test_vectors.json"
REPORT_JSON = "mcu_report.json"
REPORT_MD = "mcu_report.md"
# Template files copied as they are (relative to templates/mcu/).
TEMPLATE_FILES = (
    "Makefile",
    "README.md",
    "main.cc",
    "firmware_util.h",
    "platform/platform.h",
    "platform/host.cc",
    "platform/cortex_m.c",
    "platform/mps2.ld",
)
CORTEX_M_TARGETS = ("cortex-m4", "cortex-m3")

NOT_COUNTED = (
    "Only the model (flash) and the tensor arena (SRAM) are counted. The TFLM runtime and "
    "kernel code, the stack, the heap and application buffers come on top: build the bundle "
    "(`tfdynhp.converters.verify_mcu` or `tfdynhp export --target mcu --verify cortex-m4`) to "
    "measure them."
)
MEASURED = (
    "Firmware figures are measured on the firmware built from this bundle for {target}: flash "
    "= text + data (code, constants incl. the model and test vectors, .data initial values) and "
    "RAM = data + bss (tensor arena included) from `arm-none-eabi-size`, plus the stack "
    "high-water mark and heap in use measured at run time under QEMU. They include newlib-nano "
    "and the semihosting I/O of this test program; a board's own start-up code, drivers and "
    "application come on top. Code size on other cores (M0+, M7, Xtensa) differs somewhat."
)


def mcu_report(tflite_bytes, board, measured_arena, arena_bytes, margin):
    """Returns the flash/SRAM report dict of a model on `board` (no I/O, pure).

    Without a firmware build, it counts the model (flash) and the arena (SRAM) only;
    `with_firmware` adds the figures of a built firmware.

    Args:
        tflite_bytes: The `.tflite` model (its length is the flash need).
        board: A `boards.Board`.
        measured_arena: Smallest working arena in bytes (`arena.measure_arena_size`).
        arena_bytes: Arena size with margin, as written to `model_settings.h`.
        margin: The relative margin used.
    """
    model_bytes = len(tflite_bytes)
    flash_fits = model_bytes <= board.flash_bytes
    sram_fits = arena_bytes <= board.sram_bytes
    return {
        "board": {
            "name": board.name,
            "description": board.description,
            "flash_bytes": board.flash_bytes,
            "sram_bytes": board.sram_bytes,
        },
        "ops": list(tflite_model.read_model_info(tflite_bytes).ops),
        "arena": {
            "measured_bytes": int(measured_arena),
            "margin_fraction": float(margin),
            "arena_bytes": int(arena_bytes),
            "method": (
                "smallest arena (16-byte steps) with which TFLite Micro's Python interpreter "
                "(host build) allocates and invokes the model, found by bisection"
            ),
        },
        "flash": {
            "model_bytes": model_bytes,
            "budget_bytes": board.flash_bytes,
            "fraction": model_bytes / board.flash_bytes,
            "fits": flash_fits,
        },
        "sram": {
            "arena_bytes": int(arena_bytes),
            "budget_bytes": board.sram_bytes,
            "fraction": arena_bytes / board.sram_bytes,
            "fits": sram_fits,
        },
        "fits": flash_fits and sram_fits,
        "fits_basis": "model and arena only",
        "firmware": {},
        "not_counted": NOT_COUNTED,
    }


def _board_fits(flash, ram, board):
    return {
        "flash_bytes": board.flash_bytes,
        "sram_bytes": board.sram_bytes,
        "flash_fraction": flash / board.flash_bytes,
        "sram_fraction": ram / board.sram_bytes,
        "fits": flash <= board.flash_bytes and ram <= board.sram_bytes,
    }


def firmware_key(target, kernels, default_kernels):
    """The key of a build in `mcu_report.json`'s `"firmware"`: the target for the bundle's
    default kernel set, `"<target>/<kernels>"` for the other one (pure)."""
    return target if kernels == default_kernels else f"{target}/{kernels}"


def _target_of(key):
    return key.split("/")[0]


def with_firmware(report, target, figures):
    """Returns a copy of `report` with the measured figures of a firmware build (pure).

    The verdicts (`fits`, per board) then use the firmware's total flash and RAM: the largest
    figures among the Cortex-M builds measured so far (host builds are recorded but not
    judged against boards).

    Args:
        report: A dict from `mcu_report` (or a previous `with_firmware`).
        target: `"host"`, `"cortex-m4"` or `"cortex-m3"`, or a `firmware_key` such as
            `"cortex-m4/reference"`.
        figures: Dict with at least `flash_bytes` and `ram_total_bytes` (as in
            `FirmwareResult.to_dict()`).
    """
    report = json.loads(json.dumps(report))
    report.setdefault("firmware", {})[target] = figures
    measured = {t: f for t, f in report["firmware"].items()
                if _target_of(t) in CORTEX_M_TARGETS}
    if not measured:
        return report
    worst_flash = max(measured, key=lambda t: measured[t]["flash_bytes"])
    worst_ram = max(measured, key=lambda t: measured[t]["ram_total_bytes"])
    flash = measured[worst_flash]["flash_bytes"]
    ram = measured[worst_ram]["ram_total_bytes"]
    board = boards.get_board(report["board"])
    verdict = _board_fits(flash, ram, board)
    report["fits"] = verdict["fits"]
    report["fits_basis"] = (
        f"measured firmware ({', '.join(sorted(measured))}): flash {flash} B, RAM {ram} B"
    )
    report["boards"] = {
        name: _board_fits(flash, ram, b) for name, b in sorted(boards.BOARDS.items())
    }
    report["boards"].setdefault(board.name, verdict)
    report["not_counted"] = MEASURED.format(target=", ".join(sorted(measured)))
    return report


def _kib(n):
    return f"{n / 1024:.1f} KiB"


def _yes(flag):
    return "yes" if flag else "no"


def _firmware_lines(report):
    firmware = report.get("firmware") or {}
    if not firmware:
        return []
    lines = [
        "## Measured firmware",
        "",
        (
            "| Target | Kernels | Flash (text + data) | RAM (data + bss) | Stack used | "
            "Heap used | RAM total | Instructions / inference | Bit-exact vs Python TFLM |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, f in sorted(firmware.items()):
        instructions = f.get("instructions_per_inference")
        lines.append(
            f"| {_target_of(key)} | {f.get('kernels', 'reference')} | "
            f"{f['flash_bytes']} B ({_kib(f['flash_bytes'])}) | "
            f"{f['ram_static_bytes']} B | {f.get('stack_used_bytes') or '-'} | "
            f"{f.get('heap_used_bytes') or '-'} | {f['ram_total_bytes']} B "
            f"({_kib(f['ram_total_bytes'])}) | "
            f"{'-' if instructions is None else f'{instructions:,.0f}'} | "
            f"{_yes(f['bit_exact'])} ({f['num_vectors']} vectors) |"
        )
    lines += [
        "",
        (
            "Instructions are counted by QEMU (`-icount shift=0`: one guest instruction = 1 ns "
            "of virtual time, read from SysTick), averaged over the timed inferences. QEMU is "
            "not cycle-accurate: it models no pipeline, caches, flash wait states or bus "
            "contention, so this is an instruction count, not a cycle count or a time on a real "
            "chip."
        ),
        "",
    ]
    fits = report.get("boards") or {}
    if fits:
        lines += [
            "| Board | Flash | SRAM | Flash used | SRAM used | Fits |",
            "|---|---|---|---|---|---|",
        ]
        for name, b in fits.items():
            lines.append(
                f"| {name} | {_kib(b['flash_bytes'])} | {_kib(b['sram_bytes'])} | "
                f"{b['flash_fraction']:.1%} | {b['sram_fraction']:.1%} | {_yes(b['fits'])} |"
            )
        lines.append("")
    return lines


def report_markdown(report):
    """Renders `mcu_report` (or `with_firmware`) as Markdown."""
    b, fl, sr, ar = report["board"], report["flash"], report["sram"], report["arena"]
    verdict = "fits" if report["fits"] else "does NOT fit"
    basis = report.get("fits_basis", "model and arena only")
    flash_row = (
        f"| Flash (model) | {fl['model_bytes']} B ({_kib(fl['model_bytes'])}) | "
        f"{_kib(fl['budget_bytes'])} | {fl['fraction']:.1%} | {_yes(fl['fits'])} |"
    )
    sram_row = (
        f"| SRAM (tensor arena) | {sr['arena_bytes']} B ({_kib(sr['arena_bytes'])}) | "
        f"{_kib(sr['budget_bytes'])} | {sr['fraction']:.1%} | {_yes(sr['fits'])} |"
    )
    arena_line = (
        f"Tensor arena: {ar['measured_bytes']} B measured, +{ar['margin_fraction']:.0%} margin "
        f"= {ar['arena_bytes']} B (`kTensorArenaSize`). Measured as the {ar['method']}."
    )
    return "\n".join(
        [
            f"# MCU report: {b['name']}",
            "",
            f"Board: {b['description']}. The model {verdict} ({basis}).",
            "",
            "| Memory | Needed | Board | Used | Fits |",
            "|---|---|---|---|---|",
            flash_row,
            sram_row,
            "",
            arena_line,
            "",
            f"Ops ({len(report['ops'])}): {', '.join(report['ops'])}.",
            "",
            *_firmware_lines(report),
            report["not_counted"],
            "",
        ]
    )


def write_report(out_dir, report):
    """Writes `mcu_report.json` and `mcu_report.md` into `out_dir`; returns their paths."""
    paths = {
        "report_json": os.path.join(out_dir, REPORT_JSON),
        "report_md": os.path.join(out_dir, REPORT_MD),
    }
    with open(paths["report_json"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    with open(paths["report_md"], "w", encoding="utf-8") as f:
        f.write(report_markdown(report))
    return paths


def read_report(out_dir):
    """Reads `mcu_report.json` of a bundle."""
    with open(os.path.join(out_dir, REPORT_JSON), encoding="utf-8") as f:
        return json.load(f)


def _test_inputs(info, sample, test_inputs):
    shape = tuple(info.inputs[0].shape[1:])
    if test_inputs is None:
        test_inputs = np.zeros((1,) + shape, np.float32) if sample is None else [sample]
    x = np.asarray(test_inputs, dtype=np.float32)
    if tuple(x.shape) == shape:
        x = x[None]
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or len(x) == 0:
        raise ValueError(
            f"`test_inputs` must be float samples of shape (num_vectors, "
            f"{', '.join(map(str, shape))}). Received: shape={np.shape(test_inputs)}."
        )
    return x


def test_vectors(tflite_bytes, x):
    """Quantizes float samples and runs them in TFLite Micro's Python interpreter.

    Returns:
        `(inputs, outputs)`: the quantized inputs and the raw outputs, as NumPy arrays.
    """
    info = tflite_model.read_model_info(tflite_bytes)
    outputs, _ = runtimes.run_tflite(tflite_bytes, x, "tflm")
    return tflite_model.quantize(x, info.inputs[0]), outputs


def _copy_templates(out_dir):
    root = resources.files("tfdynhp.converters").joinpath("templates", "mcu")
    written = {}
    for name in TEMPLATE_FILES:
        dst = os.path.join(out_dir, *name.split("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with resources.as_file(root.joinpath(*name.split("/"))) as src:
            shutil.copyfile(src, dst)
        written[name] = dst
    return written


def write_mcu(
    tflite_bytes,
    out_dir,
    labels=None,
    sample=None,
    preprocessing=None,
    board=boards.DEFAULT_BOARD,
    arena_margin=0.25,
    test_inputs=None,
    kernels=None,
):
    """Writes the TensorFlow Lite Micro firmware bundle into `out_dir`.

    Build it with `make host|cortex-m4|cortex-m3 TFLM_DIR=<your TFLM tree>` in `out_dir`, or
    build, run and check it from Python with `tfdynhp.converters.verify_mcu`.

    Args:
        tflite_bytes: The int8 `.tflite` model.
        out_dir: Destination folder (created if needed).
        labels: Class names, one per output (written to `labels.txt`).
        sample: One float input sample embedded (quantized) in `model_settings.h`; also the
            only test vector when `test_inputs` is `None`. Defaults to an all-zero input.
        preprocessing: Note stored in `model.json`.
        board: A name from `boards.BOARDS`, a dict or a `boards.Board`. Defaults to
            `"nano33ble"` (1 MB flash, 256 KB SRAM).
        arena_margin: Relative margin added to the measured arena. Defaults to `0.25`.
        test_inputs: Float samples `(num_vectors,) + input_shape[1:]` the firmware runs and
            checks against TFLite Micro's Python interpreter (a few real inputs, e.g.
            representative data). Defaults to `[sample]`.
        kernels: The kernel set the Cortex-M builds use by default: `"cmsis-nn"` (Arm's
            CMSIS-NN, as TFLM's own Cortex-M builds) or `"reference"`; the host always builds
            the reference kernels, and `make ... KERNELS=` or `verify_mcu(kernels=)` picks the
            other set. Defaults to `None` (`"cmsis-nn"`).

    Returns:
        Dict of written paths: `model`, `labels`, `model_json`, `model_data_cc`,
        `model_data_h`, `model_ops_h`, `model_settings_h`, `model_mk`, `test_vectors_h`,
        `test_vectors_cc`, `test_vectors_json`, `main_cc`, `makefile`, `readme`, `platform`
        (folder), `report_json`, `report_md`.

    Raises:
        ValueError: If an op has no TFLite Micro kernel, the board is unknown, the test inputs
            do not match the model, or the model does not run in TFLite Micro.
    """
    board = boards.get_board(board)
    cortex_m_kernels = kernels_module.check_kernels(kernels, "cortex-m4")
    info = tflite_model.read_model_info(tflite_bytes)
    resolver = c_source.op_resolver_header(  # fails early on ops TFLM lacks
        info.ops, registrations=kernels_module.int8_registrations(tflite_bytes))
    model_mk = kernels_module.model_makefile(info.ops) + (
        "# Kernel set of the Cortex-M builds unless KERNELS= says otherwise (host: reference).\n"
        f"CORTEX_M_KERNELS := {cortex_m_kernels.replace('-', '_')}\n"
    )
    x = _test_inputs(info, sample, test_inputs)
    if sample is None:
        sample = x[0]
    measured = arena.measure_arena_size(tflite_bytes)
    arena_bytes = arena.arena_size_with_margin(measured, arena_margin)
    q_in, _, expected = metadata.predict_sample(tflite_bytes, sample, runtime="tflm")
    vector_inputs, vector_outputs = test_vectors(tflite_bytes, x)
    vectors_h, vectors_cc = c_source.test_vectors_sources(
        vector_inputs, vector_outputs, info.inputs[0], info.outputs[0]
    )

    paths = metadata.write_common(out_dir, tflite_bytes, labels, preprocessing)
    sources = {
        "model_data_cc": ("model_data.cc", c_source.c_array_source(tflite_bytes)),
        "model_data_h": ("model_data.h", c_source.c_array_header()),
        "model_ops_h": ("model_ops.h", resolver),
        "model_settings_h": (
            "model_settings.h",
            c_source.model_settings_header(
                info.inputs[0], info.outputs[0], arena_bytes, q_in, expected
            ),
        ),
        "model_mk": ("model.mk", model_mk),
        "test_vectors_h": ("test_vectors.h", vectors_h),
        "test_vectors_cc": ("test_vectors.cc", vectors_cc),
        "test_vectors_json": (
            TEST_VECTORS_JSON,
            json.dumps(
                {
                    "inputs": vector_inputs.reshape(len(x), -1).tolist(),
                    "expected_outputs": vector_outputs.reshape(len(x), -1).tolist(),
                    "input_dtype": info.inputs[0].dtype,
                    "output_dtype": info.outputs[0].dtype,
                    "reference": "tflite_micro Python interpreter, at export",
                }
            )
            + "\n",
        ),
    }
    for key, (name, text) in sources.items():
        paths[key] = os.path.join(out_dir, name)
        with open(paths[key], "w", encoding="utf-8") as f:
            f.write(text)
    copied = _copy_templates(out_dir)
    paths.update(
        main_cc=copied["main.cc"],
        makefile=copied["Makefile"],
        readme=copied["README.md"],
        platform=os.path.dirname(copied["platform/platform.h"]),
    )

    report = mcu_report(tflite_bytes, board, measured, arena_bytes, arena_margin)
    report["kernels"] = {"cortex-m": cortex_m_kernels, "host": "reference",
                         "int8_only_registrations": sorted(
                             kernels_module.int8_registrations(tflite_bytes))}
    report["sample_expected_class"] = expected
    report["test_vectors"] = len(x)
    paths.update(write_report(out_dir, report))
    return paths
