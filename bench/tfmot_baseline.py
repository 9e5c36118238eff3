"""TF Model Optimization baseline: `prune_low_magnitude` on LeNet-300-100 or LeNet-5 (tf_keras).

TF-MOT only accepts `tf_keras` models, and importing it switches `tf.keras` to legacy Keras,
so `bench/paper_table.py` runs this script in its own process with `TF_USE_LEGACY_KERAS=1`.
It trains the dense model (`--arch mlp`, LeNet-300-100, or `--arch lenet5`, Caffe's LeNet-5 as
`tfdynhp.architectures.lenet5` builds it) with magnitude pruning (polynomial decay from 0 to the target
sparsity, ending at 2/3 of the epochs) on the same training subset and validation split as
`tfdynhp.training.train`, strips the wrappers, writes an int8 `.tflite` and a JSON of the
measures. Its full training memory is measured on the live model like the other rows
(`measured_full_memory`), not derived from a formula. Sparsity is unstructured: the model keeps its dense shapes, so its
"model size" counts the non-zero weights (the paper's accounting), while the `.tflite` file
stores every weight.

    TF_USE_LEGACY_KERAS=1 python bench/tfmot_baseline.py --target-params 20000 \
        --epochs 30 --out bench/results/tfmot
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
import legacy_int8


def build(arch, tf_keras):
    """The tf_keras twin of `tfdynhp.architectures.mlp` / `lenet5` (same layers and sizes)."""
    layers = tf_keras.layers
    if arch == "mlp":
        return tf_keras.Sequential([
            tf_keras.Input((784,)),
            layers.Dense(300, activation="relu"),
            layers.Dense(100, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ])
    if arch == "lenet5":
        return tf_keras.Sequential([
            tf_keras.Input((28, 28, 1)),
            layers.Conv2D(20, 5, kernel_initializer="lecun_uniform"),
            layers.MaxPooling2D(2),
            layers.Conv2D(50, 5, kernel_initializer="lecun_uniform"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(500, activation="relu", kernel_initializer="lecun_uniform"),
            layers.Dense(10, activation="softmax", kernel_initializer="lecun_uniform"),
        ])
    raise ValueError(f"--arch must be 'mlp' or 'lenet5'. Received: {arch!r}")


def _load(limit_train, seed, validation_split, arch="mlp"):
    """The same training subset, validation split and test set as `tfdynhp.training.train`
    with the same seed (`tfdynhp.datasets.shaping`)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tfdynhp.datasets import shaping as inputs

    (x, y), (xt, yt) = inputs.load_data("fashion-mnist", limit_train=limit_train, seed=seed)
    (x, y), validation = inputs.split_validation(x, y, validation_split, seed)
    shape = (784,) if arch == "mlp" else (28, 28, 1)
    x, xt, xv = (a.reshape((len(a),) + shape) for a in (x, xt, validation[0]))
    return (x, y), (xv, validation[1]), (xt, yt)


def _size(variable):
    return int(np.prod(variable.shape))


def measured_full_memory(model, optimizer, x_batch):
    """The full accounting of `tfdynhp.costs.memory`, read from the live tf_keras training model:
    every variable (kernels, biases, TF-MOT's masks and thresholds), one gradient per
    trainable value, the optimizer's slots, every layer's output for the batch (run in
    training mode) and the input batch."""
    import tf_keras

    skip = {id(optimizer.iterations)}
    variables = sum(_size(v) for v in model.variables)
    gradients = sum(_size(v) for v in model.trainable_variables)
    slots = sum(_size(v) for v in optimizer.variables() if id(v) not in skip)
    taps = tf_keras.Model(model.inputs, [layer.output for layer in model.layers])
    activations = sum(_size(t) for t in taps(x_batch, training=True))
    return 4 * (variables + gradients + slots + activations + x_batch.size)


def _nonzero_params(model):
    return int(sum(np.count_nonzero(w) for w in model.get_weights()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-params", type=int, required=True)
    parser.add_argument("--arch", choices=["mlp", "lenet5"], default="mlp")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--validation-split", type=float, default=0.1)
    parser.add_argument("--out", required=True, help="folder for model.tflite and result.json")
    args = parser.parse_args(argv)

    import tensorflow_model_optimization as tfmot
    import tf_keras

    tf_keras.utils.set_random_seed(args.seed)
    (x, y), (xv, yv), (xt, yt) = _load(args.limit_train, args.seed, args.validation_split,
                                       args.arch)
    os.makedirs(args.out, exist_ok=True)
    base = build(args.arch, tf_keras)
    sparsity = float(np.clip(1.0 - args.target_params / base.count_params(), 0.0, 0.99))
    steps_per_epoch = int(np.ceil(len(x) / args.batch_size))
    end_step = max(1, int(steps_per_epoch * args.epochs * 2 / 3))
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=end_step,
        frequency=max(1, steps_per_epoch // 4),
    )
    model = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
    model.compile(tf_keras.optimizers.Adam(args.lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    per_epoch = []

    class Record(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            stripped = tfmot.sparsity.keras.strip_pruning(self.model)
            nonzero = _nonzero_params(stripped)
            per_epoch.append({
                "epoch": epoch,
                "nonzero_params": nonzero,
                "val_error": 1.0 - float(logs.get("val_accuracy", np.nan)),
                # Paper accounting: non-zero float32 weights + one float32 input batch.
                "paper_memory_bytes": 4 * (nonzero + args.batch_size * 784),
            })

    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, validation_data=(xv, yv),
              callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), Record()], verbose=0)
    wall = time.perf_counter() - start
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    accuracy = float(np.mean(np.argmax(stripped.predict(xt, verbose=0), -1) == yt))
    nonzero = _nonzero_params(stripped)

    full = measured_full_memory(model, model.optimizer, x[: args.batch_size])

    rng = np.random.default_rng(args.seed)
    representative = x[np.sort(rng.permutation(len(x))[:500])]

    tflite = legacy_int8.int8_tflite(stripped, representative)
    tflite_path = os.path.join(args.out, "model.tflite")
    with open(tflite_path, "wb") as f:
        f.write(tflite)

    result = {
        "method": "tfmot_prune_low_magnitude",
        "arch": args.arch,
        "target_params": args.target_params,
        "final_sparsity": sparsity,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "n_train": len(x),
        "n_validation": len(xv),
        "test_error_pct": 100.0 * (1.0 - accuracy),
        "params": nonzero,
        "model_size_bytes": 4 * nonzero,
        "mean_training_memory_paper_bytes": float(
            np.mean([r["paper_memory_bytes"] for r in per_epoch])
        ),
        "mean_training_memory_full_bytes": float(full),  # measured, constant over epochs
        "tflite_path": tflite_path,
        "tflite_bytes": len(tflite),
        "wall_time_s": wall,
        "history": per_epoch,
    }
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
