"""The full accounting matches the tensors TensorFlow really holds for the model."""

import keras
import numpy as np
import pytest
from conftest import make_mlp

import tfdynhp
from tfdynhp import memory
from tfdynhp.surgery import apply_keep_masks, gated_layers, layer_chain
from tfdynhp.taps import record_dense_taps


def _size(t):
    return int(np.prod(t.shape))


@pytest.fixture
def pruned_trained_model():
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(make_mlp(20, [16, 8], 4, batchnorm=True, dropout=0.1), seed=0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 20)).astype("float32")
    model.fit(x, np.arange(64) % 4, epochs=1, verbose=0)
    first, second, _ = gated_layers(model)
    apply_keep_masks(model, {first.name: np.arange(20) % 3 != 0,
                             second.name: np.arange(16) % 2 == 0})
    return model, x


def test_variables_match_tensorflow_sizes(pruned_trained_model):
    model, _ = pruned_trained_model
    breakdown = memory.full_breakdown(model, batch_size=8)
    gate_vars = [layer.log_alpha for layer in gated_layers(model)]
    counters = [v for layer in gated_layers(model)
                for v in (layer.gate_active_count, layer.gate_observations)]
    seed_states = [v for v in model.weights if "seed_generator" in v.path]
    others = [v for v in model.weights
              if not any(v is g for g in gate_vars + counters + seed_states)]
    assert breakdown.gates == 4 * sum(_size(v) for v in gate_vars)
    assert breakdown.weights == 4 * sum(_size(v) for v in others)
    assert breakdown.gradients == 4 * sum(_size(v) for v in model.trainable_variables)
    optimizer = model.optimizer
    slots = [v for v in optimizer.variables
             if v is not optimizer.iterations and v is not optimizer._learning_rate]
    assert breakdown.optimizer_slots == 4 * sum(_size(v) for v in slots)


def test_activations_match_the_tensors_of_a_training_pass(pruned_trained_model):
    model, x = pruned_trained_model
    batch = 8
    h = x[:batch]
    produced = 0
    with record_dense_taps() as taps:
        for layer in layer_chain(model):
            h = layer(h, training=True)
            produced += _size(h)
    gates_and_gated_inputs = 2 * sum(_size(inputs) for _, inputs, _ in taps)
    breakdown = memory.full_breakdown(model, batch_size=batch)
    assert breakdown.activations == 4 * (produced + gates_and_gated_inputs)
    assert breakdown.input_batch == 4 * _size(x[:batch])


def test_paper_accounting_counts_dense_weights_and_one_input_batch():
    base = make_mlp(784, [300, 100], 10)
    model = tfdynhp.gate(base)
    total, fixed, per_example = memory.training_memory(model, 128, "paper")
    assert fixed == 266_610 * 4 == 1_066_440  # LeNet-300-100, as in the paper
    assert per_example == 784 * 4
    assert total == fixed + 128 * 784 * 4
    with pytest.raises(ValueError, match="accounting"):
        memory.training_memory(model, 1, "exact")
