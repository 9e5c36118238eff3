"""Chief-only `.keras` checkpoints of a (pruned) model, and resuming from them."""

import contextlib
import json
import os

import keras

from tfdynhp.distribute.cluster import is_chief

CHECKPOINT_STATE = ".state.json"


class ChiefCheckpoint(keras.callbacks.Callback):
    """Saves a resumable `.keras` checkpoint at every epoch end, from the chief only.

    A `.keras` file holds the architecture with the current (pruned) widths, the weights and
    the optimizer state, so a restart reads the narrowed architecture before the weights
    (Keras 3's `BackupAndRestore` writes from every worker and restores weights into the
    original, unpruned architecture). Next to it, `<path>.state.json` records the epoch and
    the `DynamicBatches` batch size to resume with. Written to a temporary file and renamed,
    so a worker killed while saving leaves the previous checkpoint whole. Put it after
    `DynHPCallback` in the callbacks, so it saves the pruned model.

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
        os.replace(temporary, self.path)
        data = getattr(self.model, "fit_data", None)  # a GatedModel's running DynamicBatches
        state = {"epoch": epoch + 1, "batch_size": getattr(data, "batch_size", None)}
        with open(temporary + ".json", "w") as f:
            json.dump(state, f)
        os.replace(temporary + ".json", self.path + CHECKPOINT_STATE)


def resume(path, strategy=None):
    """Loads the checkpoint of `ChiefCheckpoint(path)`, on every worker, in `strategy`'s scope.

    Returns:
        `(model, state)`: the compiled model with its pruned architecture, weights and
        optimizer state, and `{"epoch": epochs done, "batch_size": ...}` (pass
        `initial_epoch=state["epoch"]` to `fit`); `(None, None)` when there is no checkpoint.
    """
    if not os.path.exists(path) or not os.path.exists(path + CHECKPOINT_STATE):
        return None, None
    with open(path + CHECKPOINT_STATE) as f:
        state = json.load(f)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = keras.models.load_model(path)
    return model, state
