"""Training inputs for a run: a data set in its natural shape, shaped for a model, with a seeded
validation split taken from the training set (the test set stays for the final numbers)."""

import math

import numpy as np

from tfdynhp.validation import ConfigurationError, check_integer, check_real

FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def is_fashion_mnist(dataset):
    return isinstance(dataset, str) and dataset.strip().lower().replace("_", "-") == (
        "fashion-mnist"
    )


def _as_labels(y, dataset):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=1)
    y = y.reshape(-1)
    if y.size and (not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0):
        raise ValueError(
            f"{dataset}: labels must be integer class indices >= 0 (or one-hot). "
            f"Received values such as {y[:5].tolist()}."
        )
    return y.astype(np.int32)


def _natural(x, images=False):
    """float32 examples; with `images` (a named image data set, e.g. Fashion-MNIST's `(N, H,
    W)`), a map without a channel axis gets one. A user's `.npz` keeps its own shape: `(N, 256,
    1)` is a sequence with one channel, not an image."""
    x = np.asarray(x, np.float32)
    return x[..., None] if images and x.ndim == 3 else x


def subset(x, y, limit, seed=0):
    """A seeded random subset of `limit` examples (all when `limit` is None or larger)."""
    if limit is None:
        return x, y
    check_integer("limit_train", limit, 1)
    if limit >= len(x):
        return x, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:limit])
    return x[keep], y[keep]


def load_data(dataset, limit_train=None, seed=0):
    """Loads `dataset` (a name for `tfdynhp.datasets.load` or a `.npz` path) in its natural
    shape: Fashion-MNIST as `(N, 28, 28, 1)`, tabular data as `(N, features)`, a `.npz` as it
    is stored.

    Args:
        dataset: `"fashion-mnist"`, `"digits"`, `"synthetic-kws"`, ... or a `.npz` path.
        limit_train: keep a seeded random subset of this many training examples. Defaults to
            `None` (all).
        seed: seed of the subset. Defaults to `0`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, x in float32 and y as int32 class indices.

    Raises:
        ValueError: for an unknown data set, a `.npz` without the expected keys, labels that
            are not class indices, or a bad `limit_train`.
    """
    from tfdynhp.datasets.loaders import load

    kwargs = {"flatten": False} if is_fashion_mnist(dataset) else {}
    (x_train, y_train), (x_test, y_test) = load(dataset, **kwargs)
    images = is_fashion_mnist(dataset)
    x_train, x_test = _natural(x_train, images), _natural(x_test, images)
    y_train, y_test = _as_labels(y_train, dataset), _as_labels(y_test, dataset)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"{dataset}: train and test examples differ in shape ({x_train.shape[1:]} vs "
            f"{x_test.shape[1:]})."
        )
    x_train, y_train = subset(x_train, y_train, limit_train, seed)
    return (x_train, y_train), (x_test, y_test)


def shape_for(x, input_shape, what="the data"):
    """`x` reshaped to a model's per-example `input_shape` (e.g. flat 784 features for an MLP
    of Fashion-MNIST, or back to `(28, 28, 1)`), when the sizes agree.

    Raises:
        ValueError: naming both shapes when an example does not have the model's size.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if tuple(x.shape[1:]) == input_shape:
        return x
    if math.prod(x.shape[1:]) != math.prod(input_shape):
        raise ConfigurationError(
            f"{what} has examples of shape {tuple(x.shape[1:])}, but the model takes "
            f"{input_shape}: they do not hold the same number of values."
        )
    return x.reshape((len(x), *input_shape))


def split_validation(x, y, fraction, seed=0):
    """A seeded, class-stratified validation split taken from the training set.

    Args:
        x, y: training examples and labels.
        fraction: the fraction held out, in [0, 1); 0 returns `None` for the validation set.
        seed: the seed of the split.

    Returns:
        `((x_train, y_train), (x_val, y_val) or None)`.
    """
    check_real("validation_split", fraction, 0.0, 0.99)
    if not fraction:
        return (x, y), None
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        count = round(fraction * len(members))
        held.extend(rng.permutation(members)[:count])
    held = np.zeros(len(x), bool) if not held else np.isin(np.arange(len(x)), held)
    if held.all() or not held.any():
        raise ValueError(
            f"validation_split={fraction} leaves no training or no validation example from "
            f"{len(x)}; use a fraction that keeps both."
        )
    return (x[~held], y[~held]), (x[held], y[held])


def representative_subset(x_train, n=500, seed=0):
    """A seeded random subset of the training inputs for int8 calibration."""
    n = min(n, len(x_train))
    return x_train[np.sort(np.random.default_rng(seed).permutation(len(x_train))[:n])]
