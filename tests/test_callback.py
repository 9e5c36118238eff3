import csv
import itertools
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import make_mlp
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp.graph import gated_groups

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")


def dense_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


class KernelSpy(keras.callbacks.Callback):
    """Records the live kernel of every Dense layer when an epoch begins (after the previous
    epoch's pruning) and when it ends (listed before DynHPCallback: before this epoch's)."""

    def __init__(self):
        super().__init__()
        self.at_begin, self.at_end = [], []

    def _kernels(self):
        return [layer.kernel.numpy().copy() for layer in dense_layers(self.model)]

    def on_epoch_begin(self, epoch, logs=None):
        self.at_begin.append(self._kernels())

    def on_epoch_end(self, epoch, logs=None):
        self.at_end.append(self._kernels())


def test_one_fit_on_real_data_prunes_physically_and_keeps_training(digits, gated_digits_model, tmp_path):
    x, y, x_test, y_test = digits
    model = gated_digits_model
    dynhp = DynHPCallback(threshold=0.5)
    spy = KernelSpy()
    callbacks = [
        spy,
        dynhp,
        keras.callbacks.CSVLogger(str(tmp_path / "history.csv")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "checkpoint.keras")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb")),
        keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5),
    ]
    history = model.fit(x, y, epochs=8, batch_size=64, verbose=0, callbacks=callbacks,
                        validation_data=(x_test, y_test))
    params = history.history["dynhp/params"]
    assert params[-1] < params[0]
    assert all(b <= a for a, b in itertools.pairwise(params))
    units = [group.units for group in gated_groups(model)]
    assert units[0] < 64 and units[1] < 48
    # Shapes really shrank: kernels, gates, the producing layer's columns.
    first, second, _ = dense_layers(model)
    assert first.kernel.shape == (units[0], units[1])
    assert second.kernel.shape == (units[1], units[2])
    assert [g.log_alpha.shape[0] for g in model.gate_layers] == units
    assert model.layers[1].indices is not None and len(model.layers[1].indices) == units[0]
    # Accuracy bar on held-out data, after pruning.
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.85
    # Every epoch trained the live variables, also the epochs right after a narrowing (their
    # kernels are new variables): what an epoch began with changed by its end.
    for begin, end in zip(spy.at_begin, spy.at_end):
        for k_begin, k_end in zip(begin, end):
            assert k_begin.shape == k_end.shape
            assert not np.allclose(k_begin, k_end)
    narrowed = [any(a.shape != b.shape for a, b in zip(previous, current))
                for previous, current in itertools.pairwise(spy.at_begin)]
    assert sum(narrowed) >= 2
    # Keras' own callbacks saw the DynHP logs and the narrowed model.
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and int(rows[-1]["dynhp/params"]) == params[-1]
    reloaded = keras.models.load_model(tmp_path / "checkpoint.keras")
    assert [group.units for group in gated_groups(reloaded)] == units
    assert float(model.optimizer.learning_rate) <= 0.02
    assert len(dynhp.history) == 8 and dynhp.history[-1]["dynhp/params"] == params[-1]


def test_soft_pruning_trains_gates_without_removing(digits, gated_digits_model):
    x, y, _, _ = digits
    history = gated_digits_model.fit(x, y, epochs=2, batch_size=64, verbose=0,
                                     callbacks=[DynHPCallback(prune=False)])
    assert history.history["dynhp/params"] == [64 * 48 + 48 + 48 * 24 + 24 + 24 * 10 + 10] * 2
    assert all(np.isfinite(history.history["loss"]))


def test_pruned_model_reloads_in_a_new_process_and_resumes(digits, gated_digits_model, tmp_path):
    x, y, _, _ = digits
    model = gated_digits_model
    model.fit(x, y, epochs=4, batch_size=64, verbose=0, callbacks=[DynHPCallback()])
    units = [group.units for group in gated_groups(model)]
    assert units[0] < 64
    model.save(tmp_path / "pruned.keras")
    np.savez(tmp_path / "data.npz", x=x[:200], y=y[:200])
    iterations = int(model.optimizer.iterations.numpy())
    subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "reload_and_resume.py"),
         str(tmp_path / "pruned.keras"), str(tmp_path / "data.npz"), str(tmp_path / "out.npz")],
        check=True, capture_output=True, timeout=300,
    )
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["predictions"], model.predict(x[:200], verbose=0))
    assert list(out["units_before"]) == units
    assert int(out["iterations"]) > iterations  # optimizer state restored, then stepped on
    assert np.all(np.isfinite(out["loss"]))


