"""What the `tfdynhp.DynamicBatches` feed costs `fit`: stock Keras LeNet-300-100, one epoch on
arrays against the same epoch on `DynamicBatches` (its `tf.data` pipeline, what `fit` reads)
and on the same `DynamicBatches` read through Keras' `PyDataset` feed (a Python generator:
the feed before issue 27), same batch, interleaved rounds.

    python bench/input_pipeline.py [--batches 128,512] [--rounds 3] [--out FILE.json]
"""

import argparse
import json
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import speed
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

import tfdynhp

FEEDS = ("arrays", "tf.data", "pydataset")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="128,512")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    x, y, _, _ = speed.load(args.n_train, 1)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        models = {k: speed.compile_model(speed.base_model("mlp")) for k in FEEDS}
        data = tfdynhp.DynamicBatches(x, y, batch_size=batch, seed=0)
        times = {k: [] for k in FEEDS}
        for r in range(args.rounds):
            for name in FEEDS if r % 2 == 0 else reversed(FEEDS):
                timer = speed.EpochTimer()
                if name == "arrays":
                    models[name].fit(x, y, batch_size=batch, epochs=3, verbose=0,
                                     callbacks=[timer])
                else:
                    feed = data if name == "tf.data" else PyDatasetAdapter(data, shuffle=False)
                    models[name].fit(feed, epochs=3, verbose=0, callbacks=[timer])
                times[name] += timer.seconds[1:]
        a = statistics.median(times["arrays"])
        row = {"batch_size": batch, "n_train": args.n_train,
               **{f"{k}_epoch_s": statistics.median(v) for k, v in times.items()}}
        row.update({f"{k}_vs_arrays": row[f"{k}_epoch_s"] / a for k in FEEDS[1:]})
        rows.append(row)
        print(f"batch {batch}: arrays {a:.3f} s, DynamicBatches tf.data "
              f"{row['tf.data_epoch_s']:.3f} s ({row['tf.data_vs_arrays']:.2f}x), PyDataset feed "
              f"{row['pydataset_epoch_s']:.3f} s ({row['pydataset_vs_arrays']:.2f}x) per epoch "
              f"({args.n_train} examples)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"command": "python bench/input_pipeline.py " + " ".join(
                argv if argv is not None else sys.argv[1:]), "load_average": os.getloadavg(),
                "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
