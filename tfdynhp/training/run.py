"""`train()`: one reusable training run (dense, SP, HP or DynHP) of a model on a data set.

The command line (`tfdynhp train`) and the benchmarks call it, so a table row and a CLI run
with the same options are the same experiment. A run is a composition of small steps:

1. `RunConfig`: the options, with the main job's defaults, checked once;
2. `prepare_data`: the data set in its natural shape, a validation split taken from the
   training set (the test set is only used for the final numbers);
3. `build_model`: a reference architecture (`tfdynhp.architectures`), an MLP of given widths,
   or the user's own `.keras` model;
4. `method_callbacks`: `DynHPCallback` in the mode's configuration (SP, HP, DynHP; a target),
   the learning-rate schedule, the CSV log;
5. `summarize`, `export_all`, and the plots of `tfdynhp.training.reports`.

Methods (`method`): `"dynhp"` (the default, in one of the modes below), or one of the other
pruning methods on the same engine (`tfdynhp.methods`, `tfdynhp.callbacks`), each with the same
outputs (history, summary, plots, exports):

- `"activation-density"`: a plain model resized to its activation densities during the `fit`
  (`ActivationDensityCallback`, Foldy-Porto et al.);
- `"pa"`, `"fa"`, `"ma"`: a plain model narrowed at initialization by complexity-driven
  pruning (`complexity_prune`, Zawish et al.: parameter-, FLOPs- or memory-aware, `amount`),
  then trained.

Modes of method `"dynhp"` (METHOD.md sections 2-3):

- `"dense"`: the plain model, no gates (the unpruned reference).
- `"sp"`: soft pruning, Louizos' L0 gates trained without removing anything (the paper's SP).
- `"hp"`: hard pruning at every epoch end with a fixed batch size (the paper's HP).
- `"dynhp"`: hard pruning plus the batch grown by the gradient-variance rule under a memory
  budget, fed by `tfdynhp.DynamicBatches` (the paper's DynHP).
"""

import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
import warnings

import keras
import numpy as np

from tfdynhp import architectures
from tfdynhp import distribute as distribute_lib
from tfdynhp.costs import memory
from tfdynhp.costs import units as resources
from tfdynhp.datasets import shaping as inputs
from tfdynhp.datasets.shaping import FASHION_MNIST_LABELS, load_data, representative_subset
from tfdynhp.math import budget as budget_lib
from tfdynhp.validation import ConfigurationError, check_integer

MODES = ("dense", "sp", "hp", "dynhp")
METHODS = ("dynhp", "activation-density", "pa", "fa", "ma")
COMPLEXITY_METHODS = ("pa", "fa", "ma")
# Options of DynHP's gates, callback and batch rule: refused with the other methods.
DYNHP_OPTIONS = ("mode", "l0_lambda", "drop_rate_init", "first_layer_drop_rate", "penalty",
                 "threshold", "budget", "alpha_bs", "target", "target_epoch", "variance_every")
AMOUNT_DEFAULT = 0.5
ACTIVATION_DENSITY_SAMPLES = 512
EXPORT_TARGETS = ("pi", "android", "mcu")
LENET_300_100 = (300, 100)
LR_SCHEDULES = ("constant", "cosine", "cosine-restart")

# Defaults of `tfdynhp train` (DynHP on Fashion-MNIST with LeNet-300-100); see bench/README.md
# for how they were chosen (on a validation split). 50 epochs is the paper bar's limit; the
# per-epoch cosine learning rate lets the last epochs fine-tune the pruned network. No target
# by default: the main job (`make train`) asks for the paper's 0.124 MBytes, `--target
# "31744 params"`.
DEFAULTS = {
    "arch": "mlp",
    "hidden": LENET_300_100,
    "epochs": 50,
    "batch_size": 16,
    "lr": 1e-3,
    "lr_schedule": "cosine",
    "l0_lambda": 1.0,
    "drop_rate_init": 0.05,
    "penalty": None,  # "units", or a target's own resource
    "threshold": 0.5,
    "alpha_bs": 0.98,
    "accounting": "paper",
    "budget": "1.2MB",
    "target": None,
    "target_epoch": None,
    "validation_split": 0.1,
}
# HP and SP use the paper's fixed batch of 128.
FIXED_BATCH_DEFAULT = 128

