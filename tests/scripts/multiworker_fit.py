"""One worker of a multi-worker fit on 127.0.0.1 (started by `tests/multiworker.py`, which sets
TF_CONFIG). Writes what it trained to an `.npz` file.

    multiworker_fit.py MODE OUT [--no-fix]

MODE `plain`: an ungated Keras MLP; `dynhp`: a gated MLP with DynHPCallback (surgery at every
epoch end) over DynamicBatches whose batch grows under a budget, then a plain Keras MLP; `bad`: fits refused before
training; `resume`: checkpointed, killed and resumed; `shuffle`: the README's how-to (a seeded
DynamicBatches, `fit`'s default `shuffle=True`) with Python's global `random` seeded
differently on each worker, as in two fresh processes, recording the global batches each
worker reads. `--no-fix` creates the
strategy straight from TensorFlow, without tfdynhp's Keras fix (to show it is needed).
"""

import itertools
import json
import os
import random
import sys
import time

mode, out_path = sys.argv[1:3]
fix = "--no-fix" not in sys.argv

import tensorflow as tf

import tfdynhp
from tfdynhp import distribute

if fix:
    strategy = distribute.multi_worker_strategy(timeout=float(os.environ.get("MW_TIMEOUT", "60")))
else:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras
import numpy as np
from sklearn.datasets import load_digits
from tfdynhp.callbacks import DynHPCallback

keras.utils.set_random_seed(0)
digits = load_digits()
x = (digits.data[:768] / 16).astype("float32")
y = digits.target[:768].astype("int32")
epochs = int(os.environ.get("MW_EPOCHS", "4"))
with strategy.scope():
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    if mode in ("dynhp", "bad", "resume", "shuffle"):
        model = tfdynhp.gate(model, seed=0, l0_lambda=float(os.environ.get("MW_LAMBDA", "20")))
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
report = {"replicas": strategy.num_replicas_in_sync}
if mode == "dynhp":
    data = tfdynhp.DynamicBatches(x, y, batch_size=int(os.environ.get("MW_BATCH", "32")), seed=0)
    callback = DynHPCallback(threshold=0.5, budget=os.environ.get("MW_BUDGET", "400KB"),
                             alpha_bs=0.5)
    steps = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: steps.append(int(model.optimizer.iterations.numpy())))
    start = time.perf_counter()
    history = model.fit(data, epochs=epochs, verbose=0, shuffle=False,
                        callbacks=[callback, record])
    report["fit_seconds"] = time.perf_counter() - start
    report["steps"] = steps
    report["replicas_seen"] = distribute.replicas(model.distribute_strategy)
    report["units"] = [g.units for g in tfdynhp.graph.gated_groups(model)]
    report["batch_sizes"] = data.batch_size_per_epoch
    report["examples_seen"] = data.examples_seen_per_epoch
    report["params"] = history.history["dynhp/params"]
elif mode == "resume":
    # Checkpointed by the chief at every epoch end; worker 1 kills itself at the end of epoch
    # MW_KILL_EPOCH; a restart resumes from the checkpoint with its pruned architecture.
    path = os.environ["MW_CHECKPOINT"]
    kill_epoch = int(os.environ.get("MW_KILL_EPOCH", "0"))
    rank = distribute.parse_tf_config().rank
    restored, state = distribute.resume(path, strategy)
    start_epoch, batch = 0, 32
    if restored is not None:
        model, start_epoch, batch = restored, state["epoch"], state["batch_size"]
    report["start_epoch"] = start_epoch
    report["start_units"] = [g.units for g in tfdynhp.graph.gated_groups(model)]
    report["start_iterations"] = int(model.optimizer.iterations.numpy())

    def kill(epoch, logs):
        if rank == 1 and epoch + 1 == kill_epoch:
            os.kill(os.getpid(), 9)

    history = model.fit(
        tfdynhp.DynamicBatches(x, y, batch_size=batch, seed=0), initial_epoch=start_epoch,
        epochs=epochs, verbose=0, shuffle=False,
        callbacks=[DynHPCallback(threshold=float(os.environ.get("MW_THRESHOLD", "0.5")),
                                 budget="400KB", alpha_bs=0.5),
                   distribute.ChiefCheckpoint(path),
                   keras.callbacks.LambdaCallback(on_epoch_end=kill)],
    )
    report["units"] = [g.units for g in tfdynhp.graph.gated_groups(model)]
