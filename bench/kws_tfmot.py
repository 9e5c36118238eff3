"""TF-MOT baseline for bench/kws.py: `prune_low_magnitude` on the DS-CNN (tf_keras).

TF-MOT only accepts `tf_keras` models, so this runs in its own process with
`TF_USE_LEGACY_KERAS=1` and rebuilds MLPerf Tiny's DS-CNN in tf_keras layer for layer as
`tfdynhp.architectures.ds_cnn` (same BatchNormalization momentum as the DynHP rows). Magnitude
pruning of every Conv2D and Dense kernel (TF-MOT does not prune depthwise kernels), polynomial
decay from 0 to the sparsity giving `--target-nonzero` non-zero values in all (biases,
BatchNormalization and depthwise kernels counted as non-zero), ending at 2/3 of the epochs.
Reads the splits from `--data` (`.npz` with x_train, y_train, x_val, y_val, x_calib), writes
`model.tflite` (full int8) and `result.json` in `--out`.

    TF_USE_LEGACY_KERAS=1 python bench/kws_tfmot.py --data d.npz --target-nonzero 11000 \
        --epochs 8 --out runs/tfmot
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
import legacy_int8


def ds_cnn(tf_keras, shape, num_classes, bn_momentum):
    """MLPerf Tiny's DS-CNN (64 filters) in tf_keras, as `tfdynhp.architectures.ds_cnn`."""
    layers = tf_keras.layers

    def bn_relu(x):
        return layers.Activation("relu")(layers.BatchNormalization(momentum=bn_momentum)(x))

    inputs = tf_keras.Input(shape)
    x = bn_relu(layers.Conv2D(64, (10, 4), strides=2, padding="same")(inputs))
    x = layers.Dropout(0.2)(x)
    for _ in range(4):
        x = bn_relu(layers.DepthwiseConv2D(3, padding="same")(x))
        x = bn_relu(layers.Conv2D(64, 1, padding="same")(x))
    x = layers.Dropout(0.4)(x)
    x = layers.AveragePooling2D((shape[0] // 2, shape[1] // 2))(x)
    x = layers.Flatten()(x)
    return tf_keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))


def prunable_count(model):
    """Kernel weights TF-MOT prunes: Conv2D and Dense kernels. Biases, BatchNormalization and
    depthwise kernels are left dense (TF-MOT's prune registry lists no weight of
    DepthwiseConv2D)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights
                   if w.name.split("/")[-1].startswith("kernel")))


def nonzero_params(model):
    """Non-zero values of every weight (BatchNormalization statistics included), counted as
    `tfdynhp.costs.memory.parameter_count` counts the DynHP rows."""
    return int(sum(np.count_nonzero(w) for w in model.get_weights()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--target-nonzero", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    args, tfmot, tf_keras, d = bench_common.tfmot_args_and_data(parser, argv)
    x, y, xv, yv = d["x_train"], d["y_train"], d["x_val"], d["y_val"]
    num_classes = int(y.max()) + 1
    base = ds_cnn(tf_keras, x.shape[1:], num_classes, args.bn_momentum)
    kernels = prunable_count(base)
    # Never pruned, and non-zero once trained (zero-initialized biases, betas and means too).
    others = int(sum(np.prod(w.shape) for w in base.weights)) - kernels
    sparsity = float(np.clip(1.0 - (args.target_nonzero - others) / kernels, 0.0, 0.99))
    steps = int(np.ceil(len(x) / args.batch_size))
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
        end_step=max(1, int(steps * args.epochs * 2 / 3)), frequency=max(1, steps // 4))
    model = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
    model.compile(tf_keras.optimizers.Adam(args.lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    decay = tf_keras.callbacks.LearningRateScheduler(
        lambda e, lr: float(0.5 * args.lr * (1 + np.cos(np.pi * e / args.epochs))))
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(xv, yv), verbose=0,
                        callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), decay])
    wall = time.perf_counter() - start
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    os.makedirs(args.out, exist_ok=True)
    stripped.save(os.path.join(args.out, "model_float.h5"))

    tflite = legacy_int8.int8_tflite(stripped, d["x_calib"])
    with open(os.path.join(args.out, "model.tflite"), "wb") as f:
        f.write(tflite)
    float_acc = {}
    for split in ("test_voices", "test_accents"):
        probs = stripped.predict(d[f"x_{split}"], verbose=0)
        float_acc[split] = float(np.mean(np.argmax(probs, -1) == d[f"y_{split}"]))
    result = {
        "method": "tfmot_prune_low_magnitude", "target_nonzero": args.target_nonzero,
        "final_sparsity": sparsity, "nonzero_params": nonzero_params(stripped),
        "dense_params": others + kernels, "epochs": args.epochs, "wall_time_s": wall,
        "val_accuracy": [float(v) for v in history.history["val_accuracy"]],
        "float_accuracy": float_acc, "tflite_bytes": len(tflite),
    }
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