PARAM_KEY = "dynhp/params"
PAPER_MEMORY_KEY = "dynhp/paper_memory_bytes"
FULL_MEMORY_KEY = "dynhp/full_memory_bytes"
BATCH_KEY = "dynhp/batch_size"
BUDGET_KEY = "dynhp/budget_bytes"
UNITS_PREFIX = "dynhp/units/"


def parse_widths(spec):
    """Parses hidden-layer widths: `"300,100"`, `(300, 100)` or `""` (no hidden layer).

    Raises:
        ValueError: if a width is not a positive integer.
    """
    parts = [p.strip() for p in spec.split(",") if p.strip()] if isinstance(spec, str) else (
        list(spec)
    )
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


parse_arch = parse_widths  # the widths of `--arch 300,100` (an MLP), as before


def resolve_arch(arch, hidden=None):
    """`(name, hidden widths)` from an architecture name or MLP widths (`"300,100"`)."""
    if isinstance(arch, str) and arch and not arch.replace(",", "").replace(" ", "").isdigit():
        name = architectures.canonical_name(arch)
        if name == "fc-autoencoder":
            raise ValueError("'fc-autoencoder' reconstructs its input; `train` trains "
                             "classifiers. Use tfdynhp.architectures.fc_autoencoder directly.")
        return name, parse_widths(DEFAULTS["hidden"] if hidden is None else hidden)
    return "mlp", parse_widths(arch)


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


