"""`RotatingBatches`: `DynamicBatches` over several renderings of the same examples, one per
epoch in turn (augmentation prepared offline, e.g. `tfdynhp.datasets.kws.renderings`)."""

import keras

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

    @property
    def num_renderings(self):
        return len(self._views)

    def on_epoch_begin(self):
        """As `DynamicBatches.on_epoch_begin`, then selects the epoch's rendering."""
        super().on_epoch_begin()
        self._x = self._views[(self._epochs_started - 1) % len(self._views)]
