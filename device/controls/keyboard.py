"""Desktop stand-in for the knobs: keys in the terminal turn the same controls (``make play``, ``python -m murmur.device keys``).

Keys (one press = one step): f/v fidelity, q/a temperature, w/s jump, e/d position, t/g spread, +/- gain, h hold on/off,
r reseed, n/p next/previous bundle, ? help, Ctrl-D stops listening. The terminal is put in cbreak mode (keys
arrive without Enter, Ctrl-C still works) and restored on close.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import IO

from murmur.device.config_schema import read_file
from murmur.device.controls.base import Knobs
from murmur.device.controls.mapping import KnobMap, parse_knobs
from murmur.device.controls.values import Controls, ControlStore, parse_settings
from murmur.device.errors import ConfigError

# key -> (control, step) for continuous controls; other keys are in TOGGLES / ACTIONS
STEPS: dict[str, tuple[str, float]] = {
    "f": ("fidelity", +0.05), "v": ("fidelity", -0.05),
    "q": ("temperature", +0.05), "a": ("temperature", -0.05),
    "w": ("jump", +0.25), "s": ("jump", -0.25),
    "e": ("position", +0.05), "d": ("position", -0.05),
    "t": ("spread", +0.05), "g": ("spread", -0.05),
    "+": ("gain_db", +1.0), "=": ("gain_db", +1.0), "-": ("gain_db", -1.0),
}
TOGGLES = {"h": "hold"}
ACTIONS = {"r": "reseed", "n": "next_bundle", "p": "previous_bundle"}
QUIT_KEYS = ("\x04",)  # Ctrl-D (cbreak mode passes it through as a character)
HELP = ("keys: f/v fidelity  q/a temperature  w/s jump  e/d position  t/g spread  +/- gain  h hold  r reseed  "
        "n/p next/previous bundle  ? help  Ctrl-D stop")
LEARN_KEY = "l"  # with a MIDI controller (`play --midi-learn FILE`): l, then a control's key, then touch a knob/pad
LEARN_HELP = "MIDI learn: l, then the key of a control (e.g. q for temperature, h for hold, r for reseed), then turn " \
    "a knob or hit a pad on the controller"


def learn_target(key: str) -> str | None:
    """The control or action a key names, for MIDI learn ("q" and "a" both name temperature). Pure."""
    if key in STEPS:
        return STEPS[key][0]
    key = key.lower()
    return TOGGLES.get(key) or ACTIONS.get(key)


def apply_key(key: str, controls: Controls) -> tuple[dict[str, float | bool], str | None]:
    """What one key does: (control changes, action or None). Unknown keys do nothing. Pure."""
    key = key.lower() if key not in STEPS else key
    if key in STEPS:
        name, step = STEPS[key]
        return {name: getattr(controls, name) + step}, None
    if key in TOGGLES:
        name = TOGGLES[key]
        return {name: not getattr(controls, name)}, None
    if key in ACTIONS:
        return {}, ACTIONS[key]
    return {}, None


def describe(controls: Controls) -> str:
    """One status line with every control's current value."""
    return (f"fidelity {controls.fidelity:.2f}  temperature {controls.temperature:.2f}  jump {controls.jump:.2f}/s  position {controls.position:.2f}  "
            f"spread {controls.spread:.2f}  hold {'on' if controls.hold else 'off'}  gain {controls.gain_db:+.0f} dB")


