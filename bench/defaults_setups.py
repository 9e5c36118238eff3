"""Small, seeded data sets and models shared by `bench/gate_dynamics.py` and
`bench/defaults.py` (issue 29): the set-ups a new user tries first.

Every problem returns `Problem(x, y, x_val, y_val, x_test, y_test, build)`, where
`build(seed)` makes the plain (ungated) Keras model, the same for every seed given.
Validation data always come from the training set (a stratified split), never from the test set.
"""

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from tfdynhp import architectures, datasets
from tfdynhp.datasets.shaping import split_validation


@dataclasses.dataclass
class Problem:
    name: str
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    build: object  # seed -> plain keras.Model
    batch_size: int = 32
    learning_rate: float = 1e-3


def _digits32():
    """scikit-learn digits (8x8, 0..1) upscaled to 32x32x3 (bilinear), 20% of the training
    split held out for validation."""
    import tensorflow as tf

    (x, y), (xt, yt) = datasets.load_sklearn("digits")

    def up(images):
        images = images.reshape(-1, 8, 8, 1)
        images = tf.image.resize(images, (32, 32), method="bilinear").numpy()
        return np.repeat(images, 3, axis=-1).astype("float32")

    (x, y), (xv, yv) = split_validation(up(x), y, 0.2, seed=0)
    return x, y, xv, yv, up(xt), yt


def _fashion_subset(train=10_000, val=2_000, test=2_000):
    (x, y), (xt, yt) = datasets.load_fashion_mnist(flatten=False)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order][..., None], y[order]
    test_order = np.random.default_rng(1).permutation(len(xt))[:test]
    return (x[:train], y[:train], x[train:train + val], y[train:train + val],
            xt[test_order][..., None], yt[test_order])


def _tabular(name):
    (x, y), (xt, yt) = datasets.load_sklearn(name)
    (x, y), (xv, yv) = split_validation(x, y, 0.2, seed=0)
    return x, y, xv, yv, xt, yt


def mobilenet(seed, classes=10):
    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=classes)


def mobilenet_v2(seed, classes=10):
    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=classes)


def plain_cnn(seed, input_shape=(28, 28, 1), classes=10):
    """Conv32-BN-ReLU-pool, Conv64-BN-ReLU-pool, Conv64-ReLU, global pooling, Dense (the
    Fashion-MNIST CNN of issue 29)."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(32, 3, padding="same")(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, padding="same")(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="plain_cnn")


def mlp(seed, features, classes):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((features,)),
        keras.layers.Dense(96, activation="relu"),
        keras.layers.Dense(48, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ], name="mlp")


def problem(name):
    """One of `PROBLEMS`."""
    if name in ("mobilenet", "mobilenet_v2"):
        x, y, xv, yv, xt, yt = _digits32()
        builder = mobilenet if name == "mobilenet" else mobilenet_v2
        return Problem(name, x, y, xv, yv, xt, yt, builder, batch_size=16)
    if name == "cnn_fashion":
        x, y, xv, yv, xt, yt = _fashion_subset()
        return Problem(name, x, y, xv, yv, xt, yt, plain_cnn, batch_size=64)
    if name == "lenet5_fashion":
        x, y, xv, yv, xt, yt = _fashion_subset()
        return Problem(name, x, y, xv, yv, xt, yt,
                       lambda seed: architectures.lenet5((28, 28, 1), 10, seed=seed),
                       batch_size=64)
    if name == "lenet300_fashion":
        x, y, xv, yv, xt, yt = _fashion_subset()
        flat = [a.reshape(len(a), -1) for a in (x, xv, xt)]
        return Problem(name, flat[0], y, flat[1], yv, flat[2], yt,
                       lambda seed: architectures.mlp(784, (300, 100), 10, seed=seed),
                       batch_size=64)
    if name in ("mlp_wine", "mlp_breast_cancer"):
        x, y, xv, yv, xt, yt = _tabular(name.removeprefix("mlp_"))
        classes = int(max(y.max(), yt.max())) + 1
        return Problem(name, x, y, xv, yv, xt, yt,
                       lambda seed: mlp(seed, x.shape[1], classes), batch_size=32)
    raise ValueError(f"Unknown problem {name!r}. Expected one of {PROBLEMS}.")


PROBLEMS = ("mobilenet", "mobilenet_v2", "cnn_fashion", "lenet5_fashion", "lenet300_fashion",
            "mlp_wine", "mlp_breast_cancer")
