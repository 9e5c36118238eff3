"""The reference edge models as plain Keras 3 builders, and a registry resolving their names.

Each builder is written from the published layer specification of the model (cited in its
docstring) and returns a built, channels-last Keras model of stock layers with named layers and
seeded initializers: the same `seed` gives the same weights. Training recipes (L2 weight decay,
data augmentation, learning-rate schedules) are not part of the architectures and are left out;
activations, dropout, pooling and BatchNormalization are as the specification has them.

| name                  | builder          | input          | parameters (Keras) | MACs       |
|-----------------------|------------------|----------------|--------------------|------------|
| `"mlp"`               | `mlp`            | `(784,)`       | 266,610            | 266,200    |
| `"lenet5"`            | `lenet5`         | `(28, 28, 1)`  | 431,080            | 2,293,000  |
| `"ds-cnn"`            | `ds_cnn`         | `(49, 10, 1)`  | 24,908             | 2,656,768  |
| `"mobilenet-v1-0.25"` | `mobilenet_v1`   | `(96, 96, 3)`  | 221,794            | 7,489,664  |
| `"resnet8"`           | `resnet8`        | `(32, 32, 3)`  | 78,666             | 12,501,632 |
| `"fc-autoencoder"`    | `fc_autoencoder` | `(640,)`       | 269,992            | 264,192    |

MACs as counted by `tfdynhp.model_costs` (which also counts activation memory).

Example:

>>> model = tfdynhp.architectures.build("ds-cnn", num_classes=12, seed=0)
>>> model.count_params()
24908
"""

import inspect
import numbers

import keras

from tfdynhp.math.counting import conv_output_length
from tfdynhp.validation import check_integer, check_real


class _Seeds:
    """Hands out one seed per randomly initialised layer: `seed`, `seed + 1`, ...

    Keras initialisers with the same integer seed draw the same values, so every layer gets its
    own seed (and its own initialiser instance).
    """

    def __init__(self, seed):
        self._next = check_integer("seed", seed)

    def take(self):
        seed, self._next = self._next, self._next + 1
        return seed

    def initializer(self, name):
        return keras.initializers.get({"class_name": name, "config": {"seed": self.take()}})


