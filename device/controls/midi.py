"""MIDI back-end: a USB MIDI controller's knobs, faders and pads turn the same controls as the GPIO knobs.

The config's ``[midi]`` table maps control changes (CC) and notes to controls and actions: a CC's 0 … 127 is a
knob position, shaped like a pot's (its ``range`` and ``curve``, ``shaping.apply_curve``) and, with ``pickup``,
taken over softly (``shaping.Pickup``): a knob whose position disagrees with the control's value (set by another
knob, OSC, the room of Pis, a reload) does nothing until it passes that value. A note (a pad) fires an action or
toggles hold. Values go into the ``ControlStore`` as the GPIO knobs' do.

The MIDI system is behind a typed seam, ``MidiPorts`` (list the input ports, open one with a callback): the real
one is ``MidoPorts`` (mido over python-rtmidi over the ALSA sequencer; a controller's messages arrive on rtmidi's
own thread), the shipped fake ``murmur.device.testing.midi.FakeMidiPorts``. Hot-plug: one thread
(``murmur-midi``) looks at the port list every ``rescan_s``; a controller that disappears is closed and waited
for, one that appears is opened, one unplugged and plugged in again between two looks (listed under its old name,
its connection gone: ``MidiPorts.still_connected``) is opened again; each is logged once. Neither touches the
audio thread, so the sound never stops.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from murmur.device.config_schema import MIDI, Values, read_table
from murmur.device.controls.base import Knobs
from murmur.device.controls.mapping import knob_range
from murmur.device.controls.shaping import Pickup, apply_curve, curve_position
from murmur.device.controls.values import ACTION_GAP_S, BOOL_CONTROLS, CONTROL_RANGES, EVENTS, ControlStore

log = logging.getLogger("murmur.knobs")

THROUGH = "Midi Through"  # ALSA's own loop-back port: never a controller
LIST_TRIES = 3  # reads of the port list before the MIDI system counts as unreachable (a port may leave meanwhile)
ON_FROM = 64  # a CC at or above this turns an on/off control on (the sustain pedal's convention)


class MidiEvent(NamedTuple):
    """One message from a controller: ``kind`` "control_change", "note_on" or "note_off"; ``channel`` 1 … 16;
    ``number`` the controller or note number; ``value`` the CC value or velocity, 0 … 127."""

    kind: str
    channel: int
    number: int
    value: int


MidiCallback = Callable[[MidiEvent], None]


@runtime_checkable
class MidiInput(Protocol):
    """An open input port: its name, and close()."""

    name: str

    def close(self) -> None: ...


@runtime_checkable
class MidiPorts(Protocol):
    """The MIDI system: the names of the input ports now, a port opened with a callback for each message (called
    from the MIDI system's own thread), and whether an open port still hears its device. The first two raise
    OSError when the system cannot be reached."""

    def input_names(self) -> list[str]: ...

    def open_input(self, name: str, callback: MidiCallback) -> MidiInput: ...

    def still_connected(self, port: MidiInput) -> bool:
        """False when the open port's connection to its device is gone although a port of that name is listed:
        the controller was unplugged and plugged in again between two looks (its new port has the old one's name
        and address, but the connection to the old one died with it). True when it holds, or when it cannot tell."""
        ...


class MidoPorts:
    """mido with python-rtmidi over the ALSA sequencer (``/dev/snd/seq``; rtmidi's JACK API is not used). alsa-lib's
    own complaints (no sequencer here, a port gone) are kept out of the journal (``sinks.quiet_native_probing``)."""

    def __init__(self) -> None:
        import mido

        from murmur.device.playback.sinks import quiet_native_probing

        quiet_native_probing()
        self._mido = mido
        # ALSA only: left to choose, rtmidi may try JACK first (its wheel carries its own libjack, whose "cannot
        # connect to server" lines would reach the journal at every rescan)
        self._backend = mido.Backend("mido.backends.rtmidi/LINUX_ALSA", load=True)

    def input_names(self) -> list[str]:
        failure: Exception | None = None
        for _ in range(LIST_TRIES):
            try:
                return list(self._backend.get_input_names())
            except Exception as exc:  # rtmidi raises SystemError/RuntimeError when the sequencer cannot be opened
                # ... and when a port leaves while the list is read: rtmidi counts the ports, then asks each for its
                # name, and fails the whole list on the one gone meanwhile (an unplug at that moment, seen in the
                # booted guest: "MidiInAlsa::getPortName: error looking for port name!"). Read it again.
                failure = exc
        raise OSError(f"the ALSA sequencer cannot be opened ({failure}); is snd-seq loaded and /dev/snd/seq "
                      "there?") from failure

    def open_input(self, name: str, callback: MidiCallback) -> MidiInput:
        def convert(message) -> None:
            if message.type == "control_change":
                callback(MidiEvent("control_change", message.channel + 1, message.control, message.value))
            elif message.type in ("note_on", "note_off"):
                callback(MidiEvent(message.type, message.channel + 1, message.note, message.velocity))

        try:
            port = self._backend.open_input(name, callback=convert)
        except Exception as exc:
            raise OSError(f"cannot open MIDI input {name!r}: {exc}") from exc
        return port  # mido's port has .name and .close()

    def still_connected(self, port: MidiInput) -> bool:
        """Whether the device's port (its address, the "client:port" that ends an ALSA port name) still sends to a
        subscriber, by the sequencer's own table (/proc/asound/seq/clients; readable under the unit's hardening).
        A port deleted by an unplug takes its subscriptions with it, and the port made at the replug starts with
        none: rtmidi does not say so (its handler drops the unsubscribe event), so without this look a replug
        faster than ``rescan_s`` left the service deaf to the controller until the next unplug (seen with a USB
        gadget in the booted guest, tests/system/test_system_midi.py)."""
        return seq_port_has_subscribers(port.name, SEQ_CLIENTS)


SEQ_CLIENTS = Path("/proc/asound/seq/clients")


def seq_port_has_subscribers(name: str, table: Path) -> bool:
    """Whether the ALSA sequencer port at the end of ``name`` ("… 24:0") has a subscriber ("Connecting To:") in
    ``table`` (the text of /proc/asound/seq/clients); True when that cannot be told (no address in the name, the
    table unreadable, the port not in it: the port list is the authority then)."""
    address = re.search(r"(\d+):(\d+)$", name)
    try:
        text = table.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True
    if address is None:
        return True
    client, port = (int(n) for n in address.groups())
    current_client = current_port = None
    seen = False
    for line in text.splitlines():
        if (m := re.match(r"Client\s+(\d+)\s*:", line)) is not None:
            current_client, current_port = int(m.group(1)), None
        elif (m := re.match(r"\s+Port\s+(\d+)\s*:", line)) is not None:
            current_port = int(m.group(1))
            seen = seen or (current_client, current_port) == (client, port)
        elif (current_client, current_port) == (client, port) and "Connecting To:" in line:
            return True
    return not seen


@dataclass(frozen=True, slots=True)
class CcSpec:
    """A knob or fader (controller ``number``) turning ``control`` from ``low`` (at 0) to ``high`` (at 127)."""

    name: str
    number: int
    control: str
    low: float = 0.0
    high: float = 1.0
    curve: str = "linear"


@dataclass(frozen=True, slots=True)
class NoteSpec:
    """A pad or key (note ``number``): ``press`` is an action or an on/off control it toggles."""

    name: str
    number: int
    press: str


@dataclass(frozen=True, slots=True)
class MidiSettings:
    """The validated ``[midi]`` table."""

    enabled: bool = MIDI.keys["enabled"].default
    device: str = MIDI.keys["device"].default
    channel: int = MIDI.keys["channel"].default
    pickup: bool = MIDI.keys["pickup"].default
    rescan_s: float = MIDI.keys["rescan_s"].default
    ccs: tuple[CcSpec, ...] = ()
    notes: tuple[NoteSpec, ...] = ()


def _parse_cc(name: str, t: Values) -> CcSpec:
    control = t["control"]
    if control in BOOL_CONTROLS:
        if t.given("range") or t.given("curve"):
            raise t.error("range" if t.given("range") else "curve", f"{control} is on/off (on from CC {ON_FROM} "
                          "up): it takes no range or curve")
        return CcSpec(name=name, number=t["number"], control=control)
    low, high = knob_range(t, control)
    return CcSpec(name=name, number=t["number"], control=control, low=low, high=high, curve=t["curve"])


def parse_midi(table: dict | None, where: str) -> MidiSettings:
    """The ``[midi]`` table and its ``[midi.<name>]`` inputs -> MidiSettings. Raises ConfigError naming the file,
    the key, the value and the fix; a controller number used twice is refused."""
    values = read_table(MIDI, dict(table or {}), where)
    ccs, notes = [], []
    for name, kind, item in values.items:
        if kind == "cc":
            ccs.append(_parse_cc(name, item))
        else:
            notes.append(NoteSpec(name=name, number=item["number"], press=item["press"]))
    for kind, specs in (("cc", ccs), ("note", notes)):
        seen: dict[int, str] = {}
        for spec in specs:
            if spec.number in seen:
                raise values.error("enabled", f"[midi.{spec.name}] and [midi.{seen[spec.number]}] both take {kind} "
                                   f"{spec.number}; give each its own number")
            seen[spec.number] = spec.name
    return MidiSettings(enabled=values["enabled"], device=values["device"], channel=values["channel"],
                        pickup=values["pickup"], rescan_s=values["rescan_s"], ccs=tuple(ccs), notes=tuple(notes))


class _Knob:
    """A CC input's state: its pickup and the value it last set (to notice a change made elsewhere)."""

    def __init__(self, spec: CcSpec) -> None:
        self.spec = spec
        self.pickup = Pickup()
        self.set_value: float | bool | None = None
        self.raw: int | None = None


class MidiKnobs(Knobs):
    """The controller's inputs and the hot-plug watcher. Build with :func:`start_midi`; ``close()`` stops both."""

    backend = "midi"

    def __init__(self, settings: MidiSettings, store: ControlStore, ports: MidiPorts) -> None:
        super().__init__()
        self.settings, self.store, self.ports = settings, store, ports
        self._ccs = {spec.number: _Knob(spec) for spec in settings.ccs}
        self._notes = {spec.number: spec for spec in settings.notes}
        self._port: MidiInput | None = None
        self._lock = threading.Lock()  # the port: opened and closed by the watcher, read by the status
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self.messages = self.applied = self.unmapped = self.waiting_pickup = 0
        self.connects = self.disconnects = self.actions_dropped = 0
        self._last_action: dict[str, float] = {}
        self.state = "waiting"
        self._said: str | None = None  # the last thing logged about the port, so each change is logged once
        self._problems: list[str] = []
        self._learning: tuple[str, Callable[[CcSpec | NoteSpec | None, MidiEvent], None]] | None = None

    # ── the port: found, lost, found again ─────────────────────────────────────────────────────────────────────
    def _wanted(self, names: list[str]) -> str | None:
        """The port to open: the first named like ``device``; with no name, the first that is not ALSA's loop-back
        or a Murmur program's own. A named controller is matched by its name alone, so a controller whose name says
        "Murmur" is found when named (it was skipped before: seen with a USB gadget in the booted guest)."""
        candidates = [n for n in names if not n.startswith(THROUGH)]
        if self.settings.device:
            return next((n for n in candidates if self.settings.device.lower() in n.lower()), None)
        return next((n for n in candidates if "murmur" not in n.lower()), None)

    def rescan(self) -> None:
        """Look at the port list once: close a port that is gone, open the wanted one that appeared. The watcher
        thread calls it every ``rescan_s``; tests call it directly."""
        try:
            names = self.ports.input_names()
        except OSError as exc:
            self._say(f"MIDI: {exc}; looking again every {self.settings.rescan_s:g} s", warning=True)
            with self._lock:
                lost = self._port is not None
            self._drop()
            if lost:  # the controller is lost with the MIDI system: "found again" when it returns
                self.disconnects += 1
            return
        with self._lock:
            port = self._port
        if port is not None and port.name in names and self.ports.still_connected(port):
            return
        if port is not None:
            self._drop()
            self.disconnects += 1
            self._say(f"MIDI: {port.name!r} is gone (unplugged?); the sound goes on, waiting for it", warning=True)
        name = self._wanted(names)
        if name is None:
            if port is None:
                wanted = f"a port named like {self.settings.device!r}" if self.settings.device else "a controller"
                self._say(f"MIDI: waiting for {wanted} (found: {', '.join(names) or 'no MIDI input'})")
            return
        try:
            opened = self.ports.open_input(name, self._on_event)
        except OSError as exc:
            self._say(f"MIDI: {exc}; trying again", warning=True)
            return
        for knob in self._ccs.values():  # the controller's knobs may sit anywhere now: pick up again
            knob.pickup = Pickup()
            knob.set_value = None
        with self._lock:
            self._port = opened
        self.connects += 1
        self.state = "connected"
        self._say(f"MIDI: {name!r} found" + (" again" if self.disconnects else "") + "; its knobs turn the controls")
        self._notify()

    def _drop(self) -> None:
        with self._lock:
            port, self._port = self._port, None
        self.state = "waiting"
        if port is not None:
            try:
                port.close()
            except Exception:  # a port whose device is gone may fail to close; it is gone anyway
                log.debug("MIDI: closing %r failed", port.name, exc_info=True)
        self._notify()

    def _say(self, message: str, *, warning: bool = False) -> None:
        if message == self._said:
            return
        self._said = message
        (log.warning if warning else log.info)("%s", message)
        if warning:
            self._problems = [message]
        elif self._problems and "found" in message:
            self._problems = []

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.rescan()
            except Exception as exc:  # never let the watcher die: the controller could not come back
                self._say(f"MIDI: looking for the controller failed: {type(exc).__name__}: {exc}", warning=True)
            self._stop.wait(self.settings.rescan_s)

    # ── messages (the MIDI system's thread) ────────────────────────────────────────────────────────────────────
    def _on_event(self, event: MidiEvent) -> None:
        self.messages += 1
        try:
            learning = self._learning
            if learning is not None and (event.kind == "control_change" or (event.kind == "note_on" and event.value)):
                self._learning = None
                spec = learned_spec(learning[0], event)
                if spec is not None:
                    self.map(spec)
                learning[1](spec, event)
            elif self.settings.channel and event.channel != self.settings.channel:
                self.unmapped += 1
            elif event.kind == "control_change" and event.number in self._ccs:
                self._cc(self._ccs[event.number], event.value)
            elif event.kind == "note_on" and event.value > 0 and event.number in self._notes:
                self._note(self._notes[event.number])
            elif event.kind in ("note_off", "note_on") and event.number in self._notes:
                pass  # a pad's release
            else:
                self.unmapped += 1
        finally:
            self._notify()

    def _cc(self, knob: _Knob, value: int) -> None:
        spec = knob.spec
        knob.raw = value
        if spec.control in BOOL_CONTROLS:
            self.store.set(spec.control, value >= ON_FROM)
            self.applied += 1
            return
        position = min(max(value / 127.0, 0.0), 1.0)
        current = float(getattr(self.store.snapshot(), spec.control))
        if self.settings.pickup:
            if knob.set_value is not None and current != knob.set_value:
                knob.pickup.release()  # moved elsewhere since this knob set it
            if not knob.pickup.update(position, curve_position(current, spec.curve, spec.low, spec.high)):
                self.waiting_pickup += 1
                return
        self.store.set(spec.control, apply_curve(position, spec.curve, spec.low, spec.high))
        knob.set_value = float(getattr(self.store.snapshot(), spec.control))
        self.applied += 1

    def _note(self, spec: NoteSpec) -> None:
        if spec.press in EVENTS:
            now = time.monotonic()
            if now - self._last_action.get(spec.press, -math.inf) < ACTION_GAP_S[spec.press]:
                self.actions_dropped += 1  # a pad drummed: one playlist step per ACTION_GAP_S
                return
            self._last_action[spec.press] = now
            self.store.trigger(spec.press)
        elif spec.press in BOOL_CONTROLS:
            self.store.set(spec.press, not getattr(self.store.snapshot(), spec.press))
        self.applied += 1

    # ── learn: the next knob or pad touched is mapped to a control ─────────────────────────────────────────────
    def learn(self, target: str, on_learned: Callable[[CcSpec | NoteSpec | None, MidiEvent], None]) -> None:
        """Map the next CC or note that arrives to ``target`` (a control or an action) and call ``on_learned(spec,
        event)`` from the MIDI thread (spec None: that input cannot drive it, e.g. a pad for a continuous control)."""
        self._learning = (target, on_learned)

    def cancel_learn(self) -> None:
        """Stop waiting for an input to learn; nothing is mapped."""
        self._learning = None

    def map(self, spec: CcSpec | NoteSpec) -> None:
        """Add (or replace) one mapping while running; an input mapped before to the same target is dropped."""
        if isinstance(spec, CcSpec):
            self._ccs = {n: k for n, k in self._ccs.items() if k.spec.name != spec.name}
            self._ccs[spec.number] = _Knob(spec)
        else:
            self._notes = {n: v for n, v in self._notes.items() if v.name != spec.name}
            self._notes[spec.number] = spec

    # ── for tests and the status ───────────────────────────────────────────────────────────────────────────────
    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
        """Block until ``predicate()`` holds after a message or a port change, or ``timeout`` s passed."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    @property
    def port_name(self) -> str | None:
        with self._lock:
            return None if self._port is None else self._port.name

    def values(self) -> dict:
        inputs = {k.spec.name: {"type": "midi cc", "number": k.spec.number, "control": k.spec.control, "raw": k.raw,
                                "picked_up": k.pickup.engaged} for k in self._ccs.values()}
        return {"backend": self.backend, "inputs": inputs, "led": None, "problems": list(self._problems)}

    def reports(self) -> dict[str, dict]:
        """The status report's ``midi`` field."""
        return {"midi": {
            "port": self.port_name, "wanted": self.settings.device or "any controller", "state": self.state,
            "channel": self.settings.channel or "all", "messages": self.messages, "applied": self.applied,
            "unmapped": self.unmapped, "waiting_pickup": self.waiting_pickup, "actions_dropped": self.actions_dropped,
            "not_picked_up": sorted(k.spec.name for k in self._ccs.values()
                                    if self.settings.pickup and k.spec.control not in BOOL_CONTROLS
                                    and not k.pickup.engaged),
            "connects": self.connects, "disconnects": self.disconnects, "problems": list(self._problems),
        }}

    def start(self) -> None:
        self.rescan()
        self._thread = threading.Thread(target=self._watch, name="murmur-midi", daemon=True)
        self._thread.start()

    def __enter__(self) -> MidiKnobs:
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._drop()


def learned_spec(target: str, event: MidiEvent) -> CcSpec | NoteSpec | None:
    """What touching an input while learning ``target`` maps: a CC drives a control over its whole range (hold:
    on from 64); a note fires an action or toggles hold. None for a pad asked to drive a continuous control or a
    knob asked to fire an action."""
    if event.kind == "control_change" and target in CONTROL_RANGES:
        low, high = CONTROL_RANGES[target]
        return CcSpec(name=target, number=event.number, control=target, low=low, high=high)
    if event.kind == "control_change" and target in BOOL_CONTROLS:
        return CcSpec(name=target, number=event.number, control=target)
    if event.kind == "note_on" and (target in EVENTS or target in BOOL_CONTROLS):
        return NoteSpec(name=target, number=event.number, press=target)
    return None


def table_text(spec: CcSpec | NoteSpec) -> str:
    """The ``[midi.<name>]`` table that maps ``spec``, as the config file writes it."""
    if isinstance(spec, NoteSpec):
        return f'[midi.{spec.name}]\ntype = "note"\nnumber = {spec.number}\npress = "{spec.press}"\n'
    text = f'[midi.{spec.name}]\ntype = "cc"\nnumber = {spec.number}\ncontrol = "{spec.control}"\n'
    if spec.control in CONTROL_RANGES and (spec.low, spec.high) != CONTROL_RANGES[spec.control]:
        text += f"range = [{spec.low:g}, {spec.high:g}]\n"
    return text + (f'curve = "{spec.curve}"\n' if spec.curve != "linear" else "")


def write_learned(path: Path, spec: CcSpec | NoteSpec) -> None:
    """Write ``spec`` into the config file at ``path`` (created with ``[midi] enabled = true`` if missing): its
    ``[midi.<name>]`` table replaced, another table mapping the same number dropped (the new one wins); the result
    is checked by the config's own reader before it replaces the file (atomically), so the file stays valid."""
    from murmur.device.config_schema import read_file
    from murmur.device.files import replace_file

    text = path.read_text(encoding="utf-8") if path.exists() else "[midi]\nenabled = true\n"
    if not re.search(r"^\[midi\]\s*$", text, re.M):
        text = text.rstrip("\n") + "\n\n[midi]\nenabled = true\n"
    kind = "note" if isinstance(spec, NoteSpec) else "cc"
    blocks = re.split(r"(?m)^(?=\[)", text)
    kept = []
    for block in blocks:
        header = re.match(r"\[midi\.([A-Za-z0-9_-]+)\]", block)
        if header and (header.group(1) == spec.name or (re.search(rf'^type = "{kind}"', block, re.M)
                                                       and re.search(rf"^number = {spec.number}\b", block, re.M))):
            continue
        kept.append(block)
    new = "".join(kept).rstrip("\n") + "\n\n" + table_text(spec)
    check = path.with_name(f".{path.name}.learn")
    check.write_text(new, encoding="utf-8")
    try:
        parse_midi(read_file(check).get("midi", {}), str(path))
    finally:
        check.unlink(missing_ok=True)
    replace_file(path, new.encode(), mode=0o644)


def start_midi(settings: MidiSettings, store: ControlStore, *, ports: MidiPorts | None = None,
               watch: bool = True) -> MidiKnobs:
    """Take the controller ``settings`` name (any, by default) into ``store``, and keep looking for it.
    ``ports``: the MIDI system (default ``MidoPorts``; tests pass ``FakeMidiPorts``); ``watch`` False: no watcher
    thread, the caller calls ``rescan()``. Never raises for a missing controller or MIDI system: it waits."""
    if ports is None:
        try:
            ports = MidoPorts()
        except ImportError as exc:
            knobs = MidiKnobs(settings, store, _NoPorts(f"mido/python-rtmidi are not installed ({exc})"))
            knobs.rescan()
            return knobs
    knobs = MidiKnobs(settings, store, ports)
    if watch:
        knobs.start()
    else:
        knobs.rescan()
    return knobs


class _NoPorts:
    """No MIDI library: every look says why (once in the log)."""

    def __init__(self, why: str) -> None:
        self.why = why

    def input_names(self) -> list[str]:
        raise OSError(self.why)

    def open_input(self, name: str, callback: MidiCallback) -> MidiInput:
        raise OSError(self.why)

    def still_connected(self, port: MidiInput) -> bool:
        return True


def cli(argv: list[str]) -> int:
    """``python -m murmur.device midi [--listen [NAME]]``: the MIDI inputs this machine has; with ``--listen``,
    every message of the controller (the first one, or the one named like NAME) as the ``[midi.<name>]`` table
    that would map it, until Ctrl-C. Stop the service first on a Pi (it holds the port too, which ALSA allows,
    but two readers are confusing)."""
    import argparse
    import queue

    parser = argparse.ArgumentParser(prog="python -m murmur.device midi", description=cli.__doc__)
    parser.add_argument("--listen", nargs="?", const="", default=None, metavar="NAME",
                        help="print what the controller sends (part of its name; none: the first controller)")
    args = parser.parse_args(argv[1:])
    try:
        ports = MidoPorts()
        names = ports.input_names()
    except (ImportError, OSError) as exc:
        print(f"MIDI: {exc}")
        return 1
    print("MIDI inputs:" if names else "MIDI inputs: none (plug the controller in; `aconnect -l` lists them too)")
    for name in names:
        print(f"  {name}" + ("   (ALSA's loop-back, not a controller)" if name.startswith(THROUGH) else ""))
    if args.listen is None:
        return 0
    knobs = MidiKnobs(MidiSettings(enabled=True, device=args.listen), ControlStore(), ports)
    chosen = knobs._wanted(names)
    if chosen is None:
        print(f"no controller named like {args.listen!r}")
        return 1
    events: queue.SimpleQueue[MidiEvent] = queue.SimpleQueue()
    port = ports.open_input(chosen, events.put)
    print(f"listening to {chosen!r}; turn a knob or hit a pad (Ctrl-C stops)")
    try:
        while True:
            event = events.get()
            if event.kind == "control_change":
                print(f"cc {event.number:3d} = {event.value:3d} (channel {event.channel}):  [midi.cc{event.number}] "
                      f'type = "cc"  number = {event.number}  control = "…"')
            elif event.kind == "note_on" and event.value:
                print(f"note {event.number:3d} (channel {event.channel}):  [midi.note{event.number}] type = \"note\"  "
                      f'number = {event.number}  press = "reseed"')
    except KeyboardInterrupt:
        return 0
    finally:
        port.close()
