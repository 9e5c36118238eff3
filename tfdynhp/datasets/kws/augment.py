"""Noise, channel and room augmentations of 1 s clips, and the three difficulty levels.

Every function here is pure numpy: randomness comes in as a `numpy.random.Generator` or as
already-drawn parameters, so a clip is a deterministic function of its plan (`plan.Clip`).

A clip is rendered by `render_clip`, in this order:

1. the trimmed utterance is placed at its offset in a 1 s window of zeros;
2. reverb (if drawn): convolution with an exponentially decaying noise impulse response of
   reverberation time `rt60_s` and direct-to-reverberant ratio `drr_db`, cut at the window end;
3. the speech is scaled to an RMS (over the utterance) of `level_dbfs` dB re full scale;
4. noise is added with RMS `level_dbfs - snr_db`: white, pink (1/f power), or babble (2-6
   other utterances of the same split's speakers, summed at equal RMS at random offsets);
   a "silence" clip is this noise alone;
5. band-pass (if drawn): a zero-phase filter with second-order (12 dB/octave) skirts at
   `bandpass_hz = (low, high)` on speech and noise (a cheap microphone or a phone line);
6. if the peak exceeds 0.99 the clip is scaled down to 0.99, then it is quantized to 16-bit
   PCM as a microphone would deliver it.
"""

import dataclasses

import numpy as np

SAMPLE_RATE = 16000
NOISE_TYPES = ("white", "pink", "babble")


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """The augmentation distribution of one difficulty level (all ranges uniform, inclusive).

    Attributes:
        name: `"easy"`, `"medium"` or `"hard"`.
        snr_db: range of the signal-to-noise ratio (speech RMS over noise RMS, in dB).
        noise_types: the noise kinds, drawn with equal probability.
        p_bandpass: probability that a clip is band-passed.
        bandpass_low_hz, bandpass_high_hz: ranges of the band-pass corner frequencies.
        p_reverb: probability that the speech is reverberated.
        rt60_s: range of the reverberation time (s).
        drr_db: range of the direct-to-reverberant energy ratio (dB).
        level_dbfs: range of the speech RMS level (dB re full scale): random amplitude.
        babble_talkers: range of the number of utterances summed into babble.
    """

    name: str
    snr_db: tuple
    noise_types: tuple
    p_bandpass: float = 0.0
    bandpass_low_hz: tuple = (100.0, 400.0)
    bandpass_high_hz: tuple = (2500.0, 6000.0)
    p_reverb: float = 0.0
    rt60_s: tuple = (0.1, 0.5)
    drr_db: tuple = (0.0, 10.0)
    level_dbfs: tuple = (-30.0, -10.0)
    babble_talkers: tuple = (2, 6)

    def to_dict(self):
        """Returns the level as a JSON-serializable dict (lists for ranges)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in
                dataclasses.asdict(self).items()}

    @property
    def uses_babble(self):
        return "babble" in self.noise_types


DIFFICULTIES = {
    "easy": Difficulty("easy", snr_db=(10.0, 30.0), noise_types=("white", "pink")),
    "medium": Difficulty(
        "medium", snr_db=(0.0, 20.0), noise_types=NOISE_TYPES, p_bandpass=0.5, p_reverb=0.5
    ),
    "hard": Difficulty(
        "hard", snr_db=(-5.0, 15.0), noise_types=NOISE_TYPES, p_bandpass=0.7,
        bandpass_low_hz=(200.0, 600.0), bandpass_high_hz=(2000.0, 4000.0), p_reverb=0.7,
        rt60_s=(0.3, 0.9), drr_db=(-5.0, 5.0),
    ),
}


def get_difficulty(difficulty):
    """Returns the `Difficulty` named `difficulty` (case-insensitive), or `difficulty` itself.

    Raises:
        ValueError: if the name is unknown.
        TypeError: if it is neither a string nor a `Difficulty`.
    """
    if isinstance(difficulty, Difficulty):
        return difficulty
    if not isinstance(difficulty, str):
        raise TypeError(
            f"Expected `difficulty` to be one of {list(DIFFICULTIES)}. "
            f"Received: difficulty={difficulty!r}"
        )
    key = difficulty.strip().lower()
    if key not in DIFFICULTIES:
        raise ValueError(
            f"Unknown difficulty {difficulty!r}. Expected one of {list(DIFFICULTIES)}."
        )
    return DIFFICULTIES[key]


def rms(x):
    """Root mean square of `x` (0 for an empty array)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def white_noise(rng, n):
    """Unit-RMS Gaussian white noise of `n` samples."""
    x = rng.standard_normal(n)
    return x / max(rms(x), 1e-12)


