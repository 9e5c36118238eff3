"""Rebuilding a Keras optimizer for narrowed variables, with its state sliced to match.

Keras optimizers refuse variables they were not built with, so after surgery the optimizer is
rebuilt over the new variables with every option of the old one: its config, the options
Keras keeps outside the config (weight-decay exclusions, a learning-rate schedule or callable
object) and, for a `LossScaleOptimizer`, its inner optimizer, rebuilt the same way. Then
every variable of the new optimizer receives the old one's value:

- per-variable slots (momentum, Adam's moments and amsgrad maxima, RMSprop's averages,
  gradient accumulators, the EMA copies of the weights: any list attribute aligned with the
  optimizer's variables) are sliced with the same kept indices as the variable they belong
  to, so training continues as if the removed units had never existed;
- everything else (step counters, the learning rate, a loss scale and its counter) is copied.

With `reset_slots=True` the moments and accumulators stay at their initial values instead; the
EMA copies are still sliced (they are weights, not statistics: zeros would replace the weights
at the end of `fit`).
"""

import warnings

import keras
import numpy as np

from tfdynhp.surgery import variables as variable_utils

# Slot lists that hold copies of the weights rather than statistics of the gradients.
WEIGHT_COPIES = ("_model_variables_moving_average",)


def _optimizers(optimizer):
    """`optimizer` and the optimizers it wraps (a `LossScaleOptimizer`'s inner optimizer)."""
    found = [optimizer]
    inner = getattr(optimizer, "inner_optimizer", None)
    if isinstance(inner, keras.optimizers.Optimizer):
        found += _optimizers(inner)
    return found


def _aligned_slot_lists(optimizer):
    """`{name: list}` of the optimizer's list attributes holding one slot per trainable
    variable (entries may be None), whatever their shapes."""
    model_variables = getattr(optimizer, "_trainable_variables", [])
    found = {}
    if not model_variables:
        return found
    for name, value in vars(optimizer).items():
        if not isinstance(value, (list, tuple)) or len(value) != len(model_variables):
            continue
        if not any(v is not None for v in value):
            continue
        if not all(v is None or isinstance(v, keras.Variable) for v in value):
            continue
        if any(v is m for v, m in zip(value, model_variables)):
            continue  # the model's variables themselves
        found[name] = value
    return found


def _slot_owners(optimizer):
    """`{id(slot): (variable index, slot list name)}` over `optimizer` and its inner ones."""
    owners = {}
    for part in _optimizers(optimizer):
        for name, slots in _aligned_slot_lists(part).items():
            for index, slot in enumerate(slots):
                if slot is not None:
                    owners[id(slot)] = (index, name)
    return owners


def _fresh_copy(optimizer, old_variables, new_variables):
    """An unbuilt optimizer with every option of `optimizer`, its weight-decay exclusions
    moved from `old_variables` to `new_variables`."""
    config = optimizer.get_config()
    inner = getattr(optimizer, "inner_optimizer", None)
    if isinstance(inner, keras.optimizers.Optimizer):
        rest = {k: v for k, v in config.items() if k != "inner_optimizer"}
        copy = optimizer.__class__(_fresh_copy(inner, old_variables, new_variables), **rest)
    else:
        rate = getattr(optimizer, "_learning_rate", None)
        if rate is not None and not isinstance(rate, keras.Variable):
            config["learning_rate"] = rate  # the schedule (or callable) object itself
        copy = optimizer.__class__.from_config(config)
    excluded = getattr(optimizer, "_exclude_from_weight_decay", None)
    pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
    if excluded or pattern is not None:
        moved = {optimizer._var_key(old): copy._var_key(new)
                 for old, new in zip(old_variables, new_variables)}
        copy._exclude_from_weight_decay = {moved.get(key, key) for key in excluded or ()}
        copy._exclude_from_weight_decay_pattern = pattern
        copy._exclude_from_weight_decay_cache = {}
    return copy


def rebuild_optimizer(optimizer, new_variables, slicers, reset_slots=False):
    """Returns a new optimizer like `optimizer`, built over `new_variables`, with its state.

    Args:
        optimizer: a built or unbuilt `keras.optimizers.Optimizer` (an unbuilt one is
            returned as is).
        new_variables: the model's trainable variables after surgery, in the same order as the
            variables `optimizer` was built with.
        slicers: one function per variable, `slicer(old_array) -> new_array` (identity for a
            variable that did not change).
        reset_slots: leave the moments and gradient accumulators at their initial values
            (the step count, the learning rate, a loss scale and the EMA copies of the
            weights still carry over). Defaults to `False`.

    Raises:
        ValueError: when the optimizer was built over a different number of variables, or
            the rebuilt optimizer's variables do not match the old one's.
    """
    if not optimizer.built:
        return optimizer
    old_variables = optimizer._trainable_variables
    if len(old_variables) != len(new_variables) or len(slicers) != len(new_variables):
        raise ValueError(
            f"The optimizer tracks {len(old_variables)} variables but the model has "
            f"{len(new_variables)} trainable variables; recompile the model."
        )
    new_optimizer = _fresh_copy(optimizer, old_variables, new_variables)
    new_optimizer.build(list(new_variables))
    old_state, new_state = optimizer.variables, new_optimizer.variables
    if len(old_state) != len(new_state) or any(
        o.name != n.name for o, n in zip(old_state, new_state)
    ):
        raise ValueError(
            f"Rebuilding optimizer '{optimizer.name}' ({type(optimizer).__name__}) created "
            f"other variables ({[v.name for v in new_state]}) than it had "
            f"({[v.name for v in old_state]}); cannot carry its state over."
        )
    owners = _slot_owners(optimizer)
    unsliceable = set()
    for old, new in zip(old_state, new_state):
        owner = owners.get(id(old))
        if owner is None:
            if tuple(old.shape) != tuple(new.shape):
                raise ValueError(
                    f"Optimizer variable '{old.path}' changed shape from {tuple(old.shape)} "
                    f"to {tuple(new.shape)} but belongs to no model variable; cannot slice it."
                )
            new.assign(old)
            continue
        index, list_name = owner
        if reset_slots and list_name not in WEIGHT_COPIES:
            continue
        value = variable_utils.to_numpy(old)
        if tuple(old.shape) == tuple(old_variables[index].shape):
            new.assign(slicers[index](value))
        elif tuple(old_variables[index].shape) == tuple(new_variables[index].shape):
            new.assign(value)  # a slot of another shape, of a variable that did not change
        else:
            unsliceable.add(list_name)  # a factored slot (Adafactor): stays at its initial value
    if unsliceable:
        warnings.warn(
            f"Optimizer {type(optimizer).__name__}: the slots {sorted(unsliceable)} of the "
            "narrowed variables do not have their variable's shape and cannot be sliced "
            "exactly; they restart from their initial values.",
            stacklevel=3,
        )
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
