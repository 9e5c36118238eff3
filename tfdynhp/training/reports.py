"""Plots and summaries of a training run, from its history (the paper's figs. 1, 5, 6, 7).

A run folder written by `tfdynhp.training.train` (or `tfdynhp train`) holds `history.csv`
(Keras' `CSVLogger`, one row per epoch, with the `dynhp/...` columns of `DynHPCallback`) and
`summary.json`. From them this module draws, against the epoch:

- `units.png`: units per prunable group (gated groups under DynHP; fig. 1);
- `batch_size.png`: the mini-batch size (fig. 5);
- `memory.png`: training memory in both accountings, with the budget (fig. 6);
- `val_error.png`: the validation error in % (fig. 7 plots the test error; the test set is
  kept for the final numbers here);

and writes `summary.md`, a readable table of `summary.json`. `regenerate(run_dir)` redoes all
of it from the files alone, so plots can be remade without training again.
"""

import csv
import json
import math
import os

from tfdynhp.math import budget as budget_lib

PLOTS = ("units.png", "batch_size.png", "memory.png", "val_error.png")
UNITS_PREFIX = "dynhp/units/"


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return number


def read_history_csv(path):
    """Reads a `CSVLogger` file into a list of per-epoch dicts with float values.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it has no `epoch` column.
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "epoch" not in rows[0]:
        raise ValueError(f"{path}: not a Keras CSVLogger history (no 'epoch' column).")
    history = []
    for row in rows:
        record = {k: _number(v) for k, v in row.items() if v not in ("", None)}
        if "val_error" not in record and "val_accuracy" in record:
            record["val_error"] = 1.0 - record["val_accuracy"]
        history.append(record)
    return history


def _series(history, key):
    xs, ys = [], []
    for record in history:
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(int(record.get("epoch", len(xs))) + 1)
            ys.append(value)
    return xs, ys


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("epoch")
    return plt, fig, ax


def _save(plt, fig, ax, path, title):
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _memory_plot(history, path, budget_bytes, accounting):
    """Training memory in both accountings, side by side; the budget only against the one it
    applies to."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    ordered = (accounting, "full" if accounting == "paper" else "paper")
    for axis, name in zip(axes, ordered):
        xs, ys = _series(history, f"dynhp/{name}_memory_bytes")
        axis.plot(xs, [y / 2**20 for y in ys], marker=".", label=f"{name} accounting")
        axis.grid(True, alpha=0.3)
        axis.set_xlabel("epoch")
        axis.set_ylabel("training memory (MiB)")
    if budget_bytes is not None:
        axes[0].axhline(budget_bytes / 2**20, color="tab:red", linestyle="--",
                        label=f"budget {budget_lib.format_bytes(int(budget_bytes))}")
    axes[0].set_title(f"Training memory, {ordered[0]} accounting"
                      + (" (the budget's)" if budget_bytes is not None else ""))
    axes[1].set_title(f"Training memory, {ordered[1]} accounting")
    for axis in axes:
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_history(history, out_dir, budget_bytes=None, accounting="paper"):
    """Draws the four per-epoch plots of a run into `out_dir`.

    A plot whose data is missing (e.g. no test error without validation data) shows an empty
    axis with a note rather than failing.

    Args:
        history: per-epoch dicts (`TrainResult.history` or `read_history_csv`).
        out_dir: destination folder (must exist).
        budget_bytes: the memory budget to draw, or `None`; defaults to the history's
            `dynhp/budget_bytes` when present.
        accounting: the accounting the budget applies to (`"paper"` or `"full"`): the budget
            is drawn only against that curve. Defaults to `"paper"`.

    Returns:
        The list of PNG paths written.
    """
    if budget_bytes is None:
        _, budgets = _series(history, "dynhp/budget_bytes")
        budget_bytes = budgets[-1] if budgets else None
    paths = []

    plt, fig, ax = _figure()
    layers = sorted({k for r in history for k in r if str(k).startswith(UNITS_PREFIX)})
    for key in layers:
        ax.plot(*_series(history, key), marker=".", label=key[len(UNITS_PREFIX):])
    ax.set_ylabel("units (channels) per prunable group")
    if layers:
        ax.set_yscale("log")
    else:
        _note(ax, "no prunable groups")
    title = "Units per prunable group"
    paths.append(_save(plt, fig, ax, os.path.join(out_dir, PLOTS[0]), title))

    plt, fig, ax = _figure()
    xs, ys = _series(history, "dynhp/batch_size")
    ax.plot(xs, ys, marker=".", color="tab:green")
    ax.set_ylabel("mini-batch size")
    if not xs:
        _note(ax, "no batch size recorded")
    paths.append(_save(plt, fig, ax, os.path.join(out_dir, PLOTS[1]), "Batch size"))

    paths.append(_memory_plot(history, os.path.join(out_dir, PLOTS[2]), budget_bytes,
                              accounting))

    plt, fig, ax = _figure()
    xs, ys = _series(history, "val_error")
    ax.plot(xs, [100 * y for y in ys], marker=".", color="tab:purple")
    ax.set_ylabel("validation error (%)")
    if not xs:
        _note(ax, "no validation error recorded (validation_split=0)")
    paths.append(_save(plt, fig, ax, os.path.join(out_dir, PLOTS[3]), "Validation error"))
    return paths


