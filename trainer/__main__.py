"""`python -m murmur.trainer train DATA --out OUT …` and `python -m murmur.trainer demo --out DIR` (see trainer/cli.py)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
