"""Where the int8 error of a `keras.applications` model comes from, layer by layer.

Trains a model as Keras builds it (EfficientNetB0 by default, `weights=None`, 32x32x3,
unpruned) for a few epochs on Fashion-MNIST, converts it with `to_int8_tflite`, and measures:

1. the int8 model's argmax agreement with the float model, and its accuracy;
2. per quantized tensor, with TFLite's `QuantizationDebugger` on test images: the error of the
   int8 tensor against the float one, relative to the float tensor's RMS, and the error in
   quantization steps (RMSE / scale); and the spread of the float tensor's channel ranges
   (largest over median of the per-channel max |x|): one scale per tensor, as TFLite's int8
   activations have, spends its 256 levels on the widest channel;
3. the same per TFLite operator type (median and worst), and which Keras layers the worst
   tensors belong to;
4. ablations: the agreement when one operator type is left in float (`denylisted_ops`, a
   diagnosis only: the result is not an int8-only model), and with 100, 500 and 1,000
   calibration samples.

    nice -n 10 python bench/int8_error.py                 # EfficientNetB0, ~20 min
    nice -n 10 python bench/int8_error.py --model MobileNetV2 --epochs 2

Writes `bench/results/int8_error_<model>.json` and `.md`.
"""

import argparse
import csv
import io
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import keras
import numpy as np
import tensorflow as tf
from tfdynhp.converters import quantize

from tfdynhp import converters
from tfdynhp.datasets import loaders

RESCALING_FAMILIES = ("EfficientNet", "MobileNetV3", "ConvNeXt")
ABLATED_OPS = ("LOGISTIC", "MUL", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "MEAN",
               "FULLY_CONNECTED", "SOFTMAX")


def images(n_train, n_test, rescales):
    (x_train, y_train), (x_test, y_test) = loaders.load_fashion_mnist(flatten=False,
                                                                      normalize=False)

    def shape(x):
        x = np.pad(np.asarray(x, "float32").reshape(-1, 28, 28, 1),
                   ((0, 0), (2, 2), (2, 2), (0, 0)))
        x = np.repeat(x, 3, axis=-1)
        return x if rescales else x / 127.5 - 1.0

    return (shape(x_train[:n_train]), np.asarray(y_train[:n_train], "int32"),
            shape(x_test[:n_test]), np.asarray(y_test[:n_test], "int32"))


def _flat(values):
    return np.concatenate([np.asarray(v, np.float64).ravel() for v in values])


def relative_error(float_values, quant_values, scale, zero_point):
    """RMS of (dequantized int8 - float) over the RMS of the float tensor."""
    f = _flat(float_values)
    q = (_flat(quant_values) - zero_point) * scale
    return float(np.sqrt(np.mean((q - f) ** 2)) / (np.sqrt(np.mean(f ** 2)) + 1e-12))


def steps_error(float_values, quant_values, scale, zero_point):
    """RMSE in quantization steps (1 step = the tensor's scale)."""
    f = _flat(float_values)
    q = (_flat(quant_values) - zero_point) * scale
    return float(np.sqrt(np.mean((q - f) ** 2)) / scale)


def channel_spread(float_values, quant_values, scale, zero_point):
    """Largest over median per-channel max |x| of the float tensor (1 for a flat range)."""
    values = np.concatenate([np.asarray(v, np.float64).reshape(-1, np.shape(v)[-1]
                                                               if np.ndim(v) else 1)
                             for v in float_values])
    ranges = np.max(np.abs(values), axis=0)
    median = np.median(ranges)
    return float(np.max(ranges) / median) if median > 0 else float("inf")


