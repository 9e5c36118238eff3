"""The micro front end: TFLM micro_speech's audio preprocessor rebuilt from its parameters, run
in TFLite Micro's Python interpreter; its cepstral layer; the raw-audio data set; and the
raw-audio firmware (front end + classifier on the device), bit-exact against the Python
pipeline on its test clips and classifying held-out clips like it under QEMU Cortex-M4.

The two digests below were taken from TFLM's own `audio_preprocessor_int8.tflite`
(tensorflow/lite/micro/examples/micro_speech/models/, tflite-micro 90b983c): the sorted unique
constant buffers of the model (window, filter bank, PCAN table, ...) and its int8 features on
`_test_signal()`, computed with that file in the same `tflite_micro` interpreter.
"""

import dataclasses
import hashlib
import os
import pathlib
import shutil

import keras
import numpy as np
import pytest
from tfdynhp.converters import audio_mcu, firmware

from tfdynhp import converters
from tfdynhp.datasets.kws import micro_dataset, micro_frontend, signal_constants, tflite_graph

MICRO_SPEECH_CONSTANTS_SHA256 = "d7b30533183d3bde58ccc909ee8cec84064596306da5f1cae148024a9483393d"
MICRO_SPEECH_FEATURES_SHA256 = "fbfa65df9fff769061503bb2e041fc889a71a836b761e8350c7993e73db72c44"
MICRO_SPEECH_OPS = (
    "CUSTOM:SignalWindow", "RESHAPE", "CUSTOM:SignalFftAutoScale", "CUSTOM:SignalRfft",
    "CUSTOM:SignalEnergy", "CAST", "STRIDED_SLICE", "CONCATENATION", "CUSTOM:SignalFilterBank",
    "CUSTOM:SignalFilterBankSquareRoot", "CUSTOM:SignalFilterBankSpectralSubtraction",
    "CUSTOM:SignalPCAN", "CUSTOM:SignalFilterBankLog", "MUL", "ADD", "DIV", "MINIMUM", "MAXIMUM",
)

REPO = pathlib.Path(__file__).resolve().parents[1]
KIT_TREES = [p / "shared" / "tflm-kit" / "tflm" for p in REPO.parents]
TFLM_DIR = os.environ.get("TFLM_DIR") or str(next((p for p in KIT_TREES if p.is_dir()),
                                                  KIT_TREES[0]))


def _test_signal():
    t = np.arange(16000) / 16000.0
    chirp = np.sin(2 * np.pi * (200 + 1800 * t) * t) * np.minimum(1, 4 * t)
    noise = np.random.default_rng(0).normal(size=16000) * 0.02
    return micro_frontend.to_pcm16(np.stack([0.3 * chirp + noise, np.zeros(16000),
                                             noise * 0.05]))


def _constants(tflite_bytes):
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite_bytes, 0))
    buffers = {bytes(np.asarray(model.buffers[t.buffer].data, np.uint8))
               for t in model.subgraphs[0].tensors
               if model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)}
    return hashlib.sha256(b"".join(sorted(buffers))).hexdigest()


def test_filterbank_model_is_micro_speechs():
    tflite = micro_frontend.filterbank_tflite()
    info = converters.read_model_info(tflite)
    assert info.ops == MICRO_SPEECH_OPS
    assert (info.inputs[0].dtype, info.inputs[0].shape) == ("int16", (1, 480))
    assert (info.outputs[0].dtype, info.outputs[0].shape) == ("int8", (40,))
    assert _constants(tflite) == MICRO_SPEECH_CONSTANTS_SHA256
    features = micro_frontend.run_frontend(tflite, _test_signal())
    assert features.shape == (3, 49, 40) and features.dtype == np.int8
    assert hashlib.sha256(features.tobytes()).hexdigest() == MICRO_SPEECH_FEATURES_SHA256
    assert (features[1] == -128).all()  # silence: the floor
    assert features[0].std() > 10  # the chirp moves through the channels


