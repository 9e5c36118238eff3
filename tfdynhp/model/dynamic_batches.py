"""Mini-batches whose size can grow between epochs of one `model.fit` call (DynHP, section 4.2).

`DynamicBatches` holds the examples in memory and builds each epoch's batches inside a
`tf.data` pipeline: pass it to `model.fit` and let a callback raise `data.batch_size` between
epochs. It is a Keras `DataAdapter` (Keras 3.12-3.15, TensorFlow backend: `fit` takes a
`DataAdapter` as it is, `keras/src/trainers/data_adapters/__init__.py`), so `fit`,
`evaluate` and `predict` of any Keras model read it through `get_tf_dataset()`; it is also a
`PyDataset` (`len(data)`, `data[i]`) for inspection. How Keras consumes it, read from
`keras/src/trainers/epoch_iterator.py` and `backend/tensorflow/trainer.py`, and checked with
real `fit` calls in `tests/test_batches.py`:

1. When `fit` starts it reads `num_batches` (the progress bar's target and the most steps an
   epoch will run), calls `get_tf_dataset()` once (the pipeline of the whole `fit`), then
   `data.on_epoch_end()` once (its `reset()`). Under a distribution strategy it opens one
   epoch and reads one batch to build the model before training.
2. Each epoch: the callbacks' `on_epoch_begin`, then `data.on_epoch_begin()` (which applies
   the requested batch size, draws the permutation and writes both to the pipeline's
   variables), then a fresh iterator over the pipeline, whose first element reads those
   variables and lays out the epoch's batches as gathers of the in-memory tensors (parallel
   `map`, `prefetch`: no Python per batch), then `data.on_epoch_end()`, then the callbacks'
   `on_epoch_end`. At the end of a full epoch Keras already creates the next iterator,
   before the callbacks' `on_epoch_end`; it is discarded unused at the next epoch's start,
   and since the pipeline reads its variables only at an epoch's first element, never
   at iterator creation, an early iterator could not read a stale size anyway.
3. An epoch runs at most the `num_batches` read in 1. With fewer batches (the batch grew) the
   iterator runs out: Keras warns "Your input ran out of data; interrupting training", ends
   the epoch, and training continues with the next one. With more batches (the batch shrank)
   Keras stops after the old count and the remaining examples are silently skipped.

Hence the rules of `DynamicBatches`:

- A batch size requested while a Keras loop (`fit`, `evaluate`, `predict`) is iterating this
  data set, or while an epoch is in progress, takes effect at the start of the next epoch,
  i.e. in `on_epoch_begin`, together with the epoch's new permutation. Every epoch therefore
  uses one batch size and one permutation (the snapshot), and covers every example exactly
  once; only its last batch may be smaller. Requested from an `on_epoch_end` callback of
  epoch `e` (or an `on_epoch_begin` callback of epoch `e + 1`), it applies to epoch `e + 1`.
  Requested outside any loop, it applies at once (so `len(data)` is right when `fit` starts).
- Shrinking so much that the running loop would skip examples (more batches than the steps
  it reads at its start) raises `ValueError`. Outside a loop, any size is allowed.
- `fit(steps_per_epoch=...)` is refused: Keras then keeps an iterator across epochs, so one
  pass would mix two snapshots. `workers > 1` and `use_multiprocessing=True` are refused (the
  pipeline is `tf.data`'s, Keras' worker queue is not used).
- The order is the data set's own: Keras' `fit(shuffle=...)` does not reorder the batches of
  a `DataAdapter`, so every worker of a `MultiWorkerMirroredStrategy` reads the same global
  batches when the seed is the same. `tf.distribute` splits each global batch between the
  replicas (auto-sharding by data, as Keras does for arrays).
- `fit(class_weight=...)` is applied as per-example weights, as Keras does for a `PyDataset`.
- Use `ignore_ran_out_of_data_warning()` to silence exactly Keras' "ran out of data" warning.

The running loop is found by walking the caller's stack for the `epoch_iterator` local of
Keras' `fit` / `evaluate` / `predict` (a Keras-internal name, checked by the tests); when it
is not found (another thread, another Keras version), changes during an epoch are still
deferred, but the shrink check and the `steps_per_epoch` check are skipped.
"""

import contextlib
import math
import numbers
import re
import sys
import threading
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras.src.trainers.data_adapters import data_adapter as keras_data_adapter
from keras.src.trainers.data_adapters import data_adapter_utils

