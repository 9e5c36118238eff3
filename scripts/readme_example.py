"""Runs the README's Keras example ("Use it from Keras") on a Fashion-MNIST subset.

Used by `tests/test_readme.py` and by `scripts/check_wheel.sh` (from a wheel installed in a
fresh virtual environment). `python scripts/readme_example.py README.md [--examples N]
[--epochs E]` runs it in the current folder and prints the parameters before and after.
"""

import argparse
import re
import sys

import numpy as np


def example_block(readme_text):
    """The README's Keras example: the python block starting with `import keras`."""
    found = re.search(r"```python\n(import keras\nimport tfdynhp\n.*?)```", readme_text,
                      re.DOTALL)
    if found is None:
        raise ValueError("The README has no ```python block starting with 'import keras'.")
    return found.group(1)


def run_example(readme_text, examples=2000, epochs=3):
    """Runs the example with `tfdynhp.datasets.load` limited to `examples` training and 500
    test examples and `epochs` epochs; returns the example's namespace."""
    import tfdynhp

    block = example_block(readme_text)
    if "epochs=10" not in block:
        raise ValueError("The README's example no longer trains for epochs=10.")
    real_load = tfdynhp.datasets.load

    def subset(name, **kwargs):
        (x, y), (x_test, y_test) = real_load(name, **kwargs)
        keep = np.random.default_rng(0).permutation(len(x))[:examples]
        return (x[keep], y[keep]), (x_test[:500], y_test[:500])

    tfdynhp.datasets.load = subset
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
        namespace = run_example(f.read(), args.examples, args.epochs)
    base, plain = namespace["base"], namespace["plain"]
    if plain.count_params() > 0.1 * base.count_params():
        print(f"README example: not pruned to 10% ({base.count_params()} -> "
              f"{plain.count_params()})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