@dataclasses.dataclass
class RunConfig:
    """The options of one run; `None` takes the method's and mode's default (see `DEFAULTS`).

    `method` is `"dynhp"` (then `mode` defaults to `"dynhp"`) or another pruning method of
    `METHODS` (then the DynHP options, `DYNHP_OPTIONS`, must stay `None`; `amount` is the
    fraction the most complex group loses with `"pa"`, `"fa"`, `"ma"`, default 0.5).
    """

    dataset: str = "fashion-mnist"
    arch: object = "mlp"
    hidden: object = None
    model_path: str = None
    mode: str = None
    method: str = "dynhp"
    amount: float = None
    epochs: int = None
    batch_size: int = None
    lr: float = None
    lr_schedule: str = None
    l0_lambda: float = None
    drop_rate_init: float = None
    first_layer_drop_rate: float = None
    penalty: str = None
    threshold: float = None
    budget: object = None
    alpha_bs: float = None
    accounting: str = None
    target: object = None
    target_epoch: int = None
    final_phase: str = "freeze"
    validation_split: float = None
    seed: int = 0
    limit_train: int = None
    bn_momentum: float = None
    variance_every: int = None
    distribute: str = None
    teacher: object = None
    distill_temperature: float = 4.0
    distill_alpha: float = 0.5

    def resolve(self):
        """Fills in the defaults and checks the options; returns `self`."""
        self._resolve_method()
        dynhp = self.mode == "dynhp"
        defaults = dict(DEFAULTS)
        if not dynhp:
            defaults.update(batch_size=FIXED_BATCH_DEFAULT, budget=None)
        if not self.gated:
            defaults = {k: v for k, v in defaults.items() if k not in DYNHP_OPTIONS}
        for field, value in defaults.items():
            if hasattr(self, field) and getattr(self, field) is None and field != "hidden":
                setattr(self, field, value)
        if self.model_path is None:
            self.arch, self.hidden = resolve_arch(self.arch, self.hidden)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"Unknown lr_schedule {self.lr_schedule!r}. Expected one of "
                             f"{list(LR_SCHEDULES)}.")
        memory.check_accounting(self.accounting)
        if self.distribute not in (None, *distribute_lib.STRATEGIES):
            raise ValueError(f"`distribute` must be one of {distribute_lib.STRATEGIES} or None. "
                             f"Received: distribute={self.distribute!r}")
        if self.penalty is not None:
            resources.check_resource(self.penalty)
        if self.budget is not None and not dynhp:
            raise ValueError(f"A budget applies to mode 'dynhp' only (mode {self.mode!r}).")
        self.budget = None if self.budget is None else budget_lib.parse_budget(self.budget)
        if self.target is not None and self.mode in ("dense", "sp"):
            raise ValueError(f"A target needs hard pruning (mode 'hp' or 'dynhp'); mode "
                             f"{self.mode!r} removes nothing.")
        if self.lr_schedule == "cosine-restart" and self.target is None:
            raise ValueError("lr_schedule='cosine-restart' restarts the cosine when the target "
                             "is met; it needs a `target` (mode 'hp' or 'dynhp').")
        if self.teacher is not None and not self.gated:
            raise ValueError("A teacher distils into a gated model (mode 'sp', 'hp' or "
                             "'dynhp' of method 'dynhp'); this run trains a plain Keras model.")
        if self.teacher is not None:
            from tfdynhp.validation import check_real

            check_real("distill_alpha", self.distill_alpha, 0.0, 1.0)
            if not check_real("distill_temperature", self.distill_temperature) > 0:
                raise ValueError("Expected `distill_temperature` > 0. Received: "
                                 f"distill_temperature={self.distill_temperature!r}")
        if self.variance_every is not None:
            self.variance_every = check_integer("variance_every", self.variance_every, 1)
        if self.bn_momentum is not None:
            from tfdynhp.validation import check_real

            self.bn_momentum = check_real("bn_momentum", self.bn_momentum, 0.0, 0.999999)
        self.epochs, self.batch_size = int(self.epochs), int(self.batch_size)
        return self

    def _resolve_method(self):
        if self.method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}. Received: "
                             f"method={self.method!r}")
        if self.method == "dynhp":
            self.mode = "dynhp" if self.mode is None else self.mode
            if self.mode not in MODES:
                raise ValueError(f"`mode` must be one of {MODES}. Received: mode={self.mode!r}")
        else:
            given = [name for name in DYNHP_OPTIONS if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(f'`{name}`' for name in given)} of DynHP do not apply to "
                    f"{self.method!r}, a method that prunes by its own rule: leave them out, "
                    "or use method 'dynhp'."
                )
        if self.method in COMPLEXITY_METHODS:
            amount = AMOUNT_DEFAULT if self.amount is None else self.amount
            from tfdynhp.validation import check_real

            self.amount = float(check_real("amount", amount, 0.0, 0.999))
        elif self.amount is not None:
            raise ValueError(f"`amount` applies to methods {COMPLEXITY_METHODS} only (method "
                             f"{self.method!r}). Received: amount={self.amount!r}")

    @property
    def gated(self):
        """Whether the run trains a gated model (method "dynhp" in a mode other than dense)."""
        return self.method == "dynhp" and self.mode != "dense"

    def as_dict(self):
        record = dataclasses.asdict(self)
        record["hidden"] = list(self.hidden) if self.hidden is not None else None
        record["budget_bytes"] = record.pop("budget")
        record["target"] = None if self.target is None else str(self.target)
        if isinstance(self.teacher, keras.Model):
            record["teacher"] = f"<model {self.teacher.name}>"
        if self.teacher is None:
            record["distill_temperature"] = record["distill_alpha"] = None
        if not self.gated:
            for key in ("l0_lambda", "drop_rate_init", "first_layer_drop_rate", "penalty",
                        "threshold"):
                record[key] = None
        if self.method != "dynhp":
            record["final_phase"] = None
        return record


@dataclasses.dataclass
class TrainResult:
    """What `train()` returns.

    Attributes:
        model: the trained model (a `tfdynhp.GatedModel`, or the plain model in mode
            `"dense"` and with the other methods).
        stripped: the deployable plain Keras model (`tfdynhp.strip(model)`).
        history: one dict per epoch: Keras' logs (loss, accuracy, val_accuracy, ...), the
            `dynhp/...` keys of `DynHPCallback`, `val_error` and `epoch_seconds`.
        summary: the run's JSON-serialisable summary (see `summarize`).
        tflite: the int8 `.tflite` bytes, or `None` when nothing was exported.
    """

    model: keras.Model
    stripped: keras.Model
    history: list
    summary: dict
    tflite: bytes = None


