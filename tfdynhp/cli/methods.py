"""The `tfdynhp prune` and `tfdynhp specialize` commands (one-shot pruning and task
specialization of a saved .keras model); registered by `tfdynhp.cli.build_parser`."""

import json
import os


def add_parsers(commands):
    """Adds `prune` and `specialize` to the `tfdynhp` sub-command parsers."""
    from tfdynhp.policies.criteria import CRITERIA

    prune = commands.add_parser(
        "prune",
        help="remove the lowest-scoring units of a saved .keras model by a criterion",
        description="One-shot structured pruning: score every prunable unit with a criterion "
        "on training examples of the data set and remove the lowest FRACTION of each layer.",
    )
    specialize = commands.add_parser(
        "specialize",
        help="cut a saved classifier down to some of its classes (prune and fine-tune)",
        description="Keep the outputs of --classes (in that order), prune by a criterion on "
        "those classes' training data and fine-tune.",
    )
    for parser in (prune, specialize):
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
    specialize.add_argument("--classes", required=True,
                            help="comma-separated class indices to keep, e.g. 7,9")
    specialize.add_argument("--epochs", type=int, default=2,
                            help="fine-tuning epochs (default: %(default)s)")
    return {"prune": _cmd_prune, "specialize": _cmd_specialize}


def _prepare(args):
    from tfdynhp.cli import main as cli
    from tfdynhp.datasets import shaping as inputs

    if not 0.0 <= args.fraction < 1.0:
        raise cli.UsageError(f"--fraction must be in [0, 1), got {args.fraction}")
    if not args.out.endswith(".keras"):
        raise cli.UsageError(f"--out must name a .keras file, got {args.out!r}")
    model = cli._load_keras_model(args.model)
    (x, y), _ = cli._load_data(args.dataset)
    try:
        x = inputs.shape_for(x, model.inputs[0].shape[1:], args.dataset)
    except ValueError as e:
        raise cli.UsageError(str(e)) from e
    return model, x, y


def _save(model, path, summary):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model.save(path)
    print(json.dumps({**summary, "params": model.count_params(), "out": path}))


def _cmd_prune(args):
    from tfdynhp.cli import main as cli
    from tfdynhp.methods import prune

    model, x, y = _prepare(args)
    try:
        report = prune(model, args.criterion, fraction=args.fraction,
                               data=(x[: args.examples], y[: args.examples]))
    except (ValueError, TypeError) as e:
        raise cli.UsageError(str(e)) from e
    _save(model, args.out, {"criterion": report.criterion, "units": report.units_after})
    return 0


def _cmd_specialize(args):
    from tfdynhp.cli import main as cli
    from tfdynhp.methods import specialize

    try:
        classes = [int(c) for c in args.classes.split(",") if c.strip()]
    except ValueError as e:
        raise cli.UsageError(f"--classes must be comma-separated integers, got "
                             f"{args.classes!r}") from e
    model, x, y = _prepare(args)
    try:
        small = specialize(model, classes, data=(x, y), criterion=args.criterion,
                                   fraction=args.fraction, epochs=args.epochs,
                                   score_examples=args.examples)
    except (ValueError, TypeError) as e:
        raise cli.UsageError(str(e)) from e
    _save(small, args.out, {"classes": classes, "criterion": args.criterion})
    return 0
