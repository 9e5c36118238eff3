"""Constant tables of TFLite Micro's audio front end (its `signal` library), computed in Python.

Ports of the helpers TFLM's micro_speech `audio_preprocessor.py` uses to build its front end
(`python/tflite_micro/signal/ops/{window_op,fft_ops,filter_bank_ops,pcan_op}.py` and the
`freq_to_mel` / `wide_dynamic_func_lut` pybind wrappers, TFLM 90b983c, Apache-2.0): Hann window
weights, the mel filter bank's weights and channel tables, the spectral-subtraction constants
and the PCAN gain lookup table. The C helpers computed in 32-bit `float` with the C library's
`log1pf` and `powf`; they are called here through `ctypes` when the C library is at hand, so
the tables match micro_speech's bit for bit (`tests/test_kws_micro_frontend.py` checks them
against the constants of an upstream-equivalent model), with a float32 NumPy fallback.

Pure functions of their arguments.
"""

import ctypes
import ctypes.util
import math

import numpy as np

FILTER_BANK_WEIGHT_SCALING_BITS = 12
PCAN_SNR_BITS = 12
WIDE_DYNAMIC_FUNCTION_BITS = 32
WIDE_DYNAMIC_FUNCTION_LUT_SIZE = 4 * WIDE_DYNAMIC_FUNCTION_BITS - 3
_MIN_FFT_LENGTH, _MAX_FFT_LENGTH = 64, 2048


def _libm():
    name = ctypes.util.find_library("m")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        lib = None
    if lib is None:
        return None, None
    log1pf, powf = lib.log1pf, lib.powf
    log1pf.restype, log1pf.argtypes = ctypes.c_float, [ctypes.c_float]
    powf.restype, powf.argtypes = ctypes.c_float, [ctypes.c_float, ctypes.c_float]
    return log1pf, powf


_LOG1PF, _POWF = _libm()


def _f32(x):
    return np.float32(x)


def log1pf(x):
    """C's `log1pf` (float32)."""
    return _f32(_LOG1PF(float(x))) if _LOG1PF else _f32(np.log1p(_f32(x)))


def powf(x, y):
    """C's `powf` (float32)."""
    return _f32(_POWF(float(x), float(y))) if _POWF else _f32(np.power(_f32(x), _f32(y)))


def freq_to_mel(freq):
    """TFLM's `FreqToMel`: `1127 * log1p(freq / 700)` in float32."""
    return _f32(_f32(1127.0) * log1pf(_f32(_f32(freq) / _f32(700.0))))


def hann_window_weights(window_length, shift):
    """int16 Hann window `round((0.5 - 0.5 cos(2 pi (n + 0.5) / N)) * 2**shift)`."""
    index = np.arange(window_length)
    weights = 0.5 - 0.5 * np.cos(np.pi * 2 / window_length * (index + 0.5))
    return np.round(weights * (2**shift)).astype(np.int16)


def fft_length(window_length):
    """`(fft_length, log2)`: the smallest power of two >= `window_length` TFLM supports."""
    bits = math.ceil(math.log2(window_length))
    length = 2**bits
    if not _MIN_FFT_LENGTH <= length <= _MAX_FFT_LENGTH:
        raise ValueError(f"A window of {window_length} samples needs an FFT of {length} points; "
                         f"TFLM's rfft supports {_MIN_FFT_LENGTH} to {_MAX_FFT_LENGTH}.")
    return length, bits


def _center_mel_freqs(num_channels, lower, upper):
    if lower < 0 or lower > upper:
        raise ValueError(f"Expected 0 <= lower band limit <= upper band limit. Received: "
                         f"lower={lower}, upper={upper}.")
    mel_lower, mel_upper = freq_to_mel(lower), freq_to_mel(upper)
    spacing = _f32(mel_upper - mel_lower) / _f32(num_channels)
    return mel_lower + spacing * np.arange(1, num_channels + 1, dtype=np.float32)


