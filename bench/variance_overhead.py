"""Cost of DynHP's gradient-variance estimate in one training step.

Times three train steps of the same widths and batch, interleaved so that machine noise hits
them alike:

- `plain`: a stock Keras `Dense` MLP;
- `gated`: the `tfdynhp.gate()` model (Hard Concrete gates, activation counters, L0 penalty);
- `gated+variance`: the gated model after `model.enable_gradient_variance()` (what DynHP
  trains with: it also computes `||S||_1` of the per-example gradients).

Prints and writes to `bench/results/variance_overhead.json` the ratios
`gated+variance / plain` (what a DynHP step costs over a stock Keras step; target <= 1.3x),
`gated / plain` (the cost of the gates alone) and `gated+variance / gated` (the variance's own
cost).

    python bench/variance_overhead.py [--widths 784,300,100,10] [--batches 128,512]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import tfdynhp

TARGET = 1.3
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _mlp(widths, seed=0):
    layers = [keras.Input((widths[0],))]
    for i, width in enumerate(widths[1:-1]):
        layers.append(keras.layers.Dense(width, "relu", name=f"dense_{i}"))
    layers.append(keras.layers.Dense(widths[-1], "softmax", name="output"))
    keras.utils.set_random_seed(seed)
    return keras.Sequential(layers)


def _compiled(model):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model


def _models(widths, n_train):
    plain = _compiled(_mlp(widths))
    gated = _compiled(tfdynhp.gate(_mlp(widths), seed=0, l0_lambda=1.0, dataset_size=n_train))
    variance = tfdynhp.gate(_mlp(widths), seed=0, l0_lambda=1.0, dataset_size=n_train)
    _compiled(variance).enable_gradient_variance()
    return {"plain": plain, "gated": gated, "gated+variance": variance}


def _time_steps(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def measure(widths, batch, repeats, steps, seed=0):
    """Median seconds per train step of each model, over `repeats` interleaved rounds."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, widths[0]), dtype=np.float32)
    y = rng.integers(0, widths[-1], batch).astype(np.int32)
    models = _models(widths, n_train=60000)
    for model in models.values():  # build and trace the train functions
        for _ in range(3):
            model.train_on_batch(x, y)
    times = {name: [] for name in models}
    for r in range(repeats):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            times[name].append(_time_steps(models[name], x, y, steps))
    median = {name: statistics.median(t) for name, t in times.items()}
    return {
        "batch_size": batch,
        "widths": list(widths),
        "repeats": repeats,
        "steps_per_repeat": steps,
        "median_step_ms": {name: 1e3 * t for name, t in median.items()},
        "ratio_variance_vs_gated": median["gated+variance"] / median["gated"],
        "ratio_variance_vs_plain": median["gated+variance"] / median["plain"],
        "ratio_gated_vs_plain": median["gated"] / median["plain"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="784,300,100,10")
    parser.add_argument("--batches", default="128,512")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(RESULTS, "variance_overhead.json"))
    args = parser.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    command = "python bench/variance_overhead.py " + " ".join(argv or sys.argv[1:])
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        result = measure(widths, batch, args.repeats, args.steps)
        results.append(result)
        ms = result["median_step_ms"]
        print(
            f"batch {batch}: plain {ms['plain']:.3f} ms, gated {ms['gated']:.3f} ms, "
            f"gated+variance {ms['gated+variance']:.3f} ms per step; "
            f"gated+variance/plain {result['ratio_variance_vs_plain']:.2f}x (target <= "
            f"{TARGET}x: {'met' if result['ratio_variance_vs_plain'] <= TARGET else 'NOT met'}), "
            f"gated/plain {result['ratio_gated_vs_plain']:.2f}x, "
            f"gated+variance/gated {result['ratio_variance_vs_gated']:.2f}x",
            flush=True,
        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {
                "command": command.strip(),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "keras": keras.__version__},
                "target_ratio_variance_vs_plain": TARGET,
                "target_met": all(r["ratio_variance_vs_plain"] <= TARGET for r in results),
                "results": results,
            },
            f,
            indent=2,
        )
        f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
