"""`tfdynhp report`: the plots and summary of a training run's folder, remade."""

import os

from tfdynhp.cli import common


def add_parser(commands):
    """Adds `report` to the `tfdynhp` sub-command parsers."""
    parser = commands.add_parser(
        "report",
        help="remake the plots and summary of an output folder",
        description="Redraw units/batch/memory/test-error plots and summary.md of a folder "
        "written by 'tfdynhp train', from its history.csv and summary.json.",
    )
    parser.add_argument("run_dir", help="a folder written by 'tfdynhp train --out'")
    return parser


def run(args):
    from tfdynhp.training import reports

    if not os.path.isdir(args.run_dir):
        raise common.UsageError(f"{args.run_dir!r} is not a folder")
    try:
        written = reports.regenerate(args.run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise common.UsageError(str(e)) from e
    for path in written:
        print(path)
    return 0
