"""Int8 quantization-aware fine-tuning (QAT) against post-training int8 (PTQ), on Fashion-MNIST.

For each row (LeNet-5 dense, and LeNet-5 pruned by DynHP to a target), one run:

1. train the float model with `tfdynhp.training.train` (the protocol of `paper_table.py`:
   same data subset, 10% validation split, seed; the pruned row gated, DynHP to `--target`
   under `--budget`, stripped);
2. `float` / `PTQ int8`: its test accuracy in float, and in int8 after post-training
   quantization (`to_int8_tflite` with 500 seeded training samples; LiteRT, whole test set);
3. `QAT int8`: `tfdynhp.quantize_aware` calibrated on the same 500 samples (it starts as the PTQ
   model), fine-tuned `--qat-epochs` epochs at `--qat-lr`, exported with its own ranges;
4. control, so that QAT is not credited with what extra training does: the float model
   fine-tuned the same epochs at the same rate (`float+ft`), and its PTQ (`PTQ+ft int8`);
5. agreement of the QAT int8 file with the QAT model's simulation: LiteRT on the whole test
   set, TFLite Micro on the first `--tflm-samples` (argmax agreement, fraction of outputs
   within one quantization step).

    python bench/qat.py                                   # ~10 min on 2 shared cores
    python bench/qat.py --limit-train 3000 --epochs 3     # smoke run

Writes `<results>/qat.json` and `<results>/qat.md` with the command.
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
from tfdynhp.converters.int8_check import compare_with_simulation

import tfdynhp
from tfdynhp import converters, training
from tfdynhp.datasets import shaping as inputs
from tfdynhp.model.gating import copy_model


def _options(args, row):
    options = {"dataset": "fashion-mnist", "arch": "lenet5", "epochs": args.epochs,
               "limit_train": args.limit_train, "seed": args.seed}
    if row == "dense":
        return {**options, "mode": "dense"}
    return {**options, "mode": "dynhp", "target": args.target, "budget": args.budget}


def _int8_accuracy(tflite, x, y):
    return converters.evaluate(tflite, x, y, "litert", time_latency=False)["accuracy"]


def _float_accuracy(model, x, y):
    predictions = model.predict(x, batch_size=512, verbose=0)
    return float(np.mean(np.argmax(predictions, -1) == y))


def _fine_tune(model, x, y, args):
    model.compile(keras.optimizers.Adam(args.qat_lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    model.fit(x, y, epochs=args.qat_epochs, batch_size=args.qat_batch_size, shuffle=True,
              verbose=0)
    return time.perf_counter() - start


def run_row(row, args):
    options = _options(args, row)
    config = training.RunConfig(**options).resolve()
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = training.prepare_data(config)
    result = training.train(verbose=0, **options)
    model = result.stripped
    shape = model.inputs[0].shape[1:]
    x_train = inputs.shape_for(x_train, shape, "the training data")
    x_test = inputs.shape_for(x_test, shape, "the test data")
    x_val = inputs.shape_for(x_val, shape, "the validation data")
    calibration = inputs.representative_subset(x_train, seed=args.seed)

    ptq = converters.to_int8_tflite(model, calibration)
    out = {
        "row": row, "params": int(model.count_params()), "n_train": len(x_train),
        "n_test": len(x_test), "train_wall_s": result.summary["wall_time_s"],
        "float_accuracy": _float_accuracy(model, x_test, y_test),
        "ptq_accuracy": _int8_accuracy(ptq, x_test, y_test),
        "float_val_accuracy": _float_accuracy(model, x_val, y_val),
        "ptq_tflite_bytes": len(ptq),
    }

    qat = tfdynhp.quantize_aware(model, calibration_data=calibration)
    out["qat_start_accuracy"] = _float_accuracy(qat, x_test, y_test)  # simulated, = PTQ
    out["qat_wall_s"] = _fine_tune(qat, x_train, y_train, args)
    out["qat_simulated_accuracy"] = _float_accuracy(qat, x_test, y_test)
    out["qat_val_accuracy"] = _float_accuracy(qat, x_val, y_val)  # simulated int8
    qat_tflite = converters.to_int8_tflite(qat)
    out["qat_accuracy"] = _int8_accuracy(qat_tflite, x_test, y_test)
    out["qat_tflite_bytes"] = len(qat_tflite)
    simulated = qat.predict(x_test, batch_size=512, verbose=0)
    out["agreement_litert"] = compare_with_simulation(qat_tflite, simulated, x_test, "litert")
    n = min(args.tflm_samples, len(x_test))
    out["agreement_tflm"] = compare_with_simulation(qat_tflite, simulated[:n], x_test[:n], "tflm")
    # The logits (before the softmax) of the same int8 model, against the simulated logits.
    logits = tfdynhp.quantization.logits_model(qat)
    logits_tflite = converters.to_int8_tflite(logits)
    simulated = logits.predict(x_test, batch_size=512, verbose=0)
    out["logits_agreement_litert"] = compare_with_simulation(
        logits_tflite, simulated, x_test, "litert"
    )
    out["logits_agreement_tflm"] = compare_with_simulation(
        logits_tflite, simulated[:n], x_test[:n], "tflm"
    )

    control = copy_model(model)
    out["float_ft_wall_s"] = _fine_tune(control, x_train, y_train, args)
    out["float_ft_accuracy"] = _float_accuracy(control, x_test, y_test)
    out["float_ft_val_accuracy"] = _float_accuracy(control, x_val, y_val)
    out["ptq_ft_accuracy"] = _int8_accuracy(
        converters.to_int8_tflite(control, calibration), x_test, y_test
    )
    return out


def _pct(value):
    return f"{100 * value:.2f}"


def write_markdown(path, command, args, rows, total):
    lines = [
        f"Command: `{command}`",
        "",
        (
            f"Fashion-MNIST, LeNet-5, {rows[0]['n_train']:,} training examples (after the 10% "
            f"validation split), {rows[0]['n_test']:,} test examples, seed {args.seed}; "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, Keras "
            f"{keras.__version__}; total {total:.0f} s."
        ),
        (
            f"QAT and the float control: {args.qat_epochs} epochs, Adam lr {args.qat_lr}, "
            f"batch {args.qat_batch_size}. Accuracies on the test set (int8: LiteRT, batch 1); "
            "the last column on the validation split (compare settings there, not on the test "
            "set)."
        ),
        "",
        (
            "| row | params | float % | PTQ int8 % | QAT int8 % | QAT - float | QAT - PTQ | "
            "float+ft % | PTQ+ft int8 % | QAT - float+ft | QAT - PTQ+ft | QAT start (sim) % | "
            "int8 B (PTQ / QAT) | val %: float / float+ft / QAT (sim) |"
        ),
        "|" + " --- |" * 14,
    ]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['params']:,} | {_pct(r['float_accuracy'])} | "
            f"{_pct(r['ptq_accuracy'])} | {_pct(r['qat_accuracy'])} | "
            f"{100 * (r['qat_accuracy'] - r['float_accuracy']):+.2f} | "
            f"{100 * (r['qat_accuracy'] - r['ptq_accuracy']):+.2f} | "
            f"{_pct(r['float_ft_accuracy'])} | {_pct(r['ptq_ft_accuracy'])} | "
            f"{100 * (r['qat_accuracy'] - r['float_ft_accuracy']):+.2f} | "
            f"{100 * (r['qat_accuracy'] - r['ptq_ft_accuracy']):+.2f} | "
            f"{_pct(r['qat_start_accuracy'])} | {r['ptq_tflite_bytes']:,} / "
            f"{r['qat_tflite_bytes']:,} | {_pct(r['float_val_accuracy'])} / "
            f"{_pct(r['float_ft_val_accuracy'])} / {_pct(r['qat_val_accuracy'])} |"
        )
    lines += [
        "",
        (
            "Agreement of the QAT int8 file with the QAT model's simulation (LiteRT: whole "
            "test set; TFLite Micro: first n test examples). Softmax outputs, and logits (the "
            "same model without its softmax, `tfdynhp.quantization.logits_model`). Steps are "
            "the output tensor's quantization steps."
        ),
        "",
        (
            "| row | output | runtime | n | argmax agreement % | within 1 step % | exact % | "
            "max steps |"
        ),
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
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="dense,pruned")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit-train", type=int, default=10000)
    parser.add_argument("--target", default="40k params")
    parser.add_argument("--budget", default="4MB")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--qat-lr", type=float, default=1e-4)
    parser.add_argument("--qat-batch-size", type=int, default=128)
    parser.add_argument("--tflm-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=os.path.join(HERE, "results", "qat"))
    args = parser.parse_args(argv)
    command = "python bench/qat.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"Command: {command.strip()}", flush=True)
    os.makedirs(args.results, exist_ok=True)
    start = time.perf_counter()
    rows = []
    for row in args.rows.split(","):
        if row not in ("dense", "pruned"):
            parser.error(f"--rows: unknown row {row!r}; expected dense and/or pruned")
        rows.append(run_row(row, args))
        print(json.dumps({k: v for k, v in rows[-1].items()}, indent=None), flush=True)
    total = time.perf_counter() - start
    with open(os.path.join(args.results, "qat.json"), "w") as f:
        json.dump({"command": command.strip(), "total_s": total, "rows": rows}, f, indent=2)
    write_markdown(os.path.join(args.results, "qat.md"), command.strip(), args, rows, total)


if __name__ == "__main__":
    main()
