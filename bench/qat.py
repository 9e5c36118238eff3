"""Int8 quantization-aware fine-tuning (QAT) against post-training int8 (PTQ) and float.

Rows (`--rows`, each written to `<results>/rows/<row>.json` as soon as it is done; the tables
gather every row file present):

- `lenet5-dense`, `lenet5-pruned`: LeNet-5 on Fashion-MNIST (the protocol of
  `paper_table.py`: `--limit-train` examples, 10% validation split, seed), dense and pruned by
  DynHP to `--lenet5-target`;
- `lenet300-pruned`: LeNet-300-100 on Fashion-MNIST pruned by DynHP to 31,744 parameters
  (the paper table's target);
- `dscnn-dense`, `dscnn-pruned`: MLPerf Tiny's DS-CNN on synthetic-kws (`--kws-size`,
  speaker-disjoint splits; test = held-out voices and accents), dense and pruned by DynHP to
  1/4 of its MACs (the protocol of `bench/kws.py`, `--kws-epochs` epochs);
- `mobilenet-dense`: `keras.applications.MobileNet` (alpha 0.25, 32x32x1, no pretrained
  weights) on scikit-learn's digits upscaled 4x (1,400 training images, 397 test: one image
  is 0.25 points).

Each row:

1. trains the float model (pruned rows: gated, DynHP to the target, stripped);
2. `float` / `PTQ int8`: test accuracy in float, and in int8 after post-training quantization
   (`to_int8_tflite` with 500 seeded training samples; LiteRT, batch 1);
3. `QAT int8`: `tfdynhp.quantize_aware` calibrated on the same 500 samples (so it starts as the
   PTQ model), fine-tuned `--qat-epochs` epochs at each rate of `--qat-lrs`; the rate with the
   best validation accuracy (simulated int8) is kept and exported with its own ranges;
4. control, so that QAT is not credited with what extra training does: the float model
   fine-tuned the same epochs at the same rate (`float+ft`), and its PTQ (`PTQ+ft int8`);
5. agreement of the QAT int8 file with the QAT model's simulation (LiteRT on the whole test
   set, TFLite Micro on the first `--tflm-samples`), for the softmax outputs and the logits,
   and of the two runtimes with each other on the logits file (the floor of any simulation);
6. dense rows, unless `--no-tfmot`: TF-MOT's QAT (`bench/qat_tfmot.py`, legacy tf_keras,
   own process) from the same float weights, same epochs, rate and batch.

    python bench/qat.py                                     # every row (~2 h on 2 busy cores)
    python bench/qat.py --rows lenet5-dense,lenet5-pruned   # a subset
    python bench/qat.py --rows lenet5-dense --limit-train 3000 --epochs 3 --no-tfmot  # smoke

Writes `<results>/qat.json` and `<results>/qat.md` with the commands.
"""

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import keras
import numpy as np
from tfdynhp.converters.int8_check import compare_with_simulation

import tfdynhp
from tfdynhp import converters, training
from tfdynhp.datasets import shaping as inputs
from tfdynhp.model.gating import copy_model

ROWS = ("lenet5-dense", "lenet5-pruned", "lenet300-pruned", "dscnn-dense", "dscnn-pruned",
        "mobilenet-dense")
TFMOT_ARCH = {"lenet5-dense": "lenet5", "dscnn-dense": "ds-cnn", "mobilenet-dense": "mobilenet"}


# -- the float models -----------------------------------------------------------------------


def _train_paper(row, args):
    """LeNet-5 / LeNet-300-100 on Fashion-MNIST with `tfdynhp.training.train`."""
    options = {"dataset": "fashion-mnist", "epochs": args.epochs,
               "limit_train": args.limit_train, "seed": args.seed}
    if row == "lenet5-dense":
        options.update(arch="lenet5", mode="dense")
    elif row == "lenet5-pruned":
        options.update(arch="lenet5", mode="dynhp", target=args.lenet5_target,
                       budget=args.lenet5_budget)
    else:
        options.update(arch="mlp", mode="dynhp", target=args.lenet300_target)
    config = training.RunConfig(**options).resolve()
    (x, y), (xv, yv), (xt, yt) = training.prepare_data(config)
    result = training.train(verbose=0, **options)
    model = result.stripped
    shape = model.inputs[0].shape[1:]
    x, xv, xt = (inputs.shape_for(a, shape, "the data") for a in (x, xv, xt))
    setting = {k: v for k, v in options.items() if v is not None}
    return model, (x, y), (xv, yv), (xt, yt), result.summary["wall_time_s"], setting


