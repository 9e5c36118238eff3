"""Pruning bounded by validation (`tfdynhp.policies.tolerance`,
`DynHPCallback(tolerance=...)`): the decision rules without a model, then the trial-before-cut
rule on small real models: a cut that would break the tolerance is not committed and leaves
the model exactly as it was; a trial computes what the surgery would."""

import warnings

import keras
import numpy as np
import pytest
from conftest import make_mlp
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp.costs import memory
from tfdynhp.graph import gated_groups
from tfdynhp.model.gating import copy_model
from tfdynhp.policies import tolerance as tol
from tfdynhp.surgery import apply_keep_masks

# -- pure rules ---------------------------------------------------------------------------


def test_mode_is_read_from_the_monitor_like_early_stopping():
    assert tol.infer_mode("val_accuracy") == "max"
    assert tol.infer_mode("val_auc") == "max"
    assert tol.infer_mode("val_loss") == "min"
    assert tol.infer_mode("val_loss", "max") == "max"
    with pytest.raises(ValueError, match="mode"):
        tol.infer_mode("val_loss", "biggest")


def test_within_tolerance_in_both_directions():
    assert tol.within_tolerance(0.90, 0.91, 0.01, "max")
    assert not tol.within_tolerance(0.899, 0.91, 0.01, "max")
    assert tol.within_tolerance(0.31, 0.30, 0.01, "min")
    assert not tol.within_tolerance(0.32, 0.30, 0.01, "min")


def test_ready_waits_for_learning_then_for_a_slowdown():
    assert not tol.ready([0.5], 0.01, "max")
    assert not tol.ready([0.10, 0.10, 0.105], 0.01, "max")  # nothing learnt beyond noise
    assert not tol.ready([0.10, 0.5, 0.8], 0.01, "max")  # still gaining fast
    assert tol.ready([0.10, 0.5, 0.8, 0.79], 0.01, "max")
    assert tol.ready([2.0, 1.0, 0.995], 0.01, "min")


def test_step_grows_after_a_commit_and_shrinks_after_a_refusal():
    assert tol.next_step(0.1, True) == pytest.approx(0.15)
    assert tol.next_step(0.4, True) == 0.5  # clipped to the largest cut
    assert tol.next_step(0.1, False) == pytest.approx(0.05)
    assert tol.next_step(0.015, False) < 0.01  # below min_step: the caller stops


def test_resource_aware_ranking_removes_the_costlier_of_two_equal_units_first():
    keys = tol.rank_scores({"cheap": [1.0], "costly": [1.0]}, {"cheap": 1.0, "costly": 9.0})
    assert keys["costly"][0] < keys["cheap"][0]
    plain = tol.rank_scores({"cheap": [1.0], "costly": [1.0]}, {"cheap": 1.0, "costly": 9.0},
                            resource_aware=False)
    assert plain["costly"][0] == plain["cheap"][0]


class Recorder:
    """Fake model side: `propose(step)` removes `step`; `trial` answers from a table."""

    def __init__(self, metric_of_step):
        self.metric_of_step = metric_of_step
        self.proposed, self.committed = [], []

    def propose(self, step):
        self.proposed.append(step)
        return {"g": step}, 1.0 - step, 1

    def trial(self, masks):
        return self.metric_of_step(masks["g"])

    def commit(self, masks):
        self.committed.append(masks["g"])


def test_a_cut_that_breaks_the_tolerance_is_not_committed_and_a_smaller_one_is_tried():
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None, step=0.4)
    side = Recorder(lambda step: 0.90 - step / 4)  # 0.4 -> 0.80, 0.2 -> 0.85, 0.1 -> 0.875
    record = controller.epoch_end(0.90, side.propose, side.trial, side.commit)
    assert record["state"] == "refused"
    assert side.committed == []
    assert side.proposed == pytest.approx([0.4, 0.2, 0.1])  # max_trials=3, halving
    assert [t.committed for t in record["trials"]] == [False, False, False]
    # The next epoch starts at 0.05; each commit grows the cut, the refused one shrinks it.
    side = Recorder(lambda step: 0.90 - step / 10)  # within 0.01 up to a cut of 0.1
    record = controller.epoch_end(0.90, side.propose, side.trial, side.commit)
    assert record["state"] == "committed"
    assert side.proposed == pytest.approx([0.05, 0.075, 0.1125])
    assert side.committed == pytest.approx([0.05, 0.075])
    assert record["step"] == pytest.approx(0.05625)


def test_no_trial_during_a_plateau_warmup_nor_while_the_metric_recovers():
    controller = tol.Tolerance(0.01, monitor="val_accuracy")
    side = Recorder(lambda step: 1.0)
    assert controller.epoch_end(0.3, side.propose, side.trial, side.commit)["state"] == "warmup"
    assert controller.epoch_end(0.7, side.propose, side.trial, side.commit)["state"] == "warmup"
    assert controller.epoch_end(0.705, side.propose, side.trial,
                                side.commit)["state"] == "committed"
    assert controller.epoch_end(0.60, side.propose, side.trial,
                                side.commit)["state"] == "recovering"
    assert len(side.proposed) == 3 and controller.best == pytest.approx(0.705)