def test_device_front_end_stages():
    """The device front end drops micro_speech's zeroing of the energy bins outside the filter
    bank (the zero weights make it a no-op: the int16 log is the same) and quantizes the log to
    int8 with one QUANTIZE (within one step of micro_speech's int32 arithmetic)."""
    pcm = _test_signal()
    reference = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(), pcm)
    log = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(stage="log"), pcm)
    assert log.dtype == np.int16 and log.max() > 300
    mapped = np.clip((log.astype(np.int64) * 256 + 333) // 666 - 128, -128, 127)
    assert np.array_equal(mapped, reference)
    lean = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(stage="int8"), pcm)
    assert np.abs(lean.astype(int) - reference).max() <= 1
    ops = converters.read_model_info(micro_frontend.filterbank_tflite(stage="int8")).ops
    assert "QUANTIZE" in ops and not {"STRIDED_SLICE", "DIV", "CAST"} & set(ops)
    with pytest.raises(ValueError, match="Unknown stage 'mfcc'"):
        micro_frontend.filterbank_tflite(stage="mfcc")


def test_each_clip_starts_from_a_reset_front_end():
    tflite = micro_frontend.filterbank_tflite()
    pcm = _test_signal()
    together = micro_frontend.run_frontend(tflite, pcm)
    alone = micro_frontend.run_frontend(tflite, pcm[2:3])
    assert np.array_equal(together[2], alone[0])  # the noise estimate does not carry over


def test_signal_constants():
    weights = signal_constants.hann_window_weights(480, 12)
    assert weights.dtype == np.int16 and weights[0] == 0 and weights.max() == 4096
    assert np.array_equal(weights, weights[::-1])
    assert signal_constants.fft_length(480) == (512, 9)
    with pytest.raises(ValueError, match="supports 64 to 2048"):
        signal_constants.fft_length(3000)
    bank = signal_constants.filter_bank(257, 16000, 40, 125.0, 7500.0)
    assert (bank["start_index"], bank["end_index"]) == (5, 241)
    assert len(bank["channel_widths"]) == 41 and (bank["weights"] >= 0).all()
    lut = signal_constants.pcan_lut(0.95, 80.0, 7, 21)
    assert lut.shape == (125,) and lut.dtype == np.int16
    # The cepstral map is TF's MFCC DCT: tf.signal.mfccs_from_log_mel_spectrograms.
    import tensorflow as tf

    x = np.random.default_rng(1).normal(size=(3, 40)).astype(np.float32)
    ours = x @ signal_constants.dct_matrix(10, 40).T
    theirs = tf.signal.mfccs_from_log_mel_spectrograms(x)[:, :10].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("settings", [
    {}, {"even_smoothing": 0.0, "odd_smoothing": 0.0, "pcan_strength": 0.0,
         "filterbank_scale": 0.08, "filterbank_zero_point": -100}])
def test_cepstral_front_end_matches_float_math(settings):
    fe = micro_frontend.MicroFrontEnd(**settings)
    pcm = _test_signal()
    fb = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(fe, stage="int8"), pcm, fe)
    log = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(fe, stage="log"), pcm, fe)
    # The int8 log filter bank is the int16 log quantized with the front end's scale.
    expected_fb = np.clip(np.round(log / 64.0 / fe.filterbank_scale) + fe.filterbank_zero_point,
                          -128, 127)
    assert np.abs(fb - expected_fb).max() <= 1
    norm = micro_frontend.measure_normalization(fb, fe)
    tflite = micro_frontend.frontend_tflite(norm, fe)
    q = micro_frontend.run_frontend(tflite, pcm, fe)
    assert q.shape == (3, 49, 10)
    x = (fb.astype(np.float64) - fe.filterbank_zero_point) * fe.filterbank_scale
    weights, bias = micro_frontend.cepstral_weights(fe, norm)
    expected = np.clip(np.round((x @ weights.T + bias) * 32), -128, 127)
    assert np.abs(q - expected).max() <= 1  # int8 weights: within one step
    with pytest.raises(ValueError, match="has 3 coefficients; the front end computes 10"):
        micro_frontend.frontend_tflite(micro_frontend.FeatureNormalization((0,) * 3, (1,) * 3))


