"""The `m4_instructions` resource: Cortex-M4 CMSIS-NN instructions estimated per layer.

Pure tests of the estimate (its fitted table against the points it was fitted to, per-MAC
rates, monotone in channels, the walk's totals and unit savings), the resource's names and
errors, a `25% m4_instructions` target met in a real fit, and (when the TFLM tree and the Arm
toolchain are here, as in tests/test_firmware.py) the estimate against QEMU's count.
"""

import itertools
import json
import os
import pathlib
import shutil

import keras
import numpy as np
import pytest
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp import costs
from tfdynhp.layer_types import instructions
from tfdynhp.policies import targets

REPO = pathlib.Path(__file__).resolve().parents[1]
FIT = REPO / "bench" / "results" / "m4_instructions_fit.json"
KIT_TREES = [p / "shared" / "tflm-kit" / "tflm" for p in REPO.parents]
TFLM_DIR = os.environ.get("TFLM_DIR") or str(next((p for p in KIT_TREES if p.is_dir()),
                                                  KIT_TREES[0]))


def _dscnn_block(channels, first=16, shape=(25, 5, 1), pool="global"):
    """A DS-CNN-like model: a first convolution, one depthwise + pointwise block, pooling
    (global: MEAN; `"average"`: the DS-CNN's AVERAGE_POOL_2D + flatten) and a softmax
    classifier."""
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(first, (5, 3), strides=2, padding="same", activation="relu",
                            name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.Conv2D(channels, 1, activation="relu", name="pw")(x)
    if pool == "global":
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        x = keras.layers.Flatten()(keras.layers.AveragePooling2D(x.shape[1:3], name="pool")(x))
    outputs = keras.layers.Dense(4, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs)


def _layer(model, name):
    return next(c for c in costs.layer_costs(model) if c.name == name)


def test_the_library_table_is_the_committed_fit_and_reproduces_its_points():
    fit = json.loads(FIT.read_text())
    assert {k: tuple(v) for k, v in fit["table"].items()} == instructions.CORTEX_M4_CMSIS_NN
    points = fit["points"]
    assert len(points) >= 50
    worst = {}
    for p in points:
        estimate = instructions.estimate(p["kind"], p["macs"], p["outputs"], p["inputs"],
                                         p["positions"], p["patches"], p["taps"])
        error = abs(estimate - p["instructions"]) / p["instructions"]
        worst[p["kind"]] = max(worst.get(p["kind"], 0.0), error)
    # Every fitted operator within 15 % (measured: 12.3 % worst, a pointwise layer).
    assert max(worst.values()) < 0.15, worst
    # Held out (the trained DS-CNNs of bench/firmware.py): each model's sum within 6 %.
    for model in {p["model"] for p in fit["held_out"]}:
        held = [p for p in fit["held_out"] if p["model"] == model]
        measured = sum(p["instructions"] for p in held)
        estimate = sum(p["estimate"] for p in held)
        assert abs(estimate - measured) / measured < 0.06, model


def test_a_depthwise_mac_costs_several_pointwise_macs():
    model = _dscnn_block(64, first=64)
    dw, pw = _layer(model, "dw"), _layer(model, "pw")
    per_mac = (dw.m4_instructions / dw.macs) / (pw.m4_instructions / pw.macs)
    assert 3.0 < per_mac < 8.0  # measured on the dense DS-CNN: 7.80 / 2.09 = 3.7
    # A narrow pointwise layer pays its cost per output over fewer MACs.
    narrow = _layer(_dscnn_block(64, first=8), "pw")
    assert narrow.m4_instructions / narrow.macs > 1.5 * pw.m4_instructions / pw.macs


@pytest.mark.parametrize("name", ["conv", "dw", "pw", "out"])
def test_the_estimate_grows_with_channels(name):
    estimates = [_layer(_dscnn_block(c, first=c), name).m4_instructions
                 for c in (4, 7, 16, 33, 64)]
    assert all(a < b for a, b in itertools.pairwise(estimates)), estimates


def test_totals_and_unit_savings_agree_with_the_walk():
    model = _dscnn_block(24)
    total = costs.model_costs(model)
    assert total.m4_instructions == pytest.approx(sum(c.m4_instructions for c in total.layers))
    assert _layer(model, "pool").m4_instructions > 0  # MEAN
    assert _layer(model, "out").m4_instructions > instructions.estimate(
        "fully_connected", 96, 4, 24)  # + SOFTMAX
    savings = costs.unit_costs(model, "m4_instructions")
    for group, saving in savings.items():
        units = {"conv": 16, "pw": 24}[group]
        mask = np.ones(units, bool)
        mask[0] = False
        after = costs.model_costs(model, keep_masks={group: mask}).m4_instructions
        assert saving == pytest.approx(total.m4_instructions - after)
        assert saving > 0


def test_the_resource_names_and_errors():
    assert "m4_instructions" in costs.RESOURCES
    for text in ("25% m4_instructions", "25% m4 instructions", "25 % instructions"):
        assert targets.parse_target(text) == targets.Target("m4_instructions", fraction=0.25)
    assert targets.parse_target("1.5M m4").amount == 1.5e6
    with pytest.raises(ValueError, match="unknown or missing resource 'cycles'.*'m4_instructions'"):
        targets.parse_target("25% cycles")
    with pytest.raises(ValueError, match="Unknown target resource 'flops'.*'m4_instructions'"):
        targets.Target("flops", fraction=0.5)
    with pytest.raises(ValueError, match="Unknown resource 'cycles'.*'m4_instructions'"):
        costs.unit_costs(_dscnn_block(8), "cycles")
    with pytest.raises(ValueError, match="Unknown operator kind 'lstm'.*'pointwise'"):
        instructions.estimate("lstm", macs=10)
    from tfdynhp.cli.main import build_parser

    args = build_parser().parse_args(["train", "--out", "x", "--target", "25% m4_instructions",
                                      "--penalty", "m4_instructions"])
    assert (args.target, args.penalty) == ("25% m4_instructions", "m4_instructions")


def test_a_tolerance_cut_can_count_instructions():
    from tfdynhp.policies import tolerance

    assert tolerance.Tolerance(resource="m4_instructions").resource == "m4_instructions"
    model = tfdynhp.gate(_dscnn_block(32, first=32), seed=0)
    savings = costs.unit_costs(model, "m4_instructions")
    importance = {name: np.linspace(1.0, 2.0, 32) for name in savings}
    keys = tolerance.rank_scores(importance, savings)
    before = tolerance.measure(model, "m4_instructions")
    _masks, after, removed = tolerance.propose_cut(model, keys, 0.2, "m4_instructions")
    assert 0.75 * before <= after <= 0.8 * before and removed > 0


@pytest.mark.slow
def test_a_model_pruned_to_a_quarter_of_its_instructions_lands_there():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 25, 5, 1)).astype("float32")
    y = (x[:, :12].mean(axis=(1, 2, 3)) > 0).astype("int32") + 2 * (x[:, :, :2].mean(
        axis=(1, 2, 3)) > 0).astype("int32")
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(_dscnn_block(32, first=32), seed=0)
    start = costs.model_costs(tfdynhp.strip(model)).m4_instructions
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    callback = DynHPCallback(target="25% m4_instructions", target_epoch=3)
    model.fit(x, y, epochs=4, batch_size=32, verbose=0, callbacks=[callback])
    final = costs.model_costs(tfdynhp.strip(model)).m4_instructions
    assert 0.2 * start < final <= 0.25 * start * (1 + 1e-9)
    # The gates were priced in instructions: the target's own resource.
    assert all(g.cost_resource == "m4_instructions" for g in model.gate_layers)


