"""`tfdynhp evaluate`: a `.tflite` classifier's accuracy and latency on a data set, in LiteRT or
TFLite Micro."""

import json
import os

from tfdynhp.cli import common


def add_parser(commands):
    """Adds `evaluate` to the `tfdynhp` sub-command parsers."""
    parser = commands.add_parser(
        "evaluate",
        help="measure a .tflite model's accuracy and latency on a data set",
        description="Run an int8 .tflite classifier on a data set's test split, one example "
        "at a time, in LiteRT or TFLite Micro.",
    )
    parser.add_argument("model", help="a .tflite file")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="data set (its test split is used; default: %(default)s)")
    parser.add_argument("--runtime", choices=("litert", "tflm"), default="litert",
                        help="interpreter (default: %(default)s)")
    parser.add_argument("--limit", type=common.positive_int, default=None,
                        help="evaluate the first N test examples only")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def run(args):
    from tfdynhp import converters

    if not os.path.isfile(args.model):
        raise common.UsageError(f"model file {args.model!r} not found")
    with open(args.model, "rb") as f:
        tflite = f.read()
    _, (x_test, y_test) = common.load_data(args.dataset)
    if args.limit is not None:
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    try:
        shape = converters.read_model_info(tflite).inputs[0].shape[1:]
        x_test = common.shaped(x_test, shape, args.dataset)
        result = converters.evaluate(tflite, x_test, y_test, args.runtime)
    except ValueError as e:
        raise common.UsageError(str(e)) from e
    result = {k: v for k, v in result.items() if k != "predictions"}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.runtime}: accuracy {result['accuracy']:.4f} (error "
            f"{100 * (1 - result['accuracy']):.2f} %) on {result['num_samples']} examples, "
            f"{common.latency_text(result)}; Python round trip {result['roundtrip_ms_mean']:.4f} "
            "ms per example"
        )
    return 0
