"""`load_synthetic_kws`: a keyword-spotting data set synthesized offline, split by speaker.

Speech Commands cannot be downloaded here, so the clips are made with espeak-ng (formant
synthesis): each keyword, each "unknown" word and "silence" (noise only) are spoken by
speakers = English accent x voice variant, at random speed, pitch, level and position in a
1 s window, degraded by noise and the augmentations of the chosen difficulty, and turned into
MLPerf Tiny's 49x10 MFCCs. Test and validation speakers never appear in training (see
`splits`). Features (not audio) are cached on disk, keyed by every parameter (see `cache`).
"""

import concurrent.futures
import dataclasses
import logging
import os

import numpy as np

from tfdynhp import validation
from tfdynhp.datasets.kws import augment, espeak, plan, splits, vocabulary
from tfdynhp.datasets.kws.cache import Entry, resolve_cache_dir
from tfdynhp.datasets.kws.features import FeatureNormalization, FrontEnd, mfcc

logger = logging.getLogger("tfdynhp.datasets.kws")

# Named sizes (total clips over the four splits). Measured on 2 idle cores (bench/kws_data.py):
# 6-9 s per 1,000 clips (10-16 CPU-seconds), so "ci" takes 8-11 s; "medium" took 4.7 min while
# other jobs loaded the machine (about 2.2 min of CPU time per core).
SIZES = {"ci": 1200, "small": 4800, "medium": 20000, "large": 60000}
FORMAT_VERSION = 1  # bump when a change in this package changes the generated data
CHUNK = 256  # clips per resumable chunk
MAX_SPEED_WPM = 400  # an utterance longer than the window is re-spoken faster, up to this
FRONTEND = FrontEnd()


@dataclasses.dataclass(frozen=True)
class KWSInfo:
    """What `load_synthetic_kws(..., return_info=True)` knows about the data it returned.

    Attributes:
        labels: class names in label order: `keywords..., "silence", "unknown"`.
        keywords, unknown_words: the normalized texts used.
        difficulty: the `augment.Difficulty`.
        frontend: the `features.FrontEnd` (what a device must compute).
        normalization: the `features.FeatureNormalization` measured on the training split.
        normalized: whether the returned features have `normalization` applied.
        speaker_split: the `splits.SpeakerSplit` (accents and variants of each split).
        splits: `{"train", "val", "test_voices", "test_accents", "test"}` -> `(x, y)`;
            `"test"` is `test_voices` followed by `test_accents`, as `load()` returns it.
        metadata: per split, a dict of per-clip arrays `text` (`""` for silence), `accent`,
            `variant`, `snr_db`, `noise` (for error analysis by accent or noise).
        seed, size: the generation's seed and total number of clips.
        espeak_version: espeak-ng's version line.
        cache_path: the `.npz` the features were loaded from.
    """

    labels: tuple
    keywords: tuple
    unknown_words: tuple
    difficulty: augment.Difficulty
    frontend: FrontEnd
    normalization: FeatureNormalization
    normalized: bool
    speaker_split: splits.SpeakerSplit
    splits: dict
    metadata: dict
    seed: int
    size: int
    espeak_version: str
    cache_path: str

    def speakers(self, split):
        """The `"accent+variant"` speaker names `split` draws from."""
        name = "test_voices" if split == "test" else split
        speakers = self.speaker_split.speakers(name)
        if split == "test":
            speakers += self.speaker_split.speakers("test_accents")
        return tuple(espeak.voice_name(a, v) for a, v in speakers)

    def to_dict(self):
        """A JSON-serializable summary (no arrays), e.g. to ship beside a model."""
        return {
            "dataset": "synthetic-kws",
            "labels": list(self.labels),
            "keywords": list(self.keywords),
            "unknown_words": list(self.unknown_words),
            "difficulty": self.difficulty.to_dict(),
            "frontend": self.frontend.to_dict(),
            "normalization": self.normalization.to_dict(),
            "normalized": self.normalized,
            "speaker_split": self.speaker_split.to_dict(),
            "split_sizes": {name: len(y) for name, (_, y) in self.splits.items()},
            "seed": self.seed,
            "size": self.size,
            "espeak_version": self.espeak_version,
        }


