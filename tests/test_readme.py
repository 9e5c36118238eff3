"""The README's Keras example runs (on a Fashion-MNIST subset, for 2 epochs)."""

import pathlib
import re

import numpy as np

import tfdynhp

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_keras_example_runs(monkeypatch, tmp_path):
    text = README.read_text()
    block = re.search(r"```python\n(import keras\nimport tfdynhp\n.*?)```", text, re.DOTALL).group(1)
    assert "DynHPCallback(budget=" in block and "tfdynhp.strip(model)" in block
    real_load = tfdynhp.datasets.load

    def subset(name, **kwargs):
        (x, y), (x_test, y_test) = real_load(name, **kwargs)
        keep = np.random.default_rng(0).permutation(len(x))[:2000]
        return (x[keep], y[keep]), (x_test[:500], y_test[:500])

    monkeypatch.setattr(tfdynhp.datasets, "load", subset)
    monkeypatch.chdir(tmp_path)
    block = block.replace("epochs=50", "epochs=2").replace("(1e-3, 50)", "(1e-3, 2)")
    namespace = {}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    assert (tmp_path / "history.csv").read_text().count("\n") == 3
    assert not tfdynhp.is_gated_model(namespace["plain"])
    assert namespace["plain"].predict(namespace["x_test"][:4], verbose=0).shape == (4, 10)
