"""Full-int8 conversion of a legacy `tf_keras` model (the TF-MOT baselines run under
`TF_USE_LEGACY_KERAS=1`, where tfdynhp's own Keras 3 converter does not apply)."""

import numpy as np


def int8_tflite(model, samples):
    """The model as a full-int8 `.tflite` (int8 input and output), calibrated on `samples`."""
    import tensorflow as tf

    def representative_dataset():
        for sample in samples:
            yield [sample[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()
