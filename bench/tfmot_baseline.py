"""TF Model Optimization baseline: `prune_low_magnitude` on LeNet-300-100 (tf_keras).

TF-MOT only accepts `tf_keras` models, and importing it switches `tf.keras` to legacy Keras,
so `bench/paper_table.py` runs this script in its own process with `TF_USE_LEGACY_KERAS=1`.
It trains the dense MLP with magnitude pruning (polynomial decay from 0 to the target
sparsity, ending at 2/3 of the epochs), strips the wrappers, writes an int8 `.tflite` and a
JSON of the measures. Sparsity is unstructured: the model keeps its dense shapes, so its
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

DENSE_PARAMS = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10


def _load(limit_train, seed):
    # Only the NumPy part of tfdynhp.datasets is needed; it does not import Keras.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tfdynhp.datasets import load_fashion_mnist

    (x, y), (xt, yt) = load_fashion_mnist()
    if limit_train and limit_train < len(x):
        keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:limit_train])
        x, y = x[keep], y[keep]
    return (x.reshape(len(x), -1), y), (xt.reshape(len(xt), -1), yt)


def _nonzero_params(model):
    return int(sum(np.count_nonzero(w) for w in model.get_weights()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-params", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--out", required=True, help="folder for model.tflite and result.json")
    args = parser.parse_args(argv)

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    tf_keras.utils.set_random_seed(args.seed)
    (x, y), (xt, yt) = _load(args.limit_train, args.seed)
    os.makedirs(args.out, exist_ok=True)
    sparsity = float(np.clip(1.0 - args.target_params / DENSE_PARAMS, 0.0, 0.99))
    steps_per_epoch = int(np.ceil(len(x) / args.batch_size))
    end_step = max(1, int(steps_per_epoch * args.epochs * 2 / 3))
    base = tf_keras.Sequential([
        tf_keras.Input((784,)),
        tf_keras.layers.Dense(300, activation="relu"),
        tf_keras.layers.Dense(100, activation="relu"),
        tf_keras.layers.Dense(10, activation="softmax"),
    ])
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
                "test_error": 1.0 - float(logs.get("val_accuracy", np.nan)),
                # Paper accounting: non-zero float32 weights + one float32 input batch.
                "paper_memory_bytes": 4 * (nonzero + args.batch_size * 784),
            })

    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, validation_data=(xt, yt),
              callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), Record()], verbose=0)
    wall = time.perf_counter() - start
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    accuracy = float(np.mean(np.argmax(stripped.predict(xt, verbose=0), -1) == yt))
    nonzero = _nonzero_params(stripped)

    # Full accounting (ours), for the wrapped training model: kernels and biases, TF-MOT's
    # masks and thresholds, gradients and two Adam slots per trainable value, activations
    # kept for the backward pass (each layer's output plus the masked kernel's input) and
    # the input batch.
    trainable = DENSE_PARAMS
    masks = 784 * 300 + 300 * 100 + 100 * 10
    activations = (784 + 300) + (300 + 100) + (100 + 10)
    full = 4 * (trainable * 4 + masks + 3 + args.batch_size * (activations + 784))

    rng = np.random.default_rng(args.seed)
    representative = x[np.sort(rng.permutation(len(x))[:500])]

    def representative_dataset():
        for sample in representative:
            yield [sample[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    tflite = converter.convert()
    tflite_path = os.path.join(args.out, "model.tflite")
    with open(tflite_path, "wb") as f:
        f.write(tflite)

    result = {
        "method": "tfmot_prune_low_magnitude",
        "target_params": args.target_params,
        "final_sparsity": sparsity,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "n_train": len(x),
        "test_error_pct": 100.0 * (1.0 - accuracy),
        "params": nonzero,
        "model_size_bytes": 4 * nonzero,
        "mean_training_memory_paper_bytes": float(
            np.mean([r["paper_memory_bytes"] for r in per_epoch])
        ),
        "mean_training_memory_full_bytes": float(full),
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
