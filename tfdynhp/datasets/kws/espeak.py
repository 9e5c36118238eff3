"""Speech synthesis with Debian's `espeak-ng` (formant synthesis), one subprocess per utterance.

espeak-ng writes 16-bit mono WAV at 22,050 Hz to stdout; `synthesize` reads it with the stdlib
`wave` module, resamples it to 16 kHz (`resample`, an FFT band-limited resampler) and trims the
leading and trailing silence (`trim_silence`). Output is deterministic: the same text, voice,
speed and pitch give the same samples (espeak-ng has no random state).

A *speaker* is an English accent (a language voice such as `en-gb-scotland`) combined with a
voice *variant* (`+m3`, `+f2`, `+Alicia`, ...), passed to espeak-ng as `-v accent+variant`.
Variants are the files of espeak-ng's `voices/!v` folder, minus those that sound the same as
another (measured with espeak-ng 1.51, see `EXCLUDED_VARIANTS`): identical variants in train
and test would make "unseen voices" seen.
"""

import functools
import io
import math
import os
import re
import shutil
import subprocess
import wave

import numpy as np

ESPEAK = "espeak-ng"
ESPEAK_SAMPLE_RATE = 22050
INSTALL_HINT = "install it with `sudo apt-get install espeak-ng` (or run scripts/setup.sh as root)"

# English accents (espeak-ng language voices); each is a whole accent held out or kept.
ACCENTS = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us-nyc",
)

# Variant files that do not give a distinct voice with espeak-ng 1.51 (checked by synthesizing
# the same word with every variant): `fast` is the plain voice, `caleb` and `klatt6` are
# sample-identical to `klatt`. Names with spaces (`Mr serious`) cannot be passed to `-v`.
EXCLUDED_VARIANTS = {
    "fast": "identical to the accent's plain voice",
    "caleb": "identical to klatt",
    "klatt6": "identical to klatt",
}

_TIMEOUT_S = 60


class EspeakNotFoundError(FileNotFoundError):
    """Raised when the `espeak-ng` executable is not on the PATH."""


def espeak_path():
    """Returns the path of the `espeak-ng` executable.

    Raises:
        EspeakNotFoundError: if it is not on the PATH; the one-line message says how to install
            it.
    """
    path = shutil.which(ESPEAK)
    if path is None:
        raise EspeakNotFoundError(
            f"{ESPEAK} not found on the PATH: the synthetic-kws data set synthesizes its speech "
            f"with it; {INSTALL_HINT}."
        )
    return path


@functools.cache
def _version_output(path):
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )
    return out.stdout.strip()


def espeak_version():
    """Returns espeak-ng's version line, e.g. `"eSpeak NG text-to-speech: 1.51  Data at: ..."`
    without the data path (it enters the cache key: another version is other data)."""
    line = _version_output(espeak_path())
    return line.split("Data at:")[0].strip()


def espeak_data_dir():
    """Returns espeak-ng's data directory (from `espeak-ng --version`)."""
    line = _version_output(espeak_path())
    match = re.search(r"Data at:\s*(\S.*)$", line)
    if not match:
        raise RuntimeError(f"Could not read the data directory from `{ESPEAK} --version`: {line!r}")
    return match.group(1).strip()


def list_variants():
    """Returns the usable voice variants, sorted: the files of `<data>/voices/!v` without
    spaces in their names and without `EXCLUDED_VARIANTS`.

    Raises:
        EspeakNotFoundError: if espeak-ng is missing.
        RuntimeError: if the variant folder is missing or empty.
    """
    folder = os.path.join(espeak_data_dir(), "voices", "!v")
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    names = [n for n in names if not re.search(r"\s", n) and n not in EXCLUDED_VARIANTS]
    if not names:
        raise RuntimeError(
            f"No espeak-ng voice variants found in {folder!r}; reinstall espeak-ng-data "
            "(`sudo apt-get install --reinstall espeak-ng-data`)."
        )
    return tuple(names)


def voice_name(accent, variant):
    """Returns the `-v` argument of a speaker, e.g. `"en-gb-scotland+m3"`."""
    return f"{accent}+{variant}"