def filter_bank(spectrum_size, sample_rate, num_channels, lower, upper, alignment=4,
                block_size=4, scale_bits=FILTER_BANK_WEIGHT_SCALING_BITS):
    """The mel filter bank of TFLM's `SignalFilterBank` (micro_speech's layout).

    Returns:
        Dict with `start_index`, `end_index` (the FFT bins it reads) and the int16 arrays
        `weights`, `unweights`, `channel_frequency_starts`, `channel_weight_starts`,
        `channel_widths` (`num_channels + 1` entries each).
    """
    index_alignment = 1 if alignment < 2 else alignment // 2  # int16 items
    n = num_channels + 1
    freq_starts, weight_starts, widths = (np.zeros(n, np.int16) for _ in range(3))
    actual_starts, actual_widths = np.zeros(n, np.int16), np.zeros(n, np.int16)
    centers = _center_mel_freqs(n, lower, upper)
    hz_per_bin = (sample_rate / 2) / (spectrum_size - 1)
    start_index = round(1 + lower / hz_per_bin)
    chan_start, weight_index, needs_zeros = start_index, 0, False
    for chan in range(n):
        freq = chan_start
        while freq_to_mel(freq * hz_per_bin) <= centers[chan]:
            freq += 1
        width = freq - chan_start
        actual_starts[chan], actual_widths[chan] = chan_start, width
        if width == 0:
            freq_starts[chan], weight_starts[chan], widths[chan] = 0, 0, block_size
            if not needs_zeros:
                needs_zeros = True
                weight_starts[:chan] += block_size
                weight_index += block_size
        else:
            aligned = (chan_start // index_alignment) * index_alignment
            aligned_width = chan_start - aligned + width
            padded = ((aligned_width - 1) // block_size + 1) * block_size
            freq_starts[chan], weight_starts[chan], widths[chan] = aligned, weight_index, padded
            weight_index += padded
        chan_start = freq
    weights, unweights = np.zeros(weight_index, np.int16), np.zeros(weight_index, np.int16)
    end_index = 0
    mel_low = freq_to_mel(lower)
    for chan in range(n):
        freq = int(actual_starts[chan])
        offset = freq - int(freq_starts[chan])
        denominator = _f32(centers[chan] - (mel_low if chan == 0 else centers[chan - 1]))
        for j in range(int(actual_widths[chan])):
            weight = _f32(_f32(centers[chan] - freq_to_mel(freq * hz_per_bin)) / denominator)
            i = int(weight_starts[chan]) + offset + j
            weights[i] = int(weight * (1 << scale_bits))
            unweights[i] = int((1 - weight) * (1 << scale_bits))
            freq += 1
        end_index = max(end_index, freq)
    if end_index >= spectrum_size:
        raise ValueError(f"The upper band limit {upper} Hz is above the spectrum "
                         f"({sample_rate / 2} Hz).")
    return {"start_index": int(start_index), "end_index": int(end_index), "weights": weights,
            "unweights": unweights, "channel_frequency_starts": freq_starts,
            "channel_weight_starts": weight_starts, "channel_widths": widths}


def spectral_subtraction(smoothing, alternate_smoothing, min_signal_remaining, bits=14):
    """Fixed-point constants of `SignalFilterBankSpectralSubtraction` (noise reduction)."""
    alternate_smoothing = alternate_smoothing or smoothing
    one = 1 << bits
    s, a = int(smoothing * one), int(alternate_smoothing * one)
    return {"smoothing": s, "one_minus_smoothing": one - s, "alternate_smoothing": a,
            "alternate_one_minus_smoothing": one - a,
            "min_signal_remaining": int(min_signal_remaining * one)}


def _pcan_gain(strength, offset, gain_bits, input_bits, x):
    x_float = _f32(_f32(x) / _f32(1 << input_bits))
    gain = _f32(_f32(1 << gain_bits) * powf(_f32(x_float + _f32(offset)), -_f32(strength)))
    if gain > 32767:
        return 32767
    return int(_f32(gain + _f32(0.5)))


def pcan_lut(strength, offset, input_bits, gain_bits):
    """The int16 gain lookup table of `SignalPCAN` (`WideDynamicFuncLut`, 125 entries)."""
    size = WIDE_DYNAMIC_FUNCTION_LUT_SIZE
    lut = np.zeros(size + 1 + 6, np.int64)  # the C code writes from index -6
    lut[6] = _pcan_gain(strength, offset, gain_bits, input_bits, 0)
    lut[7] = _pcan_gain(strength, offset, gain_bits, input_bits, 1)
    for interval in range(2, WIDE_DYNAMIC_FUNCTION_BITS + 1):
        x0 = 1 << (interval - 1)
        x1 = x0 + (x0 >> 1)
        x2 = x0 + (x0 - 1) if interval == WIDE_DYNAMIC_FUNCTION_BITS else 2 * x0
        y0, y1, y2 = (_pcan_gain(strength, offset, gain_bits, input_bits, x)
                      for x in (x0, x1, x2))
        a1 = 4 * (y1 - y0) - (y2 - y0)
        lut[4 * interval:4 * interval + 4] = (y0, a1, (y2 - y0) - a1, 0)
    return lut[6:6 + size].astype(np.int16)


def dct_matrix(num_coefficients, num_channels):
    """DCT-II as `tf.signal.mfccs_from_log_mel_spectrograms` computes it: `(coefficients,
    channels)`, row c = `cos(pi c (2k + 1) / (2K)) * 2 / sqrt(2K)`."""
    k = np.arange(num_channels)
    c = np.arange(num_coefficients)[:, None]
    return (2.0 * np.cos(np.pi * c * (2 * k + 1) / (2 * num_channels))
            / np.sqrt(2.0 * num_channels))
