"""What converting in a child process costs: `to_int8_tflite(isolate=True)` (the default) against
`isolate=False`, interleaved, on small models of `tfdynhp.architectures` and one
`keras.applications` model; plus the child's start alone (a Python process importing
TensorFlow, what the isolation adds).

    nice -n 10 python bench/converter_isolation.py                 # ~6 min on 2 shared cores
    nice -n 10 python bench/converter_isolation.py --repeats 2 --models mlp

Writes `bench/results/converter_isolation.json` and `.md` (medians; min and max beside).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import keras
import numpy as np

from tfdynhp import architectures, converters

MODELS = ("mlp", "ds-cnn", "mobilenet-v1-0.25", "MobileNetV2-32")


def build(name):
    keras.utils.set_random_seed(0)
    if name == "MobileNetV2-32":
        return keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None,
                                              classes=10)
    if name == "mlp":
        return architectures.build(name, input_shape=(784,))
    return architectures.build(name)


def child_start_seconds():
    """A Python process that imports TensorFlow and exits: the isolation's fixed cost."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], check=True,
                   capture_output=True)
    return time.perf_counter() - start


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": [round(v, 3) for v in values]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    rows = []
    starts = []
    for name in args.models.split(","):
        model = build(name)
        shape = (64, *model.inputs[0].shape[1:])
        data = np.random.default_rng(0).normal(size=shape).astype("float32")
        times = {True: [], False: []}
        sizes = set()
        for repeat in range(args.repeats):
            order = (True, False) if repeat % 2 == 0 else (False, True)
            for isolate in order:
                start = time.perf_counter()
                sizes.add(len(converters.to_int8_tflite(model, data, isolate=isolate)))
                times[isolate].append(time.perf_counter() - start)
            starts.append(child_start_seconds())
        row = {"model": name, "params": model.count_params(), "tflite_bytes": sorted(sizes),
               "in_process_s": summary(times[False]), "isolated_s": summary(times[True])}
        row["overhead_s"] = row["isolated_s"]["median"] - row["in_process_s"]["median"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "command": "python bench/converter_isolation.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "child_start_s": summary(starts),
        "models": rows,
    }
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "converter_isolation.json"), "w") as f:
        json.dump(result, f, indent=2)
    lines = [
        "# int8 conversion in a child process vs in the caller's process",
        "",
        (f"`{result['command'].strip()}` on {result['machine']}; medians of "
        f"{args.repeats} interleaved runs (min-max). A child Python process importing "
        f"TensorFlow alone: {result['child_start_s']['median']:.2f} s "
        f"({result['child_start_s']['min']:.2f}-{result['child_start_s']['max']:.2f})."),
        "",
        "| model | params | in process (s) | isolated (s) | overhead (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        a, b = row["in_process_s"], row["isolated_s"]
        lines.append(
            f"| {row['model']} | {row['params']:,} | {a['median']:.2f} ({a['min']:.2f}-"
            f"{a['max']:.2f}) | {b['median']:.2f} ({b['min']:.2f}-{b['max']:.2f}) | "
            f"{row['overhead_s']:+.2f} |")
    with open(os.path.join(args.results, "converter_isolation.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
