"""Epochs per second of one DynHP fit with 1 and 2 workers (MultiWorkerMirroredStrategy,
processes on 127.0.0.1), interleaved 1, 2, 1, 2, ... so that other load on the machine falls
on both alike. Writes bench/results/multiworker.json.

    PYTHONPATH=. python bench/multiworker.py [--repeats 2] [--epochs 5]

The workload is `tests/scripts/multiworker_fit.py dynhp`: a gated 64-32-10 MLP on 768 digits,
DynamicBatches from a global batch of 32 growing under a 400KB per-replica budget.
"""

import argparse
import json
import os
import platform
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import multiworker


def run(workers, epochs):
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "out_{rank}.npz")
        results = multiworker.run_workers("multiworker_fit.py", ["dynhp", out], workers=workers,
                                          timeout=600, env={"MW_EPOCHS": str(epochs)})
        for rc, _, err in results:
            if rc != 0:
                raise RuntimeError(f"worker failed (rc={rc}): {err[-2000:]}")
        reports = [json.loads(str(np.load(out.format(rank=r))["report"]))
                   for r in range(workers)]
    seconds = max(report["fit_seconds"] for report in reports)
    return {"workers": workers, "replicas": reports[0]["replicas"], "fit_seconds": seconds,
            "epochs_per_second": epochs / seconds, "batch_sizes": reports[0]["batch_sizes"],
            "steps": reports[0]["steps"], "final_units": reports[0]["units"],
            "accuracy": reports[0]["accuracy"][-1]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    rows = [run(workers, args.epochs) for _ in range(args.repeats) for workers in (1, 2)]
    summary = {
        workers: float(np.median([r["epochs_per_second"] for r in rows
                                  if r["workers"] == workers]))
        for workers in (1, 2)
    }
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other "
                   "users' jobs; both workers on this one machine (127.0.0.1), so 2 workers "
                   "split the same 2 cores and talk over loopback gRPC",
        "epochs": args.epochs,
        "median_epochs_per_second": summary,
        "speedup_2_vs_1": summary[2] / summary[1],
        "runs": rows,
    }
    path = os.path.join(os.path.dirname(__file__), "results", "multiworker.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: result[k] for k in ("median_epochs_per_second", "speedup_2_vs_1")}))


if __name__ == "__main__":
    main()
