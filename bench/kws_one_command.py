"""The README's keyword-spotting one command, run as written, its figures kept.

Runs `tfdynhp train --dataset synthetic-kws --keywords "lights on,lights off,stop" --arch ds-cnn
--target "50% macs" --export mcu --verify cortex-m4 ...` (in this process, `tfdynhp.cli.main`)
on the easy "ci" set for a few epochs (the README's quick run, not a trained keyword spotter),
and writes the command and what it reported: MACs against the dense DS-CNN, held-out accuracy
(float and int8), and the Cortex-M4 firmware's bit-exactness, flash, RAM and instructions per
inference.

    python bench/kws_one_command.py [--epochs 3] [--size ci] [--difficulty easy]

Needs espeak-ng, a TensorFlow Lite Micro tree (`$TFLM_DIR` or `../shared/tflm-kit/tflm`), the
Arm toolchain and qemu-system-arm. Writes `bench/results/kws_one_command.json`.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from bench_common import HERE, TFLM_DIR, checkout_first

checkout_first()

from tfdynhp import architectures, cli
from tfdynhp.costs import walk

KEYWORDS = "lights on,lights off,stop"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", default="ci")
    parser.add_argument("--difficulty", default="easy")
    parser.add_argument("--target", default="50% macs")
    parser.add_argument("--work", default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "kws_one_command.json"))
    args = parser.parse_args(argv)
    bench_command = "python bench/kws_one_command.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    work = args.work or tempfile.mkdtemp(prefix="kws-one-command-")
    train_argv = [
        "train", "--dataset", "synthetic-kws", "--keywords", KEYWORDS, "--difficulty",
        args.difficulty, "--size", args.size, "--arch", "ds-cnn", "--target", args.target,
        "--epochs", str(args.epochs), "--export", "mcu", "--verify", "cortex-m4",
        "--tflm-dir", TFLM_DIR, "--out", work, "--quiet",
    ]
    load_before = os.getloadavg()
    start = time.perf_counter()
    code = cli.main(train_argv)
    wall = time.perf_counter() - start
    with open(os.path.join(work, "summary.json")) as f:
        summary = json.load(f)
    labels = summary["data"]["labels"]
    dense_macs = walk.model_costs(architectures.ds_cnn(num_classes=len(labels))).macs
    firmware = summary.get("firmware", {}).get("cortex-m4", {})
    record = {
        "command": bench_command.strip(),
        "cli_command": "tfdynhp " + " ".join(
            f'"{a}"' if " " in a else a for a in train_argv).replace(TFLM_DIR, "$TFLM_DIR"),
        "exit_code": code,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs",
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "wall_s": round(wall, 1),
        "labels": labels,
        "n_train": summary["n_train"],
        "epochs": summary["epochs_run"],
        "params": summary["params"],
        "macs": summary["macs"],
        "dense_macs": dense_macs,
        "macs_fraction_of_dense": summary["macs"] / dense_macs,
        "tflite_bytes": summary.get("tflite_bytes"),
        "held_out": summary.get("held_out"),
        "firmware_cortex_m4": {k: firmware.get(k) for k in (
            "bit_exact", "num_vectors", "flash_bytes", "ram_static_bytes", "ram_total_bytes",
            "stack_used_bytes", "heap_used_bytes", "instructions_per_inference")},
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(json.dumps({k: v for k, v in record.items() if k != "held_out"}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
