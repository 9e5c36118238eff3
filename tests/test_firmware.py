"""The `mcu` bundle builds, runs and matches Python TFLite Micro bit for bit: on the host and on
a Cortex-M4 emulated by QEMU (`converters.verify_mcu`), for a DynHP-pruned MLP (really pruned
inside one `fit`, with input features dropped, hence a GATHER op) and for a Conv2D model.

TFLM comes from `$TFLM_DIR` or `../shared/tflm-kit/tflm` next to the checkout; the Cortex-M
toolchain and QEMU come from Debian (`scripts/setup.sh` installs them as root). Without them
the build tests skip, printing why. Compiled TFLM objects are cached (`~/.cache/tfdynhp/tflm`,
or `$TFLM_CACHE`): a cold cache costs 41 TFLM sources per target (about 50 s on 2 idle cores,
1.5-2.5 min on busy ones; the whole file took 350 s cold, 41 s warm), a warm one a few seconds.
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
from tfdynhp.converters import c_source, firmware, kernels, mcu

import tfdynhp
from tfdynhp import cli, converters

REPO = pathlib.Path(__file__).resolve().parents[1]
KIT_TREES = [p / "shared" / "tflm-kit" / "tflm" for p in REPO.parents]  # next to a checkout
TFLM_DIR = os.environ.get("TFLM_DIR") or str(next((p for p in KIT_TREES if p.is_dir()),
                                                  KIT_TREES[0]))
CACHE_DIR = os.environ.get("TFLM_CACHE")  # None: the Makefile's default cache


def _missing(target):
    """Why `target` cannot be built here, or None."""
    if not os.path.isfile(os.path.join(TFLM_DIR, "tensorflow/lite/micro/micro_interpreter.h")):
        return f"no TensorFlow Lite Micro tree at {TFLM_DIR} (set TFLM_DIR)"
    tools = ["make", "g++"] if target == "host" else ["make", "arm-none-eabi-g++",
                                                       "qemu-system-arm"]
    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        return (f"{', '.join(absent)} not installed (as root: bash scripts/setup.sh, or "
                f"apt-get install {firmware.APT_PACKAGES})")
    return None


def needs(target):
    reason = _missing(target)
    if reason:
        print(f"test_firmware: skipping {target} builds: {reason}")
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def verify(bundle, target, **kwargs):
    return converters.verify_mcu(bundle, TFLM_DIR, target, cache_dir=CACHE_DIR, **kwargs)


@pytest.fixture(scope="module")
def pruned_mlp(digits):
    """A DynHP-pruned MLP on scikit-learn's digits: gated, pruned inside one fit, stripped."""
    x, y, _, _ = digits
    keras.utils.set_random_seed(1)
    base = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(48, activation="relu"),
        keras.layers.Dense(24, activation="relu"), keras.layers.Dense(10, activation="softmax"),
    ])
    model = tfdynhp.gate(base, l0_lambda=1.0, dataset_size=len(x), seed=0)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=6, batch_size=64, verbose=0, callbacks=[DynHPCallback()])
    stripped = tfdynhp.strip(model)
    return stripped, converters.to_int8_tflite(model, x[:300])


