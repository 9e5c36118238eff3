"""Workaround for keras-team/keras#20585 (also tensorflow/tensorflow#72388): Keras 3's
`fit` fails under `tf.distribute.MultiWorkerMirroredStrategy` (TensorFlow backend).

Two reductions in `keras/src/backend/tensorflow/trainer.py` (read in Keras 3.15.1 and in
keras-team/keras main at commit 040bf77, where they are unchanged) break in multi-worker mode:

1. `TensorFlowTrainer._maybe_symbolic_build` builds the model from the first distributed batch
   with `strategy.reduce("MEAN", batch, axis=None)`; `CollectiveAllReduceStrategy` cannot
   convert the `PerReplica` batch ("Attempt to convert a value (PerReplica...)"). Only shapes
   and dtypes matter to the symbolic build, so the fix builds from this worker's first local
   replica batch.
2. `reduce_per_replica` reduces every step output with `strategy.reduce("MEAN", v, axis=0)`
   in multi-worker mode, which fails on the scalar metrics of every `fit` ("Invalid reduction
   dimension 0 for input with 0 dimensions"). The fix reduces rank-0 values with `axis=None`
   (the mean over replicas) and leaves every other value to Keras.

`install()` replaces those two functions with wrappers that change nothing unless the
strategy is a `MultiWorkerMirroredStrategy` in multi-worker mode (a `TF_CONFIG` naming more
than one worker); every other strategy, and no strategy, runs Keras' own code. It is called
by `tfdynhp.distribute.multi_worker_strategy()` and by `GatedModel.fit` under such a strategy,
never at import, and only for the Keras versions in `AFFECTED_KERAS` (checked at import).
Delete this module, and its two callers, when Keras fixes the issue: the test
`test_plain_keras_fit_on_two_workers_needs_the_fix` (tests/test_multiworker.py) then fails and
says so.
"""

import keras
import tensorflow as tf

# The bug is in every Keras 3 release up to 3.15.1, the one checked here; widen the range
# after checking that a newer Keras still has it (the test above tells).
AFFECTED_KERAS = ((3, 0), (3, 16))
ISSUE = "keras-team/keras#20585"


def _version(text):
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


KERAS_VERSION = _version(keras.__version__)
NEEDED = (
    AFFECTED_KERAS[0] <= KERAS_VERSION < AFFECTED_KERAS[1]
    and keras.backend.backend() == "tensorflow"
)

_originals = {}


def _trainer_module():
    from keras.src.backend.tensorflow import trainer

    return trainer


def is_multi_worker(strategy):
    """True for a `MultiWorkerMirroredStrategy` running with more than one worker."""
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )


def _first_local(value, strategy):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    strategy = self._distribute_strategy
    original = _originals["_maybe_symbolic_build"]
    if strategy is None or iterator is None or not is_multi_worker(strategy):
        return original(self, iterator=iterator, data_batch=data_batch)
    for _, _, batches in iterator:
        batch = next(batches)
        data_batch = keras.tree.map_structure(lambda v: _first_local(v, strategy), batch)
        break
    return original(self, iterator=None, data_batch=data_batch)


def _reduce_per_replica(values, strategy, reduction):
    original = _originals["reduce_per_replica"]
    if reduction not in ("auto", "mean") or not is_multi_worker(strategy):
        return original(values, strategy, reduction)

    def reduce(value):
        if _first_local(value, strategy).shape.rank == 0:
            return strategy.reduce("MEAN", value, axis=None)
        return original(value, strategy, reduction)

    return keras.tree.map_structure(reduce, values)


def installed():
    """Whether the workaround is in place."""
    return bool(_originals)


def install():
    """Puts the workaround in place (idempotent). Returns True when it is in place.

    Does nothing, and returns False, for Keras versions outside `AFFECTED_KERAS` or another
    backend. The wrappers run Keras' own code for every strategy but a multi-worker one.
    """
    if not NEEDED:
        return False
    if installed():
        return True
    trainer = _trainer_module()
    cls = trainer.TensorFlowTrainer
    if not hasattr(cls, "_maybe_symbolic_build") or not hasattr(trainer, "reduce_per_replica"):
        return False  # the code it fixes has moved: nothing to patch
    _originals["_maybe_symbolic_build"] = cls._maybe_symbolic_build
    _originals["reduce_per_replica"] = trainer.reduce_per_replica
    cls._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = _reduce_per_replica
    return True


def uninstall():
    """Restores Keras' own functions (for tests)."""
    if not installed():
        return
    trainer = _trainer_module()
    trainer.TensorFlowTrainer._maybe_symbolic_build = _originals.pop("_maybe_symbolic_build")
    trainer.reduce_per_replica = _originals.pop("reduce_per_replica")
