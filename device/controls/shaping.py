"""Pure helpers that turn noisy physical readings into steady control values (pure functions, like gpiozero's
``tools.py``, so the smoothing and debouncing are tested without pins or time).

No threads, no clocks, no GPIO: every function takes the time or the reading it needs, so tests feed synthetic
sequences. The GPIO back-end calls them from its poll thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MUTE_S = 60.0  # a chattering button stays muted until it has been still this long


def smoothing_alpha(dt_s: float, time_constant_s: float) -> float:
    """Weight of a new sample in a one-pole low-pass with time constant ``time_constant_s`` sampled every ``dt_s``.

    0 time constant = no smoothing (alpha 1). After one time constant a step has moved 63 % of the way.
    """
    if time_constant_s <= 0.0:
        return 1.0
    return 1.0 - math.exp(-max(dt_s, 0.0) / time_constant_s)


def smooth(previous: float, sample: float, alpha: float) -> float:
    """One step of the exponential moving average."""
    return previous + alpha * (sample - previous)


def dead_band(held: float, candidate: float, width: float) -> float:
    """Hysteresis: keep ``held`` until ``candidate`` moves more than ``width`` away from it (0..1 units).

    The ends snap: within ``width`` of 0 or 1 the value is exactly 0 or 1, so the whole range stays reachable.
    """
    if candidate <= width:
        candidate = 0.0
    elif candidate >= 1.0 - width:
        candidate = 1.0
    if candidate in (0.0, 1.0) or abs(candidate - held) > width:
        return candidate
    return held


def apply_curve(position: float, curve: str, low: float, high: float) -> float:
    """Map a knob position 0..1 to ``low``..``high``: "linear", or "log" (equal ratios per equal turn; low, high > 0)."""
    position = min(max(position, 0.0), 1.0)
    if curve == "log":
        return low * (high / low) ** position
    return low + (high - low) * position


def curve_position(value: float, curve: str, low: float, high: float) -> float:
    """The knob position 0..1 at which ``apply_curve`` gives ``value`` (the inverse), clamped to 0..1."""
    if high == low:
        return 0.0
    if curve == "log":
        position = math.log(max(value, 1e-12) / low) / math.log(high / low)
    else:
        position = (value - low) / (high - low)
    return min(max(position, 0.0), 1.0)


@dataclass(slots=True)
class Pickup:
    """Soft takeover ("pickup"), as MIDI controllers do it: a knob whose position disagrees with the control's
    value (set meanwhile by another knob, OSC, the room of Pis or a reload) does nothing until it comes within
    ``tolerance`` of that value or passes through it; from then on it moves the control. So turning it never
    makes the sound jump. Positions in 0..1 of the knob's travel. Pure: fed with positions, no clock."""

    tolerance: float = 0.02
    engaged: bool = False
    last: float | None = None  # the knob's previous position

    def update(self, position: float, current: float) -> bool:
        """The knob moved to ``position``; the control sits at ``current`` (as a position of this knob). True if
        the knob's value is to be taken."""
        if not self.engaged:
            near = abs(position - current) <= self.tolerance
            crossed = self.last is not None and (self.last - current) * (position - current) <= 0.0
            self.engaged = near or crossed
        self.last = position
        return self.engaged

    def release(self) -> None:
        """The control was set elsewhere: the knob must pick it up again."""
        self.engaged = False


