"""The `tfdynhp` command line: one module per command (`train`, `export`, `evaluate`, `report`,
`prune`, `specialize`), what they share in `tfdynhp.cli.common`.

```
tfdynhp train --dataset fashion-mnist --target "31744 params" --export pi,android,mcu --out runs/x
tfdynhp train --dataset fashion-mnist --arch lenet5 --mode hp --target "10% params" --out runs/cnn
tfdynhp train --model my.keras --data my.npz --target 40KB --out runs/mine
tfdynhp export runs/x/model_stripped.keras --to mcu --dataset fashion-mnist --out deploy
tfdynhp evaluate runs/x/export/pi/model.tflite --dataset fashion-mnist --runtime tflm
tfdynhp report runs/x
```

Bad input (unknown data set, unparsable budget or target, a `.npz` without the expected keys,
an output folder that cannot be written, an unknown export target, a budget or target the
model cannot meet, ...) ends with one line on stderr and exit code 2; `--debug` shows the
traceback instead. Any other failure is not the user's: it keeps its traceback (exit code 1).
"""

import os
import sys

from tfdynhp.cli import common, evaluate, export, prune, report, specialize, train
from tfdynhp.cli.common import EXIT_USAGE

COMMANDS = {
    "train": train,
    "export": export,
    "evaluate": evaluate,
    "report": report,
    "prune": prune,
    "specialize": specialize,
}


def build_parser():
    """The `argparse` parser of the `tfdynhp` command."""
    parser = common.Parser(
        prog="tfdynhp",
        description="Dynamic Hard Pruning for Keras 3: train under a memory budget, ship int8 "
        "TFLite.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=common.Parser)
    commands.required = True
    for command in COMMANDS.values():
        command.add_parser(commands)
    return parser


def main(argv=None):
    """Runs the `tfdynhp` command; returns the exit code (0, or 2 for bad input)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except common.UsageError as e:
        if args.debug:
            raise
        print(f"tfdynhp {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"tfdynhp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
