"""What the `tfdynhp.DynamicBatches` feed costs `fit`: stock Keras LeNet-300-100, one epoch on
arrays against the same epoch on `DynamicBatches` (its `tf.data` pipeline, what `fit` reads)
and on the same `DynamicBatches` read through Keras' `PyDataset` feed (a Python generator:
the feed before issue 27), same batch, interleaved rounds.

Each round fits the three models for 2 epochs, one after the other, and keeps the second
epoch's time (the first traces the step); the ratios of a round are DynamicBatches / arrays
(`ratio_*`) and PyDataset feed / arrays (`pydataset_ratio_*`), epochs measured side by side. Two clocks: wall time, and the CPU time of this process (all its
threads), which other jobs on a shared machine inflate far less than the wall time. The result
gives every round's times and ratios, and their median and range, with the machine's load
average before and after.

    python bench/input_pipeline.py [--batches 128,512] [--rounds 5]

Writes `bench/results/input_pipeline.json`.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras
import speed
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

import tfdynhp

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CLOCKS = ("wall", "cpu")
FEEDS = ("arrays", "dynamic", "pydataset")


class EpochClock(keras.callbacks.Callback):
    """Wall and process-CPU seconds of each epoch."""

    def __init__(self):
        super().__init__()
        self.seconds = {clock: [] for clock in CLOCKS}

    def on_epoch_begin(self, epoch, logs=None):
        self._start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        self.seconds["wall"].append(time.perf_counter() - self._start[0])
        self.seconds["cpu"].append(time.process_time() - self._start[1])


def measure(x, y, batch, rounds):
    """Per-round epoch seconds of plain Keras on arrays, on `DynamicBatches` and on the same
    `DynamicBatches` through Keras' `PyDataset` feed."""
    models = {k: speed.compile_model(speed.base_model("mlp")) for k in FEEDS}
    data = tfdynhp.DynamicBatches(x, y, batch_size=batch, seed=0)
    rows = []
    for r in range(rounds):
        row = {}
        # Alternate the order, so a load change does not always hit the same one.
        for name in FEEDS if r % 2 == 0 else reversed(FEEDS):
            clock = EpochClock()
            if name == "arrays":
                models[name].fit(x, y, batch_size=batch, epochs=2, verbose=0, callbacks=[clock])
            else:
                feed = data if name == "dynamic" else PyDatasetAdapter(data, shuffle=False)
                models[name].fit(feed, epochs=2, verbose=0, callbacks=[clock])
            for c in CLOCKS:
                row[f"{name}_{c}_s"] = clock.seconds[c][1]
        for c in CLOCKS:
            row[f"ratio_{c}"] = row[f"dynamic_{c}_s"] / row[f"arrays_{c}_s"]
            row[f"pydataset_ratio_{c}"] = row[f"pydataset_{c}_s"] / row[f"arrays_{c}_s"]
        rows.append(row)
    result = {"batch_size": batch, "rounds": rows}
    for c in CLOCKS:
        result[c] = {f"{k}_median_s": statistics.median(row[f"{k}_{c}_s"] for row in rows)
                     for k in FEEDS}
        for prefix in ("", "pydataset_"):
            ratios = [row[f"{prefix}ratio_{c}"] for row in rows]
            result[c].update({f"{prefix}ratio_median": statistics.median(ratios),
                              f"{prefix}ratio_min": min(ratios),
                              f"{prefix}ratio_max": max(ratios)})
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="128,512")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--out", default=os.path.join(RESULTS, "input_pipeline.json"))
    args = parser.parse_args(argv)
    command = "python bench/input_pipeline.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    x, y, _, _ = speed.load(args.n_train, 1)
    load_before = os.getloadavg()
    start = time.perf_counter()
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        result = measure(x, y, batch, args.rounds)
        results.append(result)
        for c in CLOCKS:
            r = result[c]
            print(f"batch {batch}, {c}: arrays {r['arrays_median_s']:.3f} s, DynamicBatches "
                  f"{r['dynamic_median_s']:.3f} s per epoch ({args.n_train} examples): "
                  f"{r['ratio_median']:.2f}x (rounds {r['ratio_min']:.2f}-"
                  f"{r['ratio_max']:.2f}x); PyDataset feed {r['pydataset_median_s']:.3f} s: "
                  f"{r['pydataset_ratio_median']:.2f}x", flush=True)
    record = {
        "command": command.strip(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs",
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "n_train": args.n_train,
        "wall_s": round(time.perf_counter() - start, 1),
        "results": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