RAN_OUT_OF_DATA_MESSAGE = "Your input ran out of data; interrupting training"

_KERAS_LOOPS = ("fit", "evaluate", "predict")

_KERAS_LOOPS = ("fit", "evaluate", "predict")


@contextlib.contextmanager
def ignore_ran_out_of_data_warning():
    """Silences Keras' "Your input ran out of data; interrupting training" warning, only it.

    When `DynamicBatches` grows the batch during `fit`, later epochs have fewer batches than
    the step count `fit` read when it started; Keras then ends the epoch with that warning.
    That is expected under DynHP, so the callback silences it; every other warning still
    shows. Works as a `with` block, or entered in `on_train_begin` and exited in
    `on_train_end` (via `__enter__` / `__exit__`). Like `warnings.catch_warnings`, it
    restores the previous filters on exit and is not thread-safe.

    Yields:
        None.

    Example:

    ```python
    with ignore_ran_out_of_data_warning():
        model.fit(DynamicBatches(x, y, batch_size=16), epochs=10, callbacks=[grow])
    ```
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=re.escape(RAN_OUT_OF_DATA_MESSAGE), category=UserWarning
        )
        yield


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(
            "Expected `batch_size` to be a positive integer. "
            f"Received: batch_size={batch_size!r} of type {type(batch_size).__name__}"
        )
    if batch_size < 1:
        raise ValueError(
            f"Expected `batch_size` to be a positive integer. Received: batch_size={batch_size}"
        )
    return int(batch_size)


def _to_numpy(name, value):
    def convert(leaf):
        array = np.asarray(leaf)
        if array.ndim == 0:
            raise ValueError(
                f"Expected `{name}` to have a leading example axis (rank >= 1). "
                f"Received: a scalar {leaf!r}"
            )
        return array

    return keras.tree.map_structure(convert, value)


def _num_examples(name, value):
    lengths = {len(leaf) for leaf in keras.tree.flatten(value)}
    if len(lengths) != 1:
        raise ValueError(
            f"Expected all arrays of `{name}` to have the same number of examples. "
            f"Received lengths {sorted(lengths)}."
        )
    return lengths.pop()




def _concatenate_batches(name, batches):
    """One array per leaf of the batches' structure, the batches put end to end."""
    if not batches:
        raise ValueError(f"Expected at least one example. Received: `{name}` with no batches.")
    return keras.tree.map_structure(lambda *leaves: np.concatenate(leaves), *batches)


