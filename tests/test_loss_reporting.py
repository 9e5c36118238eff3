"""`loss` and `val_loss` of a gated model are the task loss; the L0 penalty is its own metric.

The penalty's weight changes during a fit (the target controller moves lambda, the frozen
phase sets it to 0), so a `val_loss` including it would move for reasons that are not the
model's quality and mislead `ModelCheckpoint(save_best_only=True)`, `EarlyStopping` and
`ReduceLROnPlateau`.
"""

import keras
import numpy as np
import pytest
from conftest import make_mlp
from tfdynhp.callbacks import DynHPCallback

import tfdynhp

CROSS_ENTROPY = keras.losses.SparseCategoricalCrossentropy()


def _task_loss(model, x, y):
    return float(CROSS_ENTROPY(y, model.predict(x, verbose=0)))


def _open_gated_mlp(l0_lambda):
    """A gated MLP whose gates are open whatever the noise (so training-mode outputs equal
    inference outputs) and whose penalty is large."""
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(make_mlp(64, [16], 10), l0_lambda=l0_lambda, dataset_size=100,
                         seed=0)
    for gate in model.gate_layers:
        gate.log_alpha.assign(np.full(gate.units, 30.0, "float32"))
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_training_and_evaluation_report_the_task_loss_and_the_penalty_apart(digits):
    x, y, _, _ = digits
    x, y = x[:64], y[:64]
    model = _open_gated_mlp(l0_lambda=20.0)
    penalty = float(model.l0_penalty())
    task = _task_loss(model, x, y)
    assert penalty > 0.5 * task  # large enough to tell the two apart

    logs = model.train_on_batch(x, y, return_dict=True)  # learning rate 0: weights unchanged
    assert logs["loss"] == pytest.approx(task, rel=1e-5)
    assert logs["l0_penalty"] == pytest.approx(penalty, rel=1e-5)

    results = model.evaluate(x, y, verbose=0, return_dict=True)
    assert results["loss"] == pytest.approx(task, rel=1e-5)
    assert set(results) == {"loss", "accuracy"}  # evaluate() keeps Keras' shape
    assert len(model.evaluate(x, y, verbose=0)) == 2


def test_val_loss_is_the_task_loss_in_a_dynhp_fit_and_callbacks_watch_it(digits, tmp_path):
    x, y, x_val, y_val = digits
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(make_mlp(64, [32, 16], 10), seed=0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class TaskLoss(keras.callbacks.Callback):  # listed before DynHPCallback: before surgery
        def __init__(self):
            super().__init__()
            self.values = []

        def on_epoch_end(self, epoch, logs=None):
            self.values.append(_task_loss(self.model, x_val, y_val))

    spy = TaskLoss()
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"),
                                                 save_best_only=True)
    stop = keras.callbacks.EarlyStopping(patience=10)
    plateau = keras.callbacks.ReduceLROnPlateau(patience=10)
    history = model.fit(x, y, epochs=4, batch_size=64, verbose=0,
                        validation_data=(x_val, y_val),
                        callbacks=[spy, DynHPCallback(target="40% params"), checkpoint, stop,
                                   plateau]).history
    penalties = history["l0_penalty"]
    assert len(penalties) == 4 and max(penalties) > 0.05  # the penalty was there, and logged
    assert "val_l0_penalty" not in history
    np.testing.assert_allclose(history["val_loss"], spy.values, rtol=1e-5)
    best = min(history["val_loss"])
    assert checkpoint.best == pytest.approx(best)
    assert stop.best == pytest.approx(best) and plateau.best == pytest.approx(best)
    # Training's `loss` is the task loss too: on the order of the validation task loss, not
    # of the penalty added to it.
    assert history["loss"][-1] < history["val_loss"][-1] + 0.5 * max(penalties)
