"""The reference edge models of `tfdynhp.architectures`: size, MACs, int8 export, runtimes.

For each architecture: parameters (published and `count_params()`), parameters after folding
BatchNormalization, MACs and peak activation values (`tfdynhp.costs.walk`); then a short seeded
training run (`RECIPES`), the int8 `.tflite` (`tfdynhp.converters.to_int8_tflite`), its size,
the TFLite Micro arena it needs (`measure_arena_size`), and, in LiteRT and TFLite Micro, the
per-sample latency and the agreement of the int8 model with the float one (classifiers: the
predicted class; the autoencoder: the reconstruction error). `tests/test_architectures.py`
runs the same `measure()` on the same recipes.

Data, named in every row (`"data"`): by default each model's recipe, Fashion-MNIST (Debian's
IDX files) for the MLP and LeNet-5 and seeded synthetic data of the model's input shape for the
others: one fixed random pattern per class plus unit Gaussian noise (classifiers), a rank-8
signal plus noise (the autoencoder). Without Fashion-MNIST the MLP and LeNet-5 rows stop with
the fix (install it, or ask for `--data synthetic`, which gives every model synthetic data):
the source never changes behind the table's back. The runs are short; they check the export
path, not the models' accuracy on their real tasks.

    python bench/arch_table.py                      # every model at its default shape (~4 min)
    python bench/arch_table.py --arch ds-cnn,resnet8
    python bench/arch_table.py --data synthetic     # no Fashion-MNIST needed
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import keras
import numpy as np
from tfdynhp.callbacks import DynHPCallback
from tfdynhp.converters import tflite_model

import tfdynhp
from tfdynhp import architectures, converters, datasets
from tfdynhp.costs import walk as complexity

# Short training runs (Adam, learning rate `lr`, default 1e-3): enough optimizer steps (~500
# for the deep BatchNormalization models, whose moving statistics need that many at Keras'
# momentum 0.99) for the float model's inference predictions to be well above chance, so that
# the int8 agreement is not met by near-constant predictions. Chosen by a few runs per model.
RECIPES = {
    "mlp": {"data": "fashion-mnist", "samples": 6000, "epochs": 6, "batch_size": 32},
    # 4 epochs: after 3, LeNet-5 pruned to half agreed with its int8 file on 98.5-99 % of
    # held-out examples (near-tied classes); after 4 on all of them.
    "lenet5": {"data": "fashion-mnist", "samples": 6000, "epochs": 4, "batch_size": 32},
    "ds-cnn": {"samples": 1024, "epochs": 6, "batch_size": 8, "lr": 3e-3},
    "mobilenet-v1-0.25": {"samples": 1024, "epochs": 6, "batch_size": 8, "lr": 3e-3},
    "resnet8": {"samples": 1024, "epochs": 2, "batch_size": 16, "lr": 3e-3},
    "fc-autoencoder": {"samples": 1024, "epochs": 4, "batch_size": 8},
}
# int8 .tflite sizes of the reference trained models in mlcommons/tiny (`trained_models/`).
REFERENCE_TFLITE_BYTES = {
    "ds-cnn": 53_936,
    "mobilenet-v1-0.25": 333_288,
    "resnet8": 98_496,
    "fc-autoencoder": 276_976,
}
HELD_OUT = 200


def synthetic_classes(shape, num_classes, n, seed=0):
    """`n` examples of `shape`: class `k` is a fixed random pattern plus unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(num_classes, *shape)).astype("float32")
    y = rng.integers(0, num_classes, n).astype("int32")
    x = patterns[y] + rng.normal(size=(n, *shape)).astype("float32")
    return x, y


