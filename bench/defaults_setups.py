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


def mobilenet_v3_small(seed, classes=10):
    """`keras.applications.MobileNetV3Small` (alpha 0.75, squeeze-and-excite blocks,
    hard-swish), its preprocessing off: the digits are already in [0, 1]."""
    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=classes,
        include_preprocessing=False)


def efficientnet_b0(seed, classes=10):
    """`keras.applications.EfficientNetB0` (its own rescaling and normalization layers take
    0-255 images: the set-up scales the digits to that range)."""
    keras.utils.set_random_seed(seed)
    return keras.applications.EfficientNetB0(
        input_shape=(32, 32, 3), weights=None, classes=classes)


def residual_cnn(seed, input_shape=(8, 8, 1), classes=10):
    """The residual CNN of issue 29 on 8x8 digits: Conv32-BN-ReLU, Conv32-BN, Add (with the
    input's 1x1 projection), ReLU, MaxPool, Conv64-ReLU, global pooling, Dense."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input(input_shape)
    shortcut = layers.Conv2D(32, 1)(inputs)
    x = layers.Conv2D(32, 3, padding="same")(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Conv2D(32, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(layers.Add()([x, shortcut]))
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="residual_cnn")


def ds_cnn(seed, classes=12):
    """`tfdynhp.architectures.ds_cnn` (MLPerf Tiny's keyword spotter) with the
    BatchNormalization momentum of the project's keyword-spotting recipe
    (`tfdynhp.training.kws.BN_MOMENTUM`: at Keras' 0.99 the moving statistics of a few
    thousand clips stay at chance for several epochs)."""
    from tfdynhp.training.kws import BN_MOMENTUM

    model = architectures.ds_cnn((49, 10, 1), classes, seed=seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


def _kws(size="small"):
    """Synthetic keyword spotting (espeak-ng speech, `tfdynhp.datasets.kws`), speaker-disjoint
    splits: train, validation, and the held-out voices and accents as the test set."""
    from tfdynhp.training.kws import load_splits

    (train, val, test), _ = load_splits(size=size, verbose=0)
    return train[0], train[1], val[0], val[1], test[0], test[1]


def _digits8():
    """scikit-learn digits as 8x8x1 images, 20% of the training split for validation."""
    (x, y), (xt, yt) = datasets.load_sklearn("digits")
    x, xt = x.reshape(-1, 8, 8, 1).astype("float32"), xt.reshape(-1, 8, 8, 1).astype("float32")
    (x, y), (xv, yv) = split_validation(x, y, 0.2, seed=0)
    return x, y, xv, yv, xt, yt


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
    if name in ("mobilenet", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"):
        x, y, xv, yv, xt, yt = _digits32()
        if name == "efficientnet_b0":  # its own layers rescale 0-255 images
            x, xv, xt = x * 255.0, xv * 255.0, xt * 255.0
        builder = {"mobilenet": mobilenet, "mobilenet_v2": mobilenet_v2,
                   "mobilenet_v3_small": mobilenet_v3_small,
                   "efficientnet_b0": efficientnet_b0}[name]
        return Problem(name, x, y, xv, yv, xt, yt, builder, batch_size=16)
    if name == "residual_digits":
        x, y, xv, yv, xt, yt = _digits8()
        return Problem(name, x, y, xv, yv, xt, yt, residual_cnn, batch_size=16)
    if name == "ds_cnn_kws":
        x, y, xv, yv, xt, yt = _kws()
        return Problem(name, x, y, xv, yv, xt, yt, ds_cnn, batch_size=64)
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
    if name in ("mlp_wine", "mlp_breast_cancer", "mlp_digits"):
        x, y, xv, yv, xt, yt = _tabular(name.removeprefix("mlp_"))
        classes = int(max(y.max(), yt.max())) + 1
        return Problem(name, x, y, xv, yv, xt, yt,
                       lambda seed: mlp(seed, x.shape[1], classes), batch_size=32)
    raise ValueError(f"Unknown problem {name!r}. Expected one of {PROBLEMS}.")


PROBLEMS = ("mobilenet", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
            "residual_digits", "ds_cnn_kws", "cnn_fashion", "lenet5_fashion",
            "lenet300_fashion", "mlp_wine", "mlp_breast_cancer", "mlp_digits")
