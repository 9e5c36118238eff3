"""What `tfdynhp.gate(model)` + `DynHPCallback(...)` with nothing else does to a user's model
(issue 29): the plain model against today's default and the tolerance rule, same data, seed,
optimizer, batch and epochs.

Configurations (`--configs`):

- `plain`: the model as given;
- `default`: `gate(model)` + `DynHPCallback()` as it is now: with validation data and no rule
  named, the tolerance rule (`tolerance="auto"`, i.e. `Tolerance()`: within 0.01 of the
  validation accuracy's reference, provisional cuts judged after an epoch, gates frozen);
- `threshold`: `gate(model)` + `DynHPCallback(tolerance=None)`: the `threshold` rule, which
  was `DynHPCallback()` before issue 29 (the `today` rows of `results/defaults/phase1.md`);
  `threshold_d01`: the same with `gate(model, drop_rate_init=0.01)`;
- `tol_*`: the tolerance rule with one option of `Tolerance` changed (`tol_train`: gates
  trained, not frozen; `tol_nowarmup`; `tol_patience0`; `tol_window1`; `tol_step02`: first
  cut 0.2, at most 0.5; `tol_nomaxdrop`: a cut's immediate cost not checked, only its cost
  after an epoch of training around it; `tol_maxdrop10`: checked against 10 tolerances, not 5;
  `tol_norecal`: BatchNormalization statistics not re-estimated before measurements);
- `target50`: `DynHPCallback(target="50% macs")` (the target path, for comparison);
  `target50_d01` with `drop_rate_init=0.01`; `target50_tol`: with `tolerance=0.01` (every
  scheduled cut checked).

Every run: `fit(x, y, validation_data=(x_val, y_val))`, validation split from the training
set (`bench/defaults_setups.py`); the gated models are stripped before they are measured.
Columns: parameters and MACs (`tfdynhp.complexity.model_costs`), validation accuracy after the
last epoch, test accuracy, training wall time.

    python bench/defaults.py --problems mlp_wine,mlp_breast_cancer --configs plain,default --epochs 40
    python bench/defaults.py --problems cnn_fashion --configs plain,default --epochs 8
    python bench/defaults.py --problems mobilenet --configs plain,default --epochs 10

Results are merged into `bench/results/defaults/defaults.json` (one entry per problem,
epochs, configuration and seed, each with the command that made it; several runs of the
script may write to it at once) and `defaults.md` is rewritten from it.
"""

import argparse
import copy
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
from tfdynhp.model.batch_norm import batch_norm_layers, recalibrate_batch_norm, sample_inputs
from tfdynhp.policies.tolerance import Tolerance

CONFIGS = {
    "plain": None,
    # DynHPCallback() as it is: with validation data, the tolerance rule (tolerance="auto").
    "default": ({}, {}),
    # What DynHPCallback() did before issue 29: the threshold rule.
    "threshold": ({}, {"tolerance": None}),
    "threshold_d01": ({"drop_rate_init": 0.01}, {"tolerance": None}),
    # Variants of the tolerance rule, one option changed each.
    "tol_train": ({}, {"tolerance": Tolerance(gates="train")}),
    "tol_nowarmup": ({}, {"tolerance": Tolerance(warmup=None)}),
    "tol_patience0": ({}, {"tolerance": Tolerance(patience=0)}),
    "tol_window1": ({}, {"tolerance": Tolerance(window=1)}),
    "tol_step02": ({}, {"tolerance": Tolerance(step=0.2, max_step=0.5)}),
    "tol_nomaxdrop": ({}, {"tolerance": Tolerance(max_drop=None)}),
    "tol_maxdrop10": ({}, {"tolerance": Tolerance(max_drop=10.0)}),
    "tol_maxdrop5": ({}, {"tolerance": Tolerance(max_drop=5.0)}),  # the default until §9
    "tol_norecal": ({}, {"tolerance": Tolerance(recalibrate=False)}),
    # The target path, for comparison, and with less gate noise.
    "target50": ({}, {"target": "50% macs"}),
    "target50_d01": ({"drop_rate_init": 0.01}, {"target": "50% macs"}),
    "target50_tol": ({}, {"target": "50% macs", "tolerance": 0.01}),
}
OUT = os.path.join(HERE, "results", "defaults")


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y))