def test_nothing_left_to_cut_is_exhausted():
    controller = tol.Tolerance(0.01, monitor="val_loss", warmup=None)
    record = controller.epoch_end(
        0.5, lambda step: ({}, 1.0, 0), lambda masks: pytest.fail("no trial"), print)
    assert record["state"] == "exhausted"


def test_target_cuts_say_which_constraint_binds():
    controller = tol.Tolerance(0.01, monitor="val_accuracy")
    side = Recorder(lambda fraction: 0.9 - fraction / 10)  # full cut -0.1, half -0.05, ...
    cut = lambda k: ({"g": 0.5 ** k}, 0.0, 1)
    record = controller.check_cuts(0.9, cut, side.trial, side.commit)
    assert record["binding"] == "tolerance" and record["state"] == "refused"
    assert side.committed == []
    controller = tol.Tolerance(0.2, monitor="val_accuracy")
    record = controller.check_cuts(0.9, cut, side.trial, side.commit)
    assert record["binding"] == "target" and side.committed == [1.0]


def test_bad_tolerance_arguments_say_what_was_received():
    with pytest.raises(TypeError, match="Received: tolerance='1%'"):
        tol.parse_tolerance("1%")
    with pytest.raises(ValueError, match="tolerance"):
        tol.Tolerance(-0.1)
    with pytest.raises(ValueError, match="resource"):
        tol.Tolerance(0.01, resource="flops")
    with pytest.raises(ValueError, match="prune=False"):
        DynHPCallback(tolerance=0.01, prune=False)
    controller = tol.Tolerance(0.01, monitor="val_top5")
    with pytest.raises(ValueError, match="val_top5"):
        controller.resolve_monitor({"loss": 1.0, "val_loss": 1.0})


def test_validation_split_takes_the_last_examples_as_keras_does():
    x, y = np.arange(10.0).reshape(10, 1), np.arange(10)
    _, vy = tol.validation_of({"x": x, "y": y, "validation_split": 0.2})
    assert vy.tolist() == [8, 9]
    assert tol.validation_of({"x": x, "y": y, "validation_data": (x[:3], y[:3])})[1].tolist() \
        == [0, 1, 2]
    assert tol.validation_of({"x": x, "y": y}) is None


