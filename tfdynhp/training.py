"""`train()`: one reusable training run (dense, SP, HP or DynHP) of a LeNet-style MLP.

The command line (`tfdynhp train`) and the benchmark (`bench/paper_table.py`) both call it, so
a table row and a CLI run with the same options are the same experiment. A run builds the MLP
from a width spec (`(300, 100)` is LeNet-300-100), gates it with `tfdynhp.gate()`, trains it in
one `model.fit` with `tfdynhp.callbacks.DynHPCallback` in the chosen mode, and measures what the
paper reports (test error, final model size, mean training memory in both accountings) plus the
int8 TFLite size and accuracy when exports are asked for.

Modes (METHOD.md sections 2-3):

- `"dense"`: the plain MLP, no gates (the unpruned reference).
- `"sp"`: soft pruning, Louizos' L0 gates trained without removing anything (the paper's SP).
- `"hp"`: hard pruning at every epoch end with a fixed batch size (the paper's HP).
- `"dynhp"`: hard pruning plus the batch grown by the gradient-variance rule under a memory
  budget, fed by `tfdynhp.DynamicBatches` (the paper's DynHP).
"""

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np

from tfdynhp import budget as budget_lib
from tfdynhp import memory

MODES = ("dense", "sp", "hp", "dynhp")
EXPORT_TARGETS = ("pi", "android", "mcu")
LENET_300_100 = (300, 100)

FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Defaults of the main DynHP job (`tfdynhp train --mode dynhp`), chosen on Fashion-MNIST by
# short runs (see bench/README.md for what was tried): 50 epochs (the paper-bar limit) take
# about 5 minutes on two CPU cores; a per-epoch cosine learning rate lets the last epochs
# fine-tune the pruned network (11.7 % instead of 12.2 % error at about the same size). Counting units in the L0 penalty ("units" weighting, weight_by_fan_out=False)
# spreads the pruning over all layers; the default Louizos weighting by fan-out removes input
# features three times harder than hidden units and cost accuracy. Initial drop rate 0.2
# (Louizos' input-layer value) for every layer: 0.5 made the gate noise cost ~3 points of
# test error.
DEFAULTS = {
    "epochs": 50,
    "batch_size": 16,
    "lr": 1e-3,
    "lr_schedule": "cosine",
    "l0_lambda": 100.0,
    "drop_rate_init": 0.2,
    "first_layer_drop_rate": None,
    "weight_by_fan_out": False,
    "threshold": 0.5,
    "alpha_bs": 0.98,
    "accounting": "paper",
    "budget": "1.2MB",
}
# HP and SP use the paper's fixed batch of 128.
FIXED_BATCH_DEFAULT = 128

PARAM_KEY = "dynhp/params"
PAPER_MEMORY_KEY = "dynhp/paper_memory_bytes"
FULL_MEMORY_KEY = "dynhp/full_memory_bytes"
BATCH_KEY = "dynhp/batch_size"
BUDGET_KEY = "dynhp/budget_bytes"
UNITS_PREFIX = "dynhp/units/"


@dataclasses.dataclass
class TrainResult:
    """What `train()` returns.

    Attributes:
        model: the trained model (a `tfdynhp.GatedModel`, or the plain MLP in `"dense"` mode).
        stripped: the deployable plain Keras model (`tfdynhp.strip(model)`).
        history: one dict per epoch: Keras' logs (loss, accuracy, val_accuracy, ...), the
            `dynhp/...` keys of `DynHPCallback`, `test_error` and `epoch_seconds`.
        summary: the run's JSON-serialisable summary (see `summarize`).
        tflite: the int8 `.tflite` bytes, or `None` when nothing was exported.
    """

    model: keras.Model
    stripped: keras.Model
    history: list
    summary: dict
    tflite: bytes = None


def parse_arch(spec):
    """Parses hidden-layer widths: `"300,100"`, `(300, 100)` or `""` (no hidden layer).

    Returns:
        A tuple of positive ints.

    Raises:
        ValueError: if a width is not a positive integer.
    """
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
    else:
        parts = list(spec)
    widths = []
    for part in parts:
        try:
            width = int(part)
        except (TypeError, ValueError):
            width = None
        if width is None or width < 1 or (isinstance(part, float) and part != width):
            raise ValueError(
                "Expected hidden-layer widths as positive integers, e.g. '300,100'. "
                f"Received: {spec!r}"
            )
        widths.append(width)
    return tuple(widths)


