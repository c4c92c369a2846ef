"""`python -m murmur.device COMMAND …` (``murmur play|render|…`` once installed): see ``murmur.device.cli``."""

import sys

from murmur.device.cli import main

if __name__ == "__main__":
    sys.exit(main())
