"""End-to-end tests of tfdynhp.converters on a small MLP trained on sklearn's digits.

The float model is trained once per module (seeded); every test converts or exports it and
checks the result in LiteRT (ai-edge-litert) and TFLite Micro's Python interpreter.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tfdynhp import converters

arena = converters.arena
c_source = converters.c_source
tflite_model = converters.tflite_model

LABELS = [f"digit_{i}" for i in range(10)]


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def float_model(digits):
    x_train, _, y_train, _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=25, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def int8_bytes(float_model, digits):
    x_train = digits[0]
    return converters.to_int8_tflite(float_model, x_train[:200])


def _float_accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=-1) == y))


def test_int8_model_is_fully_integer(int8_bytes):
    info = converters.read_model_info(int8_bytes)
    assert info.ops == ("FULLY_CONNECTED", "SOFTMAX")
    assert info.float_ops == ()
    assert info.inputs[0].shape == (1, 64) and info.inputs[0].dtype == "int8"
    assert info.outputs[0].shape == (1, 10) and info.outputs[0].dtype == "int8"
    # Inputs in [0, 1] calibrate to scale 1/255 and zero point -128.
    assert info.inputs[0].scale == pytest.approx(1 / 255, rel=1e-3)
    assert info.inputs[0].zero_point == -128
    # 64*32 + 32*10 int8 weights plus int32 biases and the flatbuffer overhead.
    assert 64 * 32 + 32 * 10 < len(int8_bytes) < 8 * 1024


def test_int8_accuracy_matches_float_in_both_runtimes(float_model, int8_bytes, digits):
    _, x_test, _, y_test = digits
    float_acc = _float_accuracy(float_model, x_test, y_test)
    assert float_acc > 0.93
    for runtime in converters.RUNTIMES:
        result = converters.evaluate(int8_bytes, x_test, y_test, runtime=runtime)
        assert result["runtime"] == runtime
        assert result["num_samples"] == len(y_test)
        assert abs(result["accuracy"] - float_acc) <= 0.01, (runtime, result, float_acc)
        assert 0 < result["latency_ms_mean"] < 50
        assert result["latency_ms_p50"] <= result["latency_ms_p95"]


def _logits_model(float_model):
    """The trained MLP without its final softmax (same weights)."""
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )
    model.set_weights(float_model.get_weights())
    return model


def _runtime_outputs(tflite_bytes, x):
    litert_out, _ = converters.run_tflite(tflite_bytes, x, "litert")
    tflm_out, _ = converters.run_tflite(tflite_bytes, x, "tflm")
    assert litert_out.dtype == tflm_out.dtype == np.int8
    diff = np.abs(litert_out.astype(np.int32) - tflm_out.astype(np.int32))
    agree = np.mean(np.argmax(litert_out, -1) == np.argmax(tflm_out, -1))
    return diff, agree


def test_litert_and_tflm_agree_within_one_step(float_model, digits):
    x_train, x_test = digits[0], digits[1]
    tflite_bytes = converters.to_int8_tflite(_logits_model(float_model), x_train[:200])
    assert converters.read_model_info(tflite_bytes).ops == ("FULLY_CONNECTED",)
    diff, agree = _runtime_outputs(tflite_bytes, x_test)
    assert diff.max() <= 1  # XNNPACK (LiteRT) and TFLM's reference kernel round alike
    assert agree >= 0.99


def test_litert_and_tflm_agree_with_softmax(int8_bytes, digits):
    # LiteRT's int8 SOFTMAX (exp lookup table) and TFLM's (fixed-point exp) are different
    # algorithms: a few probabilities differ by a few 1/256 steps, classes do not.
    diff, agree = _runtime_outputs(int8_bytes, digits[1])
    assert np.mean(diff <= 1) >= 0.995
    assert diff.max() <= 8
    assert agree >= 0.99


def test_int8_outputs_track_keras_probabilities(float_model, int8_bytes, digits):
    x_test = digits[1][:100]
    raw, _ = converters.run_tflite(int8_bytes, x_test, "litert")
    info = converters.read_model_info(int8_bytes)
    probs = tflite_model.dequantize(raw, info.outputs[0])
    keras_probs = float_model.predict(x_test, verbose=0)
    assert np.max(np.abs(probs - keras_probs)) < 0.1


def test_uint8_io_runs_in_both_runtimes(float_model, digits):
    x_train, x_test, _, y_test = digits
    tflite_bytes = converters.to_int8_tflite(float_model, x_train[:200], io_dtype="uint8")
    info = converters.read_model_info(tflite_bytes)
    assert info.inputs[0].dtype == "uint8" and info.outputs[0].dtype == "uint8"
    assert info.inputs[0].zero_point == 0
    float_acc = _float_accuracy(float_model, x_test, y_test)
    for runtime in converters.RUNTIMES:
        result = converters.evaluate(tflite_bytes, x_test, y_test, runtime=runtime)
        assert abs(result["accuracy"] - float_acc) <= 0.01


class TakeFeatures(keras.layers.Layer):
    """Stand-in for tfdynhp.layers.gate.SelectFeatures: keeps the input features `indices`."""

    def __init__(self, indices, **kwargs):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]

    def call(self, x):
        return keras.ops.take(x, self.indices, axis=-1)


def test_feature_gather_converts_and_runs_in_both_runtimes(digits):
    x_train, x_test, y_train, _ = digits
    keras.utils.set_random_seed(1)
    kept = list(range(2, 64, 3))  # 21 of 64 features, as after input pruning
    inputs = keras.Input((64,))
    h = TakeFeatures(kept)(inputs)
    h = keras.layers.Dense(16, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)

    tflite_bytes = converters.to_int8_tflite(model, x_train[:100])
    info = converters.read_model_info(tflite_bytes)
    assert info.ops[0] == "GATHER" and "FULLY_CONNECTED" in info.ops
    assert "resolver.AddGather()" in c_source.op_resolver_header(info.ops)
    litert_out, _ = converters.run_tflite(tflite_bytes, x_test[:50], "litert")
    tflm_out, _ = converters.run_tflite(tflite_bytes, x_test[:50], "tflm")
    assert np.abs(litert_out.astype(int) - tflm_out.astype(int)).max() <= 1
    keras_classes = np.argmax(model.predict(x_test[:50], verbose=0), -1)
    assert np.mean(np.argmax(litert_out, -1) == keras_classes) >= 0.9


def test_gated_model_is_stripped_before_conversion(float_model, digits, monkeypatch):
    calls = []

    class FakeGating:
        @staticmethod
        def is_gated_model(model):
            calls.append("is_gated_model")
            return True

        @staticmethod
        def strip(model):
            calls.append("strip")
            return float_model

        @staticmethod
        def float32_model(model):
            calls.append("float32_model")
            return model

    # A model of another shape stands for the gated one: the file must have the stripped
    # model's input.
    gated = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    monkeypatch.setitem(sys.modules, "tfdynhp.model.gating", FakeGating)
    tflite_bytes = converters.to_int8_tflite(gated, digits[0][:20])
    assert calls == ["is_gated_model", "strip", "float32_model"]
    assert converters.read_model_info(tflite_bytes).inputs[0].shape == (1, 64)


def test_export_pi_predict_script_runs_without_tensorflow(int8_bytes, digits, tmp_path):
    x_test = digits[1]
    paths = converters.export(int8_bytes, "pi", tmp_path / "pi", x_test[:5], labels=LABELS)
    assert set(paths) == {"model", "labels", "model_json", "predict_script", "sample"}
    meta = json.loads(pathlib.Path(paths["model_json"]).read_text())
    assert meta["input"]["shape"] == [1, 64] and meta["input"]["dtype"] == "int8"
    assert meta["ops"] == ["FULLY_CONNECTED", "SOFTMAX"]
    assert pathlib.Path(paths["labels"]).read_text().splitlines() == LABELS
    assert pathlib.Path(paths["model"]).read_bytes() == int8_bytes
    np.save(tmp_path / "batch.npy", x_test[:5])

    # Run the script as a Pi would: copied elsewhere, TensorFlow not importable.
    device = tmp_path / "device"
    shutil.copytree(tmp_path / "pi", device)
    block_tf = (
        "import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    expected, _ = converters.run_tflite(int8_bytes, x_test[:5], "litert")
    expected = np.argmax(expected, -1)
    for npy, want in ((device / "sample.npy", expected[:1]), (tmp_path / "batch.npy", expected)):
        proc = subprocess.run(
            [sys.executable, "-c", block_tf, str(device / "predict.py"), str(npy)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        found = re.findall(r"^(\d+): class (\d+) \((\w+)\)", proc.stdout, flags=re.MULTILINE)
        assert [int(k) for _, k, _ in found] == list(want)
        assert [label for _, _, label in found] == [LABELS[k] for k in want]


def test_export_android_writes_assets_in_project_layout(int8_bytes, digits, tmp_path):
    x_test = digits[1]
    paths = converters.export(int8_bytes, "android", tmp_path, x_test[3:10], labels=LABELS)
    assets = tmp_path / "app" / "src" / "main" / "assets"
    assert paths["assets_dir"] == str(assets)
    assert sorted(os.listdir(assets)) == ["labels.txt", "model.json", "model.tflite", "sample.json"]
    sample = json.loads((assets / "sample.json").read_text())
    assert np.allclose(sample["input"], x_test[3])
    expected, _ = converters.run_tflite(int8_bytes, x_test[3:4], "litert")
    assert sample["expected_class"] == int(np.argmax(expected))
    assert sample["expected_label"] == LABELS[sample["expected_class"]]


@pytest.fixture(scope="module")
def mcu_bundle(int8_bytes, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("mcu")
    paths = converters.export(int8_bytes, "mcu", out, digits[1][:5], labels=LABELS)
    return out, paths


def test_export_mcu_files_and_report(mcu_bundle, int8_bytes):
    paths = mcu_bundle[1]
    for key in ("model_data_cc", "model_data_h", "model_ops_h", "model_settings_h", "main_cc"):
        assert os.path.getsize(paths[key]) > 0
    ops_h = pathlib.Path(paths["model_ops_h"]).read_text()
    assert "tflite::MicroMutableOpResolver<kModelOpCount>" in ops_h
    assert "constexpr int kModelOpCount = 2;" in ops_h
    # int8-only kernel variants where TFLite Micro has them (CMSIS-NN's int8 code only).
    assert re.findall(r"resolver\.(Add\w+)\((tflite::\w+\(\))?\)", ops_h) == [
        ("AddFullyConnected", "tflite::Register_FULLY_CONNECTED_INT8()"),
        ("AddSoftmax", "tflite::Register_SOFTMAX_INT8()"),
    ]
    report = json.loads(pathlib.Path(paths["report_json"]).read_text())
    assert report["board"]["name"] == "nano33ble"
    assert report["board"]["flash_bytes"] == 1024 * 1024
    assert report["flash"]["model_bytes"] == len(int8_bytes)
    assert report["arena"]["arena_bytes"] == arena.arena_size_with_margin(
        report["arena"]["measured_bytes"], 0.25
    )
    assert report["fits"] is True
    settings = pathlib.Path(paths["model_settings_h"]).read_text()
    assert f"kTensorArenaSize = {report['arena']['arena_bytes']};" in settings
    md = pathlib.Path(paths["report_md"]).read_text()
    assert f"{report['arena']['measured_bytes']} B measured" in md and "| Flash (model) |" in md


def test_reported_arena_is_real(mcu_bundle, int8_bytes):
    report = json.loads(pathlib.Path(mcu_bundle[1]["report_json"]).read_text())
    measured = report["arena"]["measured_bytes"]
    with_margin = report["arena"]["arena_bytes"]
    assert arena.runs_with_arena(int8_bytes, with_margin)
    assert arena.runs_with_arena(int8_bytes, measured)
    assert not arena.runs_with_arena(int8_bytes, measured - arena.ALIGNMENT)
    assert not arena.runs_with_arena(int8_bytes, (with_margin // 2) // 16 * 16)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a host C++ compiler")
def test_model_data_cc_compiles_and_matches_tflite(mcu_bundle, int8_bytes, tmp_path):
    out, paths = mcu_bundle
    subprocess.run(
        ["g++", "-c", "-std=c++17", "-Wall", "-Werror", paths["model_data_cc"], "-o",
         str(tmp_path / "model_data.o")],
        check=True, cwd=out, timeout=120,
    )
    main = tmp_path / "check.cc"
    main.write_text(
        '#include <cstdint>\n#include <cstdio>\n#include "model_data.h"\n'
        '#include "model_settings.h"\n'
        "int main() {\n"
        "  unsigned long sum = 0;\n"
        "  for (unsigned int i = 0; i < g_model_data_len; ++i) sum += g_model_data[i];\n"
        '  std::printf("%u %lu %d %d %d\\n", g_model_data_len, sum,\n'
        "              int(reinterpret_cast<std::uintptr_t>(g_model_data) % 16),\n"
        "              kTensorArenaSize, kSampleExpectedClass);\n"
        "}\n"
    )
    exe = tmp_path / "check"
    subprocess.run(
        ["g++", "-std=c++17", "-Wall", "-Werror", f"-I{out}", str(main),
         str(tmp_path / "model_data.o"), "-o", str(exe)],
        check=True, timeout=120,
    )
    length, checksum, misalign, arena_size, expected = map(
        int, subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    )
    report = json.loads(pathlib.Path(paths["report_json"]).read_text())
    assert length == len(int8_bytes)
    assert checksum == sum(int8_bytes)
    assert misalign == 0
    assert arena_size == report["arena"]["arena_bytes"]
    assert expected == report["sample_expected_class"]


def test_predict_script_states_the_models_input_shape(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])
    x = np.random.default_rng(0).uniform(0, 1, (20, 5, 3)).astype("float32")
    paths = converters.export(model, "pi", tmp_path, x)
    script = pathlib.Path(paths["predict_script"]).read_text()
    assert "one sample of shape (5, 3)" in script
    assert "shape (5, 3) or (1, 5, 3)" in script and "shape (N, 5, 3)" in script
    assert "(64,)" not in script and "__SAMPLE_SHAPE__" not in script
    help_text = subprocess.run(
        [sys.executable, paths["predict_script"], "--help"], capture_output=True, text=True,
        check=True, timeout=120,
    ).stdout
    assert "one sample of shape (5, 3)" in help_text
    assert converters.pi.predict_script("x __SAMPLE_SHAPE__ __BATCH_SHAPE__", (64,)) == (
        "x (64,) (N, 64)"
    )