def test_raw_audio_default_has_no_state_and_does_not_saturate():
    """The raw-audio default (noise reduction and PCAN off, int8 log scale 0.08): a window's
    features do not depend on the audio before it, and a loud chirp stays inside the int8 range;
    micro_speech's front end (`MicroFrontEnd()`) depends on it, and its int8 scale saturates
    once noise reduction and PCAN are off."""
    fe, speech = micro_frontend.DEFAULT, micro_frontend.MicroFrontEnd()
    assert micro_dataset.DEFAULT_FRONTEND is fe
    pcm = _test_signal()
    other = pcm[[0, 0]].copy()
    other[1, :8000] = pcm[2, :8000] * 200  # different audio before sample 8000
    late = slice(25, None)  # frames starting at 320 * 25 = 8000 and after
    for front, equal in ((fe, True), (speech, False)):
        q = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(front, "int8"), other,
                                        front)
        assert np.array_equal(q[0, late], q[1, late]) == equal
    chirp = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(fe, "int8"), pcm[:1], fe)
    assert chirp.max() < 127
    narrow = dataclasses.replace(fe, filterbank_scale=micro_frontend.FILTERBANK_SCALE)
    q = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(narrow, "int8"), pcm[:1],
                                    narrow)
    assert np.mean(q == 127) > 0.2


def test_bad_audio_is_refused():
    tflite = micro_frontend.filterbank_tflite()
    with pytest.raises(ValueError, match=r"Expected int16 clips of shape \(n, 16000\). "
                                         r"Received: float64 array of shape \(2, 16000\)"):
        micro_frontend.run_frontend(tflite, np.zeros((2, 16000)))
    with pytest.raises(ValueError, match=r"shape \(1, 8000\)"):
        micro_frontend.run_frontend(tflite, np.zeros((1, 8000), np.int16))
    assert micro_frontend.to_pcm16(np.array([1.5, -1.0, 0.5])).tolist() == [32767, -32768, 16384]


def test_graph_writer_custom_options_are_sorted_flexbuffers():
    from flatbuffers import flexbuffers

    blob = tflite_graph.custom_options({"fft_length": 512, "T": 7})
    assert flexbuffers.Loads(blob) == {"T": 7, "fft_length": 512}
    g = tflite_graph.Graph()
    x = g.input("x", "int8", (1, 4), scale=0.5, zero_point=-1)
    y = g.tensor("y", "int8", (1, 4), scale=0.5, zero_point=-1)
    g.builtin("RELU", [x], [y])
    g.output(y)
    out = converters.run_tflite(g.to_bytes(), np.array([[-2.0, 0.0, 1.0, 3.0]], np.float32),
                                "tflm")[0]
    assert np.asarray(out).reshape(-1).tolist() == [-1, -1, 1, 5]  # int8 relu: max(q, zp)


# ---- the raw-audio data set and firmware ------------------------------------------------------


def _missing_firmware():
    if not (pathlib.Path(TFLM_DIR) / "signal").is_dir():
        return f"no TensorFlow Lite Micro tree with signal/ at {TFLM_DIR} (set TFLM_DIR)"
    absent = [t for t in ("make", "arm-none-eabi-g++", "qemu-system-arm") if not shutil.which(t)]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install {firmware.APT_PACKAGES})"
    return None