def agreement(tflite_bytes, x, reference):
    """Argmax agreement of a `.tflite` model (int8 or float input) with `reference`."""
    interpreter = tf.lite.Interpreter(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    predictions = []
    for sample in x:
        value = sample[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            value = np.clip(np.round(value / scale + zero), -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], value)
        interpreter.invoke()
        predictions.append(int(np.argmax(interpreter.get_tensor(out["index"]))))
    return float(np.mean(np.asarray(predictions) == reference))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EfficientNetB0")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train", type=int, default=4096)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--debug-samples", type=int, default=32)
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    rescales = args.model.startswith(RESCALING_FAMILIES)
    x, y, x_test, y_test = images(args.train, args.test, rescales)
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, args.model)(input_shape=(32, 32, 3), weights=None,
                                                    classes=10)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=args.epochs, verbose=0)
    train_seconds = time.perf_counter() - start
    float_predictions = np.argmax(model.predict(x_test, verbose=0), -1)
    result = {
        "command": "python bench/int8_error.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "model": args.model, "epochs": args.epochs, "train": args.train, "test": args.test,
        "train_seconds": train_seconds,
        "float_accuracy": float(np.mean(float_predictions == y_test)),
    }
    calibration = {}
    for samples in (100, 500, 1000):
        tflite = converters.to_int8_tflite(model, x[:samples], max_samples=samples)
        calibration[samples] = agreement(tflite, x_test, float_predictions)
        if samples == 500:
            result["int8_accuracy"] = agreement(tflite, x_test, y_test)
    result["int8_agreement_by_calibration_samples"] = calibration
    result["int8_agreement"] = calibration[500]

    with tempfile.TemporaryDirectory() as directory:
        signature = [tf.TensorSpec((1, 32, 32, 3), tf.float32)]
        model.export(directory, format="tf_saved_model", input_signature=signature,
                     verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(500))
        options = tf.lite.experimental.QuantizationDebugOptions(
            layer_direct_compare_metrics={"relative_error": relative_error,
                                          "steps_error": steps_error,
                                          "channel_spread": channel_spread})
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_options=options,
            debug_dataset=lambda: ([x_test[i:i + 1]] for i in range(args.debug_samples)))
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
        rows = list(csv.DictReader(io.StringIO(dump.getvalue())))
        ablations = {}
        for op in ABLATED_OPS:
            debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                denylisted_ops=[op])
            mixed = debugger.get_nondebug_quantized_model()
            ablations[op] = agreement(mixed, x_test, float_predictions)
        debugger.options = tf.lite.experimental.QuantizationDebugOptions()
        ablations["none (all int8, float I/O)"] = agreement(
            debugger.get_nondebug_quantized_model(), x_test, float_predictions)
    result["float_op_ablations"] = ablations

    tensors = []
    for row in rows:
        layers = quantize.layers_named_in([row["tensor_name"]], model)
        tensors.append({
            "op": row["op_name"], "tensor": row["tensor_name"],
            "layer": layers[0] if layers else "",
            "relative_error": float(row["relative_error"]),
            "steps_error": float(row["steps_error"]),
            "channel_spread": float(row["channel_spread"]),
            "scale": float(row["scale"]),
        })
    by_op = {}
    for tensor in tensors:
        by_op.setdefault(tensor["op"], []).append(tensor["relative_error"])
    result["by_op"] = {op: {"tensors": len(v), "median_relative_error": float(np.median(v)),
                            "max_relative_error": float(np.max(v))}
                       for op, v in sorted(by_op.items(), key=lambda i: -np.median(i[1]))}
    spreads = [t["channel_spread"] for t in tensors if np.isfinite(t["channel_spread"])]
    errors = [t["relative_error"] for t in tensors if np.isfinite(t["channel_spread"])]
    result["spread_error_correlation"] = float(np.corrcoef(np.log(spreads), errors)[0, 1])
    result["worst_tensors"] = sorted(tensors, key=lambda t: -t["relative_error"])[:15]
    result["tensors"] = tensors
    os.makedirs(args.results, exist_ok=True)
    stem = os.path.join(args.results, f"int8_error_{args.model}")
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=2)
    write_markdown(result, stem + ".md")
    print(json.dumps({k: v for k, v in result.items() if k != "tensors"}, indent=1))


def write_markdown(result, path):
    calibration = result["int8_agreement_by_calibration_samples"]
    lines = [
        f"# int8 error of {result['model']}, layer by layer",
        "",
        f"`{result['command'].strip()}` on {result['machine']}: {result['model']} (32x32x3, "
        f"weights=None) trained {result['epochs']} epochs on {result['train']} Fashion-MNIST "
        f"images; float accuracy {result['float_accuracy']:.3f}, int8 "
        f"{result['int8_accuracy']:.3f}; int8/float argmax agreement on {result['test']} test "
        f"images {result['int8_agreement']:.3f} (calibrated on 100 / 500 / 1,000 samples: "
        + " / ".join(f"{calibration[k]:.3f}" for k in sorted(calibration)) + ").",
        "",
        "Agreement with one operator type left in float (diagnosis only, not int8-only):",
        "",
        "| float op | agreement |",
        "| --- | --- |",
    ]
    for op, value in sorted(result["float_op_ablations"].items(), key=lambda i: -i[1]):
        lines.append(f"| {op} | {value:.3f} |")
    lines += ["", ("Relative error of the int8 tensors per operator type (RMS error / RMS of the "
              "float tensor):"), "", "| op | tensors | median | worst |", "| --- | --- | --- | --- |"]
    for op, stats in result["by_op"].items():
        lines.append(f"| {op} | {stats['tensors']} | {stats['median_relative_error']:.3f} | "
                     f"{stats['max_relative_error']:.3f} |")
    lines += ["", "Worst tensors (channel spread: largest / median per-channel max |x|):", "",
              "| layer | op | relative error | error (steps) | channel spread |",
              "| --- | --- | --- | --- | --- |"]
    for t in result["worst_tensors"]:
        lines.append(f"| {t['layer']} | {t['op']} | {t['relative_error']:.3f} | "
                     f"{t['steps_error']:.2f} | {t['channel_spread']:.1f} |")
    lines += ["", ("Correlation of log(channel spread) with the relative error over all tensors: "
              f"{result['spread_error_correlation']:.2f}.")]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
