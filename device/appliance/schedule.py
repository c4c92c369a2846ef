"""Opening hours: pure functions of the wall clock, so a reboot in the middle of a window plays at once.

A ``Schedule`` holds, per weekday (0 = Monday), windows as ``(start_min, end_min)`` minutes after that day's
midnight; ``end_min`` may exceed 1440 for a window that runs past midnight ("22:00-02:00" is (1320, 1560)).
Windows of neighbouring days that touch or overlap merge, so "00:00-24:00" on two days plays through midnight
without a fade. ``schedule_state(now, schedule)`` says whether the venue is open at ``now`` (a naive local
datetime), the fade envelope there (0..1), the gain to head for and how long the ramp should take, and when the
next edge (opening or closing) comes. Nothing here keeps state or reads the clock itself.

A Pi has no battery-backed clock: booted without network it starts from the last time it saved (systemd-timesyncd
keeps one), which may be hours or days off. ``Schedule.unsynchronised_clock`` says what to do until network time
arrives: "play" through (phase "playing-through", the safe choice for a room that must not fall silent in its
hours) or "trust" the clock as it is (quiet hours may then fall at the wrong time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from murmur.device.config_schema import DAYS, MAX_FADE_S, SCHEDULE, UNSYNCHRONISED_POLICIES, read_table, toml_value
from murmur.device.errors import ConfigError

__all__ = ["DAYS", "MAX_FADE_S", "OPEN_PHASES", "UNSYNCHRONISED_POLICIES", "Schedule", "ScheduleState", "intervals",
           "parse_schedule", "parse_time", "parse_windows", "schedule_state"]
MINUTES_PER_DAY = 24 * 60
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
CLOSED_WORDS = ("closed", "off", "")
ALWAYS_WORDS = ("always", "open", "all day", "all-day")
OPEN_PHASES = ("open", "always-open", "playing-through")  # full level, no fade under way


@dataclass(frozen=True)
class Schedule:
    """Opening hours. ``days[weekday]`` = windows ``(start_min, end_min)``; ``always_open`` ignores ``days``."""

    days: tuple[tuple[tuple[int, int], ...], ...] = field(default_factory=lambda: ((),) * 7)
    fade_in_s: float = SCHEDULE.keys["fade_s"].default  # the defaults are the config schema's
    fade_out_s: float = SCHEDULE.keys["fade_s"].default
    always_open: bool = True
    unsynchronised_clock: str = SCHEDULE.keys["unsynchronised_clock"].default  # one of UNSYNCHRONISED_POLICIES

    def describe(self) -> str:
        """One line for logs: 'always open' or 'mon 10:00-18:00; tue closed; …'."""
        if self.always_open:
            return "always open"
        parts = []
        for name, windows in zip(DAYS, self.days, strict=True):
            text = ", ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in windows) or "closed"
            parts.append(f"{name} {text}")
        return "; ".join(parts)


@dataclass(frozen=True)
class ScheduleState:
    """Where ``now`` falls in the opening hours.

    phase: "always-open", "open", "fading-in", "fading-out", "closed", or "playing-through" (hours set aside
    while the clock is unsynchronised).
    gain: the fade envelope at ``now`` (0..1). target_gain/ramp_s: what to ask the engine for
    (``fade_to(target_gain, ramp_s)``), so that the ramp ends exactly at the fade's end or at closing time.
    next_edge: the next opening or closing (None when always open); seconds_to_next_edge matches it (inf if None).
    """

    is_open: bool
    phase: str
    gain: float
    target_gain: float
    ramp_s: float
    next_edge: datetime | None
    seconds_to_next_edge: float


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_time(text: str, *, where: str, allow_24: bool) -> int:
    """'HH:MM' -> minutes after midnight; '24:00' only where ``allow_24`` (a window's end). Raises ConfigError."""
    match = _TIME.match(text)
    if not match:
        raise ConfigError(f"{where}: time {text!r} must look like HH:MM (24-hour clock), e.g. 09:30")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise ConfigError(f"{where}: time {text!r} is not a time of day; use 00:00 … 23:59 (24:00 only as an end)")
    return hours * 60 + minutes


def parse_windows(value: Any, *, where: str) -> tuple[tuple[int, int], ...]:
    """One weekday's value -> windows. Accepts "closed", "always", "10:00-18:00", "10:00-13:00, 14:00-18:00"
    or a list of such strings. A window whose end is before its start runs past midnight. Raises ConfigError
    naming ``where`` (the file, table and key) and the value as written."""
    shown = toml_value(value)
    if isinstance(value, str):
        items = [part for part in value.split(",")] if value.strip() else [""]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = list(value) or [""]
    else:
        raise ConfigError(
            f'{where} = {shown}: expected a string like "10:00-18:00", "10:00-13:00, 14:00-18:00", "closed" '
            'or "always", or a list of such strings'
        )
    windows: list[tuple[int, int]] = []
    for item in items:
        text = item.strip().lower()
        if text in CLOSED_WORDS:
            if len(items) > 1:
                raise ConfigError(f"{where} = {shown}: 'closed' cannot be combined with opening windows")
            return ()
        if text in ALWAYS_WORDS:
            windows.append((0, MINUTES_PER_DAY))
            continue
        start_text, sep, end_text = text.partition("-")
        if not sep:
            raise ConfigError(f'{where} = {shown}: window {item.strip()!r} must look like "10:00-18:00"')
        start = parse_time(start_text, where=f"{where} = {shown}", allow_24=False)
        end = parse_time(end_text, where=f"{where} = {shown}", allow_24=True)
        if end == start:
            raise ConfigError(
                f'{where} = {shown}: window {item.strip()!r} is empty; for the whole day write "00:00-24:00" or "always"'
            )
        if end < start:  # runs past midnight into the next day
            end += MINUTES_PER_DAY
        windows.append((start, end))
    windows.sort()
    for (a_start, a_end), (b_start, _b_end) in zip(windows, windows[1:], strict=False):
        if b_start < a_end:
            raise ConfigError(f"{where} = {shown}: windows {_hhmm(a_start)}-{_hhmm(a_end % MINUTES_PER_DAY)} "
                              f"and the one starting {_hhmm(b_start)} overlap; merge them into one")
    return tuple(windows)


def parse_schedule(table: dict[str, Any], *, where: str = "") -> Schedule:
    """The config's ``[schedule]`` table (``where``: the file) -> Schedule. No weekday keys at all = always open;
    once any weekday is given, a weekday left out is closed. ``fade_s`` sets both fades; ``fade_in_s``/
    ``fade_out_s`` override. Keys, types and ranges are the config schema's (``config_schema.SCHEDULE``)."""
    values = read_table(SCHEDULE, table, where)
    fade = values["fade_s"]
    fade_in = fade if values["fade_in_s"] is None else values["fade_in_s"]
    fade_out = fade if values["fade_out_s"] is None else values["fade_out_s"]
    policy = values["unsynchronised_clock"]
    if not any(values.given(day) for day in DAYS):
        return Schedule(fade_in_s=fade_in, fade_out_s=fade_out, always_open=True, unsynchronised_clock=policy)
    prefix = f"{where}: " if where else ""
    days = tuple(parse_windows(values[day], where=f"{prefix}[schedule] {day}") if values.given(day) else ()
                 for day in DAYS)
    return Schedule(days=days, fade_in_s=fade_in, fade_out_s=fade_out, always_open=False, unsynchronised_clock=policy)


def intervals(schedule: Schedule, start_day: datetime, n_days: int) -> list[tuple[datetime, datetime]]:
    """Open intervals from the windows of ``n_days`` days beginning at ``start_day``'s date, merged where they
    touch or overlap, as naive local datetimes, sorted."""
    midnight = start_day.replace(hour=0, minute=0, second=0, microsecond=0)
    raw: list[tuple[datetime, datetime]] = []
    for offset in range(n_days):
        day = midnight + timedelta(days=offset)
        for start_min, end_min in schedule.days[day.weekday()]:
            raw.append((day + timedelta(minutes=start_min), day + timedelta(minutes=end_min)))
    raw.sort()
    merged: list[tuple[datetime, datetime]] = []
    for start, end in raw:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def schedule_state(now: datetime, schedule: Schedule, *, clock_trusted: bool = True) -> ScheduleState:
    """Open or closed at ``now`` (naive local time), the fade envelope, the ramp to command and the next edge.
    ``clock_trusted=False`` (no network time since boot) with the "play" policy plays through, fading in."""
    if schedule.always_open:
        return ScheduleState(True, "always-open", 1.0, 1.0, 0.0, None, float("inf"))
    if not clock_trusted and schedule.unsynchronised_clock == "play":
        return ScheduleState(True, "playing-through", 1.0, 1.0, schedule.fade_in_s, None, float("inf"))
    # Yesterday's windows may run into today; a week plus a day ahead always holds the next opening if any.
    first_day = now - timedelta(days=1)
    spans = intervals(schedule, first_day, 10)
    horizon = first_day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=10)
    for start, end in spans:
        if start <= now < end:
            since_open = (now - start).total_seconds()
            until_close = (end - now).total_seconds()
            next_edge: datetime | None = end
            if end >= horizon:  # open around the clock for the next week: no closing in sight
                until_close, next_edge = float("inf"), None
            fade_in = min(1.0, since_open / schedule.fade_in_s) if schedule.fade_in_s > 0 else 1.0
            fade_out = min(1.0, until_close / schedule.fade_out_s) if schedule.fade_out_s > 0 else 1.0
            gain = min(fade_in, fade_out)
            if schedule.fade_out_s > 0 and until_close <= schedule.fade_out_s:
                phase, target, ramp = "fading-out", 0.0, until_close
            elif schedule.fade_in_s > 0 and since_open < schedule.fade_in_s:
                phase, target, ramp = "fading-in", 1.0, schedule.fade_in_s - since_open
            else:
                phase, target, ramp = "open", 1.0, 0.0
            return ScheduleState(True, phase, gain, target, ramp, next_edge, until_close)
        if start > now:
            return ScheduleState(False, "closed", 0.0, 0.0, 0.0, start, (start - now).total_seconds())
    return ScheduleState(False, "closed", 0.0, 0.0, 0.0, None, float("inf"))  # closed every day
