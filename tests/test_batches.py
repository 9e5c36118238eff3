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
    """Records, for every batch the tf.data pipeline gathers, which epoch had started, whether
    it was in progress, and the batch's example indices."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def _record(self, indices):
        self.calls.append((self.epochs_started, self._in_epoch, indices.numpy().tolist()))
        return 0

    _parallel_gathers = None  # one gather at a time: recorded in order

    def _gather(self, indices, data):
        with tf.control_dependencies([tf.py_function(self._record, [indices], tf.int32)]):
            return super()._gather(indices, data)


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
    # The pipeline gathers every batch inside its epoch (no probe before the first one), in
    # the epoch's snapshot: no read can mix two.
    assert all(in_epoch for _, in_epoch, _ in data.calls)
    assert [e for e, _, _ in data.calls] == [1] * 6 + [2] * 3 + [3] * 2 + [4]
    assert [i for _, _, i in data.calls] == [b for epoch in log.epochs for b in epoch]


def test_fit_shuffle_does_not_reorder_the_batches():
    """`fit(shuffle=True)` (the default) reordered a PyDataset's batches with Python's global
    `random`; a DataAdapter keeps its own order, the seed's alone."""
    x, y = id_data()
    data = DynamicBatches(x, y, batch_size=5, seed=3)
    log, _ = fit(data, epochs=2, new_sizes={0: 10})  # fit(shuffle=True)
    assert [len(b) for b in log.epochs[0]] == [5, 5, 5, 5, 1]
    assert [len(b) for b in log.epochs[1]] == [10, 10, 1]
    for epoch, order in zip(log.epochs, log.orders):
        np.testing.assert_array_equal([i for batch in epoch for i in batch], order)


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


def test_an_iterator_made_before_the_epoch_reads_the_epoch_s_size_and_order():
    """Keras makes the next epoch's iterator before the callbacks' `on_epoch_end` can change
    the size: the pipeline lays out an epoch at its first element, not at `iter()`."""
    x, y = id_data()
    data = DynamicBatches(x, y, batch_size=4, seed=5)
    dataset = data.get_tf_dataset()
    early = iter(dataset)
    data.batch_size = 8  # outside any loop: applies at once
    data.on_epoch_begin()
    batches = [b[0].numpy()[:, 0].astype(int).tolist() for b in early]
    data.on_epoch_end()
    assert [len(b) for b in batches] == [8, 8, 5]
    np.testing.assert_array_equal(np.concatenate(batches), data.epoch_order)
    assert data.examples_seen_per_epoch == [N]
    np.testing.assert_array_equal(data.last_epoch_counts, np.ones(N))
    # The numpy view and the pipeline give the same batches.
    np.testing.assert_array_equal(data[2][0][:, 0], batches[2])


def test_tf_data_and_pydataset_inputs_are_read_once():
    x, y = id_data()
    w = np.linspace(0.0, 1.0, N).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(4)  # a last batch of 1
    from_dataset = DynamicBatches(dataset, batch_size=8, shuffle=False)
    bx, by, bw = from_dataset[1]
    np.testing.assert_array_equal(bx, x[8:16])
    np.testing.assert_array_equal(by, y[8:16])
    np.testing.assert_array_equal(bw, w[8:16])

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return x[7 * index: 7 * index + 7], y[7 * index: 7 * index + 7]

    from_pydataset = DynamicBatches(Batches(), batch_size=10, seed=0)
    assert from_pydataset.num_examples == N and len(from_pydataset[0]) == 2
    model = RecordingModel()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(from_pydataset, epochs=1, verbose=0)
    assert sorted(i for b in model.batches_seen for i in b) == list(range(N))
    with pytest.raises(ValueError, match="infinite tf.data dataset"):
        DynamicBatches(dataset.repeat())
    with pytest.raises(ValueError, match="Pass the data set alone"):
        DynamicBatches(dataset, y)


def test_class_weight_and_list_inputs():
    x, _ = id_data()
    labels = (np.arange(N) % 2).astype("float32")
    weighted = DynamicBatches(x, labels, batch_size=N, shuffle=False)
    seen = []

    class WeightModel(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        def train_step(self, data):
            tf.py_function(lambda w: seen.append(w.numpy()) or 0, [data[2]], tf.int32)
            return super().train_step(data)

    model = WeightModel()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(weighted, epochs=1, verbose=0, class_weight={0: 0.5, 1: 2.0})
    np.testing.assert_array_equal(seen[0], np.where(labels == 1, 2.0, 0.5))
    # A list of inputs stays a list of inputs (tf.data would stack it into one tensor).
    inputs = [keras.Input((2,)), keras.Input((1,))]
    two = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Concatenate()(inputs)))
    two.compile(optimizer="sgd", loss="mse")
    listed = DynamicBatches([x, x[:, :1]], labels, batch_size=8, seed=0)
    history = two.fit(listed, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


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
