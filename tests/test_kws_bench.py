"""bench/kws.py's row specifications and tables (no training): the names the bench accepts,
the mean and min-max over seeds, and the gap to dense in the markdown the README quotes."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("kws_bench", os.path.join(ROOT, "bench",
                                                                            "kws.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_row_names_and_seeds(bench):
    assert bench.parse_rows("dense@0:1, dynhp-1/4+hp", [3], "dynhp") == [
        ("dense", 0), ("dense", 1), ("dynhp-1/4+hp", 3)]
    assert bench.parse_row("dynhp-1/4+hp+kd") == ("pruned", "1/4", ("hp", "kd"))
    assert bench.parse_row("scratch-1/2") == ("scratch", "1/2", ())
    assert bench.parse_row("dense+aug") == ("dense", None, ("aug",))
    assert bench.run_id("dynhp-1/4+hp", 1) == "dynhp-1-4_hp_s1"
    for bad in ("dynhp-1/3", "dense+kd", "tfmot-1/4+hp", "dynhp-1/4+fast"):
        with pytest.raises(SystemExit, match="Row|Unknown row"):
            bench.parse_row(bad)


def _row(name, seed, voices, accents, kind="pruned"):
    held = {split: {"n": 2000, "float": v, "int8": v, "tflm": v - 0.001}
            for split, v in (("test_voices", voices), ("test_accents", accents))}
    return {"row": name, "seed": seed, "kind": kind, "held_out": held, "params": 100,
            "macs": 1000, "tflite_bytes": 2000, "arena_bytes": 300, "wall_time_s": 10.0,
            "firmware": {"flash_bytes": 5000, "bit_exact": True}, "load_average": [4.0, 5.0,
                                                                                  6.0]}


def test_mean_spread_and_gap_to_dense(bench, tmp_path):
    rows = [_row("dense", 0, 0.80, 0.70, "dense"), _row("dense", 1, 0.82, 0.72, "dense"),
            _row("dynhp-1/4", 0, 0.75, 0.66)]
    summary = bench.summarize(rows)
    mean, low, high = summary["dense"]["stats"]["test_voices/float"]
    assert (mean, low, high) == pytest.approx((0.81, 0.80, 0.82))
    assert summary["dense"]["seeds"] == [0, 1]
    record = {"command": "python bench/kws.py", "commands": ["python bench/kws.py --rows x"],
              "machine": "test", "settings": {"epochs": 16},
              "data": {"size": 20000, "difficulty": {"name": "medium"}, "seed": 0,
                       "split_sizes": {}, "labels": ["a", "b"]}, "rows": rows}
    path = tmp_path / "kws.md"
    bench.write_markdown(record, path)
    text = path.read_text()
    assert "| dense | 0,1 | 81.00 (80.0-82.0) |" in text
    # The gap to dense is to the dense mean: 75 - 81 and 66 - 71.
    assert "| dynhp-1/4 | 0 | 75.00 | 74.90 | 66.00 | 65.90 | -6.00, -5.00 |" in text
    assert "`python bench/kws.py --rows x`" in text and "| 4.0/5.0/6.0 |" in text
    assert "one clip is 0.050 points" in text
