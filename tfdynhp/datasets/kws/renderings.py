"""More renderings of the training clips: the data set's own augmentations, drawn again.

`load_training_renderings(r, ...)` returns the training split of `load_synthetic_kws(...)`
rendered again: every clip keeps its words, speaker, speed and pitch (the same utterance) and
gets new draws of what the difficulty degrades it with: position in the window, level, SNR,
noise kind and samples, babble talkers, band-pass and reverb (`plan.plan_split(...,
rendering=r)`). Training on a different rendering at each epoch is augmentation with exactly
the data set's own distribution; the held-out splits are untouched. Each rendering is cached
beside the data set (keyed by the data set's own cache key and `r`), resumable like it.
"""

import os

import numpy as np

from tfdynhp import validation
from tfdynhp.datasets.kws import dataset, plan
from tfdynhp.datasets.kws.cache import Entry, resolve_cache_dir


def load_training_renderings(renderings, keywords=None, difficulty="medium", size="medium",
                             seed=0, *, cache_dir=None, workers=None, verbose=1, **kwargs):
    """The training split in `renderings` renderings: rendering 0 (the data set's own) first.

    Args:
        renderings: how many (>= 1); `1` returns the training split alone.
        keywords, difficulty, size, seed, cache_dir, verbose, **kwargs: as
            `load_synthetic_kws` (the data set whose training clips are rendered again).
        workers: parallel espeak-ng processes. Defaults to `None` (`os.cpu_count()`).

    Returns:
        `(xs, y_train)`: `xs` a list of `renderings` arrays shaped like `x_train`, normalized
        (or not, with `normalize=False`) with the training split's normalization of rendering
        0, the one a device ships; `y_train` the labels they share.

    Raises:
        ValueError, TypeError: as `load_synthetic_kws`, and for `renderings < 1`.
    """
    renderings = validation.check_integer("renderings", renderings, minimum=1)
    workers = validation.check_integer(
        "workers", (os.cpu_count() or 1) if workers is None else workers, minimum=1)
    (train, _), info = dataset.load_synthetic_kws(
        keywords, difficulty, size, seed, cache_dir=cache_dir, workers=workers,
        verbose=verbose, return_info=True, **kwargs)
    xs, y = [train[0]], train[1]
    base_key = os.path.splitext(os.path.basename(info.cache_path))[0]
    speakers = info.speaker_split.speakers("train")
    for r in range(1, renderings):
        entry = Entry(resolve_cache_dir(cache_dir), {
            "format": dataset.FORMAT_VERSION, "rendering_of": base_key, "rendering": r,
            "split": "train"})
        arrays = entry.load(["x_train", "y_train"])
        if arrays is None:
            clips = plan.plan_split("train", len(y), info.keywords, info.unknown_words,
                                    speakers, info.difficulty, info.seed, rendering=r)
            pools = {} if not info.difficulty.uses_babble else {"train": plan.plan_babble(
                "train", plan.babble_pool_size(len(y)), info.unknown_words, speakers,
                info.seed)}
            arrays = {"x_train": dataset._generate(entry, clips, pools, workers, verbose),
                      "y_train": np.array([c.label for c in clips], np.int32)}
            entry.save(**arrays)
        if not np.array_equal(arrays["y_train"], y):
            raise RuntimeError(f"Rendering {r} in {entry.path} does not hold the data set's "
                               "training labels; delete the file to render it again.")
        x = arrays["x_train"][..., None].astype(np.float32)
        xs.append(info.normalization.apply(x) if info.normalized else x)
    return xs, y
