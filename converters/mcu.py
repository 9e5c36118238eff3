"""Target "mcu": C++ sources for TensorFlow Lite Micro plus a flash/SRAM report for a board.

Files: `model.tflite`, `model_data.cc`/`.h` (the model as a 16-byte aligned C array),
`model_ops.h` (a `MicroMutableOpResolver` with exactly the model's ops), `model_settings.h`
(measured arena size with margin, I/O quantization, one quantized sample), a sample `main.cc`,
and `mcu_report.json`/`.md`.
"""

import json
import os
import shutil
from importlib import resources

import numpy as np
from tfdynhp.converters import arena, boards, c_source, metadata, tflite_model

NOT_COUNTED = (
    "Only the model (flash) and the tensor arena (SRAM) are counted. The TFLM runtime and "
    "kernel code, the stack, the heap and application buffers come on top; measure them with "
    "your toolchain (e.g. arm-none-eabi-size) once the firmware links."
)


def mcu_report(tflite_bytes, board, measured_arena, arena_bytes, margin):
    """Returns the flash/SRAM report dict of a model on `board` (no I/O, pure).

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
        "not_counted": NOT_COUNTED,
    }


def _kib(n):
    return f"{n / 1024:.1f} KiB"


def report_markdown(report):
    """Renders `mcu_report` as Markdown."""
    b, fl, sr, ar = report["board"], report["flash"], report["sram"], report["arena"]
    verdict = "fits" if report["fits"] else "does NOT fit"
    flash_row = (
        f"| Flash (model) | {fl['model_bytes']} B ({_kib(fl['model_bytes'])}) | "
        f"{_kib(fl['budget_bytes'])} | {fl['fraction']:.1%} | {'yes' if fl['fits'] else 'no'} |"
    )
    sram_row = (
        f"| SRAM (tensor arena) | {sr['arena_bytes']} B ({_kib(sr['arena_bytes'])}) | "
        f"{_kib(sr['budget_bytes'])} | {sr['fraction']:.1%} | {'yes' if sr['fits'] else 'no'} |"
    )
    arena_line = (
        f"Tensor arena: {ar['measured_bytes']} B measured, +{ar['margin_fraction']:.0%} margin "
        f"= {ar['arena_bytes']} B (`kTensorArenaSize`). Measured as the {ar['method']}."
    )
    return "\n".join(
        [
            f"# MCU report: {b['name']}",
            "",
            f"Board: {b['description']}. The model {verdict} (model and arena only).",
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
            report["not_counted"],
            "",
        ]
    )


def write_mcu(
    tflite_bytes,
    out_dir,
    labels=None,
    sample=None,
    preprocessing=None,
    board=boards.DEFAULT_BOARD,
    arena_margin=0.25,
):
    """Writes the TensorFlow Lite Micro bundle into `out_dir`.

    Args:
        tflite_bytes: The int8 `.tflite` model.
        out_dir: Destination folder (created if needed).
        labels: Class names, one per output (written to `labels.txt`).
        sample: One float input sample embedded (quantized) in `model_settings.h` for
            `main.cc`. Defaults to an all-zero float input.
        preprocessing: Note stored in `model.json`.
        board: A name from `boards.BOARDS`, a dict or a `boards.Board`. Defaults to
            `"nano33ble"` (1 MB flash, 256 KB SRAM).
        arena_margin: Relative margin added to the measured arena. Defaults to `0.25`.

    Returns:
        Dict of written paths: `model`, `labels`, `model_json`, `model_data_cc`,
        `model_data_h`, `model_ops_h`, `model_settings_h`, `main_cc`, `report_json`,
        `report_md`.

    Raises:
        ValueError: If an op has no TFLite Micro kernel, the board is unknown, or the model
            does not run in TFLite Micro.
    """
    board = boards.get_board(board)
    info = tflite_model.read_model_info(tflite_bytes)
    resolver = c_source.op_resolver_header(info.ops)  # fails early on ops TFLM lacks
    measured = arena.measure_arena_size(tflite_bytes)
    arena_bytes = arena.arena_size_with_margin(measured, arena_margin)
    if sample is None:
        sample = np.zeros(info.inputs[0].shape[1:], dtype=np.float32)
    q_in, _, expected = metadata.predict_sample(tflite_bytes, sample, runtime="tflm")

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
    }
    for key, (name, text) in sources.items():
        paths[key] = os.path.join(out_dir, name)
        with open(paths[key], "w", encoding="utf-8") as f:
            f.write(text)
    paths["main_cc"] = os.path.join(out_dir, "main.cc")
    template = resources.files("tfdynhp.converters").joinpath("templates", "main.cc")
    with resources.as_file(template) as src:
        shutil.copyfile(src, paths["main_cc"])

    report = mcu_report(tflite_bytes, board, measured, arena_bytes, arena_margin)
    report["sample_expected_class"] = expected
    paths["report_json"] = os.path.join(out_dir, "mcu_report.json")
    with open(paths["report_json"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    paths["report_md"] = os.path.join(out_dir, "mcu_report.md")
    with open(paths["report_md"], "w", encoding="utf-8") as f:
        f.write(report_markdown(report))
    return paths