elif mode == "shuffle":
    import hashlib

    random.seed(1000 + distribute.parse_tf_config().rank)  # unseeded processes differ
    reads, local = {}, []

    def digest(row):
        return hashlib.sha1(np.asarray(row, "float32").tobytes()).hexdigest()[:16]

    class RecordingBatches(tfdynhp.DynamicBatches):
        """Records the global batches its pipeline gathers, per epoch."""

        def _record(self, indices):
            if self._in_epoch:
                reads.setdefault(self.epochs_started, []).append(indices.numpy().tolist())
            return 0

        _parallel_gathers = None  # one gather at a time: recorded in order

        def _gather(self, indices, data):
            with tf.control_dependencies([tf.py_function(self._record, [indices], tf.int32)]):
                return super()._gather(indices, data)

    class RecordingModel(tfdynhp.GatedModel):
        """Records the rows this worker's replica trains on, per step."""

        def train_step(self, data):
            tf.py_function(lambda rows: local.append([digest(r) for r in rows.numpy()]) or 0,
                           [data[0]], tf.int32)
            return super().train_step(data)

    with strategy.scope():
        model = RecordingModel(model.inputs, model.outputs)
        model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    steps = []
    history = model.fit(RecordingBatches(x, y, batch_size=32, seed=0), epochs=epochs, verbose=0,
                        callbacks=[DynHPCallback(budget="400KB", alpha_bs=0.5),
                                   keras.callbacks.LambdaCallback(
                                       on_epoch_end=lambda e, logs: steps.append(len(local)))])
    # Under a strategy Keras opens an epoch of the data before training to build the model
    # (a few prefetched batches): only the last `epochs` are training epochs.
    report["reads"] = [reads[epoch] for epoch in sorted(reads)][-epochs:]
    report["global_digests"] = [[sorted(digest(x[i]) for i in batch) for batch in epoch]
                                for epoch in report["reads"]]
    bounds = [0, *steps]
    report["local_digests"] = [local[a:b] for a, b in itertools.pairwise(bounds)]
elif mode == "bad":
    # Refused before training: a batch that does not split over the replicas, then a budget
    # too small for one replica's share.
    errors = []
    for batch, budget in ((33, "400KB"), (32, "20KB")):
        try:
            model.fit(tfdynhp.DynamicBatches(x, y, batch_size=batch, seed=0), epochs=1,
                      verbose=0, callbacks=[DynHPCallback(budget=budget)])
        except ValueError as error:
            errors.append(str(error))
    report["errors"] = errors
    report["untouched"] = int(model.optimizer.iterations.numpy()) == 0
    np.savez(out_path, report=json.dumps(report))
    sys.exit(0)
else:
    history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
plain_weights = {}
if mode == "dynhp":
    # A plain (ungated) Keras model under the same strategy, too.
    with strategy.scope():
        plain = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        plain.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    plain.fit(x, y, batch_size=32, epochs=1, verbose=0)
    report["plain_iterations"] = int(plain.optimizer.iterations.numpy())
    plain_weights = {f"p{i}": np.asarray(w) for i, w in enumerate(plain.get_weights())}
report["loss"] = history.history["loss"]
report["accuracy"] = history.history["accuracy"]
report["iterations"] = int(model.optimizer.iterations.numpy())
weights = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
np.savez(out_path, report=json.dumps(report), **weights, **plain_weights)