def _note(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


_SUMMARY_ROWS = (
    ("method", "method", None),
    ("mode", "mode", None),
    ("amount", "amount (complexity-driven)", None),
    ("dataset", "dataset", None),
    ("arch", "hidden widths", None),
    ("test_error_pct", "test error (%)", "{:.2f}"),
    ("int8_test_error", "int8 test error (%)", "pct"),
    ("params", "parameters", "{:,}"),
    ("model_size_bytes", "model size", "bytes"),
    ("model_size_paper_mbytes", "model size (paper MBytes)", "{:.3f}"),
    ("mean_training_memory_paper_bytes", "mean training memory, paper accounting", "bytes"),
    ("mean_training_memory_paper_mbytes", "  in paper MBytes", "{:.3f}"),
    ("mean_training_memory_full_bytes", "mean training memory, full accounting", "bytes"),
    ("budget_bytes", "budget", "bytes"),
    ("accounting", "budget accounting", None),
    ("final_batch_size", "final batch size", None),
    ("tflite_bytes", "int8 .tflite size", "bytes"),
    ("epochs_run", "epochs", None),
    ("wall_time_s", "wall time (s)", "{:.1f}"),
)


def _format(value, how):
    if value is None:
        return "-"
    if how == "bytes":
        return budget_lib.format_bytes(round(value))
    if how == "pct":
        return f"{100 * value:.2f}"
    if how:
        return how.format(value)
    return str(value)


def summary_markdown(summary):
    """A Markdown table of the main fields of a run summary."""
    lines = ["| measure | value |", "| --- | --- |"]
    for key, label, how in _SUMMARY_ROWS:
        if key in summary:
            lines.append(f"| {label} | {_format(summary[key], how)} |")
    litert = summary.get("exports", {}).get("litert")
    if litert and "latency_batch1_ms" in litert:
        lines.append(f"| LiteRT invoke at batch 1 (ms) | {litert['latency_batch1_ms']:.4f} |")
        batched = litert.get("batched_ms_per_example")
        if batched is not None:
            lines.append(
                f"| LiteRT batched invoke, per example (ms, batch "
                f"{litert['batched_batch_size']}) | {batched:.4f} |"
            )
    elif litert:  # summaries written before batch-1 and batched timing existed
        lines.append(
            f"| LiteRT latency per sample, Python round trip (ms) | "
            f"{litert['latency_ms_mean']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def write_summary_markdown(summary, out_dir):
    """Writes `summary.md` into `out_dir` and returns its path."""
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w") as f:
        what = summary.get("mode") or summary.get("method") or "?"
        f.write(f"# Run summary: {what} on {summary.get('dataset', '?')}\n\n")
        f.write(summary_markdown(summary))
    return path


def regenerate(run_dir):
    """Remakes the plots and `summary.md` of a run folder from `history.csv` and
    `summary.json`; the mean training memories of `summary.json` are recomputed from the
    history.

    Args:
        run_dir: a folder written by `tfdynhp train`.

    Returns:
        The list of files written.

    Raises:
        FileNotFoundError: if `history.csv` is missing.
        ValueError: if the files are not a run's.
    """
    history_path = os.path.join(run_dir, "history.csv")
    if not os.path.isfile(history_path):
        raise FileNotFoundError(
            f"{run_dir}: no history.csv; expected a folder written by `tfdynhp train --out`."
        )
    history = read_history_csv(history_path)
    summary_path = os.path.join(run_dir, "summary.json")
    summary = {}
    if os.path.isfile(summary_path):
        try:
            with open(summary_path) as f:
                summary = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{summary_path}: not valid JSON ({e}).") from e
        for key, column in (
            ("mean_training_memory_paper_bytes", "dynhp/paper_memory_bytes"),
            ("mean_training_memory_full_bytes", "dynhp/full_memory_bytes"),
        ):
            _, values = _series(history, column)
            if values:
                summary[key] = sum(values) / len(values)
        paper = summary.get("mean_training_memory_paper_bytes")
        if paper is not None:
            summary["mean_training_memory_paper_mbytes"] = budget_lib.paper_mbytes(
                round(paper)
            )
        with open(summary_path, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    written = plot_history(history, run_dir, budget_bytes=summary.get("budget_bytes"),
                           accounting=summary.get("accounting") or "paper")
    if summary:
        written += [summary_path, write_summary_markdown(summary, run_dir)]
    return written
