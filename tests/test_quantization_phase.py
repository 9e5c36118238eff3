"""The QAT phase of a DynHP run: `fold_gates` (strip in place), `DynHPCallback(final_phase="qat")`
pruning to a target then fine-tuning quantization-aware in the same `fit` (also under
MirroredStrategy on two CPUs), and its int8 export against its simulation."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import (
    assert_int8_matches_simulation,
    bn_cnn,
    close_gates,
    gates_of,
    randomize_batchnorm,
)
from tfdynhp.callbacks import DynHPCallback
from tfdynhp.converters.int8_check import op_quantization

import tfdynhp
from tfdynhp import converters
from tfdynhp.model import fold_gates
from tfdynhp.quantization import QATPhase, quantized_forward
from tfdynhp.validation import ConfigurationError

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")


def test_fold_gates_strips_in_place_and_leaves_identity_gates():
    rng = np.random.default_rng(0)
    model = tfdynhp.gate(bn_cnn(), seed=0)
    randomize_batchnorm(model, rng)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    gates = list(gates_of(model).values())
    close_gates(gates[0], [0, 3])  # removed
    half = keras.ops.convert_to_numpy(gates[1].log_alpha).copy()
    half[[1, 2]] = 0.0  # z_hat = 0.5: folded into the kernel reading these channels
    gates[1].log_alpha.assign(half)
    x = rng.normal(size=(20, 8, 8, 1)).astype("float32")
    before = model.predict(x, verbose=0)
    stripped_before = tfdynhp.strip(model)
    width = gates[0].units

    assert fold_gates(model) is model
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-5)
    assert gates[0].units == width - 2
    for gate in model.gate_layers:
        assert gate.frozen and np.all(gate.test_time_gates() == 1.0)
    # strip() of the folded model is the strip() of the model before.
    stripped = tfdynhp.strip(model)
    for new, old in zip(stripped.weights, stripped_before.weights):
        np.testing.assert_allclose(new, old, rtol=1e-6, atol=1e-7)
    model.fit(x, np.zeros(20, "int32"), epochs=1, verbose=0)  # keeps training
    with pytest.raises(ValueError, match="no gated layer"):
        fold_gates(bn_cnn())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"final_phase": "qat"}, ValueError, "give a `target`"),
        ({"final_phase": "quantize", "target": "50% params"}, ValueError, "final_phase"),
    ],
)
def test_final_phase_is_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        DynHPCallback(**kwargs)


def test_qat_phase_options_and_model_are_checked():
    with pytest.raises(ValueError, match="ema_decay"):
        QATPhase(ema_decay=1.0)
    with pytest.raises(ValueError, match="calibration_samples"):
        QATPhase(calibration_samples=0)
    with pytest.raises(TypeError, match="GatedModel"):
        QATPhase().start(bn_cnn())
    assert DynHPCallback(target="50% params", final_phase="qat").final_phase == "qat"


def test_the_train_command_takes_a_qat_final_phase_with_a_target_only(tmp_path, capsys):
    from tfdynhp.cli import train as cli_train
    from tfdynhp.cli.main import build_parser, main

    base = ["train", "--out", str(tmp_path / "run"), "--target", "25% macs"]
    args = build_parser().parse_args(base + ["--final-phase", "qat"])
    assert cli_train._run_options(args)[1].final_phase == "qat"
    args = build_parser().parse_args(base + ["--final-phase", "none"])
    assert cli_train._run_options(args)[1].final_phase is None
    assert main(["train", "--out", str(tmp_path / "run"), "--final-phase", "qat"]) == 2
    assert "--final-phase qat" in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_dynhp_prunes_to_the_target_then_fine_tunes_quantization_aware_in_the_same_fit(
        digits, tmp_path):
    x, y, x_test, y_test = digits
    x, x_test = x.reshape(-1, 8, 8, 1), x_test.reshape(-1, 8, 8, 1)
    dense = bn_cnn()
    model = tfdynhp.gate(dense, seed=0)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    callback = DynHPCallback(target="40% params", target_epoch=3, final_phase="qat")
    history = model.fit(tfdynhp.DynamicBatches(x, y, batch_size=32, seed=0), epochs=5,
                        callbacks=[callback], verbose=0)
    assert history.history["dynhp/qat"] == [0.0, 0.0, 0.0, 1.0, 1.0]
    params = history.history["dynhp/params"]
    assert params[2] == params[-1] <= 0.4 * dense.count_params()  # no pruning in the QAT phase
    assert quantized_forward(model) is callback.qat_model is model.forward
    # The model now computes its int8 simulation; its file needs no representative data.
    tflite = converters.to_int8_tflite(model)
    assert_int8_matches_simulation(tflite, model, x_test)
    assert converters.evaluate(tflite, x_test, y_test, "litert",
                               time_latency=False)["accuracy"] >= 0.9
    # The pruned shapes: the same ops and weights as the post-training file of strip(model).
    stripped = tfdynhp.strip(model)
    assert stripped.count_params() == params[-1]
    ptq = converters.to_int8_tflite(stripped, x[:300])
    assert [(op.op, op.weight_shape, op.output_shape) for op in op_quantization(tflite)] == [
        (op.op, op.weight_shape, op.output_shape) for op in op_quantization(ptq)]

    # A new pruning run would train the float graph: refused until the forward is reset.
    with pytest.raises(ConfigurationError, match="replace_forward"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[DynHPCallback(target="30% params")])
    # Saved and resumed past its target, the run goes on quantization-aware.
    model.save(tmp_path / "qat_run.keras")
    resumed = keras.saving.load_model(tmp_path / "qat_run.keras")
    assert resumed.forward is None and all(gate.frozen for gate in resumed.gate_layers)
    callback = DynHPCallback(target="40% params", target_epoch=3, final_phase="qat")
    history = resumed.fit(x, y, batch_size=32, initial_epoch=5, epochs=6, verbose=0,
                          callbacks=[callback])
    assert history.history["dynhp/qat"] == [1.0] and quantized_forward(resumed) is not None
    assert tfdynhp.parameter_count(resumed) == params[-1]


@pytest.mark.slow
def test_qat_phase_under_mirrored_strategy_on_two_cpus():
    result = subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "mirrored_qat_fit.py")],
        check=True, capture_output=True, text=True, timeout=600,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["qat"] == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert report["params"][-1] <= 0.5 * report["start_params"]
    assert report["range_is_mirrored"]
    # The tracked ranges moved in the two QAT epochs, from their calibration.
    assert report["ranges"] != report["calibrated_ranges"]
    assert report["ranges"][-1] == [0.0, 255 / 256]  # the softmax's fixed range
    for runtime in ("litert", "tflm"):
        assert report["agreement"][runtime]["argmax_agreement"] >= 0.995, report
    assert report["test_accuracy_int8"] > 0.8


@pytest.mark.slow
def test_a_training_run_with_a_qat_final_phase_exports_its_own_ranges(digits, tmp_path):
    from tfdynhp import training

    x, y, x_test, y_test = digits
    result = training.train(
        data=((x, y), (x_test, y_test)), out_dir=tmp_path, exports=("pi",), verbose=0,
        arch="mlp", hidden=(32,), mode="dynhp", epochs=3, batch_size=32, lr=3e-3,
        target="60% params", target_epoch=2, final_phase="qat", validation_split=0.1,
    )
    assert quantized_forward(result.model) is not None
    with open(result.summary["exports"]["pi"]["model"], "rb") as f:
        exported = f.read()
    assert exported == converters.to_int8_tflite(result.model)  # the QAT ranges, not PTQ
    assert result.summary["int8_test_accuracy"] > 0.8
