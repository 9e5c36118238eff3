"""Tests for tfdynhp.training.reports: per-epoch plots, history reading, summary regeneration."""

import csv
import json

import pytest

from tfdynhp.training import reports


def _history(epochs=3):
    return [
        {
            "epoch": e,
            "val_accuracy": 0.8 + 0.05 * e,
            "dynhp/units/dense_0": 784 - 100 * e,
            "dynhp/units/dense_1": 300 - 50 * e,
            "dynhp/batch_size": 16 + 4 * e,
            "dynhp/paper_memory_bytes": 1_100_000 - 200_000 * e,
            "dynhp/full_memory_bytes": 6_000_000 - 1_000_000 * e,
            "dynhp/budget_bytes": 1_200_000,
        }
        for e in range(epochs)
    ]


def _write_run(folder, history, summary):
    with open(folder / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    (folder / "summary.json").write_text(json.dumps(summary))


def test_plot_history_writes_four_pngs(tmp_path):
    paths = reports.plot_history(_history(), str(tmp_path))
    assert [p.rsplit("/", 1)[-1] for p in paths] == list(reports.PLOTS)
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_history_without_dynhp_columns(tmp_path):
    paths = reports.plot_history([{"epoch": 0, "loss": 1.0}], str(tmp_path))
    assert len(paths) == 4


def test_read_history_csv_adds_val_error(tmp_path):
    _write_run(tmp_path, _history(2), {})
    history = reports.read_history_csv(tmp_path / "history.csv")
    assert len(history) == 2
    assert history[1]["val_error"] == pytest.approx(0.15)
    assert history[1]["dynhp/batch_size"] == 20.0


def test_regenerate_recomputes_means_and_remakes_plots(tmp_path):
    _write_run(tmp_path, _history(3), {"mode": "dynhp", "dataset": "x", "params": 10,
                                       "mean_training_memory_paper_bytes": 0})
    written = reports.regenerate(str(tmp_path))
    for name in reports.PLOTS:
        assert (tmp_path / name).stat().st_size > 1000
    assert str(tmp_path / "summary.md") in written
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mean_training_memory_paper_bytes"] == 900_000
    assert summary["mean_training_memory_full_bytes"] == 5_000_000
    assert "| parameters | 10 |" in (tmp_path / "summary.md").read_text()


def test_regenerate_needs_history(tmp_path):
    with pytest.raises(FileNotFoundError, match="history.csv"):
        reports.regenerate(str(tmp_path))


def test_summary_markdown_formats_bytes():
    text = reports.summary_markdown({"model_size_bytes": 126_976, "test_error_pct": 9.5})
    assert "| test error (%) | 9.50 |" in text
    assert "126,976 B" in text