def _check_shape(value, rank, name="input_shape"):
    """Returns `value` as a tuple of `rank` positive ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and rank == 1:
        value = (value,)
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    if (
        shape is None
        or len(shape) != rank
        or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in shape)
    ):
        example = "(784,)" if rank == 1 else "(height, width, channels), e.g. (28, 28, 1)"
        raise ValueError(
            f"Expected `{name}` to be {rank} positive integer(s), {example} (channels last, no "
            f"batch dimension). Received: {name}={value!r}"
        )
    return tuple(int(d) for d in shape)


def _check_min_size(builder, shape, minimum, why):
    height, width = shape[:2]
    if height < minimum or width < minimum:
        raise ValueError(
            f"`{builder}` needs inputs of at least {minimum}x{minimum} pixels ({why}). "
            f"Received: input_shape={shape}. Use a larger input."
        )


def _check_classes(num_classes):
    return check_integer("num_classes", num_classes, minimum=2)


def mlp(input_dim, hidden=(300, 100), num_classes=10, seed=0):
    """A LeNet-style multilayer perceptron; LeNet-300-100 with the defaults.

    `input_dim - hidden... - num_classes` Dense layers, ReLU hidden layers, softmax output
    (LeCun et al., 1998, "Gradient-based learning applied to document recognition": LeNet-300-100;
    the DynHP paper's model). Layers `dense_0`, `dense_1`, ..., `output`, Glorot-uniform kernels
    seeded `seed`, `seed + 1`, ..., zero biases.

    Parameters: published 266,610 (LeNet-300-100 on 784 inputs, "267K" in Han et al., 2015,
    "Learning both Weights and Connections for Efficient Neural Networks", Table 1); measured
    `model.count_params()` 266,610.

    Args:
        input_dim: number of input features (784 for flattened 28x28 images).
        hidden: widths of the hidden layers (a sequence of positive ints; empty for none).
            Defaults to `(300, 100)`.
        num_classes: number of classes (>= 2). Defaults to `10`.
        seed: seed of the first layer's initialiser. Defaults to `0`.

    Returns:
        A built `keras.Sequential` named `mlp_<input>_<hidden...>_<classes>`.

    Raises:
        ValueError: on a non-positive `input_dim`, width or `seed`, or fewer than 2 classes.

    Example:

    >>> mlp(784).count_params()
    266610
    """
    (input_dim,) = _check_shape(input_dim, 1, "input_dim")
    if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
        raise ValueError(
            f"Expected `hidden` to be a sequence of positive integers, e.g. (300, 100). "
            f"Received: hidden={hidden!r}"
        )
    hidden = tuple(check_integer(f"hidden[{i}]", w, minimum=1) for i, w in enumerate(hidden))
    num_classes = _check_classes(num_classes)
    seeds = _Seeds(seed)
    layers = [keras.Input((input_dim,), name="input")]
    for i, width in enumerate(hidden):
        layers.append(
            keras.layers.Dense(
                width,
                activation="relu",
                kernel_initializer=seeds.initializer("GlorotUniform"),
                name=f"dense_{i}",
            )
        )
    layers.append(
        keras.layers.Dense(
            num_classes,
            activation="softmax",
            kernel_initializer=seeds.initializer("GlorotUniform"),
            name="output",
        )
    )
    name = "mlp_" + "_".join(str(w) for w in (input_dim, *hidden, num_classes))
    return keras.Sequential(layers, name=name)


def lenet5(input_shape=(28, 28, 1), num_classes=10, seed=0):
    """LeNet-5 as in Caffe's MNIST example ("20-50-800-500").

    From `examples/mnist/lenet_train_test.prototxt` of BVLC/caffe: `conv1` 20 filters 5x5
    stride 1 'valid', `pool1` max 2x2 stride 2, `conv2` 50 filters 5x5, `pool2` max 2x2 stride
    2, `ip1` Dense 500 with ReLU, `ip2` Dense `num_classes` (softmax here; Caffe puts it in the
    `SoftmaxWithLoss` layer). As in Caffe, the convolutions have no activation. Weights use
    Caffe's "xavier" filler (uniform in `+-sqrt(3 / fan_in)`, Keras' `LecunUniform`), biases
    zero. Caffe scales the input by 1/256; that is preprocessing, not part of the model. Keras
    flattens channels-last (`(h * W + w) * C + c`) where Caffe flattens channels-first; the
    function is the same up to a permutation of `ip1`'s rows.

    Parameters: published 431,080 (20*25+20 + 50*20*25+50 + 800*500+500 + 500*10+10; "431K" in
    Han et al., 2015, Table 1); measured `model.count_params()` 431,080 (28x28x1 inputs, 10
    classes).

    Args:
        input_shape: `(height, width, channels)`. Defaults to `(28, 28, 1)`.
        num_classes: number of classes (>= 2). Defaults to `10`.
        seed: seed of the first layer's initialiser. Defaults to `0`.

    Returns:
        A built functional `keras.Model` named `lenet5`.

    Raises:
        ValueError: on a bad shape (at least 16x16: the two 5x5 'valid' convolutions and two
            2x2 poolings must leave at least one pixel), fewer than 2 classes or a bad seed.

    Example:

    >>> lenet5().count_params()
    431080
    """
    shape = _check_shape(input_shape, 3)
    num_classes = _check_classes(num_classes)
    final = [_lenet_feature_size(size) for size in shape[:2]]
    if min(final) < 1:
        raise ValueError(
            "`lenet5` needs inputs of at least 16x16 pixels (two 5x5 'valid' convolutions, each "
            f"followed by a 2x2 pooling, leave {final[0]}x{final[1]} pixels). Received: "
            f"input_shape={shape}. Use a larger input."
        )
    seeds = _Seeds(seed)
    inputs = keras.Input(shape, name="input")
    x = keras.layers.Conv2D(
        20, 5, kernel_initializer=seeds.initializer("LecunUniform"), name="conv1"
    )(inputs)
    x = keras.layers.MaxPooling2D(2, 2, name="pool1")(x)
    x = keras.layers.Conv2D(
        50, 5, kernel_initializer=seeds.initializer("LecunUniform"), name="conv2"
    )(x)
    x = keras.layers.MaxPooling2D(2, 2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(
        500, activation="relu", kernel_initializer=seeds.initializer("LecunUniform"), name="ip1"
    )(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=seeds.initializer("LecunUniform"),
        name="ip2",
    )(x)
    return keras.Model(inputs, outputs, name="lenet5")


def _lenet_feature_size(size):
    """Side of LeNet-5's last feature map for an input side `size` (<= 0: nothing is left)."""
    for _ in range(2):
        size = conv_output_length(size, 5)
        size = conv_output_length(size, 2, 2) if size >= 2 else 0
    return size