def resolve_size(size):
    """Returns the total number of clips for `size` (an int or a name of `SIZES`).

    Raises:
        ValueError: for an unknown name or a non-positive integer.
    """
    if isinstance(size, str):
        key = size.strip().lower()
        if key not in SIZES:
            raise ValueError(
                f"Unknown size {size!r}. Expected a total number of clips (int) or one of "
                f"{dict(SIZES)}."
            )
        return SIZES[key]
    return validation.check_integer("size", size, minimum=1)


def _check_names(name, values, allowed):
    values = list(vocabulary.as_list(name, values))
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"Unknown {name} {unknown}. Expected a subset of {list(allowed)}.")
    if len(set(values)) != len(values):
        raise ValueError(f"Repeated entries in `{name}`: {values}.")
    return tuple(values)


def _without_keywords(keywords, unknown_words, keyword_sounds, unknown_sounds, verbose):
    """The default "unknown" vocabulary without the words that sound like a keyword (those
    spelled like one are already out); says which default words the keywords left out."""
    alike = set(vocabulary.sound_alikes(keywords, unknown_words, keyword_sounds,
                                        unknown_sounds))
    kept = [i for i, word in enumerate(unknown_words) if word not in alike]
    kept_words = {unknown_words[i] for i in kept}
    left_out = [w for w in vocabulary.UNKNOWN_WORDS if w not in kept_words]
    if left_out:
        message = (f"synthetic-kws: {len(left_out)} word(s) of the default 'unknown' "
                   "vocabulary left out because they are, or sound like, your keywords: "
                   f"{', '.join(left_out)}.")
        if verbose:
            from keras.src.utils import io_utils

            io_utils.print_msg(message)
        else:
            logger.info(message)
    return tuple(unknown_words[i] for i in kept), tuple(unknown_sounds[i] for i in kept)


def _speak(text, accent, variant, speed, pitch, limit=FRONTEND.clip_samples):
    """Synthesizes `text`; re-speaks faster while it is longer than `limit` samples."""
    voice = espeak.voice_name(accent, variant)
    audio = espeak.synthesize(text, voice, speed, pitch, rate=FRONTEND.sample_rate)
    while len(audio) > limit and speed < MAX_SPEED_WPM:
        speed = min(MAX_SPEED_WPM, int(np.ceil(speed * len(audio) / limit * 1.05)))
        audio = espeak.synthesize(text, voice, speed, pitch, rate=FRONTEND.sample_rate)
    return audio[:limit]


def _check_lengths(texts):
    """Refuses texts that do not fit the window at the fastest drawn speed (plain en-us)."""
    for text in texts:
        audio = espeak.synthesize(text, "en-us", plan.SPEED_WPM[1], 50, FRONTEND.sample_rate)
        if len(audio) > FRONTEND.clip_samples:
            raise ValueError(
                f"{text!r} lasts {len(audio) / FRONTEND.sample_rate:.2f} s when spoken at "
                f"{plan.SPEED_WPM[1]} words per minute; keywords and unknown words must fit "
                f"in the {FRONTEND.clip_samples / FRONTEND.sample_rate:g} s clip. Use a "
                "shorter phrase."
            )


def _render(clip, pools):
    speech = None
    if clip.text is not None:
        speech = _speak(clip.text, clip.accent, clip.variant, clip.speed, clip.pitch)
    return augment.render_clip(speech, clip, clip.rng(), pools.get(clip.split))


