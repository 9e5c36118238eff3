"""Models as Keras builds them: every `keras.applications` family, gated, pruned to a target in
one short fit, stripped, exported to int8 and reloaded.

For each family (one model per family, `weights=None`, 10 classes, the smallest input it
takes: 32x32x3, 71 for Xception, 75 for the Inceptions):

1. `tfdynhp.gate(model)`: groups, gated groups, prunable units, and why the others are pinned;
2. one `fit` of `--epochs` epochs on `--train` Fashion-MNIST images (padded or resized to the
   input, three equal channels; [0, 255] for the families that rescale their input themselves,
   [-1, 1] for the others) with `DynHPCallback(target=--target)`, Adam 1e-3, batch 32;
3. `tfdynhp.strip()`: the largest difference from the gated model's predictions on the test
   images, and the parameters against the cost model's count;
4. `to_int8_tflite`, LiteRT on the test images: the int8 model's argmax
   agreement with the float model, its accuracy and size;
5. the stripped model saved as `.keras`, loaded back, and its predictions compared.

A family is "pruned" when the target is met, the strip exact (<= 1e-4) and the export and
reload work; otherwise the step that failed and its message are recorded. The runs are short:
they test the mechanics on real graphs, not the accuracy the models reach.

    nice -n 10 python bench/keras_applications.py                       # every family (~2 h)
    nice -n 10 python bench/keras_applications.py --families MobileNetV3Small,MobileNet

Writes `bench/results/keras_applications.json` and `.md` (rows merged with earlier runs, so
families can be run one at a time); the README's table comes from the `.md`.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import keras
import numpy as np
import tensorflow as tf
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp import converters
from tfdynhp.datasets import loaders
from tfdynhp.graph import analyze

# name: (input size, whether the model rescales its input itself)
FAMILIES = {
    "MobileNet": (32, False),
    "MobileNetV2": (32, False),
    "MobileNetV3Small": (32, True),
    "MobileNetV3Large": (32, True),
    "EfficientNetB0": (32, True),
    "EfficientNetV2B0": (32, True),
    "ResNet50": (32, False),
    "ResNet50V2": (32, False),
    "DenseNet121": (32, False),
    "NASNetMobile": (32, False),
    "ConvNeXtTiny": (32, True),
    "VGG16": (32, False),
    "Xception": (71, False),
    "InceptionV3": (75, False),
    "InceptionResNetV2": (75, False),
}
STRIP_TOLERANCE = 1e-4


def images(size, rescales, train, test):
    """Fashion-MNIST at `size` x `size` x 3: the first `train` training and `test` test
    images."""
    (x_train, y_train), (x_test, y_test) = loaders.load_fashion_mnist(flatten=False,
                                                                      normalize=False)

    def shape(x):
        x = np.asarray(x, "float32").reshape(-1, 28, 28, 1)
        if size == 32:
            x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
        else:
            x = tf.image.resize(x, (size, size)).numpy()
        x = np.repeat(x, 3, axis=-1)
        return x if rescales else x / 127.5 - 1.0

    return (shape(x_train[:train]), np.asarray(y_train[:train], "int32"),
            shape(x_test[:test]), np.asarray(y_test[:test], "int32"))


def pinned_summary(unit_graph):
    reasons = {}
    for group in unit_graph.groups:
        if group.pinned:
            entry = reasons.setdefault(group.pinned, [0, 0])
            entry[0] += 1
            entry[1] += group.units
    return [{"reason": r, "groups": g, "units": u}
            for r, (g, u) in sorted(reasons.items(), key=lambda item: -item[1][1])]


def run_family(name, args):
    size, rescales = FAMILIES[name]
    row = {"family": name, "input": f"{size}x{size}x3", "status": "failed", "step": "build"}
    times = row["seconds"] = {}
    x, y, x_test, y_test = images(size, rescales, args.train, args.test)
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    try:
        base = getattr(keras.applications, name)(input_shape=(size, size, 3), weights=None,
                                                 classes=10)
        times["build"] = time.perf_counter() - start
        row["params"] = base.count_params()
        row["layers"] = len(base.layers)
        row["step"] = "gate"
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gated = tfdynhp.gate(base, seed=0)
        times["gate"] = time.perf_counter() - start
        row["gate_warnings"] = [str(w.message)[:300] for w in caught
                                if "gate()" in str(w.message)]
        unit_graph = analyze(gated)
        gated_groups = [g for g in unit_graph.groups if g.gate is not None]
        row["groups"] = len(unit_graph.groups)
        row["gated_groups"] = len(gated_groups)
        row["gated_units"] = sum(g.units for g in gated_groups)
        row["all_units"] = sum(g.units for g in unit_graph.groups)
        row["pinned"] = pinned_summary(unit_graph)
        row["step"] = "fit"
        gated.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        callback = DynHPCallback(target=args.target)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gated.fit(x, y, batch_size=32, epochs=args.epochs, callbacks=[callback],
                      verbose=0)
        times["fit"] = time.perf_counter() - start
        row["fit_warnings"] = [str(w.message)[:300] for w in caught
                               if "DynHPCallback" in str(w.message)]
        last = callback.history[-1]
        start_params = tfdynhp.model_costs(base).params
        row["params_after"] = int(last["dynhp/params"])
        row["params_fraction"] = row["params_after"] / start_params
        met = [h["dynhp/target_met"] for h in callback.history if "dynhp/target_met" in h]
        row["target_met"] = bool(met and met[0])
        row["train_accuracy"] = float(last["accuracy"])
        row["step"] = "strip"
        start = time.perf_counter()
        stripped = tfdynhp.strip(gated)
        times["strip"] = time.perf_counter() - start
        float_out = stripped.predict(x_test, verbose=0, batch_size=64)
        gated_out = gated.predict(x_test, verbose=0, batch_size=64)
        row["strip_max_abs_diff"] = float(np.max(np.abs(float_out - gated_out)))
        row["stripped_params"] = stripped.count_params()
        row["cost_model_params"] = tfdynhp.model_costs(stripped).params
        row["float_test_accuracy"] = float(np.mean(np.argmax(float_out, -1) == y_test))
        row["step"] = "int8 export"
        start = time.perf_counter()
        tflite = converters.to_int8_tflite(stripped, x[:200])
        times["int8_export"] = time.perf_counter() - start
        row["tflite_bytes"] = len(tflite)
        result = converters.evaluate(tflite, x_test, y_test, time_latency=False)
        row["int8_test_accuracy"] = float(result["accuracy"])
        row["int8_float_agreement"] = float(np.mean(result["predictions"]
                                                    == np.argmax(float_out, -1)))
        row["step"] = "reload"
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "stripped.keras")
            stripped.save(path)
            reloaded = keras.saving.load_model(path)
            row["reload_max_abs_diff"] = float(np.max(np.abs(
                reloaded.predict(x_test, verbose=0, batch_size=64) - float_out)))
        exact = row["strip_max_abs_diff"] <= STRIP_TOLERANCE
        row["status"] = "pruned" if row["target_met"] and exact else "not met"
        row["step"] = "done"
    except Exception as e:  # noqa: BLE001  (recorded: which families fail, and how)
        row["error"] = f"{type(e).__name__}: {e}"[:1500]
        row["traceback"] = traceback.format_exc()[-3000:]
        kind = type(e).__name__
        row["status"] = "refused" if kind in ("ConfigurationError", "ValueError") else "failed"
    return row


def _cell(value, fmt):
    return "" if value is None else format(value, fmt)


def write_markdown(results, path):
    lines = [
        "# keras.applications families through tfdynhp",
        "",
        (f"`{results['command']}` on {results['machine']}. Per family: `gate()`, one fit of "
        f"{results['epochs']} epochs on {results['train']} Fashion-MNIST images with "
        f"`DynHPCallback(target=\"{results['target']}\")`, `strip()`, int8 export, LiteRT on "
        f"{results['test']} test images, `.keras` reload. Short runs: accuracies are not the "
        "models' quality: a model still at chance (10 classes: accuracy near 0.10) predicts one "
        "class from near-tied outputs, so its int8 copy agrees on all examples or none; the "
        "int8 error layer by layer is `bench/int8_error.py`'s job."),
        "",
        ("| family | input | params | gated groups / units | kept params | strip diff | "
        "float / int8 acc | int8 agree | int8 KB | reload diff | status | fit s |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["rows"]:
        gated = (f"{row['gated_groups']} / {row['gated_units']:,} of {row['all_units']:,}"
                 if "gated_groups" in row else "")
        kept = (f"{row['params_fraction']:.1%}" if "params_fraction" in row else "")
        status = row["status"] + ("" if row["status"] in ("pruned",) else
                                  f" at {row['step']}")
        lines.append(
            f"| {row['family']} | {row['input']} | {_cell(row.get('params'), ',')} | {gated} | "
            f"{kept} | {_cell(row.get('strip_max_abs_diff'), '.1e')} | "
            f"{_cell(row.get('float_test_accuracy'), '.2f')} / "
            f"{_cell(row.get('int8_test_accuracy'), '.2f')} | "
            f"{_cell(row.get('int8_float_agreement'), '.2f')} | "
            f"{_cell(row.get('tflite_bytes') and row['tflite_bytes'] / 1024, ',.0f')} | "
            f"{_cell(row.get('reload_max_abs_diff'), '.1e')} | {status} | "
            f"{_cell(row.get('seconds', {}).get('fit'), '.0f')} |")
    lines += ["", "What stays unpruned, per family (groups, units: reason):", ""]
    for row in results["rows"]:
        if row.get("error"):
            lines.append(f"- **{row['family']}**: {row['error'].splitlines()[0][:400]}")
            continue
        reasons = "; ".join(f"{p['groups']} group(s), {p['units']:,} units: {p['reason']}"
                            for p in row.get("pinned", [])[:4])
        lines.append(f"- **{row['family']}**: {reasons}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--target", default="50% params")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=512)
    parser.add_argument("--test", type=int, default=256)
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    json_path = os.path.join(args.results, "keras_applications.json")
    previous = {}
    if os.path.isfile(json_path):
        with open(json_path) as f:
            previous = {row["family"]: row for row in json.load(f).get("rows", [])}
    for name in args.families.split(","):
        if name not in FAMILIES:
            parser.error(f"unknown family {name!r}; expected some of {', '.join(FAMILIES)}")
        row = run_family(name, args)
        row["command"] = ("python bench/keras_applications.py --families " + name
                          + f" --target '{args.target}' --epochs {args.epochs}"
                          + f" --train {args.train} --test {args.test}")
        print(json.dumps({k: v for k, v in row.items() if k != "traceback"}), flush=True)
        previous[name] = row
        keras.backend.clear_session()
        rows = [previous[n] for n in FAMILIES if n in previous]
        results = {
            "command": "python bench/keras_applications.py " + " ".join(argv or sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
            "target": args.target, "epochs": args.epochs, "train": args.train,
            "test": args.test, "keras": keras.__version__, "tensorflow": tf.__version__,
            "rows": rows,
        }
        os.makedirs(args.results, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
        write_markdown(results, os.path.join(args.results, "keras_applications.md"))


if __name__ == "__main__":
    main()
