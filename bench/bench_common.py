"""What several benches share: the checkout's paths, the TensorFlow Lite Micro tree, and the
command line and data of the TF-MOT baselines (`kws_tfmot.py`, `qat_tfmot.py`)."""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TFLM_DIR = os.environ.get("TFLM_DIR") or os.path.join(os.path.dirname(ROOT), "shared",
                                                      "tflm-kit", "tflm")


def checkout_first():
    """Puts the checkout first on `sys.path`, so a bench runs this checkout's tfdynhp."""
    sys.path.insert(0, ROOT)


def tfmot_args_and_data(parser, argv):
    """The end of a TF-MOT baseline's command line and its start: adds `--bn-momentum`,
    `--seed` and `--out`, parses `argv`, imports TF-MOT and tf_keras (the caller has set
    `TF_USE_LEGACY_KERAS`), seeds tf_keras and opens the `--data` `.npz`.

    Returns:
        `(args, tfmot, tf_keras, data)`.
    """
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import tensorflow_model_optimization as tfmot
    import tf_keras

    tf_keras.utils.set_random_seed(args.seed)
    return args, tfmot, tf_keras, np.load(args.data)
