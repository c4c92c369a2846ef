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

from pathlib import Path

PACKAGE_DIR = Path(__file__).parent  # holds device/, trainer/, deploy/, studio/ (links to the folders in a checkout)
REPO_ROOT = PACKAGE_DIR.resolve().parent  # what holds murmur/: the checkout (Makefile, .venv/, out/) or a Pi
# release (/opt/murmur/releases/<id>), or site-packages in an install
