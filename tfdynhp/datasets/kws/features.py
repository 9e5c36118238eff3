"""The MFCC front end (as MLPerf Tiny's keyword-spotting reference) and feature normalization.

`FrontEnd` records every parameter a device needs to reproduce the features; `mfcc` computes
them with `tf.signal` exactly as MLPerf Tiny's `get_dataset.py` does: a Hann-windowed STFT
(30 ms window, 20 ms stride, FFT length the next power of two), magnitude spectrum, 40 mel
bands from 20 to 4000 Hz, `log(mel + 1e-6)`, the DCT-II of `tf.signal.mfccs_from_log_mel_
spectrograms`, first 10 coefficients. 16,000 samples give 49 frames.

`FeatureNormalization` is a per-coefficient mean and standard deviation measured on the
training split. Raw MFCCs span very different ranges (c0 is in the tens, the others near 0 to
a few units), which keeps a network with BatchNormalization at chance for hundreds of steps;
`load_synthetic_kws` therefore returns normalized features by default and records the
normalization, which a deployed model must apply to its device's MFCCs before quantizing the
input (`(mfcc - mean) / std`).
"""

import dataclasses

import numpy as np


class ClipFrames:
    """Frames and feature shape of a front end that slides `window_samples` windows every
    `stride_samples` over `clip_samples` and keeps `num_coefficients` per frame (`FrontEnd`,
    `micro_frontend.MicroFrontEnd`)."""

    @property
    def num_frames(self):
        """Windows per clip (49 for the defaults)."""
        return 1 + (self.clip_samples - self.window_samples) // self.stride_samples

    @property
    def shape(self):
        """The feature shape of one clip, `(frames, coefficients, 1)`."""
        return (self.num_frames, self.num_coefficients, 1)


@dataclasses.dataclass(frozen=True)
class FrontEnd(ClipFrames):
    """The feature front end's parameters.

    Attributes:
        sample_rate: Hz. Defaults to 16000.
        clip_samples: samples per clip (1 s). Defaults to 16000.
        window_samples: STFT window, 480 = 30 ms. Defaults to 480.
        stride_samples: STFT stride, 320 = 20 ms. Defaults to 320.
        fft_length: FFT size (next power of two of the window). Defaults to 512.
        window: `"hann"` (periodic, `tf.signal.hann_window`). Defaults to `"hann"`.
        num_mel_bins: mel bands. Defaults to 40.
        lower_edge_hz, upper_edge_hz: mel filterbank range. Defaults to 20 and 4000.
        log_offset: added before the log. Defaults to 1e-6.
        num_coefficients: MFCCs kept. Defaults to 10.
        input_scale: the waveform's scale: 16-bit PCM divided by 32768.
    """

    sample_rate: int = 16000
    clip_samples: int = 16000
    window_samples: int = 480
    stride_samples: int = 320
    fft_length: int = 512
    window: str = "hann"
    num_mel_bins: int = 40
    lower_edge_hz: float = 20.0
    upper_edge_hz: float = 4000.0
    log_offset: float = 1e-6
    num_coefficients: int = 10
    input_scale: str = "int16 / 32768"

    def to_dict(self):
        """Returns the parameters (and `num_frames`) as a JSON-serializable dict."""
        return {**dataclasses.asdict(self), "num_frames": self.num_frames}


def mfcc(audio, frontend=FrontEnd()):
    """Computes MFCCs of a batch of clips with `tf.signal`.

    Args:
        audio: float array of shape `(n, frontend.clip_samples)`, samples in `[-1, 1]`.
        frontend: the `FrontEnd`. Defaults to MLPerf Tiny's parameters.

    Returns:
        A `float32` numpy array of shape `(n, frames, coefficients)`.
    """
    import tensorflow as tf

    audio = tf.convert_to_tensor(np.asarray(audio, dtype=np.float32))
    stft = tf.signal.stft(
        audio, frame_length=frontend.window_samples, frame_step=frontend.stride_samples,
        fft_length=frontend.fft_length, window_fn=tf.signal.hann_window,
    )
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        frontend.num_mel_bins, frontend.fft_length // 2 + 1, frontend.sample_rate,
        frontend.lower_edge_hz, frontend.upper_edge_hz,
    )
    mel = tf.tensordot(tf.abs(stft), mel_matrix, 1)
    log_mel = tf.math.log(mel + frontend.log_offset)
    coefficients = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)
    return coefficients[..., : frontend.num_coefficients].numpy().astype(np.float32)


@dataclasses.dataclass(frozen=True)
class FeatureNormalization:
    """Per-coefficient standardization `(x - mean) / std`, to ship with a model.

    Attributes:
        mean: tuple of one mean per MFCC coefficient (training split, all frames).
        std: tuple of one standard deviation per coefficient (floored at 1e-6).
    """

    mean: tuple
    std: tuple

    @classmethod
    def from_features(cls, x):
        """Measures the normalization on features `x` of shape `(n, frames, coefficients[, 1])`.

        Raises:
            ValueError: if `x` is empty.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            raise ValueError("Cannot measure a feature normalization on no clips.")
        flat = x.reshape(-1, x.shape[2])
        std = np.maximum(flat.std(axis=0), 1e-6)
        return cls(tuple(float(m) for m in flat.mean(axis=0)), tuple(float(s) for s in std))

    def apply(self, x):
        """Returns `(x - mean) / std` as `float32`; `x` has coefficients on axis 2."""
        x = np.asarray(x, dtype=np.float32)
        shape = (1, 1, len(self.mean)) + (1,) * (x.ndim - 3)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        return ((x - mean) / std).astype(np.float32)

    def to_dict(self):
        """Returns `{"mean": [...], "std": [...], "axis": "mfcc coefficient"}`."""
        return {"mean": list(self.mean), "std": list(self.std), "axis": "mfcc coefficient"}
