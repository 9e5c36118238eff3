"""The full accounting matches the variables TensorFlow holds and the tensors one training step
really produces, for MLPs and for CNNs with residual and concatenating branches."""

import keras
import numpy as np
import pytest
from conftest import make_mlp
from keras import layers

import tfdynhp
from tfdynhp.costs import memory
from tfdynhp.graph import graph_nodes
from tfdynhp.layers.gate import HardConcreteGate
from tfdynhp.surgery import apply_keep_masks, prunable_units


def _size(t):
    return int(np.prod(t.shape))


def _cnn():
    inputs = keras.Input((10, 10, 2))
    x = layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    y = layers.Conv2D(6, 3, padding="same")(x)
    x = layers.ReLU()(layers.Add()([x, layers.BatchNormalization()(y)]))
    x = layers.Concatenate()([layers.Conv2D(3, 1)(x), layers.DepthwiseConv2D(3)(
        layers.ZeroPadding2D()(x))])
    x = layers.MaxPooling2D()(x)
    x = layers.Dense(5, activation="relu")(layers.Flatten()(x))
    return keras.Model(inputs, layers.Dense(4, activation="softmax")(x))


@pytest.fixture(params=["mlp", "cnn"])
def pruned_trained_model(request):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    if request.param == "mlp":
        base = make_mlp(20, [16, 8], 4, batchnorm=True, dropout=0.1)
        x = rng.normal(size=(64, 20)).astype("float32")
    else:
        base = _cnn()
        x = rng.normal(size=(64, 10, 10, 2)).astype("float32")
    model = tfdynhp.gate(base, seed=0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, np.arange(64) % 4, epochs=1, verbose=0)
    apply_keep_masks(model, {name: np.arange(units) % 3 != 0
                             for name, units in prunable_units(model).items()})
    return model, x


def test_variables_match_tensorflow_sizes(pruned_trained_model):
    model, _ = pruned_trained_model
    breakdown = memory.full_breakdown(model, batch_size=8)
    gates = [layer for layer in model.layers if isinstance(layer, HardConcreteGate)]
    gate_state = {id(v) for g in gates for v in g.weights}
    # log_alpha and the gates' own Adam moments; one gradient per trainable value and gate.
    assert breakdown.gates == 4 * sum(_size(v) for g in gates for v in (
        g.log_alpha, g.gate_first_moment, g.gate_second_moment))
    assert breakdown.weights == 4 * sum(_size(v) for v in model.weights
                                        if id(v) not in gate_state)
    assert breakdown.gradients == 4 * (sum(_size(v) for v in model.trainable_variables)
                                       + sum(_size(g.log_alpha) for g in gates))
    optimizer = model.optimizer
    slots = [v for v in optimizer.variables
             if v is not optimizer.iterations and v is not optimizer._learning_rate]
    assert breakdown.optimizer_slots == 4 * sum(_size(v) for v in slots) > 0
    assert memory.parameter_count(model) == tfdynhp.strip(model).count_params()


def test_activations_match_the_tensors_of_a_training_step(pruned_trained_model):
    model, x = pruned_trained_model
    batch = 8
    nodes = graph_nodes(model)
    every_output = keras.Model(model.inputs, [t for node in nodes for t in node.outputs])
    produced = every_output(x[:batch], training=True)
    sampled_gates = sum(
        batch * int(node.outputs[0].shape[-1])
        for node in nodes if isinstance(node.operation, HardConcreteGate)
    )
    breakdown = memory.full_breakdown(model, batch_size=batch)
    assert breakdown.activations == 4 * (sum(_size(t) for t in produced) + sampled_gates)
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


def test_a_compiled_dense_model_counts_its_optimizer_slots():
    # Before compile there is no optimizer to count; after it Adam's two slots are counted
    # (estimated by type until the optimizer is built, then read from its variables).
    model = make_mlp(784, [300, 100], 10)
    before = memory.full_breakdown(model, 128)
    model.compile(keras.optimizers.Adam(), "sparse_categorical_crossentropy")
    compiled = memory.full_breakdown(model, 128)
    assert before.optimizer_slots == 0
    assert compiled.optimizer_slots == 4 * 2 * 266_610
    model.optimizer.build(model.trainable_variables)
    assert memory.full_breakdown(model, 128).optimizer_slots == compiled.optimizer_slots


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.optimizers.Adam(),
        lambda: keras.optimizers.Adam(amsgrad=True),
        lambda: keras.optimizers.AdamW(amsgrad=True, use_ema=True),
        lambda: keras.optimizers.SGD(),
        lambda: keras.optimizers.SGD(momentum=0.9, gradient_accumulation_steps=3),
        lambda: keras.optimizers.RMSprop(momentum=0.9, centered=True, use_ema=True),
        lambda: keras.optimizers.Nadam(),
        lambda: keras.optimizers.Adagrad(gradient_accumulation_steps=2),
        lambda: keras.optimizers.Lion(),
        lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(amsgrad=True)),
    ],
    ids=["adam", "amsgrad", "adamw-amsgrad-ema", "sgd", "sgd-momentum-accumulation",
         "rmsprop-centered-ema", "nadam", "adagrad-accumulation", "lion", "loss-scale-amsgrad"],
)
def test_optimizer_state_estimated_before_build_is_what_build_creates(make):
    """Before the optimizer is built its slots are estimated from its type and options
    (amsgrad, EMA, gradient accumulation, loss scaling); after, counted (review finding 2)."""
    model = make_mlp(20, [16, 8], 4)
    optimizer = make()
    n_trainable = sum(_size(v) for v in model.trainable_variables)
    estimate = memory.optimizer_slot_values(optimizer, n_trainable)
    optimizer.build(model.trainable_variables)
    per_weight = sum(_size(v) for v in optimizer.variables if len(v.shape))
    assert estimate == per_weight
    scalars = sum(1 for v in optimizer.variables if not len(v.shape))
    assert per_weight <= memory.optimizer_slot_values(optimizer, n_trainable) <= per_weight + scalars
