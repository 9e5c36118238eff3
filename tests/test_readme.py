"""The README's Keras example runs (on a Fashion-MNIST subset, for 3 epochs) and prunes."""

import pathlib
import sys

import pytest

import tfdynhp

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import readme_example


@pytest.mark.slow
def test_readme_keras_example_runs(monkeypatch, tmp_path):
    try:
        tfdynhp.datasets.load_fashion_mnist()
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST is not installed here ({e})")
    text = (ROOT / "README.md").read_text()
    block = readme_example.example_block(text)
    assert "DynHPCallback(target=" in block and "tfdynhp.strip(model)" in block
    monkeypatch.chdir(tmp_path)
    namespace = readme_example.run_example(text, examples=2000, epochs=3)
    assert (tmp_path / "history.csv").read_text().count("\n") == 4
    plain, base = namespace["plain"], namespace["base"]
    assert not tfdynhp.is_gated_model(plain)
    # "10% params", met by epoch 2 of 3: the stripped model is at most a tenth of the base.
    assert plain.count_params() <= 0.1 * base.count_params()
    assert plain.predict(namespace["x_test"][:4], verbose=0).shape == (4, 10)
