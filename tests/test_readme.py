"""The README's Keras example runs (on a Fashion-MNIST subset, for 3 epochs) and prunes."""

import pathlib
import re

import numpy as np

import tfdynhp

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_keras_example_runs(monkeypatch, tmp_path):
    text = README.read_text()
    block = re.search(r"```python\n(import keras\nimport tfdynhp\n.*?)```", text, re.DOTALL).group(1)
    assert "DynHPCallback(target=" in block and "tfdynhp.strip(model)" in block
    real_load = tfdynhp.datasets.load

    def subset(name, **kwargs):
        (x, y), (x_test, y_test) = real_load(name, **kwargs)
        keep = np.random.default_rng(0).permutation(len(x))[:2000]
        return (x[keep], y[keep]), (x_test[:500], y_test[:500])

    monkeypatch.setattr(tfdynhp.datasets, "load", subset)
    monkeypatch.chdir(tmp_path)
    assert "epochs=10" in block
    block = block.replace("epochs=10", "epochs=3")
    namespace = {}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    assert (tmp_path / "history.csv").read_text().count("\n") == 4
    plain, base = namespace["plain"], namespace["base"]
    assert not tfdynhp.is_gated_model(plain)
    # "10% params", met by epoch 2 of 3: the stripped model is at most a tenth of the base.
    assert plain.count_params() <= 0.1 * base.count_params()
    assert plain.predict(namespace["x_test"][:4], verbose=0).shape == (4, 10)
