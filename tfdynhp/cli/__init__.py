"""The `tfdynhp` command."""

from tfdynhp.cli.main import main

__all__ = ["main"]
