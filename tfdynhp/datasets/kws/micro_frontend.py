"""The micro front end: raw 16 kHz audio -> int8 features, as a TFLite Micro model.

The same `.tflite` computes the training features in Python (TFLite Micro's Python interpreter,
`run_frontend`) and runs on the device before the classifier, so device and training features
are equal by construction. It is TFLM micro_speech's audio preprocessor (the `signal` library's
ops: Hann window, FFT auto-scale, real FFT, energy, 40-channel mel filter bank, square root,
spectral-subtraction noise reduction, PCAN gain control, log; 30 ms windows every 20 ms; the
int8 scaling of `audio_preprocessor_int8.tflite`), built here graph by graph
(`filterbank_tflite`; equal to micro_speech's model op for op and constant for constant), plus
one int8 FULLY_CONNECTED that maps the 40 log filter-bank channels to `num_coefficients`
normalized cepstral coefficients (DCT-II, as MFCCs, with the training split's per-coefficient
mean and standard deviation folded into its weights and bias: `frontend_tflite`). One
invocation takes one 30 ms window (480 int16 samples) and returns one frame of features; the
noise estimate of the spectral subtraction carries over from window to window, so a clip is
run from a reset interpreter, window after window (`run_frontend`), on the device as here.

`MicroFrontEnd()` holds micro_speech's parameters; the raw-audio path uses `DEFAULT`, the same
graph with noise reduction and PCAN off and a wider int8 log scale (why: see `DEFAULT`).

A 1 s clip gives 49 frames of 10 int8 values: the `(49, 10, 1)` input of MLPerf Tiny's DS-CNN,
as the MFCC front end (`features.FrontEnd`). The classifier is trained on the dequantized
features, `q * output_scale`.
"""

import dataclasses

import numpy as np

from tfdynhp.datasets.kws import signal_constants as sc
from tfdynhp.datasets.kws.features import ClipFrames, FeatureNormalization
from tfdynhp.datasets.kws.tflite_graph import Graph

NAME = "micro"
# int8 filter-bank features -> real value: micro_speech maps the int16 log output f (natural
# log x 64) to q = trunc((256 f + 333) / 666) - 128, so f / 64 = (q + 128) * 666 / 256 / 64.
FILTERBANK_SCALE = 666.0 / 256.0 / 64.0
FILTERBANK_ZERO_POINT = -128
ARENA_BYTES = 16 * 1024


@dataclasses.dataclass(frozen=True)
class MicroFrontEnd(ClipFrames):
    """Parameters of the micro front end (micro_speech's `FeatureParams` defaults).

    Attributes:
        sample_rate, clip_samples: 16 kHz, 1 s clips.
        window_samples, stride_samples: 30 ms windows (480) every 20 ms (320).
        window_scaling_bits: fixed-point bits of the Hann window weights.
        num_channels, lower_band_limit_hz, upper_band_limit_hz: mel filter bank (40, 125 Hz
            to 7.5 kHz).
        filter_bank_alignment, filter_bank_channel_block_size: filter-bank table layout.
        filter_bank_post_scaling_bits: log output scale (2**bits).
        spectral_subtraction_bits, smoothing_bits, even_smoothing, odd_smoothing,
            min_signal_remaining, clamping: noise reduction.
        pcan_strength, pcan_offset, pcan_gain_bits, pcan_smoothing_bits: PCAN gain control.
        num_coefficients: cepstral coefficients per frame (the classifier's second axis).
        output_scale: real value of one int8 step of the normalized coefficients (1/32:
            +-4 standard deviations).
        filterbank_scale, filterbank_zero_point: int8 quantization of the log filter bank
            (natural log) inside the device front end: real = (q - zero_point) * scale.
            micro_speech's (0.0406, -128) covers logs 0 to 10.4: enough with its noise
            reduction and PCAN, which keep the log small; without them the log of the filter
            bank reaches 16 and more, and needs a larger scale (bench/kws_frontend.py).
    """

    sample_rate: int = 16000
    clip_samples: int = 16000
    window_samples: int = 480
    stride_samples: int = 320
    window_scaling_bits: int = 12
    num_channels: int = 40
    lower_band_limit_hz: float = 125.0
    upper_band_limit_hz: float = 7500.0
    filter_bank_alignment: int = 4
    filter_bank_channel_block_size: int = 4
    filter_bank_post_scaling_bits: int = 6
    spectral_subtraction_bits: int = 14
    smoothing_bits: int = 10
    even_smoothing: float = 0.025
    odd_smoothing: float = 0.06
    min_signal_remaining: float = 0.05
    clamping: bool = False
    pcan_strength: float = 0.95
    pcan_offset: float = 80.0
    pcan_gain_bits: int = 21
    pcan_smoothing_bits: int = 10
    num_coefficients: int = 10
    output_scale: float = 1.0 / 32.0
    filterbank_scale: float = FILTERBANK_SCALE
    filterbank_zero_point: int = FILTERBANK_ZERO_POINT

    name = NAME

    @property
    def fft(self):
        """`(fft_length, log2)` of the window."""
        return sc.fft_length(self.window_samples)

    def to_dict(self):
        """Parameters, `name` and `num_frames`, JSON-serializable."""
        return {"name": NAME, **dataclasses.asdict(self), "num_frames": self.num_frames}


