"""Pruning bounded by validation (`tfdynhp.policies.tolerance`,
`DynHPCallback(tolerance=...)`): the decision rules without a model, then the trial-before-cut
rule on small real models: a cut that would break the tolerance is not committed and leaves
the model exactly as it was; a trial computes what the surgery would."""

import warnings

import keras
import numpy as np
import pytest
from conftest import KillAfter, Killed, make_mlp
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


def test_the_reference_is_the_best_mean_of_consecutive_epochs():
    # One lucky epoch does not set the bar; a dip after a cut does not lower it.
    assert tol.reference([0.80, 0.86, 0.80, 0.82], 2) == pytest.approx(0.83)
    assert tol.reference([0.80, 0.86, 0.80, 0.82, 0.70], 2) == pytest.approx(0.83)
    assert tol.reference([0.80, 0.86], 3) == pytest.approx(0.86)  # fewer than the window
    assert tol.reference([0.5, 0.4, 0.45], 2, "min") == pytest.approx(0.425)
    assert tol.reference([], 2) is None


def test_a_metric_at_chance_is_not_informative():
    assert not tol.informative([0.10, 0.115], 0.10, 0.05, "max")
    assert tol.informative([0.10, 0.33], 0.10, 0.05, "max")
    assert tol.informative([2.3, 1.0], 2.3, 0.05, "min")
    assert tol.informative([0.1], None, 0.05, "max")  # not measured: no warm-up


def test_a_provisional_cut_is_committed_held_or_undone():
    assert tol.verdict(True, 0, 1) == "commit"
    assert tol.verdict(False, 0, 1) == "hold"
    assert tol.verdict(False, 1, 1) == "undo"
    assert tol.verdict(False, 0, 0) == "undo"
    assert tol.verdict(False, 0, 1, final=True) == "undo"


def test_step_grows_after_a_commit_and_shrinks_after_an_undo():
    assert tol.next_step(0.1, True) == pytest.approx(0.15)
    assert tol.next_step(0.25, True) == 0.3  # clipped to the largest cut
    assert tol.next_step(0.1, False) == pytest.approx(0.05)
    assert tol.next_step(0.015, False) < 0.01  # below min_step: the rule stops


def test_resource_aware_ranking_removes_the_costlier_of_two_equal_units_first():
    keys = tol.rank_scores({"cheap": [1.0], "costly": [1.0]}, {"cheap": 1.0, "costly": 9.0})
    assert keys["costly"][0] < keys["cheap"][0]
    plain = tol.rank_scores({"cheap": [1.0], "costly": [1.0]}, {"cheap": 1.0, "costly": 9.0},
                            resource_aware=False)
    assert plain["costly"][0] == plain["cheap"][0]


class Recorder:
    """Fake model side: `propose(step)` removes `step`; `trial` answers from a function of
    the cut; `cut`, `undo` and `commit` are recorded."""

    def __init__(self, metric_of_step=lambda step: 1.0):
        self.metric_of_step = metric_of_step
        self.proposed, self.cuts, self.undone, self.committed = [], [], [], []

    def propose(self, step):
        self.proposed.append(step)
        return {"g": step}, 1.0 - step, 1

    def trial(self, masks):
        return self.metric_of_step(masks["g"])

    def commit(self, masks):
        self.committed.append(masks["g"])

    def cut(self, masks):
        self.cuts.append(masks["g"])

    def undo(self, masks):
        self.undone.append(masks["g"])
        return 0.9

    def epoch(self, controller, value, final=False):
        return controller.epoch_end(value, self.propose, self.trial, self.commit, self.cut,
                                    self.undo, final)


def test_a_cut_out_of_tolerance_after_training_around_it_is_undone_never_committed():
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None, window=1)
    side = Recorder()
    record = side.epoch(controller, 0.90)
    assert record["state"] == "cutting" and side.cuts == [0.1] and side.committed == []
    # One epoch with the units cut: 3 points below the reference. Held once (noise?) ...
    record = side.epoch(controller, 0.87)
    assert record["state"] == "holding" and side.undone == [] and len(side.cuts) == 1
    # ... and still out: undone, nothing committed, the next cut is smaller.
    record = side.epoch(controller, 0.875)
    assert record["state"] == "undone" and side.undone == [0.1] and side.committed == []
    assert record["step"] == pytest.approx(0.05) and record["restored"] == 0.9
    assert controller.pending is None and len(side.cuts) == 1  # no new cut while recovering
    # Back within tolerance: the smaller cut is made.
    record = side.epoch(controller, 0.90)
    assert record["state"] == "cutting" and side.cuts[-1] == pytest.approx(0.05)