def run(task, config, epochs, seed):
    model = task.build(seed)
    callbacks, dynhp = [], None
    if CONFIGS[config] is not None:
        gate_options, callback_options = copy.deepcopy(CONFIGS[config])
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
        "problem": task.name, "config": config, "epochs": epochs, "seed": seed,
        "params": int(costs.params), "macs": int(costs.macs),
        "val_accuracy": round(_accuracy(final, task.x_val, task.y_val), 4),
        "val_curve": [round(float(v), 4) for v in history.history["val_accuracy"]],
        "test_accuracy": round(_accuracy(final, task.x_test, task.y_test), 4),
        "seconds": round(seconds, 1),
    }
    if batch_norm_layers(final):
        # Both models as a user could leave them: BatchNormalization statistics re-estimated
        # on training examples (the tolerance rule does this at every epoch end; a plain
        # model's moving averages lag its weights, which would flatter the pruned one).
        recalibrate_batch_norm(final, sample_inputs(task.x, 2048))
        row["test_accuracy_recal"] = round(_accuracy(final, task.x_test, task.y_test), 4)
    if dynhp is not None:
        row["binding"] = dynhp.binding
        row["macs_curve"] = [h["dynhp/macs"] for h in dynhp.history]
        if dynhp.tolerance is not None:
            row["tolerance"] = dynhp.tolerance.get_config()
            row["tolerance_states"] = [h.get("dynhp/tolerance/state") for h in dynhp.history]
            row["tolerance_reference"] = [h.get("dynhp/tolerance/best") for h in dynhp.history]
            row["tolerance_tried"] = [
                [(round(t["step"], 3), round(t["metric"], 4), t["committed"])
                 for t in h.get("dynhp/tolerance/tried") or []] for h in dynhp.history]
            row["tolerance_pending"] = [h.get("dynhp/tolerance/pending")
                                        for h in dynhp.history]
    return row


def _key(row):
    return row["problem"], row["epochs"], row["config"], row.get("seed", 0)


def _table(rows):
    """One line per model, epochs and configuration: the mean over its seeds, and the test
    accuracy difference to the plain model of the same seed (each seed's in brackets)."""
    plain = {(r["problem"], r["epochs"], r.get("seed", 0)): r for r in rows
             if r["config"] == "plain"}
    groups = {}
    for row in rows:
        groups.setdefault((row["problem"], row["epochs"], row["config"]), []).append(row)
    order = {name: i for i, name in enumerate(CONFIGS)}
    lines = [("| model | epochs | config | seeds | params | MACs | MACs vs plain | val acc | "
              "test acc | test vs plain (pts), per seed | both BN-recalibrated (pts) | time s |"),
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
    for (name, epochs, config), found in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], order.get(kv[0][2], 99))):
        found = sorted(found, key=lambda r: r.get("seed", 0))
        seeds = [r.get("seed", 0) for r in found]
        pairs = [(r, plain.get((name, epochs, r.get("seed", 0)))) for r in found]
        ratios = [p["macs"] / r["macs"] for r, p in pairs if p and r["macs"]]
        deltas = [100 * (r["test_accuracy"] - p["test_accuracy"]) for r, p in pairs if p]
        recal = [100 * (r["test_accuracy_recal"] - p["test_accuracy_recal"]) for r, p in pairs
                 if p and "test_accuracy_recal" in r and "test_accuracy_recal" in p]
        mean = lambda values: sum(values) / len(values)
        ratio = f"{mean(ratios):.2f}x" if ratios else ""
        if len(ratios) > 1:
            ratio += f" ({min(ratios):.2f}-{max(ratios):.2f})"
        delta = ""
        if deltas:
            delta = f"{mean(deltas):+.1f}"
            if len(deltas) > 1:
                delta += " (" + ", ".join(f"{d:+.1f}" for d in deltas) + ")"
        delta_recal = ""
        if recal:
            delta_recal = f"{mean(recal):+.1f}"
            if len(recal) > 1:
                delta_recal += " (" + ", ".join(f"{d:+.1f}" for d in recal) + ")"
        lines.append(
            f"| {name} | {epochs} | {config} | {','.join(map(str, seeds))} | "
            f"{mean([r['params'] for r in found]):,.0f} | {mean([r['macs'] for r in found]):,.0f} | "
            f"{ratio} | {mean([r['val_accuracy'] for r in found]):.4f} | "
            f"{mean([r['test_accuracy'] for r in found]):.4f} | {delta} | {delta_recal} | "
            f"{mean([r['seconds'] for r in found]):.0f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", required=True,
                        help=f"comma-separated, of {', '.join(PROBLEMS)}")
    parser.add_argument("--configs", default="plain,default")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    command = "python bench/defaults.py " + " ".join(sys.argv[1:])
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE,
                            capture_output=True, text=True, check=False).stdout.strip()
    commit = commit or os.environ.get("BENCH_COMMIT", "")  # a copy of the tree, not a clone
    path = os.path.join(args.out, "defaults.json")
    os.makedirs(args.out, exist_ok=True)
    for name in args.problems.split(","):
        task = problem(name)
        for seed in [int(s) for s in args.seeds.split(",")]:
            for config in args.configs.split(","):
                row = run(task, config, args.epochs, seed)
                row.update(command=command, commit=commit)
                print(json.dumps({k: v for k, v in row.items() if k != "command"}), flush=True)
                rows = []  # read again: other runs of this script may have written meanwhile
                if os.path.exists(path):
                    with open(path) as f:
                        rows = json.load(f)["rows"]
                rows = [r for r in rows if _key(r) != _key(row)] + [row]
                with open(path + ".tmp", "w") as f:
                    json.dump({"rows": rows, "keras": keras.__version__,
                               "tensorflow": tf.__version__, "machine": platform.machine()},
                              f, indent=1)
                os.replace(path + ".tmp", path)
                with open(os.path.join(args.out, "defaults.md"), "w") as f:
                    f.write(_table(rows))
    with open(path) as f:
        print(_table(json.load(f)["rows"]))


if __name__ == "__main__":
    main()
