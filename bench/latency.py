"""LiteRT batch-1 latency of LeNet-5's int8 models, measured so that a ratio means something.

Three int8 models of Caffe's LeNet-5 (`tfdynhp.architectures.lenet5`), as in the LeNet-5 table
of the README (`bench/results/lenet5`):

- `dense`: 431,080 parameters, 2,293,000 MACs;
- `dynhp`: the widths the DynHP row reached (read from `bench/results/lenet5/dynhp_target.json`:
  conv1 13, conv2 20, ip1 100), cut from the dense model with `tfdynhp.surgery`;
- `zeros`: the dense model with each kernel's smallest weights set to zero, down to the
  non-zero count of the TF-MOT row (`bench/results/lenet5/tfmot.json`), as TF-MOT's
  unstructured pruning leaves it: the same shapes and the same compute as `dense`. It is the
  control: its ratio to `dense` must come out near 1, or the method cannot tell 1.5x apart;
- `floor`: LeNet-5 cut to 2 units per group (35,284 MACs, 65x fewer than dense): what an invoke
  costs when the layers hardly compute, the runtime's fixed cost.

The weights are seeded, not trained: an int8 kernel does the same work whatever the values, so
the latency depends on the shapes only. Each model runs in its own LiteRT interpreter (one
thread) on a preloaded input, with LiteRT's default kernels (the XNNPACK delegate, as
`converters.evaluate` and the Pi bundle run them) and with the built-in kernels alone; a *round* times every model, in a fresh random order, each in a
tight loop of `invoke()` calls lasting about `--loop-s`; per round the per-invoke time of each
model and the ratios `dense / model` (taken side by side, seconds apart) are kept. Two clocks:
wall time, and the CPU time of the calling thread (`time.thread_time`; LiteRT runs a
one-thread interpreter on it), which other jobs on a shared machine barely move. The result
gives the median and the 10th-90th percentiles over the rounds, and the load average.

    python bench/latency.py [--rounds 60] [--loop-s 0.05]

Writes `bench/results/latency.json`.
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import keras
import numpy as np
from tfdynhp.converters import tflite_model

from tfdynhp import architectures, converters
from tfdynhp.costs import walk
from tfdynhp.surgery import apply_keep_masks

RESULTS = os.path.join(HERE, "results")
CLOCKS = ("wall", "cpu")
RESOLVERS = ("default", "builtin")


def _read(path):
    with open(path) as f:
        return json.load(f)


def narrowed(widths, seed=0):
    """LeNet-5 cut to `widths` ({group: units}), keeping each group's first units."""
    model = architectures.lenet5(seed=seed)
    masks = {}
    for name, units in widths.items():
        full = model.get_layer(name).kernel.shape[-1]
        mask = np.zeros(full, bool)
        mask[:units] = True
        masks[name] = mask
    apply_keep_masks(model, masks)
    return model


def zeroed(nonzero, seed=0):
    """Dense LeNet-5 with every kernel pruned by magnitude to one sparsity, so that the model
    keeps about `nonzero` non-zero weights (biases kept, as TF-MOT keeps them)."""
    model = architectures.lenet5(seed=seed)
    kernels = [layer for layer in model.layers if hasattr(layer, "kernel")]
    biases = sum(int(np.prod(layer.bias.shape)) for layer in kernels)
    total = sum(int(np.prod(layer.kernel.shape)) for layer in kernels)
    sparsity = 1.0 - (nonzero - biases) / total
    for layer in kernels:
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        drop = round(sparsity * kernel.size)
        order = np.argsort(np.abs(kernel), axis=None)[:drop]
        flat = kernel.reshape(-1).copy()
        flat[order] = 0.0
        layer.kernel.assign(flat.reshape(kernel.shape))
    return model, sparsity


def _percentiles(values):
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"median": float(p50), "p10": float(p10), "p90": float(p90)}


