"""A stand-in MIDI system for tests and benchmarks (``controls.midi.MidiPorts``): ports that are plugged in and
unplugged by the test, and messages sent into an open port's callback, as rtmidi calls it from its own thread.

It runs no hardware and no ALSA: the real-device test (a USB MIDI gadget in a booted guest) is the other layer.
"""

from __future__ import annotations

import threading

from murmur.device.controls.midi import MidiCallback, MidiEvent, MidiInput


class FakeMidiInput:
    """An open port: ``close()`` is recorded; messages reach the callback until then."""

    def __init__(self, name: str, callback: MidiCallback, system: FakeMidiPorts) -> None:
        self.name, self.callback, self.system = name, callback, system
        self.closed = False
        self.lost = False  # its device was unplugged (a port of the same name may be plugged in again)

    def close(self) -> None:
        self.closed = True


class FakeMidiPorts:
    """``plug(name)``/``unplug(name)``/``replug(name)`` change the port list; ``send(name, event)`` delivers a
    message to the port opened under that name (from the calling thread); ``broken`` makes every call raise
    OSError, as a missing ALSA sequencer does. Counts the opens."""

    def __init__(self, *names: str) -> None:
        self._lock = threading.Lock()
        self.names: list[str] = list(names)
        self.open_ports: list[FakeMidiInput] = []
        self.opens = 0
        self.broken: str | None = None

    def plug(self, name: str) -> None:
        with self._lock:
            self.names.append(name)

    def unplug(self, name: str) -> None:
        with self._lock:
            self.names.remove(name)
            for port in self.open_ports:
                if port.name == name:
                    port.callback = _gone  # an unplugged device sends nothing more
                    port.lost = True

    def replug(self, name: str) -> None:
        """Unplug and plug in again at once (between two of the watcher's looks): the name stays listed, the open
        port's connection is gone, as with ALSA's sequencer."""
        self.unplug(name)
        self.plug(name)

    def still_connected(self, port: MidiInput) -> bool:
        return not getattr(port, "lost", False)

    def input_names(self) -> list[str]:
        if self.broken:
            raise OSError(self.broken)
        with self._lock:
            return list(self.names)

    def open_input(self, name: str, callback: MidiCallback) -> FakeMidiInput:
        if self.broken:
            raise OSError(self.broken)
        with self._lock:
            if name not in self.names:
                raise OSError(f"no MIDI input named {name!r}")
            port = FakeMidiInput(name, callback, self)
            self.open_ports.append(port)
            self.opens += 1
            return port

    def send(self, name: str, kind: str, number: int, value: int, channel: int = 1) -> bool:
        """Deliver one message to the open (not closed) port ``name``; False if none is open."""
        with self._lock:
            ports = [p for p in self.open_ports if p.name == name and not p.closed]
        for port in ports:
            port.callback(MidiEvent(kind, channel, number, value))
        return bool(ports)


def _gone(event: MidiEvent) -> None:
    """The callback of a port whose device was unplugged: nothing arrives."""