def build_mlp(input_dim, arch=LENET_300_100, num_classes=10, seed=0):
    """A LeNet-style MLP: `input_dim - arch... - num_classes`, ReLU hidden, softmax output.

    Args:
        input_dim: number of input features (784 for 28x28 images).
        arch: hidden widths. Defaults to `(300, 100)` (LeNet-300-100).
        num_classes: output units. Defaults to `10`.
        seed: seed of the Glorot initialisation. Defaults to `0`.

    Returns:
        A built `keras.Sequential`.
    """
    arch = parse_arch(arch)
    layers = [keras.Input((int(input_dim),))]
    for i, width in enumerate(arch):
        layers.append(
            keras.layers.Dense(
                width,
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i),
                name=f"dense_{i}",
            )
        )
    layers.append(
        keras.layers.Dense(
            int(num_classes),
            activation="softmax",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + len(arch)),
            name="output",
        )
    )
    name = "mlp_" + "_".join(str(w) for w in (input_dim, *arch, num_classes))
    return keras.Sequential(layers, name=name)


def load_data(dataset, limit_train=None, seed=0):
    """Loads `dataset` (a name for `tfdynhp.datasets.load` or a `.npz` path) as flat float32.

    Args:
        dataset: `"fashion-mnist"`, `"digits"`, ... or the path of a `.npz` file.
        limit_train: keep a seeded random subset of this many training examples. Defaults to
            `None` (all).
        seed: seed of the subset. Defaults to `0`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, x of shape `(n, features)` in float32 and
        y as int32 class indices.

    Raises:
        ValueError: for an unknown data set, a `.npz` without the expected keys, labels that
            are not class indices, or a bad `limit_train`.
    """
    from tfdynhp import datasets

    (x_train, y_train), (x_test, y_test) = datasets.load(dataset)
    x_train, x_test = (np.asarray(x, np.float32).reshape(len(x), -1) for x in (x_train, x_test))
    y_train, y_test = (_as_labels(y, dataset) for y in (y_train, y_test))
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"{dataset}: train and test examples differ in size ({x_train.shape[1]} vs "
            f"{x_test.shape[1]} features)."
        )
    if limit_train is not None:
        if isinstance(limit_train, bool) or not isinstance(limit_train, (int, np.integer)) or (
            limit_train < 1
        ):
            raise ValueError(
                f"`limit_train` must be a positive integer. Received: {limit_train!r}"
            )
        if limit_train < len(x_train):
            keep = np.random.default_rng(seed).permutation(len(x_train))[:limit_train]
            keep.sort()
            x_train, y_train = x_train[keep], y_train[keep]
    return (x_train, y_train), (x_test, y_test)


def _as_labels(y, dataset):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=1)
    y = y.reshape(-1)
    if y.size and (not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0):
        raise ValueError(
            f"{dataset}: labels must be integer class indices >= 0 (or one-hot). "
            f"Received values such as {y[:5].tolist()}."
        )
    return y.astype(np.int32)


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    return mode


def check_exports(exports):
    """Parses export targets: `"pi,android"`, a list, or `None`; returns a tuple."""
    if exports is None:
        return ()
    if isinstance(exports, str):
        exports = [t.strip() for t in exports.split(",") if t.strip()]
    exports = tuple(dict.fromkeys(exports))
    unknown = [t for t in exports if t not in EXPORT_TARGETS]
    if unknown:
        raise ValueError(
            f"Unknown export target(s) {unknown}. Expected a comma-separated subset of "
            f"{list(EXPORT_TARGETS)}."
        )
    return exports


class _EpochRecorder(keras.callbacks.Callback):
    """Adds `test_error`, `epoch_seconds` and, for models DynHP does not watch (dense mode),
    the same `dynhp/...` memory keys, so every mode writes the same columns."""

    def __init__(self, static_record=None):
        super().__init__()
        self.static_record = static_record
        self.history = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.static_record:
            logs.update(self.static_record)
        if "val_accuracy" in logs:
            logs["test_error"] = 1.0 - float(logs["val_accuracy"])
        logs["epoch_seconds"] = time.perf_counter() - self._start
        self.history.append({"epoch": epoch, **{k: _to_float(v) for k, v in logs.items()}})


def _to_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _dense_record(model, batch_size):
    record = {
        PARAM_KEY: memory.dense_weight_count(model),
        BATCH_KEY: batch_size,
        PAPER_MEMORY_KEY: memory.training_memory(model, batch_size, "paper")[0],
        FULL_MEMORY_KEY: memory.training_memory(model, batch_size, "full")[0],
    }
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            record[UNITS_PREFIX + layer.name] = int(layer.kernel.shape[0])
    return record


def _evaluate_accuracy(model, x, y):
    probs = model.predict(x, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == y))


LR_SCHEDULES = ("constant", "cosine")


