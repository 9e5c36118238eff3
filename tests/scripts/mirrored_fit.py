"""Runs a narrowing DynHP fit under MirroredStrategy on 2 logical CPU devices (own process:
logical devices must be configured before TensorFlow initialises)."""

import json
import sys

import mirrored_digits  # first: splits the CPU in two before TensorFlow initialises

# isort: split
import keras
from tfdynhp.callbacks import DynHPCallback

keras.config.disable_traceback_filtering()
x, y, strategy, _, model = mirrored_digits.gated_mlp([48], learning_rate=0.02)
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
