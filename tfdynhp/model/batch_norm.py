"""Re-estimating BatchNormalization statistics for the network as it is now.

A BatchNormalization layer normalizes at test time with moving averages of the batch
statistics it saw in training (momentum 0.99: the last ~100 steps, computed by weights that
kept changing). After units are cut, the layers downstream see other statistics, and a short
run's averages lag the weights anyway: on a Fashion-MNIST CNN after 3 epochs, validation
accuracy is 0.55 with the moving averages and 0.80 with statistics re-estimated on 2,560
training examples; a cut of 10 % of its MACs costs 6 points with the old statistics and 1.4
with re-estimated ones (`bench/defaults.md`). Judging a cut by the first number refuses cuts
the network does not mind. EagleEye (Li et al., ECCV 2020, "adaptive batch normalization")
makes the same point for ranking pruned candidates.

`recalibrate_batch_norm` replaces the moving statistics of every trainable BatchNormalization
layer by the exact mean of the batch statistics on the given examples (training-mode forward
passes, no weight changes) and returns what it replaced, for `restore_batch_norm`.
"""

import keras
import numpy as np
import tensorflow as tf

from tfdynhp.model.dynamic_batches import DynamicBatches


def batch_norm_layers(model):
    """The trainable `BatchNormalization` layers of `model`, nested models included (a frozen
    one normalizes with its moving statistics in training too, so they stay)."""
    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.trainable:
                found.append(layer)
            continue
        stack.extend(reversed(getattr(layer, "layers", None) or []))
    return found


def recalibrate_batch_norm(model, x, batch_size=128):
    """Sets the moving mean and variance of `model`'s BatchNormalization layers to the mean of
    their batch statistics over `x` (an array, batched by `batch_size`; each batch weighted by
    its examples), computed by training-mode forward passes with the gates at their
    test-time values and dropout off (the statistics serve test time): no weight, optimizer
    or gate state changes.

    The passes run in one traced function, kept with the model until its variables change
    (a surgery): the tolerance rule re-estimates several times per epoch end, and eager
    passes took 1.2 s each on MobileNet 0.25 (a third of its fit; `bench/defaults.md` §9).

    Returns:
        What it replaced, for `restore_batch_norm`; `[]` when the model has no such layer.
    """
    layers = batch_norm_layers(model)
    x = np.asarray(x)
    if not layers or not len(x):
        return []
    saved = [(layer, np.array(layer.moving_mean.numpy()), np.array(layer.moving_variance.numpy()),
              layer.momentum) for layer in layers]
    # The statistics serve test time, where the gates take their test-time values: sample
    # none (a frozen gate applies those in training mode too, and counts nothing).
    sampling = [g for g in getattr(model, "gate_layers", None) or [] if not g.frozen]
    for gate in sampling:
        gate.frozen = True
    # Nor dropout: with it on, a later layer's statistics are those of a training-time input
    # (Li et al. 2019, "the variance shift" between dropout and batch normalization).
    noise = _noise_layers(model)
    for layer, attribute, _ in noise:
        setattr(layer, attribute, 0.0)
    # Momentum 0: after a pass the moving statistics are that batch's; their example-weighted
    # mean is accumulated here.
    for layer in layers:
        layer.momentum = 0.0
    try:
        batch_statistics = _statistics_pass(model, layers, x.shape[1:], x.dtype)
        sums = None
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            statistics = [np.asarray(s, np.float64) * len(batch)
                          for s in batch_statistics(batch)]
            sums = statistics if sums is None else [a + b for a, b in zip(sums, statistics)]
        for i, layer in enumerate(layers):
            layer.moving_mean.assign(sums[2 * i] / len(x))
            layer.moving_variance.assign(sums[2 * i + 1] / len(x))
    except BaseException:
        restore_batch_norm(saved)
        raise
    finally:
        for layer, _, _, momentum in saved:
            layer.momentum = momentum
        for gate in sampling:
            gate.frozen = False
        for layer, attribute, value in noise:
            setattr(layer, attribute, value)
    return saved


def _statistics_pass(model, layers, shape, dtype):
    """A traced `batch -> [moving mean, moving variance of each layer]` running `model` in
    training mode, cached on the model while its variables, the layers and the input are the
    same (its trace holds the momentum, gate and dropout settings `recalibrate_batch_norm`
    makes before every call)."""
    variables = list(model.variables)
    key = (tuple(shape), np.dtype(dtype).str, tuple(id(layer) for layer in layers),
           tuple(gate.folded for gate in getattr(model, "gate_layers", None) or []))
    cached = getattr(model, "_tfdynhp_statistics_pass", None)
    if (cached is not None and cached[0] == key and len(cached[1]) == len(variables)
            and all(a is b for a, b in zip(cached[1], variables))):
        return cached[2]

    @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.as_dtype(dtype))])
    def batch_statistics(batch):
        model(batch, training=True)
        return [statistic.value for layer in layers
                for statistic in (layer.moving_mean, layer.moving_variance)]

    # The variables are held (not their ids) so that a new one cannot look like a cached one.
    object.__setattr__(model, "_tfdynhp_statistics_pass", (key, variables, batch_statistics))
    return batch_statistics


def _noise_layers(model):
    """`(layer, attribute, value)` of the layers that add noise in training only (Dropout and
    its spatial, Gaussian and alpha variants by `rate`, GaussianNoise by `stddev`)."""
    found, stack = [], [model]
    noisy = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout)
    while stack:
        layer = stack.pop()
        if isinstance(layer, noisy):
            found.append((layer, "rate", layer.rate))
        elif isinstance(layer, keras.layers.GaussianNoise):
            found.append((layer, "stddev", layer.stddev))
        stack.extend(getattr(layer, "layers", None) or [])
    return found


def restore_batch_norm(saved):
    """Puts back the statistics `recalibrate_batch_norm` replaced."""
    for layer, mean, variance, _ in saved:
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)


def sample_inputs(x, limit=2048, seed=0):
    """Up to `limit` inputs of the training data `x` for `recalibrate_batch_norm`: of arrays
    (or a `DynamicBatches`' arrays) a seeded draw without replacement; of a `tf.data.Dataset`
    or `PyDataset` of `(x, ...)` batches, its first batches. None when `x` gives no single
    input array (several inputs, a generator that cannot be restarted)."""
    if isinstance(x, DynamicBatches):
        x = x.x
    if isinstance(x, np.ndarray) or (hasattr(x, "shape") and hasattr(x, "dtype")):
        x = np.asarray(x)
        if len(x) <= limit:
            return x
        return x[np.sort(np.random.default_rng(seed).permutation(len(x))[:limit])]
    if isinstance(x, keras.utils.PyDataset):
        batches = (x[i] for i in range(x.num_batches or 0))
    elif isinstance(x, tf.data.Dataset):
        batches = iter(x)
    else:
        return None
    parts, count = [], 0
    for element in batches:
        inputs = element[0] if isinstance(element, (tuple, list)) else element
        if isinstance(inputs, (dict, tuple, list)):
            return None
        parts.append(np.asarray(inputs))
        count += len(parts[-1])
        if count >= limit:
            break
    return np.concatenate(parts)[:limit] if parts else None
