"""Speed of DynHP training against plain Keras (issue 18), in one run.

Parts (all on a seeded subset of Fashion-MNIST; the machine is shared, so ratios are measured
side by side, interleaved in rounds):

- `spread`: how far the epoch mean of `||S||_1 / F` computed on one step in `k` is from the
  every-step mean (k = 1), and what that does to the batch rule's candidate. One DynHP run at
  k = 1 records every step's value; the k-step means are the means over the steps 0, k, 2k..
  of each epoch (what `enable_gradient_variance(every=k)` computes on the same trajectory).
- `epochs`: whole-`fit`-epoch time of `tfdynhp.gate()` + `DynamicBatches` + `DynHPCallback`
  (batch rule on, no pruning, `alpha_bs=1` so widths and batch stay fixed) over plain Keras
  `fit` on arrays at the same widths and batch, at batch 16, 128 and 512, for LeNet-300-100
  and LeNet-5 (and the DS-CNN, `--archs mlp,lenet5,ds_cnn`), per setting of the levers (`defaults`; `k=1`, the variance on every step;
  `batch`, one gate sample per mini-batch; `jit`, `jit_compile=True`).
- `run`: a real DynHP run (pruning, growing batch) per gate sampling: test accuracy, final
  widths, time per example at the first and last epoch, against a plain model of the final
  widths trained at the final batch; plus the wall time of one epoch-end surgery and the
  retrace of the next step (LeNet-300-100).

    python bench/speed.py [--parts spread,epochs,run] [--quick]

Writes `bench/results/speed.json` and `bench/results/speed.md`.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from tfdynhp.callbacks import DynHPCallback
from tfdynhp.callbacks.dynhp import VARIANCE_EVERY

import tfdynhp
from tfdynhp import architectures, datasets
from tfdynhp.graph import gated_groups
from tfdynhp.graph.units import UnitGraph
from tfdynhp.layers import SelectFeatures
from tfdynhp.math.batch_rule import variance_batch_candidate
from tfdynhp.surgery import apply_keep_masks

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
RATIO = "grad_variance_ratio"
SETTINGS = {
    "defaults": {},
    "k=1": {"variance_every": 1},
    "batch": {"sampling": "batch"},
    "jit": {"jit_compile": True},
}


def load(n_train, n_test, image=False, seed=0):
    (x, y), (x_test, y_test) = datasets.load_fashion_mnist(flatten=not image)
    rng = np.random.default_rng(seed)
    train, test = rng.permutation(len(x))[:n_train], rng.permutation(len(x_test))[:n_test]
    if image:
        x, x_test = x[..., None], x_test[..., None]
    return x[train], y[train], x_test[test], y_test[test]


def training_data(arch, n_train, seed=0):
    """`(x, y)` for timing `arch`: Fashion-MNIST for the MLP and LeNet-5; for the DS-CNN,
    seeded normal inputs of its 49 x 10 MFCC shape and 12 classes (time per step does not
    depend on the values; synthesizing speech here would take minutes)."""
    if arch == "ds_cnn":
        rng = np.random.default_rng(seed)
        return (rng.normal(size=(n_train, 49, 10, 1)).astype("float32"),
                rng.integers(0, 12, n_train))
    x, y, _, _ = load(n_train, 1, image=arch == "lenet5", seed=seed)
    return x, y


def base_model(arch, seed=0, widths=None):
    if arch == "mlp":
        if widths is None:
            return architectures.mlp(784, seed=seed)
        return architectures.mlp(widths[0], hidden=widths[1:], seed=seed)
    if arch == "ds_cnn":
        return architectures.ds_cnn(seed=seed)
    return architectures.lenet5(seed=seed)


def gated(arch, n_train, sampling="example", seed=0):
    return tfdynhp.gate(base_model(arch, seed), seed=seed, dataset_size=n_train,
                        sampling=sampling)


def compile_model(model, jit_compile=False):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile)
    return model


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch (put it first: its `on_epoch_end` runs before DynHP's)."""

    def __init__(self):
        super().__init__()
        self.seconds, self.batch_sizes = [], []

        self.cpu_seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)


