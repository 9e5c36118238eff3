"""`tfdynhp prune`: remove the lowest-scoring units of a saved `.keras` model by a criterion
(one-shot structured pruning)."""

import json
import os

from tfdynhp.cli import common


def add_common_arguments(parser):
    """The arguments `prune` and `specialize` share."""
    from tfdynhp.policies.criteria import CRITERIA

    parser.add_argument("model", help="a trained .keras classifier")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="data set the criterion reads (default: %(default)s)")
    parser.add_argument("--criterion", default="taylor",
                        help=f"one of {', '.join(sorted(CRITERIA))} (default: %(default)s)")
    parser.add_argument("--fraction", type=float, default=0.5,
                        help="share of each layer's units removed (default: %(default)s)")
    parser.add_argument("--examples", type=int, default=512,
                        help="training examples the criterion reads (default: %(default)s)")
    parser.add_argument("--out", required=True, help="the pruned .keras file to write")


def add_parser(commands):
    """Adds `prune` to the `tfdynhp` sub-command parsers."""
    parser = commands.add_parser(
        "prune",
        help="remove the lowest-scoring units of a saved .keras model by a criterion",
        description="One-shot structured pruning: score every prunable unit with a criterion "
        "on training examples of the data set and remove the lowest FRACTION of each layer.",
    )
    add_common_arguments(parser)
    return parser


def prepare(args):
    """The model and the training examples of `prune` / `specialize`, checked."""
    if not 0.0 <= args.fraction < 1.0:
        raise common.UsageError(f"--fraction must be in [0, 1), got {args.fraction}")
    if not args.out.endswith(".keras"):
        raise common.UsageError(f"--out must name a .keras file, got {args.out!r}")
    model = common.load_keras_model(args.model)
    (x, y), _ = common.load_data(args.dataset)
    return model, common.shaped(x, model.inputs[0].shape[1:], args.dataset), y


def save(model, path, summary):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model.save(path)
    print(json.dumps({**summary, "params": model.count_params(), "out": path}))


def run(args):
    from tfdynhp.methods import prune

    model, x, y = prepare(args)
    try:
        report = prune(model, args.criterion, fraction=args.fraction,
                       data=(x[: args.examples], y[: args.examples]))
    except (ValueError, TypeError) as e:
        raise common.UsageError(str(e)) from e
    save(model, args.out, {"criterion": report.criterion, "units": report.units_after})
    return 0
