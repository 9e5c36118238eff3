"""Tests for tfdynhp.training and tfdynhp.datasets.shaping: width specs, architectures, data shaping,
validation splits, summaries, and train() in every mode."""

import json
import random

import keras
import numpy as np
import pytest

from tfdynhp import training
from tfdynhp.costs import memory
from tfdynhp.datasets import shaping as inputs
from tfdynhp.math import budget as budget_lib
from tfdynhp.validation import ConfigurationError


def test_parse_widths_and_arch_names():
    assert training.parse_widths("300,100") == (300, 100)
    assert training.parse_widths(" 32 , 8 ") == (32, 8)
    assert training.parse_widths((5,)) == (5,)
    assert training.parse_widths("") == ()
    for bad in ("300,x", "0", "-3,2", "1.5"):
        with pytest.raises(ValueError, match="positive integers"):
            training.parse_widths(bad)
    assert training.resolve_arch("300,100") == ("mlp", (300, 100))
    assert training.resolve_arch("LeNet5") == ("lenet5", (300, 100))
    assert training.resolve_arch("mlp", "32,16") == ("mlp", (32, 16))
    with pytest.raises(ValueError, match="Unknown architecture"):
        training.resolve_arch("transformer")
    with pytest.raises(ValueError, match="reconstructs its input"):
        training.resolve_arch("fc-autoencoder")


def test_check_exports():
    assert training.check_exports("pi, mcu,pi") == ("pi", "mcu")
    assert training.check_exports(None) == ()
    assert training.check_exports("") == ()
    with pytest.raises(ValueError, match=r"Unknown export target\(s\) \['toaster'\]"):
        training.check_exports("pi,toaster")


def test_summarize_means_and_units():
    history = [
        {"epoch": 0, "dynhp/paper_memory_bytes": 1000.0, "dynhp/full_memory_bytes": 4000.0,
         "dynhp/batch_size": 16.0, "dynhp/units/a": 8.0, "val_error": 0.2},
        {"epoch": 1, "dynhp/paper_memory_bytes": 2000.0, "dynhp/full_memory_bytes": 6000.0,
         "dynhp/batch_size": 20.0, "dynhp/units/a": 5.0, "val_error": 0.1},
    ]
    summary = training.summarize({"mode": "dynhp"}, history, test_accuracy=0.9, params=31_744,
                                 wall_time_s=1.5)
    assert summary["mean_training_memory_paper_bytes"] == 1500.0
    assert summary["mean_training_memory_full_bytes"] == 5000.0
    assert summary["model_size_bytes"] == 126_976
    assert summary["model_size_paper_mbytes"] == pytest.approx(0.124)
    assert summary["test_error_pct"] == pytest.approx(10.0)
    assert summary["final_val_error"] == 0.1
    assert summary["units"] == {"a": 5}
    assert summary["final_batch_size"] == 20
    assert summary["epochs_run"] == 2


