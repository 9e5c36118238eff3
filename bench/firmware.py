"""Real microcontroller firmware of int8 models: flash, RAM and instructions per inference.

For each model, exports the `mcu` bundle and runs `tfdynhp.converters.verify_mcu`: the firmware
is built against TensorFlow Lite Micro (reference kernels) for each target, run (Cortex-M under
`qemu-system-arm -icount shift=0`), checked bit for bit against TFLM's Python interpreter on
4 test vectors, and measured: flash = text + data, RAM = data + bss (arena included) from
`arm-none-eabi-size`, plus the stack high-water mark and heap measured at run time, and guest
instructions per inference counted by QEMU (not cycle-accurate: an instruction count).
LiteRT's time per invoke (batch 1, tight loop) and per example batched are recorded alongside.

Models (rows):
- `dense`: LeNet-300-100 (784-300-100-10) trained with
  `tfdynhp.training.train(mode="dense", epochs=--dense-epochs)` on Fashion-MNIST;
- `dynhp`: `--dynhp-model PATH` (a `.keras` model, e.g. the main job's
  `runs/fashion-mnist-dynhp/model_stripped.keras`, or a `.tflite`), or with `--train-dynhp` a
  stand-in trained with `training.train(mode="dynhp", epochs=--dynhp-epochs,
  limit_train=--dynhp-limit-train)`;
- `--tflite PATH` (repeatable): any int8 model, named after its file.

    python bench/firmware.py --train-dynhp                       # dense + DynHP stand-in
    python bench/firmware.py --dynhp-model runs/x/model_stripped.keras --no-dense
    python bench/firmware.py --tflite model.tflite --targets cortex-m4,cortex-m3

Writes `bench/results/firmware.json` (`--out`) and prints a Markdown table. Needs TFLM
(`--tflm-dir`, default `$TFLM_DIR` or `../shared/tflm-kit/tflm`), `gcc-arm-none-eabi
libnewlib-arm-none-eabi qemu-system-arm` and Debian's `dataset-fashion-mnist`.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_TFLM = os.environ.get("TFLM_DIR") or os.path.join(
    os.path.dirname(REPO), "shared", "tflm-kit", "tflm"
)


def _tool_version(command):
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    return out.splitlines()[0] if out else None


def _trained_row(name, options, data, seed):
    from tfdynhp import training

    start = time.perf_counter()
    result = training.train(data=data, dataset="fashion-mnist", seed=seed, verbose=0,
                            keras_verbose=0, **options)
    return {
        "row": name,
        "source": f"tfdynhp.training.train({', '.join(f'{k}={v!r}' for k, v in options.items())},"
                  f" seed={seed}) on Fashion-MNIST",
        "model": result.stripped,
        "test_error_pct": result.summary["test_error_pct"],
        "params": result.summary["params"],
        "units": result.summary.get("units"),
        "train_seconds": time.perf_counter() - start,
    }


def _model_row(name, path):
    if path.endswith(".tflite"):
        with open(path, "rb") as f:
            return {"row": name, "source": path, "tflite": f.read()}
    import keras

    import tfdynhp

    model = keras.saving.load_model(path)
    if tfdynhp.is_gated_model(model):
        model = tfdynhp.strip(model)
    return {"row": name, "source": path, "model": model, "params": model.count_params()}


def measure(row, data, targets, tflm_dir, work_dir, cache_dir):
    """Converts (if needed), exports the mcu bundle and verifies it on every target."""
    from tfdynhp import converters
    from tfdynhp.datasets import shaping as inputs

    (x_train, _), (x_test, y_test) = data
    tflite = row.pop("tflite", None)
    model = row.pop("model", None)
    shape = (model.inputs[0].shape[1:] if tflite is None
             else converters.read_model_info(tflite).inputs[0].shape[1:])
    x_train, x_test = inputs.shape_for(x_train, shape), inputs.shape_for(x_test, shape)
    representative = inputs.representative_subset(x_train)
    if tflite is None:
        tflite = converters.to_int8_tflite(model, representative)
    bundle = os.path.join(work_dir, row["row"])
    converters.export(tflite, "mcu", bundle, representative)
    litert = converters.evaluate(tflite, x_test, y_test, "litert")
    row.update(
        tflite_bytes=len(tflite),
        ops=list(converters.read_model_info(tflite).ops),
        int8_test_error_pct=100.0 * (1.0 - litert["accuracy"]),
        litert_batch1_ms=litert["latency_batch1_ms"],
        litert_batched_ms_per_example=litert["batched_ms_per_example"],
        litert_batched_batch_size=litert["batched_batch_size"],
        bundle=bundle,
        firmware={},
    )
    for target in targets:
        result = converters.verify_mcu(bundle, tflm_dir, target, cache_dir=cache_dir)
        row["firmware"][target] = converters.firmware.report_figures(result)
        print(f"  {row['row']} {target}: bit_exact={result.bit_exact} flash="
              f"{result.flash_bytes} ram={result.ram_total_bytes} instructions="
              f"{result.instructions_per_inference} build {result.build_seconds:.1f} s "
              f"({result.tflm_sources_compiled} TFLM sources compiled)", flush=True)
    return row


def _count(value):
    return "-" if value is None else f"{value:,}"


def table_markdown(rows, targets):
    lines = [
        (
            "| model | params | int8 .tflite B | target | flash B (text+data) | "
            "RAM B (data+bss) | stack B | heap B | RAM total B | arena B (used) | "
            "instructions / inference | bit-exact |"
        ),
        "|" + " --- |" * 12,
    ]
    for r in rows:
        for target in targets:
            f = r["firmware"][target]
            instructions = f["instructions_per_inference"]
            lines.append(
                f"| {r['row']} | {_count(r.get('params'))} | {r['tflite_bytes']:,} | {target} | "
                f"{f['flash_bytes']:,} | {f['ram_static_bytes']:,} | "
                f"{f['stack_used_bytes'] if f['stack_used_bytes'] is not None else '-'} | "
                f"{f['heap_used_bytes'] if f['heap_used_bytes'] is not None else '-'} | "
                f"{f['ram_total_bytes']:,} | {f['arena_bytes']:,} ({f['arena_used_bytes']:,}) | "
                f"{'-' if instructions is None else f'{instructions:,.0f}'} | "
                f"{'yes' if f['bit_exact'] else 'NO'} ({f['num_vectors']}) |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", action="append", default=[], help="an int8 .tflite model")
    parser.add_argument("--dynhp-model", help="the DynHP model (.keras or .tflite)")
    parser.add_argument("--train-dynhp", action="store_true",
                        help="train a DynHP stand-in when no --dynhp-model is given")
    parser.add_argument("--dynhp-epochs", type=int, default=5)
    parser.add_argument("--dynhp-limit-train", type=int, default=20000)
    parser.add_argument("--no-dense", action="store_true", help="skip the dense LeNet-300-100")
    parser.add_argument("--dense-epochs", type=int, default=2)
    parser.add_argument("--targets", default="cortex-m4",
                        help="comma-separated among host, cortex-m4, cortex-m3")
    parser.add_argument("--tflm-dir", default=DEFAULT_TFLM)
    parser.add_argument("--cache-dir", default=None, help="TFLM object cache (default ~/.cache)")
    parser.add_argument("--work", default=os.path.join(REPO, "runs", "bench-firmware"),
                        help="folder for the exported bundles")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "firmware.json"))
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]

    from tfdynhp.datasets.shaping import load_data

    data = load_data("fashion-mnist")
    rows = []
    if not args.no_dense:
        rows.append(_trained_row("dense LeNet-300-100",
                                 {"mode": "dense", "epochs": args.dense_epochs}, data, args.seed))
    if args.dynhp_model:
        rows.append(_model_row("dynhp", args.dynhp_model))
    elif args.train_dynhp:
        rows.append(_trained_row(
            "dynhp (stand-in)",
            {"mode": "dynhp", "epochs": args.dynhp_epochs, "limit_train": args.dynhp_limit_train},
            data, args.seed,
        ))
    rows += [_model_row(os.path.splitext(os.path.basename(p))[0], p) for p in args.tflite]
    if not rows:
        parser.error("nothing to measure: drop --no-dense or give --dynhp-model / --tflite")

    start = time.perf_counter()
    measured = []
    for row in rows:
        print(f"== {row['row']} ({row['source']})", flush=True)
        measured.append(measure(row, data, targets, args.tflm_dir, args.work, args.cache_dir))
    result = {
        "command": "python " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "tools": {
            "arm-none-eabi-g++": _tool_version(["arm-none-eabi-g++", "--version"]),
            "qemu-system-arm": _tool_version(["qemu-system-arm", "--version"]),
            "g++": _tool_version(["g++", "--version"]),
        },
        "tflm_dir": args.tflm_dir,
        "notes": (
            "flash = text + data, RAM = data + bss (tensor arena included) from (arm-none-eabi-)"
            "size; stack and heap measured in the running firmware (painted stack, newlib "
            "break). Firmware = TFLM reference kernels + model + 4 test vectors + newlib-nano + "
            "semihosting; instructions per inference are guest instructions counted by QEMU "
            "-icount shift=0 (QEMU is not cycle-accurate: no pipeline, caches or wait states)."
        ),
        "seconds": time.perf_counter() - start,
        "rows": measured,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(table_markdown(measured, targets))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
