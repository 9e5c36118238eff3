"""Rebuilding a Keras optimizer for narrowed variables, with its slots sliced to match.

Keras optimizers refuse variables they were not built with, so after surgery the optimizer is
rebuilt from its config over the new variables. Its per-variable slots (momentum, Adam's
moments, RMSprop's averages, gradient accumulators, EMA copies: any list attribute aligned with
the optimizer's variables) are sliced with the same kept indices as the variable they belong
to, so training continues as if the removed units had never existed; the step counter and the
current learning rate carry over.
"""

import keras
import numpy as np

from tfdynhp.surgery import variables as variable_utils


def _aligned_slot_lists(optimizer):
    """Names of the optimizer's list attributes that hold one slot per trainable variable."""
    model_variables = optimizer._trainable_variables
    names = []
    for name, value in vars(optimizer).items():
        if not isinstance(value, (list, tuple)) or len(value) != len(model_variables):
            continue
        if not value or not all(v is None or isinstance(v, keras.Variable) for v in value):
            continue
        if any(v is m for v, m in zip(value, model_variables)):
            continue  # the model's variables themselves
        same_shapes = all(
            v is None or tuple(v.shape) == tuple(m.shape) for v, m in zip(value, model_variables)
        )
        if same_shapes and any(v is not None for v in value):
            names.append(name)
    return names


def rebuild_optimizer(optimizer, new_variables, slicers):
    """Returns a new optimizer like `optimizer`, built over `new_variables`, with sliced slots.

    Args:
        optimizer: a built or unbuilt `keras.optimizers.Optimizer`.
        new_variables: the model's trainable variables after surgery, in the same order as the
            variables `optimizer` was built with.
        slicers: one function per variable, `slicer(old_array) -> new_array` (identity for a
            variable that did not change); `None` leaves every slot at its initial value
            (moments reset) while the step count and the learning rate still carry over.

    Raises:
        ValueError: when the optimizer was built over a different number of variables.
    """
    if not optimizer.built:
        return optimizer
    old_variables = optimizer._trainable_variables
    if len(old_variables) != len(new_variables):
        raise ValueError(
            f"The optimizer tracks {len(old_variables)} variables but the model has "
            f"{len(new_variables)} trainable variables; recompile the model."
        )
    learning_rate = optimizer.learning_rate
    new_optimizer = optimizer.__class__.from_config(optimizer.get_config())
    new_optimizer.build(list(new_variables))
    new_optimizer.iterations.assign(optimizer.iterations)
    if isinstance(optimizer._learning_rate, keras.Variable):
        new_optimizer.learning_rate = float(keras.ops.convert_to_numpy(learning_rate))
    if slicers is None:
        return new_optimizer
    for name in _aligned_slot_lists(optimizer):
        new_slots = getattr(new_optimizer, name, None)
        old_slots = getattr(optimizer, name)
        if new_slots is None or len(new_slots) != len(old_slots):
            raise ValueError(f"Optimizer slot list '{name}' did not rebuild; cannot slice it.")
        for old_slot, new_slot, slicer in zip(old_slots, new_slots, slicers):
            if old_slot is not None and new_slot is not None:
                new_slot.assign(slicer(variable_utils.to_numpy(old_slot)))
    return new_optimizer


def identity_slicer(array):
    return np.asarray(array)


def _gradient_slots(optimizer):
    """`(running means of the gradient, running means of its square)`: the slot-list names of
    the Keras optimizers whose state is known to scale with the gradient (Adam, AdamW, Nadam,
    Lamb; Lion keeps only the first); `((), ())` for the others."""
    if isinstance(optimizer, (keras.optimizers.Adam, keras.optimizers.Nadam,
                              keras.optimizers.Lamb)):
        return ("_momentums",), ("_velocities", "_velocity_hats")
    if isinstance(optimizer, keras.optimizers.Lion):
        return ("_momentums",), ()
    return (), ()


def rescale_gradient_slots(optimizer, variable, factor):
    """Scales the optimizer's state of `variable` after a re-parameterization that multiplies
    its gradients by `factor` (an array broadcasting against it): running means of the
    gradient by `factor`, of its square by `factor ** 2`, so that the state is what it would
    be had training always used the new parameters (Adam, AdamW, Nadam, Lamb, Lion, also
    inside a `LossScaleOptimizer`). Other optimizers' state is left as it is.

    Returns:
        Whether any state was scaled.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if optimizer is None or not optimizer.built:
        return False
    index = next((i for i, v in enumerate(optimizer._trainable_variables) if v is variable),
                 None)
    if index is None:
        return False
    first, second = _gradient_slots(optimizer)
    scaled = False
    for names, power in ((first, 1), (second, 2)):
        for name in names:
            slots = getattr(optimizer, name, None)
            if slots and len(slots) > index and slots[index] is not None:
                slot = slots[index]
                slot.assign(variable_utils.to_numpy(slot) * np.asarray(factor) ** power)
                scaled = True
    return scaled
