"""Keyword spotting from raw audio on the device: the micro front end vs the MFCC front end.

Same synthetic-kws clips (`--size`, `--difficulty`, seed), same DS-CNN, epochs, learning rate
and seed; each row is one `tfdynhp.training.train_kws` run (the library's own pipeline, as
`tfdynhp train --dataset synthetic-kws`):

- `mfcc dense`: MFCCs computed by TensorFlow (MLPerf Tiny's 49x10), the firmware takes MFCCs;
- `micro dense`, `micro <target>`: the micro front end (`tfdynhp.datasets.kws.micro_frontend`: TFLM's
  signal ops, micro_speech's audio preprocessor + an int8 normalized DCT), computed in TFLite
  Micro's Python interpreter for training; the firmware takes 1 s of 16 kHz int16 PCM and runs
  the same front end before the classifier (`converters.audio_mcu`).

Every row: accuracy (float Keras, int8 LiteRT) on held-out voices and held-out accents; the
Cortex-M4 firmware under QEMU with CMSIS-NN and with the reference kernels: bit-exact against
Python TFLM on the bundle's test vectors, flash, RAM, instructions per inference (raw-audio
rows: front end + classifier per 1 s clip, and the front end alone per 20 ms window); raw-audio
rows also classify every held-out clip on the device (read through semihosting) and compare the
keyword with the Python pipeline's. Writes `bench/results/kws_frontend.json` and `.md`.

    python bench/kws_frontend.py --size ci --difficulty easy --epochs 12
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from bench_common import HERE, ROOT, TFLM_DIR, checkout_first

checkout_first()


def _firmware(result):
    keep = ("kernels", "bit_exact", "num_vectors", "flash_bytes", "ram_static_bytes",
            "ram_total_bytes", "stack_used_bytes", "heap_used_bytes", "arena_bytes",
            "instructions_per_inference", "frontend_instructions_per_clip", "frontend_frames",
            "build_seconds", "tflm_sources_compiled")
    return {k: getattr(result, k) for k in keep}


def _test_vector_bytes(bundle):
    """Flash taken by the embedded test vectors (the `kTestClips`/`kTestInputs` arrays)."""
    import re

    with open(os.path.join(bundle, "test_vectors.cc")) as f:
        text = f.read()
    ints = len(re.findall(r"-?\d+,", text))
    clips = "int16_t kTestClips" in text
    with open(os.path.join(bundle, "test_vectors.json")) as f:
        vectors = json.load(f)
    n_in = sum(len(v) for v in vectors["inputs"])
    return n_in * (2 if clips else 1) + (ints - n_in)


def run_row(name, front_end, mode, target, args, work):
    from tfdynhp import converters
    from tfdynhp.training import kws as pipeline

    out = os.path.join(work, name.replace(" ", "_").replace("%", "pct"))
    options = {"arch": "ds-cnn", "mode": mode, "epochs": args.epochs,
               "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    if target:
        options["target"] = target
    if mode == "dense":
        options["budget"] = None
    start = time.perf_counter()
    result, firmware = pipeline.train_kws(
        out, difficulty=args.difficulty, size=args.size, data_seed=args.seed,
        exports=("mcu",), verify=("cortex-m4",), tflm_dir=args.tflm_dir, front_end=front_end,
        kernels="cmsis-nn", tflm_cache_dir=args.cache_dir, data_verbose=0, verbose=0,
        keras_verbose=0, **options)
    seconds = time.perf_counter() - start
    summary = result.summary
    bundle = os.path.join(out, "export", "mcu")
    reference = converters.verify_mcu(bundle, args.tflm_dir, "cortex-m4", kernels="reference",
                                      cache_dir=args.cache_dir)
    row = {
        "row": name, "front_end": front_end, "options": options,
        "held_out": summary["held_out"], "params": summary["params"], "macs": summary["macs"],
        "tflite_bytes": summary["tflite_bytes"],
        "firmware": {"cmsis-nn": _firmware(firmware["cortex-m4"]),
                     "reference": _firmware(reference)},
        "test_vector_bytes": _test_vector_bytes(bundle),
        "agreement": {k: v for k, v in summary.get("firmware_agreement", {}).get(
            "cortex-m4", {}).items() if k not in ("device_classes", "python_classes")},
        "seconds": seconds,
    }
    print(json.dumps({k: row[k] for k in ("row", "held_out", "macs", "agreement")}), flush=True)
    return row


def _pct(x):
    return f"{100 * x:.1f}"


def write_markdown(record, path):
    d = record["data"]
    lines = [
        "# Keyword spotting from raw audio: micro front end (on the device) vs MFCC", "",
        (f"Command: `{record['command']}` ({record['seconds'] / 60:.1f} min; "
         f"{record['machine']})."), "",
        (f"Data: synthetic-kws {d['size']} clips, difficulty {d['difficulty']}, seed "
         f"{d['seed']}; held-out voices / accents as in bench/results/kws.md (espeak-ng speech: "
         "a comparison of front ends on one task, not a prediction for recorded speech). "
         f"DS-CNN, {record['settings']}."), "",
        ("| row | front end | voices float | voices int8 | accents float | accents int8 | MACs "
         "| firmware input |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        v, a = r["held_out"]["test_voices"], r["held_out"]["test_accents"]
        lines.append(
            f"| {r['row']} | {r['front_end']} | {_pct(v['float'])} | {_pct(v['int8'])} | "
            f"{_pct(a['float'])} | {_pct(a['int8'])} | {r['macs']:,} | "
            f"{'1 s int16 PCM' if r['front_end'] == 'micro' else 'MFCC int8 49x10'} |")
    lines += [
        "", "Cortex-M4 firmware under QEMU (instructions counted with -icount; not cycles):", "",
        ("| row | kernels | bit-exact (vectors) | flash B | of which test vectors B | RAM B "
         "| instructions / 1 s window | front end / 1 s | front end / 20 ms window |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        for kernels, f in r["firmware"].items():
            fe = f["frontend_instructions_per_clip"]
            frames = f["frontend_frames"] or 1
            lines.append(
                f"| {r['row']} | {kernels} | {'yes' if f['bit_exact'] else 'NO'} "
                f"({f['num_vectors']}) | {f['flash_bytes']:,} | {r['test_vector_bytes']:,} | "
                f"{f['ram_total_bytes']:,} | {f['instructions_per_inference']:,.0f} | "
                f"{'-' if fe is None else f'{fe:,.0f}'} | "
                f"{'-' if fe is None else f'{fe / frames:,.0f}'} |")
    lines += ["", ("Raw-audio firmware vs the Python pipeline on every held-out clip "
                  "(Cortex-M4, CMSIS-NN; clips read through semihosting):"), "",
              "| row | clips | same keyword | raw outputs bit-exact |", "|---|---|---|---|"]
    for r in record["rows"]:
        g = r["agreement"]
        if g:
            lines.append(f"| {r['row']} | {g['n']} | {_pct(g['class_agreement'])} % | "
                         f"{_pct(g['bit_exact_fraction'])} % |")
    lines += ["", ("Flash = text + data (models, test vectors, TFLM, newlib-nano, semihosting); "
              "RAM = data + bss (both arenas) + measured stack and heap. 'Instructions / 1 s "
              "window': the MFCC rows count the classifier only (their MFCCs are computed off "
              "the device); raw-audio rows count front end (49 windows) + classifier."), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="ci")
    parser.add_argument("--difficulty", default="easy")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", default="25% macs", help="the pruned micro row's target")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--work", default=os.path.join(ROOT, "runs", "bench-kws-frontend"))
    parser.add_argument("--tflm-dir", default=TFLM_DIR,
                        help="TFLM tree with CMSIS-NN (default: $TFLM_DIR or ../shared/tflm-kit/tflm)")
    parser.add_argument("--cache-dir", default=None,
                        help="cache of compiled TFLM objects (default: ~/.cache/tfdynhp/tflm)")
    args = parser.parse_args(argv)
    command = "python bench/kws_frontend.py " + " ".join(argv if argv is not None
                                                         else sys.argv[1:])
    start = time.perf_counter()
    rows = [run_row("mfcc dense", "mfcc", "dense", None, args, args.work),
            run_row("micro dense", "micro", "dense", None, args, args.work),
            run_row(f"micro dynhp {args.target}", "micro", "dynhp", args.target, args,
                    args.work)]
    record = {
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs",
        "data": {"size": args.size, "difficulty": args.difficulty, "seed": args.seed},
        "settings": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                     "seed": args.seed},
        "seconds": time.perf_counter() - start,
        "rows": rows,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "kws_frontend.json"), "w") as f:
        json.dump(record, f, indent=2, default=float)
        f.write("\n")
    write_markdown(record, os.path.join(args.out, "kws_frontend.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
