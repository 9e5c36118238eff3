"""Replacing a layer's variables in place, keeping their order (Keras saves by position)."""

import keras
import numpy as np


def to_numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


def slice_array(array, axes):
    """`array` with `axes[axis]` indices kept along each listed axis."""
    for axis, keep in sorted(axes.items()):
        array = np.take(array, keep, axis=axis)
    return array


def new_variable_like(layer, old, value):
    """A variable with `old`'s name, dtype, trainability and aggregation holding `value`.

    Created under the layer's name scope so its path matches the original.
    """
    with keras.name_scope(layer.name, caller=layer):
        return keras.Variable(
            initializer=np.asarray(value, dtype=old.dtype),
            dtype=old.dtype,
            trainable=old.trainable,
            aggregation=old.aggregation,
            synchronization=old.synchronization,
            name=old.name,
        )


def swap_variable(layer, old, new):
    """Puts `new` where `old` was: every attribute of `layer` and its position in the layer's
    variable lists (bypassing Keras' tracker, which would append it at the end)."""
    found = False
    for store_name in ("_trainable_variables", "_non_trainable_variables"):
        store = getattr(layer, store_name, [])
        for index, variable in enumerate(store):
            if variable is old:
                store[index] = new
                found = True
    if not found:
        raise ValueError(f"Variable '{old.path}' is not tracked by layer '{layer.name}'.")
    for name, value in list(vars(layer).items()):
        if value is old:
            object.__setattr__(layer, name, new)
    tracker = getattr(layer, "_tracker", None)
    if tracker is not None:
        for ids in tracker.stored_ids.values():
            if id(old) in ids:
                ids.discard(id(old))
                ids.add(id(new))