LAMBDA_FILE_FIX = (
    "The file holds a Lambda layer, whose Python function Keras does not load from a file "
    "in its safe mode. Fix: write the function as keras.ops calls (tfdynhp prunes through "
    "them) or as a custom layer registered with keras.saving.register_keras_serializable "
    "and save the model again; or, from Python, load it yourself with "
    "keras.saving.load_model(path, safe_mode=False) if you trust the file, and call "
    "tfdynhp.gate(model), which takes Lambda layers."
)


def load_model_file(path, compile=False):
    """The Keras model saved at `path` (tfdynhp's layers registered).

    Raises:
        ConfigurationError: the file cannot be loaded: Keras' reason, and for a `Lambda`
            layer (refused in Keras' safe mode) how to save the model so that it loads.
    """
    import tfdynhp.model  # noqa: F401  (registers GatedModel and tfdynhp's layers)

    try:
        return keras.saving.load_model(path, compile=compile)
    except (ValueError, OSError, TypeError) as e:
        fix = f" {LAMBDA_FILE_FIX}" if "`Lambda` layer" in str(e) else ""
        raise ConfigurationError(f"Cannot load the model file {path!r}: {e}{fix}") from e


def build_model(config, input_shape, num_classes):
    """The untrained (or the user's) model of a run."""
    if config.model_path is not None:
        return load_model_file(config.model_path)
    input_shape = tuple(int(d) for d in input_shape)
    try:
        if config.arch == "mlp":
            model = architectures.mlp(math.prod(input_shape), config.hidden, num_classes,
                                      seed=config.seed)
        else:
            if len(input_shape) == 2:  # (height, width) maps, e.g. a .npz of grey images
                input_shape = (*input_shape, 1)
            model = architectures.build(config.arch, input_shape, num_classes,
                                        seed=config.seed)
    except ValueError as e:
        # The data set's examples do not fit the architecture (e.g. LeNet-5 on digits' 64
        # features): the user's choice of data and model, refused before training.
        raise ConfigurationError(
            f"Architecture {config.arch!r} cannot take the examples of {config.dataset}, of "
            f"shape {input_shape}: {e} Choose an architecture for this data (an MLP: 'mlp' "
            "or widths such as '300,100') or data of the architecture's input."
        ) from e
    if config.bn_momentum is not None:  # e.g. 0.9 for small data sets (few steps per epoch)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(config.bn_momentum)
    return model


def prepare_data(config, data=None):
    """`(train, validation or None, test)` for the run, shaped later for the model.

    `data` may be `(train, test)` (the validation split is then drawn from train) or
    `(train, validation, test)`, the data set's own validation split (e.g. by speaker).
    """
    if data is None:
        data = load_data(config.dataset, limit_train=config.limit_train, seed=config.seed)
    elif len(data) == 3:
        (x, y), validation, test = data
        return (inputs.subset(np.asarray(x), np.asarray(y), config.limit_train, config.seed),
                validation, test)
    else:
        (x, y), test = data
        data = (inputs.subset(np.asarray(x), np.asarray(y), config.limit_train, config.seed),
                test)
    (x_train, y_train), test = data
    train, validation = inputs.split_validation(x_train, y_train, config.validation_split,
                                                config.seed)
    return train, validation, test


def cosine_epoch_schedule(lr, epochs):
    """`schedule(epoch, current) -> rate`: cosine decay from `lr` at epoch 0 towards 0."""

    def schedule(epoch, current_lr=None):
        return float(0.5 * lr * (1.0 + math.cos(math.pi * epoch / max(epochs, 1))))

    return schedule


class _EpochRecorder(keras.callbacks.Callback):
    """Adds `val_error`, `epoch_seconds` and, for models DynHP does not watch (a dense run, or
    another pruning method), the same `dynhp/...` keys measured on the live model at the
    epoch's end (after any resizing), so every run writes the same columns."""

    def __init__(self, batch_size=None):
        super().__init__()
        self.batch_size = batch_size  # set: record the model's own `dynhp/...` keys
        self.history = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.batch_size is not None:
            logs.update(_plain_record(self.model, self.batch_size))
        if "val_accuracy" in logs:
            logs["val_error"] = 1.0 - float(logs["val_accuracy"])
        logs["epoch_seconds"] = time.perf_counter() - self._start
        self.history.append({"epoch": epoch, **{k: _to_float(v) for k, v in logs.items()}})