def parse_wav(data):
    """Reads 16-bit mono WAV bytes (as espeak-ng streams them to stdout).

    espeak-ng's streamed header carries placeholder sizes, so the samples are read to the end of
    the data instead of trusting the header's frame count.

    Args:
        data: the WAV file's bytes.

    Returns:
        `(sample_rate, samples)` with `samples` an `int16` array.

    Raises:
        ValueError: if the bytes are not 16-bit mono WAV.
    """
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            frames = w.readframes(2**31 - 1)
    except (wave.Error, EOFError) as e:
        raise ValueError(f"not a WAV stream ({e}); received {len(data)} bytes") from e
    if channels != 1 or width != 2:
        raise ValueError(
            f"expected 16-bit mono WAV. Received: {channels} channels, {8 * width}-bit samples"
        )
    frames = frames[: len(frames) // 2 * 2]
    return rate, np.frombuffer(frames, dtype="<i2").astype(np.int16)


def _next_smooth(n):
    """The smallest integer >= n whose prime factors are 2, 3, 5 and 7 (fast FFT sizes)."""
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def resample(x, rate_in, rate_out):
    """Band-limited resampling by truncating or zero-padding the spectrum (pure function).

    The input is zero-padded at the end to `rate_in / g * k` samples (`g` the greatest common
    divisor of the rates, `k` 7-smooth) so both FFTs have fast sizes and the output length is
    exact; the output keeps `round(len(x) * rate_out / rate_in)` samples. The signal is treated
    as periodic, harmless for utterances that start and end in silence as espeak-ng's do.

    Args:
        x: 1-D float array.
        rate_in: its sample rate (Hz).
        rate_out: the wanted sample rate (Hz).

    Returns:
        A `float32` array of `round(len(x) * rate_out / rate_in)` samples.
    """
    x = np.asarray(x, dtype=np.float64)
    if rate_in == rate_out or len(x) == 0:
        return x.astype(np.float32)
    g = math.gcd(int(rate_in), int(rate_out))
    up, down = int(rate_out) // g, int(rate_in) // g
    k = _next_smooth(-(-len(x) // down))
    n_in, n_out = down * k, up * k
    spectrum = np.fft.rfft(x, n_in)
    keep = min(len(spectrum), n_out // 2 + 1)
    out_spectrum = np.zeros(n_out // 2 + 1, dtype=complex)
    out_spectrum[:keep] = spectrum[:keep]
    y = np.fft.irfft(out_spectrum, n_out) * (n_out / n_in)
    return y[: round(len(x) * rate_out / rate_in)].astype(np.float32)


def trim_silence(x, rate, threshold_db=-40.0, frame_ms=10.0, pad_ms=20.0):
    """Cuts leading and trailing silence (pure function).

    Frames of `frame_ms` whose RMS is more than `-threshold_db` dB below the loudest frame are
    silence; `pad_ms` of the signal is kept on either side of the first and last loud frame.

    Returns:
        The trimmed slice of `x` (the whole of `x` if it is silent).
    """
    frame = max(1, int(rate * frame_ms / 1000))
    n_frames = len(x) // frame
    if n_frames == 0:
        return x
    energy = np.sqrt(np.mean(x[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    peak = energy.max()
    if peak <= 0:
        return x
    loud = np.flatnonzero(energy >= peak * 10 ** (threshold_db / 20))
    pad = int(rate * pad_ms / 1000)
    start = max(0, loud[0] * frame - pad)
    stop = min(len(x), (loud[-1] + 1) * frame + pad)
    return x[start:stop]


def synthesize(text, voice, speed, pitch, rate=16000):
    """Speaks `text` with espeak-ng and returns the trimmed utterance.

    Args:
        text: the words (validated by `tfdynhp.datasets.kws.vocabulary`); sent on stdin, so a text that
            looks like an option is still read as text.
        voice: the `-v` argument, e.g. `"en-us+f2"` (see `voice_name`).
        speed: words per minute (`-s`), e.g. 110-200.
        pitch: espeak-ng pitch (`-p`, 0-99).
        rate: output sample rate (Hz). Defaults to `16000`.

    Returns:
        A `float32` array in `[-1, 1]` at `rate`, leading and trailing silence removed.

    Raises:
        EspeakNotFoundError: if espeak-ng is missing.
        RuntimeError: if espeak-ng fails or returns no audio.
    """
    command = [espeak_path(), "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)),
               "-a", "100", "--stdout"]
    out = subprocess.run(
        command, input=text.encode("utf-8"), capture_output=True, timeout=_TIMEOUT_S, check=False
    )
    if out.returncode != 0 or len(out.stdout) <= 44:
        raise RuntimeError(
            f"{' '.join(command)} failed for {text!r} (exit {out.returncode}): "
            f"{out.stderr.decode('utf-8', 'replace').strip() or 'no audio'}"
        )
    rate_in, samples = parse_wav(out.stdout)
    audio = resample(samples.astype(np.float32) / 32768.0, rate_in, rate)
    return trim_silence(audio, rate)


def phonemes(texts, voice="en-us"):
    """Returns espeak-ng's phoneme transcription of each text, stress marks removed.

    Used to refuse keywords that sound the same as another keyword or an "unknown" word
    ("two" / "to"). Translation only: no audio is synthesized.

    Args:
        texts: a sequence of validated words or phrases.
        voice: the accent whose pronunciation rules are used. Defaults to `"en-us"`.

    Returns:
        A tuple of strings, one per text.
    """
    texts = list(texts)
    if not texts:
        return ()
    command = [espeak_path(), "-v", voice, "-q", "-x"]
    # One clause per line: a full stop ends each text so espeak-ng never joins two of them.
    out = subprocess.run(
        command, input="".join(f"{t}.\n" for t in texts).encode("utf-8"),
        capture_output=True, timeout=_TIMEOUT_S, check=False,
    )
    lines = [line for line in out.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    if out.returncode != 0 or len(lines) != len(texts):  # fall back to one call per text
        lines = []
        for text in texts:
            one = subprocess.run(
                command, input=text.encode("utf-8"), capture_output=True,
                timeout=_TIMEOUT_S, check=False,
            )
            lines.append(one.stdout.decode("utf-8", "replace"))
    return tuple(re.sub(r"[\s',_]", "", line) for line in lines)
