"""What `tfdynhp.DynamicBatches` costs `fit`: stock Keras LeNet-300-100, one epoch on arrays
against the same epoch on `DynamicBatches` (same batch), interleaved rounds.

    python bench/input_pipeline.py [--batches 128,512] [--rounds 3]
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import speed

import tfdynhp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="128,512")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=8000)
    args = parser.parse_args(argv)
    x, y, _, _ = speed.load(args.n_train, 1)
    for batch in (int(b) for b in args.batches.split(",")):
        models = {k: speed.compile_model(speed.base_model("mlp")) for k in ("arrays", "dynamic")}
        data = tfdynhp.DynamicBatches(x, y, batch_size=batch, seed=0)
        times = {k: [] for k in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                timer = speed.EpochTimer()
                if name == "arrays":
                    model.fit(x, y, batch_size=batch, epochs=2, verbose=0, callbacks=[timer])
                else:
                    model.fit(data, epochs=2, verbose=0, callbacks=[timer])
                times[name] += timer.seconds[1:]
        a, d = (statistics.median(times[k]) for k in ("arrays", "dynamic"))
        print(f"batch {batch}: arrays {a:.3f} s, DynamicBatches {d:.3f} s per epoch "
              f"({args.n_train} examples): {d / a:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
