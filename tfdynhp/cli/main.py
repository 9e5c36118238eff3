"""The `tfdynhp` command line: `train`, `export`, `evaluate` and `report`.

```
tfdynhp train --dataset fashion-mnist --target "31744 params" --export pi,android,mcu --out runs/x
tfdynhp train --dataset fashion-mnist --arch lenet5 --mode hp --target "10% params" --out runs/cnn
tfdynhp train --model my.keras --data my.npz --target 40KB --out runs/mine
tfdynhp export runs/x/model_stripped.keras --target mcu --dataset fashion-mnist --out deploy
tfdynhp evaluate runs/x/export/pi/model.tflite --dataset fashion-mnist --runtime tflm
tfdynhp report runs/x
```

Bad input (unknown data set, unparsable budget or target, a `.npz` without the expected keys,
an output folder that cannot be written, an unknown export target, a budget or target the
model cannot meet, ...) ends with one line on stderr and exit code 2; `--debug` shows the
traceback instead. Any other failure is not the user's: it keeps its traceback (exit code 1).
"""

import argparse
import json
import os
import sys

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _unit_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _open_unit_float(text):
    value = _unit_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _add_verify_options(parser, bundle, note):
    """`--verify` and `--tflm-dir`, shared by `train` and `export`."""
    parser.add_argument("--verify", default="",
                        help=f"build {bundle} firmware against TFLite Micro, run it and check "
                        "it bit for bit against Python TFLM: comma-separated among host, "
                        f"cortex-m4, cortex-m3 ({note})")
    parser.add_argument("--tflm-dir", default=os.environ.get("TFLM_DIR"),
                        help="TensorFlow Lite Micro source tree for --verify (default: $TFLM_DIR)")


