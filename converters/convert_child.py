"""The int8 conversion itself: a SavedModel and calibration samples in, a `.tflite` out.

Run by `tfdynhp.converters.quantize` either in the user's process or, by default, as a script
in a child process (`python convert_child.py SAVED_MODEL DATA.npy IO_DTYPE OUT.tflite`):
TensorFlow's converter can crash the process that runs it (a segmentation fault calibrating
an LSTM or GRU, tensorflow/tensorflow#41305, #87468), and a crash in a child is an error the
user can read instead of the end of their run. The script imports only TensorFlow and NumPy
(not tfdynhp or Keras), to start as fast as it can.
"""

import json
import sys


def convert(saved_model_dir, data, io_dtype):
    """Converts the SavedModel to a full-int8 flatbuffer calibrated on `data` (float32
    samples, batch axis first); `io_dtype` is "int8" or "uint8"."""
    import tensorflow as tf

    def representative_dataset():
        for i in range(data.shape[0]):
            yield [data[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if data is not None:
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # data None: a quantization-aware graph whose FakeQuant ops carry the ranges
    # (TFLITE_BUILTINS_INT8 alone would demand a representative data set; an op left in
    # float is refused by the caller).
    io_type = tf.int8 if io_dtype == "int8" else tf.uint8
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    return converter.convert()


def main(argv):
    import numpy as np

    saved_model_dir, data_path, io_dtype, out_path = argv
    try:
        tflite_bytes = convert(saved_model_dir, np.load(data_path), io_dtype)
    except Exception as e:  # noqa: BLE001  (reported to the parent, which raises it)
        with open(out_path + ".error.json", "w") as f:
            json.dump({"type": type(e).__name__, "message": str(e)}, f)
        return 1
    with open(out_path, "wb") as f:
        f.write(tflite_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