def _generate(entry, clips, pool_plans, workers, verbose, keep_audio=False):
    """Synthesizes the clips chunk by chunk (reusing finished chunks) and saves the entry.

    Args:
        entry: the `cache.Entry`.
        clips: every planned `plan.Clip`, in split order.
        pool_plans: split -> babble pool plan (`plan.plan_babble`); empty without babble.
        workers: parallel espeak-ng processes.
        verbose: Progbar verbosity.
        keep_audio: keep the waveforms instead of computing MFCCs.

    Returns:
        The raw MFCCs of all clips, `(len(clips), frames, coefficients)` float32, or with
        `keep_audio` the waveforms `(len(clips), clip_samples)`.
    """
    import keras

    chunks = [clips[start:start + CHUNK] for start in range(0, len(clips), CHUNK)]
    entry.start()
    shape = ((FRONTEND.clip_samples,) if keep_audio else
             (FRONTEND.num_frames, FRONTEND.num_coefficients))
    done = [entry.load_chunk(c, (len(chunk), *shape)) for c, chunk in enumerate(chunks)]
    pending = [c for c in range(len(chunks)) if done[c] is None]
    if len(pending) < len(chunks):
        logger.info("Resuming %s: %d of %d chunks already done.", entry.path,
                    len(chunks) - len(pending), len(chunks))
    if pending:
        needed = {clip.split for c in pending for clip in chunks[c]}
        pool_plans = {name: p for name, p in pool_plans.items() if name in needed}
        bar = keras.utils.Progbar(
            sum(map(len, pool_plans.values())) + len(clips), verbose=verbose, interval=0.5,
            unit_name="clip",
        )
        count = len(clips) - sum(len(chunks[c]) for c in pending)
        bar.update(count)
        executor = concurrent.futures.ThreadPoolExecutor(workers)
        try:
            pools = {}
            for name, pool_plan in pool_plans.items():
                pools[name] = []
                for audio in executor.map(lambda p: _speak(*p), pool_plan):
                    pools[name].append(audio)
                    count += 1
                    bar.update(count)
            for c in pending:
                waves = []
                for wave in executor.map(lambda clip: _render(clip, pools), chunks[c]):
                    waves.append(wave)
                    count += 1
                    bar.update(count)
                done[c] = np.stack(waves) if keep_audio else mfcc(np.stack(waves), FRONTEND)
                entry.save_chunk(c, done[c])
        finally:  # on Ctrl-C, drop the queued clips instead of synthesizing them first
            executor.shutdown(wait=True, cancel_futures=True)
    return np.concatenate(done)


def _metadata(clips):
    return {
        "text": np.array([c.text or "" for c in clips], dtype=str),
        "accent": np.array([c.accent for c in clips], dtype=str),
        "variant": np.array([c.variant for c in clips], dtype=str),
        "snr_db": np.array([c.snr_db for c in clips], dtype=np.float32),
        "noise": np.array([c.noise for c in clips], dtype=str),
    }