def synthetic_low_rank(input_dim, n, rank=8, noise=0.1, seed=0):
    """`n` examples of a rank-`rank` signal in `input_dim` dimensions plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(rank, input_dim)).astype("float32") / np.sqrt(rank)
    z = rng.normal(size=(n, rank)).astype("float32")
    return (z @ basis + noise * rng.normal(size=(n, input_dim))).astype("float32")


DATA_SOURCES = ("recipe", "synthetic")


def data_source(name, data="recipe"):
    """The data a model trains on: `"fashion-mnist"` or `"synthetic"`.

    Args:
        name: a canonical architecture name.
        data: `"recipe"` (the model's `RECIPES` entry: Fashion-MNIST for the MLP and LeNet-5,
            synthetic otherwise) or `"synthetic"` (synthetic data for every model).
    """
    if data not in DATA_SOURCES:
        raise ValueError(f"`data` must be one of {DATA_SOURCES}. Received: data={data!r}")
    return RECIPES[name].get("data", "synthetic") if data == "recipe" else "synthetic"


def training_data(name, model, recipe, seed=0, source="synthetic"):
    """`(x_train, y_train, x_held_out, y_held_out)` for `model` from `source` (`data_source`;
    `y` None: the autoencoder).

    Raises:
        FileNotFoundError: if `source` is `"fashion-mnist"` and it is not installed (no
            fallback: the caller asked for that data).
    """
    shape = tuple(model.inputs[0].shape[1:])
    n = recipe["samples"]
    if source == "fashion-mnist":
        try:
            (x, y), (x_test, y_test) = datasets.load("fashion-mnist", flatten=len(shape) == 1)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"The {name} row trains on Fashion-MNIST, which is not installed ({e}). "
                "Install it (apt-get install dataset-fashion-mnist) or run with --data "
                "synthetic (measure(..., data='synthetic'))."
            ) from e
        rng = np.random.default_rng(seed)
        train, test = rng.permutation(len(x))[:n], rng.permutation(len(x_test))[:HELD_OUT]
        x, x_test = x.reshape(-1, *shape), x_test.reshape(-1, *shape)
        return x[train], y[train], x_test[test], y_test[test]
    if name == "fc-autoencoder":
        x = synthetic_low_rank(shape[0], n + HELD_OUT, seed=seed)
        return x[:n], None, x[n:], None
    x, y = synthetic_classes(shape, int(model.outputs[0].shape[-1]), n + HELD_OUT, seed=seed)
    return x[:n], y[:n], x[n:], y[n:]


def _dequantized(tflite, x, runtime):
    raw, latencies = converters.run_tflite(tflite, x, runtime)
    info = tflite_model.read_model_info(tflite).outputs[0]
    return tflite_model.dequantize(raw, info), latencies


def measure(name, input_shape=None, eval_samples=64, seed=0, arena=True, target=None,
            data="recipe"):
    """Builds, briefly trains, converts and runs one architecture; returns what was measured.

    Args:
        name: an architecture name of `tfdynhp.architectures`.
        input_shape: passed to `architectures.build`; `None` for the default (784 for "mlp").
        eval_samples: held-out examples run through both int8 runtimes. Defaults to `64`.
        seed: seed of the weights, the data and Keras' random state. Defaults to `0`.
        arena: whether to measure the TFLM arena (a few child processes). Defaults to `True`.
        target: `None` trains the model as it is; a target (e.g. `"50% params"`) gates it
            (`tfdynhp.gate`), trains it in one fit with `DynHPCallback(target=...)` (met by
            the last epoch) and measures the stripped model (`tfdynhp.strip`).
        data: `"recipe"` (Fashion-MNIST for the MLP and LeNet-5, which must be installed;
            synthetic for the others) or `"synthetic"` (every model). Defaults to `"recipe"`.
            The row's `"data"` names the source used.

    Returns:
        A JSON-serialisable dict (plus `"tflite"`: the model's bytes).
    """
    key = architectures.canonical_name(name)
    recipe = RECIPES[key]
    if key == "mlp" and input_shape is None:
        input_shape = (784,)
    keras.utils.set_random_seed(seed)
    model = architectures.build(key, input_shape=input_shape, seed=seed)
    dense_params = model.count_params()
    source = data_source(key, data)
    x, y, x_eval, y_eval = training_data(key, model, recipe, seed, source)
    callbacks = []
    if target is not None:
        model = tfdynhp.gate(model, seed=seed)
        callbacks = [DynHPCallback(target=target, target_epoch=recipe["epochs"])]
    autoencoder = y is None
    start = time.perf_counter()
    loss = "mse" if autoencoder else "sparse_categorical_crossentropy"
    model.compile(keras.optimizers.Adam(recipe.get("lr", 1e-3)), loss, jit_compile=False)
    model.fit(
        x,
        x if autoencoder else y,
        epochs=recipe["epochs"],
        batch_size=recipe["batch_size"],
        verbose=0,
        callbacks=callbacks,
    )
    fit_s = time.perf_counter() - start
    if target is not None:
        model = tfdynhp.strip(model)
    costs = complexity.model_costs(model)
    start = time.perf_counter()
    tflite = converters.to_int8_tflite(model, x[:200])
    convert_s = time.perf_counter() - start
    x_eval = x_eval[:eval_samples]
    float_out = model.predict(x_eval, verbose=0, batch_size=64)
    result = {
        "arch": key,
        "input_shape": list(model.inputs[0].shape[1:]),
        "data": source,
        "published_params": architectures.PUBLISHED_PARAMS[key],
        "params": model.count_params(),
        "dense_params": dense_params,
        "target": target,
        "inference_params": costs.inference_params,
        "macs": costs.macs,
        "peak_activation_values": costs.peak_activation_values,
        "tflite_bytes": len(tflite),
        "reference_tflite_bytes": REFERENCE_TFLITE_BYTES.get(key),
        "ops": sorted(set(tflite_model.read_model_info(tflite).ops)),
        "fit_s": round(fit_s, 2),
        "convert_s": round(convert_s, 2),
        "eval_samples": len(x_eval),
        "tflite": tflite,
    }
    if autoencoder:
        result["float_mse"] = float(np.mean((float_out - x_eval) ** 2))
        result["signal_variance"] = float(np.var(x_eval))
    else:
        float_class = np.argmax(float_out, axis=-1)
        result["float_accuracy"] = float(np.mean(float_class == y_eval[: len(x_eval)]))
        result["chance"] = 1.0 / float_out.shape[-1]
        result["float_distinct_classes"] = len(np.unique(float_class))
    for runtime in converters.RUNTIMES:
        start = time.perf_counter()
        out, latencies = _dequantized(tflite, x_eval, runtime)
        result[f"{runtime}_run_s"] = round(time.perf_counter() - start, 2)
        result[f"{runtime}_latency_ms"] = float(np.mean(latencies))
        if autoencoder:
            result[f"{runtime}_mse"] = float(np.mean((out - x_eval) ** 2))
        else:
            result[f"{runtime}_agreement"] = float(np.mean(np.argmax(out, -1) == float_class))
    if arena:
        start = time.perf_counter()
        result["tflm_arena_bytes"] = converters.measure_arena_size(tflite)
        result["arena_s"] = round(time.perf_counter() - start, 2)
    return result


def table_markdown(rows, command):
    header = (
        "| arch | input | params (published) | params (count_params) | after BN folding | MACs | "
        "peak act. values | int8 .tflite B (reference) | TFLM arena B | data | float acc / MSE | "
        "int8 agree LiteRT / TFLM (or MSE) | LiteRT ms | TFLM ms | fit+convert s |"
    )
    lines = [f"Command: `{command}`", "", header, "|" + " --- |" * 15]
    for r in rows:
        if "float_mse" in r:
            quality = f"MSE {r['float_mse']:.4f}"
            agree = f"MSE {r['litert_mse']:.4f} / {r['tflm_mse']:.4f}"
        else:
            quality = f"{r['float_accuracy']:.3f} (chance {r['chance']:.2f})"
            agree = f"{r['litert_agreement']:.3f} / {r['tflm_agreement']:.3f}"
        reference = r["reference_tflite_bytes"]
        lines.append(
            f"| {r['arch']} | {'x'.join(map(str, r['input_shape']))} | "
            f"{r['published_params']:,} | {r['params']:,} | {r['inference_params']:,} | "
            f"{r['macs']:,} | {r['peak_activation_values']:,} | {r['tflite_bytes']:,}"
            f"{f' ({reference:,})' if reference else ''} | {r.get('tflm_arena_bytes', 0):,} | "
            f"{r['data']} | {quality} | {agree} | {r['litert_latency_ms']:.3f} | "
            f"{r['tflm_latency_ms']:.2f} | {r['fit_s'] + r['convert_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=",".join(architectures.ARCHITECTURES))
    parser.add_argument("--data", choices=DATA_SOURCES, default="recipe",
                        help="recipe: Fashion-MNIST for the MLP and LeNet-5 (must be "
                        "installed), synthetic for the others; synthetic: every model "
                        "(default: %(default)s)")
    parser.add_argument("--eval-samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    start = time.perf_counter()
    for name in args.arch.split(","):
        row = measure(name, eval_samples=args.eval_samples, seed=args.seed, data=args.data)
        row.pop("tflite")
        rows.append(row)
        print(json.dumps(row), flush=True)
    command = "python bench/arch_table.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    summary = {
        "command": command,
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "rows": rows,
    }
    with open(os.path.join(args.out, "architectures.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(args.out, "architectures.md"), "w") as f:
        f.write(table_markdown(rows, command))
        f.write(f"\nWall time {summary['wall_s']} s on {summary['machine']}.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