# The raw-audio path's front end (`micro_dataset.DEFAULT_FRONTEND`, `streaming.FRONTEND`):
# micro_speech's without its noise reduction (no smoothing: the noise estimate stays zero) and
# PCAN (strength 0), and an int8 log scale of 0.08 (logs 0 to 20.4). Each clip starts from a
# reset front end, so the spectral subtraction learns its noise estimate from the clip itself
# and removes the speech: 35 % of the int8 log channels sit at the floor, 79 % in the last
# frame; micro_speech's int8 scale (logs 0 to 10.4) in turn saturates 80 % of the values once
# noise reduction and PCAN are off. With both off the front end has no state: a window's
# features do not depend on the audio before it (clips and streams alike). Held-out voices,
# dense DS-CNN, 3 seeds: micro_speech's front end 5.7 points below the MFCC path, this one
# within 1 point (bench/kws_frontend.py --accuracy-only; bench/results/kws_frontend_variants.md).
DEFAULT = MicroFrontEnd(even_smoothing=0.0, odd_smoothing=0.0, pcan_strength=0.0,
                        filterbank_scale=0.08)
STAGES = ("micro_speech", "log", "int8")


def _filterbank_graph(fe, stage="int8"):
    """The filter-bank graph; returns `(graph, output index)`.

    Stages: `"micro_speech"`: micro_speech's int8 audio preprocessor op for op (the energy
    bins outside the filter bank zeroed, the int16 log mapped to int8 with int32 MUL, ADD, DIV,
    MINIMUM, MAXIMUM and CASTs). `"log"`: the same computation up to the int16 log filter bank
    (scale 1/64: natural log), without the zeroing, which the filter bank's zero weights make a
    no-op (tested). `"int8"`: the log quantized to int8 by one QUANTIZE with micro_speech's
    int8 scale (it rounds differently: within one step of micro_speech's mapping): what the
    device front end uses, 8 small operators and 50 kB of kernel code fewer.
    """
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}. Expected one of {STAGES}.")
    fft_length, fft_bits = fe.fft
    bank = sc.filter_bank(fft_length // 2 + 1, fe.sample_rate, fe.num_channels,
                          fe.lower_band_limit_hz, fe.upper_band_limit_hz,
                          fe.filter_bank_alignment, fe.filter_bank_channel_block_size)
    start, end = bank["start_index"], bank["end_index"]
    bins = fft_length // 2 + 1
    correction_bits = fft_bits - sc.FILTER_BANK_WEIGHT_SCALING_BITS // 2
    channels = fe.num_channels
    g = Graph("tfdynhp micro front end (TFLM signal ops, micro_speech parameters)")
    audio = g.input("audio_frame", "int16", (1, fe.window_samples))
    window = g.constant("hann_window", sc.hann_window_weights(fe.window_samples,
                                                              fe.window_scaling_bits))
    windowed = g.tensor("signal_window", "int16", (1, fe.window_samples))
    g.custom("SignalWindow", [audio, window], [windowed], {"shift": fe.window_scaling_bits})
    flat = g.tensor("reshape", "int16", (fe.window_samples,))
    g.builtin("RESHAPE", [windowed, g.constant("reshape_shape", np.array([-1], np.int32))],
              [flat])
    scaled = g.tensor("signal_fft_auto_scale", "int16", (fe.window_samples,))
    shift = g.tensor("signal_fft_auto_scale_shift", "int32", ())
    g.custom("SignalFftAutoScale", [flat], [scaled, shift], {})
    spectrum = g.tensor("signal_rfft", "int16", (2 * bins,))
    g.custom("SignalRfft", [scaled], [spectrum], {"T": 7, "fft_length": fft_length})  # 7: int16
    energy = g.tensor("signal_energy", "uint32", (bins,))
    g.custom("SignalEnergy", [spectrum], [energy], {"end_index": end, "start_index": start})
    energy_masked = (energy if stage != "micro_speech"
                     else _zero_outside(g, energy, start, end, bins))
    logged = _log_filterbank(g, fe, energy_masked, shift, bank, correction_bits)
    if stage == "log":
        return g, logged
    if stage == "int8":
        features = g.tensor("filterbank_int8", "int8", (channels,), scale=fe.filterbank_scale,
                            zero_point=fe.filterbank_zero_point)
        g.builtin("QUANTIZE", [logged], [features])
        return g, features
    features = g.tensor("filterbank_int8", "int8", (channels,), scale=FILTERBANK_SCALE,
                        zero_point=FILTERBANK_ZERO_POINT)
    # int16 log -> int8: q = trunc((256 f + 333) / 666) - 128, clamped (micro_speech's ops).
    x = g.tensor("log_int32", "int32", (channels,))
    g.builtin("CAST", [logged], [x])
    steps = [("MUL", 256, "MulOptions"), ("ADD", 333, "AddOptions"), ("DIV", 666, "DivOptions"),
             ("ADD", -128, "AddOptions"), ("MINIMUM", 127, None), ("MAXIMUM", -128, None)]
    for i, (op, value, options_type) in enumerate(steps):
        y = g.tensor(f"scale_{i}_{op.lower()}", "int32", (channels,))
        options = getattr(g._schema, f"{options_type}T")() if options_type else None
        g.builtin(op, [x, g.constant(f"scale_{i}_value", np.array(value, np.int32))], [y],
                  options, options_type)
        x = y
    g.builtin("CAST", [x], [features])
    return g, features


