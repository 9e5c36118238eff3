"""`tfdynhp specialize`: cut a saved classifier down to some of its classes (prune by a
criterion on those classes' data, then fine-tune)."""

from tfdynhp.cli import common, prune


def add_parser(commands):
    """Adds `specialize` to the `tfdynhp` sub-command parsers."""
    parser = commands.add_parser(
        "specialize",
        help="cut a saved classifier down to some of its classes (prune and fine-tune)",
        description="Keep the outputs of --classes (in that order), prune by a criterion on "
        "those classes' training data and fine-tune.",
    )
    prune.add_common_arguments(parser)
    parser.add_argument("--classes", required=True,
                        help="comma-separated class indices to keep, e.g. 7,9")
    parser.add_argument("--epochs", type=int, default=2,
                        help="fine-tuning epochs (default: %(default)s)")
    return parser


def run(args):
    from tfdynhp.methods import specialize

    try:
        classes = [int(c) for c in args.classes.split(",") if c.strip()]
    except ValueError as e:
        raise common.UsageError(f"--classes must be comma-separated integers, got "
                                f"{args.classes!r}") from e
    model, x, y = prune.prepare(args)
    try:
        small = specialize(model, classes, data=(x, y), criterion=args.criterion,
                           fraction=args.fraction, epochs=args.epochs,
                           score_examples=args.examples)
    except (ValueError, TypeError) as e:
        raise common.UsageError(str(e)) from e
    prune.save(small, args.out, {"classes": classes, "criterion": args.criterion})
    return 0
