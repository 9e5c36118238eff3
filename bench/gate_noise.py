"""What a per-example Hard Concrete gate costs, and whether fusing it would pay (issue 27).

Times, per training step of LeNet-300-100's three gates (inputs of 784, 300 and 100 units,
forward and backward, with the activation counts), interleaved in rounds:

- `gates`: the library's gate (`tfdynhp.layers.gate._gate` on Philox noise, as in training);
- `philox_noise`: the Philox noise alone (`philox_uniform`, the same shapes);
- `gates_xla_hash`: the same gate math fused by XLA (`jit_compile=True`), with its noise made
  inside the fused kernel by a counter-based integer hash (Wellons' "lowbias32" of the
  element index and a per-call seed) instead of Philox, which XLA runs slowly on CPU;
- `matmul_784x300`: the first layer's matmul and its weight gradient, for scale;

and the first call of each gate variant (tracing, plus XLA's compilation for one batch size).

    python bench/gate_noise.py [--batches 128,512] [--rounds 30]

Writes `bench/results/gate_noise.json` and `.md`.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from tfdynhp.layers.gate import _gate, philox_uniform
from tfdynhp.math.hard_concrete import BETA, GAMMA, ZETA

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
UNITS = (784, 300, 100)


def hash_uniform(shape, seed):
    """Uniform floats in (0, 1) from a 32-bit integer hash of (element index, `seed`)."""
    size = int(np.prod(shape))
    h = tf.bitcast(tf.range(size, dtype=tf.int32), tf.uint32)
    h = h * tf.constant(0x9E3779B9, tf.uint32) + seed

    def mix(h, shift, multiplier=None):
        h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(shift, tf.uint32)))
        return h if multiplier is None else h * tf.constant(multiplier, tf.uint32)

    h = mix(mix(mix(h, 16, 0x7FEB352D), 15, 0x846CA68B), 16)
    top = tf.cast(tf.bitwise.right_shift(h, tf.constant(8, tf.uint32)), tf.float32)
    return tf.reshape((top + 0.5) * (1.0 / 2 ** 24), shape)


@tf.function(jit_compile=True)
def _fused_forward(x, log_alpha, seed):
    noise = hash_uniform(x.shape, seed)
    odds = (1.0 - noise) / noise
    s = 1.0 / (1.0 + tf.exp(-log_alpha / BETA) * odds * tf.sqrt(odds))
    stretched = s * (ZETA - GAMMA) + GAMMA
    z = tf.clip_by_value(stretched, 0.0, 1.0)
    slope = tf.where((stretched > 0.0) & (stretched < 1.0), s * (1.0 - s) * ((ZETA - GAMMA) / BETA),
                     0.0)
    return x * z, z, slope, tf.reduce_sum(tf.cast(stretched > 0.0, tf.float32), 0)


@tf.function(jit_compile=True)
def _fused_backward(dy, x, z, slope):
    return dy * z, tf.reduce_sum(dy * x * slope, 0)


def _fused_gate(x, log_alpha, seed):
    @tf.custom_gradient
    def gate(x, log_alpha):
        y, z, slope, counts = _fused_forward(x, log_alpha, seed)
        return (y, tf.stop_gradient(counts)), lambda dy, _=None: _fused_backward(dy, x, z, slope)

    return gate(x, log_alpha)


def variants(batch):
    inputs = [tf.random.normal((batch, units), seed=1) for units in UNITS]
    log_alphas = [tf.Variable(tf.fill((units,), 2.3)) for units in UNITS]
    generator = keras.random.SeedGenerator(0)
    calls = tf.Variable(0, dtype=tf.int64)

    def step(gate):
        total = 0.0
        with tf.GradientTape() as tape:
            for x, log_alpha in zip(inputs, log_alphas):
                y, counts = gate(x, log_alpha)
                total += tf.reduce_sum(y * y) + 0.0 * tf.reduce_sum(counts)
        return tape.gradient(total, log_alphas)

    def library(x, log_alpha):
        noise = philox_uniform(x.shape, generator)
        y, stretched = _gate(x, log_alpha, noise, BETA, GAMMA, ZETA)
        return y, tf.reduce_sum(tf.cast(stretched > 0.0, tf.float32), 0)

    def hashed(x, log_alpha):
        calls.assign_add(1)
        return _fused_gate(x, log_alpha, tf.cast(calls * 7919, tf.uint32))

    kernel = tf.Variable(tf.random.normal((784, 300), seed=2))

    def matmul():
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(inputs[0] @ kernel)
        return tape.gradient(y, kernel)

    return {
        "gates": tf.function(lambda: step(library)),
        "philox_noise": tf.function(
            lambda: [tf.reduce_sum(philox_uniform(x.shape, generator)) for x in inputs]),
        "gates_xla_hash": tf.function(lambda: step(hashed)),
        "matmul_784x300": tf.function(matmul),
    }


def measure(batch, rounds, calls=10):
    functions = variants(batch)
    first = {}
    for name, function in functions.items():
        start = time.perf_counter()
        function()
        first[name] = time.perf_counter() - start
        function()
    times = {name: [] for name in functions}
    for r in range(rounds):
        for name in functions if r % 2 == 0 else reversed(list(functions)):
            start = time.perf_counter()
            for _ in range(calls):
                functions[name]()
            times[name].append(1e3 * (time.perf_counter() - start) / calls)
    return {"batch_size": batch, "ms": {k: statistics.median(v) for k, v in times.items()},
            "first_call_s": first}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="128,512")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", default=os.path.join(RESULTS, "gate_noise.json"))
    args = parser.parse_args(argv)
    u = hash_uniform((1_000_000,), tf.constant(12345, tf.uint32)).numpy()
    result = {"command": "python bench/gate_noise.py " + " ".join(sys.argv[1:] if argv is None
                                                                  else argv),
              "load_average_before": [round(v, 2) for v in os.getloadavg()],
              "hash_uniform_check": {"mean": float(u.mean()), "variance": float(u.var()),
                                     "lag1_correlation": float(np.corrcoef(u[:-1], u[1:])[0, 1])},
              "rows": [measure(int(b), args.rounds) for b in args.batches.split(",")]}
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    lines = ["# bench/gate_noise.py", "", (f"Command: `{result['command'].strip()}`; load average "
             f"before {result['load_average_before']}, after {result['load_average_after']}."), "",
             ("| batch | gates (ms) | Philox noise alone | gates, XLA + hash noise | matmul 784x300 "
             "| first call: gates / XLA (s) |"), "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        ms, first = row["ms"], row["first_call_s"]
        lines.append(f"| {row['batch_size']} | {ms['gates']:.2f} | {ms['philox_noise']:.2f} | "
                     f"{ms['gates_xla_hash']:.2f} | {ms['matmul_784x300']:.2f} | "
                     f"{first['gates']:.2f} / {first['gates_xla_hash']:.2f} |")
    print("\n".join(lines))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