def _zero_outside(g, energy, start, end, bins):
    """micro_speech's zeroing of the energy bins outside [start, end) (int32 ops)."""
    as_int = g.tensor("energy_int32", "int32", (bins,))
    g.builtin("CAST", [energy], [as_int])
    band = g.tensor("energy_band", "int32", (end - start,))
    options = g._schema.StridedSliceOptionsT()
    g.builtin("STRIDED_SLICE", [as_int, g.constant("slice_begin", np.array([start], np.int32)),
                                g.constant("slice_end", np.array([end], np.int32)),
                                g.constant("slice_stride", np.array([1], np.int32))],
              [band], options, "StridedSliceOptions")
    padded = g.tensor("energy_padded", "int32", (bins,))
    concat = g._schema.ConcatenationOptionsT()
    concat.axis = 0
    g.builtin("CONCATENATION", [g.constant("zeros_head", np.zeros(start, np.int32)), band,
                                g.constant("zeros_tail", np.zeros(bins - end, np.int32))],
              [padded], concat, "ConcatenationOptions")
    energy_masked = g.tensor("energy_masked", "uint32", (bins,))
    g.builtin("CAST", [padded], [energy_masked])
    return energy_masked


def _log_filterbank(g, fe, energy, shift, bank, correction_bits):
    """Filter bank, square root, noise reduction, PCAN, log: int16 (natural log x 64)."""
    channels = fe.num_channels
    filtered = g.tensor("signal_filter_bank", "uint64", (channels,))
    g.custom("SignalFilterBank", [
        energy, g.constant("fb_weights", bank["weights"]),
        g.constant("fb_unweights", bank["unweights"]),
        g.constant("fb_channel_frequency_starts", bank["channel_frequency_starts"]),
        g.constant("fb_channel_weight_starts", bank["channel_weight_starts"]),
        g.constant("fb_channel_widths", bank["channel_widths"]),
    ], [filtered], {"num_channels": channels})
    root = g.tensor("signal_filter_bank_square_root", "uint32", (channels,))
    g.custom("SignalFilterBankSquareRoot", [filtered, shift], [root], {})
    denoised = g.tensor("signal_spectral_subtraction", "uint32", (channels,))
    noise = g.tensor("signal_noise_estimate", "uint32", (channels,))
    g.custom("SignalFilterBankSpectralSubtraction", [root], [denoised, noise], {
        **sc.spectral_subtraction(fe.even_smoothing, fe.odd_smoothing,
                                  fe.min_signal_remaining, fe.spectral_subtraction_bits),
        "clamping": bool(fe.clamping), "num_channels": channels,
        "smoothing_bits": fe.smoothing_bits,
        "spectral_subtraction_bits": fe.spectral_subtraction_bits,
    })
    lut = sc.pcan_lut(fe.pcan_strength, fe.pcan_offset, fe.pcan_smoothing_bits - correction_bits,
                      fe.pcan_gain_bits)
    gained = g.tensor("signal_pcan", "uint32", (channels,))
    g.custom("SignalPCAN", [denoised, noise, g.constant("pcan_lut", lut)], [gained],
             {"snr_shift": 6})  # micro_speech's pcan_op fixes it to 6
    logged = g.tensor("signal_filter_bank_log", "int16", (channels,),
                      scale=1.0 / (1 << fe.filter_bank_post_scaling_bits), zero_point=0)
    g.custom("SignalFilterBankLog", [gained], [logged], {
        "input_correction_bits": correction_bits,
        "output_scale": 1 << fe.filter_bank_post_scaling_bits})
    return logged


