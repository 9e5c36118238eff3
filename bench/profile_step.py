"""Where the time of a gated training step goes: an ablation profile.

Times the compiled train function (`model.train_function` on a repeated in-memory batch, so
`fit`'s Python work is left out) of LeNet-300-100 variants, interleaved in rounds so that the
load of a shared machine hits them alike, and prints the median milliseconds per step:

- `plain`: stock Keras;
- `plain+input_grad`: stock Keras that also differentiates the loss with respect to the model
  input (the matmul `delta @ W^T` of the first layer, which per-example input gates need);
- `gated`: `tfdynhp.gate()` defaults (per-example Hard Concrete gates, counters, L0 penalty,
  the gates' Adam);
- `gated-no_counters`, `gated-no_penalty`, `gated-no_gate_adam`, `gated-no_noise`: the gated
  step with one part removed (the activation counters; the L0 penalty; the gates' own Adam
  step; the uniform noise and Hard Concrete sampling, replaced by the deterministic gates);
- `gated-batch`: `sampling="batch"`;
- `gated+variance`: with `enable_gradient_variance()` (every step);
- `...+jit`: the same with `jit_compile=True`.

    python bench/profile_step.py [--batches 128,512] [--rounds 15] [--steps 20]

Writes `bench/results/profile_step.json`.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import tfdynhp
from tfdynhp import architectures
from tfdynhp.layers.gate import HardConcreteGate
from tfdynhp.math import hard_concrete as gate_math
from tfdynhp.model.gated_model import GatedModel

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


class _InputGradModel(keras.Model):
    """A plain functional model whose train step also differentiates the loss w.r.t. x."""

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        grads = tape.gradient(loss, self.trainable_weights + [x])
        self.optimizer.apply_gradients(zip(grads[:-1], self.trainable_weights))
        return {"loss": loss, "x_grad": tf.reduce_sum(grads[-1])}


@contextlib.contextmanager
def _patched(part):
    """Removes one part of the gated step while a train function is traced."""
    saved = {}

    def patch(owner, name, value):
        saved[(owner, name)] = getattr(owner, name)
        setattr(owner, name, value)

    if part == "no_counters":
        original = HardConcreteGate.call

        def call(self, inputs, training=False):
            active, observations = self.gate_active_count, self.gate_observations
            try:
                object.__setattr__(self, "gate_active_count", _Sink(active))
                object.__setattr__(self, "gate_observations", _Sink(observations))
                return original(self, inputs, training)
            finally:
                object.__setattr__(self, "gate_active_count", active)
                object.__setattr__(self, "gate_observations", observations)

        patch(HardConcreteGate, "call", call)
    elif part == "no_penalty":
        patch(GatedModel, "l0_penalty", lambda self: tf.constant(0.0))
    elif part == "no_gate_adam":
        patch(HardConcreteGate, "apply_gradient", lambda self, gradient, apply=True: None)
    elif part == "no_noise":
        def call(self, inputs, training=False):
            z = gate_math.deterministic_gates(self.log_alpha, **self._gate_kwargs())
            return inputs * ops_cast(z, inputs.dtype)

        patch(HardConcreteGate, "call", call)
    try:
        yield
    finally:
        for (owner, name), value in saved.items():
            setattr(owner, name, value)


def ops_cast(x, dtype):
    return keras.ops.cast(x, dtype)


class _Sink:
    """Stands in for a counter variable: keeps its dtype/shape, drops the update."""

    def __init__(self, variable):
        self.dtype, self.shape = variable.dtype, variable.shape

    def assign_add(self, value):
        return value


def _base(seed=0):
    return architectures.mlp(784, seed=seed)


def build(name, n_train):
    jit = name.endswith("+jit")
    if name == "plain":
        model = _base()
    elif name == "plain+input_grad":
        base = _base()
        model = _InputGradModel(base.inputs, base.outputs, name="plain_input_grad")
    else:
        sampling = "batch" if "batch" in name else "example"
        model = tfdynhp.gate(_base(), seed=0, l0_lambda=1.0, dataset_size=n_train,
                             sampling=sampling)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  jit_compile=jit)
    if "+variance" in name:
        model.enable_gradient_variance()
    return model


VARIANTS = ("plain", "plain+input_grad", "gated", "gated-no_counters", "gated-no_penalty",
            "gated-no_gate_adam", "gated-no_noise", "gated-batch", "gated+variance",
            "gated+jit", "gated-no_noise+jit", "gated-no_counters+jit", "gated+variance+jit")


def _time(model, iterator, steps):
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_function(iterator)
    keras.tree.map_structure(lambda v: v.numpy() if hasattr(v, "numpy") else v, logs)
    return (time.perf_counter() - start) / steps


def measure(batch, rounds, steps, variants=VARIANTS, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    models, iterators = {}, {}
    for name in variants:
        model = build(name, 60000)
        part = name[len("gated-"):].split("+")[0] if name.startswith("gated-") else None
        part = None if part == "batch" else part
        with _patched(part):
            model.train_on_batch(x, y)  # build the optimizer
            model.make_train_function(force=True)
            iterators[name] = iter(data)
            for _ in range(3):
                model.train_function(iterators[name])
        models[name] = model
    times = {name: [] for name in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            times[name].append(_time(models[name], iterators[name], steps))
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="128,512")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=os.path.join(RESULTS, "profile_step.json"))
    args = parser.parse_args(argv)
    command = "python bench/profile_step.py " + " ".join(argv or sys.argv[1:])
    results = {}
    for batch in (int(b) for b in args.batches.split(",")):
        ms = measure(batch, args.rounds, args.steps, args.variants.split(","))
        results[batch] = ms
        print(f"batch {batch}:")
        for name, value in ms.items():
            print(f"  {name:22s} {value:7.3f} ms  {value / ms['plain']:5.2f}x plain  "
                  f"{value / ms['gated']:5.2f}x gated", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"command": command.strip(), "machine": "2 CPU cores, shared with other jobs",
                   "median_step_ms": results}, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
