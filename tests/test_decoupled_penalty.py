"""`HardConcreteGate(penalty_mode="decoupled")` (prototype, issue 29): the L0 penalty leaves
the loss and pulls `log_alpha` down by `l0_lambda * unit_cost` per step, in units of the gates'
Adam step, whatever the data set size or the layer."""

import keras
import numpy as np
import pytest
from conftest import make_mlp
from tfdynhp.callbacks import DynHPCallback

import tfdynhp
from tfdynhp.costs import memory
from tfdynhp.layers import HardConcreteGate


def _gate(**options):
    gate = HardConcreteGate(seed=0, **options)
    gate.build((None, 4))
    gate.set_steps_per_epoch(10)  # Adam step 0.1
    return gate


def test_the_pull_is_lambda_times_the_step_and_nothing_enters_the_loss():
    gate = _gate(penalty_mode="decoupled", l0_lambda=0.3, dataset_size=50_000)
    before = gate.log_alpha.numpy().copy()
    gate.apply_gradient(np.zeros(4, "float32"))  # no data gradient: only the pull moves it
    assert gate.log_alpha.numpy() - before == pytest.approx(np.full(4, -0.03), abs=1e-6)
    assert float(gate.penalty_weight.numpy()) == 0.0
    assert float(keras.ops.convert_to_numpy(gate.l0_penalty())) == 0.0
    # In the loss mode a zero gradient moves nothing (the penalty comes through the loss).
    plain = _gate(l0_lambda=0.3, dataset_size=50_000)
    before = plain.log_alpha.numpy().copy()
    plain.apply_gradient(np.zeros(4, "float32"))
    assert np.array_equal(plain.log_alpha.numpy(), before)


def test_frozen_or_changed_lambda_and_config_round_trip():
    gate = _gate(penalty_mode="decoupled", l0_lambda=0.3)
    gate.set_penalty(l0_lambda=0.6)
    assert float(gate.decoupled_pull.numpy()) == pytest.approx(0.6)
    clone = HardConcreteGate.from_config(gate.get_config())
    assert clone.penalty_mode == "decoupled"
    gate.freeze()
    before = gate.log_alpha.numpy().copy()
    gate.apply_gradient(np.zeros(4, "float32"))
    assert np.array_equal(gate.log_alpha.numpy(), before)
    with pytest.raises(ValueError, match="Received: penalty_mode='l1'"):
        HardConcreteGate(penalty_mode="l1")


def _pruned_params(digits, l0_lambda):
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    base = make_mlp(64, [32], 10)
    model = tfdynhp.gate(base, seed=0, penalty_mode="decoupled", l0_lambda=l0_lambda)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[DynHPCallback()])
    return memory.parameter_count(model), base.count_params()


def test_a_decoupled_pull_closes_gates_and_the_threshold_rule_prunes(digits):
    pulled, dense = _pruned_params(digits, 2.0)
    unpulled, _ = _pruned_params(digits, 0.0)
    assert pulled < 0.9 * dense
    assert pulled < unpulled
