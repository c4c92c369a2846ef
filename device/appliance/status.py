"""The service's status report: one schema for the file the service writes (``/run/murmur/status.json``) and
for everything that reads it (``python -m murmur.device status``, ``make status``, the deploy gate).

``deploy/pi_release.py`` runs on the Pi with the standard library only, so it cannot import this module; it
mirrors the field names in its ``STATUS_FIELDS`` and a test fails when the two drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    """What the service is doing. ``QUIET_HOURS``: alive and silent on purpose (outside opening hours)."""

    STARTING = "starting"
    PLAYING = "playing"
    QUIET_HOURS = "quiet-hours"
    ERROR = "error"
    STOPPED = "stopped"  # shut down cleanly (the last file a stopped service leaves)


class ClockSync(StrEnum):
    """Whether the wall clock was set from network time since boot (a Pi has no battery-backed clock)."""

    SYNCHRONISED = "synchronised"
    UNSYNCHRONISED = "unsynchronised"
    UNKNOWN = "unknown"  # no way to tell here (not Linux, or no time service to ask)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One status snapshot, rewritten about once a second. Levels in dBFS (-200 = silence), times in seconds."""

    playing: bool = False
    ready: bool = False
    state: State = State.STARTING
    message: str | None = None  # why the state is what it is (the error text in State.ERROR)
    level_dbfs_10s: float = -200.0  # RMS of the output over the last 10 s
    peak_dbfs_10s: float = -200.0
    underruns: int = 0
    frames_produced: int = 0
    reseeds: int = 0  # reseed presses the generator took since the service started
    engine_load: float = 0.0  # the sound's CPU time per frame / the frame's duration (1 = a whole core), last 10 s
    vocoder: str = ""  # the vocoder's preset: "full", "light", "light (auto)"
    bundle_id: str = ""
    bundle_path: str = ""
    bundle_age_s: float = 0.0  # since this bundle started playing
    playlist_index: int = 0
    playlist_length: int = 1
    uptime_s: float = 0.0
    schedule: str = ""  # e.g. "open until Tue 18:00"; "" before the first tick
    knobs: dict[str, Any] = field(default_factory=dict)  # control values, plus "inputs" (raw knob readings)
    osc: dict[str, Any] = field(default_factory=dict)  # the OSC listener: address, counters ({}: OSC off)
    room: dict[str, Any] = field(default_factory=dict)  # the room of Pis: peers heard, in step ({}: no room)
    midi: dict[str, Any] = field(default_factory=dict)  # the MIDI controller: port, counts ({}: MIDI off)
    restarts: int = 0
    reloads: int = 0
    rejected_reloads: int = 0
    watchdog_pings: int = 0
    last_problem: str | None = None
    cpu_temp_c: float | None = None  # None: not readable here
    throttled: str | None = None  # the firmware's throttle word in hex ("0x0" = all well); None: not a Pi
    clock: ClockSync = ClockSync.UNKNOWN
    release: str | None = None
    venv: str | None = None
    updated_unix: float = 0.0
    pid: int = 0

    def summary(self) -> str:
        """One line for systemd's STATUS=: 'playing sea-2026… [2/3]; open until Tue 18:00; <message>'."""
        return (f"{'playing' if self.playing else self.state} {self.bundle_id}"
                + (f" [{self.playlist_index + 1}/{self.playlist_length}]" if self.playlist_length > 1 else "")
                + (f"; {self.schedule}" if self.schedule else "") + (f"; {self.message}" if self.message else ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: enums as their text values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StatusReport:
        """Read a status file's dict. Missing fields take their defaults (a service of an older release wrote
        it); unknown ones are ignored; an unknown state or clock text reads as ERROR / UNKNOWN."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        try:
            values["state"] = State(values.get("state", State.STARTING))
        except ValueError:
            values["state"] = State.ERROR
        try:
            values["clock"] = ClockSync(values.get("clock", ClockSync.UNKNOWN))
        except ValueError:
            values["clock"] = ClockSync.UNKNOWN
        return cls(**values)


STATUS_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StatusReport))