def _no_firmware():
    if not os.path.isfile(os.path.join(TFLM_DIR, "tensorflow/lite/micro/micro_interpreter.h")):
        return f"no TensorFlow Lite Micro tree at {TFLM_DIR} (set TFLM_DIR)"
    if not os.path.isdir(os.path.join(TFLM_DIR, "tensorflow/lite/micro/kernels/cmsis_nn")):
        return f"the TFLM tree at {TFLM_DIR} has no CMSIS-NN kernels"
    absent = [t for t in ("make", "arm-none-eabi-g++", "qemu-system-arm") if not shutil.which(t)]
    return f"{', '.join(absent)} not installed" if absent else None


@pytest.mark.slow
@pytest.mark.skipif(_no_firmware() is not None, reason=_no_firmware() or "")
def test_the_estimate_is_close_to_the_instructions_qemu_counts(tmp_path):
    from tfdynhp import converters

    keras.utils.set_random_seed(1)
    model = _dscnn_block(20, first=12, pool="average")  # the DS-CNN's operators (cached)
    data = np.random.default_rng(0).normal(size=(16, 25, 5, 1)).astype("float32")
    tflite = converters.to_int8_tflite(model, data)
    converters.export(tflite, "mcu", str(tmp_path), data)
    profiled = converters.firmware.profile_ops(str(tmp_path), TFLM_DIR, "cortex-m4",
                                               kernels="cmsis-nn", per_layer=True)
    measured = sum(n for _, n in profiled["layers"])
    estimate = costs.model_costs(model).m4_instructions
    assert abs(estimate - measured) / measured < 0.10, (estimate, profiled["layers"])  # +4.9 %
