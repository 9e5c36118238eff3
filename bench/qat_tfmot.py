"""TF-MOT's quantization-aware training, the anchor of bench/qat.py (legacy tf_keras).

TF-MOT only accepts `tf_keras` models, so this runs in its own process with
`TF_USE_LEGACY_KERAS=1`. It rebuilds the float model in tf_keras layer for layer (LeNet-5 and
LeNet-300-100 as `bench/tfmot_baseline.py`, the DS-CNN as `bench/kws_tfmot.py`, MobileNet from
`tf_keras.applications`), loads the float weights bench/qat.py trained in Keras 3 (checked: the
float test accuracy must match), wraps it with `tfmot.quantization.keras.quantize_model`
(TF-MOT's default 8-bit scheme: BatchNormalization folded, per-channel weights, moving-average
activation ranges), fine-tunes it with the same epochs, learning rate and batch size as
tfdynhp's QAT row, and converts it to a full-int8 `.tflite` from its own ranges (no
representative data). Writes `model.tflite` and `result.json` in `--out`.

    TF_USE_LEGACY_KERAS=1 python bench/qat_tfmot.py --arch lenet5 --data d.npz --epochs 2 \
        --lr 1e-4 --out runs/tfmot-qat
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common
import kws_tfmot
import tfmot_baseline

ARCHS = ("lenet5", "mlp", "ds-cnn", "mobilenet")


def build(arch, tf_keras, shape, num_classes, bn_momentum):
    """The tf_keras twin of the Keras 3 model bench/qat.py trained."""
    if arch in ("lenet5", "mlp"):
        return tfmot_baseline.build(arch, tf_keras)
    if arch == "ds-cnn":
        return kws_tfmot.ds_cnn(tf_keras, shape, num_classes, bn_momentum)
    if arch == "mobilenet":
        return tf_keras.applications.MobileNet(input_shape=shape, alpha=0.25, weights=None,
                                               classes=num_classes)
    raise ValueError(f"--arch must be one of {ARCHS}. Received: {arch!r}")


def _int8_qat_tflite(model):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=512, verbose=0), -1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHS, required=True)
    parser.add_argument("--data", required=True,
                        help=".npz with x_train, y_train, x_test, y_test, float_accuracy and "
                             "the float weights w_0, w_1, ... (Keras' get_weights order)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=128)
    args, tfmot, tf_keras, d = bench_common.tfmot_args_and_data(parser, argv)
    x, y, xt, yt = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    weights = [d[f"w_{i}"] for i in range(sum(k.startswith("w_") for k in d.files))]
    model = build(args.arch, tf_keras, x.shape[1:], int(y.max()) + 1, args.bn_momentum)
    model.set_weights(weights)
    float_accuracy = _accuracy(model, xt, yt)
    if abs(float_accuracy - float(d["float_accuracy"])) > 2.0 / len(yt):
        raise SystemExit(
            f"The tf_keras twin computes another model: float test accuracy {float_accuracy} "
            f"here, {float(d['float_accuracy'])} in Keras 3. Check the layer order of --arch."
        )
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(tf_keras.optimizers.Adam(args.lr), "sparse_categorical_crossentropy",
                metrics=["accuracy"])
    start = time.perf_counter()
    qat.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, shuffle=True, verbose=0)
    wall = time.perf_counter() - start
    tflite = _int8_qat_tflite(qat)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "model.tflite"), "wb") as f:
        f.write(tflite)
    result = {"arch": args.arch, "float_accuracy": float_accuracy,
              "qat_simulated_accuracy": _accuracy(qat, xt, yt), "qat_wall_s": wall,
              "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
              "tflite_bytes": len(tflite)}
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