@dataclass(slots=True)
class PotShaper:
    """Raw ADC ratio (0..1, ~1 LSB of jitter) → a control value that moves only when the knob is turned.

    smoothing (one-pole, ``smoothing_s``) → dead-band (``deadband`` of the travel) → curve → range.
    """

    low: float
    high: float
    curve: str = "linear"
    smoothing_s: float = 0.03
    deadband: float = 0.01
    smoothed: float | None = None
    held: float | None = None

    def update(self, raw: float, dt_s: float) -> float | None:
        """Feed one reading taken ``dt_s`` after the previous; returns the new control value, or None if unchanged."""
        raw = min(max(float(raw), 0.0), 1.0)
        if self.smoothed is None:  # first reading: the knob's position wins at once
            self.smoothed = raw
        else:
            self.smoothed = smooth(self.smoothed, raw, smoothing_alpha(dt_s, self.smoothing_s))
        position = dead_band(self.held if self.held is not None else -1.0, self.smoothed, self.deadband)
        if position == self.held:
            return None
        self.held = position
        return apply_curve(position, self.curve, self.low, self.high)

    @property
    def value(self) -> float | None:
        """The control value last returned (None before the first reading)."""
        return None if self.held is None else apply_curve(self.held, self.curve, self.low, self.high)


@dataclass(slots=True)
class PressLogic:
    """One button's debounce, short/long press, stuck limit and flapping guard, fed with (pressed, now_s) samples.

    - debounce: a level counts once it has been stable for ``bounce_s``;
    - without a long action, ``press`` fires as the button goes down; with one, ``press`` fires on a release before
      ``long_press_s`` and ``long_press`` fires once the button has been down that long;
    - held longer than ``stuck_s`` (or already down when first seen) the button is ignored until released;
    - more than ``max_per_minute`` actions within 60 s: ignored until the pin has been still for 60 s (a floating
      pin chattering cannot, say, skip bundles forever).
    ``update`` returns the actions to fire now: ("press",), ("long_press",) or ().
    """

    bounce_s: float = 0.02
    long_press_s: float | None = None
    stuck_s: float = 30.0
    max_per_minute: int = 30
    pressed: bool = False  # debounced level
    raw: bool | None = None
    raw_since: float = 0.0
    down_since: float = 0.0
    long_fired: bool = False
    stuck: bool = False  # ignored until released
    muted_until: float = -math.inf  # flapping guard
    recent: list | None = None
    problem: str | None = None  # set when the button starts being ignored (read and cleared by the caller)

    def update(self, raw_pressed: bool, now: float) -> tuple[str, ...]:
        if self.raw is None:  # first sample: a button already down at start is treated as stuck
            self.raw, self.raw_since, self.pressed = raw_pressed, now, raw_pressed
            if raw_pressed:
                self.stuck, self.down_since = True, now
                self.problem = "was already pressed at start: ignored until released (stuck or floating pin?)"
            return ()
        if raw_pressed != self.raw:
            self.raw, self.raw_since = raw_pressed, now
            if now < self.muted_until:  # still chattering: stay muted until it has been calm for a minute
                self.muted_until = now + MUTE_S
        if self.raw != self.pressed and now - self.raw_since >= self.bounce_s:
            self.pressed = self.raw
            return self._edge(now)
        if self.pressed and not self.stuck:
            held_s = now - self.down_since
            if held_s >= self.stuck_s:
                self.stuck = True
                self.problem = f"held for {held_s:.0f} s: ignored until released (stuck or floating pin?)"
            elif self.long_press_s is not None and not self.long_fired and held_s >= self.long_press_s:
                self.long_fired = True
                return self._fire("long_press", now)
        return ()

    def _edge(self, now: float) -> tuple[str, ...]:
        if self.pressed:
            self.down_since, self.long_fired = now, False
            return () if self.long_press_s is not None else self._fire("press", now)
        if self.stuck:  # released at last: back in service, the release itself does nothing
            self.stuck = False
            return ()
        if self.long_press_s is not None and not self.long_fired:
            return self._fire("press", now)
        return ()

    def _fire(self, action: str, now: float) -> tuple[str, ...]:
        if now < self.muted_until:
            return ()
        recent = [t for t in (self.recent or []) if now - t < 60.0]
        recent.append(now)
        self.recent = recent
        if len(recent) > self.max_per_minute:
            self.muted_until, self.recent = now + MUTE_S, []
            self.problem = (f"fired {len(recent)} times within a minute: ignored until it has been still for "
                            f"{MUTE_S:.0f} s (floating pin?)")
            return ()
        return (action,)