@pytest.fixture(scope="module")
def mlp_bundle(pruned_mlp, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("mcu-mlp")
    converters.export(pruned_mlp[1], "mcu", out, digits[0][:200])
    return out


@pytest.fixture(scope="module")
def conv_tflite(digits):
    """A small LeNet-like CNN, gated and pruned to half its parameters in one DynHP fit."""
    x, y, _, _ = digits
    images = x.reshape(-1, 8, 8, 1)
    keras.utils.set_random_seed(0)
    base = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(), keras.layers.Conv2D(12, 2, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(24, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model = tfdynhp.gate(base, seed=0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(images, y, epochs=4, batch_size=64, verbose=0,
              callbacks=[DynHPCallback(target="50% params")])
    stripped = tfdynhp.strip(model)
    assert stripped.count_params() <= 0.5 * base.count_params()
    return converters.to_int8_tflite(stripped, images[:200]), images


@pytest.fixture(scope="module")
def conv_bundle(conv_tflite, tmp_path_factory):
    tflite, images = conv_tflite
    out = tmp_path_factory.mktemp("mcu-conv")
    converters.export(tflite, "mcu", out, images[:200])
    return out


def _check_result(result, bundle, target):
    assert result.target == target
    assert result.num_vectors == mcu.DEFAULT_TEST_VECTORS
    assert result.bit_exact and result.mismatched_vectors == ()
    ref_inputs, ref_outputs = firmware.reference_outputs(bundle)
    assert np.array_equal(result.outputs, ref_outputs)  # the firmware's own printed outputs
    assert len(np.unique(ref_inputs, axis=0)) == len(ref_inputs)  # distinct real inputs
    model_bytes = (bundle / "model.tflite").stat().st_size
    assert result.flash_bytes == result.text_bytes + result.data_bytes > model_bytes
    assert result.ram_static_bytes == result.data_bytes + result.bss_bytes
    assert result.bss_bytes >= result.arena_bytes > result.arena_used_bytes > 0


@pytest.mark.slow
@needs("host")
def test_pruned_mlp_firmware_on_host_matches_python_tflm(pruned_mlp, mlp_bundle, tmp_path):
    stripped, tflite = pruned_mlp
    widths = [layer.units for layer in stripped.layers if isinstance(layer, keras.layers.Dense)]
    assert widths[0] < 48 and widths[1] < 24  # really pruned
    assert "GATHER" in converters.read_model_info(tflite).ops  # input features dropped too

    result = verify(mlp_bundle, "host")
    _check_result(result, mlp_bundle, "host")
    assert result.instructions_per_inference is None and result.host_ns_per_inference > 0

    # The same model exported again builds from the cache: no TFLM source is recompiled.
    again = tmp_path / "again"
    shutil.copytree(mlp_bundle, again, ignore=shutil.ignore_patterns("build"))
    assert verify(again, "host").tflm_sources_compiled == 0


@pytest.mark.slow
@needs("cortex-m4")
def test_pruned_mlp_firmware_on_qemu_cortex_m4(mlp_bundle):
    result = verify(mlp_bundle, "cortex-m4")
    _check_result(result, mlp_bundle, "cortex-m4")
    assert result.rodata_bytes > (mlp_bundle / "model.tflite").stat().st_size
    assert 0 < result.stack_used_bytes < 65536 and result.heap_used_bytes >= 0
    assert result.ram_total_bytes == (
        result.ram_static_bytes + result.stack_used_bytes + result.heap_used_bytes
    )
    # A 64-in MLP of a few thousand MACs: thousands to a few hundred thousand instructions.
    assert 2_000 < result.instructions_per_inference < 500_000
    assert "mps2-an386" in result.run_command and "-icount shift=0" in result.run_command

    report = json.loads((mlp_bundle / "mcu_report.json").read_text())
    measured = report["firmware"]["cortex-m4"]
    assert measured["flash_bytes"] == result.flash_bytes and measured["bit_exact"] is True
    assert report["fits_basis"].startswith("measured firmware (cortex-m4")
    assert report["fits"] is True and report["boards"]["nano33ble"]["fits"] is True
    md = (mlp_bundle / "mcu_report.md").read_text()
    assert "## Measured firmware" in md and "not cycle-accurate" in md
    assert f"| cortex-m4 | cmsis-nn | {result.flash_bytes} B" in md  # CMSIS-NN by default


@pytest.mark.slow
@needs("cortex-m4")
def test_conv_firmware_on_qemu_cortex_m4(conv_bundle):
    ops = converters.read_model_info((conv_bundle / "model.tflite").read_bytes()).ops
    assert {"CONV_2D", "MAX_POOL_2D"} <= set(ops)
    result = verify(conv_bundle, "cortex-m4")
    _check_result(result, conv_bundle, "cortex-m4")
    assert result.instructions_per_inference > 10_000


@pytest.mark.slow
@needs("cortex-m4")
def test_cli_export_verify_host_and_cortex_m4(tmp_path, capsys, digits, pruned_mlp):
    model_path = tmp_path / "model.keras"
    pruned_mlp[0].save(model_path)
    code = cli.main([
        "export", str(model_path), "--to", "mcu", "--dataset", "digits", "--out",
        str(tmp_path / "out"), "--verify", "host,cortex-m4", "--tflm-dir", TFLM_DIR,
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("mcu firmware")]
    assert len(lines) == 2 and all("bit-exact vs Python TFLM on 4 test vectors" in x
                                   for x in lines)
    assert re.search(r"cortex-m4 \(cmsis-nn kernels\): .*flash [\d,]+ B, RAM [\d,]+ B .* "
                     r"instructions per inference", lines[1])
    report = json.loads((tmp_path / "out" / "mcu" / "mcu_report.json").read_text())
    assert set(report["firmware"]) == {"host", "cortex-m4"}


# ---- bad input: one line naming what is missing and how to get it --------------------------


def test_cli_verify_needs_mcu_target_and_a_tflm_tree(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TFLM_DIR", raising=False)
    for argv, message in (
        (["--to", "pi", "--verify", "host", "--tflm-dir", TFLM_DIR], "add mcu to --to"),
        (["--to", "mcu", "--verify", "cortex-m7", "--tflm-dir", TFLM_DIR],
         "unknown target(s) cortex-m7"),
        (["--to", "mcu", "--verify", "host"], "pass --tflm-dir or set TFLM_DIR"),
    ):
        code = cli.main(["export", str(tmp_path / "m.keras"), *argv, "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_no_tflm_tree(mlp_bundle, tmp_path, monkeypatch):
    with pytest.raises(converters.FirmwareError,
                       match=r"is not a TensorFlow Lite Micro source tree .*git clone"):
        converters.verify_mcu(mlp_bundle, tmp_path / "nothing-here", "host")
    monkeypatch.delenv("TFLM_DIR", raising=False)
    with pytest.raises(ValueError, match="pass `tflm_dir=` or set TFLM_DIR"):
        converters.verify_mcu(mlp_bundle, None, "host")


@needs("host")
def test_tflm_tree_without_the_models_kernel_or_third_party(conv_bundle, tmp_path):
    tree = tmp_path / "tflm"
    shutil.copytree(TFLM_DIR, tree)
    (tree / kernels.KERNEL_DIR / "conv.cc").unlink()
    with pytest.raises(converters.FirmwareError,
                       match=r"has no tensorflow/lite/micro/kernels/conv.cc, needed by this "
                             r"model's operators \(CONV_2D"):
        converters.verify_mcu(conv_bundle, tree, "host")
    shutil.rmtree(tree / "third_party" / "flatbuffers")
    with pytest.raises(converters.FirmwareError, match=r"lacks the flatbuffers.*third_party_downloads"):
        converters.verify_mcu(conv_bundle, tree, "host")


@needs("host")
def test_missing_toolchain_and_qemu(mlp_bundle):
    with pytest.raises(converters.FirmwareError,
                       match=r"/nowhere/arm-none-eabi-g\+\+ not found: .*apt-get install "
                             r"gcc-arm-none-eabi libnewlib-arm-none-eabi"):
        verify(mlp_bundle, "cortex-m4", make_args={"ARM_PREFIX": "/nowhere/arm-none-eabi-"})
    with pytest.raises(converters.FirmwareError,
                       match=r"/nowhere/qemu-system-arm not found: .*apt-get install "
                             r"qemu-system-arm"):
        firmware.run_firmware(mlp_bundle, "cortex-m4",
                              make_args={"QEMU": "/nowhere/qemu-system-arm"})


def test_operator_without_a_reference_kernel_is_refused_at_export(
    unsupported_op_tflite, digits, tmp_path
):
    with pytest.raises(ValueError, match="TFLite Micro has no .* for op.*HASHTABLE_LOOKUP"):
        converters.export(unsupported_op_tflite, "mcu", tmp_path, digits[0][:10])
    assert not any(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ValueError, match=r"for op\(s\) HASHTABLE_LOOKUP \(no reference kernel\)"):
        kernels.kernel_sources(["FULLY_CONNECTED", "HASHTABLE_LOOKUP"])


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
def test_arena_too_small(mlp_bundle, tmp_path, target):
    if _missing(target):
        pytest.skip(_missing(target))
    small = tmp_path / "small"
    shutil.copytree(mlp_bundle, small, ignore=shutil.ignore_patterns("build"))
    settings = small / "model_settings.h"
    settings.write_text(re.sub(r"kTensorArenaSize = \d+;", "kTensorArenaSize = 512;",
                               settings.read_text()))
    with pytest.raises(converters.FirmwareError,
                       match=r"tensor arena \(512 B, kTensorArenaSize in model_settings.h\) is "
                             rf"too small for this model on {target}.*arena_margin") as error:
        verify(small, target)
    assert "\n" not in str(error.value)


def test_not_a_bundle_and_unknown_target(tmp_path, mlp_bundle):
    with pytest.raises(ValueError, match=r"not a complete MCU bundle \(missing Makefile"):
        converters.verify_mcu(tmp_path, TFLM_DIR, "host")
    with pytest.raises(ValueError, match=r"`target` must be one of .*Received: target='m4'"):
        converters.verify_mcu(mlp_bundle, TFLM_DIR, "m4")


# ---- pure parts -------------------------------------------------------------------------------


def test_kernel_table_matches_the_tflm_tree():
    """Every resolver entry's default kernel is defined in the first file the table lists, and
    each `<name>_common.cc` companion in the tree is listed too."""
    root = pathlib.Path(TFLM_DIR)
    if not (root / "tensorflow/lite/micro/micro_mutable_op_resolver.h").is_file():
        pytest.skip(f"no TensorFlow Lite Micro tree at {TFLM_DIR}")
    assert set(kernels.KERNEL_SOURCES) | set(kernels.SIGNAL_SOURCES) == set(c_source.TFLM_OPS)
    resolver = (root / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    kdir = root / kernels.KERNEL_DIR
    for op, sources in kernels.SIGNAL_SOURCES.items():  # custom ops of the audio front end
        method = c_source.TFLM_OPS[op]
        body = re.search(rf"TfLiteStatus {method}\((.*?)\}}", resolver, re.DOTALL).group(1)
        assert f'"{op.split(":")[1]}"' in body, (op, method)  # AddCustom("SignalX", ...)
        register = re.search(r"tflm_signal::(Register_\w+)\(\)", body).group(1)
        assert all((root / path).is_file() for path in sources), op
        assert re.search(rf"TFLMRegistration\* {register}\(\)", (root / sources[0]).read_text())
    for op, method in c_source.TFLM_OPS.items():
        if op in kernels.SIGNAL_SOURCES:
            continue
        found = re.search(rf"TfLiteStatus {method}\(\s*(?:const TFLMRegistration& registration"
                          rf"\s*=\s*(?:tflite::)?(Register_\w+)\(\))?", resolver)
        assert found, (op, method)
        register = found.group(1) or f"Register_{op}"
        first, *rest = kernels.KERNEL_SOURCES[op]
        assert re.search(rf"TFLMRegistration\*? {register}\(\)\s*\{{",
                         (kdir / f"{first}.cc").read_text()), (op, register, first)
        common = kdir / f"{first}_common.cc"
        assert common.is_file() == (f"{first}_common" in rest), op
        assert all((kdir / f"{stem}.cc").is_file() for stem in rest), op


def test_model_makefile_lists_the_kernels_of_the_ops():
    text = kernels.model_makefile(["CONV_2D", "FULLY_CONNECTED", "CONV_2D"])
    assert "MODEL_OPS := CONV_2D FULLY_CONNECTED CONV_2D" in text
    reference = text.split("MODEL_KERNEL_SRCS :=")[1].split("MODEL_CMSIS_NN")[0]
    assert re.findall(r"kernels/(\w+)\.cc", reference) == [
        "conv", "conv_common", "fully_connected", "fully_connected_common"
    ]


def test_parse_size_sections_and_run_output():
    assert firmware.parse_size(
        "   text\t   data\t    bss\t    dec\t    hex\tfilename\n"
        "  57560\t    116\t   3340\t  61016\t   ee58\tbuild/cortex-m4/firmware.elf\n"
    ) == {"text": 57560, "data": 116, "bss": 3340}
    with pytest.raises(ValueError, match="Not the output of `size`"):
        firmware.parse_size("nothing")
    assert firmware.parse_sections(
        "build/x.elf  :\nsection  size  addr\n.text  4096  0\n.rodata  100  4096\nTotal 4196\n"
    ) == {".text": 4096, ".rodata": 100}
    record = firmware.parse_run_output(
        "firmware tfdynhp-mcu 1\narena_bytes 2832\noutput 0 11 -125\noutput 1 -124 -8\n"
        "mismatches 0\nbench_ticks 5712\nerror something odd\ndone\n"
    )
    assert record["outputs"] == {0: [11, -125], 1: [-124, -8]}
    assert record["arena_bytes"] == 2832 and record["bench_ticks"] == 5712 and record["done"]
    assert record["errors"] == ["something odd"]


def test_report_uses_measured_firmware_figures():
    report = {  # as `mcu.mcu_report` writes it, for a 5,000 B model on a small board
        "board": {"name": "tiny", "description": "test board", "flash_bytes": 60_000,
                  "sram_bytes": 6_000},
        "ops": ["FULLY_CONNECTED"], "fits": True, "fits_basis": "model and arena only",
        "arena": {"measured_bytes": 1600, "margin_fraction": 0.25, "arena_bytes": 2000,
                  "method": "bisection"},
        "flash": {"model_bytes": 5000, "budget_bytes": 60_000, "fraction": 5000 / 60_000,
                  "fits": True},
        "sram": {"arena_bytes": 2000, "budget_bytes": 6_000, "fraction": 2000 / 6000,
                 "fits": True},
        "firmware": {}, "not_counted": mcu.NOT_COUNTED,
    }
    figures = {"flash_bytes": 57_676, "ram_static_bytes": 3_456, "stack_used_bytes": 1_512,
               "heap_used_bytes": 1_468, "ram_total_bytes": 6_436, "bit_exact": True,
               "num_vectors": 4, "instructions_per_inference": 22_848.0, "kernels": "cmsis-nn"}
    host = mcu.with_firmware(report, "host", dict(figures, ram_total_bytes=9_999_999))
    assert host["fits"] is True and "boards" not in host  # host builds are not judged
    measured = mcu.with_firmware(host, "cortex-m4", figures)
    assert report["firmware"] == {}  # pure: the input is not changed
    assert measured["fits"] is False  # 6,436 B of RAM > 6,000 B, although the arena fits
    assert measured["boards"]["tiny"]["fits"] is False
    assert measured["boards"]["nano33ble"]["fits"] is True
    md = mcu.report_markdown(measured)
    assert "does NOT fit (measured firmware (cortex-m4): flash 57676 B, RAM 6436 B)" in md
    assert "| cortex-m4 | cmsis-nn | 57676 B (56.3 KiB) | 3456 B | 1512 | 1468 | 6436 B " \
           "(6.3 KiB) | 22,848 | yes (4 vectors) |" in md
