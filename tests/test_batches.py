"""Tests for tfdynhp.model.dynamic_batches: DynamicBatches under a real `model.fit` (CPU, seeded)."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdynhp.model.dynamic_batches import (
    RAN_OUT_OF_DATA_MESSAGE,
    DynamicBatches,
    ignore_ran_out_of_data_warning,
)

N = 21  # not a multiple of any batch size used: every epoch has a smaller last batch


def id_data(n=N):
    """Column 0 of x is the example id, so the training step can report what it saw."""
    rng = np.random.default_rng(0)
    x = np.stack([np.arange(n), rng.random(n)], axis=1).astype("float32")
    y = rng.random((n, 1)).astype("float32")
    return x, y


class RecordingModel(keras.Model):
    """A linear model whose train_step records the example ids of every batch it sees."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self.batches_seen = []

    def call(self, x):
        return self.dense(x[:, 1:])

    def _record(self, ids):
        self.batches_seen.append(ids.numpy().astype(int).tolist())
        return 0

    def train_step(self, data):
        tf.py_function(self._record, [data[0][:, 0]], tf.int32)
        return super().train_step(data)


class EpochLog(keras.callbacks.Callback):
    """Splits the model's recorded batches per epoch; optionally changes the batch size."""

    def __init__(self, data, new_sizes=None):
        super().__init__()
        self.data = data
        self.new_sizes = new_sizes or {}
        self.epochs = []
        self.orders = []
        self.errors = []

    def on_epoch_end(self, epoch, logs=None):
        done = sum(len(e) for e in self.epochs)
        self.epochs.append(self.model.batches_seen[done:])
        self.orders.append(self.data.epoch_order)
        if epoch in self.new_sizes:
            try:
                self.data.batch_size = self.new_sizes[epoch]
            except ValueError as e:
                self.errors.append(str(e))


