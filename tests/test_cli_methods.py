"""`tfdynhp prune` and `tfdynhp specialize` on a saved .keras model, and `tfdynhp train
--method` with each pruning method end to end (summary, plots, exports)."""

import csv
import json

import keras
import pytest
from keras import layers

from tfdynhp import cli


@pytest.fixture(scope="module")
def saved_mlp(digits, tmp_path_factory):
    x, y = digits[:2]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), layers.Dense(16, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("cli") / "mlp.keras"
    model.save(path)
    return str(path)


def test_prune_writes_a_narrower_model(saved_mlp, tmp_path, capsys):
    out = str(tmp_path / "pruned.keras")
    code = cli.main(["prune", saved_mlp, "--dataset", "digits", "--criterion", "magnitude",
                     "--fraction", "0.5", "--out", out])
    assert code == 0
    assert keras.models.load_model(out).layers[0].units == 8
    assert '"criterion": "magnitude"' in capsys.readouterr().out


def test_specialize_writes_a_model_of_the_classes(saved_mlp, tmp_path):
    out = str(tmp_path / "special.keras")
    code = cli.main(["specialize", saved_mlp, "--dataset", "digits", "--classes", "3,1",
                     "--epochs", "1", "--out", out])
    assert code == 0
    model = keras.models.load_model(out)
    assert model.layers[-1].units == 2 and model.layers[0].units == 8


@pytest.mark.parametrize("argv, message", [
    (["prune", "--criterion", "l7"], "Unknown criterion 'l7'"),
    (["specialize", "--classes", "1,1"], "repeats [1]"),
    (["specialize", "--classes", "a"], "comma-separated integers"),
])
def test_bad_input_is_a_usage_error(saved_mlp, tmp_path, capsys, argv, message):
    out = str(tmp_path / "x.keras")
    code = cli.main([argv[0], saved_mlp, "--dataset", "digits", *argv[1:], "--out", out])
    assert code == 2
    assert message in capsys.readouterr().err


# --- `tfdynhp train --method`: every pruning method, the outputs of a DynHP run -----------------

DIGITS_MLP_PARAMS = 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10  # --arch 32,16 on digits
RUN_FILES = ("model.keras", "model_stripped.keras", "history.csv", "summary.json", "summary.md",
             "units.png", "batch_size.png", "memory.png", "val_error.png",
             "export/pi/model.tflite", "export/pi/predict.py")


def _train(argv, out, capsys):
    code = cli.main(["train", "--dataset", "digits", "--epochs", "3", "--export", "pi",
                     "--out", str(out), "--quiet", *argv])
    assert code == 0, capsys.readouterr().err
    for name in RUN_FILES:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == summary["epochs_run"] == 3
    assert {"dynhp/params", "dynhp/macs", "dynhp/paper_memory_bytes", "val_error"} <= set(
        history[0])
    # The summary's size is the exported model's; int8 within 2 points of float on digits.
    stripped = keras.models.load_model(out / "model_stripped.keras")
    assert summary["params"] == stripped.count_params()
    assert float(history[-1]["dynhp/params"]) == summary["params"]
    assert abs(summary["int8_test_error"] - summary["test_error"]) <= 0.02
    return summary, history, stripped


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dynhp", "activation-density", "pa", "fa", "ma"])
def test_train_with_each_method_on_an_mlp(method, tmp_path, capsys):
    argv = ["--arch", "32,16", "--method", method, "--lr", "0.01"]
    if method == "dynhp":
        argv += ["--mode", "hp", "--target", "50% params", "--target-epoch", "2"]
    summary, history, _ = _train(argv, tmp_path, capsys)
    assert summary["method"] == method
    assert summary["params"] < DIGITS_MLP_PARAMS  # every method removed units
    assert summary["test_error"] < 0.5  # chance is 0.9
    assert set(summary["units"]) >= {"dense_0", "dense_1"}
    if method in ("pa", "fa", "ma"):
        assert summary["amount"] == 0.5 and max(summary["complexity_plan"].values()) == 0.5
        assert history[0]["dynhp/params"] == history[-1]["dynhp/params"]  # fixed after init
    if method == "activation-density":
        assert float(history[0]["ad/params"]) < DIGITS_MLP_PARAMS
        assert summary["mode"] is None and summary["l0_lambda"] is None


@pytest.fixture(scope="module")
def saved_cnn(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              layers.Conv2D(12, 3, activation="relu", name="conv"),
                              layers.Flatten(), layers.Dense(24, activation="relu", name="fc"),
                              layers.Dense(10, activation="softmax")])
    path = tmp_path_factory.mktemp("cnn") / "cnn.keras"
    model.save(path)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["activation-density", "fa"])
def test_train_with_a_method_on_the_users_convolutional_model(method, saved_cnn, tmp_path,
                                                              capsys):
    summary, _, stripped = _train(["--model", saved_cnn, "--method", method, "--lr", "0.01"],
                                  tmp_path, capsys)
    assert summary["method"] == method and summary["model_path"] == saved_cnn
    assert stripped.get_layer("conv").filters < 12 or stripped.get_layer("fc").units < 24
    assert summary["params"] < keras.models.load_model(saved_cnn).count_params()


@pytest.mark.parametrize("argv, message", [
    (["--method", "pa", "--target", "50% params"], "`target` of DynHP do not apply to 'pa'"),
    (["--method", "activation-density", "--mode", "hp"], "`mode` of DynHP do not apply"),
    (["--method", "activation-density", "--amount", "0.3"], "`amount` applies to methods"),
    (["--method", "fa", "--amount", "1"], "Expected `amount` to be a finite number in [0, 0.999]"),
    (["--method", "lottery"], "invalid choice: 'lottery'"),
])
def test_train_method_options_that_do_not_apply_are_usage_errors(argv, message, tmp_path,
                                                                 capsys):
    try:
        code = cli.main(["train", "--dataset", "digits", "--out", str(tmp_path), *argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
