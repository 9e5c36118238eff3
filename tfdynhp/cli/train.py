"""`tfdynhp train`: train a model with a pruning method (DynHP in one of its modes: dense, SP,
HP, DynHP, optionally to a target; activation density; complexity-driven PA / FA / MA) and
export it."""

from tfdynhp.cli import common


def add_parser(commands):
    """Adds `train` to the `tfdynhp` sub-command parsers."""
    from tfdynhp import training

    defaults = training.DEFAULTS
    parser = commands.add_parser(
        "train",
        help="train a model with a pruning method (DynHP by default), optionally to a "
        "target, and export it",
        description="Train a reference architecture, an MLP or your own .keras model with one "
        "pruning method (DynHP in one mode, activation density, or complexity-driven PA / FA "
        "/ MA), write the models, history, summary and plots to --out, and optionally export "
        "int8 TFLite bundles.",
    )
    parser.add_argument("--dataset", "--data", dest="dataset", default="fashion-mnist",
                        help="fashion-mnist, digits, wine, breast-cancer, synthetic-kws, or a "
                        ".npz file with x_train, y_train, x_test, y_test (default: %(default)s)")
    parser.add_argument("--arch", default="mlp",
                        help="mlp, lenet5, ds-cnn, mobilenet-v1-0.25, resnet8, or MLP hidden "
                        "widths such as 300,100 (default: %(default)s)")
    parser.add_argument("--hidden", default=None,
                        help="hidden widths of --arch mlp (default: 300,100 = LeNet-300-100)")
    parser.add_argument("--model", default=None,
                        help="your own .keras classifier to prune instead of --arch")
    parser.add_argument("--method", choices=training.METHODS, default="dynhp",
                        help="dynhp: L0 gates and hard pruning during the fit (see --mode); "
                        "activation-density: a plain model resized to its activation density "
                        "each epoch; pa / fa / ma: a plain model narrowed at initialization "
                        "where parameters / MACs / activation memory concentrate (--amount), "
                        "then trained (default: %(default)s)")
    parser.add_argument("--mode", choices=training.MODES, default=None,
                        help="of --method dynhp: dense: no gates; sp: soft pruning; hp: hard "
                        "pruning, fixed batch; dynhp: hard pruning + growing batch under a "
                        "budget (default: dynhp)")
    parser.add_argument("--amount", type=common.unit_float, default=None,
                        help="of --method pa / fa / ma: the fraction of units the most complex "
                        f"group loses (default: {training.run.AMOUNT_DEFAULT})")
    parser.add_argument("--target", default=None,
                        help="what to prune to, e.g. '31744 params', '25%% params', '2.5M macs', "
                        "'40KB' (int8 model), '900KB memory', '25%% m4_instructions' "
                        "(Cortex-M4 CMSIS-NN instructions, estimated) (default: none)")
    parser.add_argument("--target-epoch", type=common.positive_int, default=None,
                        help="epoch by which the target is met (default: 2/3 of --epochs)")
    parser.add_argument("--final-phase", choices=("freeze", "qat", "none"), default="freeze",
                        help="once the --target is met: 'freeze' the gates and fine-tune, "
                        "'qat' then fine-tune int8 quantization-aware (the exports use its "
                        "ranges), 'none' keep training the gates (default: freeze)")
    parser.add_argument("--budget", default=None,
                        help="DynHP memory budget, e.g. 1.2MB, 900KiB, 1200000 (default: "
                        f"{defaults['budget']})")
    parser.add_argument("--accounting", choices=("paper", "full"), default=None,
                        help="accounting the budget applies to (default: "
                        f"{defaults['accounting']}; both are reported)")
    parser.add_argument("--alpha-bs", type=common.unit_float, default=None,
                        help=f"alpha_bs of the batch-size rule (default: {defaults['alpha_bs']})")
    parser.add_argument("--epochs", type=common.positive_int, default=None,
                        help=f"epochs (default: {defaults['epochs']})")
    parser.add_argument("--batch-size", type=common.positive_int, default=None,
                        help=f"(initial) batch size (default: {defaults['batch_size']} for "
                        f"dynhp, {training.FIXED_BATCH_DEFAULT} otherwise)")
    parser.add_argument("--lr", type=common.positive_float, default=None,
                        help=f"Adam learning rate (default: {defaults['lr']})")
    parser.add_argument("--lr-schedule", choices=training.LR_SCHEDULES, default=None,
                        help="per-epoch learning-rate schedule; cosine-restart starts the "
                        "cosine again when the target is met (default: "
                        f"{defaults['lr_schedule']})")
    parser.add_argument("--teacher", default=None,
                        help="a trained .keras model (e.g. the dense one) distilled into the "
                        "gated model during the fit (modes sp, hp, dynhp; default: none)")
    parser.add_argument("--distill-temperature", type=common.positive_float, default=4.0,
                        help="softening temperature of --teacher (default: %(default)s)")
    parser.add_argument("--distill-alpha", type=common.unit_float, default=0.5,
                        help="weight of the distillation loss; 1 - alpha weights the labels' "
                        "loss (default: %(default)s)")
    parser.add_argument("--l0-lambda", type=common.non_negative_float, default=None,
                        help="lambda of the L0 penalty, divided by the training-set size "
                        f"(default: {defaults['l0_lambda']})")
    parser.add_argument("--drop-rate-init", type=common.open_unit_float, default=None,
                        help=f"initial gate drop rate (default: {defaults['drop_rate_init']})")
    parser.add_argument("--first-layer-drop-rate", type=common.open_unit_float, default=None,
                        help="initial drop rate of the input-feature gates (default: as "
                        "--drop-rate-init)")
    parser.add_argument("--penalty", choices=("units", "params", "macs", "memory",
                                              "m4_instructions"),
                        default=None,
                        help="what a unit costs in the L0 penalty: 'units' counts gates, the "
                        "others what removing a unit saves ('m4_instructions': estimated "
                        "Cortex-M4 CMSIS-NN instructions; default: units; with a target, "
                        "the target's resource)")
    parser.add_argument("--threshold", type=common.unit_float, default=None,
                        help="minimum gate activation rate to keep a unit (default: "
                        f"{defaults['threshold']})")
    parser.add_argument("--validation-split", type=common.unit_float, default=None,
                        help="fraction of the training set held out for per-epoch validation "
                        f"(default: {defaults['validation_split']}; the test set is only used "
                        "for the final numbers)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--distribute", choices=("mirrored", "multi-worker"), default=None,
                        help="train under tf.distribute: 'mirrored' (this machine's devices) "
                        "or 'multi-worker' (run the same command on every machine of "
                        "TF_CONFIG; only the chief writes --out) (default: none)")
    parser.add_argument("--limit-train", type=common.positive_int, default=None,
                        help="train on a random subset of N examples (quick runs)")
    parser.add_argument("--export", default="",
                        help="comma-separated export targets among pi, android, mcu")
    common.add_verify_options(parser, "the exported mcu bundle's", "needs --export mcu")
    parser.add_argument("--variance-every", type=common.positive_int, default=None,
                        help="compute the gradient variance of the batch rule on one step in k "
                        "(default: DynHPCallback's, 4; 1 = every step)")
    parser.add_argument("--bn-momentum", type=common.unit_float, default=None,
                        help="BatchNormalization momentum of the architecture (default: the "
                        "builder's; 0.9 for synthetic-kws)")
    kws = parser.add_argument_group("synthetic-kws data")
    kws.add_argument("--keywords", default=None,
                     help="comma-separated words or short phrases, e.g. 'lights on,lights off' "
                     "(default: Speech Commands' ten)")
    kws.add_argument("--difficulty", choices=("easy", "medium", "hard"), default="medium",
                     help="noise and channel effects (default: %(default)s)")
    kws.add_argument("--front-end", choices=("auto", "mfcc", "micro"), default="auto",
                     help="features: mfcc (TensorFlow's MFCCs, as MLPerf Tiny) or micro "
                     "(TFLite Micro's signal ops, the same model in training and on the device: "
                     "the mcu bundle then takes 1 s of raw 16 kHz audio; noise reduction and "
                     "PCAN off: within 1 point of mfcc on held-out voices, "
                     "bench/results/kws_frontend_variants.md); auto: micro when exporting for "
                     "mcu (the only bundle whose firmware hears audio), else mfcc "
                     "(default: %(default)s)")
    kws.add_argument("--size", default="small",
                     help="total clips (train/val/test) or ci, small, medium, large "
                     "(default: %(default)s)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _run_options(args):
    """The `tfdynhp.training.train` options of `tfdynhp train`, checked (usage errors)."""
    from tfdynhp import training

    if args.model is not None:
        common.check_model_file(args.model)
    if args.teacher is not None:
        common.check_model_file(args.teacher)
    if args.budget is not None:
        from tfdynhp.math import budget as budget_lib

        if args.method == "dynhp" and args.mode not in (None, "dynhp"):
            raise common.UsageError(f"--budget applies to --mode dynhp only (got --mode {args.mode})")
        try:
            budget_lib.parse_budget(args.budget)
        except (ValueError, TypeError) as e:
            raise common.UsageError(f"cannot parse --budget {args.budget!r}: {e}") from e
    options = {
        "dataset": args.dataset,
        "arch": args.arch,
        "hidden": args.hidden,
        "model_path": args.model,
        "method": args.method,
        "amount": args.amount,
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
        "final_phase": None if args.final_phase == "none" else args.final_phase,
        "validation_split": args.validation_split,
        "seed": args.seed,
        "limit_train": args.limit_train,
        "bn_momentum": args.bn_momentum,
        "variance_every": args.variance_every,
        "distribute": args.distribute,
        "teacher": args.teacher,
        "distill_temperature": args.distill_temperature,
        "distill_alpha": args.distill_alpha,
    }
    if args.final_phase == "qat" and (args.target is None or args.method != "dynhp"):
        raise common.UsageError(
            "--final-phase qat fine-tunes quantization-aware once the target is met: it needs "
            f"--method dynhp and a --target (got --method {args.method}, --target "
            f"{args.target}). Add e.g. --target '25% macs'.")
    try:
        config = training.RunConfig(**options).resolve()
        if args.target is not None:
            from tfdynhp.policies import targets

            targets.parse_target(args.target)
    except (ValueError, TypeError) as e:
        raise common.UsageError(str(e)) from e
    return options, config



def run(args):
    from tfdynhp import training
    from tfdynhp.training import kws as pipeline
    from tfdynhp.validation import ConfigurationError

    kws = pipeline.is_kws(args.dataset)
    options, config = _run_options(args)
    exports = common.export_targets(args.export)
    verify = common.verify_targets(args.verify, exports, args.tflm_dir, "--export")
    out_dir = common.check_out_dir(args.out)
    labels = info = None
    if kws:
        if args.front_end == "auto":
            args.front_end = "micro" if "mcu" in exports else "mfcc"
        if options["bn_momentum"] is None and options["model_path"] is None:
            options["bn_momentum"] = pipeline.BN_MOMENTUM
        data, info = _load_kws(args)
        labels = list(info.labels)
    else:
        data = common.load_data(args.dataset, args.limit_train, args.seed)
    (x_train, _), (x_test, _) = data[0], data[-1]
    what = args.model or (f"arch {args.arch}" + (f" {args.hidden}" if args.hidden else ""))
    common.say(
        f"tfdynhp train: {args.dataset} ({len(x_train)} train / {len(x_test)} test, "
        f"examples {tuple(x_train.shape[1:])}), {what}, "
        + (f"mode {config.mode}" if config.method == "dynhp" else f"method {config.method}")
        + (f", target {args.target}" if args.target else "") + f", output {out_dir}",
        args.quiet,
    )
    if not kws:
        options["limit_train"] = None  # `_load_data` took the subset already
    try:
        result = training.train(
            data=data, out_dir=out_dir, exports=exports, labels=labels,
            verbose=0 if args.quiet else 1,
            keras_verbose=training.fit_verbosity(0 if args.quiet else 1), **options,
        )
    except ConfigurationError as e:
        # The configuration cannot work (a budget too small for the model, an unreachable
        # target): refused before training, a user error. Anything else keeps its traceback.
        raise common.UsageError(str(e)) from e
    from tfdynhp import converters

    try:
        if kws:
            _, firmware = pipeline.finish_run(result, info, out_dir, exports, verify,
                                              args.tflm_dir, kernels=args.kernels)
        else:
            firmware = training.verify_exports(out_dir, verify, args.tflm_dir,
                                               kernels=args.kernels)
            if firmware:
                result.summary["firmware"] = {t: r.to_dict() for t, r in firmware.items()}
                training.write_summary(result.summary, out_dir)
    except (ValueError, converters.FirmwareError) as e:
        raise common.UsageError(str(e)) from e
    common.say(_train_report(result.summary, out_dir), args.quiet)
    for r in firmware.values():
        common.say(common.firmware_text(r), args.quiet)
    for target, a in result.summary.get("firmware_agreement", {}).items():
        common.say(f"raw-audio firmware {target}: same keyword as the Python pipeline on "
                   f"{a['class_agreement']:.1%} of {a['n']} held-out clips (raw outputs "
                   f"bit-exact on {a['bit_exact_fraction']:.1%})", args.quiet)
    return 0 if all(r.bit_exact for r in firmware.values()) else 1


def _load_kws(args):
    """The synthetic-kws splits (validation by speaker) and their `KWSInfo`."""
    from tfdynhp import training
    from tfdynhp.training import kws as pipeline

    keywords = None
    if args.keywords is not None:
        keywords = [k.strip() for k in args.keywords.split(",")]
    size = int(args.size) if args.size.strip().isdigit() else args.size
    try:
        return pipeline.load_splits(keywords, args.difficulty, size, args.seed,
                                    args.front_end,
                                    verbose=training.fit_verbosity(0 if args.quiet else 1))
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise common.UsageError(str(e)) from e


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
