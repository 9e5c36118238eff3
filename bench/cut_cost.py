"""What a cut costs at once, as the tolerance rule measures it (issue 29, `defaults.md` §8).

Trains a gated model of `bench/defaults_setups.py` with frozen gates (as the tolerance rule
trains it) for `--epochs`, re-estimates its BatchNormalization statistics and ranks its units
(as the rule does before it cuts), then, for cuts of several sizes (fractions of the MACs,
lowest Taylor importance per MAC saved first, as `tfdynhp.policies.tolerance` proposes them),
the validation accuracy with the cut units' gates at zero:

- `keras`: with Keras' moving BatchNormalization statistics (what the rule measured before);
- `uncut_statistics`: with statistics re-estimated for the network before the cut;
- `recal`: with the statistics re-estimated on 2,048 training examples for the cut network
  (`tfdynhp.recalibrate_batch_norm`, what the rule measures now);

for both rankings: the Taylor importance averaged over a channel's spatial positions
(`mean`, Molchanov's eq. 8) and summed over them (`sum`, the loss change itself), and which
layers each cut takes units from.

    python bench/cut_cost.py --problem cnn_fashion --epochs 3
    python bench/cut_cost.py --problem mobilenet --epochs 6

Writes `results/cut_cost/<problem>.json`.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_common import checkout_first

checkout_first()

import keras
from defaults_setups import PROBLEMS, problem

import tfdynhp
from tfdynhp.costs import units as resources
from tfdynhp.model.batch_norm import recalibrate_batch_norm, restore_batch_norm, sample_inputs
from tfdynhp.policies import tolerance
from tfdynhp.policies.criteria import Taylor

STEPS = (0.05, 0.1, 0.2, 0.3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", required=True, help=", ".join(PROBLEMS))
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "cut_cost"))
    args = parser.parse_args(argv)
    task = problem(args.problem)
    model = tfdynhp.gate(task.build(args.seed), seed=args.seed)
    for gate in model.gate_layers:
        gate.freeze()
    model.compile(keras.optimizers.Adam(task.learning_rate), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    keras.utils.set_random_seed(args.seed)
    model.fit(task.x, task.y, epochs=args.epochs, batch_size=task.batch_size, verbose=0)
    validation = (task.x_val, task.y_val)
    inputs = sample_inputs(task.x, 2048)
    no_cut_keras = tolerance.evaluate(model, validation, "accuracy")
    # The rule re-estimates the statistics before it ranks and cuts (kept until the end).
    keras_statistics = recalibrate_batch_norm(model, inputs)
    no_cut = tolerance.evaluate(model, validation, "accuracy")
    costs = resources.unit_costs(model, "macs")
    data = tolerance.as_arrays(validation)
    rows = []
    for spatial in ("mean", "sum"):
        importance = Taylor(loss="sparse_categorical_crossentropy", spatial=spatial).scores(
            model, data)
        keys = tolerance.rank_scores(importance, costs, True)
        for step in STEPS:
            masks, _, units = tolerance.propose_cut(model, keys, step, "macs")
            taken = {name: int((~mask).sum()) for name, mask in masks.items() if (~mask).sum()}
            rows.append({"ranking": spatial, "step": step, "units": int(units), "taken": taken,
                         "masks": masks,
                         "uncut_statistics": round(tolerance.trial_metric(
                             model, masks, validation, "accuracy"), 4),
                         "recal": round(tolerance.trial_metric(
                             model, masks, validation, "accuracy", inputs=inputs), 4)})
    restore_batch_norm(keras_statistics)
    for row in rows:
        row["keras"] = round(tolerance.trial_metric(model, row.pop("masks"), validation,
                                                    "accuracy"), 4)
        print(json.dumps(row), flush=True)
    result = {"command": "python bench/cut_cost.py " + " ".join(argv or sys.argv[1:]),
              "problem": args.problem, "epochs": args.epochs, "seed": args.seed,
              "no_cut": {"keras": round(no_cut_keras, 4), "recal": round(no_cut, 4)},
              "rows": rows}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.problem}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"no cut: Keras' statistics {no_cut_keras:.4f}, re-estimated {no_cut:.4f}")
    print("| ranking | cut (MACs) | units | val acc: Keras' statistics | of the uncut network | "
          "re-estimated for the cut | units taken from |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        print(f"| {row['ranking']} | {row['step']:.0%} | {row['units']} | {row['keras']:.3f} | "
              f"{row['uncut_statistics']:.3f} | {row['recal']:.3f} | {row['taken']} |")


if __name__ == "__main__":
    main()
