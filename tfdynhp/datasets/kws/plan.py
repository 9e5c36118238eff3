"""The plan of a data set: what every clip says, who says it and how it is degraded (pure).

The plan is drawn from the seed before anything is synthesized, one generator per split, so a
clip's content does not depend on chunking, worker count or an interrupted run. Classes,
speakers and unknown words are each dealt round-robin over an independent shuffle: every
class gets `n // n_classes` or one more clips, every speaker of the split is used about
equally, and a speaker's classes are not tied to its position.

Voice draws (uniform): speed 110-200 words per minute, espeak-ng pitch 20-80, position in the
1 s window uniform over the room left by the utterance; the augmentation draws follow the
`augment.Difficulty`.

A *rendering* `r >= 1` of a split keeps every clip's words, speaker, speed and pitch and draws
its position, level, SNR, noise, band-pass and reverb (and the clip's own noise samples) anew,
from generators of their own: the same utterances heard again in other conditions, for
training-time augmentation. Rendering 0 is the data set itself.
"""

import dataclasses

import numpy as np

from tfdynhp.datasets.kws.splits import SPLITS

SPEED_WPM = (110, 200)
PITCH = (20, 80)
BABBLE_POOL = (16, 128)  # utterances per split: n // 10, clipped to this range


@dataclasses.dataclass(frozen=True)
class Clip:
    """One planned clip.

    Attributes:
        split, index: where it goes.
        label: class index.
        text: the words spoken, or `None` for "silence".
        accent, variant: the speaker.
        speed, pitch: espeak-ng's `-s` and `-p`.
        offset: position of the utterance in the window, 0 (start) to 1 (end).
        level_dbfs, snr_db: speech level and signal-to-noise ratio.
        noise: `"white"`, `"pink"` or `"babble"`.
        talkers: utterances in the babble.
        bandpass: `(low_hz, high_hz)` or `None`.
        reverb: `(rt60_s, drr_db)` or `None`.
        seed: entropy of the clip's own generator (noise samples, babble, room).
    """

    split: str
    index: int
    label: int
    text: object
    accent: str
    variant: str
    speed: int
    pitch: int
    offset: float
    level_dbfs: float
    snr_db: float
    noise: str
    talkers: int
    bandpass: object
    reverb: object
    seed: tuple

    def rng(self):
        """The clip's own generator."""
        return np.random.default_rng(np.random.SeedSequence(self.seed))


def _deal(rng, n, k):
    """`n` indices in `[0, k)`, each used `n // k` or one more times, in random order."""
    return rng.permutation(np.arange(n) % k)


def _uniform(rng, low_high, n):
    return rng.uniform(low_high[0], low_high[1], n)


def plan_split(split, n, keywords, unknown_words, speakers, difficulty, seed, rendering=0):
    """Plans the `n` clips of one split.

    Args:
        split: one of `splits.SPLITS`.
        n: number of clips.
        keywords, unknown_words: normalized texts (`vocabulary`).
        speakers: the split's `(accent, variant)` pairs.
        difficulty: an `augment.Difficulty`.
        seed: the data set's seed.
        rendering: `0` for the data set; `r >= 1` redraws the conditions of the same
            utterances (see the module docstring). Defaults to `0`.

    Returns:
        A list of `Clip`s, labels in `keywords..., silence, unknown` order.
    """
    split_id = SPLITS.index(split)
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, 1]))
    n_classes = len(keywords) + 2
    silence, unknown = len(keywords), len(keywords) + 1
    labels = _deal(rng, n, n_classes)
    who = _deal(rng, n, len(speakers))
    words = _deal(rng, n, len(unknown_words))
    speed = rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1, n)
    pitch = rng.integers(PITCH[0], PITCH[1] + 1, n)
    if rendering:
        rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, 1, rendering]))
    offset = rng.uniform(0.0, 1.0, n)
    level = _uniform(rng, difficulty.level_dbfs, n)
    snr = _uniform(rng, difficulty.snr_db, n)
    noise = rng.integers(0, len(difficulty.noise_types), n)
    talkers = rng.integers(difficulty.babble_talkers[0], difficulty.babble_talkers[1] + 1, n)
    use_bandpass = rng.uniform(size=n) < difficulty.p_bandpass
    low = np.exp(_uniform(rng, np.log(difficulty.bandpass_low_hz), n))
    high = np.exp(_uniform(rng, np.log(difficulty.bandpass_high_hz), n))
    use_reverb = rng.uniform(size=n) < difficulty.p_reverb
    rt60 = _uniform(rng, difficulty.rt60_s, n)
    drr = _uniform(rng, difficulty.drr_db, n)
    clips = []
    for i in range(n):
        label = int(labels[i])
        text = None if label == silence else (
            unknown_words[words[i]] if label == unknown else keywords[label]
        )
        accent, variant = speakers[who[i]]
        clips.append(Clip(
            split=split, index=i, label=label, text=text, accent=accent, variant=variant,
            speed=int(speed[i]), pitch=int(pitch[i]), offset=float(offset[i]),
            level_dbfs=float(level[i]), snr_db=float(snr[i]),
            noise=difficulty.noise_types[noise[i]], talkers=int(talkers[i]),
            bandpass=(float(low[i]), float(high[i])) if use_bandpass[i] else None,
            reverb=(float(rt60[i]), float(drr[i])) if use_reverb[i] else None,
            seed=(seed, split_id, i, 2) + ((rendering,) if rendering else ()),
        ))
    return clips


def babble_pool_size(n):
    """Utterances in a split's babble pool for `n` clips."""
    return int(np.clip(n // 10, *BABBLE_POOL))


def plan_babble(split, n, unknown_words, speakers, seed):
    """Plans the babble pool of a split: `(text, accent, variant, speed, pitch)` tuples.

    Babble is made of unknown words spoken by the split's own speakers, so no held-out voice
    leaks into training clips as background speech.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), 3]))
    who = _deal(rng, n, len(speakers))
    words = _deal(rng, n, len(unknown_words))
    speed = rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1, n)
    pitch = rng.integers(PITCH[0], PITCH[1] + 1, n)
    return [
        (unknown_words[words[i]], *speakers[who[i]], int(speed[i]), int(pitch[i]))
        for i in range(n)
    ]
