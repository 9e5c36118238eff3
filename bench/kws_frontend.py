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

`--accuracy-only` trains the two dense rows (MFCC, micro) for each of `--seeds` on the same
clips, without firmware, and writes `kws_frontend_accuracy.json` / `.md`: the front ends'
held-out accuracy on more clips than the firmware run affords (`--size small`: 480 held-out
voices, 480 held-out accents).

    python bench/kws_frontend.py --accuracy-only --size small --difficulty easy --epochs 12

`--front-ends` picks its rows: `mfcc`, `micro` (the raw-audio default, `micro_frontend.DEFAULT`)
and the named `MICRO_VARIANTS` (e.g. `micro-speech`: micro_speech's front end, noise reduction
and PCAN on); `--name` the results file:

    python bench/kws_frontend.py --accuracy-only --size small --difficulty easy --epochs 12 \
        --seeds 0,1,2 --front-ends mfcc,micro-speech,micro-nr-pcan-off --name kws_frontend_variants

`--saturation` measures, without training, how much of each micro front end's int8 log filter
bank sits at its floor or top on the first `--clips` training clips (`kws_frontend_saturation.md`):

    python bench/kws_frontend.py --saturation --size small --front-ends \
        micro-speech,micro-pcan-off,micro-nr-pcan-off-narrow,micro

`--flash-breakdown` takes the pruned raw-audio bundle of a full run (`--bundle`, default
`<work>/micro_dynhp_25pct_macs/export/mcu`), writes it again with this checkout's templates
(same models, same test clips), builds the Cortex-M4 CMSIS-NN firmware twice: the test build
(`make cortex-m4`: test clips compiled in, what `verify_mcu` checks) and the release image
(`make cortex-m4 RELEASE=1`: no test clips, TFLM's release flags; clips from `EVAL_CLIPS`
through semihosting), checks both bit for bit against Python TFLM (the release image on the
bundle's test clips and on `eval_clips.bin` when the bundle has one: the held-out clips of the
full run), and attributes flash and RAM to their parts from the linker map
(`converters.flash_map`). Writes `kws_flash.json` / `.md`.

    python bench/kws_frontend.py --flash-breakdown
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


# Micro front-end variants of `--front-ends` (`MicroFrontEnd` parameters; "micro" = the raw-audio
# path's default, `micro_frontend.DEFAULT`). Measured in bench/results/kws_frontend_variants*.md.
MICRO_VARIANTS = {
    "micro": None,
    # micro_speech's audio preprocessor: noise reduction and PCAN on, its int8 scale
    "micro-speech": {"even_smoothing": 0.025, "odd_smoothing": 0.06, "pcan_strength": 0.95,
                     "filterbank_scale": 666.0 / 256.0 / 64.0},
    # noise reduction and PCAN off (no smoothing: a zero noise estimate; PCAN strength 0);
    # the log of the filter bank then spans ~8 to 16+: int8 scale 0.08 covers 0 to 20.4
    "micro-nr-pcan-off": {"even_smoothing": 0.0, "odd_smoothing": 0.0, "pcan_strength": 0.0,
                          "filterbank_scale": 0.08},
    # the same with micro_speech's int8 scale (0 to 10.4: most values saturate at 127)
    "micro-nr-pcan-off-narrow": {"even_smoothing": 0.0, "odd_smoothing": 0.0,
                                 "pcan_strength": 0.0},
    # noise reduction on, PCAN off, int8 scale 0.08
    "micro-pcan-off": {"pcan_strength": 0.0, "filterbank_scale": 0.08},
    # slow noise reduction (smoothing 0.005 per frame: 22 % of the way to the signal in a 1 s
    # clip, micro_speech's 0.025/0.06 get 71/95 %), PCAN off, int8 scale 0.08
    "micro-slow-nr": {"even_smoothing": 0.005, "odd_smoothing": 0.005, "pcan_strength": 0.0,
                      "filterbank_scale": 0.08},
    # noise reduction and PCAN off, int8 scale 0.08, filter bank 20-4000 Hz (the MFCC path's)
    "micro-nr-pcan-off-4k": {"even_smoothing": 0.0, "odd_smoothing": 0.0, "pcan_strength": 0.0,
                             "filterbank_scale": 0.08, "lower_band_limit_hz": 20.0,
                             "upper_band_limit_hz": 4000.0},
}


