"""Data sets: Fashion-MNIST from Debian's IDX files, scikit-learn's small sets, `.npz` files,
and keyword spotting on speech synthesized offline (`tfdynhp.datasets.kws`); shaping and
validation splits for training (`tfdynhp.datasets.shaping`). Nothing here imports the training
code: data sets sit below everything that uses them."""

from tfdynhp.datasets import kws, shaping
from tfdynhp.datasets.kws import load_synthetic_kws
from tfdynhp.datasets.loaders import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_ENV_VAR,
    FASHION_MNIST_FILES,
    NPZ_KEYS,
    load,
    load_fashion_mnist,
    load_npz,
    load_sklearn,
    parse_idx,
    read_idx,
)

__all__ = [
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_ENV_VAR",
    "FASHION_MNIST_FILES",
    "NPZ_KEYS",
    "kws",
    "load",
    "load_fashion_mnist",
    "load_npz",
    "load_sklearn",
    "load_synthetic_kws",
    "parse_idx",
    "read_idx",
    "shaping",
]
