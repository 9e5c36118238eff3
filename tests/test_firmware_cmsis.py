"""CMSIS-NN kernels in the `mcu` bundle: the kernel table against the TFLM tree, the int8-only
registrations, and firmware built with Arm's CMSIS-NN kernels running bit-exact against Python
TFLM under QEMU Cortex-M4, for a small CNN and a DynHP-pruned depthwise CNN, side by side with
the reference kernels.

TFLM with CMSIS-NN comes from `$TFLM_DIR` or `../shared/tflm-kit/tflm` (its `third_party/
cmsis_nn` and `third_party/cmsis`); without it, or without the Arm toolchain and QEMU, the build
tests skip and say why. Only the CMSIS-NN sources of the model's operators are compiled, and
cached with the other TFLM objects (`~/.cache/tfdynhp/tflm` or `$TFLM_CACHE`): measured on the
shared 2-core machine, a cold cache costs 111 sources for the small CNN (core + 6 kernels + 64
CMSIS-NN files, about 3.5 min), the reference build then only its 5 reference kernels (about
45 s, the core is shared), a warm build under 10 s.
"""

import json
import os
import pathlib
import re
import shutil

import keras
import numpy as np
import pytest
from tfdynhp.callbacks import DynHPCallback
from tfdynhp.converters import c_source, firmware, kernel_deps, kernels, mcu, tflite_model

import tfdynhp
from tfdynhp import cli, converters

REPO = pathlib.Path(__file__).resolve().parents[1]
KIT_TREES = [p / "shared" / "tflm-kit" / "tflm" for p in REPO.parents]  # next to a checkout
TFLM_DIR = os.environ.get("TFLM_DIR") or str(next((p for p in KIT_TREES if p.is_dir()),
                                                  KIT_TREES[0]))
CACHE_DIR = os.environ.get("TFLM_CACHE")


def _missing():
    """Why CMSIS-NN Cortex-M firmware cannot be built here, or None."""
    if kernel_deps.find_cmsis_nn(TFLM_DIR) is None:
        return f"no TensorFlow Lite Micro tree with CMSIS-NN at {TFLM_DIR} (set TFLM_DIR)"
    absent = [t for t in ("make", "arm-none-eabi-g++", "qemu-system-arm") if not shutil.which(t)]
    if absent:
        return (f"{', '.join(absent)} not installed (as root: bash scripts/setup.sh, or "
                f"apt-get install {firmware.APT_PACKAGES})")
    return None


REASON = _missing()
if REASON:
    print(f"test_firmware_cmsis: skipping CMSIS-NN builds: {REASON}")
needs_cmsis = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def verify(bundle, kernels=None, target="cortex-m4"):
    return converters.verify_mcu(bundle, TFLM_DIR, target, kernels=kernels, cache_dir=CACHE_DIR)


def _digits_cnn(filters, pointwise):
    """A CNN on 8x8 digits with the DS-CNN operators: Conv2D(`filters`, 3), DepthwiseConv2D,
    Conv2D(`pointwise`, 1), AveragePooling2D, Flatten, Dense(10)."""
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.Conv2D(pointwise, 1, activation="relu"), keras.layers.AveragePooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax"),
    ])


@pytest.fixture(scope="module")
def small_cnn(digits):
    """A small CNN on 8x8 digits with the DS-CNN operators: CONV_2D, DEPTHWISE_CONV_2D,
    AVERAGE_POOL_2D, FULLY_CONNECTED, SOFTMAX (a few epochs, full int8)."""
    x, y, _, _ = digits
    images = x.reshape(-1, 8, 8, 1)
    keras.utils.set_random_seed(0)
    model = _digits_cnn(12, 16)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(images, y, epochs=2, batch_size=64, verbose=0)
    return converters.to_int8_tflite(model, images[:200]), images