def filterbank_tflite(fe=MicroFrontEnd(), stage="micro_speech"):
    """The filter-bank front end alone: one 480-sample int16 window -> 40 log filter-bank
    channels. `stage` (see `_filterbank_graph`): `"micro_speech"` (default) is micro_speech's
    int8 audio preprocessor op for op, int8 (`(q + 128) * FILTERBANK_SCALE` ~ natural log of
    the energy); `"int8"` the same features as the device front end computes them; `"log"` the
    int16 log (`f / 64`)."""
    g, features = _filterbank_graph(fe, stage)
    g.output(features)
    return g.to_bytes()


def cepstral_weights(fe, normalization):
    """The float weights `(coefficients, channels)` and bias of the front end's last layer:
    DCT-II of the log filter bank, standardized per coefficient (pure)."""
    dct = sc.dct_matrix(fe.num_coefficients, fe.num_channels)
    mean = np.asarray(normalization.mean, np.float64)
    std = np.asarray(normalization.std, np.float64)
    return dct / std[:, None], -mean / std


def frontend_tflite(normalization, fe=MicroFrontEnd()):
    """The device front end: one 480-sample int16 window -> `num_coefficients` int8
    normalized cepstral coefficients (real value `q * fe.output_scale`).

    Args:
        normalization: `FeatureNormalization` of the DCT coefficients of the training split
            (`measure_normalization`).
        fe: The `MicroFrontEnd`.
    """
    if len(normalization.mean) != fe.num_coefficients:
        raise ValueError(f"`normalization` has {len(normalization.mean)} coefficients; the front "
                         f"end computes {fe.num_coefficients}.")
    g, features = _filterbank_graph(fe, "int8")
    weights, bias = cepstral_weights(fe, normalization)
    w_scale = np.maximum(np.abs(weights).max(axis=1), 1e-12) / 127.0
    w_q = np.clip(np.round(weights / w_scale[:, None]), -127, 127).astype(np.int8)
    in_scale = fe.filterbank_scale
    b_q = np.round(bias / (in_scale * w_scale)).astype(np.int32)
    kernel = g.constant("cepstrum_weights", w_q, scale=w_scale, zero_point=np.zeros_like(b_q),
                        quantized_dimension=0)
    bias_t = g.constant("cepstrum_bias", b_q, scale=in_scale * w_scale,
                        zero_point=np.zeros_like(b_q), quantized_dimension=0)
    row = g.tensor("filterbank_row", "int8", (1, fe.num_channels), scale=in_scale,
                   zero_point=fe.filterbank_zero_point)
    g.builtin("RESHAPE", [features, g.constant("row_shape", np.array([1, fe.num_channels],
                                                                     np.int32))], [row])
    out = g.tensor("cepstrum", "int8", (1, fe.num_coefficients), scale=fe.output_scale,
                   zero_point=0)
    options = g._schema.FullyConnectedOptionsT()
    g.builtin("FULLY_CONNECTED", [row, kernel, bias_t], [out], options, "FullyConnectedOptions")
    g.output(out)
    return g.to_bytes()


