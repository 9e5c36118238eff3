import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import settings

import tfdynhp

# Property tests draw the same examples on every run (CI must not meet a new one by chance);
# a developer can explore with `pytest --hypothesis-profile=explore`.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", max_examples=200)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1]: (x_train, y_train, x_test, y_test)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def make_mlp(inputs, hidden, outputs, batchnorm=False, dropout=0.0):
    layers = [keras.Input((inputs,))]
    for width in hidden:
        layers.append(keras.layers.Dense(width, activation="relu"))
        if batchnorm:
            layers.append(keras.layers.BatchNormalization())
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(outputs, activation="softmax"))
    return keras.Sequential(layers)


@pytest.fixture
def gated_digits_model(digits):
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(make_mlp(64, [48, 24], 10), l0_lambda=1.0, drop_rate_init=0.5, seed=0)
    model.compile(
        keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def close_gates(gate, indices):
    """Sets the gates `indices` of a `HardConcreteGate` to exactly 0 at test time."""
    log_alpha = keras.ops.convert_to_numpy(gate.log_alpha).copy()
    log_alpha[np.asarray(indices, int)] = -30.0
    gate.log_alpha.assign(log_alpha)


def gates_of(model):
    """`{group name: gate}` of a gated model, input to output."""
    from tfdynhp.graph import gated_groups

    return {group.name: group.gate for group in gated_groups(model)}


def randomize_batchnorm(model, rng):
    """Gives every BatchNormalization layer non-trivial statistics and affine weights."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.moving_mean.assign(rng.normal(size=n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=n))
            layer.gamma.assign(rng.normal(size=n))
            layer.beta.assign(rng.normal(size=n))


def bn_cnn(dropout=0.0):
    """A small CNN on 8x8x1 digits with BatchNormalization after its convolutions (Conv2D
    without bias, DepthwiseConv2D, pointwise Conv2D; ReLU and ReLU6), the QAT tests' model;
    `dropout` adds a Dropout before the classifier."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.Activation("relu6")(x)
    x = keras.layers.Conv2D(24, 1)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def assert_int8_matches_simulation(tflite, model, x):
    """The int8 file computes what `model` (a QAT model or one computing through it) simulates,
    in LiteRT and in TFLite Micro: same argmax on 99.5 %, within one int8 step on 99 %."""
    from tfdynhp.converters.int8_check import compare_with_simulation

    simulated = model.predict(x, verbose=0)
    for runtime in ("litert", "tflm"):
        result = compare_with_simulation(tflite, simulated, x, runtime=runtime)
        assert result["argmax_agreement"] >= 0.995, result
        assert result["within_one_step"] >= 0.99, result


@pytest.fixture(scope="session")
def unsupported_op_tflite(digits):
    """A valid int8 `.tflite` whose FULLY_CONNECTED op code is replaced by HASHTABLE_LOOKUP, an
    op TFLite Micro has no kernel for."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    from tfdynhp import converters

    x = digits[0]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    graph = schema.ModelT.InitFromObj(
        schema.Model.GetRootAs(converters.to_int8_tflite(model, x[:50]), 0)
    )
    for code in graph.operatorCodes:
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.HASHTABLE_LOOKUP
    builder = flatbuffers.Builder(1024)
    builder.Finish(graph.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def profiler_flops(model, op_types):
    """FLOPs of the ops of `op_types` in one batch-1 inference, counted by TensorFlow's
    profiler on the traced graph and the functions it calls (Keras runs a grouped convolution
    in a nested function)."""
    spec = tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    graphs = [graph, *(f.graph for f in graph._functions.values() if hasattr(f, "graph"))]
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    options["account_type_regexes"] = op_types
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sum(tf.compat.v1.profiler.profile(graph=g, options=options).total_float_ops
                   for g in graphs)


class Killed(Exception):
    """What `KillAfter` raises."""


class KillAfter(keras.callbacks.Callback):
    """Ends the run like a killed process at the end of epoch `epoch` (1-based), after the
    callbacks before it (a checkpoint) ran."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise Killed(f"killed after epoch {self.epoch}")
