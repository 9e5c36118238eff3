"""Tests for the `tfdynhp` command line: an end-to-end DynHP run with all three exports,
report regeneration, and one-line errors with exit code 2 on bad input."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfdynhp import cli, datasets

FASHION_DIR = datasets.DEFAULT_FASHION_MNIST_DIR
HAVE_FASHION = all(
    os.path.isfile(os.path.join(FASHION_DIR, stem + ".gz"))
    for stem in datasets.FASHION_MNIST_FILES.values()
)
EPOCHS = 2


def run(argv, capsys):
    """Runs `tfdynhp argv` in-process; returns (exit code, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def dynhp_run(tmp_path_factory):
    if not HAVE_FASHION:
        pytest.skip("needs `sudo apt-get install dataset-fashion-mnist`")
    out = tmp_path_factory.mktemp("run") / "fmnist"
    code = cli.main([
        "train", "--dataset", "fashion-mnist", "--limit-train", "2000", "--mode", "dynhp",
        "--epochs", str(EPOCHS), "--target", "40% params", "--target-epoch", "2",
        "--export", "pi,android,mcu", "--out", str(out), "--quiet",
    ])
    return code, out


def test_train_end_to_end(dynhp_run):
    code, out = dynhp_run
    assert code == 0
    for name in ("model.keras", "model_stripped.keras", "history.csv", "summary.json",
                 "summary.md", "units.png", "batch_size.png", "memory.png", "val_error.png"):
        assert (out / name).stat().st_size > 0, name
    for png in ("units.png", "batch_size.png", "memory.png", "val_error.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == EPOCHS
    assert {"dynhp/batch_size", "dynhp/paper_memory_bytes", "val_accuracy"} <= set(rows[0])
    assert (out / "export/pi/model.tflite").stat().st_size > 0
    assert (out / "export/android/app/src/main/assets/model.tflite").stat().st_size > 0
    assert (out / "export/mcu/model_data.cc").stat().st_size > 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "dynhp" and summary["n_train"] == 1800  # 10% validation
    assert summary["epochs_run"] == EPOCHS
    assert 0.0 < summary["test_error"] < 0.4  # well below chance (0.9) after 2 epochs
    assert summary["params"] <= 0.4 * 266_610  # the target
    assert summary["target"] == "40% params"
    assert summary["model_size_bytes"] == 4 * summary["params"]
    assert summary["budget_bytes"] > 0
    paper = summary["mean_training_memory_paper_bytes"]
    assert 0 < paper <= summary["budget_bytes"]
    assert summary["mean_training_memory_full_bytes"] > paper
    assert summary["tflite_bytes"] == (out / "export/pi/model.tflite").stat().st_size
    # The README's promise: int8 within 1 point of float; TFLite Micro agrees with LiteRT.
    assert abs(summary["int8_test_error"] - summary["test_error"]) <= 0.01
    tflm = summary["exports"]["tflm"]  # the first 500 test examples, LiteRT on the same ones
    assert tflm["num_samples"] == 500
    assert abs(tflm["accuracy"] - tflm["litert_accuracy_same_samples"]) <= 0.01
    assert tflm["litert_agreement"] >= 0.98
    assert summary["final_batch_size"] > 16  # the batch grew


def test_report_regenerates_plots(dynhp_run, capsys):
    _, out = dynhp_run
    for png in ("units.png", "memory.png"):
        (out / png).unlink()
    code, stdout, _ = run(["report", str(out)], capsys)
    assert code == 0
    assert (out / "units.png").stat().st_size > 0 and (out / "memory.png").stat().st_size > 0
    assert "summary.md" in stdout


def test_evaluate_tflite(dynhp_run, capsys):
    _, out = dynhp_run
    code, stdout, _ = run(["evaluate", str(out / "export/pi/model.tflite"), "--dataset",
                           "fashion-mnist", "--runtime", "tflm", "--limit", "50", "--json"],
                          capsys)
    assert code == 0
    result = json.loads(stdout)
    assert result["num_samples"] == 50 and result["runtime"] == "tflm"


def test_export_from_saved_model(dynhp_run, tmp_path, capsys):
    _, out = dynhp_run
    code, stdout, err = run(["export", str(out / "model.keras"), "--to", "pi",
                             "--out", str(tmp_path / "new")], capsys)
    assert code == 0, stdout
    assert (tmp_path / "new" / "pi" / "model.tflite").stat().st_size > 0
    assert "deprecated" not in err
    # The old spelling still works, with a deprecation message.
    code, stdout, err = run(["export", str(out / "model.keras"), "--target", "pi",
                             "--out", str(tmp_path / "old")], capsys)
    assert code == 0, stdout
    assert "--target is deprecated, use --to" in err
    assert (tmp_path / "old" / "pi" / "model.tflite").read_bytes() == (
        tmp_path / "new" / "pi" / "model.tflite").read_bytes()


def check_usage_error(argv, capsys, match):
    code, _, err = run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert match in lines[0]
    assert "Traceback" not in err


def test_unknown_dataset(tmp_path, capsys):
    check_usage_error(["train", "--dataset", "cifar-1000", "--out", str(tmp_path)], capsys,
                        "Unknown data set 'cifar-1000'")


def test_unparsable_budget(tmp_path, capsys):
    check_usage_error(["train", "--budget", "12XB", "--out", str(tmp_path)], capsys,
                        "cannot parse --budget '12XB'")


def test_npz_missing_keys(tmp_path, capsys):
    path = tmp_path / "data.npz"
    np.savez(path, x_train=np.zeros((3, 4)), y_train=np.zeros(3))
    check_usage_error(["train", "--dataset", str(path), "--out", str(tmp_path / "o")],
                        capsys, "missing keys ['x_test', 'y_test']")


def test_missing_npz_file(tmp_path, capsys):
    check_usage_error(["train", "--dataset", str(tmp_path / "nope.npz"), "--out",
                         str(tmp_path)], capsys, "not found")


def test_output_folder_not_writable(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    check_usage_error(["train", "--dataset", "digits", "--out", str(blocker / "sub")],
                        capsys, "not writable")
    check_usage_error(["train", "--dataset", "digits", "--out", str(blocker)], capsys,
                        "not a folder")


def test_unknown_export_target(tmp_path, capsys):
    check_usage_error(["train", "--export", "pi,toaster", "--out", str(tmp_path)], capsys,
                        "Unknown export target(s) ['toaster']")


def test_unparsable_and_unreachable_targets(tmp_path, capsys):
    check_usage_error(["train", "--target", "32 bananas", "--out", str(tmp_path)], capsys,
                      "name what to count")
    check_usage_error(["train", "--dataset", "digits", "--arch", "8", "--target", "5 params",
                       "--epochs", "1", "--out", str(tmp_path), "--quiet"], capsys,
                      "cannot be reached")


def test_internal_errors_keep_their_traceback(tmp_path, capsys, monkeypatch):
    from tfdynhp import training

    def broken(**kwargs):
        raise ValueError("an internal Keras failure")

    monkeypatch.setattr(training, "train", broken)
    with pytest.raises(ValueError, match="internal Keras failure"):
        cli.main(["train", "--dataset", "digits", "--out", str(tmp_path), "--quiet"])


def test_budget_too_small(tmp_path, capsys):
    check_usage_error(["train", "--dataset", "digits", "--budget", "1KB", "--epochs", "1",
                         "--out", str(tmp_path), "--quiet"], capsys, "too small")


def test_argparse_errors_are_one_line(tmp_path, capsys):
    check_usage_error(["train", "--mode", "magic", "--out", str(tmp_path)], capsys,
                        "invalid choice: 'magic'")
    check_usage_error(["train", "--epochs", "0", "--out", str(tmp_path)], capsys,
                        "expected a positive integer")


def test_other_commands_bad_input(tmp_path, capsys):
    check_usage_error(["evaluate", str(tmp_path / "m.tflite")], capsys, "not found")
    check_usage_error(["report", str(tmp_path)], capsys, "no history.csv")
    check_usage_error(["export", str(tmp_path / "m.keras"), "--to", "pi", "--out",
                       str(tmp_path / "o")], capsys, "not found")
    check_usage_error(["export", str(tmp_path / "m.keras"), "--to", "fpga", "--out",
                       str(tmp_path / "o")], capsys, "Unknown export target")
    check_usage_error(["export", str(tmp_path / "m.keras"), "--out", str(tmp_path / "o")],
                      capsys, "--to needs at least one of pi, android, mcu")
    check_usage_error(["export", str(tmp_path / "m.keras"), "--to", "pi", "--target", "mcu",
                       "--out", str(tmp_path / "o")], capsys, "give the bundles once")


def test_console_script_exit_code_and_no_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "tfdynhp.cli", "train", "--dataset", "nope", "--out",
         str(tmp_path)],
        check=False, capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "tfdynhp train: error: Unknown data set 'nope'" in completed.stderr


def test_variance_every_below_one_is_a_usage_error(tmp_path, capsys):
    check_usage_error(["train", "--dataset", "digits", "--variance-every", "0", "--epochs", "1",
                       "--out", str(tmp_path), "--quiet"], capsys,
                      "--variance-every: expected a positive integer, got '0'")


def test_architecture_that_does_not_take_the_data_is_a_usage_error(tmp_path, capsys):
    # digits has 64 features per example; LeNet-5 takes images of at least 16x16.
    check_usage_error(["train", "--dataset", "digits", "--arch", "lenet5", "--epochs", "1",
                       "--out", str(tmp_path), "--quiet"], capsys,
                      "Architecture 'lenet5' cannot take the examples of digits, of shape (64,)")


def _npz(path, shape, classes=3, n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype("float32")
    y = np.arange(n) % classes
    np.savez(path, x_train=x[:48], y_train=y[:48], x_test=x[48:], y_test=y[48:])
    return str(path)


def test_banner_gives_the_shape_of_a_users_sequences(tmp_path, capsys):
    import keras

    data = _npz(tmp_path / "seq.npz", (16, 1))
    model = keras.Sequential([keras.Input((16, 1)), keras.layers.Conv1D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "seq.keras")
    code, out, _ = run(["train", "--model", str(tmp_path / "seq.keras"), "--dataset", data,
                        "--mode", "dense", "--epochs", "1", "--validation-split", "0",
                        "--out", str(tmp_path / "run")], capsys)
    assert code == 0
    assert "(48 train / 12 test, examples (16, 1))" in out.splitlines()[0]


def test_grey_images_of_a_npz_get_a_channel_for_a_convolutional_architecture(tmp_path, capsys):
    data = _npz(tmp_path / "img.npz", (16, 16))
    code, out, _ = run(["train", "--arch", "lenet5", "--dataset", data, "--mode", "dense",
                        "--epochs", "1", "--validation-split", "0", "--out",
                        str(tmp_path / "run")], capsys)
    assert code == 0, out
    assert "examples (16, 16))" in out.splitlines()[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["arch"] == "lenet5" and summary["epochs_run"] == 1


def test_output_to_a_file_or_pipe_is_one_line_per_epoch(tmp_path, capsys):
    # capsys's stdout is not a terminal, as in `make train > log`: no progress-bar redraws.
    code, out, _ = run(["train", "--dataset", "digits", "--arch", "16", "--mode", "hp",
                        "--epochs", "3", "--limit-train", "400", "--out", str(tmp_path)], capsys)
    assert code == 0
    assert "\r" not in out and "\b" not in out
    lines = out.splitlines()
    steps = [line for line in lines if " - loss: " in line or "- accuracy: " in line]
    assert len(steps) == 3, out  # one Keras line per epoch (verbose=2)
    assert sum(line.startswith("DynHP epoch") for line in lines) == 3
    assert len(out) < 6000, len(out)
