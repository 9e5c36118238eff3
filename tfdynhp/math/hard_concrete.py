"""Hard Concrete gate math (Louizos, Welling & Kingma, 2018, "Learning Sparse Neural Networks
through L0 Regularization").

Pure functions over `keras.ops`, so they work on NumPy arrays and backend tensors alike and can
be tested without a model. Symbols follow the paper and `METHOD.md` §1: `beta` is the
temperature, `gamma < 0 < 1 < zeta` stretch the concrete distribution so that a gate can be
exactly 0 or 1. (The pruning threshold of DynHP is called `threshold` elsewhere, never `gamma`.)
"""

import math

from keras import ops

BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1


def stretched_gate(s, gamma=GAMMA, zeta=ZETA):
    """Stretches `s` in (0, 1) to (gamma, zeta) and clips it to [0, 1]."""
    return ops.clip(s * (zeta - gamma) + gamma, 0.0, 1.0)


def concrete_sample(log_alpha, uniform_noise, beta=BETA):
    """The binary Concrete sample `s = sigmoid((log u - log(1 - u) + log_alpha) / beta)`,
    computed as `1 / (1 + exp(-log_alpha / beta) ((1 - u) / u)^(1 / beta))`: the same number
    with one transcendental per gate instead of three per sample (`^(3/2)`, the default
    temperature's power, is `r sqrt(r)`). `u = 0` gives `s = 0` (no NaN); `log_alpha`
    broadcasts against `uniform_noise`.
    """
    odds = (1.0 - uniform_noise) / uniform_noise
    if beta == BETA:
        powered = odds * ops.sqrt(odds)
    else:
        powered = ops.power(odds, 1.0 / beta)
    return 1.0 / (1.0 + ops.exp(-log_alpha / beta) * powered)


def sample_gates(log_alpha, uniform_noise, beta=BETA, gamma=GAMMA, zeta=ZETA):
    """Samples Hard Concrete gates `z` from uniform noise `u ~ U(0, 1)`.

    `s = sigmoid((log u - log(1 - u) + log_alpha) / beta)` (see `concrete_sample`), `z =
    clip(s (zeta - gamma) + gamma, 0, 1)`. `uniform_noise` has the shape of the sample, e.g.
    `(batch, units)`; `log_alpha` broadcasts against it.
    """
    return stretched_gate(concrete_sample(log_alpha, uniform_noise, beta), gamma, zeta)


def deterministic_gates(log_alpha, gamma=GAMMA, zeta=ZETA):
    """Test-time gates `z_hat = clip(sigmoid(log_alpha) (zeta - gamma) + gamma, 0, 1)`."""
    return stretched_gate(ops.sigmoid(log_alpha), gamma, zeta)


def prob_nonzero(log_alpha, beta=BETA, gamma=GAMMA, zeta=ZETA):
    """Probability that a gate is non-zero: `sigmoid(log_alpha - beta log(-gamma / zeta))`."""
    return ops.sigmoid(log_alpha - beta * math.log(-gamma / zeta))


def expected_l0_penalty(
    log_alpha,
    l0_lambda,
    unit_cost=1.0,
    dataset_size=None,
    beta=BETA,
    gamma=GAMMA,
    zeta=ZETA,
):
    """Expected cost of the open gates, scaled: `lambda * c * sum_j P(z_j > 0) / N`.

    Args:
        log_alpha: gate parameters, one per gate.
        l0_lambda: the penalty strength `lambda`.
        unit_cost: `c`, what each gate's unit costs: 1 counts gates (units); the number of
            weights a gate switches off gives Louizos' expected L0 norm of the weights; the
            engine also uses MACs or memory (see `tfdynhp.costs.units`).
        dataset_size: `N`; when given the penalty is divided by it, as in Louizos' reference
            code (the penalty is a prior over the whole data set's likelihood).

    Returns:
        A scalar tensor.
    """
    penalty = l0_lambda * unit_cost * ops.sum(prob_nonzero(log_alpha, beta, gamma, zeta))
    if dataset_size:
        penalty = penalty / float(dataset_size)
    return penalty


def initial_log_alpha(drop_rate):
    """Mean of the initial `log_alpha` for an initial drop rate `p`: `log(1 - p) - log(p)`."""
    if not 0.0 < drop_rate < 1.0:
        raise ValueError(
            f"`drop_rate_init` must be strictly between 0 and 1. Received: drop_rate_init={drop_rate}"
        )
    return math.log(1.0 - drop_rate) - math.log(drop_rate)


ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-8


def adam_update(gradient, first_moment, second_moment, step, learning_rate,
                beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2, epsilon=ADAM_EPSILON):
    """One bias-corrected Adam step (Kingma & Ba, 2015) for the gate parameters.

    Args:
        gradient: `g`, the gradient of the loss with respect to `log_alpha`.
        first_moment, second_moment: `m`, `v` before the step.
        step: `t`, the number of this step (1 for the first).
        learning_rate: the step size.

    Returns:
        `(delta, m, v)`: the change to add to `log_alpha` and the new moments.
    """
    first_moment = beta_1 * first_moment + (1.0 - beta_1) * gradient
    second_moment = beta_2 * second_moment + (1.0 - beta_2) * ops.square(gradient)
    corrected_1 = first_moment / (1.0 - ops.power(beta_1, step))
    corrected_2 = second_moment / (1.0 - ops.power(beta_2, step))
    delta = -learning_rate * corrected_1 / (ops.sqrt(corrected_2) + epsilon)
    return delta, first_moment, second_moment
