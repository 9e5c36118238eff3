"""Runs a DynHP fit to a target then its quantization-aware phase under MirroredStrategy on 2
logical CPU devices (own process: logical devices must be configured before TensorFlow
initialises); exports the int8 file and compares it with the simulation."""

import json
import sys

import mirrored_digits  # first: splits the CPU in two before TensorFlow initialises

# isort: split
import keras
from tfdynhp.callbacks import DynHPCallback
from tfdynhp.converters.int8_check import compare_with_simulation

import tfdynhp
from tfdynhp import converters
from tfdynhp.quantization import quantization_table

x, y, strategy, base, model = mirrored_digits.gated_mlp([48, 24], learning_rate=0.01)
callback = DynHPCallback(target="50% params", target_epoch=3, final_phase="qat")
calibrated = []


class RecordCalibratedRanges(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if callback.qat_model is not None and not calibrated:
            calibrated.extend(entry[3] for entry in quantization_table(callback.qat_model))


history = model.fit(x[:1400], y[:1400], batch_size=64, epochs=5, verbose=0,
                    callbacks=[callback, RecordCalibratedRanges()])
table_after_fit = quantization_table(callback.qat_model)
tflite = converters.to_int8_tflite(model)
simulated = model.predict(x[1400:], verbose=0)
agreement = {runtime: compare_with_simulation(tflite, simulated, x[1400:], runtime)
             for runtime in ("litert", "tflm")}
tracked = [q for q in tfdynhp.quantization.quantizers(callback.qat_model) if q.mode == "ema"]
json.dump(
    {
        "replicas": strategy.num_replicas_in_sync,
        "params": history.history["dynhp/params"],
        "qat": history.history["dynhp/qat"],
        "accuracy": history.history["accuracy"],
        "start_params": int(base.count_params()),
        "range_is_mirrored": "Mirrored" in type(tracked[0].range_max.value).__name__,
        "calibrated_ranges": calibrated,
        "ranges": [entry[3] for entry in table_after_fit],
        "test_accuracy_int8": converters.evaluate(tflite, x[1400:], y[1400:], "litert",
                                                  time_latency=False)["accuracy"],
        "agreement": agreement,
    },
    sys.stdout,
)
