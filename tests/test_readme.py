"""The README's Keras examples run (on a Fashion-MNIST subset, for 3 epochs) and prune: the
first (no target: pruning bounded by validation accuracy) and the second (a target)."""

import pathlib
import sys

import pytest

import tfdynhp

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import readme_example


@pytest.fixture
def readme(monkeypatch, tmp_path):
    try:
        tfdynhp.datasets.load_fashion_mnist()
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST is not installed here ({e})")
    monkeypatch.chdir(tmp_path)
    return (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_readme_first_example_prunes_a_cnn_with_no_target(readme):
    block = readme_example.example_blocks(readme)[0]
    assert "DynHPCallback(verbose=1)" in block and "target=" not in block
    assert "validation_split=" in block and "BatchNormalization" in block
    namespace = readme_example.run_example(readme, 0, examples=2000, epochs=3)
    plain, base, model = namespace["plain"], namespace["base"], namespace["model"]
    assert not tfdynhp.is_gated_model(plain)
    rule = model.dynhp_run["tolerance"]["rule"]  # the tolerance rule judged every epoch
    assert len(rule["values"]) == 3 and rule["monitor"] == "val_accuracy"
    assert plain.count_params() < base.count_params()
    assert plain.predict(namespace["x_test"][:4], verbose=0).shape == (4, 10)


@pytest.mark.slow
def test_readme_target_example_meets_its_target(readme, tmp_path):
    block = readme_example.example_blocks(readme)[1]
    assert "DynHPCallback(target=" in block and "tfdynhp.strip(model)" in block
    namespace = readme_example.run_example(readme, 1, examples=2000, epochs=3)
    assert (tmp_path / "history.csv").read_text().count("\n") == 4
    plain, base = namespace["plain"], namespace["base"]
    assert not tfdynhp.is_gated_model(plain)
    # "10% params", met by epoch 2 of 3: the stripped model is at most a tenth of the base.
    assert plain.count_params() <= 0.1 * base.count_params()
    assert plain.predict(namespace["x_test"][:4], verbose=0).shape == (4, 10)
