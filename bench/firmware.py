"""Real microcontroller firmware of int8 models: flash, RAM and instructions per inference.

For each model, exports the `mcu` bundle and runs `tfdynhp.converters.verify_mcu`: the firmware
is built against TensorFlow Lite Micro for each target and kernel set (`--kernels`: TFLM's
reference kernels and/or Arm's CMSIS-NN; the host always builds reference), run (Cortex-M under
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
- `--tflite PATH` (repeatable): any int8 model, named after its file;
- `--ds-cnn`: MLPerf Tiny's DS-CNN (`tfdynhp.architectures.build("ds-cnn")`) on the synthetic
  keyword-spotting set (`--kws-size`, `--kws-difficulty`; MFCC 49x10 input), dense and pruned by
  DynHP to 1/2 and 1/4 of its MACs in one fit each (`--dscnn-epochs`); the trained models are
  kept in `--work` and reused by the next run (`--retrain` to train again).

    python bench/firmware.py --train-dynhp                       # dense + DynHP stand-in
    python bench/firmware.py --dynhp-model runs/x/model_stripped.keras --no-dense
    python bench/firmware.py --tflite model.tflite --targets cortex-m4,cortex-m3
    python bench/firmware.py --ds-cnn --kernels reference,cmsis-nn   # -> firmware_dscnn.json/.md
    python bench/firmware.py --ds-cnn --kernels cmsis-nn --profile --target-resource m4_instructions
        # + DS-CNN pruned to 1/4 of its estimated Cortex-M4 instructions, and to 1/4 MACs
        # with the penalty in instructions -> firmware_dscnn_m4_instructions.json/.md

Writes `bench/results/firmware.json` (`firmware_dscnn.json` and `.md` with `--ds-cnn`; `--out`)
and prints a Markdown table. Needs TFLM (`--tflm-dir`, default `$TFLM_DIR` or
`../shared/tflm-kit/tflm`; with CMSIS-NN for `--kernels cmsis-nn`), `gcc-arm-none-eabi
libnewlib-arm-none-eabi qemu-system-arm`, Debian's `dataset-fashion-mnist` (Fashion-MNIST rows)
or espeak-ng (`--ds-cnn`).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

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


def _slug(name):
    return name.replace(" ", "_").replace("/", "-")


def _dscnn_rows(args):
    """DS-CNN dense, 1/2 and 1/4 MACs (DynHP), trained on synthetic-kws or reused from --work."""

    from tfdynhp.training import kws as kws_training

    data, info = kws_training.load_splits(None, args.kws_difficulty, args.kws_size, args.seed,
                                          verbose=0)
    rows = []
    for name, mode, target in (("ds-cnn dense", "dense", None),
                               ("ds-cnn 1/2 MACs", "dynhp", "50% macs"),
                               ("ds-cnn 1/4 MACs", "dynhp", "25% macs")):
        folder = os.path.join(args.work, "dscnn", _slug(name))
        options = {"arch": "ds-cnn", "mode": mode, "target": target, "epochs": args.dscnn_epochs,
                   "batch_size": 32, "lr": 3e-3, "bn_momentum": kws_training.BN_MOMENTUM,
                   "seed": args.seed, "dataset": "synthetic-kws"}
        if mode == "dense":
            options["budget"] = None
        rows.append(_trained_row(args, data, info, name, folder, options))
    return rows, ((data[0][0], data[0][1]), (data[-1][0], data[-1][1]))


def _trained_row(args, data, info, name, folder, options):
    """A DS-CNN row: trained by `tfdynhp.training.train(**options)` into `folder`, or loaded
    from it (`--retrain` trains again), with its size, MACs and test accuracy."""
    import keras

    from tfdynhp import costs, training

    path = os.path.join(folder, "model_stripped.keras")
    start = time.perf_counter()
    if args.retrain or not os.path.isfile(path):
        result = training.train(data=data, out_dir=folder, verbose=0, keras_verbose=0,
                                labels=list(info.labels), **options)
        model, test_accuracy = result.stripped, result.summary["test_accuracy"]
        with open(os.path.join(folder, "bench_summary.json"), "w") as f:
            json.dump({"test_accuracy": test_accuracy, "options": options}, f)
    else:
        model = keras.saving.load_model(path)
        with open(os.path.join(folder, "bench_summary.json")) as f:
            test_accuracy = json.load(f)["test_accuracy"]
    call = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return {
        "row": name,
        "source": (f"tfdynhp.training.train({call}) on synthetic-kws "
                   f"({args.kws_size}, {args.kws_difficulty}, MFCC 49x10)"),
        "model": model,
        "params": model.count_params(),
        "macs": int(costs.model_costs(model).macs),
        "test_accuracy": test_accuracy,
        "train_seconds": time.perf_counter() - start,
    }


def _kws_data(args):
    """The synthetic-kws splits and their info, as `_dscnn_rows` loads them."""
    from tfdynhp.training import kws as kws_training

    return kws_training.load_splits(None, args.kws_difficulty, args.kws_size, args.seed,
                                    verbose=0)


def _resource_rows(args, data, info):
    """DS-CNN rows pruned for `--target-resource` (e.g. `m4_instructions`): to 1/4 of it; to
    the MACs that model has, with a MACs target (does pricing units in the resource matter at
    equal MACs?); to 1/4 MACs with the gates' penalty (the ranking of units) in it; and to 1/4
    of it with the penalty in MACs (the amount in the resource, the ranking in MACs)."""

    from tfdynhp.training import kws as kws_training

    resource = args.target_resource
    rows = []
    specs = [(f"ds-cnn 1/4 {resource}", f"25% {resource}", None),
             ("ds-cnn same MACs, macs target", None, None),
             (f"ds-cnn 1/4 MACs, {resource} penalty", "25% macs", resource),
             (f"ds-cnn 1/4 {resource}, macs penalty", f"25% {resource}", "macs")]
    for name, target, penalty in specs:
        target = target or f"{rows[0]['macs']} macs"
        folder = os.path.join(args.work, "dscnn", _slug(name))
        options = {"arch": "ds-cnn", "mode": "dynhp", "target": target, "penalty": penalty,
                   "epochs": args.dscnn_epochs, "batch_size": 32, "lr": 3e-3,
                   "bn_momentum": kws_training.BN_MOMENTUM, "seed": args.seed,
                   "dataset": "synthetic-kws"}
        rows.append(_trained_row(args, data, info, name, folder, options))
    return rows


def estimated_layers(model):
    """`(layer name, TFLite operators, estimated Cortex-M4 instructions)` of every layer call
    the instruction model prices above 0, in execution order (a Dense with a softmax is two
    operators: FULLY_CONNECTED, SOFTMAX)."""
    import keras

    from tfdynhp import costs

    layers = {layer.name: layer for layer in model.layers}
    found = []
    for cost in costs.layer_costs(model):
        if cost.m4_instructions <= 0:
            continue
        layer = layers.get(cost.name)
        softmax = getattr(layer, "activation", None) is keras.activations.softmax
        found.append((cost.name, 2 if softmax and cost.type == "Dense" else 1,
                      cost.m4_instructions))
    return found


def add_estimates(row, model, key="cortex-m4 cmsis-nn"):
    """Adds the instruction model's estimate to `row` (total, and per layer against the
    profiled operators when `--profile` measured them)."""
    from tfdynhp import costs

    row["m4_instructions_estimate"] = float(costs.model_costs(model).m4_instructions)
    firmware = row["firmware"].get(key, {})
    measured = firmware.get("layer_instructions")
    if not measured:
        return row
    layers, position = [], 0
    for name, operators, estimate in estimated_layers(model):
        ops = measured[position:position + operators]
        position += operators
        layers.append({"layer": name, "ops": [op for op, _ in ops], "estimate": estimate,
                       "measured": sum(n for _, n in ops)})
    row["m4_layers"] = layers
    row["m4_unmatched_ops"] = [op for op, _ in measured[position:]]
    return row


def write_resource_markdown(result, path, key="cortex-m4 cmsis-nn"):
    """The rows' MACs, params, accuracy, estimated vs measured instructions, flash and RAM,
    per layer and in total, against the dense DS-CNN and the 1/4-MACs model."""
    rows = result["rows"]
    by_name = {r["row"]: r for r in rows}
    dense = by_name.get("ds-cnn dense")
    lines = [
        "# DS-CNN pruned in Cortex-M4 instructions (CMSIS-NN, QEMU)", "",
        (f"Command: `{result['command']}` ({result['seconds'] / 60:.1f} min; "
        f"{result['machine']})."), "",
        "Estimated: `tfdynhp.costs.model_costs(model).m4_instructions` (the `m4_instructions` "
        "resource, `tfdynhp/layer_types/instructions.py`, fitted by "
        "`python bench/fit_m4_instructions.py` on calibration models that do not include "
        "these). Measured: guest instructions per inference under QEMU (`verify_mcu`, "
        "bit-exact against Python TFLM on 4 vectors), per layer from the profiling build "
        "(`profile_ops(per_layer=True)`). " + result["notes"], "",
        ("| model | MACs | params | held-out test accuracy (float) | estimated instructions | "
        "measured instructions | estimate error | fewer than dense (measured) | bit-exact | "
        "flash B | RAM total B |"), "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        f = r["firmware"].get(key)
        if f is None:
            continue
        measured = f["instructions_per_inference"]
        estimate = r.get("m4_instructions_estimate")
        fewer = (dense["firmware"][key]["instructions_per_inference"] / measured
                 if dense and key in dense["firmware"] else None)
        lines.append(
            f"| {r['row']} | {r.get('macs', 0):,} | {_count(r.get('params'))} | "
            f"{100 * r.get('test_accuracy', float('nan')):.1f} % | {estimate:,.0f} | "
            f"{measured:,} | {100 * (estimate - measured) / measured:+.1f} % | "
            f"{'-' if fewer is None else f'{fewer:.2f}x'} | "
            f"{'yes' if f['bit_exact'] else 'NO'} ({f['num_vectors']}) | {f['flash_bytes']:,} | "
            f"{f['ram_total_bytes']:,} |")
    for r in rows:
        if not r.get("m4_layers"):
            continue
        lines += ["", f"Per layer, {r['row']} ({key}; measured = profiled operators):", "",
                  "| layer | operators | estimated | measured | error |",
                  "|---|---|---:|---:|---:|"]
        for layer in r["m4_layers"]:
            error = 100 * (layer["estimate"] - layer["measured"]) / max(layer["measured"], 1)
            lines.append(f"| {layer['layer']} | {' + '.join(layer['ops'])} | "
                         f"{layer['estimate']:,.0f} | {layer['measured']:,} | {error:+.1f} % |")
        if r.get("m4_unmatched_ops"):
            lines.append(f"\nOperators without an estimate: {', '.join(r['m4_unmatched_ops'])}.")
    if dense and key in dense["firmware"]:
        lines += ["", ("Goal (issue 28): the 1/4 model >= 3x fewer Cortex-M4 CMSIS-NN "
                  "instructions than the dense DS-CNN:"), ""]
        base = dense["firmware"][key]["instructions_per_inference"]
        for r in rows:
            if r is dense or key not in r["firmware"]:
                continue
            ratio = base / r["firmware"][key]["instructions_per_inference"]
            lines.append(f"- {r['row']}: **{ratio:.2f}x** ({'met' if ratio >= 3 else 'NOT met'}"
                         f"), test accuracy {100 * r['test_accuracy']:.1f} %.")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def measure(row, data, targets, tflm_dir, work_dir, cache_dir, kernel_sets=("cmsis-nn",),
            profile=False):
    """Converts (if needed), exports the mcu bundle and verifies it on every target and kernel
    set (`firmware["<target> <kernels>"]`; the host builds the reference kernels only)."""
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
    bundle = os.path.join(work_dir, _slug(row["row"]))
    converters.export(tflite, "mcu", bundle, representative)
    litert = converters.evaluate(tflite, x_test, y_test, "litert")
    row.update(
        layers=layer_work(tflite),
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
        for kernels in (("reference",) if target == "host" else kernel_sets):
            result = converters.verify_mcu(bundle, tflm_dir, target, kernels=kernels,
                                           cache_dir=cache_dir)
            row["firmware"][f"{target} {kernels}"] = converters.firmware.report_figures(result)
            if profile and target != "host":
                profiled = converters.firmware.profile_ops(bundle, tflm_dir, target,
                                                           kernels=kernels, cache_dir=cache_dir,
                                                           per_layer=True)
                row["firmware"][f"{target} {kernels}"]["op_instructions"] = profiled["model"]
                row["firmware"][f"{target} {kernels}"]["layer_instructions"] = profiled["layers"]
            print(f"  {row['row']} {target} {kernels}: bit_exact={result.bit_exact} flash="
                  f"{result.flash_bytes} ram={result.ram_total_bytes} instructions="
                  f"{result.instructions_per_inference} build {result.build_seconds:.1f} s "
                  f"({result.tflm_sources_compiled} TFLM sources compiled)", flush=True)
    return row


def layer_work(tflite):
    """Channels, MACs and output values of every operator of an int8 `.tflite`, in order."""
    from tfdynhp.converters import tflite_model

    layers = []
    for op, inputs, outputs in tflite_model.op_shapes(tflite):
        outputs_n = int(np.prod(outputs[0])) if outputs else 0
        per_output = {"CONV_2D": lambda w: int(np.prod(w[1:])),
                      "DEPTHWISE_CONV_2D": lambda w: int(np.prod(w[1:3])),
                      "FULLY_CONNECTED": lambda w: int(w[1])}.get(op)
        layers.append({
            "op": op, "in_channels": inputs[0][-1] if inputs and inputs[0] else None,
            "out_channels": outputs[0][-1] if outputs and outputs[0] else None,
            "kernel": list(inputs[1][1:-1]) if op in ("CONV_2D", "DEPTHWISE_CONV_2D") else None,
            "outputs": outputs_n,
            "macs": outputs_n * per_output(inputs[1]) if per_output else 0,
        })
    return layers


def _count(value):
    return "-" if value is None else f"{value:,}"


def table_markdown(rows, targets=None):
    lines = [
        (
            "| model | params | int8 .tflite B | target | kernels | flash B (text+data) | "
            "RAM B (data+bss) | stack B | heap B | RAM total B | arena B (used) | "
            "instructions / inference | bit-exact |"
        ),
        "|" + " --- |" * 13,
    ]
    for r in rows:
        for key, f in r["firmware"].items():
            target, _, kernels = key.partition(" ")
            kernels = f.get("kernels", kernels or "reference")
            instructions = f["instructions_per_inference"]
            lines.append(
                f"| {r['row']} | {_count(r.get('params'))} | {r['tflite_bytes']:,} | {target} | "
                f"{kernels} | "
                f"{f['flash_bytes']:,} | {f['ram_static_bytes']:,} | "
                f"{f['stack_used_bytes'] if f['stack_used_bytes'] is not None else '-'} | "
                f"{f['heap_used_bytes'] if f['heap_used_bytes'] is not None else '-'} | "
                f"{f['ram_total_bytes']:,} | {f['arena_bytes']:,} ({f['arena_used_bytes']:,}) | "
                f"{'-' if instructions is None else f'{instructions:,.0f}'} | "
                f"{'yes' if f['bit_exact'] else 'NO'} ({f['num_vectors']}) |"
            )
    return "\n".join(lines) + "\n"


def _ratio(rows, name, key, other_name, other_key, field="instructions_per_inference"):
    a = next(r for r in rows if r["row"] == name)["firmware"].get(key)
    b = next(r for r in rows if r["row"] == other_name)["firmware"].get(other_key)
    return None if not a or not b else b[field] / a[field]


def _layer_class(index, layer):
    if layer["op"] == "CONV_2D":
        return "first conv" if index == 0 else "pointwise conv"
    return {"DEPTHWISE_CONV_2D": "depthwise conv"}.get(layer["op"], "pool, FC, softmax")


def layer_markdown(rows, name, other_name, key):
    """Per-operator instructions of two models' profiled builds side by side, and where the
    smaller model's instruction ratio falls short of its MAC ratio."""
    a = next((r for r in rows if r["row"] == name), None)
    b = next((r for r in rows if r["row"] == other_name), None)
    if not a or not b or "layer_instructions" not in a["firmware"].get(key, {}) \
            or "layer_instructions" not in b["firmware"].get(key, {}):
        return []
    la, lb = a["layers"], b["layers"]
    ia = [n for _, n in a["firmware"][key]["layer_instructions"]]
    ib = [n for _, n in b["firmware"][key]["layer_instructions"]]
    if [x["op"] for x in la] != [x["op"] for x in lb] or len(ia) != len(la) or len(ib) != len(lb):
        return ["(per-operator tables skipped: the two models' operators differ)", ""]

    def per(n, m):
        return f"{n / m:.2f}" if m else "-"

    lines = [
        (f"Instructions of every operator, {key} (`profile_ops(per_layer=True)`), {name} vs "
         f"{other_name}:"), "",
        ("| # | op | channels in -> out | MACs | instructions | per MAC | channels in -> out | "
         "MACs | instructions | per MAC | instructions ratio |"),
        "|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for i, (x, y) in enumerate(zip(la, lb)):
        lines.append(
            f"| {i} | {x['op']} | {x['in_channels']} -> {x['out_channels']} | {x['macs']:,} | "
            f"{ia[i]:,} | {per(ia[i], x['macs'])} | {y['in_channels']} -> {y['out_channels']} | "
            f"{y['macs']:,} | {ib[i]:,} | {per(ib[i], y['macs'])} | {ia[i] / ib[i]:.2f}x |")
    lines += ["", f"By operator class ({name} / {other_name}):", "",
              ("| class | MACs ratio | instructions ratio | share of MACs | share of "
               "instructions | per MAC |"), "|---|---:|---:|---|---|---|"]
    classes = list(dict.fromkeys(_layer_class(i, x) for i, x in enumerate(la)))
    total = {"ma": sum(x["macs"] for x in la), "mb": sum(y["macs"] for y in lb),
             "ia": sum(ia), "ib": sum(ib)}
    for c in classes:
        idx = [i for i, x in enumerate(la) if _layer_class(i, x) == c]
        ma, mb = sum(la[i]["macs"] for i in idx), sum(lb[i]["macs"] for i in idx)
        sa, sb = sum(ia[i] for i in idx), sum(ib[i] for i in idx)
        lines.append(
            f"| {c} | {f'{ma / mb:.2f}x' if mb else '-'} | {sa / sb:.2f}x | "
            f"{100 * ma / total['ma']:.0f} % -> {100 * mb / total['mb']:.0f} % | "
            f"{100 * sa / total['ia']:.0f} % -> {100 * sb / total['ib']:.0f} % | "
            + (f"{per(sa, ma)} -> {per(sb, mb)} |" if all(la[i]["macs"] for i in idx)
               else "- |"))
    same_rate = sum(ib[i] if not x["macs"] else lb[i]["macs"] * ia[i] / x["macs"]
                    for i, x in enumerate(la))
    # Pointwise convolutions of every profiled model: instructions ~ a * MACs + b * outputs.
    points = [(layer["macs"], layer["outputs"], n) for r in rows
              if "layer_instructions" in r["firmware"].get(key, {})
              for i, (layer, (_, n)) in enumerate(zip(r["layers"],
                                                      r["firmware"][key]["layer_instructions"]))
              if _layer_class(i, layer) == "pointwise conv"]
    fit = []
    if len(points) >= 3:
        design = np.array([[m, o] for m, o, _ in points], dtype=float)
        measured = np.array([n for _, _, n in points], dtype=float)
        (a_mac, b_out), *_ = np.linalg.lstsq(design, measured, rcond=None)
        worst = np.max(np.abs(design @ [a_mac, b_out] - measured) / measured)
        fit = [(f"Pointwise convolutions ({len(points)} layers of {len(rows)} models, {key}): "
                f"instructions = {a_mac:.2f} x MACs + {b_out:.1f} x output values "
                f"(least squares, worst layer off by {100 * worst:.0f} %): a fixed cost per "
                "output value (requantization, clamping, the kernel's loop set-up) that a "
                "layer with fewer input channels spreads over fewer MACs."), ""]
    lines += [
        "",
        (f"All operators: {total['ma'] / total['mb']:.2f}x fewer MACs, "
         f"{total['ia'] / total['ib']:.2f}x fewer profiled instructions. At the {name}'s "
         f"instructions per MAC, layer by layer, {other_name} would take {same_rate:,.0f} "
         f"({total['ia'] / same_rate:.2f}x fewer): the rest of the gap is each layer's cost "
         "per MAC growing as its channels shrink."), "",
    ] + fit
    return lines


def write_dscnn_markdown(result, table, path):
    """The DS-CNN table with the issue's goals checked."""
    rows = result["rows"]
    lines = [
        "# DS-CNN firmware: TFLM reference kernels vs CMSIS-NN (Cortex-M4, QEMU)", "",
        f"Command: `{result['command']}` ({result['seconds'] / 60:.1f} min; {result['machine']}).",
        "", result["notes"], "",
        "| model | MACs | held-out test accuracy (float) | source |", "| --- | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['row']} | {r.get('macs', 0):,} | "
                     f"{100 * r.get('test_accuracy', float('nan')):.1f} % | {r['source']} |")
    lines += ["", table]
    profiled = [(r["row"], k, f["op_instructions"]) for r in rows
                for k, f in r["firmware"].items() if f.get("op_instructions")]
    if profiled:
        ops = list(dict.fromkeys(op for _, _, p in profiled for op in p))
        lines += [
            ("Instructions per operator type over one inference (a profiling build: "
             "`--profile`, `converters.firmware.profile_ops`; each hook adds a few "
             "instructions):"),
            "", "| model | build | " + " | ".join(ops) + " |", "|---|---|" + "---:|" * len(ops)]
        for name, key, p in profiled:
            lines.append(f"| {name} | {key} | "
                         + " | ".join(f"{p.get(op, 0):,}" for op in ops) + " |")
        lines.append("")
    m4 = "cortex-m4 reference", "cortex-m4 cmsis-nn"
    dense, quarter = "ds-cnn dense", "ds-cnn 1/4 MACs"
    lines += layer_markdown(rows, dense, quarter, m4[1])
    speedup = _ratio(rows, dense, m4[1], dense, m4[0])
    quarter_gain = _ratio(rows, quarter, m4[1], dense, m4[1])
    flash = [r["firmware"][m4[1]]["flash_bytes"] - r["firmware"][m4[0]]["flash_bytes"]
             for r in rows if m4[0] in r["firmware"] and m4[1] in r["firmware"]]
    exact = all(f["bit_exact"] for r in rows for f in r["firmware"].values())
    lines += [
        "Goals (issue 28):", "",
        f"- CMSIS-NN vs reference on the dense DS-CNN: **{speedup:.1f}x** fewer instructions "
        f"(goal >= 10x): {'met' if speedup and speedup >= 10 else 'NOT met'}."
        if speedup else "- CMSIS-NN speed-up: not measured (run with both kernel sets).",
        f"- 1/4-MACs model vs dense, both CMSIS-NN: **{quarter_gain:.2f}x** fewer instructions "
        f"(goal >= 3x): {'met' if quarter_gain >= 3 else 'NOT met'}."
        if quarter_gain else "- 1/4 MACs vs dense: not measured.",
        f"- CMSIS-NN flash minus reference flash: {', '.join(f'{d:+,} B' for d in flash)} "
        f"(goal <= +15,360 B): {'met' if flash and max(flash) <= 15 * 1024 else 'NOT met'}."
        if flash else "- Flash difference: not measured.",
        f"- Bit-exact against Python TFLM on every build: {'yes' if exact else 'NO'}.", "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


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
    parser.add_argument("--kernels", default="cmsis-nn",
                        help="Cortex-M kernel sets, comma-separated among cmsis-nn, reference")
    parser.add_argument("--ds-cnn", action="store_true",
                        help="DS-CNN rows (dense, 1/2 and 1/4 MACs) on synthetic-kws")
    parser.add_argument("--dscnn-epochs", type=int, default=8)
    parser.add_argument("--kws-size", default="ci")
    parser.add_argument("--kws-difficulty", default="easy")
    parser.add_argument("--profile", action="store_true",
                        help="also count instructions per operator type (a profiling build)")
    parser.add_argument("--target-resource", default=None,
                        help="with --ds-cnn, also prune the DS-CNN to 1/4 of this resource (e.g. "
                        "m4_instructions) and to 1/4 MACs with this penalty; writes "
                        "firmware_dscnn_<resource>.json/.md")
    parser.add_argument("--retrain", action="store_true",
                        help="train the DS-CNN models again instead of reusing --work's")
    parser.add_argument("--tflm-dir", default=DEFAULT_TFLM)
    parser.add_argument("--cache-dir", default=None, help="TFLM object cache (default ~/.cache)")
    parser.add_argument("--work", default=os.path.join(REPO, "runs", "bench-firmware"),
                        help="folder for the exported bundles")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="results JSON (default: bench/results/firmware.json, "
                        "firmware_dscnn.json with --ds-cnn)")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    kernel_sets = [k for k in args.kernels.split(",") if k]
    args.out = args.out or os.path.join(
        HERE, "results", (f"firmware_dscnn_{args.target_resource}.json" if args.target_resource
                          else "firmware_dscnn.json") if args.ds_cnn else "firmware.json")
    if args.target_resource and not args.ds_cnn:
        parser.error("--target-resource prunes the DS-CNN: add --ds-cnn")

    from tfdynhp.datasets.shaping import load_data

    rows = []
    if args.ds_cnn:
        rows, data = _dscnn_rows(args)
        if args.target_resource:
            rows = [r for r in rows if r["row"] in ("ds-cnn dense", "ds-cnn 1/4 MACs")]
            rows += _resource_rows(args, *_kws_data(args))
    else:
        data = load_data("fashion-mnist")
    if not args.no_dense and not args.ds_cnn:
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
        model = row.get("model")
        measured.append(measure(row, data, targets, args.tflm_dir, args.work, args.cache_dir,
                                kernel_sets, args.profile))
        if args.target_resource and model is not None:
            add_estimates(measured[-1], model)
    result = {
        "command": "python " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": (f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
                    f"{os.getloadavg()[0]:.0f} at the end"),
        "tools": {
            "arm-none-eabi-g++": _tool_version(["arm-none-eabi-g++", "--version"]),
            "qemu-system-arm": _tool_version(["qemu-system-arm", "--version"]),
            "g++": _tool_version(["g++", "--version"]),
        },
        "tflm_dir": args.tflm_dir,
        "notes": (
            "flash = text + data, RAM = data + bss (tensor arena included) from (arm-none-eabi-)"
            "size; stack and heap measured in the running firmware (painted stack, newlib "
            "break). Firmware = TFLM (reference or CMSIS-NN kernels; CMSIS-NN with the int8-only "
            "registrations of a full-int8 model) + model + 4 test vectors + newlib-nano + "
            "semihosting; the bundle's default -O levels (core -Os, kernels and CMSIS-NN -O2); "
            "instructions per inference are guest instructions counted by QEMU "
            "-icount shift=0 (QEMU is not cycle-accurate: no pipeline, caches or wait states)."
        ),
        "seconds": time.perf_counter() - start,
        "rows": measured,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    table = table_markdown(measured)
    print(table)
    if args.target_resource:
        write_resource_markdown(result, args.out[:-len(".json")] + ".md")
    elif args.ds_cnn:
        write_dscnn_markdown(result, table, args.out[:-len(".json")] + ".md")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
