"""What the MirroredStrategy scripts share. Importing this module splits the CPU into 2 logical
devices, which must happen before TensorFlow initialises: import it before keras and tfdynhp.
`gated_mlp` builds a gated MLP on scikit-learn digits under MirroredStrategy on both."""

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras
from sklearn.datasets import load_digits

import tfdynhp


def gated_mlp(hidden, learning_rate):
    """Seeds 0, loads the digits and, in a MirroredStrategy scope on the 2 CPUs, builds a ReLU MLP
    64 -> `hidden` -> 10 (softmax), gates it (seed 0) and compiles it (Adam(`learning_rate`),
    sparse categorical cross-entropy, accuracy). Returns `(x, y, strategy, base, model)`."""
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.data / 16).astype("float32")
    y = digits.target.astype("int32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        base = keras.Sequential(
            [keras.Input((64,))]
            + [keras.layers.Dense(width, activation="relu") for width in hidden]
            + [keras.layers.Dense(10, activation="softmax")]
        )
        model = tfdynhp.gate(base, seed=0)
        model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    return x, y, strategy, base, model
