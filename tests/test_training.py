"""Tests for tfdynhp.training: width specs, the MLP, export targets, summaries, train()."""

import json

import numpy as np
import pytest

from tfdynhp import budget as budget_lib
from tfdynhp import training


def test_parse_arch():
    assert training.parse_arch("300,100") == (300, 100)
    assert training.parse_arch(" 32 , 8 ") == (32, 8)
    assert training.parse_arch((5,)) == (5,)
    assert training.parse_arch("") == ()
    for bad in ("300,x", "0", "-3,2", "1.5"):
        with pytest.raises(ValueError, match="positive integers"):
            training.parse_arch(bad)


def test_build_mlp_is_lenet_300_100():
    model = training.build_mlp(784)
    widths = [layer.units for layer in model.layers]
    assert widths == [300, 100, 10]
    assert model.count_params() == 266_610  # METHOD.md section 4
    assert model.layers[-1].get_config()["activation"] == "softmax"


def test_check_exports():
    assert training.check_exports("pi, mcu,pi") == ("pi", "mcu")
    assert training.check_exports(None) == ()
    assert training.check_exports("") == ()
    with pytest.raises(ValueError, match=r"Unknown export target\(s\) \['toaster'\]"):
        training.check_exports("pi,toaster")


def test_summarize_means_and_units():
    history = [
        {"epoch": 0, "dynhp/paper_memory_bytes": 1000.0, "dynhp/full_memory_bytes": 4000.0,
         "dynhp/batch_size": 16.0, "dynhp/units/a": 8.0},
        {"epoch": 1, "dynhp/paper_memory_bytes": 2000.0, "dynhp/full_memory_bytes": 6000.0,
         "dynhp/batch_size": 20.0, "dynhp/units/a": 5.0},
    ]
    summary = training.summarize({"mode": "dynhp"}, history, test_accuracy=0.9, params=31_744,
                                 wall_time_s=1.5)
    assert summary["mean_training_memory_paper_bytes"] == 1500.0
    assert summary["mean_training_memory_full_bytes"] == 5000.0
    assert summary["model_size_bytes"] == 126_976
    assert summary["model_size_paper_mbytes"] == pytest.approx(0.124)
    assert summary["test_error_pct"] == pytest.approx(10.0)
    assert summary["units"] == {"a": 5}
    assert summary["final_batch_size"] == 20
    assert summary["epochs_run"] == 2


def test_load_data_limit_is_seeded_subset(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.random((50, 2, 3)), y_train=np.arange(50) % 3,
             x_test=rng.random((10, 2, 3)), y_test=np.arange(10) % 3)
    (x, y), (xt, _yt) = training.load_data(str(path), limit_train=20, seed=1)
    assert x.shape == (20, 6) and x.dtype == np.float32 and y.dtype == np.int32
    assert xt.shape == (10, 6)
    (x2, _), _ = training.load_data(str(path), limit_train=20, seed=1)
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(ValueError, match="limit_train"):
        training.load_data(str(path), limit_train=0)


def test_load_data_rejects_non_integer_labels(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((4, 2)), y_train=np.array([0.5, 1, 2, 3]),
             x_test=np.zeros((2, 2)), y_test=np.array([0, 1]))
    with pytest.raises(ValueError, match="integer class indices"):
        training.load_data(str(path))


@pytest.mark.parametrize("mode", ["dense", "sp", "hp", "dynhp"])
def test_train_modes_on_digits(digits, mode, tmp_path):
    x, y, xt, yt = digits
    result = training.train(
        data=((x, y), (xt, yt)), dataset="digits", arch="32,16", mode=mode, epochs=2,
        l0_lambda=1.0, budget="2MB", verbose=0, out_dir=tmp_path,
    )
    summary = result.summary
    assert summary["mode"] == mode and summary["epochs_run"] == 2
    assert len(result.history) == 2
    assert 0.0 <= summary["test_error"] <= 1.0
    assert summary["params"] == result.stripped.count_params()
    assert summary["model_size_bytes"] == 4 * summary["params"]
    # Paper accounting: weights + one input batch, at the epoch's batch size.
    first = result.history[0]
    expected = budget_lib.paper_memory_bytes(
        int(first["dynhp/params"]) if mode == "dense" else 64 * 32 + 32 + 32 * 16 + 16 + 170,
        64, int(first["dynhp/batch_size"]))
    assert first["dynhp/paper_memory_bytes"] == expected
    assert summary["final_batch_size"] >= (16 if mode == "dynhp" else 128)
    if mode == "dense":
        assert summary["params"] == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    if mode == "sp":
        assert all(r["dynhp/params"] == first["dynhp/params"] for r in result.history)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["test_error"] == pytest.approx(summary["test_error"])
    assert (tmp_path / "model.keras").stat().st_size > 0


def test_train_rejects_exports_without_out_dir(digits):
    x, y, xt, yt = digits
    with pytest.raises(ValueError, match="out_dir"):
        training.train(data=((x, y), (xt, yt)), mode="dense", exports="pi", verbose=0)
    with pytest.raises(ValueError, match="mode"):
        training.train(data=((x, y), (xt, yt)), mode="magic", verbose=0)


def test_cosine_epoch_schedule_decays_from_lr_towards_zero():
    from tfdynhp.training import cosine_epoch_schedule

    schedule = cosine_epoch_schedule(1e-3, 10)
    assert schedule(0) == pytest.approx(1e-3)
    assert schedule(5) == pytest.approx(5e-4)
    assert schedule(9) < 3e-5
