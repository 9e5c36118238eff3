"""Fits the Cortex-M4 / CMSIS-NN instruction model of `tfdynhp.layer_types.instructions`.

Builds a few calibration models (random weights, no training: instruction counts of int8 kernels
do not depend on the weights' values) whose layers span the channel counts, spatial sizes and
kernel sizes of small keyword-spotting and vision CNNs, exports each as an `mcu` bundle and
profiles it under QEMU with the project's firmware profiler
(`tfdynhp.converters.firmware.profile_ops(per_layer=True)`, Cortex-M4, CMSIS-NN kernels). Every
operator instance is one point `(kind, MACs, output values, input values, instructions)`; per
operator kind a non-negative least-squares fit of

    instructions = a * MACs + b * output values + c * input values + d * output positions
                   + e * patch values + f * kernel taps + g

(output positions: the output's spatial size; patch values: MACs per output channel, the
values a convolution's im2col copies; kernel taps: output positions times kernel elements,
the rows of those copies, which cost the most with 1 input channel; g: per call), weighted by 1 / instructions (relative error). The DS-CNN layers measured by
`bench/firmware.py --ds-cnn --profile` (`bench/results/firmware_dscnn.json`, trained models)
are held out: the fit is checked against them, not fitted on them.

    python bench/fit_m4_instructions.py        # -> bench/results/m4_instructions_fit.json/.md

Prints the `CORTEX_M4_CMSIS_NN` table to paste into `tfdynhp/layer_types/instructions.py`.
Needs the TFLM tree with CMSIS-NN (`--tflm-dir`) and `gcc-arm-none-eabi qemu-system-arm`.
"""

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_TFLM = os.environ.get("TFLM_DIR") or os.path.join(
    os.path.dirname(REPO), "shared", "tflm-kit", "tflm"
)
FEATURES = ("macs", "outputs", "inputs", "positions", "patches", "taps", "calls")
# The features each kind's kernel can depend on (a pooling window's elements are its inputs).
KIND_FEATURES = {
    "conv": ("macs", "outputs", "positions", "patches", "taps", "calls"),
    "pointwise": ("macs", "outputs", "inputs", "positions", "calls"),
    "depthwise": ("macs", "outputs", "inputs", "positions", "calls"),
    "fully_connected": ("macs", "outputs", "inputs", "calls"),
    "average_pool": ("outputs", "inputs", "calls"), "max_pool": ("outputs", "inputs", "calls"),
    "mean": ("outputs", "inputs", "calls"),
}


def calibration_models():
    """Small CNNs whose operators cover the kinds the instruction model prices."""
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(0)

    def dscnn_like(name, shape, first, first_kernel, first_strides, widths, pool, dense,
                   classes, residual=False):
        inputs = keras.Input(shape)
        x = layers.Conv2D(first, first_kernel, strides=first_strides, padding="same",
                          activation="relu")(inputs)
        for i, width in enumerate(widths):
            y = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
            y = layers.Conv2D(width, 1, activation="relu")(y)
            x = layers.Add()([x, y]) if residual and width == x.shape[-1] else y
            if residual and i == 1:
                x = layers.MaxPooling2D(2, padding="same")(x)
        x = layers.AveragePooling2D(pool)(x)
        x = layers.Flatten()(x)
        for units in dense:
            x = layers.Dense(units, activation="relu")(x)
        outputs = layers.Dense(classes, activation="softmax")(x)
        return name, keras.Model(inputs, outputs, name=name)

    def plain_cnn(name, shape, convs, classes):
        inputs = keras.Input(shape)
        x = inputs
        for filters, kernel, strides in convs:
            x = layers.Conv2D(filters, kernel, strides=strides, padding="same",
                              activation="relu")(x)
        x = layers.GlobalAveragePooling2D()(x)
        outputs = layers.Dense(classes, activation="softmax")(x)
        return name, keras.Model(inputs, outputs, name=name)

    return [
        dscnn_like("cal-a", (49, 10, 1), 24, (10, 4), (2, 2), (48, 13, 64, 7, 33),
                   (12, 2), (30,), 12),
        dscnn_like("cal-b", (49, 10, 1), 12, (3, 3), (1, 1), (20, 36, 36, 9, 96),
                   (24, 5), (50, 17), 10, residual=True),
        dscnn_like("cal-c", (25, 5, 3), 40, (3, 3), (1, 1), (16, 80, 28, 40, 40),
                   (13, 3), (), 35, residual=True),
        plain_cnn("cal-d", (20, 12, 2), ((8, 3, 1), (16, 3, 2), (24, 3, 1), (7, 5, 1),
                                         (32, (4, 2), 1), (12, 3, 2)), 6),
        dscnn_like("cal-e", (49, 10, 1), 31, (10, 4), (2, 2), (17, 6, 29, 44, 11),
                   (25, 5), (), 12),
    ]