def _to_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _plain_record(model, batch_size):
    """The `dynhp/...` keys of a compiled plain model (its optimizer slots included): size,
    MACs, batch, training memory in both accountings, and the units of each prunable group."""
    from tfdynhp.graph import analyze

    cost = resources.model_cost(model)
    record = {
        PARAM_KEY: memory.parameter_count(model),
        "dynhp/macs": cost.macs,
        BATCH_KEY: batch_size,
        PAPER_MEMORY_KEY: memory.training_memory(model, batch_size, "paper")[0],
        FULL_MEMORY_KEY: memory.training_memory(model, batch_size, "full")[0],
    }
    with warnings.catch_warnings():  # what cannot be pruned was said when it mattered
        warnings.simplefilter("ignore")
        groups = analyze(model).groups
    for group in groups:
        if group.prunable:
            record[f"{UNITS_PREFIX}{group.name}"] = group.units
    return record


def method_callbacks(config, verbose=0, sample=None):
    """The callbacks of the run's method and mode: `(callbacks, recorder)`.

    Args:
        config: the resolved `RunConfig`.
        verbose: the pruning callbacks' verbosity.
        sample: training inputs the activation densities are measured on (method
            `"activation-density"`).
    """
    from tfdynhp.callbacks import ActivationDensityCallback, DynHPCallback

    callbacks = []
    if config.gated:
        callbacks.append(DynHPCallback(
            threshold=config.threshold,
            prune=config.mode != "sp",
            budget=config.budget,
            alpha_bs=config.alpha_bs,
            accounting=config.accounting,
            target=config.target,
            target_epoch=config.target_epoch,
            penalty=config.penalty,
            final_phase=config.final_phase,
            **({} if config.variance_every is None else {"variance_every": config.variance_every}),
            verbose=verbose,
        ))
    elif config.method == "activation-density":
        if sample is None:
            raise ValueError("Method 'activation-density' needs `sample`: training inputs to "
                             "measure activation densities on.")
        callbacks.append(ActivationDensityCallback(sample, verbose=verbose))
    # After the pruning callbacks: it records the widths they leave.
    recorder = _EpochRecorder(None if config.gated else config.batch_size)
    callbacks.append(recorder)
    if config.lr_schedule == "cosine":
        callbacks.append(keras.callbacks.LearningRateScheduler(
            cosine_epoch_schedule(config.lr, config.epochs)))
    elif config.lr_schedule == "cosine-restart":
        restart = config.target_epoch or max(1, round(2 * config.epochs / 3))
        callbacks.append(keras.callbacks.LearningRateScheduler(
            restart_cosine_schedule(config.lr, config.epochs, restart)))
    return callbacks, recorder


def restart_cosine_schedule(lr, epochs, restart):
    """`schedule(epoch, current) -> rate`: cosine decay from `lr` over the epochs before
    `restart` (the target epoch), then again from `lr` over the remaining ones (learning-rate
    rewinding for the fine-tune of the pruned model; Renda et al., 2020)."""
    first, second = cosine_epoch_schedule(lr, restart), cosine_epoch_schedule(lr, epochs - restart)

    def schedule(epoch, current_lr=None):
        return first(epoch) if epoch < restart else second(epoch - restart)

    return schedule


def _distillation(config):
    """The run's `Distillation` (its teacher: a Keras model or a `.keras` path)."""
    from tfdynhp.model.distillation import Distillation

    teacher = config.teacher
    if not isinstance(teacher, keras.Model):
        teacher = keras.saving.load_model(os.fspath(teacher), compile=False)
    return Distillation(teacher, config.distill_temperature, config.distill_alpha)