@pytest.fixture(scope="module")
def pruned_cnn(digits):
    """A depthwise-separable CNN gated and pruned by DynHP to half its MACs in one fit."""
    x, y, _, _ = digits
    images = x.reshape(-1, 8, 8, 1)
    keras.utils.set_random_seed(1)
    base = _digits_cnn(16, 24)
    model = tfdynhp.gate(base, seed=0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(images, y, epochs=4, batch_size=64, verbose=0,
              callbacks=[DynHPCallback(target="50% macs")])
    stripped = tfdynhp.strip(model)
    conv = [layer.filters for layer in stripped.layers if isinstance(layer, keras.layers.Conv2D)]
    assert conv[0] < 16 and conv[1] < 24  # really pruned
    return converters.to_int8_tflite(stripped, images[:200]), images


def _export(tflite, images, tmp_path_factory, name):
    out = tmp_path_factory.mktemp(name)
    converters.export(tflite, "mcu", out, images[:200])
    return out


# ---- firmware: CMSIS-NN vs reference, bit-exact against Python TFLM ---------------------------


def _check_exact(result, bundle):
    _, reference = firmware.reference_outputs(bundle)
    assert result.bit_exact and result.mismatched_vectors == ()
    assert np.array_equal(result.outputs, reference)  # what the firmware printed


@pytest.mark.slow
@needs_cmsis
def test_small_cnn_cmsis_nn_bit_exact_and_faster(small_cnn, tmp_path_factory):
    tflite, images = small_cnn
    bundle = _export(tflite, images, tmp_path_factory, "cmsis-cnn")
    ops = converters.read_model_info(tflite).ops
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED"} <= set(ops)
    assert "Register_DEPTHWISE_CONV_2D_INT8()" in (bundle / "model_ops.h").read_text()

    cmsis = verify(bundle)  # the default on Cortex-M
    assert cmsis.kernels == "cmsis-nn" and cmsis.target == "cortex-m4"
    _check_exact(cmsis, bundle)
    log = (bundle / "build" / "cortex-m4" / "build.log").read_text()
    if cmsis.tflm_sources_compiled:  # a cold cache: exactly the model's CMSIS-NN files
        compiled = set(re.findall(r"^CC   cmsis_nn/(\S+)", log, re.MULTILINE))
        assert compiled == set(kernels.cmsis_nn_sources(ops))
        assert len(compiled) < 113  # not all of CMSIS-NN

    reference = verify(bundle, "reference")
    assert reference.kernels == "reference"
    _check_exact(reference, bundle)
    assert np.array_equal(cmsis.outputs, reference.outputs)
    assert reference.firmware_path.endswith("cortex-m4-reference/firmware.elf")
    # CMSIS-NN: several times fewer instructions, a few KB more code (int8 paths only).
    assert cmsis.instructions_per_inference * 3 < reference.instructions_per_inference
    assert 0 < cmsis.flash_bytes - reference.flash_bytes < 15 * 1024

    report = json.loads((bundle / "mcu_report.json").read_text())
    assert report["kernels"]["cortex-m"] == "cmsis-nn"
    assert report["firmware"]["cortex-m4"]["kernels"] == "cmsis-nn"
    assert report["firmware"]["cortex-m4/reference"]["kernels"] == "reference"
    md = (bundle / "mcu_report.md").read_text()
    assert f"| cortex-m4 | cmsis-nn | {cmsis.flash_bytes} B" in md
    assert f"| cortex-m4 | reference | {reference.flash_bytes} B" in md

    # Built again from a fresh copy: everything from the cache.
    again = tmp_path_factory.mktemp("cmsis-cnn-again")
    shutil.copytree(bundle, again, dirs_exist_ok=True, ignore=shutil.ignore_patterns("build"))
    assert verify(again).tflm_sources_compiled == 0

    # Per-operator profile (PROFILE=1: only the application is rebuilt): one entry per
    # operator of the graph in order, summing to the per-type totals.
    profile = firmware.profile_ops(again, TFLM_DIR, "cortex-m4", cache_dir=CACHE_DIR,
                                   per_layer=True)
    graph = [op for op, _, _ in tflite_model.op_shapes(tflite)]
    assert [op for op, _ in profile["layers"]] == graph
    assert all(n > 0 for op, n in profile["layers"] if op != "RESHAPE")
    for op, total in profile["model"].items():
        assert total == sum(n for o, n in profile["layers"] if o == op)
    assert (again / "build" / "profile" / "cortex-m4" / "build.log").is_file()  # its own log
    assert "build/profile" not in (again / "build" / "cortex-m4" / "run.log").read_text()
    conv = sum(n for op, n in profile["layers"] if op in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    assert conv < cmsis.instructions_per_inference * 1.1  # a part of one inference


@pytest.mark.slow
@needs_cmsis
def test_pruned_cnn_cmsis_nn_bit_exact(pruned_cnn, tmp_path_factory):
    tflite, images = pruned_cnn
    bundle = _export(tflite, images, tmp_path_factory, "cmsis-pruned")
    result = verify(bundle, "cmsis-nn")
    _check_exact(result, bundle)
    assert result.kernels == "cmsis-nn" and result.instructions_per_inference > 1_000


@pytest.mark.slow
@needs_cmsis
def test_cli_export_verify_with_kernels(tmp_path, capsys, digits, small_cnn):
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    code = cli.main(["export", str(tmp_path / "m.keras"), "--to", "mcu", "--dataset",
                     "digits", "--out", str(tmp_path / "out"), "--verify", "cortex-m4",
                     "--kernels", "reference", "--tflm-dir", TFLM_DIR])
    out = capsys.readouterr().out
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("mcu firmware"))
    assert line.startswith("mcu firmware cortex-m4 (reference kernels): bit-exact")
    report = json.loads((tmp_path / "out" / "mcu" / "mcu_report.json").read_text())
    assert set(report["firmware"]) == {"cortex-m4/reference"}  # the bundle's default: CMSIS-NN


# ---- bad input -------------------------------------------------------------------------------


def test_tree_without_cmsis_nn(small_cnn, tmp_path, tmp_path_factory):
    if REASON:
        pytest.skip(REASON)
    tflite, images = small_cnn
    bundle = _export(tflite, images, tmp_path_factory, "no-cmsis")
    tree = tmp_path / "tflm"
    shutil.copytree(TFLM_DIR, tree, ignore=shutil.ignore_patterns("cmsis_nn", "cmsis"))
    with pytest.raises(converters.FirmwareError,
                       match=r"lacks CMSIS-NN or CMSIS .*OPTIMIZED_KERNEL_DIR=cmsis_nn "
                             r"third_party_downloads.*or build with KERNELS=reference"):
        converters.verify_mcu(bundle, tree, "cortex-m4")


def test_kernel_set_errors(tmp_path, small_cnn):
    tflite, images = small_cnn
    with pytest.raises(ValueError, match=r"Unknown kernel set 'fast'. Expected one of"):
        converters.export(tflite, "mcu", tmp_path / "a", images[:10], kernels="fast")
    converters.export(tflite, "mcu", tmp_path / "b", images[:10])
    with pytest.raises(ValueError, match="CMSIS-NN kernels are for the Cortex-M targets"):
        converters.verify_mcu(tmp_path / "b", TFLM_DIR, "host", kernels="cmsis-nn")
    assert kernels.check_kernels("CMSIS_NN") == "cmsis-nn"
    assert kernels.check_kernels(None, "host") == "reference"
    assert kernels.check_kernels(None, "cortex-m3") == "cmsis-nn"


# ---- pure parts ------------------------------------------------------------------------------


def test_cmsis_nn_table_matches_the_tree():
    """`CMSIS_NN_SOURCES` is what `kernel_deps` reads from the tree; every wrapper replaces a
    reference kernel of the table, and its files exist."""
    if kernel_deps.find_cmsis_nn(TFLM_DIR) is None:
        pytest.skip(f"no TensorFlow Lite Micro tree with CMSIS-NN at {TFLM_DIR}")
    derived = kernel_deps.cmsis_nn_sources(TFLM_DIR)
    assert {k: tuple(v) for k, v in derived.items()} == kernels.CMSIS_NN_SOURCES
    root = pathlib.Path(kernel_deps.find_cmsis_nn(TFLM_DIR))
    for op, stem in kernels.CMSIS_NN_KERNELS.items():
        assert stem == kernels.KERNEL_SOURCES[op][0], op
        wrapper = pathlib.Path(TFLM_DIR) / kernels.CMSIS_NN_KERNEL_DIR / f"{stem}.cc"
        assert re.search(rf"TFLMRegistration Register_{op}\(\)", wrapper.read_text()), op
        assert all((root / f).is_file() for f in kernels.CMSIS_NN_SOURCES[stem])
    for op, function in kernels.INT8_REGISTRATIONS.items():
        wrapper = pathlib.Path(TFLM_DIR) / kernels.CMSIS_NN_KERNEL_DIR / (
            kernels.CMSIS_NN_KERNELS[op] + ".cc")
        assert re.search(rf"TFLMRegistration {function}\(\)", wrapper.read_text()), op


def test_call_graph_reader():
    text = """
    #include "x.h"
    /* arm_commented_out(1); */
    static int helper(int a) { return arm_b(a) + 1; }
    int arm_a(const int *p, int n)
    {
        if (n) { return arm_c(p[0]); }   // arm_not_called(2)
        return helper(n) + TABLE[0];
    }
    int arm_decl(int x);
    """
    bodies = kernel_deps.function_bodies(text)
    assert set(bodies) == {"helper", "arm_a"}
    assert kernel_deps.called(bodies["arm_a"]) == {"arm_c"}
    defined_in = {"arm_a": "a.c", "arm_c": "c.c", "arm_d": None, "TABLE": "t.c"}
    calls = {"arm_a": {"arm_c", "arm_d"}, "arm_d": {"TABLE"}}
    assert kernel_deps.closure({"arm_a"}, defined_in, calls) == ["a.c", "c.c", "t.c"]
    with pytest.raises(ValueError, match="No definition found for arm_x"):
        kernel_deps.closure({"arm_x"}, defined_in, calls)


def test_kernel_sources_and_model_makefile():
    ops = ["CONV_2D", "RESHAPE", "SOFTMAX"]
    reference = kernels.kernel_sources(ops)
    cmsis = kernels.kernel_sources(ops, "cmsis-nn")
    assert "tensorflow/lite/micro/kernels/conv.cc" in reference
    assert "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc" in cmsis
    assert "tensorflow/lite/micro/kernels/conv.cc" not in cmsis
    assert "tensorflow/lite/micro/kernels/conv_common.cc" in cmsis  # kept: shared code
    assert "tensorflow/lite/micro/kernels/reshape.cc" in cmsis  # no CMSIS-NN wrapper
    c_files = kernels.cmsis_nn_sources(ops)
    assert "Source/SoftmaxFunctions/arm_softmax_s8.c" in c_files
    assert "Source/ConvolutionFunctions/arm_convolve_wrapper_s8.c" in c_files
    assert not any("Pooling" in f or "LSTM" in f for f in c_files)
    assert kernels.cmsis_nn_sources(["RESHAPE", "GATHER"]) == []
    text = kernels.model_makefile(ops)
    assert "MODEL_CMSIS_NN_KERNEL_SRCS := \\\n  tensorflow/lite/micro/kernels/cmsis_nn/conv.cc" \
        in text
    assert "  Source/SoftmaxFunctions/arm_softmax_s8.c" in text


def test_int8_registrations_only_for_int8_instances(small_cnn, digits):
    import tensorflow as tf

    tflite, _ = small_cnn
    registrations = kernels.int8_registrations(tflite)
    assert registrations == {
        "CONV_2D": "Register_CONV_2D_INT8",
        "DEPTHWISE_CONV_2D": "Register_DEPTHWISE_CONV_2D_INT8",
        "AVERAGE_POOL_2D": "Register_AVERAGE_POOL_2D_INT8",
        "FULLY_CONNECTED": "Register_FULLY_CONNECTED_INT8",
        "SOFTMAX": "Register_SOFTMAX_INT8",
    }
    header = c_source.op_resolver_header(converters.read_model_info(tflite).ops,
                                         registrations=registrations)
    assert "resolver.AddConv2D(tflite::Register_CONV_2D_INT8())" in header
    assert "resolver.AddReshape());" in header
    with pytest.raises(ValueError, match="names 'MUL', which is not in `ops`"):
        c_source.op_resolver_header(["CONV_2D"], registrations={"MUL": "Register_MUL_INT8"})

    # A float model: no int8-only variant (its kernels must keep their float paths).
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    float_tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert kernels.int8_registrations(float_tflite) == {}


def test_op_shapes_and_profile_records(small_cnn):
    tflite, _ = small_cnn
    shapes = tflite_model.op_shapes(tflite)
    assert [op for op, _, _ in shapes][:3] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D"]
    _, inputs, outputs = shapes[0]
    assert inputs[0] == (1, 8, 8, 1) and inputs[1] == (12, 3, 3, 1) and outputs == [(1, 8, 8, 12)]
    assert shapes[1][1][1] == (1, 3, 3, 12)  # depthwise filter: 1 x kh x kw x channels
    record = firmware.parse_run_output(
        "op_ticks model CONV_2D  50\nop_layer model 1 DEPTHWISE_CONV_2D  7\n"
        "op_layer model 0 CONV_2D  30\nop_layer model 2 CONV_2D  20\ndone\n")
    assert record["op_ticks"] == {("model", "CONV_2D"): 50}
    assert sorted(record["op_layers"]["model"]) == [
        (0, "CONV_2D", 30), (1, "DEPTHWISE_CONV_2D", 7), (2, "CONV_2D", 20)]


def test_report_keeps_both_kernel_sets():
    base = {"board": "nano33ble", "firmware": {}, "fits": True}
    figures = {"flash_bytes": 90_000, "ram_total_bytes": 30_000, "kernels": "cmsis-nn"}
    key = mcu.firmware_key("cortex-m4", "reference", "cmsis-nn")
    assert key == "cortex-m4/reference"
    assert mcu.firmware_key("cortex-m4", "cmsis-nn", "cmsis-nn") == "cortex-m4"
    one = mcu.with_firmware(base, "cortex-m4", figures)
    both = mcu.with_firmware(one, key, dict(figures, flash_bytes=80_000, kernels="reference"))
    assert set(both["firmware"]) == {"cortex-m4", "cortex-m4/reference"}
    assert "flash 90000 B" in both["fits_basis"]  # judged on the larger build
