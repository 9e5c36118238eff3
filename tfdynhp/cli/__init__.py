"""The `tfdynhp` command."""

from tfdynhp.cli.common import EXIT_USAGE, UsageError
from tfdynhp.cli.main import build_parser, main

__all__ = ["EXIT_USAGE", "UsageError", "build_parser", "main"]