def front_end_of(name):
    """`"mfcc"`, or the `MicroFrontEnd` of a `MICRO_VARIANTS` name."""
    if name in ("mfcc", "micro"):
        return name
    if name not in MICRO_VARIANTS:
        raise SystemExit(f"Unknown front end {name!r}. Expected 'mfcc' or one of "
                         f"{sorted(MICRO_VARIANTS)}.")
    from tfdynhp.datasets.kws.micro_frontend import MicroFrontEnd

    return MicroFrontEnd(**MICRO_VARIANTS[name])


def saturation_rows(args):
    """`--saturation`: where each micro front end's int8 log filter bank sits at its ends, on
    the first `--clips` training clips (`--size`, `--difficulty`, `--seed`)."""
    import numpy as np

    from tfdynhp.datasets.kws import micro_frontend
    from tfdynhp.datasets.kws.dataset import load_synthetic_kws

    (audio, _), _ = load_synthetic_kws(None, args.difficulty, args.size, args.seed, audio=True,
                                       verbose=0)
    pcm = micro_frontend.to_pcm16(audio[:args.clips])
    rows = []
    for name in args.front_ends:
        if name == "mfcc":
            continue
        fe = front_end_of(name)
        fe = micro_frontend.DEFAULT if fe == "micro" else fe
        q = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(fe, "int8"), pcm, fe)
        log = micro_frontend.run_frontend(micro_frontend.filterbank_tflite(fe, "log"), pcm,
                                          fe) / 64.0
        low, high = q == -128, q == 127
        rows.append({"front_end": name, "clips": len(pcm), "floor": float(low.mean()),
                     "top": float(high.mean()), "floor_first_frame": float(low[:, 0].mean()),
                     "floor_last_frame": float(low[:, -1].mean()),
                     "top_last_frame": float(high[:, -1].mean()),
                     "log_percentiles": {p: float(np.percentile(log, p))
                                         for p in (1, 10, 50, 90, 99.9)}})
    return rows