def _conv_bn_relu(x, filters, kernel, strides, seeds, name, initializer):
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        kernel_initializer=seeds.initializer(initializer),
        name=name,
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def _depthwise_bn_relu(x, strides, seeds, name, initializer):
    x = keras.layers.DepthwiseConv2D(
        3,
        strides=strides,
        padding="same",
        depthwise_initializer=seeds.initializer(initializer),
        name=name,
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def ds_cnn(input_shape=(49, 10, 1), num_classes=12, seed=0):
    """DS-CNN, the MLPerf Tiny keyword-spotting reference model (64 filters).

    From `benchmark/training/keyword_spotting/keras_model.py` (model `ds_cnn`) of
    mlcommons/tiny, after Zhang et al., 2017, "Hello Edge: Keyword Spotting on
    Microcontrollers": a 10x4 stride-2 'same' convolution with 64 filters, BatchNormalization,
    ReLU, Dropout 0.2; four depthwise-separable blocks (3x3 depthwise conv, BN, ReLU, 1x1 conv
    with 64 filters, BN, ReLU); Dropout 0.4; average pooling of size `(H // 2, W // 2)`;
    Flatten; Dense softmax. The input is 49 frames x 10 MFCC coefficients. Kernels
    Glorot-uniform (Keras' default, as in the reference). Note the reference's pooling: the
    stride-2 map of a 49-row input has 25 rows and the `24 x 5` window ignores the last one.

    Parameters: published 24,908 (the variables of the reference SavedModel
    `trained_models/kws_ref_model`, BatchNormalization statistics included; its int8 `.tflite`,
    53,936 bytes = 52.7 KiB, is the "53KB" quoted for MLPerf Tiny v0.5); measured
    `model.count_params()` 24,908 (22,604 after folding BatchNormalization).

    Args:
        input_shape: `(frames, coefficients, channels)`. Defaults to `(49, 10, 1)`.
        num_classes: number of classes (>= 2). Defaults to `12`.
        seed: seed of the first layer's initialiser. Defaults to `0`.

    Returns:
        A built functional `keras.Model` named `ds_cnn`.

    Raises:
        ValueError: on a bad shape (at least 2x2, so that the final pooling window is not
            empty), fewer than 2 classes or a bad seed.

    Example:

    >>> ds_cnn().count_params()
    24908
    """
    shape = _check_shape(input_shape, 3)
    _check_min_size("ds_cnn", shape, 2, "the final average pooling is (H // 2) x (W // 2)")
    num_classes = _check_classes(num_classes)
    seeds = _Seeds(seed)
    init = "GlorotUniform"
    inputs = keras.Input(shape, name="input")
    x = _conv_bn_relu(inputs, 64, (10, 4), 2, seeds, "conv1", init)
    x = keras.layers.Dropout(0.2, seed=seeds.take(), name="conv1_dropout")(x)
    for block in range(1, 5):
        x = _depthwise_bn_relu(x, 1, seeds, f"dw{block}", init)
        x = _conv_bn_relu(x, 64, 1, 1, seeds, f"pw{block}", init)
    x = keras.layers.Dropout(0.4, seed=seeds.take(), name="dropout")(x)
    x = keras.layers.AveragePooling2D((shape[0] // 2, shape[1] // 2), name="avg_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", kernel_initializer=seeds.initializer(init), name="output"
    )(x)
    return keras.Model(inputs, outputs, name="ds_cnn")


# MobileNetV1 (Howard et al., 2017, Table 1): stride and width (at alpha 1) of the 13
# depthwise-separable blocks.
_MOBILENET_BLOCKS = (
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024),
)  # fmt: skip


def mobilenet_v1(input_shape=(96, 96, 3), num_classes=2, alpha=0.25, seed=0):
    """MobileNetV1, the MLPerf Tiny visual-wake-words reference model at `alpha = 0.25`.

    From `benchmark/training/visual_wake_words/vww_model.py` of mlcommons/tiny (after
    Howard et al., 2017, "MobileNets", Table 1): a 3x3 stride-2 convolution with
    `int(32 * alpha)` filters, then 13 depthwise-separable blocks (3x3 depthwise conv, BN,
    ReLU, 1x1 conv with `int(width * alpha)` filters, BN, ReLU; stride 2 in blocks 2, 4, 6
    and 12; widths 64, 128, 128, 256, 256, 512 x6, 1024, 1024), an average pooling over the
    whole final map, Flatten and a Dense softmax. All convolutions 'same' with biases, He-normal
    kernels, plain ReLU (not Keras' ReLU6), no dropout: as the reference.

    Parameters: published 221,794 (the weights of the reference `trained_models/vww_96.h5`,
    96x96x3, 2 classes, BatchNormalization statistics included; its int8 `.tflite`, 333,288
    bytes = 325.5 KiB, is the "325KB" quoted for MLPerf Tiny v0.5); measured
    `model.count_params()` 221,794 (210,850 after folding BatchNormalization) with the defaults.

    Args:
        input_shape: `(height, width, channels)`. Defaults to `(96, 96, 3)`.
        num_classes: number of classes (>= 2). Defaults to `2` (person / no person).
        alpha: width multiplier (`int(32 * alpha) >= 1`). Defaults to `0.25`.
        seed: seed of the first layer's initialiser. Defaults to `0`.

    Returns:
        A built functional `keras.Model` named `mobilenet_v1_<alpha>`.

    Raises:
        ValueError: on a bad shape (at least 32x32: five stride-2 layers), `alpha` below
            1/32, fewer than 2 classes or a bad seed.

    Example:

    >>> mobilenet_v1().count_params()
    221794
    """
    shape = _check_shape(input_shape, 3)
    _check_min_size("mobilenet_v1", shape, 32, "five stride-2 layers halve it five times")
    alpha = check_real("alpha", alpha, low=1 / 32, high=16.0)
    num_classes = _check_classes(num_classes)
    seeds = _Seeds(seed)
    init = "HeNormal"
    inputs = keras.Input(shape, name="input")
    x = _conv_bn_relu(inputs, int(32 * alpha), 3, 2, seeds, "conv1", init)
    for block, (strides, width) in enumerate(_MOBILENET_BLOCKS, start=1):
        x = _depthwise_bn_relu(x, strides, seeds, f"dw{block}", init)
        x = _conv_bn_relu(x, int(width * alpha), 1, 1, seeds, f"pw{block}", init)
    x = keras.layers.AveragePooling2D(tuple(x.shape[1:3]), name="avg_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=seeds.initializer("GlorotUniform"),
        name="output",
    )(x)
    return keras.Model(inputs, outputs, name=f"mobilenet_v1_{alpha:g}")


def _residual_stack(x, filters, strides, seeds, name):
    init = "HeNormal"
    y = keras.layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        kernel_initializer=seeds.initializer(init),
        name=f"{name}_conv1",
    )(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.Activation("relu", name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(
        filters, 3, padding="same", kernel_initializer=seeds.initializer(init), name=f"{name}_conv2"
    )(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    if strides != 1:
        # The reference's projection shortcut: a 1x1 strided convolution, no BatchNormalization.
        x = keras.layers.Conv2D(
            filters,
            1,
            strides=strides,
            padding="same",
            kernel_initializer=seeds.initializer(init),
            name=f"{name}_shortcut",
        )(x)
    x = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def resnet8(input_shape=(32, 32, 3), num_classes=10, seed=0):
    """ResNet-8, the MLPerf Tiny image-classification reference model (CIFAR-10).

    From `benchmark/training/image_classification/keras_model.py` (`resnet_v1_eembc`) of
    mlcommons/tiny, with the 16 first-stage filters of the reference trained model
    `trained_models/pretrainedResnet.h5` (the current script's default, 26 filters, is a
    larger ~200k-parameter variant): a 3x3 convolution (16), BN, ReLU; three residual stacks
    of two 3x3 convolutions with BN (16, 32, 64 filters; the second and third start with
    stride 2 and project the shortcut with a 1x1 stride-2 convolution without BN), each
    closed by Add and ReLU; an average pooling of size `min(H, W)` of the final map; Flatten;
    Dense softmax. All convolutions 'same' with biases, He-normal kernels (the Dense layer too).

    Parameters: published 78,666 (the weights of `pretrainedResnet.h5`, BatchNormalization
    statistics included; its int8 `.tflite`, 98,496 bytes = 96.2 KiB, is the "96KB" quoted for
    MLPerf Tiny v0.5); measured `model.count_params()` 78,666 (77,706 after folding
    BatchNormalization).

    Args:
        input_shape: `(height, width, channels)`. Defaults to `(32, 32, 3)`.
        num_classes: number of classes (>= 2). Defaults to `10`.
        seed: seed of the first layer's initialiser. Defaults to `0`.

    Returns:
        A built functional `keras.Model` named `resnet8`.

    Raises:
        ValueError: on a bad shape (at least 4x4: two stride-2 stacks), fewer than 2 classes
            or a bad seed.

    Example:

    >>> resnet8().count_params()
    78666
    """
    shape = _check_shape(input_shape, 3)
    _check_min_size("resnet8", shape, 4, "two stride-2 stacks halve it twice")
    num_classes = _check_classes(num_classes)
    seeds = _Seeds(seed)
    inputs = keras.Input(shape, name="input")
    x = _conv_bn_relu(inputs, 16, 3, 1, seeds, "conv1", "HeNormal")
    for stack, (filters, strides) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        x = _residual_stack(x, filters, strides, seeds, f"stack{stack}")
    x = keras.layers.AveragePooling2D(min(x.shape[1:3]), name="avg_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=seeds.initializer("HeNormal"),
        name="output",
    )(x)
    return keras.Model(inputs, outputs, name="resnet8")


_AUTOENCODER_WIDTHS = (128, 128, 128, 128, 8, 128, 128, 128, 128)


def fc_autoencoder(input_dim=640, seed=0):
    """The fully connected autoencoder, the MLPerf Tiny anomaly-detection reference model.

    From `benchmark/training/anomaly_detection/keras_model.py` of mlcommons/tiny (the DCASE
    2020 task 2 baseline): nine Dense layers of 128, 128, 128, 128, 8, 128, 128, 128, 128
    units, each followed by BatchNormalization and ReLU, then a linear Dense layer back to
    `input_dim` (640 = 5 frames x 128 log-mel bins). Glorot-uniform kernels (Keras' default,
    as in the reference). Trained to reconstruct its input (mean squared error); the
    reconstruction error is the anomaly score.

    Parameters: published 269,992 (the weights of `trained_models/ad01.h5`, BatchNormalization
    statistics included; its int8 `.tflite`, 276,976 bytes = 270.5 KiB, is the "270KB" quoted
    for MLPerf Tiny v0.5); measured `model.count_params()` 269,992 (265,864 after folding
    BatchNormalization).

    Args:
        input_dim: number of input features (and of outputs). Defaults to `640`.
        seed: seed of the first layer's initialiser. Defaults to `0`.

    Returns:
        A built functional `keras.Model` named `fc_autoencoder`.

    Raises:
        ValueError: on a non-positive `input_dim` or a bad seed.

    Example:

    >>> fc_autoencoder().count_params()
    269992
    """
    (input_dim,) = _check_shape(input_dim, 1, "input_dim")
    seeds = _Seeds(seed)
    inputs = keras.Input((input_dim,), name="input")
    x = inputs
    for i, width in enumerate(_AUTOENCODER_WIDTHS, start=1):
        x = keras.layers.Dense(
            width, kernel_initializer=seeds.initializer("GlorotUniform"), name=f"dense{i}"
        )(x)
        x = keras.layers.BatchNormalization(name=f"dense{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"dense{i}_relu")(x)
    outputs = keras.layers.Dense(
        input_dim, kernel_initializer=seeds.initializer("GlorotUniform"), name="output"
    )(x)
    return keras.Model(inputs, outputs, name="fc_autoencoder")


ARCHITECTURES = {
    "mlp": mlp,
    "lenet5": lenet5,
    "ds-cnn": ds_cnn,
    "mobilenet-v1-0.25": mobilenet_v1,
    "resnet8": resnet8,
    "fc-autoencoder": fc_autoencoder,
}
# Published parameter counts at the default arguments (trainable and non-trainable, as Keras
# counts them): LeNet-300-100 and LeNet-5 from their layer lists (Han et al., 2015, Table 1:
# "267K", "431K"); the MLPerf Tiny models from the weights of the reference trained models in
# mlcommons/tiny (see each builder's docstring).
PUBLISHED_PARAMS = {
    "mlp": 266_610,
    "lenet5": 431_080,
    "ds-cnn": 24_908,
    "mobilenet-v1-0.25": 221_794,
    "resnet8": 78_666,
    "fc-autoencoder": 269_992,
}
# Builders taking a flat `input_dim` instead of an image `input_shape`.
_FLAT_INPUT = ("mlp", "fc-autoencoder")
_NO_CLASSES = ("fc-autoencoder",)


def canonical_name(name):
    """The registry key of an architecture name: case-insensitive, `_` or `-`.

    Args:
        name: e.g. `"DS_CNN"`, `"mobilenet_v1_0.25"`, `"resnet8"`.

    Returns:
        The key of `ARCHITECTURES` (e.g. `"ds-cnn"`).

    Raises:
        TypeError: if `name` is not a string.
        ValueError: if it names no architecture (the message lists the valid names).
    """
    if not isinstance(name, str):
        raise TypeError(
            f"Expected an architecture name (a string). Received: {name!r} "
            f"({type(name).__name__}). Valid names: {', '.join(ARCHITECTURES)}."
        )
    key = name.strip().lower().replace("_", "-")
    if key not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {name!r}. Valid names: {', '.join(ARCHITECTURES)} "
            "(case-insensitive, '_' or '-')."
        )
    return key


def get(name, **kwargs):
    """Builds the architecture `name` with its builder's own keyword arguments.

    Args:
        name: an architecture name (see `canonical_name`).
        **kwargs: arguments of the builder (e.g. `num_classes=10` for `"ds-cnn"`,
            `input_dim=784` for `"mlp"`).

    Returns:
        The built `keras.Model`.

    Raises:
        TypeError: on an argument the builder does not take (the message lists those it does).
        ValueError: on an unknown name or a bad argument value.

    Example:

    >>> get("mobilenet-v1-0.25", input_shape=(64, 64, 3)).output.shape
    (None, 2)
    """
    builder = ARCHITECTURES[canonical_name(name)]
    signature = inspect.signature(builder)
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        raise TypeError(
            f"{name!r} ({builder.__name__}) takes {', '.join(signature.parameters)}. "
            f"Received: {', '.join(kwargs) or 'no arguments'} ({e})."
        ) from None
    return builder(**kwargs)


def build(name, input_shape=None, num_classes=None, seed=0):
    """Builds an architecture from the arguments every one of them understands (for the CLI).

    Args:
        name: an architecture name (see `canonical_name`).
        input_shape: the per-example input shape; `None` for the builder's default. For
            `"mlp"` (required) and `"fc-autoencoder"` an int or a 1-tuple (the number of
            features).
        num_classes: number of classes; `None` for the builder's default. Must stay `None` for
            `"fc-autoencoder"`, which reconstructs its input.
        seed: initialiser seed. Defaults to `0`.

    Returns:
        The built `keras.Model`.

    Raises:
        ValueError: on an unknown name, a missing `input_shape` for `"mlp"`, `num_classes`
            for the autoencoder, or a bad argument value.

    Example:

    >>> build("lenet5", input_shape=(28, 28, 1), num_classes=10).count_params()
    431080
    """
    key = canonical_name(name)
    kwargs = {"seed": seed}
    if key in _FLAT_INPUT:
        if input_shape is not None:
            (kwargs["input_dim"],) = _check_shape(input_shape, 1)
        elif key == "mlp":
            raise ValueError(
                "'mlp' needs `input_shape`: the number of input features, e.g. "
                "input_shape=(784,) for flattened 28x28 images."
            )
    elif input_shape is not None:
        kwargs["input_shape"] = input_shape
    if num_classes is not None:
        if key in _NO_CLASSES:
            raise ValueError(
                f"{key!r} reconstructs its input and has no classes. Received: "
                f"num_classes={num_classes!r}; leave it None."
            )
        kwargs["num_classes"] = num_classes
    return ARCHITECTURES[key](**kwargs)


__all__ = [
    "ARCHITECTURES",
    "PUBLISHED_PARAMS",
    "build",
    "canonical_name",
    "ds_cnn",
    "fc_autoencoder",
    "get",
    "lenet5",
    "mlp",
    "mobilenet_v1",
    "resnet8",
]
