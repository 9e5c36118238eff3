"""Criteria (magnitude, Taylor, activation density, LRP, random) on a hand-computed layer, and
one-shot `tfdynhp.prune` of plain Dense and Conv models."""

import keras
import numpy as np
import pytest
from keras import layers

import tfdynhp
from tfdynhp.graph import analyze
from tfdynhp.policies import criteria
from tfdynhp.surgery import prunable_units

# A 2-2-2 network small enough to score by hand: h = relu(x W1), z = h W2 (no biases).
W1 = np.array([[1.0, -1.0], [0.5, 1.0]], "float32")
W2 = np.array([[1.0, -1.0], [2.0, 0.5]], "float32")
X = np.array([[1.0, 2.0], [2.0, -1.0]], "float32")
Y = np.array([0, 1])
# h = [[2, 1], [1.5, 0]] and z = [[4, -1.5], [1.5, -1.5]].


def tiny(softmax=False):
    inputs = keras.Input((2,))
    h = layers.Dense(2, activation="relu", use_bias=False, name="hidden")(inputs)
    z = layers.Dense(2, use_bias=False, activation="softmax" if softmax else None,
                     name="head")(h)
    model = keras.Model(inputs, z)
    model.get_layer("hidden").kernel.assign(W1)
    model.get_layer("head").kernel.assign(W2)
    return model


def test_magnitude_is_the_norm_of_the_columns_creating_each_unit():
    model = tiny()
    l1 = criteria.get("magnitude").scores(model)
    np.testing.assert_allclose(l1["hidden"], [1.5, 2.0])
    l2 = criteria.get("magnitude", p=2).scores(model)
    np.testing.assert_allclose(l2["hidden"], [np.sqrt(1.25), np.sqrt(2.0)], rtol=1e-6)
    # Reading weights too: rows of W2 (|1|+|-1|, |2|+|0.5|).
    both = criteria.Magnitude(include="both").scores(model)
    np.testing.assert_allclose(both["hidden"], [1.5 + 2.0, 2.0 + 2.5])
    assert set(l1) == {"hidden"}  # the head reaches the output: never scored


def test_activation_density_is_the_fraction_of_nonzero_outputs():
    scores = criteria.get("activation_density").scores(tiny(), X)
    np.testing.assert_allclose(scores["hidden"], [1.0, 0.5])


def test_taylor_is_mean_abs_activation_times_gradient():
    h = np.maximum(X @ W1, 0)
    z = h @ W2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    dz = p - np.eye(2)[Y]  # d cross-entropy / d logits, per example
    dh = dz @ W2.T
    expected = np.abs(h * dh).mean(0)
    scores = criteria.get("taylor").scores(tiny(), (X, Y))
    np.testing.assert_allclose(scores["hidden"], expected, rtol=1e-5)
    # The same with a softmax output (loss on probabilities).
    scores = criteria.get("taylor").scores(tiny(softmax=True), (X, Y))
    np.testing.assert_allclose(scores["hidden"], expected, rtol=1e-4)


