"""What `tfdynhp.gate(model)` + `DynHPCallback(...)` with nothing else does to a user's model
(issue 29): the plain model against today's default and the tolerance rule, same data, seed,
optimizer, batch and epochs.

Configurations (`--configs`):

- `plain`: the model as given;
- `today`: `gate(model)` + `DynHPCallback()` (the `threshold` rule);
- `tolerance`: `gate(model)` + `DynHPCallback(tolerance=0.01)` (prune while validation
  accuracy stays within one point of the best seen, every cut checked first; the defaults of
  `tfdynhp.policies.tolerance.Tolerance`: the first cut waits until an epoch gains less than the
  tolerance, a refused cut is dropped);
- `tolerance_learnt`: `Tolerance(0.01, warmup="learnt")`: cuts start as soon as the run has
  improved on its first epoch by more than the tolerance;
- `tolerance_fade`: `Tolerance(0.01, fade=True)`: a refused cut is faded for an epoch and
  tried again;
- `tolerance_d01`: `tolerance` with `gate(model, drop_rate_init=0.01)` (less gate noise);
- (`tolerance_frozen`, in the results: every gate frozen before `fit`; ran before the rebase
  onto main, where `DynHPCallback` now unfreezes the gates at the start of a new run, so the
  configuration is gone from this list);
- `target50`: `gate(model)` + `DynHPCallback(target="50% macs")` (the target path, for
  comparison); `target50_tol`: the same with `tolerance=0.01` (every scheduled cut checked);
- `today_dec0.1`, `today_dec0.3`: the `threshold` rule with the decoupled penalty,
  `gate(model, penalty_mode="decoupled", l0_lambda=0.1 or 0.3)` (prototype of a penalty
  that is the same for a Dense unit and a conv channel).

Every run: `fit(x, y, validation_data=(x_val, y_val))`, validation split from the training
set (`bench/defaults_setups.py`); the gated models are stripped before they are measured.
Columns: parameters and MACs (`tfdynhp.complexity.model_costs`), validation accuracy after the
last epoch, test accuracy, training wall time.

    python bench/defaults.py --problems mlp_wine,mlp_breast_cancer --epochs 40
    python bench/defaults.py --problems cnn_fashion --epochs 8
    python bench/defaults.py --problems mobilenet --epochs 10

Results are merged into `bench/results/defaults/defaults.json` (one entry per problem and
configuration, each with the command that made it) and `defaults.md` is rewritten from it.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import keras
import numpy as np
import tensorflow as tf
from defaults_setups import PROBLEMS, problem
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp.costs import walk as complexity
from tfdynhp.policies.tolerance import Tolerance

CONFIGS = {
    "plain": None,
    "today": ({}, {}),
    "tolerance": ({}, {"tolerance": 0.01}),
    "tolerance_d01": ({"drop_rate_init": 0.01}, {"tolerance": 0.01}),
    "tolerance_learnt": ({}, {"tolerance": Tolerance(0.01, warmup="learnt")}),
    "tolerance_fade": ({}, {"tolerance": Tolerance(0.01, fade=True)}),
    "target50": ({}, {"target": "50% macs"}),
    "target50_tol": ({}, {"target": "50% macs", "tolerance": 0.01}),
    "today_dec0.1": ({"penalty_mode": "decoupled", "l0_lambda": 0.1}, {}),
    "today_dec0.3": ({"penalty_mode": "decoupled", "l0_lambda": 0.3}, {}),
}
OUT = os.path.join(HERE, "results", "defaults")


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y))


def run(task, config, epochs, seed):
    model = task.build(seed)
    callbacks, dynhp = [], None
    if CONFIGS[config] is not None:
        gate_options, callback_options = CONFIGS[config]
        model = tfdynhp.gate(model, seed=seed, **gate_options)
        dynhp = DynHPCallback(**callback_options)
        callbacks = [dynhp]
    model.compile(keras.optimizers.Adam(task.learning_rate), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    history = model.fit(task.x, task.y, epochs=epochs, batch_size=task.batch_size, verbose=0,
                        validation_data=(task.x_val, task.y_val), callbacks=callbacks)
    seconds = time.perf_counter() - start
    final = tfdynhp.strip(model) if tfdynhp.is_gated_model(model) else model
    costs = complexity.model_costs(final)
    row = {
        "problem": task.name, "config": config, "epochs": epochs,
        "params": int(costs.params), "macs": int(costs.macs),
        "val_accuracy": round(_accuracy(final, task.x_val, task.y_val), 4),
        "val_curve": [round(float(v), 4) for v in history.history["val_accuracy"]],
        "test_accuracy": round(_accuracy(final, task.x_test, task.y_test), 4),
        "seconds": round(seconds, 1),
    }
    if dynhp is not None:
        row["binding"] = dynhp.binding
        row["tolerance_states"] = [h.get("dynhp/tolerance/state") for h in dynhp.history]
        row["tolerance_best"] = [h.get("dynhp/tolerance/best") for h in dynhp.history]
        row["tolerance_tried"] = [
            [(round(t["step"], 3), round(t["metric"], 4), t["committed"], t["faded"])
             for t in h.get("dynhp/tolerance/tried") or []] for h in dynhp.history]
        row["macs_curve"] = [h["dynhp/macs"] for h in dynhp.history]
    return row


def _table(rows):
    by_problem = {}
    for row in rows:
        by_problem.setdefault(row["problem"], {})[row["config"]] = row
    configs = [c for c in CONFIGS if any(c in r for r in by_problem.values())]
    lines = [("| model | epochs | config | params | MACs | MACs vs plain | val acc | test acc | "
              "test vs plain (pts) | time s | binding |"),
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, found in by_problem.items():
        plain = found.get("plain")
        for config in configs:
            row = found.get(config)
            if row is None:
                continue
            ratio = (f"{plain['macs'] / row['macs']:.2f}x" if plain and row["macs"] else "")
            delta = (f"{100 * (row['test_accuracy'] - plain['test_accuracy']):+.1f}"
                     if plain else "")
            lines.append(
                f"| {name} | {row['epochs']} | {config} | {row['params']:,} | "
                f"{row['macs']:,} | {ratio} | {row['val_accuracy']:.4f} | "
                f"{row['test_accuracy']:.4f} | {delta} | {row['seconds']:.0f} | "
                f"{row.get('binding') or ''} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", required=True,
                        help=f"comma-separated, of {', '.join(PROBLEMS)}")
    parser.add_argument("--configs", default="plain,today,tolerance")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    command = "python bench/defaults.py " + " ".join(sys.argv[1:])
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE,
                            capture_output=True, text=True, check=False).stdout.strip()
    commit = commit or os.environ.get("BENCH_COMMIT", "")  # a copy of the tree, not a clone
    path = os.path.join(args.out, "defaults.json")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = json.load(f)["rows"]
    for name in args.problems.split(","):
        task = problem(name)
        for config in args.configs.split(","):
            row = run(task, config, args.epochs, args.seed)
            row.update(command=command, seed=args.seed, commit=commit)
            print(json.dumps({k: v for k, v in row.items() if k != "command"}), flush=True)
            rows = [r for r in rows if (r["problem"], r["config"]) != (name, config)] + [row]
            with open(path, "w") as f:
                json.dump({"rows": rows, "keras": keras.__version__,
                           "tensorflow": tf.__version__, "machine": platform.machine()},
                          f, indent=1)
            with open(os.path.join(args.out, "defaults.md"), "w") as f:
                f.write(_table(rows))
    print(_table(rows))


if __name__ == "__main__":
    main()