def test_a_cut_within_tolerance_is_checked_then_committed_and_the_next_one_grows():
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None)
    side = Recorder(lambda step: 0.895)
    side.epoch(controller, 0.90)
    record = side.epoch(controller, 0.895)
    assert record["state"] == "committed" and side.committed == [0.1]
    assert [(t.kind, t.committed) for t in record["trials"]] == [("commit", True),
                                                                  ("cut", True)]
    assert record["cut"][0] == pytest.approx(0.15) and side.cuts[-1] == pytest.approx(0.15)
    # The check before surgery is the last guard: a trial out of tolerance undoes the cut.
    side.metric_of_step = lambda step: 0.5
    record = side.epoch(controller, 0.90)
    assert record["state"] == "undone" and side.committed == [0.1]
    assert side.undone == [pytest.approx(0.15)]


def test_a_proposed_cut_that_costs_too_much_at_once_is_halved():
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None, step=0.3, max_drop=5)
    side = Recorder(lambda step: 0.90 - step / 2)  # 0.3 -> 15 points, 0.15 -> 7.5, 0.075 ->
    record = side.epoch(controller, 0.90)
    assert side.proposed == pytest.approx([0.3, 0.15, 0.075])
    assert [t.committed for t in record["trials"]] == [False, False, True]
    assert side.cuts == [pytest.approx(0.075)] and record["state"] == "cutting"
    # Nothing within max_drop in max_trials: no cut this epoch, a smaller step next time.
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None, step=0.3, max_drop=5)
    side = Recorder(lambda step: 0.5)
    record = side.epoch(controller, 0.90)
    assert record["state"] == "refused" and side.cuts == []
    assert record["step"] == pytest.approx(0.0375)


def test_the_last_cut_leaves_epochs_to_train_around_it():
    assert tol.last_cut_epoch(8, 2 / 3) == 5
    assert tol.last_cut_epoch(3, 2 / 3) == 2
    assert tol.last_cut_epoch(2, 1.0) == 1  # never at the last epoch: it could not be judged
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None)
    side = Recorder()
    side.epoch(controller, 0.90)
    record = controller.epoch_end(0.90, side.propose, side.trial, side.commit, side.cut,
                                  side.undo, may_cut=False)
    assert record["state"] == "committed" and record["cut"] is None
    assert side.epoch(controller, 0.90, final=False)["state"] == "cutting"


def test_at_the_last_epoch_the_better_of_cut_and_undone_is_kept():
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None, window=1)
    side = Recorder()
    side.undo = lambda masks: side.undone.append(masks["g"]) or 0.50  # units back: worse
    side.epoch(controller, 0.90)
    record = side.epoch(controller, 0.85, final=True)
    assert record["state"] == "kept" and side.undone == [0.1] and side.committed == [0.1]


def test_no_cut_before_the_metric_is_informative_nor_after_the_last_epoch():
    controller = tol.Tolerance(0.01, monitor="val_accuracy")  # warm-up: 5 points
    controller.begin(0.10)
    side = Recorder()
    assert side.epoch(controller, 0.10)["state"] == "warmup"
    assert side.epoch(controller, 0.12)["state"] == "warmup"
    assert side.cuts == [] and controller.best is None
    assert side.epoch(controller, 0.40)["state"] == "cutting"
    # The reference counts from the first informative epoch (0.40), not the chance level.
    assert controller.best == pytest.approx(0.40)
    record = side.epoch(controller, 0.45, final=True)
    assert record["state"] == "committed" and record["cut"] is None
    assert controller.pending is None and len(side.cuts) == 1


def test_a_pending_cut_is_undone_at_the_last_epoch_when_out_of_tolerance():
    controller = tol.Tolerance(0.01, monitor="val_loss", warmup=None, window=1)
    side = Recorder(lambda step: 0.31)
    side.undo = lambda masks: side.undone.append(masks["g"]) or 0.30  # units back: better
    side.epoch(controller, 0.30)
    record = side.epoch(controller, 0.35, final=True)  # no holding at the end
    assert record["state"] == "undone" and side.committed == [] and side.undone == [0.1]
    assert controller.pending is None