@pytest.fixture(scope="module")
def micro_ci(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    return micro_dataset.load_synthetic_kws_micro(
        ["yes", "no"], "easy", 240, seed=0, verbose=0, return_info=True,
        cache_dir=tmp_path_factory.mktemp("kws-cache"))


@pytest.mark.slow
def test_micro_dataset_features_are_the_front_ends(micro_ci):
    (x_train, _), (x_test, _) = micro_ci[0]
    info = micro_ci[1]
    assert x_train.shape[1:] == (49, 10, 1) and x_train.dtype == np.float32
    assert info.frontend.name == "micro" and info.pcm["train"].dtype == np.int16
    assert len(info.pcm["test"]) == len(x_test)
    # The training features are the front end's own output on the clips, dequantized.
    again = micro_frontend.run_frontend(info.frontend_tflite, info.pcm["train"][:5])
    assert np.array_equal(again, info.features_int8["train"][:5])
    np.testing.assert_array_equal(x_train[:5], micro_frontend.dequantize(again))
    # Normalized on the training split: coefficients near zero mean, unit spread.
    assert np.abs(x_train.mean(axis=(0, 1, 3))).max() < 0.15
    assert np.all(np.abs(x_train.std(axis=(0, 1, 3)) - 1) < 0.15)
    assert info.to_dict()["frontend"]["name"] == "micro"


def _raw_audio_bundle(micro_ci, tmp_path, filters, epochs, batch_size, clips):
    """A tiny DS-CNN (`filters` wide) trained on the micro front end's features (seed 0), its
    int8 file and the raw-audio bundle `tmp_path / "mcu"` with `clips` test clips:
    `(tflite, bundle)`."""
    (x_train, y_train), _ = micro_ci[0]
    info = micro_ci[1]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((49, 10, 1)),
        keras.layers.Conv2D(filters, (10, 4), strides=2, padding="same", activation="relu"),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.Conv2D(filters, 1, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(info.labels), activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    tflite = converters.to_int8_tflite(model, x_train[:200])
    bundle = tmp_path / "mcu"
    audio_mcu.write_audio_mcu(tflite, info.frontend_tflite, bundle, info.pcm["test"][:clips],
                              info.frontend, labels=list(info.labels))
    return tflite, bundle


@pytest.mark.slow
def test_raw_audio_firmware_on_qemu_cortex_m4(micro_ci, tmp_path):
    reason = _missing_firmware()
    if reason:
        pytest.skip(reason)
    _, bundle = _raw_audio_bundle(micro_ci, tmp_path, filters=8, epochs=3, batch_size=32, clips=2)
    assert audio_mcu.is_audio_bundle(bundle)
    ops = (bundle / "model_ops.h").read_text()
    assert "AddRfft(tflite::tflm_signal::Register_RFFT_INT16())" in ops
    assert "Register_CONV_2D_INT8()" in ops
    assert "Register_FULLY_CONNECTED_INT8()" in ops  # front end's FC is int8 too

    result = converters.verify_mcu(bundle, TFLM_DIR, "cortex-m4")
    assert result.kernels == "cmsis-nn" and result.bit_exact and result.num_vectors == 2
    _, python = audio_mcu.bundle_pipeline_outputs(bundle)
    assert np.array_equal(result.outputs, python)
    assert result.frontend_frames == 49
    # The front end: tens of thousands of instructions per 30 ms window, not millions.
    per_window = result.frontend_instructions_per_clip / 49
    assert 10_000 < per_window < 500_000
    assert result.instructions_per_inference > result.frontend_instructions_per_clip
    # Clips from a file (semihosting, window by window) on the test build (release=False; the
    # release image runs in test_the_one_command_with_raw_audio, through train_kws).
    clips = micro_ci[1].pcm["test"][2:5]
    checked = audio_mcu.evaluate_clips(bundle, clips, TFLM_DIR, "cortex-m4", release=False)
    assert checked["n"] == 3 and checked["bit_exact_fraction"] == 1.0
    assert checked["release"] is False and checked["flash_bytes"] > result.flash_bytes  # + stdio
    parts = checked["flash_parts"]
    assert parts["test vectors"] > 2 * 2 * 16000  # the two test clips, int16
    assert parts["total"] == checked["flash_bytes"] and parts["front-end model"] > 0
    assert checked["ram_parts"]["arenas"] >= result.arena_bytes


@pytest.mark.slow
def test_the_one_command_with_raw_audio(tmp_path, capsys):
    """The issue's one command, `tfdynhp train --dataset synthetic-kws ... --export mcu
    --verify cortex-m4` (the front end `auto` is `micro` when exporting for the MCU): a DS-CNN
    pruned to a quarter of its MACs, a raw-audio bundle with CMSIS-NN kernels, verified, and
    every held-out clip classified on the device like in Python."""
    from tfdynhp import cli

    reason = _missing_firmware() or (None if shutil.which("espeak-ng") else "no espeak-ng")
    if reason:
        pytest.skip(reason)
    code = cli.main([
        "train", "--dataset", "synthetic-kws", "--arch", "ds-cnn", "--target", "25% macs",
        "--keywords", "yes,no", "--difficulty", "easy", "--size", "240", "--epochs", "2",
        "--export", "mcu", "--verify", "cortex-m4",
        "--tflm-dir", TFLM_DIR, "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0
    import json

    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["data"]["frontend"]["name"] == "micro" and s["macs"] <= 0.25 * 2_656_768 * 1.02
    fw = s["firmware"]["cortex-m4"]
    assert fw["kernels"] == "cmsis-nn" and fw["bit_exact"] is True
    assert fw["frontend_frames"] == 49 and fw["frontend_instructions_per_clip"] > 0
    agreement = s["firmware_agreement"]["cortex-m4"]
    assert agreement["n"] == s["data"]["split_sizes"]["test"]
    assert agreement["class_agreement"] >= 0.99 and agreement["bit_exact_fraction"] >= 0.99
    # Those clips ran on the release image (RELEASE=1: no test clips, no error strings): the
    # issue's goal for the pruned KWS firmware, <= 128 KB flash and <= 48 KB RAM.
    assert agreement["release"] is True and agreement["flash_parts"]["test vectors"] == 0
    assert agreement["flash_parts"]["total"] == agreement["flash_bytes"] <= 128 * 1024
    assert agreement["flash_bytes"] < fw["flash_bytes"] - 64_000  # the two 32 KB test clips
    assert (agreement["ram_static_bytes"] + agreement["stack_used_bytes"]
            + agreement["heap_used_bytes"]) <= 48 * 1024
    bundle = tmp_path / "run" / "export" / "mcu"
    assert audio_mcu.is_audio_bundle(bundle)
    assert "int16_t kTestClips" in (bundle / "test_vectors.cc").read_text()


# ---- streaming (stretch): the same detections on the device as in Python --------------------


def test_recognizer_rule():
    from tfdynhp.datasets.kws import streaming

    rule = streaming.Recognizer(classify_every=1, average_window=2, threshold=150,
                                suppression_frames=3, ignore=(2,))
    scores = np.array([[200, 10, 0], [100, 10, 0], [200, 10, 0], [0, 0, 255], [0, 0, 255],
                       [0, 250, 0], [0, 250, 0], [0, 250, 0], [0, 250, 0]])
    frames = list(range(48, 57))
    # Averages of the last two: [200] -> 0 at 48; [150] -> 0 at 49 (suppressed: 1 < 3 frames);
    # 0 again at 50 (suppressed); class 2 is ignored; class 1 at 54 (6 frames after 48) once,
    # then suppressed until 57.
    assert streaming.recognize(scores, frames, rule) == [(48, 0, 200), (54, 1, 250)]
    assert streaming.recognize(scores, frames, dataclasses.replace(rule, threshold=251)) == []


@pytest.mark.slow
def test_streaming_firmware_reports_what_python_reports(micro_ci, tmp_path):
    """A 4 s stream (silence, "yes", silence, "no", silence) through the firmware's streaming
    mode: the detections it prints equal `kws.streaming.detect` in Python TFLM, and they are
    the two keywords, each once."""
    from tfdynhp.datasets.kws import streaming

    reason = _missing_firmware()
    if reason:
        pytest.skip(reason)
    info = micro_ci[1]
    tflite, bundle = _raw_audio_bundle(micro_ci, tmp_path, filters=16, epochs=20, batch_size=16,
                                       clips=1)
    assert "constexpr bool kIgnoreClass[4] = {false, false, true, true};" in \
        (bundle / "audio_settings.h").read_text()
    y = info.splits["test"][1]
    _, clip_outputs = audio_mcu.bundle_pipeline_outputs(bundle, info.pcm["test"])
    best = {c: max((i for i in range(len(y)) if y[i] == c), key=lambda i: clip_outputs[i, c])
            for c in (0, 1)}  # the most confident "yes" and "no" clips
    silence = [i for i in range(len(y)) if y[i] == 2]
    pcm = info.pcm["test"]
    stream = np.concatenate([pcm[silence[0]][:8000], pcm[best[0]], pcm[silence[1]],
                             pcm[best[1]], pcm[silence[2]][:8000]])
    python = audio_mcu.stream_python(bundle, stream)
    device = audio_mcu.stream_on_device(bundle, stream, TFLM_DIR, "cortex-m4")
    assert device["detections"] == python
    assert device["frames"] == 1 + (len(stream) - 480) // 320
    rule = streaming.Recognizer(ignore=(2, 3))
    table = audio_mcu.feature_map(converters.read_model_info(info.frontend_tflite).outputs[0],
                                  converters.read_model_info(tflite).inputs[0])
    assert device["classifications"] == len(streaming.stream_scores(
        info.frontend_tflite, tflite, stream, rule, table)[0])
    # Each keyword found once, in order (with the default front end, which keeps no noise
    # estimate across clips; micro_speech's, with one, missed "no" in this stream).
    assert [c for _, c, _ in python] == [0, 1]
    assert device["instructions_per_frame"] > 50_000  # front end every 20 ms + classifier
