"""Task specialization (Balemans et al.): a trained classifier cut down to a few of its classes.

The classifier's head (the last Dense) keeps only the chosen classes' outputs, in the order
given; the units the chosen classes need least (by a criterion, on data of those classes only)
are removed; the smaller model is fine-tuned on those classes. The user's model is left as it
was; the returned model is a plain Keras model that saves and exports like any other.
"""

import numbers

import keras
import numpy as np

from tfdynhp.graph import probes
from tfdynhp.graph import units as graph_lib
from tfdynhp.methods.pruning import prune
from tfdynhp.policies import criteria as criteria_lib
from tfdynhp.validation import check_integer, check_real

_HEAD_PASS = (keras.layers.Softmax, keras.layers.Activation, keras.layers.Dropout)


def _head(model):
    """The Dense layer whose outputs are the model's class scores (through softmax/dropout)."""
    graph_model = graph_lib.functional_of(model)
    if len(graph_model.outputs) != 1:
        raise ValueError("specialize needs a classifier with one output.")
    producers = {id(t): node for node in graph_lib.graph_nodes(model) for t in node.outputs}
    node = producers.get(id(graph_model.outputs[0]))
    while node is not None and isinstance(node.operation, _HEAD_PASS):
        node = producers.get(id(node.input_tensors[0]))
    if node is None or not isinstance(node.operation, keras.layers.Dense):
        found = "nothing" if node is None else type(node.operation).__name__
        raise ValueError(f"specialize needs a classifier ending with a Dense layer (optionally "
                         f"followed by a softmax); '{model.name}' ends with {found}.")
    return node.operation


def check_classes(classes, num_classes):
    """`classes` as a list of distinct ints in `[0, num_classes)`."""
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise ValueError(f"`classes` must be a list of class indices. Received: {classes!r}")
    classes = list(classes)
    if not classes:
        raise ValueError("`classes` is empty; give at least one class index.")
    bad = [c for c in classes if isinstance(c, bool) or not isinstance(c, numbers.Integral)]
    if bad:
        raise ValueError(f"`classes` must be integer class indices. Received: {bad}")
    unknown = [int(c) for c in classes if not 0 <= c < num_classes]
    if unknown:
        raise ValueError(f"`classes` names classes the model does not have: {unknown}. The "
                         f"model has {num_classes} classes (0 to {num_classes - 1}).")
    repeated = sorted({int(c) for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"`classes` repeats {repeated}; list each class once.")
    return [int(c) for c in classes]


def remap_labels(y, classes):
    """The examples of `classes` and their labels renumbered to positions in `classes`.

    Returns:
        `(selected, new_labels)`: a boolean mask over `y` and the new labels of the selected.
    """
    y = np.asarray(y).reshape(-1)
    lookup = {c: i for i, c in enumerate(classes)}
    selected = np.isin(y, classes)
    return selected, np.array([lookup[int(v)] for v in y[selected]], "int32")


def slice_head(model, classes):
    """A copy of `model` whose head outputs only `classes`, in that order (the user's model
    is not changed)."""
    head = _head(model)

    def clone(layer):
        config = layer.get_config()
        if layer is head:
            config["units"] = len(classes)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, copy.layers):
        weights = old.get_weights()
        if old is head:
            weights = [w[..., classes] for w in weights]
        new.set_weights(weights)
    return copy


def _loss_for(model):
    from tfdynhp.policies.criteria import _ends_with_softmax

    return keras.losses.SparseCategoricalCrossentropy(from_logits=not _ends_with_softmax(model))


def specialize(model, classes, data, criterion="taylor", fraction=0.5, steps=1, epochs=2,
               batch_size=32, learning_rate=1e-3, score_examples=512, min_units=1, seed=0,
               verbose=0):
    """A copy of the trained classifier `model`, specialized to `classes`.

    1. The head keeps the outputs of `classes` in the order given (output `i` is class
       `classes[i]`).
    2. In each of `steps` rounds, the criterion scores the units on (up to `score_examples`)
       examples of those classes, each prunable group loses the same share of its units (in
       all, `fraction` of them), and the model is fine-tuned for `epochs` on the classes'
       data (Adam, `learning_rate`).

    Args:
        model: a trained plain (ungated) Keras classifier ending with a Dense layer.
        classes: class indices to keep, e.g. `[3, 0]`.
        data: `(x, y)` with integer labels of the original classes; only examples of
            `classes` are used.
        criterion: a criterion name or object (`tfdynhp.policies.criteria`). Defaults to "taylor".
        fraction: share of each prunable group's units removed in all. Defaults to 0.5.
        steps: pruning rounds. Defaults to 1.
        epochs: fine-tuning epochs after each round (0 for none). Defaults to 2.
        batch_size: fine-tuning batch size. Defaults to 32.
        learning_rate: fine-tuning Adam step. Defaults to 1e-3.
        score_examples: examples the criterion reads. Defaults to 512.
        min_units: units every group keeps. Defaults to 1.
        seed: seeds the example choice and fine-tuning. Defaults to 0.
        verbose: Keras fit verbosity. Defaults to 0.

    Returns:
        The specialized, compiled Keras model (labels are positions in `classes`; map new
        labels with `remap_labels`).

    Raises:
        ValueError: unknown or repeated classes, no data of a class, an unknown criterion, a
            model without a Dense head. The user's model is never changed.

    Example:
    >>> small = tfdynhp.specialize(model, classes=[0, 7], data=(x, y), criterion="lrp")
    >>> small.predict(x_new).argmax(-1)  # 0 for class 0, 1 for class 7
    """
    if getattr(model, "gate_layers", None):
        raise ValueError("specialize works on plain models; call tfdynhp.strip(model) first.")
    criterion = criteria_lib.get(criterion)
    head = _head(model)
    classes = check_classes(classes, int(head.units))
    check_real("fraction", fraction, 0.0, 1.0)
    steps = check_integer("steps", steps, 1)
    epochs = check_integer("epochs", epochs, 0)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError("specialize needs labelled data: `data=(x, y)`.")
    x, y = np.asarray(data[0]), np.asarray(data[1]).reshape(-1)
    probes.check_data((x, y), "specialize", needs_labels=True)
    missing = [c for c in classes if not np.any(y == c)]
    if missing:
        raise ValueError(f"`data` has no examples of classes {missing}.")
    selected, labels = remap_labels(y, classes)
    x_task = x[selected]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_task))[:score_examples]
    score_data = (x_task[order], labels[order])

    keras.utils.set_random_seed(seed)
    special = slice_head(model, classes)
    keep_per_step = (1.0 - fraction) ** (1.0 / steps)
    for _ in range(steps):
        special.compile(keras.optimizers.Adam(learning_rate), _loss_for(special),
                        metrics=["accuracy"])
        prune(special, criterion, fraction=1.0 - keep_per_step, data=score_data,
              min_units=min_units)
        if epochs:
            special.fit(x_task, labels, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return special