class KeyboardKnobs(Knobs):
    """Reads keys from ``stream`` on a thread and writes into the store; echoes the values to ``out``."""

    backend = "keyboard"

    def __init__(self, store: ControlStore, stream: IO, out: IO,
                 learn: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.store, self.stream, self.out = store, stream, out
        self.learn = learn  # MIDI learn: called with the control or action chosen; returns what to show
        self._choosing = False  # "l" was pressed: the next key names what to learn
        self.done = threading.Event()  # set when the stream ends or close() is called
        self.keys_handled = 0
        self._stop = threading.Event()
        self._saved_tty = None
        self._fd = None
        try:
            self._fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # StringIO and friends: plain reads
            self._fd = None
        if self._fd is not None and os.isatty(self._fd):
            try:
                import termios
                import tty
            except ImportError:  # Windows: no termios; keys are read a line at a time (type them, then Enter)
                pass
            else:
                self._saved_tty = termios.tcgetattr(self._fd)
                tty.setcbreak(self._fd)
        self._line_end = "\r" if self._saved_tty is not None else "\n"
        self._print(HELP, end="\n")
        if learn is not None:
            self._print(LEARN_HELP, end="\n")
        self._print(describe(store.snapshot()))
        self._thread = threading.Thread(target=self._run, name="murmur-keys", daemon=True)
        self._thread.start()

    def _print(self, text: str, end: str | None = None) -> None:
        try:
            if end is None and self._line_end == "\r":
                self.out.write("\r" + text + "\x1b[K")
            else:
                self.out.write(text + (end or "\n"))
            self.out.flush()
        except (OSError, ValueError):  # the terminal went away: keep the values flowing anyway
            pass

    def _chunks(self):
        """Yield text as it arrives; stop at end of stream or close()."""
        while not self._stop.is_set():
            if self._fd is not None:
                ready, _, _ = select.select([self._fd], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self._fd, 64).decode("utf-8", "replace")
            else:
                data = self.stream.read(1)
            if not data:
                return
            yield data

    def _run(self) -> None:
        try:
            for chunk in self._chunks():
                for key in chunk:
                    if key in QUIT_KEYS:
                        return
                    self.handle_key(key)
        finally:
            self.done.set()

    def handle_key(self, key: str) -> None:
        """Apply one key to the store and echo the values (or the help)."""
        if key == "?":
            self._print(HELP, end="\n")
            return
        if self.learn is not None and (self._choosing or key == LEARN_KEY):
            if not self._choosing:
                self._choosing = True
                self._print("MIDI learn: press the key of the control to map (Esc: cancel)")
                return
            self._choosing = False
            target = learn_target(key)
            self._print(self.learn(target) if target else "MIDI learn: cancelled")
            return
        changes, action = apply_key(key, self.store.snapshot())
        if changes:
            self.store.update(**changes)
        if action:
            self.store.trigger(action)
        self.keys_handled += 1
        if changes or action:
            self._print(describe(self.store.snapshot()) + (f"  [{action}]" if action else ""))

    def values(self) -> dict:
        return {"backend": self.backend, "inputs": {"keys_handled": self.keys_handled}, "led": None, "problems": []}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        if self._saved_tty is not None and self._fd is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None
            self._print("", end="\n")
        self.done.set()


def start_keyboard(store: ControlStore, stream: IO | None = None, *, out: IO | None = None,
                   learn: Callable[[str], str] | None = None) -> KeyboardKnobs:
    """The desktop stand-in: keys from ``stream`` (default stdin) turn the controls in ``store``; with ``learn``,
    the key l starts MIDI learn (``learn(control or action)`` arms it and says what to do)."""
    return KeyboardKnobs(store, sys.stdin if stream is None else stream, sys.stderr if out is None else out, learn)


def load_panel(path: str) -> KnobMap:
    """The ``[knobs]``/``[led]`` tables of a config file, switched on even if ``enabled = false`` (a wiring check)."""
    data = read_file(path)  # the config's one reader: unreadable, not TOML or unknown tables -> ConfigError
    knob_map = parse_knobs(data.get("knobs", {}), data.get("led"), path)
    return dataclasses.replace(knob_map, enabled=True)


def cli(argv: list[str]) -> int:
    """``python -m murmur.device keys [--set "name=value …"] [--config FILE]``: turn the controls, watch the values."""
    parser = argparse.ArgumentParser(
        prog="python -m murmur.device keys", description=__doc__.splitlines()[0],
        epilog="On the Pi, --config /etc/murmur/murmur.toml also attaches the wired knobs, buttons and LED and "
               "prints every change: a wiring check. Stop the service first (sudo systemctl stop murmur): it holds "
               "the pins.")
    parser.add_argument("--set", default="", help='starting values, e.g. "temperature=0.5 jump=1"')
    parser.add_argument("--config", help="also attach the [knobs]/[led] panel of this config file (GPIO)")
    args = parser.parse_args(argv[1:])
    try:
        store = ControlStore(Controls().replace(**parse_settings(args.set)))
        knob_map = load_panel(args.config) if args.config else None
    except ConfigError as exc:
        print(f"python -m murmur.device keys: {exc}", file=sys.stderr)
        return 2
    panel = None
    if knob_map is not None:
        from murmur.device.controls.gpio import start_knobs

        panel = start_knobs(knob_map, store, on_error=lambda message: print(f"knobs: {message}", file=sys.stderr))
        for problem in panel.values()["problems"]:
            print(f"knobs: {problem}", file=sys.stderr)
        panel.set_status("playing")
    print("no sound here; `make play BUNDLE=<dir>` plays with the same keys", file=sys.stderr)
    keys = start_keyboard(store)
    try:
        seen = store.version
        while not keys.done.wait(0.05):  # a display refresh, 20 per second
            events = store.take_events()
            if store.version != seen or events:
                seen = store.version
                keys._print(describe(store.snapshot()) + "".join(f"  [{event}]" for event in events))
        if panel is not None:
            panel.wait_polls(3)
    except KeyboardInterrupt:
        pass
    finally:
        keys.close()
        if panel is not None:
            print(describe(store.snapshot()), file=sys.stderr)
            print(f"inputs: {panel.values()['inputs']}", file=sys.stderr)
            panel.close()
    return 0