def load_synthetic_kws(
    keywords=None,
    difficulty="medium",
    size="medium",
    seed=0,
    *,
    unknown_words=None,
    accents=None,
    variants=None,
    normalize=True,
    cache_dir=None,
    workers=None,
    verbose=1,
    return_info=False,
    audio=False,
):
    """Loads (synthesizing on the first call) a speaker-disjoint keyword-spotting data set.

    Each clip is 1 s of 16 kHz audio turned into MFCCs of shape `(49, 10, 1)` (see
    `features.FrontEnd`). The classes are the keywords, `"silence"` (noise only) and
    `"unknown"` (words of `unknown_words`), dealt evenly. The speech is espeak-ng formant
    synthesis: accuracy on it says how well a model separates these words across synthetic
    voices and accents, not how it will do on recorded human speech.

    Every argument check (keywords, repeats, keyword-vs-unknown clashes, homophones,
    difficulty, size, speakers, espeak-ng present) runs before any synthesis or cache write.
    The same arguments give identical arrays; the first call caches the raw features under
    `cache_dir` (`$TFDYNHP_CACHE_DIR` or `~/.cache/tfdynhp` by default), about 2 kB per clip.

    Args:
        keywords: words or short phrases (`["lights on", "hey kettle"]`), compared
            case- and whitespace-insensitively. Defaults to `None`: Speech Commands' ten
            (`vocabulary.DEFAULT_KEYWORDS`).
        difficulty: `"easy"` (white/pink noise, SNR 10-30 dB), `"medium"` (0-20 dB, babble,
            band-pass, reverb) or `"hard"` (-5-15 dB, stronger and more frequent band-pass
            and reverb); see `augment.DIFFICULTIES`. Defaults to `"medium"`.
        size: total clips over all splits, or a name of `SIZES` (`"ci"` 1,200, `"small"`
            4,800, `"medium"` 20,000, `"large"` 60,000). The splits get 70 / 10 / 10 / 10 %
            (train / val / test_voices / test_accents). Defaults to `"medium"`.
        seed: seed of the speaker split, the plan and the noise. Defaults to `0`.
        unknown_words: the "unknown" vocabulary; a keyword in it is refused. Defaults to
            `None`: `vocabulary.UNKNOWN_WORDS` (104 words) without the keywords and the words
            that sound like one (which ones, is printed with `verbose`, else logged at INFO
            level by the `tfdynhp.datasets.kws` logger).
        accents: the accents to draw from (subset of `espeak.ACCENTS`, at least 2). Defaults
            to `None` (all 8).
        variants: the voice variants to draw from (at least 3). Defaults to `None` (all of
            `espeak.list_variants()`, 97 with espeak-ng 1.51).
        normalize: return features standardized per coefficient with the training split's
            mean and std (`info.normalization`). Defaults to `True`; `False` returns raw MFCCs.
        cache_dir: cache root. Defaults to `None` (`$TFDYNHP_CACHE_DIR`, else
            `~/.cache/tfdynhp`).
        workers: parallel espeak-ng processes. Defaults to `None` (`os.cpu_count()`).
        verbose: `1` shows a `keras.utils.Progbar` while synthesizing, `0` is silent.
            Defaults to `1`.
        return_info: also return a `KWSInfo`. Defaults to `False`.
        audio: return the clips' waveforms (float32 `(n, 16000)` in [-1, 1], cached too, 64 kB
            per clip) instead of MFCCs, for a front end of one's own (`micro_dataset`);
            `normalize` and `info.normalization` then refer to nothing. Defaults to `False`.

    Returns:
        `((x_train, y_train), (x_test, y_test))` with `float32` x of shape `(n, 49, 10, 1)` and
        `int32` y; the test split is held-out voices then held-out accents. With
        `return_info=True`, `(((x_train, y_train), (x_test, y_test)), info)`; `info.splits`
        also has `"val"`, `"test_voices"` and `"test_accents"`.

    Raises:
        TypeError: for a keyword list that is a bare string or holds non-strings, a bad
            `difficulty` type or flag.
        ValueError: for an empty or repeated keyword list, two keywords that sound the same,
            a keyword that is in the `unknown_words` passed or sounds like one of them, an
            unknown difficulty, size or speaker name, a size too small to give every split
            every class, or a phrase too long for 1 s.
        tfdynhp.datasets.kws.EspeakNotFoundError: (a `FileNotFoundError`) if espeak-ng is missing.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_synthetic_kws(
    ...     ["lights on", "lights off"], difficulty="easy", size="ci")  # doctest: +SKIP
    >>> x_train.shape[1:], x_train.dtype.name  # doctest: +SKIP
    ((49, 10, 1), 'float32')
    """
    keywords = vocabulary.check_keywords(keywords)
    custom_unknown = unknown_words
    unknown_words = vocabulary.check_unknown_words(unknown_words, keywords)
    difficulty = augment.get_difficulty(difficulty)
    size = resolve_size(size)
    seed = validation.check_integer("seed", seed)
    sizes = splits.split_sizes(size, len(keywords) + 2)
    workers = validation.check_integer(
        "workers", (os.cpu_count() or 1) if workers is None else workers, minimum=1)
    for name, flag in (("normalize", normalize), ("return_info", return_info)):
        if not isinstance(flag, bool):
            raise TypeError(f"Expected `{name}` to be a bool. Received: {name}={flag!r}")
    verbose = validation.check_integer("verbose", int(verbose) if isinstance(verbose, bool)
                                       else verbose)
    accents = espeak.ACCENTS if accents is None else _check_names(
        "accents", accents, espeak.ACCENTS)
    if variants is not None:
        variants = vocabulary.as_list("variants", variants)
    splits.check_counts(accents, variants)

    espeak.espeak_path()  # a one-line error naming `apt-get install espeak-ng`
    available = espeak.list_variants()
    variants = available if variants is None else _check_names("variants", variants, available)
    speaker_split = splits.split_speakers(accents, variants, seed)
    keyword_sounds, unknown_sounds = espeak.phonemes(keywords), espeak.phonemes(unknown_words)
    if custom_unknown is None:
        unknown_words, unknown_sounds = _without_keywords(
            keywords, unknown_words, keyword_sounds, unknown_sounds, verbose)
    vocabulary.check_homophones(keywords, unknown_words, keyword_sounds, unknown_sounds)

    params = {
        "format": FORMAT_VERSION,
        "chunk": CHUNK,
        "espeak": espeak.espeak_version(),
        "keywords": list(keywords),
        "unknown_words": list(unknown_words),
        "difficulty": difficulty.to_dict(),
        "size": size,
        "seed": seed,
        "frontend": ({"name": "waveform", "sample_rate": FRONTEND.sample_rate,
                      "clip_samples": FRONTEND.clip_samples} if audio else FRONTEND.to_dict()),
        "speaker_split": speaker_split.to_dict(),
        "split_fractions": splits.SPLIT_FRACTIONS,
        "voice": {"speed_wpm": list(plan.SPEED_WPM), "pitch": list(plan.PITCH),
                  "max_speed_wpm": MAX_SPEED_WPM, "babble_pool": list(plan.BABBLE_POOL)},
    }
    entry = Entry(resolve_cache_dir(cache_dir), params)
    clips_by_split = {
        name: plan.plan_split(name, sizes[name], keywords, unknown_words,
                              speaker_split.speakers(name), difficulty, seed)
        for name in splits.SPLITS
    }
    names = [f"{p}_{name}" for name in splits.SPLITS for p in ("x", "y")]
    arrays = entry.load(names)
    if arrays is None:
        logger.info("Synthesizing %d clips into %s", size, entry.path)
        pool_plans = {} if not difficulty.uses_babble else {
            name: plan.plan_babble(name, plan.babble_pool_size(sizes[name]), unknown_words,
                                   speaker_split.speakers(name), seed)
            for name in splits.SPLITS
        }
        clips = [c for name in splits.SPLITS for c in clips_by_split[name]]
        _check_lengths(keywords if custom_unknown is None else (*keywords, *unknown_words))
        features = _generate(entry, clips, pool_plans, workers, verbose, audio)
        arrays, start = {}, 0
        for name in splits.SPLITS:
            arrays[f"x_{name}"] = features[start:start + sizes[name]]
            arrays[f"y_{name}"] = np.array([c.label for c in clips_by_split[name]], np.int32)
            start += sizes[name]
        entry.save(**arrays)
    normalization = (FeatureNormalization((0.0,), (1.0,)) if audio else
                     FeatureNormalization.from_features(arrays["x_train"]))
    data = {}
    for name in splits.SPLITS:
        if audio:
            data[name] = (arrays[f"x_{name}"].astype(np.float32),
                          arrays[f"y_{name}"].astype(np.int32))
            continue
        x = arrays[f"x_{name}"][..., None].astype(np.float32)
        data[name] = (normalization.apply(x) if normalize else x,
                      arrays[f"y_{name}"].astype(np.int32))
    data["test"] = tuple(np.concatenate([data["test_voices"][i], data["test_accents"][i]])
                         for i in range(2))
    result = (data["train"], data["test"])
    if not return_info:
        return result
    metadata = {name: _metadata(clips) for name, clips in clips_by_split.items()}
    metadata["test"] = {k: np.concatenate([metadata["test_voices"][k],
                                           metadata["test_accents"][k]])
                        for k in metadata["test_voices"]}
    info = KWSInfo(
        labels=vocabulary.labels(keywords), keywords=keywords, unknown_words=unknown_words,
        difficulty=difficulty, frontend=FRONTEND, normalization=normalization,
        normalized=normalize and not audio, speaker_split=speaker_split, splits=data, metadata=metadata,
        seed=seed, size=size, espeak_version=params["espeak"], cache_path=entry.path,
    )
    return result, info
