"""`tfdynhp prune` and `tfdynhp specialize` on a saved .keras model."""

import keras
import pytest
from keras import layers

from tfdynhp import cli


@pytest.fixture(scope="module")
def saved_mlp(digits, tmp_path_factory):
    x, y = digits[:2]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), layers.Dense(16, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("cli") / "mlp.keras"
    model.save(path)
    return str(path)


def test_prune_writes_a_narrower_model(saved_mlp, tmp_path, capsys):
    out = str(tmp_path / "pruned.keras")
    code = cli.main(["prune", saved_mlp, "--dataset", "digits", "--criterion", "magnitude",
                     "--fraction", "0.5", "--out", out])
    assert code == 0
    assert keras.models.load_model(out).layers[0].units == 8
    assert '"criterion": "magnitude"' in capsys.readouterr().out


def test_specialize_writes_a_model_of_the_classes(saved_mlp, tmp_path):
    out = str(tmp_path / "special.keras")
    code = cli.main(["specialize", saved_mlp, "--dataset", "digits", "--classes", "3,1",
                     "--epochs", "1", "--out", out])
    assert code == 0
    model = keras.models.load_model(out)
    assert model.layers[-1].units == 2 and model.layers[0].units == 8


@pytest.mark.parametrize("argv, message", [
    (["prune", "--criterion", "l7"], "Unknown criterion 'l7'"),
    (["specialize", "--classes", "1,1"], "repeats [1]"),
    (["specialize", "--classes", "a"], "comma-separated integers"),
])
def test_bad_input_is_a_usage_error(saved_mlp, tmp_path, capsys, argv, message):
    out = str(tmp_path / "x.keras")
    code = cli.main([argv[0], saved_mlp, "--dataset", "digits", *argv[1:], "--out", out])
    assert code == 2
    assert message in capsys.readouterr().err
