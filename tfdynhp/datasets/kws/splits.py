"""Speaker-disjoint splits: which accents and voice variants each split may use (pure).

A speaker is `(accent, variant)`. The split holds out *whole accents* and *whole variants*:

- accents: `n_test_accents` (default 2 of 8) are test-only; the others are "seen";
- variants: 20 % are test-only, 10 % validation-only, the rest (70 %) training-only.

The four splits then are:

| split          | accents            | variants       |
|----------------|--------------------|----------------|
| `train`        | seen               | train          |
| `val`          | seen               | val            |
| `test_voices`  | seen               | test           |
| `test_accents` | held-out           | test           |

so no test or validation variant, and no held-out accent, is ever heard in training, and the
held-out-accent set is doubly unseen (new accent and new variant). Clips are shared out by
`SPLIT_FRACTIONS` of the total size.
"""

import dataclasses

import numpy as np

SPLITS = ("train", "val", "test_voices", "test_accents")
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test_voices": 0.1, "test_accents": 0.1}
VARIANT_FRACTIONS = {"val": 0.1, "test": 0.2}
N_TEST_ACCENTS = 2


@dataclasses.dataclass(frozen=True)
class SpeakerSplit:
    """Accents and variants of each split (see the module docstring).

    Attributes:
        seen_accents, test_accents: disjoint tuples of accents.
        train_variants, val_variants, test_variants: disjoint tuples of variants.
    """

    seen_accents: tuple
    test_accents: tuple
    train_variants: tuple
    val_variants: tuple
    test_variants: tuple

    def accents(self, split):
        """The accents of `split`."""
        return self.test_accents if split == "test_accents" else self.seen_accents

    def variants(self, split):
        """The variants of `split`."""
        return {"train": self.train_variants, "val": self.val_variants}.get(
            split, self.test_variants
        )

    def speakers(self, split):
        """The `(accent, variant)` pairs of `split`, accent-major."""
        return tuple((a, v) for a in self.accents(split) for v in self.variants(split))

    def to_dict(self):
        """Returns the split as a JSON-serializable dict of lists."""
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


def check_counts(accents, variants=None):
    """Checks there are enough accents (2) and variants (3) for a speaker-disjoint split.

    Args:
        accents: the accents.
        variants: the variants, or `None` to check the accents only.

    Raises:
        ValueError: naming the counts received.
    """
    if len(accents) < 2 or (variants is not None and len(variants) < 3):
        got = f"{len(accents)} accents {list(accents)}"
        if variants is not None:
            got += f", {len(variants)} variants"
        raise ValueError(
            "Too few speakers to split by speaker: held-out accents need at least 2 accents "
            f"and train/val/test variants at least 3 variants. Received: {got}."
        )


def split_speakers(accents, variants, seed, n_test_accents=N_TEST_ACCENTS):
    """Draws the held-out accents and the variant partition for `seed`.

    Args:
        accents: the accents to use (at least 2).
        variants: the variants to use (at least 3).
        seed: integer seed.
        n_test_accents: accents held out for `test_accents`, clipped so at least one accent
            stays seen. Defaults to `2`.

    Returns:
        A `SpeakerSplit`; each tuple keeps the order of `accents` / `variants`.

    Raises:
        ValueError: with fewer than 2 accents or 3 variants (no speaker-disjoint split).
    """
    accents, variants = tuple(accents), tuple(variants)
    check_counts(accents, variants)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EA4]))
    n_test_accents = min(max(1, n_test_accents), len(accents) - 1)
    held = set(rng.permutation(len(accents))[:n_test_accents].tolist())
    n_test = max(1, round(VARIANT_FRACTIONS["test"] * len(variants)))
    n_val = max(1, round(VARIANT_FRACTIONS["val"] * len(variants)))
    n_val = min(n_val, len(variants) - n_test - 1)
    order = rng.permutation(len(variants)).tolist()
    test, val = set(order[:n_test]), set(order[n_test:n_test + n_val])
    return SpeakerSplit(
        seen_accents=tuple(a for i, a in enumerate(accents) if i not in held),
        test_accents=tuple(a for i, a in enumerate(accents) if i in held),
        train_variants=tuple(v for i, v in enumerate(variants) if i not in test | val),
        val_variants=tuple(v for i, v in enumerate(variants) if i in val),
        test_variants=tuple(v for i, v in enumerate(variants) if i in test),
    )


def minimum_size(n_classes):
    """The smallest total size giving every split at least one clip of every class."""
    smallest = min(SPLIT_FRACTIONS.values())
    size = int(np.ceil(n_classes / smallest))
    while min(split_sizes_unchecked(size).values()) < n_classes:
        size += 1
    return size


def split_sizes_unchecked(size):
    """Clips per split for a total `size`: `floor(fraction * size)`, the rest to `train`."""
    sizes = {s: int(np.floor(SPLIT_FRACTIONS[s] * size + 1e-9)) for s in SPLITS if s != "train"}
    sizes["train"] = size - sum(sizes.values())
    return {s: sizes[s] for s in SPLITS}


def split_sizes(size, n_classes):
    """Clips per split, checked so that every split has every class at least once.

    Raises:
        ValueError: if `size` is too small to split by speaker (names the minimum).
    """
    sizes = split_sizes_unchecked(size)
    if min(sizes.values()) < n_classes:
        raise ValueError(
            f"size={size} is too small to split by speaker: the val, test_voices and "
            f"test_accents splits get {int(100 * SPLIT_FRACTIONS['val'])} % of the clips each "
            f"and need every one of the {n_classes} classes. Expected size >= "
            f"{minimum_size(n_classes)}."
        )
    return sizes