class StepRatios(keras.callbacks.Callback):
    """Every step's own `||S||_1 / F`, recovered from Keras' running epoch mean."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])
        self._previous = 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs[RATIO])
        self.epochs[-1].append((batch + 1) * mean - batch * self._previous)
        self._previous = mean


# -- spread -----------------------------------------------------------------------------------

def spread(n_train, batch, epochs, ks=(1, 2, 4, 8, 16), alpha_bs=0.98):
    x, y, _, _ = load(n_train, 1)
    model = compile_model(gated("mlp", n_train))
    model.enable_gradient_variance(every=1)
    steps = StepRatios()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[steps])
    rows = []
    for k in ks:
        errors, candidate_changes = [], []
        for values in steps.epochs:
            values = np.asarray(values, np.float64)
            full = values.mean()
            for phase in range(min(k, len(values))):  # every offset k could have started at
                estimate = values[phase::k].mean()
                errors.append(abs(estimate - full) / full)
                candidate_changes.append(abs(
                    variance_batch_candidate(batch, alpha_bs, estimate)
                    - variance_batch_candidate(batch, alpha_bs, full)))
        rows.append({
            "k": k,
            "relative_error_median": float(np.median(errors)),
            "relative_error_p90": float(np.quantile(errors, 0.9)),
            "relative_error_max": float(np.max(errors)),
            "batch_candidate_change_max": int(max(candidate_changes)),
            "step_cv_within_epoch": float(np.mean([np.std(v) / np.mean(v)
                                                   for v in steps.epochs])),
        })
    return {"n_train": n_train, "batch_size": batch, "epochs": epochs, "alpha_bs": alpha_bs,
            "steps_per_epoch": len(steps.epochs[0]),
            "epoch_means": [float(np.mean(v)) for v in steps.epochs], "rows": rows}


# -- epochs -----------------------------------------------------------------------------------

class _Case:
    def __init__(self, arch, batch, setting, x, y):
        self.arch, self.batch, self.setting, self.x, self.y = arch, batch, setting, x, y
        options = SETTINGS.get(setting, {})
        if setting == "plain":
            self.model = compile_model(base_model(arch))
        else:
            self.model = compile_model(
                gated(arch, len(x), options.get("sampling", "example")),
                options.get("jit_compile", False))
            self.data = tfdynhp.DynamicBatches(x, y, batch_size=batch, seed=0)
            self.every = options.get("variance_every", VARIANCE_EVERY)
        self.seconds, self.cpu_seconds = [], []

    def run(self, epochs):
        timer = EpochTimer()
        if self.setting == "plain":
            self.model.fit(self.x, self.y, batch_size=self.batch, epochs=epochs, verbose=0,
                           callbacks=[timer])
        else:
            dynhp = DynHPCallback(prune=False, dynamic_batch=True, alpha_bs=1.0,
                                  variance_every=self.every)
            self.model.fit(self.data, epochs=epochs, verbose=0, callbacks=[timer, dynhp])
            assert self.data.batch_size == self.batch
        self.seconds += timer.seconds[1:]  # the first epoch of a fit traces the step
        self.cpu_seconds += timer.cpu_seconds[1:]


def epoch_ratios(arch, n_train, batches, settings, rounds, epochs=2):
    x, y = training_data(arch, n_train)
    rows = []
    for batch in batches:
        cases = [_Case(arch, batch, s, x, y) for s in ("plain", *settings)]
        for r in range(rounds):
            for case in cases if r % 2 == 0 else reversed(cases):
                case.run(epochs)
        plain = statistics.median(cases[0].seconds)
        plain_cpu = statistics.median(cases[0].cpu_seconds)
        for case in cases[1:]:
            seconds = statistics.median(case.seconds)
            cpu = statistics.median(case.cpu_seconds)
            # Per epoch pair (the same round, side by side): the spread of the ratio.
            pairs = [a / b for a, b in zip(case.seconds, cases[0].seconds)]
            rows.append({"arch": arch, "batch_size": batch, "setting": case.setting,
                         "n_train": len(x), "plain_epoch_s": plain, "dynhp_epoch_s": seconds,
                         "ratio": seconds / plain, "ratio_pairs_min": min(pairs),
                         "ratio_pairs_max": max(pairs), "plain_epoch_cpu_s": plain_cpu,
                         "dynhp_epoch_cpu_s": cpu, "ratio_cpu": cpu / plain_cpu,
                         "epochs_timed": len(case.seconds)})
            print(f"  {arch} batch {batch:4d} {case.setting:9s} plain {plain:6.3f} s, "
                  f"DynHP {seconds:6.3f} s: {seconds / plain:5.2f}x wall, "
                  f"{cpu / plain_cpu:5.2f}x CPU", flush=True)
    return rows


# -- frozen -----------------------------------------------------------------------------------

def _frozen_dynhp(x, y, batch, epochs, target, seed):
    """A DynHP fit that meets `target` by epoch 2, then freezes (and folds) the gates: the
    wall and CPU seconds of its frozen epochs after the first (which retraces), the final
    widths and the number of gates left unfolded."""
    model = compile_model(gated("mlp", len(x), seed=seed))
    data = tfdynhp.DynamicBatches(x, y, batch_size=batch, seed=seed)
    timer = EpochTimer()
    dynhp = DynHPCallback(target=target, target_epoch=2)
    model.fit(data, epochs=epochs, verbose=0, callbacks=[timer, dynhp])
    assert all(gate.frozen for gate in model.gate_layers)
    widths = [group.units for group in gated_groups(model)]
    unfolded = sum(not getattr(gate, "folded", False) for gate in model.gate_layers)
    kept = next(layer.indices for layer in model.layers if isinstance(layer, SelectFeatures))
    return timer.seconds[3:], timer.cpu_seconds[3:], (widths, kept), unfolded


def _plain_widths(x, y, widths, batch, epochs, seed, kept=None):
    """A plain model of the final widths fed the kept input features; with `kept`, fed all
    784 and gathering the kept ones itself, as the DynHP model does (`SelectFeatures`)."""
    model = base_model("mlp", seed, widths)
    if kept is not None:
        model = keras.Sequential([keras.Input((x.shape[1],)), SelectFeatures(kept), model])
    model = compile_model(model)
    timer = EpochTimer()
    model.fit(x if kept is not None else x[:, : widths[0]], y, batch_size=batch, epochs=epochs,
              verbose=0, callbacks=[timer])
    return timer.seconds[1:], timer.cpu_seconds[1:]


def frozen_ratios(n_train, batches, rounds, epochs=6, target="25% params"):
    """Frozen-phase epochs of a DynHP fit (LeNet-300-100, `target` met at epoch 2, gates
    frozen and folded, fixed batch) over a plain model of the final widths at the same batch,
    same number of timed epochs; one fresh DynHP fit and one plain fit per round, their order
    alternating."""
    x, y, _, _ = load(n_train, 1)
    rows = []
    for batch in batches:
        sides = ("dynhp", "plain", "plain_gather")
        times = {side: ([], []) for side in sides}
        final = unfolded = None
        for r in range(rounds):
            for side in sides if r % 2 == 0 else reversed(sides):
                if side == "dynhp":
                    wall, cpu, final, unfolded = _frozen_dynhp(x, y, batch, epochs, target, 0)
                else:
                    if final is None:  # the first round's plain fits need the widths
                        _, _, final, unfolded = _frozen_dynhp(x, y, batch, 3, target, 0)
                    wall, cpu = _plain_widths(x, y, final[0], batch, epochs - 2, 0,
                                              final[1] if side == "plain_gather" else None)
                times[side][0].extend(wall)
                times[side][1].extend(cpu)
        widths = final[0]
        d, p, g = times["dynhp"], times["plain"], times["plain_gather"]
        row = {"batch_size": batch, "n_train": n_train, "target": target, "final_units": widths,
               "gates_left_unfolded": unfolded, "epochs_timed": len(d[0]),
               "dynhp_frozen_epoch_s": statistics.median(d[0]),
               "plain_final_epoch_s": statistics.median(p[0]),
               "dynhp_frozen_epoch_cpu_s": statistics.median(d[1]),
               "plain_final_epoch_cpu_s": statistics.median(p[1])}
        row["ratio"] = row["dynhp_frozen_epoch_s"] / row["plain_final_epoch_s"]
        row["ratio_cpu"] = row["dynhp_frozen_epoch_cpu_s"] / row["plain_final_epoch_cpu_s"]
        row["plain_gather_epoch_s"] = statistics.median(g[0])
        row["plain_gather_epoch_cpu_s"] = statistics.median(g[1])
        row["ratio_vs_plain_gather"] = row["dynhp_frozen_epoch_s"] / row["plain_gather_epoch_s"]
        row["ratio_cpu_vs_plain_gather"] = (row["dynhp_frozen_epoch_cpu_s"]
                                            / row["plain_gather_epoch_cpu_s"])
        rows.append(row)
        print(f"  frozen batch {batch}: units {widths}, DynHP frozen "
              f"{row['dynhp_frozen_epoch_s']:.3f} s vs plain {row['plain_final_epoch_s']:.3f} s"
              f": {row['ratio']:.2f}x wall, {row['ratio_cpu']:.2f}x CPU; vs the plain model "
              f"gathering its inputs {row['ratio_vs_plain_gather']:.2f}x wall, "
              f"{row['ratio_cpu_vs_plain_gather']:.2f}x CPU", flush=True)
    return rows


# -- run --------------------------------------------------------------------------------------

def dynhp_run(n_train, n_test, epochs, sampling, first_batch=16, seed=0):
    x, y, x_test, y_test = load(n_train, n_test)
    model = compile_model(gated("mlp", n_train, sampling, seed))
    data = tfdynhp.DynamicBatches(x, y, batch_size=first_batch, seed=seed)
    timer = EpochTimer()
    dynhp = DynHPCallback(dynamic_batch=True)
    model.fit(data, epochs=epochs, verbose=0, callbacks=[timer, dynhp])
    widths = [group.units for group in gated_groups(model)]
    history = dynhp.history
    batch_sizes = [h["dynhp/batch_size"] for h in history]
    accuracy = float(model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"])
    per_example = [s / n_train for s in timer.seconds]
    return model, {
        "sampling": sampling, "variance_every": dynhp.variance_every, "epochs": epochs,
        "test_accuracy": accuracy, "final_units": widths,
        "params": history[-1]["dynhp/params"], "batch_sizes": batch_sizes,
        "us_per_example_first_epoch": 1e6 * per_example[0],
        "us_per_example_last_epoch": 1e6 * per_example[-1],
        "epoch_seconds": timer.seconds,
    }


def plain_final(widths, batch, n_train, epochs=3, seed=0):
    """A plain MLP of the final widths: time per example of its epochs after the first."""
    x, y, _, _ = load(n_train, 1)
    model = compile_model(base_model("mlp", seed, widths))
    x = x[:, : widths[0]]  # the same number of input features (their values do not matter)
    timer = EpochTimer()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[timer])
    return 1e6 * statistics.median(timer.seconds[1:]) / n_train


def surgery_time(n_train, batch=128, repeats=3, seed=0):
    """Seconds (wall and CPU) of one epoch-end surgery (half the units of every group), of
    the `UnitGraph` analysis inside it, and of the next step's retrace (first step after
    surgery minus a normal step), LeNet-300-100 with the gradient variance on."""
    x, y, _, _ = load(n_train, 1)
    rows = []
    for r in range(repeats):
        model = compile_model(gated("mlp", n_train, seed=seed + r))
        model.enable_gradient_variance(every=VARIANCE_EVERY)
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        rng = np.random.default_rng(r)
        masks = {g.name: rng.random(g.units) < 0.5 for g in gated_groups(model)}
        row = {}
        clocks = (time.perf_counter, time.process_time)
        start = [c() for c in clocks]
        UnitGraph(model)  # what an analysis costs (apply_keep_masks runs one before, one after)
        row["analysis_s"], row["analysis_cpu_s"] = [c() - s0 for c, s0 in zip(clocks, start)]
        start = [c() for c in clocks]
        apply_keep_masks(model, masks)
        row["surgery_s"], row["surgery_cpu_s"] = [c() - s0 for c, s0 in zip(clocks, start)]
        start = [c() for c in clocks]
        model.train_on_batch(x[:batch], y[:batch])
        first = [c() - s0 for c, s0 in zip(clocks, start)]
        start = [c() for c in clocks]
        for _ in range(5):
            model.train_on_batch(x[:batch], y[:batch])
        step = [(c() - s0) / 5 for c, s0 in zip(clocks, start)]
        row.update({"retrace_s": first[0] - step[0], "retrace_cpu_s": first[1] - step[1],
                    "step_s": step[0], "step_cpu_s": step[1]})
        row["total_s"] = row["surgery_s"] + row["retrace_s"]
        row["total_cpu_s"] = row["surgery_cpu_s"] + row["retrace_cpu_s"]
        rows.append(row)
    result = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    result["rounds"] = rows
    return result


# -- report -----------------------------------------------------------------------------------

def markdown(result):
    lines = [f"# bench/speed.py\n\nCommand: `{result['command']}`\n",
             (f"Machine: {result['machine']}; load average (1, 5, 15 min) before "
              f"{result.get('load_average_before')}, after {result.get('load_average_after')}."
              "\n")]
    if "spread" in result:
        s = result["spread"]
        lines += [(f"## Variance on one step in k (LeNet-300-100, {s['n_train']} examples, "
                  f"batch {s['batch_size']}, {s['steps_per_epoch']} steps/epoch, "
                  f"{s['epochs']} epochs)\n"),
                  ("| k | rel. error of epoch mean: median | p90 | max | "
                  "max change of batch candidate (alpha_bs 0.98) |"), "|---|---|---|---|---|"]
        lines += [f"| {r['k']} | {r['relative_error_median']:.3f} | "
                  f"{r['relative_error_p90']:.3f} | {r['relative_error_max']:.3f} | "
                  f"{r['batch_candidate_change_max']} |" for r in s["rows"]]
        lines.append(f"\nEvery-step epoch means: {[round(v, 1) for v in s['epoch_means']]}; "
                     f"step-to-step CV within an epoch "
                     f"{s['rows'][0]['step_cv_within_epoch']:.2f}.\n")
    if "epochs" in result:
        lines += ["## Whole-epoch time, DynHP / plain Keras (same widths and batch)\n",
                  ("| model | examples | batch | setting | plain s/epoch | DynHP s/epoch | ratio "
                   "| ratio, CPU time |"),
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['arch']} | {r.get('n_train', '')} | {r['batch_size']} | {r['setting']} | "
                  f"{r['plain_epoch_s']:.3f} | {r['dynhp_epoch_s']:.3f} | {r['ratio']:.2f}x | "
                  + (f"{r['ratio_cpu']:.2f}x |" if "ratio_cpu" in r else "- |")
                  for r in result["epochs"]]
        lines.append("")
    if "runs" in result:
        lines += ["## Real DynHP runs (LeNet-300-100, pruning, growing batch from 16)\n",
                  ("| sampling | k | test acc. | final units | params | batches | "
                  "us/example first / last epoch | plain of final widths | last / plain |"),
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in result["runs"]:
            lines.append(
                f"| {r['sampling']} | {r['variance_every']} | {r['test_accuracy']:.4f} | "
                f"{r['final_units']} | {r['params']} | {r['batch_sizes']} | "
                f"{r['us_per_example_first_epoch']:.1f} / {r['us_per_example_last_epoch']:.1f} "
                f"| {r['plain_final_us_per_example']:.1f} | {r['last_vs_plain_final']:.2f}x |")
        p = result["plain_full"]
        lines.append(f"\nPlain LeNet-300-100, same data and epochs, batch {p['batch_size']}: "
                     f"test accuracy {p['test_accuracy']:.4f}.\n")
    if "frozen" in result:
        lines += [("## Frozen-phase epochs, DynHP / plain model of the final widths "
                   "(LeNet-300-100, same batch)\n"),
                  ("| batch | target | final units | gates unfolded | DynHP frozen s/epoch | "
                   "plain s/epoch | ratio | ratio, CPU time | ratio vs plain + input gather, "
                   "wall / CPU |"),
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['batch_size']} | {r['target']} | {r['final_units']} | "
                  f"{r['gates_left_unfolded']} | {r['dynhp_frozen_epoch_s']:.3f} | "
                  f"{r['plain_final_epoch_s']:.3f} | {r['ratio']:.2f}x | {r['ratio_cpu']:.2f}x | "
                  + (f"{r['ratio_vs_plain_gather']:.2f}x / {r['ratio_cpu_vs_plain_gather']:.2f}x"
                     if "ratio_vs_plain_gather" in r else "-") + " |"
                  for r in result["frozen"]]
        lines.append("\nThe plain model is fed the kept input features; \"plain + input gather\" "
                     "takes all of them and gathers the kept ones (`SelectFeatures`), as the "
                     "DynHP model does.\n")
    if "surgery" in result:
        s = result["surgery"]
        text = (f"## Surgery + retrace (LeNet-300-100, half of every group)\n\n"
                f"surgery {s['surgery_s']:.3f} s, retrace {s['retrace_s']:.3f} s, "
                f"total {s['surgery_s'] + s['retrace_s']:.3f} s (goal <= 0.5 s)")
        if "total_cpu_s" in s:
            text += (f"; CPU time: surgery {s['surgery_cpu_s']:.3f} s (one UnitGraph "
                     f"analysis alone: {s['analysis_cpu_s']:.3f} s), retrace "
                     f"{s['retrace_cpu_s']:.3f} s, total {s['total_cpu_s']:.3f} s")
        lines.append(text + " (medians of the rounds).\n")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="spread,epochs,run",
                        help="comma-separated: spread, epochs, run, frozen, surgery")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--batches", default="16,128,512", help="batches of epochs and frozen")
    parser.add_argument("--settings", default="defaults,k=1,batch,jit",
                        help="settings of `epochs` (LeNet-5 runs those of them but batch, jit)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of epochs and frozen")
    parser.add_argument("--archs", default="mlp,lenet5",
                        help="models of `epochs`: mlp, lenet5, ds_cnn (the DS-CNN on random "
                             "inputs of its MFCC shape)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="training examples of `epochs` for every model (default: 8,000 "
                             "for the MLP, 1,500 for LeNet-5 and the DS-CNN): a small set "
                             "times the fixed cost of an epoch more than its steps")
    parser.add_argument("--out", default=os.path.join(RESULTS, "speed.json"))
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    q = args.quick
    command = "python bench/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command.strip(),
              "machine": f"{os.cpu_count()} CPU cores shared with other jobs, Python "
                         f"{platform.python_version()}, Keras {keras.__version__}",
              "variance_every_default": VARIANCE_EVERY,
              "load_average_before": [round(v, 2) for v in os.getloadavg()]}
    batches = tuple(int(b) for b in args.batches.split(","))
    settings = tuple(args.settings.split(","))
    rounds = 1 if q else args.rounds
    if "spread" in parts:
        result["spread"] = spread(1000 if q else 8000, 64, 2 if q else 4)
        for r in result["spread"]["rows"]:
            print(f"spread k={r['k']:2d}: median {r['relative_error_median']:.3f}, "
                  f"p90 {r['relative_error_p90']:.3f}, max {r['relative_error_max']:.3f}, "
                  f"candidate change <= {r['batch_candidate_change_max']}", flush=True)
    if "epochs" in parts:
        archs = args.archs.split(",")
        rows = []
        if "mlp" in archs:
            rows += epoch_ratios("mlp", 1000 if q else args.n_train or 8000, batches, settings,
                                 rounds)
        for arch in (a for a in ("lenet5", "ds_cnn") if a in archs):
            rows += epoch_ratios(arch, 300 if q else args.n_train or 1500, batches,
                                 tuple(s for s in settings if s not in ("batch", "jit")), rounds)
        result["epochs"] = rows
    if "frozen" in parts:
        result["frozen"] = frozen_ratios(1000 if q else 8000, batches, rounds)
    if "surgery" in parts:
        result["surgery"] = surgery_time(1000 if q else 8000, repeats=1 if q else 3)
        print(f"surgery {result['surgery']}", flush=True)
    if "run" in parts:
        n, n_test, epochs = (1000, 500, 2) if q else (8000, 2000, 6)
        runs = []
        for sampling in ("example", "batch"):
            _, run = dynhp_run(n, n_test, epochs, sampling)
            final_batch = run["batch_sizes"][-1]
            run["plain_final_us_per_example"] = plain_final(run["final_units"], final_batch, n)
            run["last_vs_plain_final"] = (run["us_per_example_last_epoch"]
                                          / run["plain_final_us_per_example"])
            runs.append(run)
            print(f"run {sampling}: acc {run['test_accuracy']:.4f}, units "
                  f"{run['final_units']}, batches {run['batch_sizes']}, last epoch "
                  f"{run['us_per_example_last_epoch']:.1f} us/ex vs plain final "
                  f"{run['plain_final_us_per_example']:.1f}", flush=True)
        x, y, x_test, y_test = load(n, n_test)
        plain = compile_model(base_model("mlp"))
        plain.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
        result["plain_full"] = {"batch_size": 128, "test_accuracy": float(
            plain.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"])}
        result["runs"] = runs
        result["surgery"] = surgery_time(n)
        print(f"surgery {result['surgery']}", flush=True)
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(markdown(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
