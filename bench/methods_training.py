"""Pruning during or before training on one small CNN: dense vs DynHP vs activation density
(seed 004) vs complexity-driven PA / FA / MA (seed 003).

LeNet-5 (`tfdynhp.architectures.lenet5`) on a seeded subset of Fashion-MNIST, every method
from the same initialization, the same epochs, batch and optimizer, one after the other in
one process:

- dense: plain training;
- dynhp: `tfdynhp.gate` + `DynHPCallback()` (threshold 0.5);
- activation density: `ActivationDensityCallback(x[:512])`, resizing until 2/3 of the epochs;
- pa / fa / ma: `complexity_prune(model, mode, amount)` at initialization, then plain
  training.

Reported: parameters and MACs of the final (stripped) model, test error, training wall time.

    python bench/methods_training.py                # ~6 min on 2 shared cores
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import keras
import numpy as np
from tfdynhp.callbacks import ActivationDensityCallback, DynHPCallback

import tfdynhp
from tfdynhp import architectures, datasets
from tfdynhp.costs import walk as complexity

METHODS = ["dense", "dynhp", "activation_density", "pa", "fa", "ma"]


def build(method, x, amount):
    keras.utils.set_random_seed(0)
    model = architectures.lenet5((28, 28, 1), 10, seed=0)
    callbacks = []
    if method == "dynhp":
        model = tfdynhp.gate(model, seed=0)
        callbacks.append(DynHPCallback())
    elif method == "activation_density":
        callbacks.append(ActivationDensityCallback(x[:512]))
    elif method in ("pa", "fa", "ma"):
        tfdynhp.complexity_prune(model, method, amount=amount)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model, callbacks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--amount", type=float, default=0.7)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "methods_training.json"))
    args = parser.parse_args()

    (x, y), (x_test, y_test) = datasets.load_fashion_mnist(flatten=False)
    x, x_test = x[..., None], x_test[..., None]
    order = np.random.default_rng(0).permutation(len(x))[: args.train]
    x, y = x[order], y[order]
    rows = []
    for method in args.methods.split(","):
        model, callbacks = build(method, x, args.amount)
        start = time.perf_counter()
        model.fit(x, y, epochs=args.epochs, batch_size=64, verbose=0, callbacks=callbacks)
        seconds = time.perf_counter() - start
        final = tfdynhp.strip(model) if tfdynhp.is_gated_model(model) else model
        final.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        costs = complexity.model_costs(final)
        error = 1.0 - final.evaluate(x_test, y_test, batch_size=1024, verbose=0)[1]
        widths = {la.name: getattr(la, "filters", None) or la.units for la in final.layers
                  if hasattr(la, "filters") or hasattr(la, "units")}
        row = {"method": method, "params": int(costs.params), "macs": int(costs.macs),
               "peak_activation_values": int(costs.peak_activation_values),
               "test_error": float(error), "train_seconds": seconds, "widths": widths}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "command": "python bench/methods_training.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs shared with other jobs "
                   "(wall times are indicative; methods ran one after another)",
        "train_examples": args.train, "epochs": args.epochs, "amount": args.amount,
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
