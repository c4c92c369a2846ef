"""`murmur COMMAND [options]`: one console script over the trainer, the device engine, the studio and the deploy tool.

Each command hands its arguments to the part that owns it (``murmur render …`` is ``python -m murmur.device render …``,
``murmur train …`` is ``python -m murmur.trainer train …``), so options, help and exit codes are theirs. Nothing heavy is
imported until a command runs: ``murmur --help`` needs neither numpy nor TensorFlow.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# command -> (part, one-line help). The part's runner gets [command, *options] (studio: only the options).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("trainer", "train on the bundled 30-s clip, render a preview WAV + picture (--out, default out/demo)"),
    "train": ("trainer", "train a bundle on your audio: murmur train DATA --out BUNDLE [--minutes 3]"),
    "render": ("device", "render a bundle offline to a WAV: --bundle DIR --seconds N --out FILE.wav"),
    "play": ("device", "live playback on this computer's sound card (needs PyAudio: the device extra)"),
    "resynth": ("device", "an audio file through STFT magnitudes and the vocoder alone (no model)"),
    "list-devices": ("device", "list audio output devices (needs PyAudio)"),
    "verify": ("device", "check a bundle and the code on this machine: load, step, render a second"),
    "keys": ("device", "turn the controls from the terminal while playing"),
    "serve": ("device", "the appliance itself: run as the systemd service with a config file (the Pi)"),
    "studio": ("studio", "the studio in the browser: recordings, train, listen with knobs, compare, deploy"),
    "deploy": ("deploy", "install/update Pis over SSH: murmur deploy HOST… --bundle DIR (auto-rollback)"),
    "rollback": ("deploy", "back to a Pi's previous healthy release"),
    "logs": ("deploy", "the service's journal on each Pi"),
    "status": ("deploy", "each Pi's health report: playing, level, bundle, clock, power"),
}

# top-level module a command may find missing -> the extra that installs it
EXTRA_OF_MODULE = {
    "tensorflow": "trainer", "keras": "trainer", "librosa": "trainer", "soundfile": "trainer", "matplotlib": "trainer",
    "scipy": "trainer", "aiohttp": "studio", "pyaudio": "device", "gpiozero": "device", "systemd": "device",
    "ai_edge_litert": "device", "numpy": "device",
}


def _run_trainer(argv: list[str]) -> int:
    from murmur.trainer.cli import main

    return main(argv)


def _run_device(argv: list[str]) -> int:
    from murmur.device.cli import main

    return main(argv)


def _run_studio(argv: list[str]) -> int:
    return importlib.import_module("murmur.studio.cli").main(argv[1:])


def _run_deploy(argv: list[str]) -> int:
    from murmur.deploy.tool import main

    return main(argv)


RUNNERS: dict[str, Callable[[list[str]], int]] = {
    "trainer": _run_trainer, "device": _run_device, "studio": _run_studio, "deploy": _run_deploy,
}


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("murmur")
    except PackageNotFoundError:
        return "0.1.0 (not installed: run from a checkout)"


def usage() -> str:
    lines = ["usage: murmur COMMAND [options]      (murmur COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:13s} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "Install: pip install \".[trainer,studio]\" (laptop), \".[device]\" (playback, the Pi); see README.md."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv and argv[0] == "--version":
        print(f"murmur {version()}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        if argv:
            print(f"murmur: unknown command {argv[0]!r}", file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    part = COMMANDS[argv[0]][0]
    try:
        return int(RUNNERS[part](argv) or 0)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == part:  # e.g. no studio/ in this checkout or install
            print(f"murmur {argv[0]}: the {part!r} package is not installed ({exc})", file=sys.stderr)
            return 1
        top = missing.split(".")[0]
        extra = "trainer" if part == "trainer" and top in EXTRA_OF_MODULE else EXTRA_OF_MODULE.get(top)
        if extra is None:
            raise
        print(f"murmur {argv[0]}: needs {top!r}, which is not installed; fix: "
              f"pip install \"murmur[{extra}]\" (from a checkout: pip install \".[{extra}]\")", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