def fit_verbosity(verbose=1, stream=None):
    """Keras' `fit` verbosity for progress output on `stream` (default `sys.stdout`): `0` when
    `verbose` is 0; the progress bar (`1`) on a terminal; one line per epoch (`2`) otherwise.

    Keras redraws its bar on any stream (it treats every POSIX process as a terminal), so a
    run whose output goes to a file or a pipe (`make train > log`) would write megabytes of
    redraws.
    """
    if not verbose:
        return 0
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return 1 if isatty is not None and isatty() else 2
    except ValueError:  # a closed stream
        return 2


def _evaluate_accuracy(model, x, y):
    probs = model.predict(x, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == y))


def _seeded(seed):
    """Seeds Keras, TensorFlow, NumPy and Python for the run, and returns the NumPy and Python
    global generator states so the caller can put them back (TensorFlow's global seed stays
    set)."""
    states = (random.getstate(), np.random.get_state())
    keras.utils.set_random_seed(seed)
    return states


def train(data=None, out_dir=None, exports=(), verbose=1, keras_verbose=None, labels=None,
          train_renderings=None, **options):
    """Trains a model with one pruning method (DynHP in one mode by default) and measures it
    like the paper's Table 3.

    Args:
        data: `((x_train, y_train), (x_test, y_test))` to use instead of loading
            `options["dataset"]`, or `(train, validation, test)` with the data set's own
            validation split (then `validation_split` is not used).
        out_dir: folder for `model.keras`, `model_stripped.keras`, `history.csv`,
            `summary.json`, plots and `export/<target>/`; `None` writes nothing.
        exports: targets among `"pi"`, `"android"`, `"mcu"` (needs `out_dir`).
        verbose: 1 prints DynHP's one line per epoch. Defaults to `1`.
        keras_verbose: Keras' `fit` verbosity. Defaults to `fit_verbosity(verbose)`: the
            progress bar on a terminal, one line per epoch when the output is a file or pipe.
        labels: class names for the exports. Defaults to Fashion-MNIST's names for that data
            set, else `class_0, ...`.
        train_renderings: other renderings of `x_train` (same examples, same order, e.g.
            `tfdynhp.datasets.kws.load_training_renderings`): epoch `e` trains on rendering
            `e % (1 + len(train_renderings))`, `x_train` being rendering 0. Needs `data` with
            its own validation split and no `limit_train`. Defaults to `None`.
        **options: the fields of `RunConfig`: `dataset`, `arch` (a name of
            `tfdynhp.architectures` or MLP widths such as `"300,100"`), `hidden`,
            `model_path` (a user's `.keras` model), `method` (`METHODS`), `amount` (methods
            "pa", "fa", "ma"), `mode`, `epochs`, `batch_size`, `lr`,
            `lr_schedule`, `l0_lambda`, `drop_rate_init`, `first_layer_drop_rate`,
            `penalty`, `threshold`, `budget`, `alpha_bs`, `accounting`, `target`,
            `target_epoch`, `final_phase`, `validation_split`, `seed`, `limit_train`,
            `bn_momentum` (set on every BatchNormalization layer of a built architecture),
            `variance_every` (the gradient variance on one step in k; `DynHPCallback`'s
            default when None), `teacher` (a Keras model or `.keras` path distilled into the
            gated model, `tfdynhp.model.distillation`), `distill_temperature` (4.0),
            `distill_alpha` (0.5). `lr_schedule` is `"constant"`, `"cosine"` (over all
            epochs) or `"cosine-restart"` (cosine to the target epoch, then again from `lr`
            for the fine-tune).

    Returns:
        A `TrainResult`.

    Raises:
        ValueError: for an unknown mode, data set, architecture or export target, exports
            without `out_dir`, data that does not fit the model, or a budget / target the
            starting model cannot meet (all before training).

    The run seeds Keras and TensorFlow's global generators with `seed`; NumPy's and Python's
    global states are restored afterwards.
    """
    config = RunConfig(**options).resolve()
    exports = check_exports(exports)
    if exports and out_dir is None:
        raise ValueError("Exports need an output folder: pass `out_dir`.")
    # First, before TensorFlow runs anything (multi-worker needs it).
    strategy = distribute_lib.strategy_for(config.distribute)
    rank = distribute_lib.worker_rank(strategy)
    if rank and out_dir is not None:
        # Only the chief writes the run's files; the other workers write their own folder.
        out_dir, exports = os.path.join(os.fspath(out_dir), "workers", str(rank)), ()
    keras_verbose = fit_verbosity(verbose) if keras_verbose is None else keras_verbose
    (x_train, y_train), validation, (x_test, y_test) = prepare_data(config, data)
    renderings = [x_train]
    if train_renderings:
        if data is None or len(data) != 3 or config.limit_train is not None:
            raise ValueError("`train_renderings` needs `data=(train, validation, test)` (the "
                             "data set's own validation split) and no `limit_train`: the "
                             "renderings must hold the same training examples.")
        renderings += [np.asarray(x) for x in train_renderings]
        if any(x.shape != x_train.shape for x in renderings):
            raise ValueError("Every array of `train_renderings` must have the shape of x_train "
                             f"{x_train.shape}. Received: {[x.shape for x in renderings[1:]]}")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if labels is None and inputs.is_fashion_mnist(config.dataset) and num_classes == 10:
        labels = list(FASHION_MNIST_LABELS)
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)

    states = _seeded(config.seed)
    try:
        return _train(config, renderings, y_train, validation, x_test, y_test, num_classes,
                      out_dir, exports, verbose, keras_verbose, labels, strategy)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])