def test_taylor_spatial_sum_is_the_loss_change_of_a_channel_at_every_position():
    """A conv channel on 4x4 positions: "sum" scores it 16 times "mean" does (per example,
    |sum_hw a*g| = 16 |mean_hw a*g|), so channels of different resolutions compare."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1))
    h = layers.Conv2D(3, 1, activation="relu", name="conv")(inputs)
    z = layers.Dense(2, name="head")(layers.Flatten()(h))
    model = keras.Model(inputs, z)
    x = np.random.default_rng(0).uniform(size=(5, 4, 4, 1)).astype("float32")
    data = (x, np.array([0, 1, 0, 1, 1]))
    mean = criteria.Taylor(spatial="mean").scores(model, data)["conv"]
    total = criteria.Taylor(spatial="sum").scores(model, data)["conv"]
    np.testing.assert_allclose(total, 16 * mean, rtol=1e-5)
    with pytest.raises(ValueError, match="spatial"):
        criteria.Taylor(spatial="max")


def test_lrp_epsilon_rule_by_hand():
    eps = 1e-3
    # Example 1, class 0: z0 = 4, R_j = h_j W2[j, 0] z0 / (z0 + eps) = [2, 2] * 4 / 4.001.
    # Example 2, class 1: z1 = -1.5, R_j = [1.5 * -1, 0] * -1.5 / (-1.5 - eps).
    r1 = np.array([2.0, 2.0]) * 4 / (4 + eps)
    r2 = np.array([-1.5, 0.0]) * -1.5 / (-1.5 - eps)
    for softmax in (False, True):  # relevance starts before the softmax either way
        scores = criteria.LRP(epsilon=eps).scores(tiny(softmax), (X, Y))
        np.testing.assert_allclose(scores["hidden"], (r1 + r2) / 2, rtol=1e-5)
    # Without labels relevance starts from the predicted class (0 for both examples).
    r2_pred = np.array([1.5, 0.0]) * 1.5 / (1.5 + eps)
    np.testing.assert_allclose(criteria.LRP(epsilon=eps).scores(tiny(), X)["hidden"],
                               (r1 + r2_pred) / 2, rtol=1e-5)


def test_lrp_alpha_beta_rule_by_hand():
    # Example 1, class 0: every z_ij = h_i W2[i, 0] > 0: R = alpha * [2, 2] * 4 / 4.
    # Example 2, class 1: z_ij = [1.5 * -1, 0]: only negative parts; z- = -1.5, R = -1.5:
    #   R_0 = -beta * (-1.5 / -1.5) * -1.5 = 1.5 beta.
    for alpha, expected in ((1.0, [1.0, 1.0]), (2.0, [(4 + 1.5) / 2, 2.0])):
        scores = criteria.LRP(rule="alpha_beta", alpha=alpha).scores(tiny(), (X, Y))
        np.testing.assert_allclose(scores["hidden"], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="alpha_beta"):
        criteria.LRP(rule="z+")


def test_lrp_alpha1_beta0_conserves_relevance_through_folded_bn():
    """With alpha=1, beta=0 and no biases, every active unit passes all its relevance on."""
    model = _conv_bn_model()
    bn = next(la for la in model.layers if isinstance(la, layers.BatchNormalization))
    bn.moving_variance.assign(np.array([0.5, 2.0, 1.0, 3.0], "float32"))
    x = np.random.default_rng(1).random((4, 6, 6, 2)).astype("float32")
    scores = criteria.LRP(rule="alpha_beta", alpha=1.0, epsilon=1e-9).scores(model, x)
    logit = model.predict(x, verbose=0).max(1).mean()
    np.testing.assert_allclose(scores["conv_a"].sum(), logit, rtol=1e-3)
    np.testing.assert_allclose(scores["fc"].sum(), logit, rtol=1e-3)


def _conv_bn_model(seed=0):
    init = keras.initializers.GlorotUniform(seed)
    inputs = keras.Input((6, 6, 2))
    x = layers.Conv2D(4, 3, padding="same", use_bias=False, kernel_initializer=init,
                      name="conv_a")(inputs)
    x = layers.BatchNormalization(center=False)(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(3, 3, use_bias=False, activation="relu", kernel_initializer=init,
                      name="conv_b")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(5, use_bias=False, activation="relu", kernel_initializer=init,
                     name="fc")(x)
    return keras.Model(inputs, layers.Dense(3, use_bias=False, kernel_initializer=init)(x))


def test_lrp_conserves_relevance_through_conv_bn_pooling_and_flatten():
    """Without biases and a tiny epsilon, each layer's relevance sums to the target logit."""
    model = _conv_bn_model()
    bn = next(la for la in model.layers if isinstance(la, layers.BatchNormalization))
    bn.moving_variance.assign(np.array([0.5, 2.0, 1.0, 3.0], "float32"))
    bn.gamma.assign(np.array([1.5, 0.7, 1.0, 2.0], "float32"))
    x = np.random.default_rng(0).random((6, 6, 6, 2)).astype("float32")
    target = model.predict(x, verbose=0).argmax(1)
    logit = model.predict(x, verbose=0)[np.arange(6), target].mean()
    scores = criteria.LRP(epsilon=1e-9).scores(model, x)
    assert set(scores) == {"conv_a", "conv_b", "fc"}
    for values in scores.values():
        np.testing.assert_allclose(values.sum(), logit, rtol=1e-3)


def test_random_scores_are_seeded():
    model = _conv_bn_model()
    a = criteria.get("random", seed=3).scores(model)
    b = criteria.get("random", seed=3).scores(model)
    c = criteria.get("random", seed=4).scores(model)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.array_equal(a[name], c[name])
        assert a[name].min() >= 0 and a[name].max() < 1


