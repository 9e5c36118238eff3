"""DynHP proper: the batch grows by the variance rule inside one fit, under a memory budget."""

import itertools
import typing

import keras
import numpy as np
import pytest
import tensorflow as tf
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp.costs import memory


class RecordingModel(tfdynhp.GatedModel):
    """A gated model whose training step records the example ids it really receives (the ids
    ride in the last input feature as id / n)."""

    epochs: typing.ClassVar[list] = []

    def train_step(self, data):
        x = data[0]
        tf.py_function(lambda t: self.epochs[-1].append(t.numpy()) or 0, [x[:, -1]], tf.int32)
        return super().train_step(data)


class EpochMarker(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        RecordingModel.epochs.append([])


def test_batches_grow_and_every_epoch_sees_every_example_once(digits):
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    n = len(x)
    x_ids = np.concatenate([x, (np.arange(n, dtype="float32") / n)[:, None]], axis=1)
    base = keras.Sequential([keras.Input((65,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])
    gated = tfdynhp.gate(base, l0_lambda=0.5, dataset_size=n, seed=0)
    model = RecordingModel(gated.inputs, gated.outputs)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    RecordingModel.epochs = []
    data = tfdynhp.DynamicBatches(x_ids, y, batch_size=16, seed=0)
    callback = DynHPCallback(budget="50MB", alpha_bs=0.9)
    history = model.fit(data, epochs=4, verbose=0, callbacks=[callback, EpochMarker()])

    assert len(RecordingModel.epochs) == 4
    largest = [max(len(b) for b in epoch) for epoch in RecordingModel.epochs]
    assert largest == history.history["dynhp/batch_size"]
    assert largest[-1] > largest[0] == 16
    assert all(b >= a for a, b in itertools.pairwise(largest))
    for epoch in RecordingModel.epochs:
        seen = np.rint(np.concatenate(epoch) * n).astype(int)
        np.testing.assert_array_equal(np.sort(seen), np.arange(n))
        # One size per epoch; only the remainder batch is smaller (Keras shuffles batch order).
        assert sum(len(b) != max(len(b) for b in epoch) for b in epoch) <= 1
    assert all(np.isfinite(history.history["grad_variance_ratio"]))


def test_budget_binds_and_memory_never_exceeds_it(digits):
    x, y, _, _ = digits
    keras.utils.set_random_seed(1)
    base = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])
    model = tfdynhp.gate(base, l0_lambda=1.0, dataset_size=len(x), seed=0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    _, fixed, per_example = memory.training_memory(model, 1, "full")
    budget = fixed + 17 * per_example  # room for batch 17 with the unpruned model
    data = tfdynhp.DynamicBatches(x, y, batch_size=16, seed=0)
    callback = DynHPCallback(budget=budget, alpha_bs=0.0, accounting="full")  # eager rule
    history = model.fit(data, epochs=4, verbose=0, callbacks=[callback])
    for record in callback.history:
        assert record["dynhp/memory_bytes"] <= budget
        assert record["dynhp/next_memory_bytes"] <= budget
    # The configuration the last epoch chose (pruned model, next batch) fits as well.
    total, _, _ = memory.training_memory(model, callback.history[-1]["dynhp/next_batch_size"])
    assert total <= budget
    batches = history.history["dynhp/next_batch_size"]
    candidates = [
        tfdynhp.math.batch_rule.variance_batch_candidate(b, 0.0, r)
        for b, r in zip(history.history["dynhp/batch_size"],
                        history.history["grad_variance_ratio"])
    ]
    # The variance rule asked for more than the budget allowed: the budget was the limit.
    assert candidates[0] > batches[0] == 17
    assert batches[-1] > 17  # pruning freed memory that the batch then used


@pytest.mark.parametrize("accounting", ["paper", "full"])
def test_logs_budget_and_memory_keys(digits, accounting):
    x, y, _, _ = digits
    model = tfdynhp.gate(keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)]), seed=0)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = tfdynhp.DynamicBatches(x[:200], y[:200], batch_size=8, seed=0)
    history = model.fit(data, epochs=1, verbose=0, validation_data=(x[200:300], y[200:300]),
                        callbacks=[DynHPCallback(budget="2MB", accounting=accounting)])
    logs = {k: v[-1] for k, v in history.history.items()}
    assert logs["dynhp/budget_bytes"] == 2_000_000
    assert logs["dynhp/memory_bytes"] == logs[f"dynhp/{accounting}_memory_bytes"]
    # The paper's accounting, by hand: float32 weights plus one float32 input batch.
    assert logs["dynhp/paper_memory_bytes"] == 4 * (logs["dynhp/params"] + 8 * 64)
    assert logs["dynhp/full_memory_bytes"] > logs["dynhp/paper_memory_bytes"]
    assert logs["grad_variance_l1"] > 0 and logs["dynhp/batch_size"] == 8
    assert "val_grad_variance_l1" not in logs and "val_loss" in logs


def test_progress_bar_counts_each_epochs_real_steps(capsys):
    x = np.random.default_rng(0).uniform(size=(300, 8)).astype("float32")
    model = tfdynhp.gate(keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)]), seed=0)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = tfdynhp.DynamicBatches(x, np.arange(300) % 3, batch_size=10, seed=0)
    history = model.fit(data, epochs=3, verbose=2,
                        callbacks=[DynHPCallback(budget="10MB", alpha_bs=0.0)])
    out = capsys.readouterr().out
    for batch in history.history["dynhp/batch_size"]:
        steps = -(-300 // int(batch))
        assert f"{steps}/{steps} " in out
    assert history.history["dynhp/batch_size"][-1] > 10
