"""`python -m tfdynhp.cli`."""

from tfdynhp.cli.main import main

if __name__ == "__main__":
    import sys

    sys.exit(main())