def interpreter_invoke(tflite, q, resolver):
    """The bare `invoke` of a one-thread LiteRT interpreter holding the input `q`.

    `resolver`: `"default"` (LiteRT's default, with the XNNPACK delegate, as
    `converters.evaluate` and the Pi bundle's `predict.py` run it) or `"builtin"` (the built-in
    optimized kernels without the default delegates)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = {"default": OpResolverType.AUTO,
            "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}[resolver]
    interpreter = Interpreter(model_content=tflite, num_threads=1,
                              experimental_op_resolver_type=kind)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], q)
    interpreter.invoke()
    return interpreter.invoke


def time_rounds(invokes, rounds, loop_s, seed=0):
    """Per-round per-invoke milliseconds of each model, `{clock: {model: [ms, ...]}}`, timed
    interleaved in random order, on the wall clock and the thread's CPU clock."""
    calls = {}
    for name, invoke in invokes.items():  # loop length: about `loop_s` per model
        invoke()
        n, elapsed = 1, 0.0
        while elapsed < loop_s:
            n *= 2
            start = time.thread_time()
            for _ in range(n):
                invoke()
            elapsed = time.thread_time() - start
        calls[name] = n
    rng = np.random.default_rng(seed)
    names = list(invokes)
    times = {clock: {name: [] for name in names} for clock in CLOCKS}
    for _ in range(rounds):
        for i in rng.permutation(len(names)):
            name, invoke = names[i], invokes[names[i]]
            wall, cpu = time.perf_counter(), time.thread_time()
            for _ in range(calls[name]):
                invoke()
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            times["wall"][name].append(wall / calls[name] * 1e3)
            times["cpu"][name].append(cpu / calls[name] * 1e3)
    return times, calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--loop-s", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default=os.path.join(RESULTS, "lenet5"),
                        help="folder of the LeNet-5 table's rows (widths, TF-MOT non-zeros)")
    parser.add_argument("--out", default=os.path.join(RESULTS, "latency.json"))
    args = parser.parse_args(argv)
    command = "python bench/latency.py " + " ".join(sys.argv[1:] if argv is None else argv)
    dynhp_row = _read(os.path.join(args.runs, "dynhp_target.json"))
    tfmot_row = _read(os.path.join(args.runs, "tfmot.json"))

    keras.utils.set_random_seed(args.seed)
    zeros_model, sparsity = zeroed(tfmot_row["params"], args.seed)
    models = {
        "dense": architectures.lenet5(seed=args.seed),
        "dynhp": narrowed(dynhp_row["units"], args.seed),
        "zeros": zeros_model,
        "floor": narrowed({"conv1": 2, "conv2": 2, "ip1": 2}, args.seed),
    }
    rng = np.random.default_rng(args.seed)
    calibration = rng.uniform(0, 1, (200, 28, 28, 1)).astype("float32")
    invokes, rows = {}, {}
    for name, model in models.items():
        tflite = converters.to_int8_tflite(model, calibration)
        q = tflite_model.quantize(calibration[:1],
                                  tflite_model.read_model_info(tflite).inputs[0])
        for resolver in RESOLVERS:
            invokes[(name, resolver)] = interpreter_invoke(tflite, q, resolver)
        rows[name] = {
            "params": int(model.count_params()),
            "nonzero_params": int(sum(np.count_nonzero(w) for w in model.get_weights())),
            "macs": int(walk.model_costs(model).macs),
            "tflite_bytes": len(tflite),
        }
    load_before = os.getloadavg()
    start = time.perf_counter()
    times, calls = time_rounds(invokes, args.rounds, args.loop_s, args.seed)
    wall = time.perf_counter() - start
    for name in models:
        for resolver in RESOLVERS:
            key, row = (name, resolver), rows[name].setdefault(resolver, {})
            row["invokes_per_loop"] = calls[key]
            for clock in CLOCKS:
                row[f"batch1_ms_{clock}"] = _percentiles(times[clock][key])
                ratios = (np.asarray(times[clock][("dense", resolver)])
                          / np.asarray(times[clock][key]))
                row[f"dense_over_this_{clock}"] = _percentiles(ratios)
    record = {
        "command": command.strip(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs",
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "rounds": args.rounds,
        "loop_s": args.loop_s,
        "timing_wall_s": round(wall, 1),
        "zeros_sparsity": sparsity,
        "widths_from": os.path.relpath(os.path.join(args.runs, "dynhp_target.json"), ROOT),
        "models": rows,
        "per_round_ms": {clock: {"/".join(key): [round(t, 5) for t in values]
                                 for key, values in by_model.items()}
                         for clock, by_model in times.items()},
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    for resolver in RESOLVERS:
        for clock in CLOCKS:
            for name, model_row in rows.items():
                row = model_row[resolver]
                ms, ratio = row[f"batch1_ms_{clock}"], row[f"dense_over_this_{clock}"]
                print(f"{resolver:8s} {clock:4s} {name:6s} {model_row['macs']:>9,} MACs  "
                      f"batch-1 {ms['median']:.4f} ms (p10-p90 {ms['p10']:.4f}-{ms['p90']:.4f})"
                      f"  dense/this {ratio['median']:.2f}x (p10-p90 {ratio['p10']:.2f}-"
                      f"{ratio['p90']:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