def fit(data, epochs, new_sizes=None, **fit_kwargs):
    keras.utils.set_random_seed(0)
    model = RecordingModel()
    model.compile(optimizer="sgd", loss="mse")
    log = EpochLog(data, new_sizes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(data, epochs=epochs, callbacks=[log], verbose=0, **fit_kwargs)
    ran_out = [w for w in caught if RAN_OUT_OF_DATA_MESSAGE in str(w.message)]
    return log, ran_out


class CallLog(DynamicBatches):
    """Records, for every __getitem__ call, whether an epoch was in progress."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def __getitem__(self, index):
        self.calls.append((self.epochs_started, self._in_epoch, int(index)))
        return super().__getitem__(index)


def test_fit_grows_batches_at_epoch_boundaries_and_sees_every_example_once():
    x, y = id_data()
    data = CallLog(x, y, batch_size=4, seed=1)
    log, ran_out = fit(data, epochs=4, new_sizes={0: 8, 1: 16, 2: 32}, shuffle=False)
    sizes = [[len(b) for b in epoch] for epoch in log.epochs]
    # Raised in on_epoch_end of epoch e, the size applies from epoch e + 1, never mid-epoch.
    assert sizes == [[4, 4, 4, 4, 4, 1], [8, 8, 5], [16, 5], [21]]
    assert data.batch_size_per_epoch == [4, 8, 16, 32]
    for epoch, order in zip(log.epochs, log.orders):
        ids = [i for batch in epoch for i in batch]
        assert sorted(ids) == list(range(N))  # every example exactly once
        np.testing.assert_array_equal(ids, order)  # in the epoch's permutation
    assert data.examples_seen_per_epoch == [N] * 4
    np.testing.assert_array_equal(data.last_epoch_counts, np.ones(N))
    assert len({tuple(o) for o in log.orders}) == 4  # reshuffled every epoch
    # Epochs 1-3 have fewer batches than the 6 steps fit read at its start.
    assert len(ran_out) == 3
    # Keras canary: apart from its 2-batch signature probe before the first epoch, every
    # batch is read inside an epoch, so no read can mix two snapshots.
    assert data.calls[:2] == [(0, False, 0), (0, False, 1)]
    assert all(in_epoch for _, in_epoch, _ in data.calls[2:])
    assert len(data.calls) == 2 + 6 + 3 + 2 + 1


def test_fit_with_keras_batch_shuffling_still_covers_every_example():
    x, y = id_data()
    data = DynamicBatches(x, y, batch_size=5, seed=3)
    log, _ = fit(data, epochs=2, new_sizes={0: 10})  # fit(shuffle=True): Keras reorders batches
    assert sorted(len(b) for b in log.epochs[0]) == [1, 5, 5, 5, 5]
    assert sorted(len(b) for b in log.epochs[1]) == [1, 10, 10]
    for epoch in log.epochs:
        assert sorted(i for batch in epoch for i in batch) == list(range(N))


class GrowMidEpoch(keras.callbacks.Callback):
    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            self.data.batch_size = 2 * self.data.batch_size


def test_change_requested_mid_epoch_waits_for_the_next_epoch():
    x, y = id_data()
    data = DynamicBatches(x, y, batch_size=4, seed=2)
    keras.utils.set_random_seed(0)
    model = RecordingModel()
    model.compile(optimizer="sgd", loss="mse")
    with ignore_ran_out_of_data_warning():
        model.fit(data, epochs=2, callbacks=[GrowMidEpoch(data)], verbose=0, shuffle=False)
    assert [len(b) for b in model.batches_seen] == [4, 4, 4, 4, 4, 1, 8, 8, 5]
    assert data.batch_size == 16 and data.active_batch_size == 8


def test_shuffling_is_seeded_and_reproducible():
    x, y = id_data()
    first, _ = fit(DynamicBatches(x, y, batch_size=8, seed=7), epochs=2, shuffle=False)
    again, _ = fit(DynamicBatches(x, y, batch_size=8, seed=7), epochs=2, shuffle=False)
    other, _ = fit(DynamicBatches(x, y, batch_size=8, seed=8), epochs=2, shuffle=False)
    assert first.epochs == again.epochs
    assert first.epochs != other.epochs
    assert first.epochs[0] != first.epochs[1]
    # The first epoch uses the order visible before fit; a seed fixes it.
    np.testing.assert_array_equal(
        first.orders[0], DynamicBatches(x, y, batch_size=8, seed=7).epoch_order
    )
    unshuffled, _ = fit(DynamicBatches(x, y, batch_size=8, shuffle=False), epochs=2,
                        shuffle=False)
    assert unshuffled.epochs[0] == unshuffled.epochs[1] == [
        list(range(8)), list(range(8, 16)), list(range(16, 21))
    ]


def test_shrinking_during_fit_is_refused_unless_no_example_is_skipped():
    x, y = id_data()
    data = DynamicBatches(x, y, batch_size=4, seed=0)  # fit reads 6 steps per epoch
    # Epoch 0 grows to 8; epoch 1 asks for 3 (7 batches > 6: refused), epoch 2 for 5
    # (5 batches <= 6: allowed).
    log, _ = fit(data, epochs=4, new_sizes={0: 8, 1: 3, 2: 5}, shuffle=False)
    assert len(log.errors) == 1
    assert "Cannot set batch_size=3" in log.errors[0]
    assert "7 batches" in log.errors[0] and "at most 6 steps" in log.errors[0]
    assert "batch size >= 4" in log.errors[0]
    assert [[len(b) for b in e] for e in log.epochs] == [
        [4, 4, 4, 4, 4, 1], [8, 8, 5], [8, 8, 5], [5, 5, 5, 5, 1]
    ]
    # Outside fit any size is allowed and applies at once.
    data.batch_size = 2
    assert data.active_batch_size == 2 and len(data) == 11
    # evaluate() also reads batches one epoch at a time.
    model = RecordingModel()
    model.compile(optimizer="sgd", loss="mse")
    model.evaluate(data, verbose=0)
    assert data.examples_seen_per_epoch[-1] == N


def test_steps_per_epoch_and_workers_are_refused():
    x, y = id_data()
    model = RecordingModel()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="do not pass `steps_per_epoch`"):
        model.fit(DynamicBatches(x, y, batch_size=4), epochs=1, steps_per_epoch=3, verbose=0)
    data = DynamicBatches(x, y)
    data.workers = 2
    with pytest.raises(ValueError, match="workers > 1"):
        data.on_epoch_begin()


def test_epochs_without_fit():
    x, y = id_data()
    data = DynamicBatches(x, y, batch_size=6, seed=0)
    assert len(data) == data.num_batches == 4 and data.num_examples == N
    before = data.epoch_order
    data.on_epoch_begin()
    np.testing.assert_array_equal(data.epoch_order, before)  # first epoch: the initial order
    data.batch_size = 10  # during an epoch: deferred to the next one
    assert data.batch_size == 10 and data.active_batch_size == 6 and len(data) == 4
    batches = [data[i] for i in range(len(data))]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches])[:, 0], before)
    np.testing.assert_array_equal(data.batch_indices(-1), before[18:])
    with pytest.raises(IndexError, match="expected 0 <= index < 4"):
        data[4]
    data.on_epoch_end()
    assert data.examples_seen_per_epoch == [N]
    data.on_epoch_begin()
    assert data.active_batch_size == 10 and len(data) == 3
    assert not np.array_equal(data.epoch_order, before)
    assert sorted(data.epoch_order) == list(range(N))
    data.on_epoch_end()
    assert data.examples_seen_per_epoch == [N, 0]  # nothing was read in the second epoch
    assert data.epochs_started == 2


def test_accepts_tensors_dicts_and_sample_weight():
    x, y = id_data()
    w = np.linspace(0.0, 1.0, N).astype("float32")
    data = DynamicBatches(tf.constant(x), tf.constant(y), batch_size=8, shuffle=False,
                          sample_weight=tf.constant(w))
    bx, by, bw = data[1]
    assert isinstance(bx, np.ndarray) and bx.shape == (8, 2)
    np.testing.assert_array_equal(bx[:, 0], np.arange(8, 16))
    np.testing.assert_array_equal(by, y[8:16])
    np.testing.assert_array_equal(bw, w[8:16])
    dict_data = DynamicBatches({"a": x, "b": x[:, :1]}, y, batch_size=8, shuffle=False)
    (bx,) = dict_data[2][:1]
    assert bx["a"].shape == (5, 2) and bx["b"].shape == (5, 1)
    (only_x,) = DynamicBatches(x, batch_size=30)[0]
    assert only_x.shape == (N, 2)  # a batch larger than the data set: one batch
    model = RecordingModel()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(data, epochs=1, verbose=0)
    assert sorted(i for b in model.batches_seen for i in b) == list(range(N))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"y": np.zeros(20)}, ValueError, r"`y` to have as many examples as `x` \(21\)"),
        ({"y": np.zeros(21), "sample_weight": np.ones(3)}, ValueError, "sample_weight"),
        ({"sample_weight": np.ones(21)}, ValueError, "without `y`"),
        ({"batch_size": 0}, ValueError, "batch_size=0"),
        ({"batch_size": -3}, ValueError, "positive integer"),
        ({"batch_size": 2.5}, TypeError, "batch_size=2.5 of type float"),
        ({"batch_size": 16.0}, TypeError, "of type float"),
        ({"batch_size": "16"}, TypeError, "of type str"),
        ({"batch_size": True}, TypeError, "of type bool"),
        ({"shuffle": 1}, TypeError, "shuffle"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    x, _ = id_data()
    with pytest.raises(error, match=match):
        DynamicBatches(x, **kwargs)


def test_bad_data_and_setter_errors():
    with pytest.raises(ValueError, match="at least one example"):
        DynamicBatches(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="rank >= 1"):
        DynamicBatches(np.float32(3.0))
    with pytest.raises(ValueError, match="same number of examples"):
        DynamicBatches({"a": np.zeros((4, 2)), "b": np.zeros((5, 2))})
    data = DynamicBatches(np.zeros((4, 2)), batch_size=2)
    with pytest.raises(ValueError, match="positive integer"):
        data.batch_size = 0
    with pytest.raises(TypeError, match="of type float"):
        data.set_batch_size(3.0)
    with pytest.raises(TypeError, match="integer batch index"):
        data[0.0]
    np.testing.assert_array_equal(data[np.int64(1)][0], np.zeros((2, 2)))


def test_ignore_ran_out_of_data_warning_silences_only_that_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ignore_ran_out_of_data_warning():
            warnings.warn(RAN_OUT_OF_DATA_MESSAGE + ". Make sure ...", UserWarning, stacklevel=1)
            warnings.warn("something else", UserWarning, stacklevel=1)
        warnings.warn(RAN_OUT_OF_DATA_MESSAGE, UserWarning, stacklevel=1)  # filter restored
    assert [str(w.message) for w in caught] == ["something else", RAN_OUT_OF_DATA_MESSAGE]
    x, y = id_data()
    data = DynamicBatches(x, y, batch_size=4, seed=0)
    model = RecordingModel()
    model.compile(optimizer="sgd", loss="mse")
    grow = EpochLog(data, {0: 8})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ignore_ran_out_of_data_warning():
            model.fit(data, epochs=2, callbacks=[grow], verbose=0)
    assert not [w for w in caught if RAN_OUT_OF_DATA_MESSAGE in str(w.message)]
    assert [len(e) for e in grow.epochs] == [6, 3]