def build_parser():
    """The `argparse` parser of the `tfdynhp` command."""
    from tfdynhp import training

    defaults = training.DEFAULTS
    parser = _Parser(
        prog="tfdynhp",
        description="Dynamic Hard Pruning for Keras 3: train under a memory budget, ship int8 "
        "TFLite.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train a model (dense, SP, HP or DynHP), optionally to a target, and export it",
        description="Train a reference architecture, an MLP or your own .keras model in one "
        "mode, write the models, history, summary and plots to --out, and optionally export "
        "int8 TFLite bundles.",
    )
    train.add_argument("--dataset", "--data", dest="dataset", default="fashion-mnist",
                       help="fashion-mnist, digits, wine, breast-cancer, synthetic-kws, or a "
                       ".npz file with x_train, y_train, x_test, y_test (default: %(default)s)")
    train.add_argument("--arch", default="mlp",
                       help="mlp, lenet5, ds-cnn, mobilenet-v1-0.25, resnet8, or MLP hidden "
                       "widths such as 300,100 (default: %(default)s)")
    train.add_argument("--hidden", default=None,
                       help="hidden widths of --arch mlp (default: 300,100 = LeNet-300-100)")
    train.add_argument("--model", default=None,
                       help="your own .keras classifier to prune instead of --arch")
    train.add_argument("--mode", choices=training.MODES, default="dynhp",
                       help="dense: no gates; sp: soft pruning; hp: hard pruning, fixed batch; "
                       "dynhp: hard pruning + growing batch under a budget (default: "
                       "%(default)s)")
    train.add_argument("--target", default=None,
                       help="what to prune to, e.g. '31744 params', '25%% params', '2.5M macs', "
                       "'40KB' (int8 model), '900KB memory' (default: none)")
    train.add_argument("--target-epoch", type=_positive_int, default=None,
                       help="epoch by which the target is met (default: 2/3 of --epochs)")
    train.add_argument("--budget", default=None,
                       help="DynHP memory budget, e.g. 1.2MB, 900KiB, 1200000 (default: "
                       f"{defaults['budget']})")
    train.add_argument("--accounting", choices=("paper", "full"), default=None,
                       help="accounting the budget applies to (default: "
                       f"{defaults['accounting']}; both are reported)")
    train.add_argument("--alpha-bs", type=_unit_float, default=None,
                       help=f"alpha_bs of the batch-size rule (default: {defaults['alpha_bs']})")
    train.add_argument("--epochs", type=_positive_int, default=None,
                       help=f"epochs (default: {defaults['epochs']})")
    train.add_argument("--batch-size", type=_positive_int, default=None,
                       help=f"(initial) batch size (default: {defaults['batch_size']} for "
                       f"dynhp, {training.FIXED_BATCH_DEFAULT} otherwise)")
    train.add_argument("--lr", type=_positive_float, default=None,
                       help=f"Adam learning rate (default: {defaults['lr']})")
    train.add_argument("--lr-schedule", choices=["constant", "cosine"], default=None,
                       help="per-epoch learning-rate schedule (default: "
                       f"{defaults['lr_schedule']})")
    train.add_argument("--l0-lambda", type=_non_negative_float, default=None,
                       help="lambda of the L0 penalty, divided by the training-set size "
                       f"(default: {defaults['l0_lambda']})")
    train.add_argument("--drop-rate-init", type=_open_unit_float, default=None,
                       help=f"initial gate drop rate (default: {defaults['drop_rate_init']})")
    train.add_argument("--first-layer-drop-rate", type=_open_unit_float, default=None,
                       help="initial drop rate of the input-feature gates (default: as "
                       "--drop-rate-init)")
    train.add_argument("--penalty", choices=("units", "params", "macs", "memory"),
                       default=None,
                       help="what a unit costs in the L0 penalty: 'units' counts gates, the "
                       "others what removing a unit saves (default: units; with a target, "
                       "the target's resource)")
    train.add_argument("--threshold", type=_unit_float, default=None,
                       help="minimum gate activation rate to keep a unit (default: "
                       f"{defaults['threshold']})")
    train.add_argument("--validation-split", type=_unit_float, default=None,
                       help="fraction of the training set held out for per-epoch validation "
                       f"(default: {defaults['validation_split']}; the test set is only used "
                       "for the final numbers)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument("--distribute", choices=("mirrored", "multi-worker"), default=None,
                       help="train under tf.distribute: 'mirrored' (this machine's devices) "
                       "or 'multi-worker' (run the same command on every machine of "
                       "TF_CONFIG; only the chief writes --out) (default: none)")
    train.add_argument("--limit-train", type=_positive_int, default=None,
                       help="train on a random subset of N examples (quick runs)")
    train.add_argument("--export", default="",
                       help="comma-separated export targets among pi, android, mcu")
    _add_verify_options(train, "the exported mcu bundle's", "needs --export mcu")
    train.add_argument("--variance-every", type=int, default=None,
                       help="compute the gradient variance of the batch rule on one step in k "
                       "(default: DynHPCallback's, 4; 1 = every step)")
    train.add_argument("--bn-momentum", type=_unit_float, default=None,
                       help="BatchNormalization momentum of the architecture (default: the "
                       "builder's; 0.9 for synthetic-kws)")
    kws = train.add_argument_group("synthetic-kws data")
    kws.add_argument("--keywords", default=None,
                     help="comma-separated words or short phrases, e.g. 'lights on,lights off' "
                     "(default: Speech Commands' ten)")
    kws.add_argument("--difficulty", choices=("easy", "medium", "hard"), default="medium",
                     help="noise and channel effects (default: %(default)s)")
    kws.add_argument("--size", default="small",
                     help="total clips (train/val/test) or ci, small, medium, large "
                     "(default: %(default)s)")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--quiet", action="store_true", help="no progress output")

    export = commands.add_parser(
        "export",
        help="export a saved .keras model as int8 TFLite bundles",
        description="Convert a saved .keras model (gated or stripped) to int8 TFLite and "
        "write one bundle per target under OUT/<target>/.",
    )
    export.add_argument("model", help="a .keras file (e.g. runs/x/model_stripped.keras)")
    export.add_argument("--target", required=True,
                        help="comma-separated targets among pi, android, mcu")
    export.add_argument("--dataset", default="fashion-mnist",
                        help="data set giving the int8 calibration samples (default: "
                        "%(default)s)")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--seed", type=int, default=0, help="seed of the calibration subset")
    _add_verify_options(export, "the mcu bundle's", "Cortex-M run under qemu-system-arm")

    evaluate = commands.add_parser(
        "evaluate",
        help="measure a .tflite model's accuracy and latency on a data set",
        description="Run an int8 .tflite classifier on a data set's test split, one example "
        "at a time, in LiteRT or TFLite Micro.",
    )
    evaluate.add_argument("model", help="a .tflite file")
    evaluate.add_argument("--dataset", default="fashion-mnist",
                          help="data set (its test split is used; default: %(default)s)")
    evaluate.add_argument("--runtime", choices=("litert", "tflm"), default="litert",
                          help="interpreter (default: %(default)s)")
    evaluate.add_argument("--limit", type=_positive_int, default=None,
                          help="evaluate the first N test examples only")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")

    report = commands.add_parser(
        "report",
        help="remake the plots and summary of an output folder",
        description="Redraw units/batch/memory/test-error plots and summary.md of a folder "
        "written by 'tfdynhp train', from its history.csv and summary.json.",
    )
    report.add_argument("run_dir", help="a folder written by 'tfdynhp train --out'")
    from tfdynhp.cli import methods as cli_methods

    _COMMANDS.update(cli_methods.add_parsers(commands))
    return parser


