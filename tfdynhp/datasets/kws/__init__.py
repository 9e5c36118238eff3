"""Offline keyword-spotting data: espeak-ng speech, augmentation, MFCCs, speaker splits.

One module per job: `espeak` (synthesis), `vocabulary` (keywords, unknown words, labels),
`augment` (noise, band-pass, reverb, difficulty levels), `features` (MFCC front end and its
normalization), `splits` (speaker-disjoint splits), `plan` (what each clip is), `cache`
(atomic, resumable feature cache), `dataset` (`load_synthetic_kws`, tying them together),
`deploy` (front end and normalization shipped with a model); the training recipe
(`tfdynhp.training.train_kws`) lives with the other training runs. The micro front end
(TFLite Micro's signal ops, the same model for training features and on the device):
`micro_frontend`, `signal_constants`, `tflite_graph`, `micro_dataset`
(`load_synthetic_kws_micro`), `micro_deploy` (what feature bundles ship), `streaming`.
Reached as `tfdynhp.datasets.load("synthetic-kws", ...)` too.
"""

from tfdynhp.datasets.kws.augment import DIFFICULTIES, Difficulty
from tfdynhp.datasets.kws.dataset import SIZES, KWSInfo, load_synthetic_kws
from tfdynhp.datasets.kws.deploy import feature_spec, quantize_features, write_features
from tfdynhp.datasets.kws.espeak import ACCENTS, EspeakNotFoundError, list_variants
from tfdynhp.datasets.kws.features import FeatureNormalization, FrontEnd, mfcc
from tfdynhp.datasets.kws.micro_dataset import load_synthetic_kws_micro
from tfdynhp.datasets.kws.micro_frontend import MicroFrontEnd
from tfdynhp.datasets.kws.splits import SPLITS, SpeakerSplit
from tfdynhp.datasets.kws.vocabulary import (
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
    "MicroFrontEnd",
    "SpeakerSplit",
    "default_unknown_words",
    "feature_spec",
    "list_variants",
    "load_synthetic_kws",
    "load_synthetic_kws_micro",
    "mfcc",
    "quantize_features",
    "write_features",
]