def test_rules_threshold_fraction_and_count():
    unit_graph = analyze(tiny())
    scores = {"hidden": np.array([0.3, 0.1])}
    assert criteria.select(scores, unit_graph, fraction=0.5)["hidden"].tolist() == [True, False]
    assert criteria.select(scores, unit_graph, count=1)["hidden"].tolist() == [True, False]
    assert criteria.select(scores, unit_graph, threshold=0.2)["hidden"].tolist() == [True, False]
    # Never below min_units, never a NaN score.
    assert criteria.select(scores, unit_graph, count=5)["hidden"].sum() == 1
    assert criteria.select({"hidden": np.array([np.nan, 0.1])}, unit_graph,
                           count=1)["hidden"].tolist() == [True, False]
    assert criteria.select(scores, unit_graph, fraction=0.4) == {}
    with pytest.raises(ValueError, match="exactly one rule"):
        criteria.select(scores, unit_graph, fraction=0.5, count=1)


def test_unknown_criterion_lists_the_valid_names():
    with pytest.raises(ValueError, match="activation_density, gate_rate, lrp, magnitude"):
        criteria.get("l1-norm")
    with pytest.raises(TypeError, match="scores"):
        criteria.get(42)
    assert isinstance(criteria.get("Activation-Density"), criteria.ActivationDensity)


def test_gate_rate_needs_a_gated_model():
    with pytest.raises(ValueError, match="needs a gated model"):
        tfdynhp.prune(tiny(), "gate_rate", threshold=0.5)


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


@pytest.mark.parametrize("name, data", [("taylor", None), ("lrp", None),
                                        ("activation_density", None), ("taylor", "x only")])
def test_criterion_without_the_data_it_needs_leaves_the_model_untouched(name, data):
    model = _conv_bn_model()
    before = _weights(model)
    match = "needs labels" if data else "pass `data=x`"
    with pytest.raises(ValueError, match=match):
        tfdynhp.prune(model, name, fraction=0.5,
                      data=np.zeros((2, 6, 6, 2), "float32") if data else None)
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)


def test_prune_rejects_unknown_groups_and_missing_rules():
    model = tiny()
    with pytest.raises(ValueError, match="not prunable"):
        tfdynhp.prune(model, "magnitude", fraction=0.5, groups=["head"])
    with pytest.raises(ValueError, match="exactly one of"):
        tfdynhp.prune(model, "magnitude")
    assert prunable_units(model) == {"hidden": 2}


@pytest.mark.parametrize("name", ["magnitude", "taylor", "activation_density", "lrp", "random"])
def test_prune_then_fit_a_plain_cnn(name):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((64, 6, 6, 2)).astype("float32")
    y = (x[:, :3].mean((1, 2, 3)) > x[:, 3:].mean((1, 2, 3))).astype("int32")
    model = _conv_bn_model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    report = tfdynhp.prune(model, name, fraction=0.5, data=(x, y))
    assert report.units_after == {"conv_a": 2, "conv_b": 2, "fc": 3}
    assert model.get_layer("conv_a").kernel.shape == (3, 3, 2, 2)
    assert model.get_layer("fc").kernel.shape == (2, 3)  # 1x1 map, 2 channels left
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    # The pruned units are the lowest-scoring ones.
    for group, mask in report.keep_masks.items():
        scores = report.scores[group]
        assert scores[~mask].max() <= scores[mask].min()


def test_prune_a_trained_sequential_mlp_by_taylor_keeps_accuracy(digits):
    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), layers.Dense(64, activation="relu"),
                              layers.Dense(32, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    dense_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    params = model.count_params()
    tfdynhp.prune(model, "taylor", fraction=0.5, data=(x[:400], y[:400]))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    assert model.count_params() < 0.45 * params
    assert model.evaluate(x_test, y_test, verbose=0)[1] > dense_accuracy - 0.05


def test_dynhp_callback_prunes_a_gated_model_by_another_criterion(digits):
    """`DynHPCallback(criterion="activation_density")`: units below the threshold go at each
    epoch's end, inside one fit of a gated model."""
    x, y = digits[:2]
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((64,)), layers.Dense(32, activation="relu"),
                             layers.Dense(10, activation="softmax")])
    model = tfdynhp.gate(base, seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    callback = tfdynhp.DynHPCallback(criterion="activation_density", threshold=0.3,
                                     criterion_data=x[:200])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[callback])
    stripped = tfdynhp.strip(model)
    hidden = next(la for la in stripped.layers if isinstance(la, layers.Dense))
    assert hidden.units < 32
    density = criteria.ActivationDensity().scores(stripped, x[:200])
    assert density[hidden.name].min() >= 0.3 - 1e-9 or hidden.units == 1


def test_dynhp_callback_refuses_a_data_criterion_without_data():
    with pytest.raises(ValueError, match="pass `data=x`"):
        tfdynhp.DynHPCallback(criterion="taylor")
    with pytest.raises(ValueError, match="Unknown criterion"):
        tfdynhp.DynHPCallback(criterion="l9")
