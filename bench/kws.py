"""Keyword-spotting benchmark: dense DS-CNN vs DynHP to 1/2 and 1/4 of its MACs, TF-MOT at the
same non-zeros, the pruned shape trained from scratch, and recipes, over several seeds.

All rows train on the same speaker-disjoint synthetic-kws data (espeak-ng speech,
`tfdynhp.datasets.kws`, data seed 0) with the same epochs, batch, learning rate, schedule and
BatchNormalization momentum; the training seed (initialization, shuffling, gates) is the
row's seed. A row is `base[+recipe...]`, run for each seed given after `@` (`dense@0:1`):

- `dense`: MLPerf Tiny's DS-CNN, no gates;
- `dynhp-1/2`, `dynhp-1/4` (or `hp-...`): `tfdynhp.training.train`, gated, target
  `"50% macs"` / `"25% macs"` met in the same fit, stripped (the library's `train_kws` path);
- `tfmot-1/2`, `tfmot-1/4`: TF-MOT `prune_low_magnitude` (bench/kws_tfmot.py, own process)
  with the non-zero weights of the `dynhp` row of the same fraction and seed (unstructured:
  the int8 model keeps its dense shapes and MACs);
- `scratch-1/2`, `scratch-1/4`: a dense DS-CNN of the widths of that `dynhp` row (its
  stripped model, weights re-initialized), trained from scratch;
- recipes on a pruned row: `+kd` distillation from the `dense` row of the same seed
  (`teacher=`, temperature 4, alpha 0.5), `+ft` the target met at half the epochs (a longer
  frozen fine-tune; default two thirds), `+restart` the cosine learning rate restarted at
  the target epoch (`lr_schedule="cosine-restart"`), `+hp` a fixed batch (mode `hp`);
  `+aug` (also `dense+aug`): the training clips in two renderings, the data set's own
  augmentations drawn again (`tfdynhp.datasets.kws.load_training_renderings`), alternating
  by epoch.

Every row: accuracy on held-out voices and held-out accents in float (Keras), int8 LiteRT and
int8 TFLite Micro (Python interpreter, every clip), parameters (non-zero values,
BatchNormalization statistics included), MACs, int8 `.tflite` bytes, TFLM arena, Cortex-M4
firmware flash/RAM and instructions per inference (QEMU, bit-exact check against Python
TFLM), training wall time. Each row runs in its own process and is appended to
`bench/results/<name>.json` as soon as it is done (`<name>.md` and `.png` rewritten), so an
interrupted bench keeps its rows and a re-run with the same `--name` skips them.

    python bench/kws.py --size ci --difficulty easy --mode hp --epochs 12 --batch-size 32
    python bench/kws.py --size medium --difficulty medium --epochs 16 --batch-size 64 \\
        --name kws_medium --work /tmp/kws26/medium \\
        --rows dense@0:1,dynhp-1/4@0,scratch-1/4@0,tfmot-1/4@0,dynhp-1/4+hp@0:1,dynhp-1/2@0
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import numpy as np

TFLM_DIR = os.path.realpath(os.environ.get("TFLM_DIR") or os.path.join(
    os.path.dirname(ROOT), "shared", "tflm-kit", "tflm"))  # one object cache for every worktree
FRACTIONS = {"1/2": "50% macs", "1/4": "25% macs"}
RECIPES = ("kd", "ft", "restart", "hp", "aug")
AUG_RENDERINGS = 2  # +aug: the training clips in 2 renderings, alternating by epoch
SPLITS = ("test_voices", "test_accents")


# -- row specifications ----------------------------------------------------------------------

def parse_rows(text, seeds, mode):
    """`"dense@0:1,dynhp-1/4"` -> `[("dense", 0), ("dense", 1), ("dynhp-1/4", s)...]`."""
    runs = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        name, _, seed_text = item.partition("@")
        row_seeds = [int(s) for s in seed_text.split(":")] if seed_text else seeds
        parse_row(name, mode)  # fails early on a bad name
        runs += [(name, seed) for seed in row_seeds]
    return runs


def parse_row(name, mode="dynhp"):
    """`(kind, fraction, recipes)`: kind `dense`, `pruned` (mode in recipes), `tfmot` or
    `scratch`."""
    base, *recipes = name.split("+")
    unknown = [r for r in recipes if r not in RECIPES]
    if base == "dense" and set(recipes) <= {"aug"} and not unknown:
        return "dense", None, tuple(recipes)
    kind, _, fraction = base.partition("-")
    if fraction not in FRACTIONS or unknown or (kind not in ("dynhp", "hp", "tfmot", "scratch")):
        raise SystemExit(f"Unknown row {name!r}: expected dense, dynhp-1/2, dynhp-1/4, hp-1/4, "
                         f"tfmot-1/4, scratch-1/4, with recipes +{'+'.join(RECIPES)} on pruned "
                         "rows.")
    if kind in ("tfmot", "scratch") and recipes:
        raise SystemExit(f"Row {name!r}: recipes apply to dynhp/hp rows (and +aug to dense).")
    return ("pruned" if kind in ("dynhp", "hp") else kind), fraction, tuple(recipes)


def run_id(name, seed):
    return f"{name.replace('/', '-').replace('+', '_')}_s{seed}"


# -- one row (runs in its own process) --------------------------------------------------------

def _firmware(bundle, target):
    from tfdynhp import converters

    try:
        return converters.verify_mcu(bundle, TFLM_DIR, target).to_dict()
    except (ValueError, converters.FirmwareError) as e:
        return {"error": str(e).splitlines()[0]}


def _arena(bundle):
    with open(os.path.join(bundle, "mcu_report.json")) as f:
        report = json.load(f)
    return report.get("arena", {}).get("measured_bytes", report.get("arena"))


def _held_out(model_predict, tflite, info):
    """Float (when `model_predict` is given) / int8 LiteRT / int8 TFLM accuracy on every
    held-out clip."""
    from tfdynhp import converters

    held = {}
    for split in SPLITS:
        x, y = info.splits[split]
        held[split] = {
            "n": len(y),
            "float": None if model_predict is None else float(np.mean(model_predict(x) == y)),
            "int8": float(converters.evaluate(tflite, x, y, "litert", time_latency=False)[
                "accuracy"]),
            "tflm": float(converters.evaluate(tflite, x, y, "tflm", time_latency=False)[
                "accuracy"]),
        }
    return held


def _finish(row, tflite, bundle, args):
    firmware = _firmware(bundle, args.target)
    for key in ("outputs", "reference_outputs"):
        firmware.pop(key, None)
    row.update(tflite_bytes=len(tflite), arena_bytes=_arena(bundle), firmware=firmware)
    return row


def _load_row(args, name, seed):
    path = os.path.join(args.work, "rows", run_id(name, seed) + ".json")
    if not os.path.isfile(path):
        raise SystemExit(f"Row {name}@{seed} is needed first (no {path}); list it earlier.")
    with open(path) as f:
        return json.load(f)


def train_row(name, seed, args, data, info):
    """Trains one Keras-3 row (dense, pruned, scratch); returns its record."""
    import keras

    from tfdynhp import training
    from tfdynhp.training import kws

    kind, fraction, recipes = parse_row(name, args.mode)
    out = os.path.join(args.work, "runs", run_id(name, seed))
    options = {"arch": "ds-cnn", "bn_momentum": kws.BN_MOMENTUM, "epochs": args.epochs,
               "batch_size": args.batch_size, "lr": args.lr, "seed": seed,
               "lr_schedule": args.lr_schedule}
    if kind == "dense":
        options.update(mode="dense", budget=None)
    elif kind == "scratch":
        pruned = _load_row(args, f"{args.mode}-{fraction}", seed)
        small = keras.saving.load_model(pruned["model_path"], compile=False)
        fresh = keras.models.clone_model(small)  # same widths, new initial weights
        os.makedirs(out, exist_ok=True)
        init_path = os.path.join(out, "initial.keras")
        fresh.save(init_path)
        options.update(mode="dense", budget=None, model_path=init_path)
    else:
        hp = "hp" in recipes or name.startswith("hp-")
        options.update(mode="hp" if hp else "dynhp", target=FRACTIONS[fraction])
        if "ft" in recipes:
            options["target_epoch"] = max(1, args.epochs // 2)
        if "restart" in recipes:
            options["lr_schedule"] = "cosine-restart"
        if "kd" in recipes:
            options["teacher"] = _load_row(args, "dense", seed)["model_path"]
    renderings = None
    if "aug" in recipes:
        from tfdynhp.datasets.kws.renderings import load_training_renderings

        xs, _ = load_training_renderings(AUG_RENDERINGS, None, args.difficulty, args.size, 0,
                                         verbose=0)
        renderings = xs[1:]
    result = training.train(data=data, out_dir=out, exports=("mcu",), verbose=0,
                            keras_verbose=0, labels=list(info.labels),
                            train_renderings=renderings, **options)
    kws.finish_run(result, info, out, ("mcu",))
    s = result.summary

    def predict(x):
        return np.argmax(result.stripped.predict(x, batch_size=512, verbose=0), -1)

    row = {"row": name, "seed": seed, "kind": kind, "options": {
               k: v for k, v in options.items() if k not in ("model_path",)},
           "held_out": _held_out(predict, result.tflite, info), "params": int(s["params"]),
           "macs": int(s["macs"]), "units": s["units"], "wall_time_s": float(s["wall_time_s"]),
           "model_path": os.path.join(out, "model_stripped.keras"),
           "history": [{k: h.get(k) for k in ("epoch", "val_accuracy", "accuracy",
                                              "dynhp/macs", "dynhp/batch_size", "learning_rate",
                                              "epoch_seconds")} for h in result.history]}
    return _finish(row, result.tflite, os.path.join(out, "export", "mcu"), args)


def tfmot_row(name, seed, args, info):
    """Trains the TF-MOT row in its own (tf_keras) process; returns its record."""
    from tfdynhp import architectures, converters
    from tfdynhp.costs import units as resources
    from tfdynhp.datasets.shaping import representative_subset

    _, fraction, _ = parse_row(name)
    pruned = _load_row(args, f"{args.mode}-{fraction}", seed)
    out = os.path.join(args.work, "runs", run_id(name, seed))
    os.makedirs(out, exist_ok=True)
    data = os.path.join(out, "data.npz")
    x, y = info.splits["train"]
    calib = representative_subset(x, seed=seed)
    np.savez(data, x_train=x, y_train=y, x_val=info.splits["val"][0],
             y_val=info.splits["val"][1], x_calib=calib,
             **{f"{p}_{s}": info.splits[s][i] for s in SPLITS for i, p in enumerate("xy")})
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    with open(os.path.join(out, "log.txt"), "w") as log:
        subprocess.run([sys.executable, os.path.join(HERE, "kws_tfmot.py"), "--data", data,
                        "--target-nonzero", str(pruned["params"]), "--epochs", str(args.epochs),
                        "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                        "--seed", str(seed), "--out", out], check=True, env=env, stdout=log,
                       stderr=subprocess.STDOUT)
    os.remove(data)
    with open(os.path.join(out, "result.json")) as f:
        result = json.load(f)
    with open(os.path.join(out, "model.tflite"), "rb") as f:
        tflite = f.read()
    bundle = os.path.join(out, "mcu")
    converters.export(tflite, "mcu", bundle, calib, labels=list(info.labels))
    floats = result["float_accuracy"]
    held = _held_out(None, tflite, info)
    for split in SPLITS:
        held[split]["float"] = floats[split]
    dense_macs = resources.model_cost(architectures.ds_cnn(num_classes=len(info.labels))).macs
    row = {"row": name, "seed": seed, "kind": "tfmot",
           "options": {"target_nonzero": pruned["params"], "epochs": args.epochs,
                       "batch_size": args.batch_size, "lr": args.lr,
                       "final_sparsity": result["final_sparsity"]},
           "held_out": held, "params": int(result["nonzero_params"]), "macs": int(dense_macs),
           "wall_time_s": float(result["wall_time_s"]),
           "history": [{"epoch": i, "val_accuracy": v}
                       for i, v in enumerate(result["val_accuracy"])]}
    return _finish(row, tflite, bundle, args)


def run_one(args):
    from tfdynhp.training import kws

    start = time.perf_counter()
    data, info = kws.load_splits(None, args.difficulty, args.size, 0, verbose=0)
    kind, _, _ = parse_row(args.one, args.mode)
    if kind == "tfmot":
        row = tfmot_row(args.one, args.seed, args, info)
    else:
        row = train_row(args.one, args.seed, args, data, info)
    row["row_seconds"] = time.perf_counter() - start
    row["load_average"] = [round(v, 1) for v in os.getloadavg()]
    path = os.path.join(args.work, "rows", run_id(args.one, args.seed) + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(row, f, indent=1, default=float)
    os.replace(path + ".tmp", path)
    return 0


# -- the bench (parent process) ---------------------------------------------------------------

def _child_argv(args, name, seed):
    argv = [sys.executable, os.path.abspath(__file__), "--one", name, "--seed", str(seed),
            "--work", args.work]
    for key in ("size", "difficulty", "epochs", "batch_size", "lr", "lr_schedule", "mode",
                "target"):
        argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    return argv


def _write_record(record, out, name):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1, default=float)
        f.write("\n")
    os.replace(path + ".tmp", path)
    write_markdown(record, os.path.join(out, name + ".md"))
    plot(record, os.path.join(out, name + ".png"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="medium")
    parser.add_argument("--difficulty", default="medium")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--lr-schedule", default="cosine")
    parser.add_argument("--mode", default="dynhp", choices=["dynhp", "hp"],
                        help="mode of the pruned rows named by fraction only (dynhp-1/4)")
    parser.add_argument("--rows", default=None,
                        help="comma-separated rows, each with optional @seed:seed (default: "
                             "dense, MODE-1/2, MODE-1/4, tfmot-1/2, tfmot-1/4)")
    parser.add_argument("--seeds", default="0", help="seeds of rows without @ (0:1)")
    parser.add_argument("--target", default="cortex-m4", help="firmware target")
    parser.add_argument("--name", default="kws_medium", help="results stem in --out")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--work", default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--regenerate", action="store_true",
                        help="rewrite <name>.md and .png from <name>.json")
    args = parser.parse_args(argv)
    if args.regenerate:
        with open(os.path.join(args.out, args.name + ".json")) as f:
            record = json.load(f)
        write_markdown(record, os.path.join(args.out, args.name + ".md"))
        plot(record, os.path.join(args.out, args.name + ".png"))
        return 0
    if args.one is not None:
        return run_one(args)
    seeds = [int(s) for s in args.seeds.split(":")]
    rows = args.rows or ",".join(["dense", f"{args.mode}-1/2", f"{args.mode}-1/4",
                                  "tfmot-1/2", "tfmot-1/4"])
    runs = parse_rows(rows, seeds, args.mode)
    command = "python bench/kws.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.work = os.path.abspath(args.work or tempfile.mkdtemp(prefix="kws-bench-"))
    os.makedirs(os.path.join(args.work, "logs"), exist_ok=True)
    path = os.path.join(args.out, args.name + ".json")
    record = None
    if os.path.isfile(path):
        with open(path) as f:
            record = json.load(f)
    from tfdynhp.training import kws

    settings = {"arch": "ds-cnn", "bn_momentum": kws.BN_MOMENTUM, "epochs": args.epochs,
                "batch_size": args.batch_size, "lr": args.lr, "lr_schedule": args.lr_schedule,
                "data_seed": 0, "size": args.size, "difficulty": args.difficulty,
                "mode": args.mode, "firmware_target": args.target}
    if record is not None and record["settings"] != settings:
        raise SystemExit(f"{path} holds rows of other settings ({record['settings']}); pass "
                         "another --name.")
    if record is None:
        _, info = kws.load_splits(None, args.difficulty, args.size, 0, verbose=1)
        record = {
            "command": command, "commands": [],
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs "
                       "(wall times are indicative)",
            "data": {k: v for k, v in info.to_dict().items() if k != "speaker_split"},
            "settings": settings,
            "rows": [],
        }
    record["commands"] = list(dict.fromkeys([*record.get("commands", []), command]))
    done = {(r["row"], r["seed"]) for r in record["rows"]}
    for name, seed in runs:
        if (name, seed) in done:
            continue
        rid = run_id(name, seed)
        row_path = os.path.join(args.work, "rows", rid + ".json")
        if not os.path.isfile(row_path):
            print(f"{time.strftime('%H:%M:%S')} {name}@{seed} ...", flush=True)
            with open(os.path.join(args.work, "logs", rid + ".log"), "w") as log:
                code = subprocess.call(_child_argv(args, name, seed), stdout=log,
                                       stderr=subprocess.STDOUT)
            if code != 0:
                print(f"{name}@{seed} failed (exit {code}); see {log.name}", flush=True)
                continue
        with open(row_path) as f:
            row = json.load(f)
        record["rows"].append(row)
        done.add((name, seed))
        _write_record(record, args.out, args.name)
        v, a = (row["held_out"][s] for s in SPLITS)
        print(f"{time.strftime('%H:%M:%S')} {name}@{seed}: voices {v['float']:.4f}/"
              f"{v['tflm']:.4f}, accents {a['float']:.4f}/{a['tflm']:.4f}, MACs {row['macs']:,}, "
              f"{row['row_seconds'] / 60:.0f} min", flush=True)
    _write_record(record, args.out, args.name)
    return 0


# -- tables and plot --------------------------------------------------------------------------

def _fw(row, key, fmt="{:,}"):
    value = row.get("firmware", {}).get(key)
    return "-" if value is None else fmt.format(value)


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def summarize(rows):
    """Per row name: mean and (min, max) over seeds of each held-out accuracy."""
    by_name = {}
    for r in rows:
        by_name.setdefault(r["row"], []).append(r)
    out = {}
    for name, group in by_name.items():
        stats = {}
        for split in SPLITS:
            for runtime in ("float", "int8", "tflm"):
                values = [r["held_out"][split].get(runtime) for r in group]
                values = [v for v in values if v is not None]
                if values:
                    stats[f"{split}/{runtime}"] = (float(np.mean(values)), min(values),
                                                   max(values))
        out[name] = {"seeds": [r["seed"] for r in group], "stats": stats,
                     "macs": int(np.mean([r["macs"] for r in group])),
                     "params": int(np.mean([r["params"] for r in group])),
                     "wall_time_s": float(np.mean([r["wall_time_s"] for r in group]))}
    return out


def _mean_spread(stat):
    if stat is None:
        return "-"
    mean, low, high = stat
    return f"{100 * mean:.2f}" + (f" ({100 * low:.1f}-{100 * high:.1f})" if high > low else "")


def write_markdown(record, path):
    d = record["data"]
    summary = summarize(record["rows"])
    dense = summary.get("dense", {}).get("stats", {})
    lines = [
        "# Keyword spotting: DS-CNN dense vs DynHP vs TF-MOT (synthetic speech)", "",
        "Command(s): " + "; ".join(f"`{c}`" for c in record.get("commands",
                                                              [record["command"]])) + ".",
        "", f"Machine: {record['machine']}.", "",
        (f"Data: synthetic-kws, {d['size']} clips, difficulty {d['difficulty']['name']}, data "
         f"seed {d['seed']}, splits {d['split_sizes']}; labels {d['labels']}. Held-out voices: "
         "voice variants never heard in training; held-out accents: new accents *and* new "
         "variants. The speech is espeak-ng formant synthesis: these numbers compare methods "
         "on the same task, they do not predict accuracy on recorded speech."), "",
        f"Settings (every row): {record['settings']}.", "",
        "## Mean over seeds (min-max in brackets), accuracy in %", "",
        ("| row | seeds | voices float | voices int8 TFLM | accents float | accents int8 TFLM "
         "| float vs dense (voices, accents) | MACs | params | train s |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        st = s["stats"]
        delta = "-"
        if dense and name != "dense":
            delta = ", ".join(
                f"{100 * (st[f'{sp}/float'][0] - dense[f'{sp}/float'][0]):+.2f}"
                for sp in SPLITS)
        lines.append(
            f"| {name} | {','.join(map(str, s['seeds']))} | "
            f"{_mean_spread(st.get('test_voices/float'))} | "
            f"{_mean_spread(st.get('test_voices/tflm'))} | "
            f"{_mean_spread(st.get('test_accents/float'))} | "
            f"{_mean_spread(st.get('test_accents/tflm'))} | {delta} | {s['macs']:,} | "
            f"{s['params']:,} | {s['wall_time_s']:.0f} |")
    lines += [
        "", "## Every run", "",
        ("| row | seed | voices float | LiteRT | TFLM | accents float | LiteRT | TFLM | params "
         "| MACs | int8 bytes | arena | flash | RAM | M4 instr./inf. | bit-exact | train s "
         "| load |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        v, a = (r["held_out"][s] for s in SPLITS)
        fw = r.get("firmware", {})
        lines.append(
            f"| {r['row']} | {r['seed']} | {_pct(v['float'])} | {_pct(v.get('int8'))} | "
            f"{_pct(v.get('tflm'))} | {_pct(a['float'])} | {_pct(a.get('int8'))} | "
            f"{_pct(a.get('tflm'))} | {r['params']:,} | {r['macs']:,} | "
            f"{r['tflite_bytes']:,} | {r['arena_bytes']} | {_fw(r, 'flash_bytes')} | "
            f"{_fw(r, 'ram_total_bytes')} | {_fw(r, 'instructions_per_inference', '{:,.0f}')} "
            f"| {fw.get('bit_exact', fw.get('error'))} | {r['wall_time_s']:.0f} | "
            f"{'/'.join(map(str, r.get('load_average', []))) or '-'} |")
    n = min((r["held_out"]["test_voices"]["n"] for r in record["rows"]), default=0)
    lines += ["", (f"{n:,} clips per held-out split: one clip is {100 / max(n, 1):.3f} points. "
                   "Params: non-zero values, BatchNormalization statistics included, as "
                   "`tfdynhp.costs.memory.parameter_count` (TF-MOT rows: its sparse kernels; "
                   "its int8 file, arena and MACs stay those of the dense shapes). Flash = text "
                   "+ data, RAM = data + bss (arena included) + measured stack and heap; "
                   "instructions counted by QEMU -icount (not cycle-accurate). LiteRT and TFLM "
                   "run the same int8 file on every held-out clip; train s is the `fit` wall "
                   "time on the shared machine; load is the machine's 1/5/15-minute load "
                   "average when the row ended (2 cores). A row a command lists that is not "
                   "in the tables did not finish (stopped or failed)."), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def plot(record, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in record["rows"]:
        pruned = r.get("kind", "pruned") in ("pruned",) or r["row"].split()[0] in ("dynhp",
                                                                                   "hp")
        marker = {"dense": "s", "tfmot": "^", "scratch": "D"}.get(r.get("kind"), "o")
        for split, fill in (("test_voices", True), ("test_accents", False)):
            held = r["held_out"][split]
            color = "C0" if pruned else "C1"
            ax.scatter(r["macs"] / 1e6, 100 * held.get("tflm", held["int8"]), marker=marker,
                       s=50, facecolors=color if fill else "none", edgecolors=color)
    ax.set_xlabel("MACs per inference (millions)")
    ax.set_ylabel("int8 accuracy in TFLite Micro (%)")
    ax.set_title("DS-CNN on synthetic-kws, int8: filled = held-out voices, hollow = held-out "
                 "accents\npruned to a MAC target (circles), dense (squares), TF-MOT "
                 "(triangles), small shape from scratch (diamonds)", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
