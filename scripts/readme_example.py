"""Runs the README's Keras examples ("Use it from Keras") on a Fashion-MNIST subset.

Used by `tests/test_readme.py` and by `scripts/check_wheel.sh` (from a wheel installed in a
fresh virtual environment). `python scripts/readme_example.py README.md [--examples N]
[--epochs E]` runs them in the current folder and checks that each pruned its model: the
first (no target) removed something, the second ("10% params") met its target.
"""

import argparse
import re
import sys

import numpy as np


def example_blocks(readme_text):
    """The README's Keras examples: the python blocks starting with `import keras`."""
    found = re.findall(r"```python\n(import keras\nimport tfdynhp\n.*?)```", readme_text,
                       re.DOTALL)
    if not found:
        raise ValueError("The README has no ```python block starting with 'import keras'.")
    return found


def run_example(readme_text, index=0, examples=2000, epochs=3):
    """Runs example `index` with `tfdynhp.datasets.load` limited to `examples` training and
    500 test examples and `epochs` epochs; returns the example's namespace."""
    import tfdynhp

    block = example_blocks(readme_text)[index]
    if "epochs=10" not in block:
        raise ValueError("The README's example no longer trains for epochs=10.")
    real_load = tfdynhp.datasets.load

    def subset(name, **kwargs):
        (x, y), (x_test, y_test) = real_load(name, **kwargs)
        keep = np.random.default_rng(0).permutation(len(x))[:examples]
        return (x[keep], y[keep]), (x_test[:500], y_test[:500])

    tfdynhp.datasets.load = subset
    import keras

    keras.utils.set_random_seed(0)  # the same run every time (the README leaves it unseeded)
    try:
        namespace = {}
        code = block.replace("epochs=10", f"epochs={epochs}")
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    finally:
        tfdynhp.datasets.load = real_load
    return namespace


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readme")
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    with open(args.readme) as f:
        text = f.read()
    failed = 0
    for index in range(len(example_blocks(text))):
        namespace = run_example(text, index, args.examples, args.epochs)
        before, after = namespace["base"].count_params(), namespace["plain"].count_params()
        limit = 0.1 * before if "target=\"10% params\"" in example_blocks(text)[index] else (
            before - 1)
        print(f"README example {index + 1}: {before} -> {after} params")
        if after > limit:
            print(f"README example {index + 1}: not pruned as it says ({before} -> {after})",
                  file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
