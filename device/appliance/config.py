"""The appliance's one config file (``/etc/murmur/murmur.toml``, example ``deploy/murmur.toml``), validated at load.

``load_config(path) -> Config`` reads every table — ``[playback]``, ``[sampler]``, ``[schedule]`` here, ``[knobs]``
and ``[led]`` through the knobs helper (``murmur.device.controls.mapping.parse_knobs``) — and raises ConfigError naming the
file, the key, the value and the fix. Nothing is applied until the whole file is valid, so a bad edit followed by
``systemctl reload murmur`` leaves the running config in place.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from murmur.device.appliance.schedule import Schedule, parse_schedule
from murmur.device.controls.values import BOOL_CONTROLS, CONTROL_RANGES, Controls, coerce_control
from murmur.device.errors import ConfigError

if TYPE_CHECKING:
    from murmur.device.controls.mapping import KnobMap

DEFAULT_PATH = Path("/etc/murmur/murmur.toml")
TABLES = ("playback", "sampler", "schedule", "knobs", "led")


@dataclass(frozen=True)
class PlaybackConfig:
    """What plays and how loud: bundles (one, or a playlist rotated every ``rotate_minutes``; 0 = no rotation),
    output device by name substring (None = system default), the hard volume cap (dBFS), the crossfade used for
    reloads and playlist changes (s), and the silence/stuck-output restart delay (s, 0 = never)."""

    bundles: tuple[Path, ...]
    rotate_minutes: float = 0.0
    output_device: str | None = None
    volume_cap_db: float = -6.0
    crossfade_s: float = 3.0
    silence_restart_s: float = 60.0


DEFAULT_PLAYBACK = PlaybackConfig(bundles=())  # the defaults of a key the file leaves out (written once, above)


@dataclass(frozen=True)
class Config:
    """A whole validated config file; ``knobs`` is the validated ``[knobs]``/``[led]`` map."""

    path: Path
    playback: PlaybackConfig
    sampler: Controls
    schedule: Schedule
    knobs: KnobMap | None = None


def _number(table: dict[str, Any], key: str, default: float, low: float, high: float, where: str, hint: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(float(value)):
        raise ConfigError(f"{where}.{key} = {value!r}: expected a number between {low:g} and {high:g} ({hint})")
    if not low <= float(value) <= high:
        raise ConfigError(f"{where}.{key} = {value!r}: out of range; use {low:g} … {high:g} ({hint})")
    return float(value)


def _bundle_path(value: Any, key: str, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f'{where}.{key} = {value!r}: expected a bundle directory path, e.g. "/opt/murmur/bundles/demo"')
    path = Path(value.strip())
    if not path.is_absolute():
        path = base / path
    if not path.is_dir():
        raise ConfigError(
            f"{where}.{key} = {value!r}: {path} is not a directory; copy a bundle there (make deploy) or fix the path"
        )
    return path


def parse_playback(table: dict[str, Any], *, base: Path, where: str = "[playback]") -> PlaybackConfig:
    """``[playback]`` -> PlaybackConfig; relative bundle paths are taken from the config file's directory."""
    known = ("bundle", "playlist", "rotate_minutes", "output_device", "volume_cap_db", "crossfade_s", "silence_restart_s")
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(known)}")
    if ("bundle" in table) == ("playlist" in table):
        raise ConfigError(
            f'{where}: set exactly one of bundle = "DIR" or playlist = ["DIR", …] '
            f"(found {'both' if 'bundle' in table else 'neither'})"
        )
    if "bundle" in table:
        bundles: tuple[Path, ...] = (_bundle_path(table["bundle"], "bundle", base, where),)
    else:
        playlist = table["playlist"]
        if not isinstance(playlist, list) or not playlist:
            raise ConfigError(f'{where}.playlist = {playlist!r}: expected a non-empty list of bundle directories, e.g. ["/opt/murmur/bundles/a"]')
        bundles = tuple(_bundle_path(item, f"playlist[{i}]", base, where) for i, item in enumerate(playlist))
    device = table.get("output_device", "")
    if not isinstance(device, str):
        raise ConfigError(f'{where}.output_device = {device!r}: expected part of the sound card name, e.g. "sndrpihifiberry", or "" for the default')
    return PlaybackConfig(
        bundles=bundles,
        rotate_minutes=_number(table, "rotate_minutes", DEFAULT_PLAYBACK.rotate_minutes, 0.0, 7 * 24 * 60, where, "minutes per playlist entry, 0 = no rotation"),
        output_device=device.strip() or None,
        volume_cap_db=_number(table, "volume_cap_db", DEFAULT_PLAYBACK.volume_cap_db, -60.0, 0.0, where, "dBFS ceiling, 0 = full scale"),
        crossfade_s=_number(table, "crossfade_s", DEFAULT_PLAYBACK.crossfade_s, 0.0, 30.0, where, "seconds"),
        silence_restart_s=_number(table, "silence_restart_s", DEFAULT_PLAYBACK.silence_restart_s, 0.0, 3600.0, where, "seconds, 0 = never restart"),
    )


def parse_sampler(table: dict[str, Any], *, where: str = "[sampler]") -> Controls:
    """``[sampler]`` -> the Controls the service starts with (knobs move them afterwards). Out-of-range is an
    error here rather than a silent clamp: the file is the artist's intent."""
    changes: dict[str, float | bool] = {}
    for key, value in table.items():
        if key in BOOL_CONTROLS:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key} = {value!r}: expected true or false")
            changes[key] = value
            continue
        if key not in CONTROL_RANGES:
            known = ", ".join(list(CONTROL_RANGES) + list(BOOL_CONTROLS))
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {known}")
        low, high = CONTROL_RANGES[key]
        changes[key] = _number(table, key, 0.0, low, high, where, f"the {key} control")
    try:
        return Controls().replace(**{k: coerce_control(k, v) for k, v in changes.items()})
    except ConfigError as exc:  # defensive: coerce_control's own message, with the table named
        raise ConfigError(f"{where}: {exc}") from exc


def parse_knob_tables(knobs: dict[str, Any], led: dict[str, Any], *, where: str) -> KnobMap:
    """``[knobs]``/``[led]`` -> the validated KnobMap (``murmur.device.controls.mapping.parse_knobs``)."""
    from murmur.device.controls.mapping import parse_knobs

    return parse_knobs(knobs, led, where)


def _table(data: dict[str, Any], name: str, where: Path) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {name} = {value!r} must be a table; write [{name}] on its own line")
    return value


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the whole config file. Raises ConfigError naming file, key, value and fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file; copy deploy/murmur.toml there and edit it") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); compare with deploy/murmur.toml") from exc
    for key in data:
        if key not in TABLES:
            raise ConfigError(f"{path}: unknown table or key {key!r}; known tables: {', '.join(TABLES)}")
    if "playback" not in data:
        raise ConfigError(f'{path}: the [playback] table is missing; it needs at least bundle = "DIR"')
    base = path.resolve().parent
    playback = parse_playback(_table(data, "playback", path), base=base, where=f"{path} [playback]")
    sampler = parse_sampler(_table(data, "sampler", path), where=f"{path} [sampler]")
    schedule = parse_schedule(_table(data, "schedule", path), where=f"{path} [schedule]")
    knobs = parse_knob_tables(_table(data, "knobs", path), _table(data, "led", path), where=str(path))
    return Config(path=path, playback=playback, sampler=sampler, schedule=schedule, knobs=knobs)