def cosine_epoch_schedule(lr, epochs):
    """`schedule(epoch, current) -> rate`: cosine decay from `lr` at epoch 0 towards 0."""

    def schedule(epoch, current_lr=None):
        return float(0.5 * lr * (1.0 + math.cos(math.pi * epoch / max(epochs, 1))))

    return schedule


def train(
    dataset="fashion-mnist",
    arch=LENET_300_100,
    mode="dynhp",
    epochs=None,
    batch_size=None,
    lr=None,
    lr_schedule=None,
    l0_lambda=None,
    drop_rate_init=None,
    first_layer_drop_rate=DEFAULTS["first_layer_drop_rate"],
    weight_by_fan_out=None,
    threshold=None,
    budget=None,
    alpha_bs=None,
    accounting=None,
    seed=0,
    limit_train=None,
    data=None,
    out_dir=None,
    exports=(),
    verbose=1,
    keras_verbose=None,
    labels=None,
):
    """Trains a LeNet-style MLP in one mode and measures it like the paper's Table 3.

    Args:
        dataset: data set name or `.npz` path (see `load_data`); used when `data` is `None`
            and recorded in the summary. Defaults to `"fashion-mnist"`.
        arch: hidden widths, e.g. `"300,100"` or `(300, 100)`. Defaults to LeNet-300-100.
        mode: `"dense"`, `"sp"`, `"hp"` or `"dynhp"`. Defaults to `"dynhp"`.
        epochs: epochs of the single `fit`. Defaults to `DEFAULTS["epochs"]`.
        batch_size: the (initial, for DynHP) batch size. Defaults to 16 for DynHP, 128
            otherwise.
        lr: Adam learning rate (the initial one with a schedule). Defaults to `1e-3`.
        lr_schedule: `"constant"` or `"cosine"` (per-epoch cosine decay from `lr` to 0 over
            `epochs`, set by `keras.callbacks.LearningRateScheduler`; DynHP's optimizer
            rebuilds keep the rate). Defaults to `DEFAULTS["lr_schedule"]`.
        l0_lambda: `lambda` of the expected-L0 penalty; the penalty is divided by the number
            of training examples (Louizos' convention). Defaults to `DEFAULTS["l0_lambda"]`.
        drop_rate_init: initial gate drop rate of hidden layers. Defaults to `0.5`.
        first_layer_drop_rate: initial drop rate of the input-feature gates. Defaults to the
            hidden layers' one.
        weight_by_fan_out: `True` weights each gate's L0 penalty by the weights it switches
            off (its layer's output units, Louizos' expected L0 of the weights); `False`
            counts gates (units), so every unit costs the same. Defaults to
            `DEFAULTS["weight_by_fan_out"]`.
        threshold: minimum gate activation rate to keep a unit. Defaults to `0.5`.
        budget: DynHP memory budget (bytes or a string such as `"1.2MB"`), ignored in other
            modes. Defaults to `DEFAULTS["budget"]` in DynHP mode.
        alpha_bs: `alpha_bs` of the batch-size rule. Defaults to `0.98`.
        accounting: `"paper"` or `"full"`: the accounting the budget applies to (both are
            always reported). Defaults to `"paper"`.
        seed: seed of the initialisation, gates, data order and subset. Defaults to `0`.
        limit_train: train on a seeded subset of this many examples. Defaults to all.
        data: `((x_train, y_train), (x_test, y_test))` to use instead of loading `dataset`.
        out_dir: folder for `model.keras`, `model_stripped.keras`, `history.csv`,
            `summary.json`, plots and `export/<target>/`; `None` writes nothing.
        exports: targets among `"pi"`, `"android"`, `"mcu"` (needs `out_dir`). Defaults to
            none.
        verbose: 1 prints DynHP's one line per epoch. Defaults to `1`.
        keras_verbose: Keras' `fit` verbosity. Defaults to `verbose`.
        labels: class names for the exports. Defaults to Fashion-MNIST's names for that data
            set, else `class_0, ...`.

    Returns:
        A `TrainResult`.

    Raises:
        ValueError: for an unknown mode, data set or export target, exports without
            `out_dir`, or a budget too small for the starting model.
    """
    mode = _check_mode(mode)
    exports = check_exports(exports)
    if exports and out_dir is None:
        raise ValueError("Exports need an output folder: pass `out_dir`.")
    is_dynhp = mode == "dynhp"
    epochs = DEFAULTS["epochs"] if epochs is None else int(epochs)
    if batch_size is None:
        batch_size = DEFAULTS["batch_size"] if is_dynhp else FIXED_BATCH_DEFAULT
    lr = DEFAULTS["lr"] if lr is None else float(lr)
    lr_schedule = DEFAULTS["lr_schedule"] if lr_schedule is None else lr_schedule
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"Unknown lr_schedule {lr_schedule!r}. Expected one of {list(LR_SCHEDULES)}."
        )
    l0_lambda = DEFAULTS["l0_lambda"] if l0_lambda is None else float(l0_lambda)
    drop_rate_init = DEFAULTS["drop_rate_init"] if drop_rate_init is None else drop_rate_init
    threshold = DEFAULTS["threshold"] if threshold is None else float(threshold)
    if weight_by_fan_out is None:
        weight_by_fan_out = DEFAULTS["weight_by_fan_out"]
    alpha_bs = DEFAULTS["alpha_bs"] if alpha_bs is None else float(alpha_bs)
    accounting = memory.check_accounting(accounting or DEFAULTS["accounting"])
    if is_dynhp:
        budget = DEFAULTS["budget"] if budget is None else budget
        budget_bytes = budget_lib.parse_budget(budget)
    else:
        budget_bytes = None
    keras_verbose = verbose if keras_verbose is None else keras_verbose

    if data is None:
        data = load_data(dataset, limit_train=limit_train, seed=seed)
    elif limit_train is not None:
        (x, y), test = data
        keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:limit_train])
        data = (x[keep], y[keep]), test
    (x_train, y_train), (x_test, y_test) = data
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if labels is None and _is_fashion_mnist(dataset) and num_classes == 10:
        labels = list(FASHION_MNIST_LABELS)

    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)

    keras.utils.set_random_seed(seed)
    base = build_mlp(x_train.shape[1], arch, num_classes, seed=seed)
    import tfdynhp  # the package's public API (lazy attributes need the package itself)
    from tfdynhp.callbacks import DynHPCallback

    callbacks = []
    if mode == "dense":
        model = base
        recorder = _EpochRecorder(static_record=_dense_record(model, batch_size))
    else:
        model = tfdynhp.gate(
            base,
            seed=seed,
            l0_lambda=l0_lambda,
            dataset_size=len(x_train),
            drop_rate_init=drop_rate_init,
            first_layer_drop_rate=first_layer_drop_rate,
            weight_by_fan_out=bool(weight_by_fan_out),
        )
        callbacks.append(
            DynHPCallback(
                threshold=threshold,
                prune=mode != "sp",
                budget=budget_bytes,
                alpha_bs=alpha_bs,
                accounting=accounting,
                verbose=verbose,
            )
        )
        recorder = _EpochRecorder()
    callbacks.append(recorder)
    if lr_schedule == "cosine":
        callbacks.append(keras.callbacks.LearningRateScheduler(cosine_epoch_schedule(lr, epochs)))
    if out_dir is not None:
        callbacks.append(keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv")))
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    if is_dynhp:
        fit_x = tfdynhp.DynamicBatches(x_train, y_train, batch_size=batch_size, seed=seed)
        fit_kwargs = {}
    else:
        fit_x = x_train
        fit_kwargs = {"y": y_train, "batch_size": batch_size, "shuffle": True}
    start = time.perf_counter()
    model.fit(
        fit_x,
        epochs=epochs,
        validation_data=(x_test, y_test),
        callbacks=callbacks,
        verbose=keras_verbose,
        **fit_kwargs,
    )
    wall_time = time.perf_counter() - start
    stripped = model if mode == "dense" else tfdynhp.strip(model)

    config = {
        "dataset": str(dataset),
        "arch": list(parse_arch(arch)),
        "mode": mode,
        "epochs": epochs,
        "batch_size": int(batch_size),
        "lr": lr,
        "lr_schedule": lr_schedule,
        "l0_lambda": None if mode == "dense" else l0_lambda,
        "drop_rate_init": None if mode == "dense" else drop_rate_init,
        "first_layer_drop_rate": None if mode == "dense" else first_layer_drop_rate,
        "weight_by_fan_out": None if mode == "dense" else bool(weight_by_fan_out),
        "threshold": None if mode in ("dense", "sp") else threshold,
        "alpha_bs": alpha_bs if is_dynhp else None,
        "accounting": accounting,
        "budget_bytes": budget_bytes,
        "seed": seed,
        "n_train": len(x_train),
        "n_test": len(x_test),
    }
    summary = summarize(
        config,
        recorder.history,
        test_accuracy=_evaluate_accuracy(stripped, x_test, y_test),
        params=memory.dense_weight_count(stripped),
        wall_time_s=wall_time,
    )
    if mode != "dense":
        summary["gated_test_accuracy"] = _evaluate_accuracy(model, x_test, y_test)

    tflite = None
    if out_dir is not None:
        model.save(os.path.join(out_dir, "model.keras"))
        stripped.save(os.path.join(out_dir, "model_stripped.keras"))
    if exports:
        tflite, summary["exports"] = export_all(
            stripped, exports, out_dir, x_train, x_test, y_test, labels=labels, seed=seed
        )
        summary["tflite_bytes"] = len(tflite)
        summary["int8_test_accuracy"] = summary["exports"]["litert"]["accuracy"]
        summary["int8_test_error"] = 1.0 - summary["int8_test_accuracy"]
    if out_dir is not None:
        write_summary(summary, out_dir)
        from tfdynhp import reports

        reports.plot_history(recorder.history, out_dir, budget_bytes=budget_bytes)
        reports.write_summary_markdown(summary, out_dir)
    return TrainResult(model, stripped, recorder.history, summary, tflite)


def _is_fashion_mnist(dataset):
    return isinstance(dataset, str) and dataset.strip().lower().replace("_", "-") == (
        "fashion-mnist"
    )


def representative_subset(x_train, n=500, seed=0):
    """A seeded random subset of the training inputs for int8 calibration."""
    n = min(n, len(x_train))
    return x_train[np.sort(np.random.default_rng(seed).permutation(len(x_train))[:n])]


def export_all(model, targets, out_dir, x_train, x_test, y_test, labels=None, seed=0,
               tflm_samples=500):
    """Converts `model` to int8 once, writes one bundle per target under
    `out_dir/export/<target>/`, and measures the int8 model in LiteRT (whole test set) and,
    when `"mcu"` is a target, in TFLite Micro (first `tflm_samples` test examples).

    Returns:
        `(tflite_bytes, results)`: `results` maps each target to its written files, plus
        `"litert"` (and `"tflm"`) to `{accuracy, latency_batch1_ms, batched_ms_per_example,
        ...}` (`converters.evaluate`).
    """
    from tfdynhp import converters

    representative = representative_subset(x_train, seed=seed)
    tflite = converters.to_int8_tflite(model, representative)
    results = {}
    for target in targets:
        files = converters.export(
            tflite, target, os.path.join(out_dir, "export", target), representative,
            labels=labels,
        )
        results[target] = {role: os.fspath(path) for role, path in files.items()}
    results["litert"] = _runtime_result(converters.evaluate(tflite, x_test, y_test, "litert"))
    if "mcu" in targets:
        n = min(tflm_samples, len(x_test))
        results["tflm"] = _runtime_result(
            converters.evaluate(tflite, x_test[:n], y_test[:n], "tflm")
        )
    return tflite, results


def _runtime_result(result):
    return {k: v for k, v in result.items() if k != "predictions"}


def _mean(history, key):
    values = [r[key] for r in history if isinstance(r.get(key), (int, float))]
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else None


def summarize(config, history, test_accuracy, params, wall_time_s):
    """The summary of a run: its configuration plus the paper's measures.

    Sizes are given in bytes and in MiB and in the paper's "MBytes" (bytes / 1024 / 1000,
    METHOD.md section 4), always with the unit in the key.
    """
    model_bytes = int(params) * 4
    paper_memory = _mean(history, PAPER_MEMORY_KEY)
    full_memory = _mean(history, FULL_MEMORY_KEY)
    last = history[-1] if history else {}
    summary = {
        **config,
        "epochs_run": len(history),
        "test_accuracy": float(test_accuracy),
        "test_error": 1.0 - float(test_accuracy),
        "test_error_pct": 100.0 * (1.0 - float(test_accuracy)),
        "params": int(params),
        "units": {
            k[len(UNITS_PREFIX):]: int(v) for k, v in last.items() if k.startswith(UNITS_PREFIX)
        },
        "model_size_bytes": model_bytes,
        "model_size_mib": model_bytes / 2**20,
        "model_size_paper_mbytes": budget_lib.paper_mbytes(model_bytes),
        "mean_training_memory_paper_bytes": paper_memory,
        "mean_training_memory_paper_mbytes": (
            None if paper_memory is None else budget_lib.paper_mbytes(round(paper_memory))
        ),
        "mean_training_memory_full_bytes": full_memory,
        "mean_training_memory_full_mib": None if full_memory is None else full_memory / 2**20,
        "final_batch_size": int(last[BATCH_KEY]) if BATCH_KEY in last else None,
        "wall_time_s": float(wall_time_s),
    }
    return summary


def write_summary(summary, out_dir):
    """Writes `summary.json` into `out_dir` and returns its path."""
    path = os.path.join(out_dir, "summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")
    return path


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")
