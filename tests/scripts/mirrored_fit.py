"""Runs a narrowing DynHP fit under MirroredStrategy on 2 logical CPU devices (own process:
logical devices must be configured before TensorFlow initialises)."""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras
from sklearn.datasets import load_digits
from tfdynhp.callbacks import DynHPCallback

import tfdynhp

keras.config.disable_traceback_filtering()
keras.utils.set_random_seed(0)
digits = load_digits()
x = (digits.data / 16).astype("float32")
y = digits.target.astype("int32")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    base = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(48, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model = tfdynhp.gate(base, seed=0)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])
callback = DynHPCallback(threshold=0.5)
history = model.fit(x, y, batch_size=64, epochs=5, verbose=0, callbacks=[callback])
kernel = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense)).kernel
json.dump(
    {
        "replicas": strategy.num_replicas_in_sync,
        "params": history.history["dynhp/params"],
        "accuracy": history.history["accuracy"],
        "kernel_is_mirrored": "Mirrored" in type(kernel.value).__name__,
        "optimizer_iterations": int(model.optimizer.iterations.numpy()),
    },
    sys.stdout,
)
