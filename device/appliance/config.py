"""The appliance's one config file (``/etc/murmur/murmur.toml``, example ``deploy/murmur.toml``), validated at load.

``load_config(path) -> Config`` reads the file through the config schema (``murmur.device.config_schema``: every
table's keys declared once, with type, range, default and help; unknown keys and wrong values refused there) and
builds each table's value: ``[playback]`` and ``[sampler]`` here, ``[schedule]`` in ``appliance.schedule``,
``[knobs]`` and ``[led]`` in ``controls.mapping``, ``[osc]`` in ``controls.osc``, ``[room]`` in ``appliance.room``, ``[midi]`` in ``controls.midi``. Errors are ConfigError naming the file, the key, the value and
the fix. Nothing is applied until the whole file is valid, so a bad edit followed by ``systemctl reload murmur``
leaves the running config in place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from murmur.device.appliance.room import RoomSettings, parse_room
from murmur.device.appliance.schedule import Schedule, parse_schedule
from murmur.device.config_schema import PLAYBACK, SAMPLER, TABLES, Values, read_file, read_table
from murmur.device.controls.mapping import KnobMap, parse_knobs
from murmur.device.controls.midi import MidiSettings, parse_midi
from murmur.device.controls.osc import OscSettings, parse_osc
from murmur.device.controls.values import Controls
from murmur.device.errors import ConfigError

DEFAULT_PATH = Path("/etc/murmur/murmur.toml")
__all__ = ["DEFAULT_PATH", "TABLES", "Config", "PlaybackConfig", "load_config", "parse_playback", "parse_sampler"]


@dataclass(frozen=True)
class PlaybackConfig:
    """What plays and how loud: bundles (one, or a playlist rotated every ``rotate_minutes``; 0 = no rotation),
    output device by name substring (None = system default), the hard volume cap (dBFS), the crossfade used for
    reloads and playlist changes (s), the silence/stuck-output restart delay (s, 0 = never) and the vocoder's
    preset (``VOCODER_PRESETS``)."""

    bundles: tuple[Path, ...]
    rotate_minutes: float = PLAYBACK.keys["rotate_minutes"].default  # the defaults are the schema's
    output_device: str | None = None
    volume_cap_db: float = PLAYBACK.keys["volume_cap_db"].default
    crossfade_s: float = PLAYBACK.keys["crossfade_s"].default
    silence_restart_s: float = PLAYBACK.keys["silence_restart_s"].default
    vocoder: str = PLAYBACK.keys["vocoder"].default


DEFAULT_PLAYBACK = PlaybackConfig(bundles=())  # the defaults of a key the file leaves out


@dataclass(frozen=True)
class Config:
    """A whole validated config file; ``knobs`` is the validated ``[knobs]``/``[led]`` map, ``osc`` the ``[osc]``
    listener, ``room`` the room of Pis and ``midi`` the USB MIDI controller (all off by default)."""

    path: Path
    playback: PlaybackConfig
    sampler: Controls
    schedule: Schedule
    knobs: KnobMap | None = None
    osc: OscSettings = OscSettings()
    room: RoomSettings = RoomSettings()
    midi: MidiSettings = MidiSettings()


def _bundle_path(values: Values, key: str, value: str, base: Path) -> Path:
    path = Path(value.strip())
    if not path.is_absolute():
        path = base / path
    if not path.is_dir():
        raise values.error(key, f"{path} is not a directory; copy a bundle there (make deploy) or fix the path")
    return path


def parse_playback(table: dict[str, Any], *, base: Path, where: str = "") -> PlaybackConfig:
    """``[playback]`` -> PlaybackConfig; relative bundle paths are taken from the config file's directory."""
    values = read_table(PLAYBACK, table, where)
    if values.given("bundle") == values.given("playlist"):
        raise ConfigError(
            f'{where + ": " if where else ""}[playback]: set exactly one of bundle = "DIR" or playlist = ["DIR", …] '
            f"(found {'both' if values.given('bundle') else 'neither'})"
        )
    if values.given("bundle"):
        bundles: tuple[Path, ...] = (_bundle_path(values, "bundle", values["bundle"], base),)
    else:
        bundles = tuple(_bundle_path(values, "playlist", item, base) for item in values["playlist"])
    return PlaybackConfig(
        bundles=bundles,
        rotate_minutes=values["rotate_minutes"],
        output_device=values["output_device"].strip() or None,
        volume_cap_db=values["volume_cap_db"],
        crossfade_s=values["crossfade_s"],
        silence_restart_s=values["silence_restart_s"],
        vocoder=values["vocoder"],
    )


def parse_sampler(table: dict[str, Any], *, where: str = "") -> Controls:
    """``[sampler]`` -> the Controls the service starts with (knobs move them afterwards). Out-of-range is an
    error (the schema's) rather than a silent clamp: the file is the artist's intent."""
    values = read_table(SAMPLER, table, where)
    return Controls().replace(**{key: values[key] for key in table})


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the whole config file. Raises ConfigError naming file, key, value and fix."""
    path = Path(path)
    data = read_file(path)
    if "playback" not in data:
        raise ConfigError(f'{path}: the [playback] table is missing; it needs at least bundle = "DIR"')
    where = str(path)
    playback = parse_playback(data["playback"], base=path.resolve().parent, where=where)
    sampler = parse_sampler(data.get("sampler", {}), where=where)
    schedule = parse_schedule(data.get("schedule", {}), where=where)
    knobs = parse_knobs(data.get("knobs", {}), data.get("led", {}), where)
    osc = parse_osc(data.get("osc", {}), where)
    room = parse_room(data.get("room", {}), where)
    if osc.enabled and room.enabled and osc.port == room.port:
        raise ConfigError(f"{path}: [osc] port = {osc.port} and [room] port = {room.port}: OSC and the room need "
                          f"ports of their own; e.g. [room] port = {osc.port + 1}")
    midi = parse_midi(data.get("midi", {}), where)
    return Config(path=path, playback=playback, sampler=sampler, schedule=schedule, knobs=knobs, osc=osc, room=room,
                  midi=midi)
