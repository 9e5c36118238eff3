"""What the Hard Concrete gates do to training when nothing is pruned (issue 29, "measure
first").

Two measurements, on the small set-ups of `bench/defaults_setups.py`:

- `gradients`: per gate, the gradient of the data loss (mean over a mini-batch, as the
  training step computes it) and of the L0 penalty with respect to `log_alpha`, on fixed
  batches, at initialization and after each epoch of gated training (defaults, nothing
  pruned). Summarised per gate layer: kind (a Dense unit or a conv channel), spatial
  positions the gate multiplies, the median over units of |mean data gradient| (signal),
  of the RMS data gradient over batches (what the gates' Adam divides by), of the penalty
  gradient, and the `lambda` at which the penalty gradient would equal the RMS data gradient.
- `curves`: validation accuracy per epoch of the plain model and of gated variants trained
  with `DynHPCallback(prune=False)` (same seed, data, epochs, batch and optimizer), one
  mechanism ablated at a time, with each variant's final validation accuracy also after
  re-estimating the BatchNormalization statistics with the test-time gates
  (`bn_recalibrated`): the gap that closes there comes from statistics learnt under the
  sampling noise.

    python bench/gate_dynamics.py gradients --problem cnn_fashion --epochs 3
    python bench/gate_dynamics.py curves --problem mobilenet --epochs 10 --variants plain,gated
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
sys.path.insert(0, HERE)

import keras
import numpy as np
import tensorflow as tf
from defaults_setups import PROBLEMS, problem
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp.math import hard_concrete as gate_math
from tfdynhp.model.gating import copy_model

# Each variant: gate() options, plus "freeze" (gates fixed at their test-time values: no
# noise, no penalty, no gate learning) and "callback" (DynHPCallback options).
VARIANTS = {
    "plain": None,
    "gated": {},
    "frozen": {"freeze": True},
    "no_penalty": {"l0_lambda": 0.0},
    "fixed_alpha": {"gate_speed": 0.0},
    "drop_0.01": {"drop_rate_init": 0.01},
    "drop_0.001": {"drop_rate_init": 0.001},
    "drop_0.2": {"drop_rate_init": 0.2},
    "batch_sampling": {"sampling": "batch"},
}


def _command():
    return "python bench/gate_dynamics.py " + " ".join(sys.argv[1:])


def _kind(gate):
    shape = gate.input.shape if not isinstance(gate.input, list) else gate.input[0].shape
    positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
    return ("dense" if len(shape) == 2 else "conv"), positions


def gate_gradients(model, x, y, batch_size, batches, seed=0):
    """Per gate layer: `(data gradients (batches, units), penalty gradient (units,))` of
    `log_alpha`, on `batches` seeded batches. The model's weights (BatchNormalization
    statistics, gate counters) are restored afterwards."""
    saved = model.get_weights()
    gates = model.gate_layers
    variables = [gate.log_alpha.value for gate in gates]
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    rng = np.random.default_rng(seed)
    data = [[] for _ in gates]
    for _ in range(batches):
        index = rng.choice(len(x), batch_size, replace=False)
        with tf.GradientTape() as tape:
            tape.watch(variables)
            loss = loss_fn(y[index], model(x[index], training=True))
        for rows, gradient in zip(data, tape.gradient(loss, variables)):
            rows.append(np.zeros(gradient.shape) if gradient is None else gradient.numpy())
    model.set_weights(saved)
    out = []
    for gate, rows in zip(gates, data):
        log_alpha = gate.log_alpha.numpy()
        p = keras.ops.convert_to_numpy(gate_math.prob_nonzero(
            log_alpha, gate.temperature, gate.limit_low, gate.limit_high))
        penalty = float(gate.penalty_weight.numpy()) * p * (1.0 - p)
        out.append((np.asarray(rows), penalty))
    return out


def summarise(model, measured):
    rows = []
    for gate, (data, penalty) in zip(model.gate_layers, measured):
        kind, positions = _kind(gate)
        signal = np.abs(data.mean(0))
        rms = np.sqrt((data ** 2).mean(0))
        weight = float(gate.penalty_weight.numpy())
        p_term = penalty / max(weight, 1e-30)  # p (1 - p)
        balance = np.median(rms / np.maximum(p_term, 1e-30)) * gate.dataset_size / max(
            gate.unit_cost, 1e-30)
        rows.append({
            "gate": gate.name, "kind": kind, "positions": positions, "units": gate.units,
            "log_alpha_mean": float(gate.log_alpha.numpy().mean()),
            "signal_median": float(np.median(signal)),
            "rms_median": float(np.median(rms)),
            "penalty_median": float(np.median(penalty)),
            "penalty_over_rms": float(np.median(penalty / np.maximum(rms, 1e-30))),
            "signal_over_rms": float(np.median(signal / np.maximum(rms, 1e-30))),
            "lambda_balance": float(balance),
        })
    return rows


def run_gradients(args):
    task = problem(args.problem)
    model = tfdynhp.gate(task.build(args.seed), seed=args.seed)
    model.compile(keras.optimizers.Adam(task.learning_rate), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    keras.utils.set_random_seed(args.seed)
    for gate in model.gate_layers:  # what fit sets: N, the training examples
        gate.set_penalty(dataset_size=len(task.x))
    epochs = []
    for epoch in range(args.epochs + 1):
        if epoch:
            model.fit(task.x, task.y, epochs=1, batch_size=task.batch_size, verbose=0,
                      callbacks=[DynHPCallback(prune=False)])
        measured = gate_gradients(model, task.x, task.y, task.batch_size, args.batches,
                                  seed=epoch)
        epochs.append({"epoch": epoch, "gates": summarise(model, measured)})
        _print_gradients(epochs[-1])
    return {"problem": args.problem, "batch_size": task.batch_size,
            "dataset_size": len(task.x), "batches": args.batches, "epochs": epochs}


def _print_gradients(record):
    print(f"-- after epoch {record['epoch']}")
    print(f"{'gate':32s} {'kind':5s} {'pos':>5s} {'la':>6s} {'|E g|':>9s} {'rms g':>9s} "
          f"{'g_pen':>9s} {'pen/rms':>9s} {'lam_bal':>9s}")
    for row in record["gates"]:
        print(f"{row['gate'][:32]:32s} {row['kind']:5s} {row['positions']:5d} "
              f"{row['log_alpha_mean']:6.2f} {row['signal_median']:9.2e} "
              f"{row['rms_median']:9.2e} {row['penalty_median']:9.2e} "
              f"{row['penalty_over_rms']:9.2e} {row['lambda_balance']:9.2e}")


def recalibrate_batch_norm(model, x, batch_size, passes=1):
    """Re-estimates every BatchNormalization layer's moving statistics (on a copy; a gated
    model's copy uses its test-time gates) and returns the copy."""
    copy = copy_model(model)
    for gate in getattr(copy, "gate_layers", []):
        gate.freeze()
    norms = [layer for layer in copy.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
    # A cumulative average over the batches: momentum 1 - 1/(k + 1) at batch k.
    steps = passes * int(np.ceil(len(x) / batch_size))
    for k in range(steps):
        for layer in norms:
            layer.momentum = 1.0 - 1.0 / (k + 1)
        start = (k * batch_size) % len(x)
        copy(x[start:start + batch_size], training=True)
    return copy


class _GateTrace(keras.callbacks.Callback):
    """Per epoch: mean log_alpha and mean activation rate of the conv and the Dense gates."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        row = {}
        for kind in ("conv", "dense"):
            gates = [g for g in self.model.gate_layers if _kind(g)[0] == kind]
            if gates:
                row[f"{kind}_log_alpha"] = float(np.mean(np.concatenate(
                    [g.log_alpha.numpy() for g in gates])))
                row[f"{kind}_rate"] = float(np.nanmean(np.concatenate(
                    [g.activation_rates() for g in gates])))
        self.rows.append(row)


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y))


def run_curve(task, variant, epochs, seed):
    options = VARIANTS[variant]
    model = task.build(seed)
    callbacks, trace = [], None
    if options is not None:
        options = dict(options)
        freeze = options.pop("freeze", False)
        model = tfdynhp.gate(model, seed=seed, **options)
        if freeze:
            for gate in model.gate_layers:
                gate.freeze()
        trace = _GateTrace()
        callbacks = [DynHPCallback(prune=False), trace]
    model.compile(keras.optimizers.Adam(task.learning_rate), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    history = model.fit(task.x, task.y, epochs=epochs, batch_size=task.batch_size, verbose=0,
                        validation_data=(task.x_val, task.y_val), callbacks=callbacks)
    seconds = time.perf_counter() - start
    row = {"variant": variant, "options": VARIANTS[variant], "seconds": round(seconds, 1),
           "val_accuracy": [round(float(v), 4) for v in history.history["val_accuracy"]],
           "train_accuracy": [round(float(v), 4) for v in history.history["accuracy"]]}
    if trace is not None:
        row["gates"] = trace.rows
    # The plain model too: on a small set its moving statistics lag as well.
    recalibrated = recalibrate_batch_norm(model, task.x, task.batch_size)
    row["val_bn_recalibrated"] = round(_accuracy(recalibrated, task.x_val, task.y_val), 4)
    print(f"{variant:16s} val {row['val_accuracy'][-1]:.4f} "
          f"(best {max(row['val_accuracy']):.4f}) "
          f"recal {row.get('val_bn_recalibrated', float('nan')):.4f} "
          f"curve {row['val_accuracy']} {seconds:.0f}s", flush=True)
    return row


def run_curves(args):
    task = problem(args.problem)
    rows = [run_curve(task, variant, args.epochs, args.seed)
            for variant in args.variants.split(",")]
    return {"problem": args.problem, "epochs": args.epochs, "batch_size": task.batch_size,
            "train": len(task.x), "validation": len(task.x_val), "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("gradients", "curves"))
    parser.add_argument("--problem", choices=PROBLEMS, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="plain,gated")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = run_gradients(args) if args.what == "gradients" else run_curves(args)
    result.update({"command": _command(), "seed": args.seed,
                   "keras": keras.__version__, "tensorflow": tf.__version__,
                   "machine": platform.machine()})
    out = args.out or os.path.join(HERE, "results", "gate_dynamics",
                                   f"{args.problem}_{args.what}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
