"""`tfdynhp train ARGS...` as one worker of a multi-worker run (TF_CONFIG set by the caller)."""

import sys

from tfdynhp import cli

sys.exit(cli.main(sys.argv[1:]))