def test_an_early_stop_judges_the_pending_cut():
    # max_drop=None: the cut is made although it costs 20 points at once.
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None, max_drop=None)
    side = Recorder(lambda step: 0.70)
    side.epoch(controller, 0.90)
    trial = controller.finish(side.trial, side.commit, side.undo)
    assert trial is not None and not trial.committed and side.undone == [0.1]
    assert controller.finish(side.trial, side.commit, side.undo) is None


def test_nothing_left_to_cut_is_exhausted():
    controller = tol.Tolerance(0.01, monitor="val_loss", warmup=None)
    record = controller.epoch_end(
        0.5, lambda step: ({}, 1.0, 0), lambda masks: pytest.fail("no trial"), print,
        print, print)
    assert record["state"] == "exhausted" and controller.converged


def test_an_undone_cut_below_the_smallest_step_stops_the_rule():
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None, step=0.015,
                               patience=0, window=1)
    side = Recorder()
    side.epoch(controller, 0.90)
    assert side.epoch(controller, 0.80)["state"] == "undone" and controller.converged
    assert side.epoch(controller, 0.90)["state"] == "converged" and len(side.cuts) == 1


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


def test_the_state_of_a_run_round_trips_with_its_pending_cut():
    controller = tol.Tolerance(0.01, monitor="val_accuracy", warmup=None, window=1)
    side = Recorder(lambda step: 0.895)
    side.epoch(controller, 0.90)  # a provisional cut is pending
    state = controller.state()
    import json

    resumed = tol.Tolerance(0.01, window=1)
    resumed.restore(json.loads(json.dumps(state)))  # as saved in the model's config
    assert resumed.monitor == "val_accuracy" and resumed.values == [0.90]
    assert resumed.best == pytest.approx(0.90) and resumed.pending.step == pytest.approx(0.1)
    # Both judge the next epoch alike: the pending cut is committed, the next one grows.
    a, b = Recorder(lambda step: 0.895), Recorder(lambda step: 0.895)
    first, second = a.epoch(controller, 0.899), b.epoch(resumed, 0.899)
    assert first["state"] == second["state"] == "committed"
    assert len(a.committed) == len(b.committed) == 1 and first["step"] == second["step"]


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_fit_does_not_commit_a_cut_that_breaks_the_tolerance(trained, digits):
    x, y, xv, yv = digits
    model = trained
    params = memory.parameter_count(model)
    # 90% of the MACs cut at the end of epoch 1 (max_drop=None: however much that costs at
    # once), against no loss increase at all: the network trains epoch 2 without those
    # units, is out of tolerance, and gets them back (patience=0: at once, not at the last
    # epoch, where the better of cut and undone would be kept).
    controller = tol.Tolerance(0.0, monitor="val_loss", warmup=None, step=0.9, max_step=0.95,
                               window=1, patience=0, max_drop=None)
    callback = DynHPCallback(tolerance=controller)
    spy = WeightsAtEpochEnd()
    model.fit(x, y, epochs=3, batch_size=64, verbose=0, validation_data=(xv, yv),
              callbacks=[spy, callback])
    assert memory.parameter_count(model) == params
    first, second, last = callback.history
    assert first["dynhp/tolerance/state"] == "cutting"
    assert first["dynhp/tolerance/pending"] > 0.8
    assert second["dynhp/tolerance/state"] == "undone"
    assert second["dynhp/tolerance/cut"] == 0.0 and second["dynhp/tolerance/pending"] == 0.0
    assert last["dynhp/tolerance/cut"] == 0.0 and controller.pending is None
    # Every gate has its log_alpha of before the cut back (the gates were frozen during
    # fit: the end of epoch 1's), and every other weight is as the last epoch left it (but
    # the penalty's weight, which unfreezing the gates after fit restored).
    gates = [w.path.endswith("log_alpha") for w in model.weights]
    for weight, is_gate, before, end, now in zip(model.weights, gates, spy.weights[0],
                                                 spy.weights[-1], model.get_weights()):
        if not weight.path.endswith("penalty_weight"):
            assert np.array_equal(now, before if is_gate else end), weight.path
    assert any(gates)
    assert callback.binding is None