def _read_batches(name, x):
    """`(x, y, sample_weight)` of every batch of a finite `tf.data` dataset or `PyDataset`,
    read once into memory (a `fit`-style input: batches of `x`, `(x, y)` or `(x, y, w)`)."""
    if isinstance(x, tf.data.Dataset):
        if int(x.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise ValueError(
                f"Expected a finite `{name}`: DynamicBatches reads it once into memory to "
                "draw its own permutations. Received an infinite tf.data dataset; drop its "
                "`.repeat()`."
            )
        batches = list(x.as_numpy_iterator())
    else:
        if x.num_batches is None:
            raise ValueError(
                f"Expected a finite `{name}`: DynamicBatches reads it once into memory. "
                "Received an infinite PyDataset (its `num_batches` is None)."
            )
        batches = [x[i] for i in range(x.num_batches)]
    batches = [data_adapter_utils.unpack_x_y_sample_weight(
        b if isinstance(b, tuple) else (b,)) for b in batches]
    parts = []
    for position, part in enumerate(("x", "y", "sample_weight")):
        present = [b[position] is not None for b in batches]
        if any(present) and not all(present):
            raise ValueError(f"Some batches of `{name}` have {part} and others do not.")
        parts.append(_concatenate_batches(name, [b[position] for b in batches])
                     if all(present) else None)
    return parts


class DynamicBatches(keras.utils.PyDataset, keras_data_adapter.DataAdapter):
    """Examples in memory, fed to Keras in batches whose size can grow between epochs.

    DynHP (paper section 4.2) grows the mini-batch during training as pruning frees memory;
    this data set lets a callback do that inside a single `model.fit` call. Each epoch is one
    pass over a fresh permutation (drawn from a seeded generator) in batches of one size; the
    last batch may be smaller. The batches are gathered inside a `tf.data` pipeline (as Keras
    does for arrays), so feeding them costs about what feeding arrays costs. See the module
    docstring for when a change takes effect and why.

    Keras reads it in the order of its own permutation (`fit`'s `shuffle` does not apply), the
    same on every worker of a distribution strategy when `seed` is the same.

    Args:
        x: inputs: a numpy array, a tensor, or a list/tuple/dict of them, with examples along
            the first axis (converted to numpy once); or a finite `tf.data.Dataset` or
            `keras.utils.PyDataset` of batches as `fit` takes them (`x`, `(x, y)` or
            `(x, y, sample_weight)`), read once into memory (then leave `y` and
            `sample_weight` to it).
        y: targets, same length as `x`, or `None` for batches `(x,)`. Defaults to `None`.
        batch_size: the initial batch size, a positive integer. Defaults to `16` (the
            paper's DynHP start).
        shuffle: draw a new permutation of the examples at every epoch; `False` keeps the
            original order. Defaults to `True`.
        seed: seed of the permutations (`numpy.random.default_rng(seed)`); `None` for
            non-reproducible ones. Defaults to `None`.
        sample_weight: per-example weights, same length as `x`, or `None`. Defaults to `None`.

    Raises:
        ValueError: if the inputs are empty, scalars, or of different lengths,
            `sample_weight` is given without `y`, `batch_size < 1`, or a `tf.data` /
            `PyDataset` input is infinite or comes with a separate `y` / `sample_weight`.
        TypeError: if `batch_size` is not an integer, `shuffle` not a bool, or `seed` neither
            `None` nor an integer.

    Example:

    ```python
    data = DynamicBatches(x_train, y_train, batch_size=16, seed=0)

    class Grow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            data.batch_size = 2 * data.batch_size  # applies from the next epoch

    with ignore_ran_out_of_data_warning():
        model.fit(data, epochs=4, callbacks=[Grow()])
    ```
    """

    def __init__(self, x, y=None, batch_size=16, shuffle=True, seed=None, sample_weight=None):
        super().__init__()
        batch_size = _check_batch_size(batch_size)
        if not isinstance(shuffle, bool):
            raise TypeError(f"Expected `shuffle` to be a bool. Received: shuffle={shuffle!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"Expected `seed` to be None or an integer. Received: seed={seed!r}")
        if isinstance(x, (tf.data.Dataset, keras.utils.PyDataset)):
            if y is not None or sample_weight is not None:
                raise ValueError(
                    f"Received a {type(x).__name__} as `x` together with `y` or "
                    "`sample_weight`: its batches already hold them, as for `fit`. Pass the "
                    "data set alone."
                )
            x, y, sample_weight = _read_batches("x", x)
        self._x = _to_numpy("x", x)
        n = _num_examples("x", self._x)
        if n == 0:
            raise ValueError("Expected at least one example. Received: `x` with 0 examples.")
        if y is None and sample_weight is not None:
            raise ValueError(
                "Received `sample_weight` without `y`: Keras reads batches as (x, y, "
                "sample_weight). Pass the targets as `y`."
            )
        self._y = None if y is None else _to_numpy("y", y)
        self._sample_weight = None if sample_weight is None else _to_numpy(
            "sample_weight", sample_weight
        )
        for name, value in (("y", self._y), ("sample_weight", self._sample_weight)):
            if value is not None and _num_examples(name, value) != n:
                raise ValueError(
                    f"Expected `{name}` to have as many examples as `x` ({n}). "
                    f"Received: {_num_examples(name, value)} examples."
                )
        self._n = n
        self._shuffle = shuffle
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._requested_batch_size = batch_size
        # The snapshot used by __getitem__ / num_batches: replaced as a whole, never mutated.
        self._snapshot = (batch_size, self._draw_order())
        self._order_is_fresh = True  # the first epoch uses the order drawn here
        self._in_epoch = False
        self._epochs_started = 0
        self._counts = np.zeros(n, dtype=np.int64)
        self._last_epoch_counts = None
        self._examples_seen_per_epoch = []
        self._batch_size_per_epoch = []
        self._pipeline = None  # the tf.data side: tensors and variables, made at first use

    # ----------------------------------------------------------------------------- state

    @property
    def x(self):
        """The training inputs (NumPy arrays, as converted from `x`)."""
        return self._x

    @property
    def num_examples(self):
        """The number of examples (the data set size)."""
        return self._n

    @property
    def batch_size(self):
        """The requested batch size: the active one, or the one the next epoch will use."""
        return self._requested_batch_size

    @batch_size.setter
    def batch_size(self, value):
        self.set_batch_size(value)

    @property
    def active_batch_size(self):
        """The batch size the current (or last) epoch uses.

        Differs from `batch_size` while a request waits for the next epoch's start.
        """
        return self._snapshot[0]

    @property
    def epoch_order(self):
        """A copy of the current epoch's permutation of the example indices."""
        return self._snapshot[1].copy()

    @property
    def epochs_started(self):
        """How many epochs (`on_epoch_begin` calls, across `fit` calls) have started."""
        return self._epochs_started

    @property
    def examples_seen_per_epoch(self):
        """Examples handed to Keras in each finished epoch (equals `num_examples` for each),
        counted by the pipeline as it gathers them (and by `data[i]` reads)."""
        return list(self._examples_seen_per_epoch)

    @property
    def batch_size_per_epoch(self):
        """The batch size each started epoch used, in order."""
        return list(self._batch_size_per_epoch)

    @property
    def last_epoch_counts(self):
        """How often each example was served in the last finished epoch (all 1s), or `None`."""
        return None if self._last_epoch_counts is None else self._last_epoch_counts.copy()

    def set_batch_size(self, batch_size):
        """Requests a new batch size (also `data.batch_size = n`).

        During a Keras loop over this data set or during an epoch, the size applies from the
        next epoch (in `on_epoch_begin`); otherwise at once.

        Args:
            batch_size: the new batch size, a positive integer. Sizes above the number of
                examples give one batch holding all of them.

        Raises:
            TypeError: if `batch_size` is not an integer.
            ValueError: if `batch_size < 1`, or a running `fit` / `evaluate` / `predict`
                over this data set would skip examples: it runs at most the number of steps
                it read at its start, so a size giving more batches is refused. Shrink
                between `fit` calls instead.
        """
        batch_size = _check_batch_size(batch_size)
        loop_steps = self._running_loop_steps()
        new_batches = math.ceil(self._n / batch_size)
        if loop_steps is not None and new_batches > loop_steps:
            raise ValueError(
                f"Cannot set batch_size={batch_size} while a Keras `fit`/`evaluate`/`predict` "
                f"is iterating this data set: it gives {new_batches} batches per epoch, but the "
                f"running loop reads at most {loop_steps} steps per epoch (fixed when it "
                f"started), so Keras would silently skip examples. Expected a batch size >= "
                f"{math.ceil(self._n / loop_steps)} during this run; to shrink further, set "
                "it between two `fit` calls."
            )
        with self._lock:
            self._requested_batch_size = batch_size
            if loop_steps is None and not self._in_epoch:
                self._snapshot = (batch_size, self._snapshot[1])

    def _running_loop_steps(self):
        """Steps per epoch of a Keras loop iterating this data set on this thread, or None."""
        loop = self._running_epoch_iterator()
        return None if loop is None else loop.num_batches

    def _keras_loop_frames(self):
        frame = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            if code.co_name in _KERAS_LOOPS and "epoch_iterator" in code.co_varnames:
                yield frame
            frame = frame.f_back

    def _running_epoch_iterator(self):
        for frame in self._keras_loop_frames():
            iterator = frame.f_locals.get("epoch_iterator")
            adapter = getattr(iterator, "data_adapter", None)
            if adapter is self or getattr(adapter, "py_dataset", None) is self:
                return iterator
        return None

    def _running_class_weight(self):
        """The `class_weight` of the Keras `fit` building this data set's pipeline, or None
        (Keras hands a `DataAdapter` over as it is, without it)."""
        for frame in self._keras_loop_frames():
            if "class_weight" in frame.f_code.co_varnames:
                return frame.f_locals.get("class_weight")
        return None

    def _draw_order(self):
        if self._shuffle:
            return self._rng.permutation(self._n)
        return np.arange(self._n)

    # ------------------------------------------------------------------------- PyDataset

    @property
    def num_batches(self):
        """Batches in the current epoch: `ceil(num_examples / active_batch_size)`."""
        return math.ceil(self._n / self._snapshot[0])

    def __len__(self):
        return self.num_batches

    def batch_indices(self, index):
        """The example indices of batch `index` of the current epoch.

        Args:
            index: the batch position, `0 <= index < num_batches` (negative counts from the
                end).

        Returns:
            An `int64` numpy array of example indices.

        Raises:
            IndexError: if `index` is out of range.
            TypeError: if `index` is not an integer.
        """
        batch_size, order = self._snapshot
        return self._indices(index, batch_size, order)

    def _indices(self, index, batch_size, order):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"Expected an integer batch index. Received: {index!r}")
        num_batches = math.ceil(self._n / batch_size)
        if index < 0:
            index += num_batches
        if not 0 <= index < num_batches:
            raise IndexError(
                f"Batch index out of range: expected 0 <= index < {num_batches} "
                f"(batch_size={batch_size}, {self._n} examples). Received: {index}"
            )
        return order[index * batch_size : (index + 1) * batch_size]

    def _structure(self):
        """`(x,)`, `(x, y)` or `(x, y, sample_weight)` of the whole data set."""
        data = (self._x,)
        if self._y is not None:
            data += (self._y,)
        if self._sample_weight is not None:
            data += (self._sample_weight,)
        return data

    def __getitem__(self, index):
        """Batch `index` of the current epoch as numpy arrays (what the pipeline yields)."""
        batch_size, order = self._snapshot  # one atomic read: never mixes two snapshots
        indices = self._indices(index, batch_size, order)
        if self._in_epoch:
            with self._lock:
                self._counts[indices] += 1
        return keras.tree.map_structure(lambda a: a[indices], self._structure())

    def on_epoch_begin(self):
        """Starts an epoch: applies the requested batch size and draws the new permutation.

        Called by Keras at the start of every epoch of `fit` / `evaluate` / `predict`, after
        the callbacks' `on_epoch_begin` and before any batch of the epoch is read.

        Raises:
            ValueError: if the running `fit` was given `steps_per_epoch`, or multi-worker
                loading is enabled: an iterator then spans epochs and a pass would mix sizes.
        """
        if self._workers > 1 or self._use_multiprocessing:
            raise ValueError(
                "DynamicBatches does not support `workers > 1` or `use_multiprocessing=True`: "
                "it gathers its batches in a tf.data pipeline, not in Keras' worker queue. "
                f"Received: workers={self._workers}, "
                f"use_multiprocessing={self._use_multiprocessing}. Keep the defaults."
            )
        loop = self._running_epoch_iterator()
        if loop is not None and loop.steps_per_epoch:
            raise ValueError(
                "DynamicBatches defines an epoch as one pass over the data, so do not pass "
                f"`steps_per_epoch` to `fit`. Received: steps_per_epoch={loop.steps_per_epoch}. "
                "Remove it."
            )
        with self._lock:
            order = self._snapshot[1] if self._order_is_fresh else self._draw_order()
            self._order_is_fresh = False
            self._snapshot = (self._requested_batch_size, order)
            self._counts = np.zeros(self._n, dtype=np.int64)
            self._in_epoch = True
            self._epochs_started += 1
            self._batch_size_per_epoch.append(self._requested_batch_size)
            if self._pipeline is not None:
                self._pipeline.start_epoch(*self._snapshot)

    def on_epoch_end(self):
        """Ends an epoch: records how many examples it served (`examples_seen_per_epoch`)."""
        with self._lock:
            if not self._in_epoch:  # Keras' reset() calls this before the first epoch
                return
            self._in_epoch = False
            counts = self._counts
            if self._pipeline is not None:
                counts = counts + self._pipeline.served()
            self._last_epoch_counts = counts
            self._examples_seen_per_epoch.append(int(counts.sum()))

    # ----------------------------------------------------------------------- DataAdapter

    def get_tf_dataset(self):
        """The `tf.data` pipeline Keras iterates once per epoch (see the module docstring).

        Every iterator lays out the batches of the epoch started last (`on_epoch_begin`), at
        its first element: gathers of the in-memory tensors along the epoch's permutation,
        in batches of its size, in a parallel `map`.
        """
        with self._lock:
            if self._pipeline is None:
                self._pipeline = _Pipeline(self._pipeline_structure())
                # Keep one copy of the examples: numpy views of the pipeline's tensors.
                self._adopt_views(self._pipeline.numpy_views())
            self._pipeline.start_epoch(*self._snapshot)
        return self._pipeline.dataset(self._gather, self._running_class_weight(),
                                      self._parallel_gathers)

    def _pipeline_structure(self):
        """The examples the pipeline holds as tensors (a hook for subclasses)."""
        return self._structure()

    def _adopt_views(self, views):
        """Takes numpy views of the pipeline's tensors as the examples (one copy kept)."""
        self._x, self._y, self._sample_weight = (views + (None, None))[:3]

    # Gathers run in a parallel map (its output keeps the order); a subclass recording what
    # `_gather` reads, in order, sets None (one gather at a time).
    _parallel_gathers = tf.data.AUTOTUNE

    def _gather(self, indices, data):
        """The batch of example `indices` (an int64 tensor) of `data` (the tensors), in the
        pipeline (a hook for tests that record what is read)."""
        return tf.nest.map_structure(lambda tensor: tf.gather(tensor, indices), data)

    def get_numpy_iterator(self):
        """The current epoch's batches as numpy arrays, in order."""
        for index in range(self.num_batches):
            yield self[index]

    @property
    def has_partial_batch(self):
        """Whether the current epoch's last batch is smaller than the others."""
        return self._n % self._snapshot[0] != 0

    @property
    def partial_batch_size(self):
        """The size of the current epoch's last batch when smaller, else None."""
        return self._n % self._snapshot[0] or None


class _Pipeline:
    """The `tf.data` side of a `DynamicBatches`: the examples as tensors and the three
    variables an epoch's batches are laid out from (its permutation, its batch size, how many
    times each example was gathered). Created outside any distribution strategy's scope when
    possible; the variables are only read by the input pipeline."""

    def __init__(self, structure):
        with tf.init_scope():
            # tf.data would stack a list of inputs into one tensor: tuples stay a structure.
            structure = keras.tree.lists_to_tuples(structure)
            self.tensors = tf.nest.map_structure(tf.convert_to_tensor, structure)
            n = int(tf.nest.flatten(self.tensors)[0].shape[0])
            self.n = n
            self.order = tf.Variable(tf.range(n, dtype=tf.int64), trainable=False,
                                     name="dynamic_batches_order")
            self.batch_size = tf.Variable(tf.constant(1, tf.int64), trainable=False,
                                          name="dynamic_batches_batch_size")
            self.counts = tf.Variable(tf.zeros(n, tf.int64), trainable=False,
                                      name="dynamic_batches_counts")

    def numpy_views(self):
        return tuple(tf.nest.map_structure(lambda t: t.numpy(), part) for part in self.tensors)

    def start_epoch(self, batch_size, order):
        self.order.assign(np.asarray(order, np.int64))
        self.batch_size.assign(batch_size)
        self.counts.assign(tf.zeros(self.n, tf.int64))

    def served(self):
        return self.counts.numpy()

    def _epoch_indices(self, _):
        """The epoch's batches of example indices: the permutation cut into full batches of
        the batch size, then the remainder (read when the epoch's first element is asked)."""
        n = self.n
        order = self.order.read_value()
        batch = self.batch_size.read_value()
        full = n // batch
        head = tf.reshape(order[: full * batch], tf.stack([full, batch]))
        rest = order[full * batch:]
        tail = tf.data.Dataset.from_tensors(rest).take(tf.cast(tf.size(rest) > 0, tf.int64))
        return tf.data.Dataset.from_tensor_slices(head).concatenate(tail)

    def dataset(self, gather, class_weight=None, parallel_calls=tf.data.AUTOTUNE):
        indices = tf.data.Dataset.range(1).flat_map(self._epoch_indices)
        data = tf.data.Dataset.zip((indices, tf.data.Dataset.from_tensors(self.tensors).repeat()))

        def batch(index_batch, tensors):
            self.counts.scatter_add(tf.IndexedSlices(tf.ones_like(index_batch), index_batch))
            return gather(index_batch, tensors)

        data = data.map(batch, num_parallel_calls=parallel_calls)
        if class_weight:
            from keras.src.trainers.data_adapters.tf_dataset_adapter import (
                make_class_weight_map_fn,
            )

            data = data.map(make_class_weight_map_fn(class_weight))
        options = tf.data.Options()
        # As Keras' own array pipeline: no static rewrites (nothing to gain, a graph round
        # trip to pay); the variables are external state; each worker keeps its replicas'
        # share of every global batch.
        options.experimental_optimization.apply_default_optimizations = False
        options.experimental_external_state_policy = (
            tf.data.experimental.ExternalStatePolicy.IGNORE
        )
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        return data.with_options(options).prefetch(tf.data.AUTOTUNE)