def kind_of(op, inputs):
    """The instruction model's operator kind of a TFLite operator (see
    `tfdynhp.layer_types.instructions.KINDS`)."""
    if op == "CONV_2D":
        return "pointwise" if tuple(inputs[1][1:3]) == (1, 1) else "conv"
    return {"DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "fully_connected",
            "AVERAGE_POOL_2D": "average_pool", "MAX_POOL_2D": "max_pool", "SOFTMAX": "softmax",
            "ADD": "add", "RESHAPE": "reshape", "MEAN": "mean"}.get(op, "other")


def op_points(tflite, instructions):
    """`(kind, op, MACs, output values, input values, instructions)` of every operator."""
    from tfdynhp.converters import tflite_model

    shapes = tflite_model.op_shapes(tflite)
    if len(shapes) != len(instructions):
        raise RuntimeError(f"{len(shapes)} operators but {len(instructions)} profiled")
    points = []
    for (op, inputs, outputs), (profiled_op, count) in zip(shapes, instructions):
        if op != profiled_op:
            raise RuntimeError(f"operator order differs: {op} vs {profiled_op}")
        out_values = int(np.prod(outputs[0]))
        in_values = int(np.prod(inputs[0]))
        kind = kind_of(op, inputs)
        if op == "CONV_2D":
            macs = out_values * int(np.prod(inputs[1][1:]))
        elif op == "DEPTHWISE_CONV_2D":
            macs = out_values * int(np.prod(inputs[1][1:3]))
        elif op == "FULLY_CONNECTED":
            macs = out_values * int(inputs[1][1])
        elif op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            macs = 0  # window elements: the inputs (non-overlapping windows)
        else:
            macs = 0
        points.append(_point(kind, op, macs, out_values, in_values, outputs[0][-1], count,
                             inputs[0][-1]))
    return points