@pytest.mark.slow
def test_fit_commits_a_cut_within_the_tolerance_and_logs_it(trained, digits):
    x, y, xv, yv = digits
    model = trained
    params = memory.parameter_count(model)
    controller = tol.Tolerance(0.5, warmup=None, step=0.3)
    callback = DynHPCallback(tolerance=controller)
    history = model.fit(x, y, epochs=2, batch_size=64, verbose=0, validation_data=(xv, yv),
                        callbacks=[callback])
    assert controller.monitor == "val_accuracy"
    assert memory.parameter_count(model) < params
    first, last = callback.history
    assert first["dynhp/tolerance/cut"] == 0.0  # the first epoch only cuts provisionally
    assert last["dynhp/tolerance/state"] == "committed"
    assert 0.2 < last["dynhp/tolerance/cut"] < 0.5  # about `step` of the MACs
    # The trial's metric is the pruned model's, and the epoch's validation metric already
    # measured the network without the cut units.
    after = tol.evaluate(model, (xv, yv), "accuracy")
    assert after == pytest.approx(last["dynhp/tolerance/after"], abs=1e-6)
    assert after == pytest.approx(history.history["val_accuracy"][-1], abs=1e-6)


@pytest.mark.slow
def test_the_default_prunes_within_tolerance_with_validation_data_and_gates_frozen(trained,
                                                                                    digits):
    x, y, xv, yv = digits
    model = trained
    callback = DynHPCallback()
    assert isinstance(callback.tolerance, tol.Tolerance)
    frozen_in_fit = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            frozen_in_fit.append(all(g.frozen for g in self.model.gate_layers))

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(x, y, epochs=2, batch_size=64, verbose=0, validation_data=(xv, yv),
                  callbacks=[Spy(), callback])
    assert frozen_in_fit == [True, True]  # no sampling noise while the rule runs
    assert not any(g.frozen for g in model.gate_layers)  # as they were before fit
    assert callback.history[0]["dynhp/tolerance/state"] in ("warmup", "cutting")
    # A rule named by the caller is that rule.
    assert DynHPCallback(threshold=0.5).tolerance is None
    assert DynHPCallback(target="50% params").tolerance is None
    assert DynHPCallback(tolerance=None).tolerance is None


@pytest.mark.slow
def test_without_validation_data_it_warns_and_uses_the_threshold_rule(trained, digits):
    x, y, _, _ = digits
    with pytest.warns(UserWarning, match="validation_split"):
        trained.fit(x, y, epochs=1, batch_size=64, verbose=0,
                    callbacks=[DynHPCallback(tolerance=0.01)])
    callback = DynHPCallback()
    with pytest.warns(UserWarning, match="threshold` rule instead"):
        trained.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[callback])
    # The threshold rule ran: the epoch was recorded, with no trial of the tolerance rule.
    assert len(callback.history) == 1
    assert not any(key.startswith("dynhp/tolerance/") for key in callback.history[0])


@pytest.mark.slow
def test_validation_split_is_found_and_no_warning_is_given(trained, digits):
    x, y, _, _ = digits
    callback = DynHPCallback(tolerance=tol.Tolerance(0.01, warmup=None))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        # 280 examples cannot resolve one point (the resolution warning, tested below).
        warnings.filterwarnings("ignore", message=".*standard error", category=UserWarning)
        trained.fit(x, y, epochs=2, batch_size=64, verbose=0, validation_split=0.2,
                    callbacks=[callback])
    assert callback.history[0]["dynhp/tolerance/state"] == "cutting"


