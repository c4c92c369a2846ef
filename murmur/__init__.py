"""The `murmur` console script (``pip install ".[trainer,studio]"``): one command for what the Makefile does.

See murmur/cli.py; the packages it dispatches to (trainer, device, studio, deploy) keep their own ``python -m``
entry points, which the Makefile uses.
"""