def test_load_data_limit_is_seeded_subset(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.random((50, 2, 3)), y_train=np.arange(50) % 3,
             x_test=rng.random((10, 2, 3)), y_test=np.arange(10) % 3)
    (x, y), (xt, _yt) = inputs.load_data(str(path), limit_train=20, seed=1)
    # A .npz keeps its shape ((N, 2, 3) may be a sequence of 2 steps x 3 channels; a
    # convolutional architecture adds the channel of grey images where it is built); float32
    # inputs, int32 labels.
    assert x.shape == (20, 2, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert xt.shape == (10, 2, 3)
    (x2, _), _ = inputs.load_data(str(path), limit_train=20, seed=1)
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(ValueError, match="limit_train"):
        inputs.load_data(str(path), limit_train=0)


def test_load_data_rejects_non_integer_labels(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((4, 2)), y_train=np.array([0.5, 1, 2, 3]),
             x_test=np.zeros((2, 2)), y_test=np.array([0, 1]))
    with pytest.raises(ValueError, match="integer class indices"):
        inputs.load_data(str(path))


def test_shape_for_reshapes_equal_sizes_and_names_both_shapes_otherwise():
    x = np.zeros((3, 28, 28, 1), np.float32)
    assert inputs.shape_for(x, (784,)).shape == (3, 784)
    assert inputs.shape_for(x.reshape(3, 784), (28, 28, 1)).shape == (3, 28, 28, 1)
    with pytest.raises(ConfigurationError, match=r"\(28, 28, 1\).*\(32, 32, 3\)"):
        inputs.shape_for(x, (32, 32, 3), "cifar")


def test_validation_split_is_stratified_seeded_and_disjoint():
    x = np.arange(200, dtype=np.float32)[:, None]
    y = np.repeat([0, 1, 2, 3], 50)
    (xt, _), (xv, yv) = inputs.split_validation(x, y, 0.1, seed=3)
    assert len(xv) == 20 and np.bincount(yv).tolist() == [5, 5, 5, 5]
    assert not set(xt.ravel()) & set(xv.ravel()) and len(xt) + len(xv) == 200
    (_, _), (xv2, _) = inputs.split_validation(x, y, 0.1, seed=3)
    np.testing.assert_array_equal(xv, xv2)
    assert inputs.split_validation(x, y, 0.0)[1] is None


@pytest.mark.parametrize("mode", ["dense", "sp", "hp", "dynhp"])
def test_train_modes_on_digits(digits, mode, tmp_path):
    x, y, xt, yt = digits
    target = {"target": "40% params", "target_epoch": 2} if mode in ("hp", "dynhp") else {}
    result = training.train(
        data=((x, y), (xt, yt)), dataset="digits", arch="32,16", mode=mode, epochs=3,
        batch_size=16 if mode == "dynhp" else 32, lr=3e-3,
        budget="2MB" if mode == "dynhp" else None, verbose=0, out_dir=tmp_path, **target,
    )
    summary = result.summary
    dense_params = 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert summary["mode"] == mode and summary["epochs_run"] == 3 == len(result.history)
    assert summary["test_accuracy"] > 0.6  # far above chance (0.1) after 3 epochs
    assert summary["params"] == result.stripped.count_params()
    assert summary["model_size_bytes"] == 4 * summary["params"]
    assert summary["n_validation"] == 140 and summary["n_train"] == 1260
    assert all(0.0 <= r["val_error"] < 0.5 for r in result.history)
    # Paper accounting: the weights the epoch trained (before its pruning) + one input batch.
    first = result.history[0]
    expected = budget_lib.paper_memory_bytes(dense_params, 64, int(first["dynhp/batch_size"]))
    assert first["dynhp/paper_memory_bytes"] == expected
    if mode == "dense":
        assert summary["params"] == dense_params
    if mode == "sp":
        assert [r["dynhp/params"] for r in result.history] == [dense_params] * 3
    if mode in ("hp", "dynhp"):  # the target: 40% of the parameters by epoch 2
        assert summary["params"] <= 0.4 * dense_params
    if mode == "dynhp":
        batches = [r["dynhp/batch_size"] for r in result.history]
        assert batches[0] == 16 and batches[-1] > batches[0]  # the batch grew
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["test_error"] == pytest.approx(summary["test_error"])
    assert (tmp_path / "model.keras").stat().st_size > 0


def test_dense_memory_counts_the_optimizer_it_trains_with(digits):
    x, y, xt, yt = digits
    result = training.train(data=((x, y), (xt, yt)), arch="32", mode="dense", epochs=1,
                            verbose=0)
    record = result.history[0]
    params = 64 * 32 + 32 + 32 * 10 + 10
    # weights, gradients and Adam's two slots, plus activations and inputs of the batch.
    fixed = 4 * params * 4
    assert record["dynhp/full_memory_bytes"] == fixed + memory.full_breakdown(
        result.model, 128).per_batch


def test_train_cnn_architecture_on_image_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 28, 28, 1)).astype("float32")
    y = (x[:, :14].mean(axis=(1, 2, 3)) > x[:, 14:].mean(axis=(1, 2, 3))).astype("int32")
    result = training.train(data=((x, y), (x[:40], y[:40])), arch="lenet5", mode="hp",
                            epochs=2, batch_size=16, target="50% params", target_epoch=1,
                            verbose=0)
    assert result.summary["params"] <= 0.5 * 431_080
    assert result.stripped.get_layer("conv2").filters < 50 or (
        result.stripped.get_layer("conv1").filters < 20)


def test_train_restores_numpy_and_python_random_state(digits):
    x, y, xt, yt = digits
    np.random.seed(123)
    random.seed(456)
    expected = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(456)
    training.train(data=((x[:100], y[:100]), (xt[:20], yt[:20])), arch="8", mode="dense",
                   epochs=1, verbose=0)
    assert (np.random.random(), random.random()) == expected


def test_train_rejects_bad_options_before_training(digits):
    x, y, xt, yt = digits
    data = ((x, y), (xt, yt))
    with pytest.raises(ValueError, match="out_dir"):
        training.train(data=data, mode="dense", exports="pi", verbose=0)
    with pytest.raises(ValueError, match="mode"):
        training.train(data=data, mode="magic", verbose=0)
    with pytest.raises(ValueError, match="budget applies to mode 'dynhp' only"):
        training.train(data=data, mode="hp", budget="1MB", verbose=0)
    with pytest.raises(ValueError, match="removes nothing"):
        training.train(data=data, mode="sp", target="10% params", verbose=0)
    with pytest.raises(ValueError, match="input_shape"):  # flat 64 features for a CNN
        training.train(data=data, arch="lenet5", epochs=1, verbose=0)


def test_user_model_file_is_pruned(digits, tmp_path):
    x, y, xt, yt = digits
    keras.utils.set_random_seed(0)
    own = keras.Sequential([keras.Input((64,)), keras.layers.Dense(24, activation="relu"),
                            keras.layers.Dense(10, activation="softmax")], name="mine")
    own.save(tmp_path / "mine.keras")
    result = training.train(data=((x, y), (xt, yt)), model_path=str(tmp_path / "mine.keras"),
                            mode="hp", epochs=3, batch_size=32, lr=3e-3, target="50% params",
                            target_epoch=1, verbose=0)
    assert result.summary["params"] <= 0.5 * own.count_params()
    assert result.summary["test_accuracy"] > 0.5


def test_cosine_epoch_schedule_decays_from_lr_towards_zero():
    schedule = training.cosine_epoch_schedule(1e-3, 10)
    assert schedule(0) == pytest.approx(1e-3)
    assert schedule(5) == pytest.approx(5e-4)
    assert schedule(9) < 3e-5
