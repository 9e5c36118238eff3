"""`RotatingBatches`: `DynamicBatches` over several renderings of the same examples, one per
epoch in turn (augmentation prepared offline, e.g. `tfdynhp.datasets.kws.renderings`)."""

import keras
import tensorflow as tf

from tfdynhp.model.dynamic_batches import DynamicBatches, _num_examples, _to_numpy


class RotatingBatches(DynamicBatches):
    """`DynamicBatches` whose inputs are `xs[e % len(xs)]` in epoch `e` (0-based; epochs
    counted by `on_epoch_begin`, across `fit` calls), with the same targets and the same
    batch-size rules.

    Args:
        xs: a non-empty list of input arrays of the same shape, one per rendering, the same
            examples in the same order (the first is also what Keras inspects before training).
        y, batch_size, shuffle, seed, sample_weight: as `DynamicBatches`.

    Raises:
        ValueError: for an empty list, or renderings of different shapes or lengths.
    """

    def __init__(self, xs, y=None, batch_size=16, shuffle=True, seed=None, sample_weight=None):
        xs = list(xs) if isinstance(xs, (list, tuple)) else None
        if not xs:
            raise ValueError("Expected `xs` to be a non-empty list of input arrays (one per "
                             "rendering of the same examples).")
        super().__init__(xs[0], y, batch_size, shuffle, seed, sample_weight)
        views = [self._x] + [_to_numpy("xs", x) for x in xs[1:]]
        shapes = {tuple(keras.tree.flatten(v)[0].shape) for v in views}
        if len(shapes) != 1 or any(_num_examples("xs", v) != self._n for v in views):
            raise ValueError("Expected every rendering in `xs` to have the same shape (the same "
                             f"examples). Received shapes {sorted(shapes)}.")
        self._views = views
        self._rendering = None  # the tf.data side's epoch rendering, made at first use

    @property
    def num_renderings(self):
        return len(self._views)

    def _current(self):
        return max(self._epochs_started - 1, 0) % len(self._views)

    def on_epoch_begin(self):
        """As `DynamicBatches.on_epoch_begin`, then selects the epoch's rendering."""
        super().on_epoch_begin()
        self._x = self._views[self._current()]
        if self._rendering is not None:
            self._rendering.assign(self._current())

    # The tf.data pipeline holds every rendering and gathers from the epoch's one.

    def _pipeline_structure(self):
        return (tuple(self._views),) + self._structure()[1:]

    def _adopt_views(self, views):
        self._views = list(views[0])
        self._x = self._views[self._current()]
        self._y, self._sample_weight = (views[1:] + (None, None))[:2]
        with tf.init_scope():
            self._rendering = tf.Variable(self._current(), dtype=tf.int32, trainable=False,
                                          name="rotating_batches_rendering")

    def _gather(self, indices, data):
        def take(structure):
            return tf.nest.map_structure(lambda tensor: tf.gather(tensor, indices), structure)

        renderings, rest = data[0], data[1:]
        x = tf.switch_case(self._rendering.read_value(),
                           [(lambda r=r: take(r)) for r in renderings])
        return (x,) + take(rest)
