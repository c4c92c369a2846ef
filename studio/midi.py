"""The studio's USB MIDI controller: the Pi's own MIDI back-end (``murmur.device.controls.midi``) on the laptop.

One ``MidiKnobs`` per studio, over the same seam as on the Pi (mido with python-rtmidi over the ALSA sequencer; the
tests pass the shipped fake, ``murmur.device.testing.midi.FakeMidiPorts``), reading the ``[midi]`` table of the
project's ``murmur.toml``, with the same hot-plug watcher. It turns a *mirror* ``ControlStore``: the page's own knob
turns are put into it without notice (``page_set``), so soft takeover compares a MIDI knob with what the page
shows; a change made by MIDI is heard by the store's listener and passed on, on the event loop, to every live
engine (``subscribe``) and to the page (``wait``/``state``: the knobs it moved, by version).

Learn: ``learn(target)`` arms the back-end's own learn mode; the next knob or pad touched is mapped at once and
written by the device's ``write_learned`` into the project's ``murmur.toml`` (created the first time as a copy of
the Pi's commented config, ``deploy/murmur.toml``, with ``[midi] enabled = true``), checked by the Pi's config
reader before it replaces the file. That file is a whole Pi config: an inventory host with ``config = "<it>"``
gets it with every ``make deploy`` (or the studio's Deploy) as its ``/etc/murmur/murmur.toml``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from murmur.device.config_schema import read_file
from murmur.device.controls.midi import (
    CcSpec,
    MidiEvent,
    MidiKnobs,
    MidiPorts,
    MidiSettings,
    NoteSpec,
    parse_midi,
    start_midi,
    write_learned,
)
from murmur.device.controls.values import BOOL_CONTROLS, CONTROL_RANGES, GENERATOR_EVENTS, ControlStore
from murmur.device.errors import ConfigError

from .errors import StudioError

log = logging.getLogger(__name__)
CONFIG_NAME = "murmur.toml"  # in the project folder
PI_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "murmur.toml"  # the Pi's commented config
STATUS_EVERY_S = 0.25  # how often the port's state is compared with what the page was last told (hot-plug)
HEADER = """\
# Murmur config written by the studio: the Pi's own config file (deploy/murmur.toml, commented), with the MIDI
# controller's knobs and pads you mapped in the studio's Listen live (Learn) at the end, as [midi.<control>] tables.
# To give it to your Pis: make deploy PI=<your Pi> CONFIG={path}  (or, in the deploy inventory
# deploy/inventory.toml, set  config = "{path}"  for them: every deploy, and the studio's Send to the gallery,
# then installs it as their /etc/murmur/murmur.toml).
# Or copy the [midi] tables below into /etc/murmur/murmur.toml on a Pi and run: sudo systemctl reload murmur
"""
MINIMAL = '[playback]\nbundle = "/opt/murmur/current/bundle"\n\n[midi]\nenabled = true\n'
TARGETS = (*CONTROL_RANGES, *BOOL_CONTROLS, *GENERATOR_EVENTS)  # what the page can learn: its knobs and its button


def port_words(name: str | None) -> str | None:
    """An ALSA port name as an artist reads it: "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0" -> "nanoKONTROL2"."""
    if not name:
        return None
    name = re.sub(r"\s+\d+:\d+$", "", name)
    client, _, port = name.partition(":")
    return client if port and port.startswith(client) else name


def first_config(path: Path) -> str:
    """The text of a new project config: the Pi's commented config with MIDI switched on, under a header saying
    what the file is and how to deploy it (the bare minimum if the Pi's config is not installed)."""
    try:
        text = PI_CONFIG.read_text(encoding="utf-8")
    except OSError:
        text = MINIMAL
    if re.search(r"^\[midi\]\s*$", text, re.M):  # its [midi] table's enabled = false -> true, nothing else
        head, midi = re.split(r"(?m)^(?=\[midi\]\s*$)", text, maxsplit=1)
        table, sep, rest = midi.partition("\n[")
        table = re.sub(r"(?m)^enabled\s*=\s*false\b", "enabled = true", table)
        text = head + table + sep + rest
    return HEADER.format(path=path) + "\n" + text


class StudioMidi:
    """The controller, the learn mode and the mirror store for one studio; ``start(loop)`` once the server runs,
    ``close()`` at its end."""

    def __init__(self, config: Path, *, ports: MidiPorts | None = None, watch: bool = True) -> None:
        self.config = config
        self.problem: str | None = None  # the config file's own, which stops learning until it is fixed
        settings = MidiSettings()
        if config.exists():
            try:
                settings = parse_midi(read_file(config).get("midi", {}), str(config))
            except (ConfigError, OSError) as exc:
                self.problem = (f"{exc}. Learning is off until that is fixed (or the file is moved away); the studio "
                                "reads the file when it starts")
        self.settings = dataclasses.replace(settings, enabled=True)  # the studio always listens for a controller
        specs: list[CcSpec | NoteSpec] = [*settings.ccs, *settings.notes]
        self.mappings: dict[str, dict] = {spec.name: self._words(spec, None) for spec in specs}
        self.store = ControlStore()
        self.learning: str | None = None
        self.last: dict | None = None  # the last learn's outcome: {"target", "mapping"} or {"target", "error"}
        self.version = 0
        self.moved: dict[str, tuple[int, float | bool]] = {}  # control -> (version, value): what MIDI last moved
        self._subscribers: set[Callable[[dict], None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._closing = False  # the server is stopping: long polls answer at once
        self._told: tuple | None = None
        self._watcher: asyncio.Task | None = None
        self._ports, self._watch = ports, watch
        self.knobs: MidiKnobs | None = None

    # -- life ------------------------------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.knobs = start_midi(self.settings, self.store, ports=self._ports, watch=self._watch)
        self.store.add_listener(self._heard)
        self._told = self._port_state()
        self._watcher = loop.create_task(self._watch_port())

    def wake(self) -> None:
        """The server is stopping: every pending long poll answers now, and any later one at once (a long poll left
        waiting would hold the server's exit up to its 25 s)."""
        self._closing = True
        self._changed.set()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.knobs is not None:
            await asyncio.to_thread(self.knobs.close)

    # -- what the page shows ---------------------------------------------------------------------------------------
    def _port_state(self) -> tuple:
        if self.knobs is None:
            return (None, "waiting", ())
        report = self.knobs.reports()["midi"]
        return (report["port"], report["state"], tuple(report["problems"]))

    async def _watch_port(self) -> None:
        """Hot-plug, as the page sees it: the back-end's watcher finds and loses the controller; this tells the
        page when what it would show changed."""
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            now = self._port_state()
            if now != self._told:
                self._told = now
                self._bump()

    def state(self, after: int = -1) -> dict:
        port, status, problems = self._port_state()
        return {
            "version": self.version,
            "port": port_words(port), "port_name": port, "connected": status == "connected" and port is not None,
            "wanted": self.settings.device or None, "problems": list(problems),
            "config": str(self.config), "config_exists": self.config.exists(), "config_problem": self.problem,
            "mappings": sorted(self.mappings.values(), key=lambda m: (TARGETS.index(m["control"])
                               if m["control"] in TARGETS else len(TARGETS), m["number"])),
            "learning": self.learning, "last": self.last,
            "moved": {name: value for name, (version, value) in self.moved.items() if version > after},
        }

    async def wait(self, after: int, timeout_s: float) -> None:
        """Return once ``version`` is past ``after``, or after ``timeout_s``."""
        if self.version > after or self._closing:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def _bump(self) -> None:  # on the loop
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _post(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the event loop (called from the MIDI thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing: the studio stops
                loop.call_soon_threadsafe(fn, *args)

    # -- MIDI -> the live engines and the page ---------------------------------------------------------------------
    def subscribe(self, send: Callable[[dict], None]) -> Callable[[], None]:
        """``send(knob message)`` for every change a MIDI knob or pad makes, until the returned function is called."""
        self._subscribers.add(send)
        return lambda: self._subscribers.discard(send)

    def _heard(self, values: Mapping[str, float | bool], event: str | None) -> None:
        """The store's listener (the MIDI thread, under the store's lock): a change MIDI made."""
        self._post(self._publish, dict(values), event)

    def _publish(self, values: dict, event: str | None) -> None:
        message: dict = {"set": values} if values else {"trigger": event}
        for send in list(self._subscribers):
            try:
                send(message)
            except (StudioError, OSError, RuntimeError) as exc:  # a worker going away: its page stops it
                log.debug("MIDI: a live engine did not take %s: %s", message, exc)
        self._bump()
        for name, value in values.items():
            self.moved[name] = (self.version, value)

    def page_set(self, changes: dict) -> None:
        """The page's own knob turns (checked values): into the mirror, heard by no one, so that soft takeover
        compares a MIDI knob with what the page shows."""
        if changes:
            self.store.apply(changes, notify=False)

    # -- learn -----------------------------------------------------------------------------------------------------
    def learn(self, target: str | None) -> dict:
        """Map the next knob or pad touched to ``target`` (None: stop waiting); StudioError when it cannot be."""
        if target is None:
            self._cancel()
            return self.state()
        if target not in TARGETS:
            raise StudioError(f"cannot learn {target!r}: the page's controls are {', '.join(TARGETS)}")
        if self.problem:
            raise StudioError(self.problem)
        if self.knobs is None or self.knobs.port_name is None:
            raise StudioError("no MIDI controller is plugged in: plug a USB MIDI controller into this computer (any "
                              "class-compliant one: knobs, faders, pads), wait a second for it to show here, then "
                              "press Learn again")
        self.learning, self.last = target, None
        self.knobs.learn(target, lambda spec, event: self._learned(target, spec, event))
        self._bump()
        return self.state()

    def _cancel(self) -> None:
        if self.knobs is not None and self.learning is not None:
            self.knobs.cancel_learn()
        self.learning = None
        self._bump()

    def _learned(self, target: str, spec: CcSpec | NoteSpec | None, event: MidiEvent) -> None:
        """The back-end's learn callback (the MIDI thread): write what was mapped, tell the loop."""
        touched = f"{'knob CC' if event.kind == 'control_change' else 'pad (note)'} {event.number}"
        if spec is None:
            need = "a pad (a note)" if target in GENERATOR_EVENTS else "a knob or fader (a CC)"
            self._post(self._outcome, target, None, f"{touched} cannot drive {target}: it needs {need}. Press Learn "
                       "and touch one of those")
            return
        mapping = self._words(spec, self.knobs.port_name if self.knobs is not None else None)
        try:
            if not self.config.exists():
                self.config.write_text(first_config(self.config), encoding="utf-8")
            write_learned(self.config, spec)
        except ConfigError as exc:  # the config reader's own words: the file, the key, the value, the fix
            self._post(self._outcome, target, mapping, f"{mapping['words']} works now, but was not written: {exc}")
            return
        except OSError as exc:
            self._post(self._outcome, target, mapping, f"{mapping['words']} works now, but was not written into "
                       f"{self.config}: {exc.strerror or exc}; make that folder writable (or start the studio with "
                       "--project DIR somewhere it can write), then Learn again")
            return
        self._post(self._outcome, target, mapping, None)

    def _outcome(self, target: str, mapping: dict | None, error: str | None) -> None:
        if mapping is not None:  # the back-end maps it at once, written or not: the page says what is in force
            self.mappings = {name: m for name, m in self.mappings.items()
                             if name != mapping["target"] and (m["kind"], m["number"]) != (mapping["kind"], mapping["number"])}
            self.mappings[mapping["target"]] = mapping
        if self.learning == target:
            self.learning = None
        self.last = {"target": target, "mapping": mapping, "error": error}
        self._bump()

    @staticmethod
    def _words(spec: CcSpec | NoteSpec, port: str | None) -> dict:
        """One mapping for the page: the config's table name (``target``), the control or action it drives, the
        input (a CC or a note and its number), the range, and the controller it was learnt on (None: from the
        file, any controller)."""
        cc = isinstance(spec, CcSpec)
        control = spec.control if isinstance(spec, CcSpec) else spec.press
        words = f"{control} ← {'CC' if cc else 'note'} {spec.number}" + (f" on {port_words(port)}" if port else "")
        return {"target": spec.name, "control": control, "kind": "cc" if cc else "note", "number": spec.number,
                "range": [spec.low, spec.high] if isinstance(spec, CcSpec) and control not in BOOL_CONTROLS else None,
                "source": port_words(port), "words": words}
