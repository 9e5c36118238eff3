"""Keyword spotting end to end (`tfdynhp.training.train_kws`, `tfdynhp train --dataset synthetic-kws`).

A gated DS-CNN pruned to half its MACs in one fit on the easiest synthetic set ("ci" size,
"easy": 840 clips), stripped, int8, evaluated in LiteRT and TFLite Micro on held-out voices
and held-out accents; the front end and normalization shipped in the bundle reproduce the
model's int8 input; the firmware built for Cortex-M4 under QEMU matches Python TFLM bit for bit
(skipped, saying why, without TFLM, arm-none-eabi-g++ or qemu-system-arm). Generation
determinism and speaker disjointness are tested in tests/test_synthetic_kws.py.
"""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from tfdynhp.converters import tflite_model

from tfdynhp import cli, converters
from tfdynhp.datasets import kws
from tfdynhp.training import kws as kws_training

REPO = pathlib.Path(__file__).resolve().parents[1]
TFLM_DIR = os.environ.get("TFLM_DIR") or str(REPO.parent / "shared" / "tflm-kit" / "tflm")

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


def _firmware_missing():
    if not os.path.isfile(os.path.join(TFLM_DIR, "tensorflow/lite/micro/micro_interpreter.h")):
        return f"no TensorFlow Lite Micro tree at {TFLM_DIR} (set TFLM_DIR)"
    absent = [t for t in ("make", "arm-none-eabi-g++", "qemu-system-arm") if not shutil.which(t)]
    if absent:
        return f"{', '.join(absent)} not installed (as root: bash scripts/setup.sh)"
    return None


needs_firmware = pytest.mark.skipif(_firmware_missing() is not None,
                                    reason=_firmware_missing() or "")
EASY = {"difficulty": "easy", "size": "ci", "data_seed": 0}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One fit: gated DS-CNN, hard pruning to 50 % of its MACs, exported for the MCU."""
    out = tmp_path_factory.mktemp("kws-run")
    result, _ = kws_training.train_kws(
        out, **EASY, mode="hp", target="50% macs", epochs=12, batch_size=32, lr=3e-3,
        exports=("mcu",), tflm_samples=0, verbose=0, keras_verbose=0, data_verbose=0)
    return result, out


def test_bad_options_fail_before_synthesis(tmp_path, monkeypatch):
    from tfdynhp.datasets.kws import espeak

    monkeypatch.setattr(espeak, "synthesize", lambda *a, **k: pytest.fail("synthesized"))
    with pytest.raises(ValueError, match="add 'mcu'"):
        kws_training.train_kws(tmp_path, verify=("cortex-m4",), exports=("pi",), tflm_dir="x")
    with pytest.raises(ValueError, match="mode"):
        kws_training.train_kws(tmp_path, mode="nope", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="at least one keyword"):
        kws_training.train_kws(tmp_path, keywords=[], cache_dir=tmp_path, epochs=1)
    assert not (tmp_path / "synthetic-kws").exists()
    code = cli.main(["train", "--dataset", "synthetic-kws", "--keywords", "stop,Stop",
                     "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_USAGE


@needs_espeak
@pytest.mark.slow
def test_gated_ds_cnn_in_one_fit_learns_held_out_voices(run):
    result, _ = run
    s = result.summary
    assert s["mode"] == "hp" and s["bn_momentum"] == kws_training.BN_MOMENTUM
    assert s["n_validation"] == s["data"]["split_sizes"]["val"]  # validation by speaker
    from tfdynhp import architectures
    from tfdynhp.costs import units as resources

    dense = resources.model_cost(architectures.ds_cnn(num_classes=12)).macs
    assert s["macs"] <= 0.51 * dense, (s["macs"], dense)
    voices, accents = s["held_out"]["test_voices"], s["held_out"]["test_accents"]
    assert voices["float"] >= 0.60, voices  # chance is 1/12
    assert accents["float"] >= 0.40, accents
    for row in (voices, accents):
        # What the README says of int8 on these 120-clip splits (one clip = 0.83 points):
        # accuracy within 5 clips (4.2 points) of float in both runtimes (up to 4 clips were
        # measured, bench/results/kws.json; 3 here), the int8 class equal to float's on >= 95 %
        # of clips (97.5 % measured), and LiteRT and TFLite Micro, whose kernels round
        # differently, on the same class for >= 97.5 % (98.3 % and 99.2 % measured).
        assert row["tflm_n"] == row["n"] == 120
        for runtime in ("int8", "tflm"):
            assert abs(row[runtime] - row["float"]) <= 5 / 120 + 1e-9, row
        assert row["int8_float_agreement"] >= 0.95, row
        assert row["tflm_litert_agreement"] >= 0.975, row


@needs_espeak
@pytest.mark.slow
def test_bundle_ships_the_front_end_and_normalization(run):
    result, out = run
    bundle = out / "export" / "mcu"
    meta = json.loads((bundle / "model.json").read_text())
    spec = json.loads((bundle / "features.json").read_text())
    assert meta["features"] == "features.json" and "multiplier" in meta["preprocessing"]
    assert spec["frontend"]["num_frames"] == 49 and spec["labels"][-2:] == ["silence", "unknown"]
    assert (bundle / "labels.txt").read_text().split("\n")[:2] == ["yes", "no"]
    header = (bundle / "feature_settings.h").read_text()
    assert "kFeatureMultiplier[10]" in header and "kNumFrames = 49" in header
    # A device's raw MFCCs through the shipped map give the int8 input the model was tested on.
    _, raw = kws.load_synthetic_kws(difficulty="easy", size="ci", normalize=False, verbose=0,
                                    return_info=True)
    x_raw = raw.splits["test_voices"][0]
    info = tflite_model.read_model_info(result.tflite).inputs[0]
    expected = tflite_model.quantize(raw.normalization.apply(x_raw), info)
    got = kws.quantize_features(x_raw, spec)
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert np.mean(got == expected) >= 0.999


@needs_espeak
@needs_firmware
@pytest.mark.slow
def test_firmware_is_bit_exact_on_cortex_m4(run):
    _, out = run
    fw = converters.verify_mcu(out / "export" / "mcu", TFLM_DIR, "cortex-m4")
    assert fw.bit_exact and fw.num_vectors == 4
    assert fw.flash_bytes < 256 * 1024 and fw.ram_total_bytes < 64 * 1024
    assert fw.instructions_per_inference > 1e6


@needs_espeak
@needs_firmware
@pytest.mark.slow
def test_the_one_command(tmp_path, capsys):
    code = cli.main([
        "train", "--dataset", "synthetic-kws", "--arch", "ds-cnn", "--target", "50% macs",
        "--keywords", "lights on,lights off,stop", "--difficulty", "easy", "--size", "ci",
        "--epochs", "1", "--limit-train", "200", "--front-end", "mfcc", "--export", "mcu",
        "--verify", "cortex-m4", "--tflm-dir", TFLM_DIR, "--out", str(tmp_path), "--quiet"])
    assert code == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["mode"] == "dynhp" and s["n_train"] == 200 and s["data"]["labels"][0] == "lights on"
    assert s["firmware"]["cortex-m4"]["bit_exact"] is True
    assert (tmp_path / "export" / "mcu" / "features.json").is_file()