# -- small real models --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_once(digits):
    """A gated MLP trained two epochs on digits (gates at their defaults), built once."""
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(make_mlp(64, [48, 24], 10), seed=0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model


@pytest.fixture
def trained(trained_once):
    """A fresh copy of `trained_once` for each test (tests prune and train it)."""
    model = copy_model(trained_once)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _half_masks(model):
    return {g.name: np.arange(g.units) % 2 == 0 for g in gated_groups(model)
            if g.gate is not None}


def test_a_trial_computes_what_the_surgery_would_and_leaves_the_model_unchanged(trained,
                                                                                 digits):
    _, _, xv, yv = digits
    model = trained
    weights = [w.copy() for w in model.get_weights()]
    masks = _half_masks(model)
    trial = tol.trial_metric(model, masks, (xv, yv), "loss")
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    before = tol.evaluate(model, (xv, yv), "loss")
    assert trial != pytest.approx(before)  # half the units removed: the loss moved
    apply_keep_masks(model, masks)
    assert tol.evaluate(model, (xv, yv), "loss") == pytest.approx(trial, rel=1e-5)


class WeightsAtEpochEnd(keras.callbacks.Callback):
    """Listed before DynHPCallback: the weights at each epoch end, before its pruning."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([w.copy() for w in self.model.get_weights()])


def test_fit_does_not_commit_a_cut_that_breaks_the_tolerance(trained, digits):
    x, y, xv, yv = digits
    model = trained
    params = memory.parameter_count(model)
    # 90% of the MACs against no loss increase at all. (A quarter is not enough: removing
    # the lowest-ranked quarter of this model lowered its validation loss.)
    controller = tol.Tolerance(0.0, monitor="val_loss", warmup=None, step=0.9, max_step=0.95,
                               max_trials=1)
    callback = DynHPCallback(tolerance=controller)
    spy = WeightsAtEpochEnd()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_data=(xv, yv),
              callbacks=[spy, callback])
    assert memory.parameter_count(model) == params
    assert all(np.array_equal(a, b) for a, b in zip(spy.weights[-1], model.get_weights()))
    epoch = callback.history[-1]
    assert epoch["dynhp/tolerance/state"] == "refused"
    assert epoch["dynhp/tolerance/trials"] == 1
    assert epoch["dynhp/tolerance/cut"] == 0.0
    assert callback.binding == "tolerance"


def test_fit_commits_a_cut_within_the_tolerance_and_logs_it(trained, digits):
    x, y, xv, yv = digits
    model = trained
    params = memory.parameter_count(model)
    controller = tol.Tolerance(0.5, warmup=None, step=0.3, max_trials=1)
    callback = DynHPCallback(tolerance=controller)
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_data=(xv, yv),
                        callbacks=[callback])
    assert controller.monitor == "val_accuracy"
    assert memory.parameter_count(model) < params
    epoch = callback.history[-1]
    assert epoch["dynhp/tolerance/state"] == "committed"
    assert 0.2 < epoch["dynhp/tolerance/cut"] < 0.5  # about `step` of the MACs
    # The trial's metric is the pruned model's: evaluating after the surgery agrees.
    assert tol.evaluate(model, (xv, yv), "accuracy") == pytest.approx(
        epoch["dynhp/tolerance/after"], abs=1e-6)
    assert history.history["dynhp/tolerance/best"][-1] == pytest.approx(
        history.history["val_accuracy"][-1])


def test_without_validation_data_it_warns_and_uses_the_threshold_rule(trained, digits):
    x, y, _, _ = digits
    with pytest.warns(UserWarning, match="validation_split"):
        trained.fit(x, y, epochs=1, batch_size=64, verbose=0,
                    callbacks=[DynHPCallback(tolerance=0.01)])


def test_validation_split_is_found_and_no_warning_is_given(trained, digits):
    x, y, _, _ = digits
    callback = DynHPCallback(tolerance=tol.Tolerance(0.01, warmup=None))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        trained.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_split=0.2,
                    callbacks=[callback])
    assert callback.history[-1]["dynhp/tolerance/trials"] >= 1


def test_target_plus_tolerance_stops_at_the_tolerance_when_it_binds_first(trained, digits):
    x, y, xv, yv = digits
    model = trained
    params = memory.parameter_count(model)
    controller = tol.Tolerance(0.0, monitor="val_loss", max_trials=2)
    callback = DynHPCallback(target="10% params", target_epoch=1, tolerance=controller)
    with pytest.warns(UserWarning, match=r"target of .* was due by epoch 1 .* The tolerance on "
                                         r"val_loss refused the larger cuts"):
        model.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_data=(xv, yv),
                  callbacks=[callback])
    assert callback.binding == "tolerance"
    assert callback.history[-1]["dynhp/target_met"] is False
    assert memory.parameter_count(model) > 0.1 * params * 1.5


def test_a_refused_cut_is_faded_then_tried_again_and_committed_or_undone():
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None, step=0.2, fade=True)
    side = Recorder(lambda step: 0.85)  # immediately: 5 points worse
    faded, unfaded = [], []
    record = controller.epoch_end(0.90, side.propose, side.trial, side.commit,
                                  faded.append, unfaded.append)
    assert record["state"] == "fading" and faded == [{"g": 0.2}] and side.committed == []
    # One epoch later, the network has trained around the faded units: now within tolerance;
    # the cut is committed, and so are the larger ones tried after it.
    side.metric_of_step = lambda step: 0.895
    record = controller.epoch_end(0.895, side.propose, side.trial, side.commit,
                                  faded.append, unfaded.append)
    assert record["trials"][0].faded and record["trials"][0].committed
    assert side.committed == pytest.approx([0.2, 0.3, 0.45]) and unfaded == []
    # A faded cut still out of tolerance is undone when the units' return helps, and the
    # next cut is smaller.
    side.metric_of_step = lambda step: 0.80

    def unfade(masks):
        unfaded.append(masks)
        return 0.9

    record = controller.epoch_end(0.9, side.propose, side.trial, side.commit, faded.append,
                                  unfade)
    assert record["state"] == "fading" and faded[-1] == {"g": 0.5}
    record = controller.epoch_end(0.9, side.propose, side.trial, side.commit, faded.append,
                                  unfade)
    assert len(unfaded) == 1 and not record["trials"][0].committed
    assert len(side.committed) == 3
    assert record["trials"][1].step == pytest.approx(0.25)
    # At the end of training a pending faded cut is resolved, never left behind; when the
    # units' return does not help, the cut stays (smaller, no worse).
    trial = controller.finish(side.trial, side.commit, lambda masks: 0.79)
    assert trial is not None and trial.committed and len(side.committed) == 4
    assert controller.pending is None


def test_fading_in_fit_never_leaves_faded_units_unchecked(trained, digits):
    x, y, xv, yv = digits
    model = trained
    params = memory.parameter_count(model)
    controller = tol.Tolerance(0.0, monitor="val_loss", warmup=None, step=0.9, max_step=0.95,
                               max_trials=1, fade=True)
    callback = DynHPCallback(tolerance=controller)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_data=(xv, yv),
              callbacks=[callback])
    assert callback.history[-1]["dynhp/tolerance/state"] == "fading"
    final = callback.history[-1]["dynhp/tolerance/final_trial"]
    assert final["faded"] and not final["committed"]
    assert memory.parameter_count(model) == params
    # The faded gates got their log_alpha back: none is still at the faded value.
    assert not any(np.any(g.log_alpha.numpy() == tol.FADE_LOG_ALPHA)
                   for g in model.gate_layers)
