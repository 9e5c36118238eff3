"""Re-estimating BatchNormalization statistics (`tfdynhp.model.batch_norm`) and the tolerance
rule's use of it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdynhp
from tfdynhp.model import DynamicBatches
from tfdynhp.model.batch_norm import (
    batch_norm_layers,
    recalibrate_batch_norm,
    restore_batch_norm,
    sample_inputs,
)
from tfdynhp.policies import tolerance as tolerance_lib


def _dense_bn(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="dense")(inputs)
    outputs = keras.layers.BatchNormalization(name="bn")(hidden)
    return keras.Model(inputs, outputs)


def _inputs(n=96, seed=0):
    return np.random.default_rng(seed).normal(2.0, 3.0, size=(n, 4)).astype("float32")


def test_statistics_become_the_example_weighted_mean_of_batch_statistics():
    model, x = _dense_bn(), _inputs(100)
    kernel = model.get_layer("dense").kernel.numpy().copy()
    recalibrate_batch_norm(model, x, batch_size=32)  # batches of 32, 32, 32, 4
    hidden = model.get_layer("dense")(x).numpy()
    batches = [hidden[i:i + 32] for i in range(0, 100, 32)]
    weights = np.array([len(b) for b in batches], np.float64) / 100
    mean = sum(w * b.mean(0) for w, b in zip(weights, batches))
    variance = sum(w * b.var(0) for w, b in zip(weights, batches))
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variance, rtol=1e-3)
    assert bn.momentum == pytest.approx(0.99)  # put back
    np.testing.assert_array_equal(model.get_layer("dense").kernel.numpy(), kernel)


def test_dropout_is_off_while_statistics_are_estimated():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="dense")(inputs)
    dropped = keras.layers.Dropout(0.5, name="dropout")(hidden)
    outputs = keras.layers.BatchNormalization(name="bn")(dropped)
    model = keras.Model(inputs, outputs)
    x = _inputs(64)
    recalibrate_batch_norm(model, x, batch_size=64)
    hidden = model.get_layer("dense")(x).numpy()
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), hidden.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), hidden.var(0), rtol=1e-3)
    assert model.get_layer("dropout").rate == 0.5  # put back


def test_restore_puts_back_the_statistics():
    model = _dense_bn()
    bn = model.get_layer("bn")
    before = bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()
    saved = recalibrate_batch_norm(model, _inputs())
    assert not np.allclose(bn.moving_mean.numpy(), before[0])
    restore_batch_norm(saved)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before[0])
    np.testing.assert_array_equal(bn.moving_variance.numpy(), before[1])


def test_frozen_batch_norm_and_models_without_one_are_left_alone():
    model = _dense_bn()
    model.get_layer("bn").trainable = False
    assert batch_norm_layers(model) == []
    assert recalibrate_batch_norm(model, _inputs()) == []
    np.testing.assert_array_equal(model.get_layer("bn").moving_mean.numpy(), np.zeros(3))
    nested = keras.Sequential([keras.Input((4,)), _dense_bn(1)])
    assert [layer.name for layer in batch_norm_layers(nested)] == ["bn"]


def test_gates_take_test_time_values_and_stay_unfrozen():
    model = tfdynhp.gate(_dense_bn(), seed=0)
    gate = model.gate_layers[0]
    assert not gate.frozen
    counts = gate.gate_active_count.numpy().copy(), gate.gate_observations.numpy().copy()
    recalibrate_batch_norm(model, _inputs())
    np.testing.assert_array_equal(gate.gate_active_count.numpy(), counts[0])
    np.testing.assert_array_equal(gate.gate_observations.numpy(), counts[1])
    assert not gate.frozen


def test_the_traced_pass_is_reused_until_a_surgery_and_then_measures_the_narrow_network():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, name="dense")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    outputs = keras.layers.Dense(2, name="out")(keras.layers.ReLU()(hidden))
    model = tfdynhp.gate(keras.Model(inputs, outputs), seed=0)
    x = _inputs(100)
    recalibrate_batch_norm(model, x, batch_size=32)
    first = model._tfdynhp_statistics_pass[2]
    recalibrate_batch_norm(model, x[:50], batch_size=32)
    assert model._tfdynhp_statistics_pass[2] is first
    groups = tfdynhp.graph.gated_groups(model)
    assert [g.units for g in groups] == [4, 6]  # the inputs, the BatchNormalization's units
    tfdynhp.surgery.apply_keep_masks(model, {groups[1].name: np.arange(6) % 2 == 0})
    recalibrate_batch_norm(model, x, batch_size=32)
    assert model._tfdynhp_statistics_pass[2] is not first
    hidden = model.get_layer("dense")(model.get_layer(groups[0].gate.name)(x)).numpy()
    batches = [hidden[i:i + 32] for i in range(0, 100, 32)]
    weights = np.array([len(b) for b in batches], np.float64) / 100
    bn = model.get_layer("bn")
    assert bn.moving_mean.shape == (hidden.shape[1],) == (3,)
    np.testing.assert_allclose(bn.moving_mean.numpy(),
                               sum(w * b.mean(0) for w, b in zip(weights, batches)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(),
                               sum(w * b.var(0) for w, b in zip(weights, batches)), rtol=1e-3)


def test_sample_inputs_of_arrays_datasets_and_dynamic_batches():
    x = np.arange(50, dtype="float32").reshape(25, 2)
    drawn = sample_inputs(x, limit=10, seed=3)
    assert drawn.shape == (10, 2) and len(np.unique(drawn[:, 0])) == 10
    np.testing.assert_array_equal(drawn, sample_inputs(x, limit=10, seed=3))
    assert sample_inputs(x, limit=100).shape == (25, 2)
    y = np.zeros(25, "int64")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    np.testing.assert_array_equal(sample_inputs(dataset, limit=6), x[:6])
    assert sample_inputs(DynamicBatches(x, y, batch_size=4), limit=100).shape == (25, 2)
    multi = tf.data.Dataset.from_tensor_slices(((x, x), y)).batch(4)
    assert sample_inputs(multi) is None


def test_a_trial_judges_a_cut_with_statistics_for_the_cut_network_and_changes_nothing():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    hidden = keras.layers.Dense(8)(hidden)
    hidden = keras.layers.BatchNormalization()(hidden)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.ReLU()(hidden))
    model = tfdynhp.gate(keras.Model(inputs, outputs), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = _inputs(256)
    y = (x[:, 0] > 2.0).astype("int64")
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    bn = batch_norm_layers(model)[0]
    bn.moving_mean.assign(bn.moving_mean.numpy() + 50.0)  # statistics that lag badly
    state = [v.numpy().copy() for v in model.weights]
    masks = {g.name: np.ones(g.units, bool) for g in tfdynhp.graph.gated_groups(model)}
    stale = tolerance_lib.trial_metric(model, masks, (x, y), "accuracy")
    fresh = tolerance_lib.trial_metric(model, masks, (x, y), "accuracy", inputs=x)
    assert fresh > stale + 0.2
    for before, variable in zip(state, model.weights):
        np.testing.assert_array_equal(variable.numpy(), before)


@pytest.mark.slow
def test_dynhp_default_on_a_batch_norm_cnn_judges_by_recalibrated_validation():
    """End to end: `DynHPCallback()` on a small BatchNormalization CNN (real digits, real
    fit): every epoch records Keras' validation value and the recalibrated one it judges by,
    and the model ends with statistics re-estimated for what was cut."""
    from tfdynhp.callbacks import DynHPCallback

    from tfdynhp import datasets

    (x, y), _ = datasets.load_sklearn("digits")
    x = x.reshape(-1, 8, 8, 1).astype("float32")
    keras.utils.set_random_seed(0)
    plain = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, padding="same"),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.Conv2D(16, 3, padding="same"), keras.layers.BatchNormalization(),
        keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10, activation="softmax")])
    model = tfdynhp.gate(plain, seed=0)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    callback = DynHPCallback()
    model.fit(x[:1000], y[:1000], validation_data=(x[1000:], y[1000:]), epochs=4,
              batch_size=32, verbose=0, callbacks=[callback])
    judged = [h for h in callback.history if "dynhp/tolerance/value" in h]
    assert len(judged) == 4
    for record in judged:
        assert record["dynhp/tolerance/keras_value"] == pytest.approx(record["val_accuracy"])
    final = tolerance_lib.evaluate(model, (x[1000:], y[1000:]), "accuracy")
    assert final == pytest.approx(judged[-1]["dynhp/tolerance/value"], abs=0.02)
    before = [layer.moving_mean.numpy().copy() for layer in batch_norm_layers(model)]
    recalibrate_batch_norm(model, tolerance_lib.training_inputs(
        {"x": x[:1000]}, callback.tolerance.recalibration_examples))
    for mean, layer in zip(before, batch_norm_layers(model)):
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, atol=1e-4)