def write_saturation_markdown(record, path):
    lines = [
        "# Micro front ends: the int8 log filter bank at its floor (-128) and top (127)", "",
        (f"Command: `{record['command']}` ({record['seconds'] / 60:.1f} min; "
         f"{record['machine']})."), "",
        (f"First {record['rows'][0]['clips']} training clips of synthetic-kws "
         f"{record['data']['size']} {record['data']['difficulty']} (data seed "
         f"{record['data']['seed']}), 49 frames x 40 channels each, every clip from a reset "
         "front end (as in training and on the device). Percentiles of the int16 log (natural "
         "log, before the int8 QUANTIZE)."), "",
        ("| front end | at floor | at top | floor, first frame | floor, last frame | top, last "
         "frame | log p1 / p10 / p50 / p90 / p99.9 |"), "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in record["rows"]:
        pct = " / ".join(f"{v:.2f}" for v in r["log_percentiles"].values())
        lines.append(f"| {r['front_end']} | {_pct(r['floor'])} % | {_pct(r['top'])} % | "
                     f"{_pct(r['floor_first_frame'])} % | {_pct(r['floor_last_frame'])} % | "
                     f"{_pct(r['top_last_frame'])} % | {pct} |")
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def accuracy_rows(args):
    """`--accuracy-only`: MFCC vs micro front end(s), dense DS-CNN, no export, per seed."""
    from tfdynhp.training import kws as pipeline

    rows = []
    for seed in args.seeds:
        for name in args.front_ends:
            front_end = front_end_of(name)
            options = {"arch": "ds-cnn", "mode": "dense", "budget": None, "epochs": args.epochs,
                       "batch_size": args.batch_size, "lr": args.lr, "seed": seed}
            start = time.perf_counter()
            result, _ = pipeline.train_kws(
                None, difficulty=args.difficulty, size=args.size, data_seed=args.seed,
                front_end=front_end, data_verbose=0, verbose=0, keras_verbose=0, **options)
            summary = result.summary
            row = {"front_end": name, "frontend_parameters": MICRO_VARIANTS.get(name),
                   "seed": seed, "held_out": summary["held_out"],
                   "splits": summary.get("data", {}).get("splits"),
                   "seconds": time.perf_counter() - start}
            print(json.dumps({k: row[k] for k in ("front_end", "seed", "held_out")}),
                  flush=True)
            rows.append(row)
    return rows


def write_accuracy_markdown(record, path):
    d = record["data"]
    lines = [
        "# Raw-audio (micro) vs MFCC front end: held-out accuracy, dense DS-CNN", "",
        (f"Command: `{record['command']}` ({record['seconds'] / 60:.1f} min; "
         f"{record['machine']})."), "",
        (f"Data: synthetic-kws {d['size']} clips, difficulty {d['difficulty']}, data seed "
         f"{d['seed']} (both front ends on the same clips); DS-CNN dense, "
         f"{record['settings']}. Float Keras accuracy in % (no int8 export in this mode)."), "",
        "| seed | front end | voices clips | voices float | accents clips | accents float |",
        "|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        v, a = r["held_out"]["test_voices"], r["held_out"]["test_accents"]
        lines.append(f"| {r['seed']} | {r['front_end']} | {v['n']} | {_pct(v['float'])} | "
                     f"{a['n']} | {_pct(a['float'])} |")
    lines += _difference_lines(record)
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def _difference_lines(record):
    """Each micro front end minus MFCC per split (mean over the seeds both ran)."""
    by = {(r["front_end"], r["seed"]): r for r in record["rows"]}
    names = list(dict.fromkeys(r["front_end"] for r in record["rows"]))
    micro = [n for n in names if n != "mfcc"]
    if "mfcc" not in names or not micro:
        return ["", ("(no MFCC row to compare with: see bench/results/kws_frontend_accuracy.md "
                "for the MFCC rows of the same seeds)")]
    lines = ["", ("micro front end minus MFCC, float, points (mean over seeds; each seed in "
                  "brackets):"), "", "| front end | split | minus MFCC |", "|---|---|---|"]
    for name in micro:
        seeds = [s for (n, s) in by if n == name and ("mfcc", s) in by]
        for split in ("test_voices", "test_accents"):
            diffs = [100 * (by[(name, s)]["held_out"][split]["float"]
                            - by[("mfcc", s)]["held_out"][split]["float"]) for s in seeds]
            lines.append(f"| {name} | {split} | {sum(diffs) / len(diffs):+.2f} "
                         f"({', '.join(f'{x:+.1f}' for x in diffs)}) |")
    return lines


def _rewrite_bundle(src, dst):
    """The raw-audio bundle `src` written again into `dst` with this checkout's templates."""
    import shutil

    import numpy as np
    from tfdynhp.converters import audio_mcu

    with open(os.path.join(src, "test_vectors.json")) as f:
        vectors = json.load(f)
    with open(os.path.join(src, "labels.txt")) as f:
        labels = [line.strip() for line in f if line.strip()]
    models = {}
    for name in ("model.tflite", "frontend.tflite"):
        with open(os.path.join(src, name), "rb") as f:
            models[name] = f.read()
    shutil.rmtree(dst, ignore_errors=True)
    audio_mcu.write_audio_mcu(models["model.tflite"], models["frontend.tflite"], dst,
                              np.asarray(vectors["inputs"], np.int16), vectors["frontend"],
                              labels=labels, kernels="cmsis-nn")
    return np.asarray(vectors["inputs"], np.int16)


def flash_breakdown(args):
    """`--flash-breakdown`: flash / RAM per part, test build vs release image."""
    import numpy as np
    from tfdynhp.converters import audio_mcu, firmware

    src = args.bundle or os.path.join(args.work, "micro_dynhp_25pct_macs", "export", "mcu")
    if not os.path.isfile(os.path.join(src, "frontend.tflite")):
        raise SystemExit(f"No raw-audio bundle at {src}: run `python bench/kws_frontend.py` "
                         "first (its pruned row writes it) or pass --bundle.")
    bundle = os.path.join(args.work, "flash_breakdown", "mcu")
    clips = _rewrite_bundle(src, bundle)
    extra = os.path.join(src, "eval_clips.bin")
    held_out = (np.fromfile(extra, "<i2").reshape(-1, clips.shape[1])
                if os.path.isfile(extra) else clips[:0])
    test = firmware.verify_mcu(bundle, args.tflm_dir, "cortex-m4", kernels="cmsis-nn",
                               cache_dir=args.cache_dir)
    builds = {
        "test build": {
            "command": "make cortex-m4", "bit_exact": f"yes ({test.num_vectors} test clips)"
            if test.bit_exact else "NO", "stack_used_bytes": test.stack_used_bytes,
            "heap_used_bytes": test.heap_used_bytes,
            "instructions_per_inference": test.instructions_per_inference,
            **firmware.firmware_size(bundle, "cortex-m4", "cmsis-nn")},
    }
    checked = audio_mcu.evaluate_clips(bundle, np.concatenate([clips, held_out]), args.tflm_dir,
                                       "cortex-m4", kernels="cmsis-nn",
                                       cache_dir=args.cache_dir, release=True)
    builds["release image"] = {
        "command": "make cortex-m4 RELEASE=1 EVAL_CLIPS=eval_clips.bin",
        "bit_exact": (f"{100 * checked['bit_exact_fraction']:.1f} % of {checked['n']} clips "
                      f"({len(clips)} test + {len(held_out)} held-out); same keyword "
                      f"{100 * checked['class_agreement']:.1f} %"),
        **{k: checked[k] for k in ("flash_bytes", "ram_static_bytes", "flash_parts",
                                   "ram_parts", "stack_used_bytes", "heap_used_bytes")},
    }
    return {"bundle": src, "builds": builds}


def write_flash_markdown(record, path):
    from tfdynhp.converters import flash_map

    test, release = record["builds"]["test build"], record["builds"]["release image"]
    lines = [
        ("# Raw-audio keyword-spotting firmware (DS-CNN 1/4 MACs, CMSIS-NN, Cortex-M4): where "
        "flash and RAM go"), "",
        (f"Command: `{record['command']}` ({record['seconds'] / 60:.1f} min; "
         f"{record['machine']}). Bundle: the pruned row of `python bench/kws_frontend.py "
         "--size ci --difficulty easy --epochs 12`, written again with this checkout's "
         "templates."), "",
        ("Parts from the linker map (`converters.flash_map`, every input section of "
         "`build/cortex-m4*/firmware.map`): flash = .vectors + .text + .rodata + .ARM.exidx "
         "+ .data, RAM = .data + .bss (static; stack and heap measured in the running "
         "firmware). 'c library' = newlib-nano (printf, stdio for the semihosting clip file), "
         "libm (sin/cos of kissfft's twiddles), libgcc, semihosting. 'linker' = alignment "
         "fill minus merged duplicate strings."), "",
        (f"- test build: `{test['command']}` (test clips compiled in, TFLM's error messages and "
        f"asserts kept; the build `verify_mcu` checks); bit-exact: {test['bit_exact']}"),
        (f"- release image: `{release['command']}` (no test clips: TFLM's `BUILD_TYPE=release` "
        "flags `-DNDEBUG -DTF_LITE_STRIP_ERROR_STRINGS`; clips read through semihosting, "
        f"window by window, standing in for a microphone); bit-exact: {release['bit_exact']}"),
        "", ("| part | flash B, test build | flash B, release image | RAM B, test build | "
        "RAM B, release image |"), "|---|---:|---:|---:|---:|",
    ]
    for part in flash_map.PARTS + ("total",):
        cells = [test["flash_parts"][part], release["flash_parts"][part],
                 test["ram_parts"][part], release["ram_parts"][part]]
        name = f"**{part}**" if part == "total" else part
        lines.append(f"| {name} | " + " | ".join(f"{c:,}" for c in cells) + " |")
    lines.append(f"| stack + heap (measured) | | | {test['stack_used_bytes']:,} + "
                 f"{test['heap_used_bytes']:,} | {release['stack_used_bytes']:,} + "
                 f"{release['heap_used_bytes']:,} |")
    ram_total = {k: b["ram_static_bytes"] + b["stack_used_bytes"] + b["heap_used_bytes"]
                 for k, b in record["builds"].items()}
    flash_goal, ram_goal = 128 * 1024, 48 * 1024
    no_vectors = test["flash_bytes"] - test["flash_parts"]["test vectors"]
    lines += [
        "", (f"Goal (issue 28): the pruned KWS firmware <= 128 KB ({flash_goal:,} B) flash and "
        f"<= 48 KB ({ram_goal:,} B) RAM."), "",
        (f"- test build: {test['flash_bytes']:,} B flash ({no_vectors:,} B without its test "
        f"clips), {ram_total['test build']:,} B RAM (static + stack + heap)"),
        (f"- release image: **{release['flash_bytes']:,} B flash** "
        f"({'met' if release['flash_bytes'] <= flash_goal else 'NOT met'}), "
        f"**{ram_total['release image']:,} B RAM** "
        f"({'met' if ram_total['release image'] <= ram_goal else 'NOT met'})"), "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


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
    parser.add_argument("--flash-breakdown", action="store_true",
                        help="flash / RAM per part of the pruned raw-audio firmware, test build "
                             "vs release image (needs a full run's bundle or --bundle)")
    parser.add_argument("--bundle", default=None,
                        help="raw-audio bundle of --flash-breakdown")
    parser.add_argument("--accuracy-only", action="store_true",
                        help="only the dense MFCC and micro rows' accuracy, no firmware")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0],
                        help="training seeds of --accuracy-only (comma-separated)")
    parser.add_argument("--front-ends", type=lambda s: s.split(","), default=["mfcc", "micro"],
                        help="rows of --accuracy-only (comma-separated): mfcc and names of "
                             f"MICRO_VARIANTS ({', '.join(MICRO_VARIANTS)})")
    parser.add_argument("--saturation", action="store_true",
                        help="the int8 log filter bank of each micro --front-ends at its ends "
                             "(first --clips training clips), no training")
    parser.add_argument("--clips", type=int, default=200, help="clips of --saturation")
    parser.add_argument("--name", default="kws_frontend_accuracy",
                        help="results file name of --accuracy-only (.json, .md in --out)")
    args = parser.parse_args(argv)
    command = "python bench/kws_frontend.py " + " ".join(argv if argv is not None
                                                         else sys.argv[1:])
    start = time.perf_counter()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs"
    if args.flash_breakdown:
        record = {"command": command, "machine": machine,
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  **flash_breakdown(args)}
        record["seconds"] = time.perf_counter() - start
        _write(record, args.out, "kws_flash", write_flash_markdown, show=True)
        return 0
    if args.saturation:
        rows = saturation_rows(args)
        record = {"command": command, "machine": machine,
                  "data": {"size": args.size, "difficulty": args.difficulty, "seed": args.seed},
                  "seconds": time.perf_counter() - start, "rows": rows}
        _write(record, args.out, "kws_frontend_saturation", write_saturation_markdown,
               show=True)
        return 0
    if args.accuracy_only:
        rows = accuracy_rows(args)
        record = {
            "command": command,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs",
            "data": {"size": args.size, "difficulty": args.difficulty, "seed": args.seed},
            "settings": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr},
            "seconds": time.perf_counter() - start, "rows": rows,
        }
        _write(record, args.out, args.name, write_accuracy_markdown)
        return 0
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
    _write(record, args.out, "kws_frontend", write_markdown)
    return 0


def _write(record, out, name, write_markdown_to, show=False):
    """`<out>/<name>.json` and its table `<name>.md` (printed with `show`)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(record, f, indent=2, default=float)
        f.write("\n")
    write_markdown_to(record, os.path.join(out, f"{name}.md"))
    if show:
        with open(os.path.join(out, f"{name}.md")) as f:
            print(f.read())


if __name__ == "__main__":
    sys.exit(main())