@pytest.mark.slow
def test_an_early_stop_never_leaves_a_cut_unjudged(trained, digits):
    x, y, xv, yv = digits
    model = trained
    params = memory.parameter_count(model)
    controller = tol.Tolerance(0.0, monitor="val_loss", warmup=None, step=0.9, max_step=0.95,
                               max_drop=None)
    callback = DynHPCallback(tolerance=controller)

    class StopAfterOne(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    model.fit(x, y, epochs=5, batch_size=64, verbose=0, validation_data=(xv, yv),
              callbacks=[callback, StopAfterOne()])
    final = callback.history[-1]["dynhp/tolerance/final_trial"]
    assert not final["committed"] and controller.pending is None
    assert memory.parameter_count(model) == params
    assert not any(np.any(g.log_alpha.numpy() == tol.CLOSED_LOG_ALPHA)
                   for g in model.gate_layers)


@pytest.mark.slow
def test_target_plus_tolerance_stops_at_the_tolerance_when_it_binds_first(trained, digits):
    x, y, xv, yv = digits
    model = trained
    params = memory.parameter_count(model)
    controller = tol.Tolerance(0.0, monitor="val_loss")
    callback = DynHPCallback(target="10% params", target_epoch=1, tolerance=controller)
    with pytest.warns(UserWarning, match=r"target of .* was due by epoch 1 .* The tolerance on "
                                         r"val_loss refused the larger cuts"):
        model.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_data=(xv, yv),
                  callbacks=[callback])
    assert callback.binding == "tolerance"
    assert callback.history[-1]["dynhp/target_met"] is False
    assert memory.parameter_count(model) > 0.1 * params * 1.5


@pytest.mark.slow
def test_a_resumed_run_continues_the_rule_and_its_pending_cut(trained, digits, tmp_path):
    """Killed after epoch 1 with a provisional cut pending and resumed as the README says
    (`distribute.resume`, `fit(initial_epoch=...)`): the rule continues (no new warm-up, the
    pending cut is judged, its gates can be given back), the gates are not folded as a
    target's frozen phase would be, and they are unfrozen at the end."""
    from tfdynhp import distribute

    x, y, xv, yv = digits
    path = str(tmp_path / "run.keras")

    def callbacks():
        return [DynHPCallback(tolerance=tol.Tolerance(0.01, warmup=None, max_drop=None)),
                distribute.ChiefCheckpoint(path)]

    with pytest.raises(Killed):
        trained.fit(x, y, epochs=4, batch_size=64, verbose=0, validation_data=(xv, yv),
                    callbacks=[*callbacks(), KillAfter(1)])
    resumed, state = distribute.resume(path)
    saved = resumed.dynhp_run["tolerance"]
    rule = saved["rule"]
    assert state["epoch"] == 1 and rule["pending"] is not None and len(rule["values"]) == 1
    assert saved["gates"], "the closed gates' old values are saved for an undo"
    closed = sum(int(np.sum(g.log_alpha.numpy() == tol.CLOSED_LOG_ALPHA))
                 for g in resumed.gate_layers)
    assert closed == sum(len(p) for p, _ in saved["gates"].values())
    resumed.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    callback = callbacks()[0]
    resumed.fit(x, y, epochs=4, initial_epoch=1, batch_size=64, verbose=0,
                validation_data=(xv, yv), callbacks=[callback])
    states = [h["dynhp/tolerance/state"] for h in callback.history]
    assert states[0] in ("committed", "holding", "undone")  # the pending cut is judged
    assert "warmup" not in states
    assert not any(g.folded or g.frozen for g in resumed.gate_layers)


def test_the_resolution_of_a_validation_set_against_the_tolerance():
    assert tol.standard_error(0.9, 270) == pytest.approx(0.01826, abs=1e-5)
    assert tol.standard_error(1.2, 10) == 0.0  # clipped to [0, 1]
    message = tol.resolution_message("val_accuracy", 0.9, 270, 0.01)
    assert "270 examples" in message and "tolerance=0.04" in message
    assert tol.resolution_message("val_accuracy", 0.9, 6000, 0.01) is None
    assert tol.resolution_message("val_loss", 0.9, 10, 0.01) is None  # no bound for a loss
    assert tol.resolution_message("val_accuracy", 0.9, None, 0.01) is None  # size unknown


def test_a_fit_warns_once_when_its_validation_set_cannot_resolve_the_tolerance(trained,
                                                                                digits):
    x, y, xv, yv = digits
    callback = DynHPCallback(tolerance=tol.Tolerance(0.01, warmup=None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trained.fit(x, y, epochs=3, batch_size=64, verbose=0,
                    validation_data=(xv[:150], yv[:150]), callbacks=[callback])
    found = [w for w in caught if "standard error" in str(w.message)]
    assert len(found) == 1 and "150 examples" in str(found[0].message)
