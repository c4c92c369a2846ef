"""Murmur: learn an artist's sound on the laptop, play it forever on a Raspberry Pi.

One import name, four parts (in the repository they are the top-level folders ``device/``, ``trainer/``,
``deploy/`` and ``studio/``, linked here; an installed wheel holds them inside this package):

- ``murmur.device``: the Pi side — the bundle contract, generation, playback, controls, the appliance (service);
  numpy + the TFLite runtime, never TensorFlow, Keras or librosa;
- ``murmur.trainer``: the laptop side — audio → frames → LSTM → verified TFLite bundle (imports ``device``);
- ``murmur.deploy``: ``make deploy/rollback/logs/status`` over ssh, and the files installed on the Pi;
- ``murmur.studio``: the artist's local web page over the three.

Imports go one way: ``trainer``, ``deploy`` and ``studio`` may import ``device``; ``device`` imports none of them.
``murmur.cli`` is the ``murmur`` console script.
"""

import os
from pathlib import Path

# numpy's OpenBLAS spreads every matrix-vector product over all the cores it finds. Murmur's are small and per frame
# (a cut scores every bank frame: 17 000 x 32); with the other cores busy, a thread can wait for one the scheduler has
# not run: 8 ms instead of 0.05 ms on one thread (BENCHMARKS.md "Engine stages"). One thread, unless the environment
# says otherwise; it takes effect only if numpy is not loaded yet, which holds for every entry point (`python -m
# murmur.…`, `murmur`).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

PACKAGE_DIR = Path(__file__).parent  # holds device/, trainer/, deploy/, studio/ (links to the folders in a checkout)
REPO_ROOT = PACKAGE_DIR.resolve().parent  # what holds murmur/: the checkout (Makefile, .venv/, out/) or a Pi
# release (/opt/murmur/releases/<id>), or site-packages in an install