def test_narrowing_fit_under_mirrored_strategy_on_two_cpus():
    result = subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "mirrored_fit.py")],
        check=True, capture_output=True, text=True, timeout=300,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["params"][-1] < report["params"][0]
    assert report["kernel_is_mirrored"]
    assert report["accuracy"][-1] > 0.7


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"min_units": 0}, "min_units"),
        ({"frequency": 0}, "frequency"),
        ({"alpha_bs": -0.1}, "alpha_bs"),
        ({"budget": "12 parsecs"}, "budget|Budget"),
        ({"accounting": "approximate"}, "accounting"),
        ({"optimizer_slots": "keep"}, "optimizer_slots"),
        ({"criterion": object()}, "criterion"),
    ],
)
def test_bad_callback_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DynHPCallback(**kwargs)


def test_model_without_gated_layers_is_refused(digits):
    x, y, _, _ = digits
    model = make_mlp(64, [8], 10)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="tfdynhp.gate"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[DynHPCallback()])


def test_uncompiled_model_is_refused():
    model = tfdynhp.gate(make_mlp(64, [8], 10))
    callback = DynHPCallback()
    callback.set_model(model)
    with pytest.raises(ValueError, match="not compiled"):
        callback.on_train_begin()


def test_early_stopping_restoring_weights_is_refused(digits, gated_digits_model):
    x, y, _, _ = digits
    stop = keras.callbacks.EarlyStopping(monitor="loss", restore_best_weights=True)
    with pytest.raises(ValueError, match="ModelCheckpoint"):
        gated_digits_model.fit(x, y, epochs=1, verbose=0, callbacks=[DynHPCallback(), stop])