def pink_noise(rng, n):
    """Unit-RMS pink noise (power falling as 1/f) of `n` samples, shaped in the spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    x -= x.mean()
    return x / max(rms(x), 1e-12)


def babble_noise(rng, pool, n, talkers):
    """Unit-RMS babble: `talkers` utterances drawn from `pool`, each at equal RMS, at random
    offsets (partly outside the window allowed), summed.

    Args:
        rng: the clip's generator.
        pool: a non-empty list of 1-D float arrays (utterances of the split's speakers).
        n: samples in the window.
        talkers: how many utterances to sum.
    """
    out = np.zeros(n)
    for index in rng.integers(0, len(pool), talkers):
        utterance = pool[index]
        start = int(rng.integers(-len(utterance) // 2, n - len(utterance) // 2 + 1))
        lo, hi = max(0, start), min(n, start + len(utterance))
        if hi > lo:
            out[lo:hi] += utterance[lo - start:hi - start] / max(rms(utterance), 1e-12)
    return out / max(rms(out), 1e-12)


def bandpass(x, low_hz, high_hz, rate=SAMPLE_RATE):
    """Zero-phase band-pass with second-order (12 dB/octave) skirts, applied in the spectrum:
    `|H(f)| = 1 / sqrt((1 + (low/f)^4) (1 + (f/high)^4))`."""
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / rate)
    with np.errstate(divide="ignore"):
        gain = 1.0 / np.sqrt((1 + (low_hz / f) ** 4) * (1 + (f / high_hz) ** 4))
    gain[0] = 0.0
    return np.fft.irfft(spectrum * gain, len(x))


def reverb(x, rt60_s, drr_db, rng, rate=SAMPLE_RATE):
    """Convolves `x` with a synthetic room response, keeping `len(x)` samples.

    The response is a unit direct path followed (after 2.5 ms) by Gaussian noise decaying by
    60 dB in `rt60_s`, scaled so that the direct-to-reverberant energy ratio is `drr_db`.
    """
    length = int(rt60_s * rate)
    t = np.arange(length) / rate
    tail = rng.standard_normal(length) * np.exp(-6.908 * t / rt60_s)
    tail[: int(0.0025 * rate)] = 0.0
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(np.sum(tail**2), 1e-12))
    response = np.concatenate([[1.0], tail[1:]])
    size = len(x) + len(response) - 1
    wet = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(response, size), size)
    return wet[: len(x)]


def render_clip(speech, clip, rng, babble_pool=None, n=SAMPLE_RATE):
    """Renders one 1 s clip from its utterance and drawn parameters (see the module docstring).

    Args:
        speech: the trimmed utterance (1-D float, at most `n` samples), or `None` for silence.
        clip: a `plan.Clip` (offset, level, SNR, noise kind, band-pass, reverb, talkers).
        rng: the clip's own generator (noise samples, babble choice, room response).
        babble_pool: utterances for babble noise (needed when `clip.noise == "babble"`).
        n: samples in the window. Defaults to `16000`.

    Returns:
        A `float32` array of `n` samples, quantized to 16-bit steps (`k / 32768`).
    """
    level = 10 ** (clip.level_dbfs / 20)
    signal = np.zeros(n)
    if speech is not None:
        speech = np.asarray(speech[:n], dtype=np.float64)
        start = round(clip.offset * (n - len(speech)))
        signal[start:start + len(speech)] = speech
        if clip.reverb is not None:
            signal = reverb(signal, *clip.reverb, rng)
        active = signal[start:start + len(speech)]
        signal *= level / max(rms(active), 1e-12)
    if clip.noise == "white":
        noise = white_noise(rng, n)
    elif clip.noise == "pink":
        noise = pink_noise(rng, n)
    else:
        noise = babble_noise(rng, babble_pool, n, clip.talkers)
    mix = signal + noise * level / 10 ** (clip.snr_db / 20)
    if clip.bandpass is not None:
        mix = bandpass(mix, *clip.bandpass)
    peak = np.max(np.abs(mix))
    if peak > 0.99:
        mix *= 0.99 / peak
    return (np.round(mix * 32767.0) / 32768.0).astype(np.float32)
