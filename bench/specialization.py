"""Task specialization (seed 001, Balemans et al.) of a trained Fashion-MNIST classifier.

A LeNet-300-100 MLP is trained once on a seeded subset of Fashion-MNIST. For each class set
(2, 3 and 5 classes) and each criterion, `tfdynhp.specialize` cuts the head to those classes,
removes a share of every hidden group's units (sweep `FRACTIONS`, one round) scored on 512
examples of those classes, and fine-tunes one epoch on them. The baseline is the unpruned
model with the same sliced head (no fine-tuning). Reported per class set and criterion: the
smallest model whose test accuracy on those classes is within 1 point of the baseline's, its
parameters, int8 `.tflite` size and LiteRT batch-1 latency.

    python bench/specialization.py                   # ~5 min on 2 shared cores
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
from tfdynhp.converters import quantize, runtimes

import tfdynhp
from tfdynhp import architectures, datasets
from tfdynhp.methods.specialization import remap_labels, slice_head

CLASS_SETS = {2: [7, 9], 3: [0, 2, 6], 5: [1, 3, 5, 7, 8]}  # sneaker/boot; shirt-like; mixed
CRITERIA = ["magnitude", "taylor", "lrp", "activation_density", "random"]
FRACTIONS = [0.5, 0.8, 0.9, 0.95, 0.98]


def accuracy(model, x, y):
    return float((model.predict(x, batch_size=1024, verbose=0).argmax(1) == y).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "specialization.json"))
    args = parser.parse_args()

    (x, y), (x_test, y_test) = datasets.load_fashion_mnist()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))[: args.train]
    x, y = x[order], y[order]
    keras.utils.set_random_seed(0)
    model = architectures.mlp(784, (300, 100), 10, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x, y, epochs=args.epochs, batch_size=64, verbose=0)
    base = {"params": model.count_params(), "test_accuracy": accuracy(model, x_test, y_test),
            "train_seconds": time.perf_counter() - start}
    print("base", base, flush=True)

    rows = []
    for k, classes in CLASS_SETS.items():
        selected, labels = remap_labels(y_test, classes)
        xt = x_test[selected]
        baseline = accuracy(slice_head(model, classes), xt, labels)
        for name in CRITERIA:
            sweep = []
            for fraction in FRACTIONS:
                t0 = time.perf_counter()
                small = tfdynhp.specialize(model, classes, data=(x, y), criterion=name,
                                           fraction=fraction, epochs=1, batch_size=64)
                seconds = time.perf_counter() - t0
                sweep.append({"fraction": fraction, "params": small.count_params(),
                              "widths": [la.units for la in small.layers],
                              "accuracy": accuracy(small, xt, labels), "seconds": seconds,
                              "model": small})
                print(k, name, fraction, sweep[-1]["params"], round(sweep[-1]["accuracy"], 4),
                      flush=True)
            ok = [s for s in sweep if s["accuracy"] >= baseline - 0.01]
            best = min(ok, key=lambda s: s["params"]) if ok else None
            row = {"classes": classes, "criterion": name, "baseline_accuracy": baseline,
                   "sweep": [{k2: v for k2, v in s.items() if k2 != "model"} for s in sweep]}
            if best is not None:
                sel_train, _ = remap_labels(y, classes)
                tflite = quantize.to_int8_tflite(best["model"], x[sel_train][:300])
                latency = runtimes.measure_latency(tflite, xt[:64])
                int8 = runtimes.evaluate(tflite, xt, labels, time_latency=False)
                row.update(smallest_fraction=best["fraction"], smallest_params=best["params"],
                           smallest_widths=best["widths"], smallest_accuracy=best["accuracy"],
                           int8_bytes=len(tflite), int8_accuracy=int8["accuracy"],
                           litert_batch1_ms=latency["latency_batch1_ms"])
            rows.append(row)
            print(json.dumps({k2: v for k2, v in row.items() if k2 != "sweep"}), flush=True)

    dense_tflite = quantize.to_int8_tflite(model, x[:300])
    dense_latency = runtimes.measure_latency(dense_tflite, x_test[:64])
    result = {
        "command": "python bench/specialization.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs shared with other jobs; "
                   "latencies are medians of tight loops but the machine was loaded",
        "train_examples": args.train, "epochs": args.epochs, "base": base,
        "base_int8_bytes": len(dense_tflite),
        "base_litert_batch1_ms": dense_latency["latency_batch1_ms"],
        "fractions": FRACTIONS, "rows": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