def _frames(pcm, fe):
    pcm = np.asarray(pcm)
    if pcm.ndim != 2 or pcm.shape[1] != fe.clip_samples or pcm.dtype != np.int16:
        raise ValueError(f"Expected int16 clips of shape (n, {fe.clip_samples}). Received: "
                         f"{pcm.dtype} array of shape {pcm.shape}. Convert float audio with "
                         "`to_pcm16`.")
    starts = np.arange(fe.num_frames) * fe.stride_samples
    return pcm[:, starts[:, None] + np.arange(fe.window_samples)]


def run_frontend(tflite_bytes, pcm, fe=MicroFrontEnd()):
    """Runs a front-end model over clips in TFLite Micro's Python interpreter, as the device does.

    Each clip starts from a reset interpreter (noise estimate zero) and is fed window by
    window (`window_samples` every `stride_samples`).

    Args:
        tflite_bytes: `frontend_tflite` or `filterbank_tflite` bytes.
        pcm: int16 clips, `(n, clip_samples)`.
        fe: The `MicroFrontEnd`.

    Returns:
        Array `(n, num_frames, outputs)` of the model's output type (int8 for the front ends).
    """
    from tflite_micro.python.tflite_micro import runtime

    frames = _frames(pcm, fe)
    interpreter = runtime.Interpreter.from_bytes(tflite_bytes, arena_size=ARENA_BYTES)
    details = interpreter.get_output_details(0)
    width = int(np.prod(details["shape"]))
    out = np.zeros((len(frames), fe.num_frames, width), details["dtype"])
    for i, clip in enumerate(frames):
        interpreter.reset()
        for f in range(fe.num_frames):
            interpreter.set_input(clip[f].reshape(1, -1), 0)
            interpreter.invoke()
            out[i, f] = np.asarray(interpreter.get_output(0)).reshape(-1)
    return out


def to_pcm16(audio):
    """Float audio in [-1, 1] -> int16 PCM (`round(x * 32768)`, clipped: the inverse of the
    MFCC front end's `int16 / 32768`)."""
    return np.clip(np.round(np.asarray(audio, np.float64) * 32768.0), -32768, 32767).astype(
        np.int16)


def measure_normalization(filterbank_features, fe=MicroFrontEnd()):
    """Per-coefficient mean and std of the DCT of int8 filter-bank features (training split).

    Args:
        filterbank_features: int8 `(n, frames, num_channels)` from `filterbank_tflite`.
    """
    x = ((np.asarray(filterbank_features, np.float64) - fe.filterbank_zero_point)
         * fe.filterbank_scale)
    coefficients = x @ sc.dct_matrix(fe.num_coefficients, fe.num_channels).T
    return FeatureNormalization.from_features(coefficients)


def dequantize(features, fe=MicroFrontEnd()):
    """int8 front-end output -> the float classifier input `(n, frames, coefficients, 1)`."""
    return (np.asarray(features, np.float32) * np.float32(fe.output_scale))[..., None]