def _say(message, quiet=False):
    if not quiet:
        print(message, flush=True)


def _check_out_dir(path):
    """Creates `path` if needed and checks that a file can be written in it."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"output folder {path!r} exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".tfdynhp-write-test")
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"output folder {path!r} is not writable ({e.strerror or e})") from e
    return path


def _load_data(dataset, limit_train=None, seed=0):
    from tfdynhp.datasets import shaping as inputs

    if isinstance(dataset, str) and dataset.endswith(".npz") and not os.path.isfile(dataset):
        raise UsageError(f"data set file {dataset!r} not found")
    try:
        return inputs.load_data(dataset, limit_train=limit_train, seed=seed)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise UsageError(str(e)) from e


def _targets(text):
    from tfdynhp import training

    try:
        return training.check_exports(text)
    except ValueError as e:
        raise UsageError(str(e)) from e


def _run_options(args):
    """The `tfdynhp.training.train` options of `tfdynhp train`, checked (usage errors)."""
    from tfdynhp import training

    if args.model is not None:
        _check_model_file(args.model)
    if args.budget is not None:
        from tfdynhp.math import budget as budget_lib

        if args.mode != "dynhp":
            raise UsageError(f"--budget applies to --mode dynhp only (got --mode {args.mode})")
        try:
            budget_lib.parse_budget(args.budget)
        except (ValueError, TypeError) as e:
            raise UsageError(f"cannot parse --budget {args.budget!r}: {e}") from e
    options = {
        "dataset": args.dataset,
        "arch": args.arch,
        "hidden": args.hidden,
        "model_path": args.model,
        "mode": args.mode,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "l0_lambda": args.l0_lambda,
        "drop_rate_init": args.drop_rate_init,
        "first_layer_drop_rate": args.first_layer_drop_rate,
        "penalty": args.penalty,
        "threshold": args.threshold,
        "budget": args.budget,
        "alpha_bs": args.alpha_bs,
        "accounting": args.accounting,
        "target": args.target,
        "target_epoch": args.target_epoch,
        "validation_split": args.validation_split,
        "seed": args.seed,
        "limit_train": args.limit_train,
        "bn_momentum": args.bn_momentum,
        "variance_every": args.variance_every,
        "distribute": args.distribute,
    }
    try:
        training.RunConfig(**options).resolve()
        if args.target is not None:
            from tfdynhp.policies import targets

            targets.parse_target(args.target)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from e
    return options


def _cmd_train(args):
    from tfdynhp import training
    from tfdynhp.training import kws as pipeline
    from tfdynhp.validation import ConfigurationError

    kws = pipeline.is_kws(args.dataset)
    options = _run_options(args)
    exports = _targets(args.export)
    verify = _verify_targets(args.verify, exports, args.tflm_dir)
    out_dir = _check_out_dir(args.out)
    labels = info = None
    if kws:
        if options["bn_momentum"] is None and options["model_path"] is None:
            options["bn_momentum"] = pipeline.BN_MOMENTUM
        data, info = _load_kws(args)
        labels = list(info.labels)
    else:
        data = _load_data(args.dataset, args.limit_train, args.seed)
    (x_train, _), (x_test, _) = data[0], data[-1]
    what = args.model or (f"arch {args.arch}" + (f" {args.hidden}" if args.hidden else ""))
    _say(
        f"tfdynhp train: {args.dataset} ({len(x_train)} train / {len(x_test)} test, "
        f"examples {tuple(x_train.shape[1:])}), {what}, mode {args.mode}"
        + (f", target {args.target}" if args.target else "") + f", output {out_dir}",
        args.quiet,
    )
    if not kws:
        options["limit_train"] = None  # `_load_data` took the subset already
    try:
        result = training.train(
            data=data, out_dir=out_dir, exports=exports, labels=labels,
            verbose=0 if args.quiet else 1, keras_verbose=0 if args.quiet else 1, **options,
        )
    except ConfigurationError as e:
        # The configuration cannot work (a budget too small for the model, an unreachable
        # target): refused before training, a user error. Anything else keeps its traceback.
        raise UsageError(str(e)) from e
    from tfdynhp import converters

    try:
        if kws:
            _, firmware = pipeline.finish_run(result, info, out_dir, exports, verify,
                                              args.tflm_dir)
        else:
            firmware = training.verify_exports(out_dir, verify, args.tflm_dir)
            if firmware:
                result.summary["firmware"] = {t: r.to_dict() for t, r in firmware.items()}
                training.write_summary(result.summary, out_dir)
    except (ValueError, converters.FirmwareError) as e:
        raise UsageError(str(e)) from e
    _say(_train_report(result.summary, out_dir), args.quiet)
    for r in firmware.values():
        _say(_firmware_text(r), args.quiet)
    return 0 if all(r.bit_exact for r in firmware.values()) else 1


def _load_kws(args):
    """The synthetic-kws splits (validation by speaker) and their `KWSInfo`."""
    from tfdynhp.training import kws as pipeline

    keywords = None
    if args.keywords is not None:
        keywords = [k.strip() for k in args.keywords.split(",")]
    size = int(args.size) if args.size.strip().isdigit() else args.size
    try:
        return pipeline.load_splits(keywords, args.difficulty, size, args.seed,
                                    verbose=0 if args.quiet else 1)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise UsageError(str(e)) from e


def _train_report(summary, out_dir):
    from tfdynhp.math import budget as budget_lib

    lines = [
        f"Done in {summary['wall_time_s']:.0f} s ({summary['epochs_run']} epochs).",
        f"  test error      {summary['test_error_pct']:.2f} %"
        + (
            f" (int8 {100 * summary['int8_test_error']:.2f} %)"
            if "int8_test_error" in summary
            else ""
        ),
        (f"  model           {summary['params']:,} parameters, "
        f"{budget_lib.format_bytes(summary['model_size_bytes'])}, "
        f"units {summary['units']}"),
    ]
    for name in ("paper", "full"):
        value = summary.get(f"mean_training_memory_{name}_bytes")
        if value is not None:
            lines.append(
                f"  train memory    {budget_lib.format_bytes(round(value))} mean, "
                f"{name} accounting"
            )
    if summary.get("tflite_bytes"):
        lines.append(f"  int8 .tflite    {summary['tflite_bytes']:,} bytes")
    for split, row in summary.get("held_out", {}).items():
        lines.append(f"  {split:<15} float {100 * row['float']:.1f} %"
                     + (f", int8 {100 * row['int8']:.1f} %" if "int8" in row else "")
                     + f" ({row['n']} clips)")
    lines.append(f"  written to      {out_dir}")
    return "\n".join(lines)


def _check_model_file(path):
    if not os.path.isfile(path):
        raise UsageError(f"model file {path!r} not found")
    if not path.endswith(".keras"):
        raise UsageError(f"expected a .keras model file, got {path!r}")


def _load_keras_model(path):
    import keras

    import tfdynhp  # noqa: F401  (registers the custom layers)

    _check_model_file(path)
    try:
        return keras.saving.load_model(path)
    except (ValueError, OSError, TypeError) as e:
        raise UsageError(f"cannot load {path!r}: {e}") from e


def _cmd_export(args):
    from tfdynhp.datasets import shaping as inputs

    targets = _targets(args.target)
    if not targets:
        raise UsageError("--target needs at least one of pi, android, mcu")
    verify = _verify_targets(args.verify, targets, args.tflm_dir)
    out_dir = _check_out_dir(args.out)
    model = _load_keras_model(args.model)
    (x_train, _), (x_test, y_test) = _load_data(args.dataset, seed=args.seed)
    shape = model.inputs[0].shape[1:]
    try:
        x_train = inputs.shape_for(x_train, shape, args.dataset)
        x_test = inputs.shape_for(x_test, shape, args.dataset)
    except ValueError as e:
        raise UsageError(str(e)) from e
    from tfdynhp.model import is_gated_model, strip

    if is_gated_model(model):
        model = strip(model)
    labels = list(inputs.FASHION_MNIST_LABELS) if inputs.is_fashion_mnist(args.dataset) else None
    from tfdynhp import converters

    representative = inputs.representative_subset(x_train, seed=args.seed)
    try:
        tflite = converters.to_int8_tflite(model, representative)
        for target in targets:
            target_dir = os.path.join(out_dir, target)
            files = converters.export(tflite, target, target_dir, representative, labels=labels)
            print(f"{target}: {len(files)} files in {target_dir}")
    except ValueError as e:
        raise UsageError(str(e)) from e
    result = converters.evaluate(tflite, x_test, y_test, "litert")
    print(
        f"int8 .tflite {len(tflite):,} bytes, LiteRT test accuracy {result['accuracy']:.4f}, "
        f"{_latency_text(result)}"
    )
    all_exact = True
    for target in verify:
        try:
            firmware = converters.verify_mcu(
                os.path.join(out_dir, "mcu"), args.tflm_dir, target
            )
        except (ValueError, converters.FirmwareError) as e:
            raise UsageError(str(e)) from e
        print(_firmware_text(firmware))
        all_exact = all_exact and firmware.bit_exact
    return 0 if all_exact else 1


def _verify_targets(text, targets, tflm_dir):
    from tfdynhp.converters import firmware

    verify = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in verify if t not in firmware.TARGETS]
    if unknown:
        raise UsageError(
            f"--verify: unknown target(s) {', '.join(unknown)}; expected among "
            f"{', '.join(firmware.TARGETS)}"
        )
    if verify and "mcu" not in targets:
        raise UsageError("--verify builds the mcu bundle: add mcu to --target (export) or "
                         "--export (train)")
    if verify and not tflm_dir:
        raise UsageError(
            "--verify needs a TensorFlow Lite Micro source tree: pass --tflm-dir or set "
            "TFLM_DIR (git clone https://github.com/tensorflow/tflite-micro)"
        )
    return verify


def _latency_text(result):
    batched = result.get("batched_ms_per_example")
    return (
        f"{result['latency_batch1_ms']:.4f} ms per invoke at batch 1 (tight loop), "
        + (
            f"{batched:.4f} ms per example batched ({result['batched_batch_size']})"
            if batched is not None
            else f"no batched figure ({result['batched_note']})"
        )
    )


def _firmware_text(r):
    speed = (
        f"{r.instructions_per_inference:,.0f} instructions per inference (QEMU -icount; not "
        "cycle-accurate)"
        if r.instructions_per_inference is not None
        else f"{r.host_ns_per_inference / 1e3:.1f} us per inference on this host"
    )
    extra = (
        f" + stack {r.stack_used_bytes:,} + heap {r.heap_used_bytes:,}"
        if r.stack_used_bytes is not None
        else ""
    )
    return (
        f"mcu firmware {r.target}: "
        + ("bit-exact" if r.bit_exact else f"MISMATCH on vectors {list(r.mismatched_vectors)}")
        + f" vs Python TFLM on {r.num_vectors} test vectors; flash {r.flash_bytes:,} B, RAM "
        f"{r.ram_total_bytes:,} B (data+bss {r.ram_static_bytes:,}{extra}); {speed}; build "
        f"{r.build_seconds:.1f} s, run {r.run_seconds:.1f} s"
    )


def _cmd_evaluate(args):
    from tfdynhp import converters

    if not os.path.isfile(args.model):
        raise UsageError(f"model file {args.model!r} not found")
    with open(args.model, "rb") as f:
        tflite = f.read()
    _, (x_test, y_test) = _load_data(args.dataset)
    if args.limit is not None:
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    try:
        from tfdynhp.datasets import shaping as inputs

        shape = converters.read_model_info(tflite).inputs[0].shape[1:]
        x_test = inputs.shape_for(x_test, shape, args.dataset)
        result = converters.evaluate(tflite, x_test, y_test, args.runtime)
    except ValueError as e:
        raise UsageError(str(e)) from e
    result = {k: v for k, v in result.items() if k != "predictions"}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.runtime}: accuracy {result['accuracy']:.4f} (error "
            f"{100 * (1 - result['accuracy']):.2f} %) on {result['num_samples']} examples, "
            f"{_latency_text(result)}; Python round trip {result['roundtrip_ms_mean']:.4f} "
            "ms per example"
        )
    return 0


def _cmd_report(args):
    from tfdynhp.training import reports

    if not os.path.isdir(args.run_dir):
        raise UsageError(f"{args.run_dir!r} is not a folder")
    try:
        written = reports.regenerate(args.run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from e
    for path in written:
        print(path)
    return 0


_COMMANDS = {
    "train": _cmd_train,
    "export": _cmd_export,
    "evaluate": _cmd_evaluate,
    "report": _cmd_report,
}


def main(argv=None):
    """Runs the `tfdynhp` command; returns the exit code (0, or 2 for bad input)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except UsageError as e:
        if args.debug:
            raise
        print(f"tfdynhp {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"tfdynhp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