def _train(config, renderings, y_train, validation, x_test, y_test, num_classes, out_dir,
           exports, verbose, keras_verbose, labels, strategy=None):
    from tfdynhp.model import DynamicBatches, gate, is_gated_model, strip
    from tfdynhp.model.rotating_batches import RotatingBatches
    from tfdynhp.quantization import quantized_forward

    x_train = renderings[0]
    # Under a strategy, the model, its gates and optimizer are created in its scope (Keras
    # then trains with it); surgery rebuilds them in the same scope.
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        base = build_model(config, x_train.shape[1:], num_classes)
        shape = base.inputs[0].shape[1:]
        renderings = [inputs.shape_for(x, shape, "the training data") for x in renderings]
        x_train = renderings[0]
        x_test = inputs.shape_for(x_test, shape, "the test data")
        if validation is not None:
            validation = (inputs.shape_for(validation[0], shape, "the validation data"),
                          validation[1])
        plan = None
        if config.method in COMPLEXITY_METHODS:
            from tfdynhp.methods.complexity_pruning import complexity_prune

            plan, _ = complexity_prune(base, config.method, config.amount)
        if not config.gated:
            model = strip(base) if is_gated_model(base) else base
        else:
            model = base if is_gated_model(base) else gate(
                base, seed=config.seed, l0_lambda=config.l0_lambda,
                drop_rate_init=config.drop_rate_init,
                first_layer_drop_rate=config.first_layer_drop_rate,
                penalty=config.penalty or "units",
            )
        sample = None
        if config.method == "activation-density":
            sample = representative_subset(x_train, ACTIVATION_DENSITY_SAMPLES, config.seed)
        callbacks, recorder = method_callbacks(config, verbose, sample=sample)
        if out_dir is not None:
            callbacks.append(keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv")))
        model.compile(optimizer=keras.optimizers.Adam(config.lr),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        if config.teacher is not None:
            model.distillation = _distillation(config)
    if len(renderings) > 1:
        fit_x, fit_kwargs = RotatingBatches(
            renderings, y_train, batch_size=config.batch_size, seed=config.seed), {}
    elif config.mode == "dynhp":
        fit_x, fit_kwargs = DynamicBatches(
            x_train, y_train, batch_size=config.batch_size, seed=config.seed), {}
    else:
        fit_x = x_train
        fit_kwargs = {"y": y_train, "batch_size": config.batch_size, "shuffle": True}
    start = time.perf_counter()
    model.fit(fit_x, epochs=config.epochs, validation_data=validation, callbacks=callbacks,
              verbose=keras_verbose, **fit_kwargs)
    wall_time = time.perf_counter() - start
    stripped = strip(model) if config.gated else model

    summary = summarize(
        config.as_dict() | {"n_train": len(x_train), "n_test": len(x_test),
                            "train_renderings": len(renderings),
                            "n_validation": 0 if validation is None else len(validation[0])},
        recorder.history,
        test_accuracy=_evaluate_accuracy(stripped, x_test, y_test),
        params=memory.parameter_count(stripped),
        wall_time_s=wall_time,
    )
    summary["macs"] = resources.model_cost(stripped).macs
    if config.gated:
        summary["gated_test_accuracy"] = _evaluate_accuracy(model, x_test, y_test)
    if plan is not None:
        summary["complexity_plan"] = plan
    tflite = None
    if out_dir is not None:
        model.save(os.path.join(out_dir, "model.keras"))
        stripped.save(os.path.join(out_dir, "model_stripped.keras"))
    if exports:
        # A run whose final phase was quantization-aware exports with its own ranges.
        qat = quantized_forward(model) is not None
        tflite, summary["exports"] = export_all(
            model if qat else stripped, exports, os.path.join(out_dir, "export"), x_train, x_test, y_test,
            labels=labels, seed=config.seed,
        )
        summary["tflite_bytes"] = len(tflite)
        summary["int8_test_accuracy"] = summary["exports"]["litert"]["accuracy"]
        summary["int8_test_error"] = 1.0 - summary["int8_test_accuracy"]
    if out_dir is not None:
        write_summary(summary, out_dir)
        from tfdynhp.training import reports

        reports.plot_history(recorder.history, out_dir, budget_bytes=config.budget,
                             accounting=config.accounting)
        reports.write_summary_markdown(summary, out_dir)
    return TrainResult(model, stripped, recorder.history, summary, tflite)


def export_all(model, targets, export_dir, x_train, x_test, y_test, labels=None, seed=0,
               tflm_samples=500):
    """Converts `model` to int8 once, writes one bundle per target under
    `export_dir/<target>/`, and measures the int8 model in LiteRT (whole test set) and,
    when `"mcu"` is a target, in TFLite Micro (first `tflm_samples` test examples; 0: not).

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
            tflite, target, os.path.join(export_dir, target), representative,
            labels=labels,
        )
        results[target] = {role: os.fspath(path) for role, path in files.items()}
    litert = converters.evaluate(tflite, x_test, y_test, "litert")
    results["litert"] = _runtime_result(litert)
    if "mcu" in targets and tflm_samples:
        n = min(tflm_samples, len(x_test))
        tflm = converters.evaluate(tflite, x_test[:n], y_test[:n], "tflm")
        # TFLite Micro runs a subset: compare it with LiteRT on the same examples, not with
        # LiteRT's accuracy on the whole test set (500 examples alone move that by ~2 points).
        same = litert["predictions"][:n]
        labels = np.asarray(y_test[:n])
        labels = labels.argmax(axis=-1) if labels.ndim > 1 else labels
        results["tflm"] = _runtime_result(tflm) | {
            "litert_accuracy_same_samples": float(np.mean(same == labels)),
            "litert_agreement": float(np.mean(same == tflm["predictions"])),
        }
    return tflite, results


def verify_exports(out_dir, targets, tflm_dir, cache_dir=None, kernels=None):
    """Builds, runs and checks the `mcu` bundle of `out_dir` for each firmware target.

    `kernels` (`"cmsis-nn"`, `"reference"`, `None`: the bundle's) applies to the Cortex-M
    targets; the host builds the reference kernels.

    Returns:
        `{target: converters.FirmwareResult}` (`converters.verify_mcu`).
    """
    from tfdynhp import converters

    bundle = os.path.join(out_dir, "export", "mcu")
    return {t: converters.verify_mcu(bundle, tflm_dir, t, cache_dir=cache_dir,
                                     kernels=None if t == "host" else kernels)
            for t in targets}


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
    return {
        **config,
        "epochs_run": len(history),
        "test_accuracy": float(test_accuracy),
        "test_error": 1.0 - float(test_accuracy),
        "test_error_pct": 100.0 * (1.0 - float(test_accuracy)),
        "final_val_error": last.get("val_error"),
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