def test_dynamic_batch_with_arrays_is_refused_and_nothing_changes(digits, gated_digits_model):
    x, y, _, _ = digits
    weights = gated_digits_model.get_weights()
    with pytest.raises(ValueError, match="DynamicBatches"):
        gated_digits_model.fit(x, y, epochs=1, verbose=0,
                               callbacks=[DynHPCallback(dynamic_batch=True)])
    for old, new in zip(weights, gated_digits_model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_budget_too_small_is_refused_with_the_numbers(digits, gated_digits_model):
    x, y, _, _ = digits
    with pytest.raises(ValueError, match=r"too small: the model needs .* per example"):
        gated_digits_model.fit(tfdynhp.DynamicBatches(x, y, batch_size=16), epochs=1, verbose=0,
                               callbacks=[DynHPCallback(budget="10KB")])


def test_gradient_variance_is_switched_off_after_a_dynamic_fit(digits, gated_digits_model):
    """A later fit of the same model (fixed batch) must not pay for the variance estimate."""
    x, y, _, _ = digits
    model = gated_digits_model
    data = tfdynhp.DynamicBatches(x, y, batch_size=16, seed=0)
    history = model.fit(data, epochs=1, verbose=0, callbacks=[DynHPCallback(budget="16MB")])
    assert "grad_variance_l1" in history.history
    assert not model.tracks_gradient_variance
    later = model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    assert "grad_variance_l1" not in later.history


def test_budget_with_a_dataset_of_unknown_batch_is_refused_and_nothing_changes(digits):
    import tensorflow as tf

    x, y, _, _ = digits
    # The number of examples is given, so only the batch size is unknown: an infinite
    # dataset whose batch dimension is not static.
    model = tfdynhp.gate(make_mlp(64, [48, 24], 10), dataset_size=len(x), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    weights = model.get_weights()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
    with pytest.raises(tfdynhp.validation.ConfigurationError,
                       match=r"budget needs the batch size.*drop_remainder=True"):
        model.fit(dataset, epochs=1, steps_per_epoch=4, verbose=0,
                  callbacks=[DynHPCallback(budget="16MB", dynamic_batch=False)])
    for old, new in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    # A static batch is accepted.
    static = tf.data.Dataset.from_tensor_slices((x, y)).batch(32, drop_remainder=True)
    model.fit(static, epochs=1, verbose=0, callbacks=[DynHPCallback(budget="16MB", dynamic_batch=False)])


def test_a_batched_dataset_without_drop_remainder_is_counted_not_refused(digits):
    import tensorflow as tf

    from tfdynhp.model.gated_model import dataset_extent

    x, y, _, _ = digits  # 1,400 training examples
    slices = tf.data.Dataset.from_tensor_slices((x, y))
    common = slices.shuffle(256, seed=0).batch(32).prefetch(tf.data.AUTOTUNE)
    assert dataset_extent(common) == (44, 1400, 32)  # read from tf.data, not iterated
    filtered = slices.filter(lambda a, b: b < 5).batch(32)  # cardinality unknown: one pass
    kept = int(np.sum(y < 5))
    assert dataset_extent(filtered) == (-(-kept // 32), kept, 32)
    assert dataset_extent(slices.batch(32).repeat()) is None
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(make_mlp(64, [48, 24], 10), seed=0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    callback = DynHPCallback(target="50% params", budget="16MB", dynamic_batch=False)
    history = model.fit(filtered, epochs=3, verbose=0, callbacks=[callback]).history
    assert all(gate.dataset_size == kept for gate in model.gate_layers)
    assert history["dynhp/batch_size"] == [32, 32, 32]
    assert history["dynhp/target_met"] == [True]


def test_a_new_dynhp_fit_after_a_frozen_target_fit_prunes_again(digits, gated_digits_model):
    """A target fit ends with frozen gates. Continuing that run (`initial_epoch`) keeps them
    frozen; a new DynHP fit is a new pruning run and unfreezes them (review finding 10: the
    gates stayed frozen and `threshold=0.99` removed nothing)."""
    from tfdynhp.costs import memory

    x, y, _, _ = digits
    model = gated_digits_model

    def target():
        return DynHPCallback(target="50% params", target_epoch=1)

    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[target()])
    assert all(gate.frozen for gate in model.gate_layers)
    frozen_params = memory.parameter_count(model)
    more = model.fit(x, y, epochs=3, initial_epoch=2, batch_size=64, verbose=0,
                     callbacks=[target()]).history
    assert more["dynhp/params"] == [frozen_params]
    assert all(gate.frozen for gate in model.gate_layers)
    iterations = int(model.optimizer.iterations.numpy())
    with pytest.raises(tfdynhp.validation.ConfigurationError,
                       match=r"continues the DynHP run .* target 50% params by epoch 1\), but "
                             r"this callback has target 30% params.*initial_epoch=0"):
        model.fit(x, y, epochs=4, initial_epoch=3, batch_size=64, verbose=0,
                  callbacks=[DynHPCallback(target="30% params")])
    assert int(model.optimizer.iterations.numpy()) == iterations  # refused before a step
    history = model.fit(x, y, epochs=2, batch_size=64, verbose=0,
                        callbacks=[DynHPCallback(threshold=0.99)]).history
    assert not any(gate.frozen for gate in model.gate_layers)
    assert history["dynhp/params"][-1] < frozen_params


@pytest.mark.parametrize(
    "plain, richer",
    [
        (lambda: keras.optimizers.Adam(3e-3), lambda: keras.optimizers.Adam(3e-3, amsgrad=True)),
        (lambda: keras.optimizers.Adam(3e-3), lambda: keras.optimizers.Adam(3e-3, use_ema=True)),
        (lambda: keras.optimizers.SGD(0.05),
         lambda: keras.optimizers.SGD(0.05, gradient_accumulation_steps=2)),
    ],
    ids=["amsgrad", "use_ema", "gradient_accumulation"],
)
def test_a_budget_counts_the_optimizers_real_state_before_the_first_step(digits, plain, richer):
    """A budget that fits the model with the plain optimizer (two Adam slots, no SGD slot)
    does not fit it with one more slot per weight: refused before any step, and a budget
    that fits is never exceeded in the logs (review finding 2: 117,256 B logged against a
    106,244 B budget)."""
    from tfdynhp.costs import memory

    x, y, _, _ = digits

    def model_with(optimizer):
        keras.utils.set_random_seed(0)
        model = tfdynhp.gate(make_mlp(64, [64, 32], 10), seed=0)
        model.compile(optimizer, "sparse_categorical_crossentropy")
        model.optimizer.build(model.trainable_variables)
        return model

    fits_plain = memory.training_memory(model_with(plain()), 32)[0] + 256
    fits_richer = memory.training_memory(model_with(richer()), 32)[0]
    assert fits_richer > fits_plain  # one more value per weight
    model = tfdynhp.gate(make_mlp(64, [64, 32], 10), seed=0)
    model.compile(richer(), "sparse_categorical_crossentropy")
    with pytest.raises(tfdynhp.validation.ConfigurationError, match="too small"):
        model.fit(tfdynhp.DynamicBatches(x, y, batch_size=32, seed=0), epochs=1, verbose=0,
                  callbacks=[DynHPCallback(budget=fits_plain)])
    assert int(model.optimizer.iterations.numpy()) == 0
    budget = fits_richer + 2048
    history = model.fit(tfdynhp.DynamicBatches(x, y, batch_size=32, seed=0), epochs=2,
                        verbose=0, callbacks=[DynHPCallback(budget=budget)]).history
    assert history["dynhp/memory_bytes"][0] == fits_richer
    assert max(history["dynhp/memory_bytes"] + history["dynhp/next_memory_bytes"]) <= budget