def _train_kws(row, args):
    """The DS-CNN on synthetic-kws as `bench/kws.py` trains it."""
    from tfdynhp.training import kws

    data, info = kws.load_splits(None, args.kws_difficulty, args.kws_size, args.seed, verbose=0)
    options = {"arch": "ds-cnn", "bn_momentum": kws.BN_MOMENTUM, "epochs": args.kws_epochs,
               "batch_size": 64, "lr": 3e-3, "seed": args.seed}
    if row == "dscnn-dense":
        options.update(mode="dense", budget=None)
    else:
        options.update(mode="dynhp", target=args.kws_target)
    result = training.train(data=data, verbose=0, keras_verbose=0, labels=list(info.labels),
                            **options)
    (x, y), (xv, yv), (xt, yt) = data
    setting = {**options, "data": f"synthetic-kws {args.kws_size} {args.kws_difficulty}"}
    return result.stripped, (x, y), (xv, yv), (xt, yt), result.summary["wall_time_s"], setting


def _train_mobilenet(row, args):
    """keras.applications.MobileNet (alpha 0.25) on digits upscaled to 32x32."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2)
    y = digits.target.astype("int32")
    order = np.random.default_rng(args.seed).permutation(len(x))
    x, y = x[order], y[order]
    (x, y), (xt, yt) = (x[:1400], y[:1400]), (x[1400:], y[1400:])
    (x, y), (xv, yv) = (x[140:], y[140:]), (x[:140], y[:140])
    keras.utils.set_random_seed(args.seed)
    model = keras.applications.MobileNet(input_shape=(32, 32, 1), alpha=0.25, weights=None,
                                         classes=10)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x, y, epochs=args.mobilenet_epochs, batch_size=32, shuffle=True, verbose=0)
    setting = {"model": "keras.applications.MobileNet(alpha=0.25, input (32, 32, 1))",
               "data": "digits x4", "epochs": args.mobilenet_epochs, "lr": 1e-3,
               "batch_size": 32, "seed": args.seed}
    return model, (x, y), (xv, yv), (xt, yt), time.perf_counter() - start, setting


def train_row(row, args):
    if row.startswith("dscnn"):
        return _train_kws(row, args)
    if row.startswith("mobilenet"):
        return _train_mobilenet(row, args)
    return _train_paper(row, args)


# -- measures ---------------------------------------------------------------------------------


def _int8_accuracy(tflite, x, y):
    return converters.evaluate(tflite, x, y, "litert", time_latency=False)["accuracy"]


def _float_accuracy(model, x, y):
    predictions = model.predict(x, batch_size=512, verbose=0)
    return float(np.mean(np.argmax(predictions, -1) == y))


def _fine_tune(model, x, y, lr, args):
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    model.fit(x, y, epochs=args.qat_epochs, batch_size=args.qat_batch_size, shuffle=True,
              verbose=0)
    return time.perf_counter() - start


def _qat(model, calibration, train, validation, args):
    """QAT at each rate of `--qat-lrs`; returns `(model, lr, wall, {lr: val accuracy})`."""
    best, tried = None, {}
    for lr in args.qat_lrs:
        qat = tfdynhp.quantize_aware(model, calibration_data=calibration)
        wall = _fine_tune(qat, *train, lr, args)
        tried[lr] = _float_accuracy(qat, *validation)
        if best is None or tried[lr] > tried[best[1]]:
            best = (qat, lr, wall)
    return (*best, tried)


def _tfmot(row, model, train, test, float_accuracy, lr, args, work):
    data = os.path.join(work, f"{row}.npz")
    np.savez(data, x_train=train[0], y_train=train[1], x_test=test[0], y_test=test[1],
             float_accuracy=float_accuracy,
             **{f"w_{i}": w for i, w in enumerate(model.get_weights())})
    out = os.path.join(work, f"{row}-tfmot")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    subprocess.run([sys.executable, os.path.join(HERE, "qat_tfmot.py"), "--arch",
                    TFMOT_ARCH[row], "--data", data, "--epochs", str(args.qat_epochs), "--lr",
                    str(lr), "--batch-size", str(args.qat_batch_size), "--seed",
                    str(args.seed), "--out", out], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "result.json")) as f:
        result = json.load(f)
    with open(os.path.join(out, "model.tflite"), "rb") as f:
        tflite = f.read()
    result["accuracy"] = _int8_accuracy(tflite, *test)
    return result


def _runtimes_agreement(tflite, x):
    """The two runtimes against each other on the same file: how close any simulation can
    be to both (their int8 kernels round differently)."""
    litert, _ = converters.run_tflite(tflite, x, "litert")
    tflm, _ = converters.run_tflite(tflite, x, "tflm")
    steps = np.abs(litert.astype(np.int32) - tflm.astype(np.int32))
    flat = (litert.reshape(len(x), -1), tflm.reshape(len(x), -1))
    return {"num_samples": len(x),
            "argmax_agreement": float(np.mean(np.argmax(flat[0], 1) == np.argmax(flat[1], 1))),
            "within_one_step": float(np.mean(steps <= 1)), "exact": float(np.mean(steps == 0)),
            "max_steps": int(steps.max())}


def run_row(row, args, command):
    work = tempfile.mkdtemp(prefix=f"qat-bench-{row}-")
    model, train, validation, test, train_wall, setting = train_row(row, args)
    calibration = inputs.representative_subset(train[0], seed=args.seed)

    ptq = converters.to_int8_tflite(model, calibration)
    out = {
        "row": row, "command": command, "setting": setting,
        "params": int(tfdynhp.parameter_count(model)),
        "macs": int(tfdynhp.model_costs(model).macs),
        "n_train": len(train[0]), "n_val": len(validation[0]), "n_test": len(test[0]),
        "train_wall_s": train_wall,
        "float_accuracy": _float_accuracy(model, *test),
        "ptq_accuracy": _int8_accuracy(ptq, *test),
        "float_val_accuracy": _float_accuracy(model, *validation),
        "ptq_tflite_bytes": len(ptq),
    }
    qat, lr, wall, tried = _qat(model, calibration, train, validation, args)
    out.update(qat_lr=lr, qat_val_by_lr={str(k): v for k, v in tried.items()}, qat_wall_s=wall,
               qat_start_accuracy=_float_accuracy(
                   tfdynhp.quantize_aware(model, calibration_data=calibration), *test))
    out["qat_simulated_accuracy"] = _float_accuracy(qat, *test)
    out["qat_val_accuracy"] = tried[lr]
    qat_tflite = converters.to_int8_tflite(qat)
    out["qat_accuracy"] = _int8_accuracy(qat_tflite, *test)
    out["qat_tflite_bytes"] = len(qat_tflite)
    out["shapes_unchanged"] = [w.shape for w in model.weights if "kernel" in w.path] == [
        w.shape for w in qat.weights if "kernel" in w.path]
    x_test = test[0]
    n = min(args.tflm_samples, len(x_test))
    simulated = qat.predict(x_test, batch_size=512, verbose=0)
    out["agreement_litert"] = compare_with_simulation(qat_tflite, simulated, x_test, "litert")
    out["agreement_tflm"] = compare_with_simulation(qat_tflite, simulated[:n], x_test[:n],
                                                    "tflm")
    logits = tfdynhp.quantization.logits_model(qat)
    logits_tflite = converters.to_int8_tflite(logits)
    simulated = logits.predict(x_test, batch_size=512, verbose=0)
    out["logits_agreement_litert"] = compare_with_simulation(logits_tflite, simulated, x_test,
                                                             "litert")
    out["logits_agreement_tflm"] = compare_with_simulation(logits_tflite, simulated[:n],
                                                           x_test[:n], "tflm")
    out["logits_litert_vs_tflm"] = _runtimes_agreement(logits_tflite, x_test[:n])

    control = copy_model(model)
    out["float_ft_wall_s"] = _fine_tune(control, *train, lr, args)
    out["float_ft_accuracy"] = _float_accuracy(control, *test)
    out["float_ft_val_accuracy"] = _float_accuracy(control, *validation)
    out["ptq_ft_accuracy"] = _int8_accuracy(
        converters.to_int8_tflite(control, calibration), *test)
    if row in TFMOT_ARCH and args.tfmot:
        out["tfmot"] = _tfmot(row, model, train, test, out["float_accuracy"], lr, args, work)
    return out


# -- tables -----------------------------------------------------------------------------------


def _pct(value):
    return f"{100 * value:.2f}"


def _delta(a, b):
    return f"{100 * (a - b):+.2f}"


def write_markdown(path, rows, args):
    lines = [
        "# Int8 quantization-aware fine-tuning (QAT) vs post-training int8 (PTQ) vs float",
        "",
        "Commands (one per row; `--rows` runs a subset):",
        "",
        *sorted({f"- `{r['command']}`" for r in rows}),
        "",
        (f"{os.cpu_count()} CPUs shared with other jobs, Python {platform.python_version()}, "
         f"Keras {keras.__version__}. QAT and the float control: {args.qat_epochs} epochs, "
         f"batch {args.qat_batch_size}, Adam at the rate of `--qat-lrs` "
         f"({', '.join(str(v) for v in args.qat_lrs)}) with the best validation accuracy "
         "(simulated int8), the same rate for the control and TF-MOT. Accuracies on the test "
         "set (int8: LiteRT, batch 1). `QAT - float` is the goal's measure (>= -0.30); "
         "`QAT - PTQ` should not be negative; `QAT - float+ft` separates quantization from "
         "the extra training."),
        "",
        ("| row | params | MACs | test n | float % | PTQ int8 % | QAT int8 % | QAT - float | "
         "QAT - PTQ | float+ft % | PTQ+ft int8 % | QAT - float+ft | TF-MOT QAT int8 % | "
         "QAT lr | shapes kept | int8 B (PTQ / QAT) |"),
        "|" + " --- |" * 16,
    ]
    for r in rows:
        tfmot = _pct(r["tfmot"]["accuracy"]) if "tfmot" in r else "-"
        lines.append(
            f"| {r['row']} | {r['params']:,} | {r['macs']:,} | {r['n_test']:,} | "
            f"{_pct(r['float_accuracy'])} | {_pct(r['ptq_accuracy'])} | "
            f"{_pct(r['qat_accuracy'])} | {_delta(r['qat_accuracy'], r['float_accuracy'])} | "
            f"{_delta(r['qat_accuracy'], r['ptq_accuracy'])} | {_pct(r['float_ft_accuracy'])} | "
            f"{_pct(r['ptq_ft_accuracy'])} | "
            f"{_delta(r['qat_accuracy'], r['float_ft_accuracy'])} | {tfmot} | {r['qat_lr']} | "
            f"{'yes' if r['shapes_unchanged'] else 'NO'} | {r['ptq_tflite_bytes']:,} / "
            f"{r['qat_tflite_bytes']:,} |"
        )
    lines += [
        "",
        ("Validation accuracy (%): float / float+ft / QAT (simulated) per rate tried; QAT at "
         "the start (calibrated: the PTQ model, simulated) on the test set."),
        "",
        "| row | val n | float | float+ft | QAT by rate | QAT start (sim, test) |",
        "|" + " --- |" * 6,
    ]
    for r in rows:
        by_lr = ", ".join(f"{k}: {_pct(v)}" for k, v in r["qat_val_by_lr"].items())
        lines.append(
            f"| {r['row']} | {r['n_val']:,} | {_pct(r['float_val_accuracy'])} | "
            f"{_pct(r['float_ft_val_accuracy'])} | {by_lr} | {_pct(r['qat_start_accuracy'])} |"
        )
    lines += [
        "",
        ("Agreement of the QAT int8 file with the QAT model's simulation (LiteRT: whole test "
         "set; TFLite Micro: first n test examples). Softmax outputs, and logits (the same "
         "model without its softmax, `tfdynhp.quantization.logits_model`). Steps are the "
         "output tensor's quantization steps."),
        "",
        ("| row | output | runtime | n | argmax agreement % | within 1 step % | exact % | "
         "max steps |"),
        "|" + " --- |" * 8,
    ]
    for r in rows:
        for output, prefix in (("softmax", "agreement"), ("logits", "logits_agreement")):
            for runtime in ("litert", "tflm"):
                a = r[f"{prefix}_{runtime}"]
                lines.append(
                    f"| {r['row']} | {output} | {runtime} | {a['num_samples']:,} | "
                    f"{_pct(a['argmax_agreement'])} | {_pct(a['within_one_step'])} | "
                    f"{_pct(a['exact'])} | {a['max_steps']} |"
                )
        a = r.get("logits_litert_vs_tflm")
        if a is not None:
            lines.append(
                f"| {r['row']} | logits | LiteRT vs TFLite Micro (same file) | "
                f"{a['num_samples']:,} | {_pct(a['argmax_agreement'])} | "
                f"{_pct(a['within_one_step'])} | {_pct(a['exact'])} | {a['max_steps']} |"
            )
    lines += ["", "Settings of the float training per row:", ""]
    lines += [f"- {r['row']}: {r['setting']}, {r['train_wall_s']:.0f} s" for r in rows]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def gather(results, args):
    rows = []
    for path in glob.glob(os.path.join(results, "rows", "*.json")):
        with open(path) as f:
            rows.append(json.load(f))
    rows.sort(key=lambda r: ROWS.index(r["row"]))
    with open(os.path.join(results, "qat.json"), "w") as f:
        json.dump({"rows": rows}, f, indent=2, default=str)
    write_markdown(os.path.join(results, "qat.md"), rows, args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--epochs", type=int, default=10, help="Fashion-MNIST rows")
    parser.add_argument("--limit-train", type=int, default=10000)
    parser.add_argument("--lenet5-target", default="40k params")
    parser.add_argument("--lenet5-budget", default="4MB")
    parser.add_argument("--lenet300-target", default="31744 params")
    parser.add_argument("--kws-size", default="small")
    parser.add_argument("--kws-difficulty", default="medium")
    parser.add_argument("--kws-epochs", type=int, default=30)
    parser.add_argument("--kws-target", default="25% macs")
    parser.add_argument("--mobilenet-epochs", type=int, default=12)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--qat-lrs", default="1e-4,3e-5,1e-5")
    parser.add_argument("--qat-batch-size", type=int, default=128)
    parser.add_argument("--tflm-samples", type=int, default=1000)
    parser.add_argument("--no-tfmot", dest="tfmot", action="store_false")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=os.path.join(HERE, "results", "qat"))
    args = parser.parse_args(argv)
    args.qat_lrs = [float(v) for v in args.qat_lrs.split(",")]
    command = "python bench/qat.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"Command: {command.strip()}", flush=True)
    rows = args.rows.split(",")
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown {unknown}; expected some of {ROWS}")
    os.makedirs(os.path.join(args.results, "rows"), exist_ok=True)
    for row in rows:
        start = time.perf_counter()
        out = run_row(row, args, command.strip())
        out["total_s"] = time.perf_counter() - start
        with open(os.path.join(args.results, "rows", f"{row}.json"), "w") as f:
            json.dump(out, f, indent=2, default=str)
        print(json.dumps({k: out[k] for k in ("row", "float_accuracy", "ptq_accuracy",
                                              "qat_accuracy", "total_s")}), flush=True)
        gather(args.results, args)


if __name__ == "__main__":
    main()
