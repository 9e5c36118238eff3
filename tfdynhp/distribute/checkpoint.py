"""Chief-only `.keras` checkpoints of a (pruned) model, and resuming from them."""

import contextlib
import json
import os
import zipfile

import keras

from tfdynhp.distribute.cluster import is_chief
from tfdynhp.validation import ConfigurationError

# The entry of the `.keras` archive (a zip file) that holds the checkpoint's state; Keras
# reads only its own entries and ignores it.
CHECKPOINT_STATE = "tfdynhp_checkpoint.json"


class ChiefCheckpoint(keras.callbacks.Callback):
    """Saves a resumable `.keras` checkpoint at every epoch end, from the chief only.

    A `.keras` file holds the architecture with the current (pruned) widths, the weights and
    the optimizer state, so a restart reads the narrowed architecture before the weights
    (Keras 3's `BackupAndRestore` writes from every worker and restores weights into the
    original, unpruned architecture). The same file records, as its entry `CHECKPOINT_STATE`,
    the epoch and the `DynamicBatches` batch size to resume with (`checkpoint_state(path)`
    reads them). Written to a temporary file and renamed once, so a worker killed while
    saving leaves the previous checkpoint whole, and the model and its state always belong
    to the same epoch. Put it after `DynHPCallback` in the callbacks, so it saves the pruned
    model.

    Args:
        path: the checkpoint file, ending in `.keras`; on several machines a folder every
            worker can read (only the chief writes it).
    """

    def __init__(self, path):
        super().__init__()
        if not str(path).endswith(".keras"):
            raise ValueError(f"Expected a checkpoint path ending in '.keras'. Received: {path!r}")
        self.path = os.fspath(path)

    def on_epoch_end(self, epoch, logs=None):
        if not is_chief(self.model.distribute_strategy):
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        temporary = os.path.join(folder, f".tmp-{os.getpid()}.keras")
        self.model.save(temporary)
        data = getattr(self.model, "fit_data", None)  # a GatedModel's running DynamicBatches
        state = {"epoch": epoch + 1, "batch_size": getattr(data, "batch_size", None)}
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(CHECKPOINT_STATE, json.dumps(state))
        os.replace(temporary, self.path)  # the one step that changes the checkpoint


def checkpoint_state(path):
    """The state a `ChiefCheckpoint(path)` saved with its model: `{"epoch": epochs done,
    "batch_size": ...}`, or None when there is no checkpoint at `path`.

    Raises:
        ConfigurationError: for a file that is not a `ChiefCheckpoint` checkpoint.
    """
    if not os.path.exists(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(CHECKPOINT_STATE))
    except (zipfile.BadZipFile, KeyError) as error:
        raise ConfigurationError(
            f"{path!r} is not a checkpoint of tfdynhp.distribute.ChiefCheckpoint: expected a "
            f"`.keras` file with the entry {CHECKPOINT_STATE!r} ({error}). Load a plain "
            "`.keras` file with `keras.models.load_model` and pass `initial_epoch` yourself."
        ) from error


def resume(path, strategy=None):
    """Loads the checkpoint of `ChiefCheckpoint(path)`, on every worker, in `strategy`'s scope.

    Returns:
        `(model, state)`: the compiled model with its pruned architecture, weights and
        optimizer state, and `{"epoch": epochs done, "batch_size": ...}` (pass
        `initial_epoch=state["epoch"]` to `fit`); `(None, None)` when there is no checkpoint.

    Raises:
        ConfigurationError: for a file that is not a `ChiefCheckpoint` checkpoint.
    """
    state = checkpoint_state(path)
    if state is None:
        return None, None
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = keras.models.load_model(path)
    return model, state
