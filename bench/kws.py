"""Keyword-spotting benchmark: dense DS-CNN vs DynHP at 1/2 and 1/4 of its MACs vs TF-MOT.

One run, rows side by side on the same speaker-disjoint synthetic-kws data (espeak-ng speech,
`tfdynhp.datasets.kws`), the same epochs, learning rate and BatchNormalization momentum:

- `dense`: MLPerf Tiny's DS-CNN, no gates;
- `dynhp 1/2`, `dynhp 1/4`: `tfdynhp.training.train_kws` (gated, DynHP, `--target "50% macs"` /
  `"25% macs"` met in the same fit, stripped);
- `tfmot 1/2`, `tfmot 1/4`: TF-MOT `prune_low_magnitude` (bench/kws_tfmot.py, own process)
  with the same number of non-zero weights as the DynHP row (unstructured: the int8 model
  keeps its dense shapes and MACs).

Every row: accuracy (float and int8) on held-out voices and held-out accents, parameters
(non-zero values, BatchNormalization statistics included), MACs, int8 `.tflite` bytes, TFLM arena, Cortex-M4
firmware flash/RAM and instructions per inference (QEMU, bit-exact check against Python TFLM),
training wall time. Writes `bench/results/kws.json`, `kws.md` and `kws.png`.

    python bench/kws.py                        # small set (4,800 clips), medium, 8 epochs
    python bench/kws.py --size medium --epochs 12   # the issue's medium set (much longer)
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

from tfdynhp import converters, training
from tfdynhp.datasets.shaping import representative_subset
from tfdynhp.training import kws

TFLM_DIR = os.environ.get("TFLM_DIR") or os.path.join(os.path.dirname(ROOT), "shared",
                                                      "tflm-kit", "tflm")


def _firmware(bundle, target):
    try:
        return converters.verify_mcu(bundle, TFLM_DIR, target).to_dict()
    except (ValueError, converters.FirmwareError) as e:
        return {"error": str(e).splitlines()[0]}


def _report(bundle):
    with open(os.path.join(bundle, "mcu_report.json")) as f:
        return json.load(f)


def _row(name, held_out, params, macs, tflite_bytes, wall, bundle, target):
    report = _report(bundle)
    fw = _firmware(bundle, target)
    return {
        "row": name, "held_out": held_out, "params": int(params), "macs": int(macs),
        "tflite_bytes": int(tflite_bytes),
        "arena_bytes": report.get("arena", {}).get("measured_bytes", report.get("arena")),
        "firmware": fw, "wall_time_s": float(wall),
    }


def run_tfmot(info, target_nonzero, args, work, name):
    """Trains the TF-MOT row in its own process; returns (result, tflite bytes)."""
    data = os.path.join(work, f"{name}.npz")
    x, y = info.splits["train"]
    np.savez(data, x_train=x, y_train=y, x_val=info.splits["val"][0],
             y_val=info.splits["val"][1], x_calib=representative_subset(x, seed=args.seed),
             **{f"{p}_{s}": info.splits[s][i] for s in ("test_voices", "test_accents")
                for i, p in enumerate("xy")})
    out = os.path.join(work, name)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    subprocess.run([sys.executable, os.path.join(HERE, "kws_tfmot.py"), "--data", data,
                    "--target-nonzero", str(target_nonzero), "--epochs", str(args.epochs),
                    "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                    "--seed", str(args.seed), "--out", out], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "result.json")) as f:
        result = json.load(f)
    with open(os.path.join(out, "model.tflite"), "rb") as f:
        return result, f.read()


def regenerate(path):
    """Rewrites kws.md and kws.png from an existing kws.json."""
    with open(path) as f:
        record = json.load(f)
    folder = os.path.dirname(path)
    write_markdown(record, os.path.join(folder, "kws.md"))
    plot(record, os.path.join(folder, "kws.png"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--difficulty", default="medium")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--mode", default="dynhp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--work", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args(argv)
    command = "python bench/kws.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = args.work or tempfile.mkdtemp(prefix="kws-bench-")
    start_all = time.perf_counter()
    data, info = kws.load_splits(None, args.difficulty, args.size, args.seed, verbose=0)
    common = {"arch": "ds-cnn", "bn_momentum": kws.BN_MOMENTUM, "epochs": args.epochs,
                  "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    rows = []
    nonzero = {}
    for name, mode, target in (("dense", "dense", None), (f"{args.mode} 1/2", args.mode, "50% macs"),
                               (f"{args.mode} 1/4", args.mode, "25% macs")):
        out = os.path.join(work, name.replace(" ", "_").replace("/", "-"))
        options = dict(common, mode=mode, target=target)
        if mode == "dense":
            options["budget"] = None
        result = training.train(data=data, out_dir=out, exports=("mcu",), verbose=0,
                                keras_verbose=0, labels=list(info.labels), **options)
        summary, _ = kws.finish_run(result, info, out, ("mcu",))
        nonzero[name] = summary["params"]
        rows.append(_row(name, summary["held_out"], summary["params"], summary["macs"],
                         summary["tflite_bytes"], summary["wall_time_s"],
                         os.path.join(out, "export", "mcu"), args.target))
        rows[-1]["units"] = summary["units"]
        print(json.dumps({k: rows[-1][k] for k in ("row", "held_out", "params", "macs")}),
              flush=True)
    dense_macs = rows[0]["macs"]
    for frac in ("1/2", "1/4"):
        name = f"tfmot {frac}"
        result, tflite = run_tfmot(info, nonzero[f"{args.mode} {frac}"], args, work,
                                   name.replace(" ", "_").replace("/", "-"))
        bundle = os.path.join(work, name.replace(" ", "_").replace("/", "-"), "mcu")
        calib = representative_subset(info.splits["train"][0], seed=args.seed)
        converters.export(tflite, "mcu", bundle, calib, labels=list(info.labels))
        held = {}
        for split in ("test_voices", "test_accents"):
            x, y = info.splits[split]
            held[split] = {"n": len(y), "float": result["float_accuracy"][split],
                           "int8": converters.evaluate(tflite, x, y, "litert")["accuracy"]}
        rows.append(_row(name, held, result["nonzero_params"], dense_macs, len(tflite),
                         result["wall_time_s"], bundle, args.target))
        rows[-1]["final_sparsity"] = result["final_sparsity"]
        print(json.dumps({k: rows[-1][k] for k in ("row", "held_out", "params")}), flush=True)
    record = {
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs "
                   "(wall times are indicative; ratios are measured side by side)",
        "data": {k: v for k, v in info.to_dict().items() if k != "speaker_split"},
        "settings": {**common, "mode": args.mode, "firmware_target": args.target},
        "seconds": time.perf_counter() - start_all,
        "rows": rows,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "kws.json"), "w") as f:
        json.dump(record, f, indent=2, default=float)
        f.write("\n")
    write_markdown(record, os.path.join(args.out, "kws.md"))
    plot(record, os.path.join(args.out, "kws.png"))
    return 0


def _fw(row, key, fmt="{:,}"):
    value = row["firmware"].get(key)
    return "-" if value is None else fmt.format(value)


def write_markdown(record, path):
    d = record["data"]
    lines = [
        "# Keyword spotting: DS-CNN dense vs DynHP vs TF-MOT (synthetic speech)", "",
        f"Command: `{record['command']}` ({record['seconds'] / 60:.1f} min; {record['machine']}).",
        "",
        (f"Data: synthetic-kws, {d['size']} clips, difficulty {d['difficulty']['name']}, seed "
        f"{d['seed']}, splits {d['split_sizes']}; labels {d['labels']}. Held-out voices: voice "
        "variants never heard in training; held-out accents: new accents *and* new variants. "
        "The speech is espeak-ng formant synthesis: these numbers compare methods on the same "
        "task, they do not predict accuracy on recorded speech."), "",
        f"Settings: {record['settings']}.", "",
        ("| row | voices float | voices int8 | accents float | accents int8 | params | MACs "
        "| int8 bytes | arena | flash | RAM | M4 instr./inf. | bit-exact | train s |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        v, a = r["held_out"]["test_voices"], r["held_out"]["test_accents"]
        lines.append(
            f"| {r['row']} | {100 * v['float']:.1f} | {100 * v['int8']:.1f} | "
            f"{100 * a['float']:.1f} | {100 * a['int8']:.1f} | {r['params']:,} | "
            f"{r['macs']:,} | {r['tflite_bytes']:,} | {r['arena_bytes']} | "
            f"{_fw(r, 'flash_bytes')} | {_fw(r, 'ram_total_bytes')} | "
            f"{_fw(r, 'instructions_per_inference', '{:,.0f}')} | "
            f"{r['firmware'].get('bit_exact', r['firmware'].get('error'))} | "
            f"{r['wall_time_s']:.0f} |")
    lines += ["", ("Params: non-zero values, BatchNormalization statistics included, as "
              "`tfdynhp.costs.memory.parameter_count` (TF-MOT rows: its sparse kernels; its int8 file, arena and MACs stay those of the dense shapes). "
              "Flash = text + data, RAM = data + bss (arena included) + measured stack and heap; "
              "instructions counted by QEMU -icount (not cycle-accurate)."), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def plot(record, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in record["rows"]:
        pruned = r["row"].split()[0] in ("dynhp", "hp")
        marker = "o" if pruned else ("s" if r["row"] == "dense" else "^")
        for split, fill in (("test_voices", True), ("test_accents", False)):
            ax.scatter(r["macs"] / 1e6, 100 * r["held_out"][split]["int8"], marker=marker,
                       s=60, facecolors=None if fill else "none",
                       edgecolors="C0" if pruned else "C1")
        ax.annotate(r["row"], (r["macs"] / 1e6, 100 * r["held_out"]["test_voices"]["int8"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("MACs per inference (millions)")
    ax.set_ylabel("int8 accuracy (%)")
    ax.set_title("DS-CNN on synthetic-kws, int8: filled = held-out voices, hollow = held-out "
                 "accents\ngated pruning to a MAC target (circles) vs TF-MOT (triangles)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
