"""Knowledge distillation into a gated model (`tfdynhp.model.distillation`, the GatedModel hook,
`training.train(teacher=...)`): the loss against numpy, a student that learns the teacher and
not its (scrambled) labels in a real `fit`, and pruning to a target with a teacher."""

import json

import keras
import numpy as np
import pytest

from tfdynhp import architectures, training
from tfdynhp.datasets.loaders import load_sklearn
from tfdynhp.model import Distillation, gate, strip
from tfdynhp.model.distillation import soft_targets_kl


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_soft_targets_kl_matches_numpy():
    rng = np.random.default_rng(0)
    zt, zs = rng.normal(size=(5, 4)) * 3, rng.normal(size=(5, 4)) * 3
    t = 2.5
    pt, ps = _softmax(zt / t), _softmax(zs / t)
    expected = t**2 * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1))
    got = float(soft_targets_kl(zt, zs, t, from_logits=True))
    assert got == pytest.approx(expected, rel=1e-5)
    # Probabilities give the same value (logits recovered as log p, up to a constant).
    assert float(soft_targets_kl(_softmax(zt), _softmax(zs), t)) == pytest.approx(expected,
                                                                                  rel=1e-4)
    assert float(soft_targets_kl(zt, zt, t, from_logits=True)) == pytest.approx(0, abs=1e-6)


def test_bad_teachers_are_refused():
    student = gate(architectures.mlp(64, (16,), 10))
    with pytest.raises(TypeError, match="Keras model"):
        Distillation("teacher.keras")
    with pytest.raises(ValueError, match="temperature"):
        Distillation(architectures.mlp(64, (8,), 10), temperature=0)
    with pytest.raises(ValueError, match="output shape"):
        student.distillation = Distillation(architectures.mlp(64, (8,), 3))
    with pytest.raises(TypeError, match="Distillation"):
        student.distillation = "teacher"
    with pytest.raises(ValueError, match="gated model"):
        training.RunConfig(mode="dense", teacher="t.keras").resolve()
    with pytest.raises(ValueError, match="gated model"):  # another method trains no gates
        training.RunConfig(method="activation-density", teacher="t.keras").resolve()


@pytest.fixture(scope="module")
def digits():
    (x, y), (xt, yt) = load_sklearn("digits", seed=0)
    keras.utils.set_random_seed(0)
    teacher = architectures.mlp(64, (64,), 10, seed=0)
    teacher.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    teacher.fit(x, y, batch_size=32, epochs=15, verbose=0)
    return (x, y), (xt, yt), teacher


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


@pytest.mark.slow
def test_student_learns_the_teacher_not_the_scrambled_labels(digits, tmp_path):
    (x, y), (xt, yt), teacher = digits
    assert _accuracy(teacher, xt, yt) >= 0.9
    before = [w.copy() for w in teacher.get_weights()]
    scrambled = np.random.default_rng(0).permutation(y)  # labels that teach nothing
    accuracy = {}
    for alpha in (0.0, 1.0):
        keras.utils.set_random_seed(1)
        student = gate(architectures.mlp(64, (32,), 10, seed=1), drop_rate_init=0.01)
        student.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
        student.distillation = Distillation(teacher, temperature=2.0, alpha=alpha)
        student.fit(x, scrambled, batch_size=32, epochs=15, verbose=0)
        accuracy[alpha] = _accuracy(strip(student), xt, yt)
    assert accuracy[1.0] >= 0.85 and accuracy[0.0] <= 0.3, accuracy
    # Evaluation reports the task loss: no distillation term (nor L0 penalty) outside training.
    task = keras.losses.sparse_categorical_crossentropy(yt, student.predict(xt, verbose=0))
    assert student.evaluate(xt, yt, verbose=0) == pytest.approx(float(np.mean(task)), rel=1e-4)
    for old, new in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(old, new)  # the teacher is not trained
    # The teacher is not part of the student: not in its weights, not in its file.
    assert len(student.weights) == len(gate(architectures.mlp(64, (32,), 10)).weights)
    student.save(tmp_path / "student.keras")
    assert len(keras.saving.load_model(tmp_path / "student.keras").weights) == len(
        student.weights)


@pytest.mark.slow
def test_train_prunes_to_a_target_with_a_teacher(digits, tmp_path):
    (x, y), (xt, yt), teacher = digits
    teacher.save(tmp_path / "teacher.keras")
    result = training.train(
        data=((x, y), (xt, yt)), arch="64", mode="hp", target="50% params", epochs=6,
        batch_size=32, lr=3e-3, teacher=str(tmp_path / "teacher.keras"), distill_alpha=0.7,
        lr_schedule="cosine-restart", target_epoch=3, verbose=0)
    s = result.summary
    assert s["teacher"].endswith("teacher.keras") and s["distill_alpha"] == 0.7
    assert result.model.distillation.alpha == 0.7
    dense_params = architectures.mlp(64, (64,), 10).count_params()
    assert s["params"] <= 0.5 * dense_params + 64
    assert s["test_accuracy"] >= 0.85, s["test_accuracy"]


@pytest.mark.slow
def test_cli_teacher(digits, tmp_path):
    from tfdynhp import cli

    _, _, teacher = digits
    teacher.save(tmp_path / "teacher.keras")
    common = ["train", "--dataset", "digits", "--arch", "64", "--epochs", "2", "--quiet",
              "--teacher", str(tmp_path / "teacher.keras")]
    assert cli.main(common + ["--mode", "dense", "--out", str(tmp_path / "d")]) == cli.EXIT_USAGE
    assert cli.main(common + ["--mode", "hp", "--target", "50% params", "--distill-alpha",
                              "0.9", "--out", str(tmp_path / "o")]) == 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["teacher"].endswith("teacher.keras") and s["distill_alpha"] == 0.9
