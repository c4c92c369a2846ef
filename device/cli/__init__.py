"""`python -m murmur.device COMMAND …`: thin dispatcher; each command lives in its own module with ``cli(argv) -> int``."""

from __future__ import annotations

import importlib
import sys

# command -> (module with `cli(argv: list[str]) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "play": ("murmur.device.cli.engine", "live playback of a bundle on a sound card (--device NAME, --list-devices)"),
    "render": ("murmur.device.cli.engine", "render a bundle offline to a WAV file, as fast as the CPU allows"),
    "list-devices": ("murmur.device.cli.engine", "list audio output devices"),
    "resynth": ("murmur.device.cli.resynth", "an audio file through STFT magnitudes and the vocoder alone (no model)"),
    "serve": ("murmur.device.cli.serve", "the appliance: run as the systemd service with a config file"),
    "status": ("murmur.device.appliance.health", "health report of the running service (text or --json)"),
    "verify": ("murmur.device.cli.verify", "check a bundle and the code on this machine: load, step, render a second"),
    "midi": ("murmur.device.controls.midi", "list MIDI inputs; --listen prints what a controller sends, as [midi] tables"),
    "keys": ("murmur.device.controls.keyboard", "turn the controls from the terminal while playing (desktop stand-in)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}", file=sys.stderr)
        print("usage: python -m murmur.device COMMAND [options]\n\ncommands:", file=sys.stderr)
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:13s} {help_text}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.cli(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
