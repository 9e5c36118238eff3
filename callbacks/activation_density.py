"""`ActivationDensityCallback`: activation-density pruning during training (Foldy-Porto et al.,
"Activation Density driven Energy-Efficient Pruning in Training")."""

import inspect
import math

import keras
from keras.src.utils import io_utils

from tfdynhp.costs import units as resources
from tfdynhp.graph import analyze
from tfdynhp.math.selection import lowest_removed
from tfdynhp.model.gated_model import check_restoring_callbacks
from tfdynhp.policies.criteria import ActivationDensity
from tfdynhp.surgery import apply_keep_masks
from tfdynhp.validation import check_integer


def fit_callbacks(callback, depth=4):
    """The callbacks of the running `fit` that `callback` belongs to, or None when unknown.

    Keras gives a callback no handle on the others; the `keras.callbacks.CallbackList`
    calling its `on_train_begin` holds them, so this looks at the callers' frames (at most
    `depth`). A plain Keras model's `fit` runs no tfdynhp code before the callbacks start.
    """
    frame = inspect.currentframe()
    try:
        for _ in range(depth + 1):
            frame = frame.f_back
            if frame is None:
                return None
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.callbacks.CallbackList) and any(
                c is callback for c in owner.callbacks
            ):
                return list(owner.callbacks)
        return None
    finally:
        del frame


def next_width(density, units, min_units=1):
    """The layer's next width: `ceil(density * units)`, at least `min_units` (pure)."""
    return max(int(min_units), min(int(units), math.ceil(float(density) * int(units) - 1e-9)))


class ActivationDensityCallback(keras.callbacks.Callback):
    """Resizes every prunable layer to its activation density, periodically during one `fit`.

    The activation density of a layer is the fraction of its post-activation outputs that
    are non-zero (over examples, positions and units). At the end of every `frequency`-th
    epoch up to `until_epoch`, each prunable group of width `N` with density `D` keeps
    `ceil(D * N)` units: the units of lowest own density go (physically, with
    `tfdynhp.surgery.apply_keep_masks`; optimizer slots are sliced), and training continues
    on the narrower model. No pre-trained model is needed. Densities are measured on `data`
    (a sample of the training set) in inference mode at the epoch's end, not accumulated over
    the epoch's steps as in the paper.

    Per epoch it writes `ad/density/<group>` (before resizing), `ad/units/<group>` and
    `ad/params` (after) to `logs`; `history` keeps the same.

    Args:
        data: training inputs `x` (a few hundred examples) to measure densities on.
        frequency: resize every `frequency` epochs. Defaults to 1.
        until_epoch: last epoch (1-based) that resizes; later epochs train the final size.
            Defaults to two thirds of the fit's epochs (at least 1).
        min_units: units every group keeps. Defaults to 1.
        batch_size: examples per forward pass when measuring. Defaults to 256.
        optimizer_slots: "slice" or "reset". Defaults to "slice".
        verbose: 1 logs one line per resize. Defaults to 0.

    `EarlyStopping(restore_best_weights=True)` in the same `fit` is refused when training
    begins (the weights it saves before a resize no longer fit the model at the end): use
    `ModelCheckpoint(save_best_only=True)` and reload the best `.keras` file.

    Example:
    >>> model.fit(x, y, epochs=9, callbacks=[ActivationDensityCallback(x[:512])])
    """

    removes_units = True  # `EarlyStopping(restore_best_weights=True)` is refused next to it

    def __init__(self, data, frequency=1, until_epoch=None, min_units=1, batch_size=256,
                 optimizer_slots="slice", verbose=0):
        super().__init__()
        if data is None or len(data) == 0:
            raise ValueError("ActivationDensityCallback needs `data`: training inputs to "
                             "measure activation densities on (e.g. x_train[:512]).")
        self.data = data
        self.frequency = check_integer("frequency", frequency, 1)
        self.until_epoch = None if until_epoch is None else check_integer("until_epoch",
                                                                          until_epoch, 1)
        self.min_units = check_integer("min_units", min_units, 1)
        self.criterion = ActivationDensity(batch_size)
        if optimizer_slots not in ("slice", "reset"):
            raise ValueError(
                f"`optimizer_slots` must be 'slice' or 'reset'. Received: {optimizer_slots!r}")
        self.optimizer_slots = optimizer_slots
        self.verbose = verbose
        self.history = []

    def on_train_begin(self, logs=None):
        self.history = []
        if not getattr(self.model, "compiled", False):
            raise ValueError("Compile the model before `fit`.")
        check_restoring_callbacks(fit_callbacks(self))  # GatedModel.fit checked it already
        unit_graph = analyze(self.model)
        if not self.criterion.scores(self.model, self.data[:1], unit_graph):
            raise ValueError(f"Model '{self.model.name}' has no prunable layer whose outputs "
                             "ActivationDensityCallback can read.")
        epochs = int(self.params.get("epochs") or 1)
        self._until = self.until_epoch or max(1, (2 * epochs) // 3)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        record = {"epoch": epoch + 1}
        done = epoch + 1
        if done <= self._until and done % self.frequency == 0:
            unit_graph = analyze(self.model)
            scores = self.criterion.scores(self.model, self.data, unit_graph)
            masks = {}
            for name, values in scores.items():
                group = unit_graph.group(name)
                density = float(values.mean())
                record[f"ad/density/{name}"] = density
                remove = group.units - next_width(density, group.units, self.min_units)
                mask = lowest_removed(values, remove, self.min_units, group.segments)
                if not mask.all():
                    masks[name] = mask
            result = apply_keep_masks(self.model, masks, self.optimizer_slots)
            units = result.units_after
            if self.verbose and result.changed:
                io_utils.print_msg(f"activation density: units {result.units_before} -> "
                                   f"{units}")
        else:
            units = {g.name: g.units for g in analyze(self.model).groups if g.prunable}
        for name, count in units.items():
            record[f"ad/units/{name}"] = count
        record["ad/params"] = float(resources.model_cost(self.model).params)
        logs.update({k: v for k, v in record.items() if k != "epoch"})
        self.history.append(record)
