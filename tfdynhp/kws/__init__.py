"""Offline keyword-spotting data: espeak-ng speech, augmentation, MFCCs, speaker splits.

One module per job: `espeak` (synthesis), `vocabulary` (keywords, unknown words, labels),
`augment` (noise, band-pass, reverb, difficulty levels), `features` (MFCC front end and its
normalization), `splits` (speaker-disjoint splits), `plan` (what each clip is), `cache`
(atomic, resumable feature cache), `dataset` (`load_synthetic_kws`, tying them together),
`deploy` (front end and normalization shipped with a model) and `pipeline` (`train_kws`: data,
DynHP to a target, int8, firmware).
Reached as `tfdynhp.datasets.load("synthetic-kws", ...)` too.
"""

from tfdynhp.kws.augment import DIFFICULTIES, Difficulty
from tfdynhp.kws.dataset import SIZES, KWSInfo, load_synthetic_kws
from tfdynhp.kws.deploy import feature_spec, quantize_features, write_features
from tfdynhp.kws.espeak import ACCENTS, EspeakNotFoundError, list_variants
from tfdynhp.kws.features import FeatureNormalization, FrontEnd, mfcc
from tfdynhp.kws.pipeline import load_splits, train_kws
from tfdynhp.kws.splits import SPLITS, SpeakerSplit
from tfdynhp.kws.vocabulary import (
    DEFAULT_KEYWORDS,
    SILENCE,
    UNKNOWN,
    UNKNOWN_WORDS,
    default_unknown_words,
)

__all__ = [
    "ACCENTS",
    "DEFAULT_KEYWORDS",
    "DIFFICULTIES",
    "SILENCE",
    "SIZES",
    "SPLITS",
    "UNKNOWN",
    "UNKNOWN_WORDS",
    "Difficulty",
    "EspeakNotFoundError",
    "FeatureNormalization",
    "FrontEnd",
    "KWSInfo",
    "SpeakerSplit",
    "default_unknown_words",
    "feature_spec",
    "list_variants",
    "load_splits",
    "load_synthetic_kws",
    "mfcc",
    "quantize_features",
    "train_kws",
    "write_features",
]