def _point(kind, op, macs, outputs, inputs, out_channels, count, in_channels):
    positions = outputs // out_channels if kind in ("conv", "pointwise", "depthwise") else 0
    patches = int(macs // out_channels) if kind == "conv" else 0
    return {"kind": kind, "op": op, "macs": int(macs), "outputs": int(outputs),
            "inputs": int(inputs), "positions": int(positions), "patches": patches,
            "taps": patches // in_channels, "instructions": int(count)}


def held_out_points(path):
    """The DS-CNN operators of `bench/firmware.py --ds-cnn --profile` (cortex-m4 cmsis-nn);
    input values rebuilt from the DS-CNN's shapes (49x10x1 input, 'same' stride-1 layers
    after the first)."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        rows = json.load(f)["rows"]
    points = []
    for row in rows:
        firmware = row["firmware"].get("cortex-m4 cmsis-nn", {})
        for i, (layer, (_, count)) in enumerate(zip(row["layers"],
                                                    firmware.get("layer_instructions", []))):
            op, cin, cout = layer["op"], layer["in_channels"], layer["out_channels"]
            kernel = tuple(layer["kernel"] or ())
            kind = kind_of(op, [None, (0, *kernel, 0)]) if op == "CONV_2D" else kind_of(op, None)
            outputs = layer["outputs"]
            inputs = 490 if i == 0 else outputs // cout * cin
            if op in ("AVERAGE_POOL_2D", "SOFTMAX"):
                inputs = outputs if op == "SOFTMAX" else None
            if inputs is None:
                continue  # the pool's input is the previous layer's output
            points.append(dict(_point(kind, op, layer["macs"], outputs, inputs, cout, count,
                                      cin),
                               model=row["row"], index=i))
    return points


def profile(name, model, tflm_dir, work, cache_dir):
    from tfdynhp import converters

    rng = np.random.default_rng(0)
    representative = rng.normal(size=(32, *model.inputs[0].shape[1:])).astype("float32")
    tflite = converters.to_int8_tflite(model, representative)
    bundle = os.path.join(work, name)
    converters.export(tflite, "mcu", bundle, representative)
    profiled = converters.firmware.profile_ops(bundle, tflm_dir, "cortex-m4",
                                               kernels="cmsis-nn", cache_dir=cache_dir,
                                               per_layer=True)
    return op_points(tflite, profiled["layers"])


def fit(points):
    """Per kind, the non-negative least-squares coefficients of `FEATURES` (relative error)."""
    from scipy.optimize import nnls

    table = {}
    for kind in sorted({p["kind"] for p in points if p["kind"]}):
        rows = [p for p in points if p["kind"] == kind]
        design = np.array([[p[f] for f in FEATURES[:-1]] + [1.0] for p in rows], float)
        measured = np.array([p["instructions"] for p in rows], float)
        used = [FEATURES.index(f) for f in KIND_FEATURES.get(kind, ("outputs", "calls"))]
        if len(rows) <= len(used):  # too few points: no constant per call
            used = [j for j in used if j != len(FEATURES) - 1] or used
        coefficients = np.zeros(len(FEATURES))
        solution, _ = nnls(design[:, used] / measured[:, None], np.ones(len(rows)))
        coefficients[used] = solution
        table[kind] = tuple(round(float(c), 3) for c in coefficients)
    return table


def errors(points, table):
    out = []
    for p in points:
        coefficients = table.get(p["kind"], (0,) * len(FEATURES))
        estimate = sum(c * (1 if f == "calls" else p[f]) for c, f in zip(coefficients, FEATURES))
        out.append(dict(p, estimate=estimate,
                        error_pct=100.0 * (estimate - p["instructions"]) / p["instructions"]))
    return out


def _markdown(result):
    lines = [
        "# Cortex-M4 / CMSIS-NN instructions per operator: the fitted cost model", "",
        (f"Command: `{result['command']}` ({result['seconds'] / 60:.1f} min). Calibration "
        "models with random weights, profiled under QEMU (`profile_ops(per_layer=True)`, "
        "cortex-m4, cmsis-nn); per operator kind a non-negative least-squares fit (relative "
        "error) of instructions = a x MACs + b x output values + c x input values + d x output "
        "positions + e x patch values (MACs per output channel) + f x kernel taps (positions "
        "x kernel elements) + g."), "",
        ("| kind | a (per MAC) | b (per output) | c (per input) | d (per position) | "
        "e (per patch value) | f (per tap) | g (per call) | points | worst error |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, coefficients in result["table"].items():
        pts = [p for p in result["points"] if p["kind"] == kind]
        worst = max(abs(p["error_pct"]) for p in pts)
        lines.append(f"| {kind} | " + " | ".join(str(c) for c in coefficients)
                     + f" | {len(pts)} | {worst:.1f} % |")
    held = result["held_out"]
    if held:
        total_m = sum(p["instructions"] for p in held)
        lines += ["", ("Held out: the DS-CNN operators of `bench/firmware.py --ds-cnn --profile` "
                  "(trained models, `bench/results/firmware_dscnn.json`; pooling left out), not "
                  "fitted on:"), "",
                  "| model | # | op | kind | MACs | measured | estimate | error |",
                  "|---|---:|---|---|---:|---:|---:|---:|"]
        for p in held:
            lines.append(f"| {p['model']} | {p['index']} | {p['op']} | {p['kind']} | "
                         f"{p['macs']:,} | {p['instructions']:,} | {p['estimate']:,.0f} | "
                         f"{p['error_pct']:+.1f} % |")
        for model in dict.fromkeys(p["model"] for p in held):
            m = sum(p["instructions"] for p in held if p["model"] == model)
            e = sum(p["estimate"] for p in held if p["model"] == model)
            lines.append(f"\nHeld-out total, {model}: measured {m:,}, estimated {e:,.0f} "
                         f"({100 * (e - m) / m:+.1f} %).")
        worst = max(abs(p["error_pct"]) for p in held)
        lines.append(f"\nHeld out, all {len(held)} operators: worst {worst:.1f} %, "
                     f"sum {100 * (sum(p['estimate'] for p in held) - total_m) / total_m:+.1f} %.")
    lines += ["", "Every calibration operator (fitted points):", "",
              "| model | # | op | kind | MACs | outputs | inputs | measured | estimate | error |",
              "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for p in result["points"]:
        lines.append(f"| {p['model']} | {p['index']} | {p['op']} | {p['kind']} | {p['macs']:,} | "
                     f"{p['outputs']:,} | {p['inputs']:,} | {p['instructions']:,} | "
                     f"{p['estimate']:,.0f} | {p['error_pct']:+.1f} % |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflm-dir", default=DEFAULT_TFLM)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--work", default=os.path.join(REPO, "runs", "fit-m4-instructions"))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "m4_instructions_fit.json"))
    parser.add_argument("--held-out", default=os.path.join(HERE, "results", "firmware_dscnn.json"),
                        help="profiled DS-CNN rows to check the fit against")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    points = []
    for name, model in calibration_models():
        found = profile(name, model, args.tflm_dir, args.work, args.cache_dir)
        for i, p in enumerate(found):
            p.update(model=name, index=i)
        print(f"{name}: {len(found)} operators, "
              f"{sum(p['instructions'] for p in found):,} instructions", flush=True)
        points += found
    table = fit(points)
    result = {
        "command": "python " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - start,
        "features": FEATURES,
        "table": table,
        "points": errors(points, table),
        "held_out": errors(held_out_points(args.held_out), table),
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    with open(args.out[:-len(".json")] + ".md", "w") as f:
        f.write(_markdown(result))
    print("CORTEX_M4_CMSIS_NN = {")
    for kind, coefficients in table.items():
        print(f"    {kind!r}: {coefficients},")
    print("}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
