"""`tfdynhp export`: a saved `.keras` model as int8 TFLite bundles for the Pi, Android and
microcontrollers."""

import sys

from tfdynhp.cli import common


def add_parser(commands):
    """Adds `export` to the `tfdynhp` sub-command parsers."""
    parser = commands.add_parser(
        "export",
        help="export a saved .keras model as int8 TFLite bundles",
        description="Convert a saved .keras model (gated or stripped) to int8 TFLite and "
        "write one bundle per target under OUT/<target>/.",
    )
    parser.add_argument("model", help="a .keras file (e.g. runs/x/model_stripped.keras)")
    parser.add_argument("--to", default=None,
                        help="comma-separated bundles among pi, android, mcu")
    parser.add_argument("--target", dest="legacy_target", default=None,
                        help="deprecated spelling of --to (a target means a resource target "
                        "in 'tfdynhp train')")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="data set giving the int8 calibration samples (default: "
                        "%(default)s)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration subset")
    common.add_verify_options(parser, "the mcu bundle's", "Cortex-M run under qemu-system-arm")
    return parser


def _bundles(args):
    if args.legacy_target is not None:
        if args.to is not None:
            raise common.UsageError("give the bundles once: --to (--target is its old name)")
        print("tfdynhp export: --target is deprecated, use --to (e.g. --to pi,mcu)",
              file=sys.stderr)
    text = args.to if args.to is not None else args.legacy_target
    bundles = common.export_targets(text or "")
    if not bundles:
        raise common.UsageError("--to needs at least one of pi, android, mcu")
    return bundles


def run(args):
    from tfdynhp import converters, training
    from tfdynhp.datasets import shaping
    from tfdynhp.model import is_gated_model, strip

    bundles = _bundles(args)
    verify = common.verify_targets(args.verify, bundles, args.tflm_dir, "--to")
    out_dir = common.check_out_dir(args.out)
    model = common.load_keras_model(args.model)
    (x_train, _), (x_test, y_test) = common.load_data(args.dataset, seed=args.seed)
    shape = model.inputs[0].shape[1:]
    x_train = common.shaped(x_train, shape, args.dataset)
    x_test = common.shaped(x_test, shape, args.dataset)
    if is_gated_model(model):
        model = strip(model)
    labels = list(shaping.FASHION_MNIST_LABELS) if shaping.is_fashion_mnist(args.dataset) else None
    try:
        tflite, results = training.export_all(model, bundles, out_dir, x_train, x_test, y_test,
                                              labels=labels, seed=args.seed, tflm_samples=0)
    except ValueError as e:
        raise common.UsageError(str(e)) from e
    for bundle in bundles:
        print(f"{bundle}: {len(results[bundle])} files in {out_dir}/{bundle}")
    print(
        f"int8 .tflite {len(tflite):,} bytes, LiteRT test accuracy "
        f"{results['litert']['accuracy']:.4f}, {common.latency_text(results['litert'])}"
    )
    all_exact = True
    for target in verify:
        try:
            firmware = converters.verify_mcu(f"{out_dir}/mcu", args.tflm_dir, target,
                                             kernels=None if target == "host" else args.kernels)
        except (ValueError, converters.FirmwareError) as e:
            raise common.UsageError(str(e)) from e
        print(common.firmware_text(firmware))
        all_exact = all_exact and firmware.bit_exact
    return 0 if all_exact else 1
