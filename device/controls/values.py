"""Sampler controls: one immutable value object, read once per frame, and the thread-safe store knobs write to.

Knob back-ends (GPIO, keyboard, MIDI, the service's config) call ``ControlStore.set`` / ``ControlStore.trigger``
from their own threads; the engine's producer calls ``ControlStore.snapshot`` once per frame and
``ControlStore.take_events`` once per frame. Swapping one reference under a lock is all that crosses threads.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

from murmur.device.errors import ConfigError

# name -> (minimum, maximum) for every continuous control; booleans are listed in BOOL_CONTROLS.
CONTROL_RANGES: dict[str, tuple[float, float]] = {
    # how freely the generator picks the next real frame at a cut (0 = always the nearest to the LSTM's
    # prediction; format-1 bundles: std of the noise added to each predicted frame, model units)
    "temperature": (0.0, 2.0),
    # faithful (1: long real phrases of the recording) <-> inventive (0: every frame chosen anew by the LSTM);
    # sets the mean phrase length, from one frame (11.6 ms) to 6 s, exponentially (format-2 bundles)
    "fidelity": (0.0, 1.0),
    "jump": (0.0, 4.0),  # jumps per second to a random spot of the material (a jump every 1/jump s on average)
    "position": (0.0, 1.0),  # where in the training material the sound comes from (0 = start, 1 = end)
    "spread": (0.0, 1.0),  # how much of the material around `position` may play (fraction of it; 1 = all)
    "gain_db": (-60.0, 12.0),  # output gain before the volume cap, dB
}
BOOL_CONTROLS = ("hold",)  # hold: freeze the sound on the current frame
EVENTS = ("reseed", "next_bundle", "previous_bundle")  # one-shot actions (knob presses, keys)
GENERATOR_EVENTS = ("reseed",)  # taken by the engine's producer, once per frame; the others by the service


@dataclass(frozen=True, slots=True)
class Controls:
    """The sampler's controls as values; defaults give a living, musical result unattended."""

    temperature: float = 0.3
    fidelity: float = 0.3
    jump: float = 0.25
    position: float = 0.5
    spread: float = 1.0
    hold: bool = False
    gain_db: float = 0.0

    def replace(self, **changes: float | bool) -> Controls:
        """A copy with ``changes`` applied, each validated and clamped to its range."""
        coerced: dict[str, Any] = {name: coerce_control(name, value) for name, value in changes.items()}
        return dataclasses.replace(self, **coerced)


def coerce_control(name: str, value: float | bool | str) -> float | bool:
    """Validate one control value: clamp numbers to their range, parse booleans. Raises ConfigError."""
    if name in BOOL_CONTROLS:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
                raise ConfigError(f"control {name}={value!r}: expected on/off, true/false or 1/0")
            return lowered in ("1", "true", "on", "yes")
        return bool(value)
    if name not in CONTROL_RANGES:
        known = ", ".join(list(CONTROL_RANGES) + list(BOOL_CONTROLS))
        raise ConfigError(f"unknown control {name!r}; known controls: {known}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"control {name}={value!r} is not a number") from exc
    if number != number:  # NaN
        raise ConfigError(f"control {name}={value!r} is not a number")
    low, high = CONTROL_RANGES[name]
    return min(max(number, low), high)


def parse_settings(text: str) -> dict[str, float | bool]:
    """Parse ``"name=value name=value"`` (the CLI's ``--set`` / make's ``SET=``) into validated changes."""
    changes: dict[str, float | bool] = {}
    for item in text.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"setting {item!r} must look like name=value, e.g. temperature=0.5")
        changes[name.strip()] = coerce_control(name.strip(), value)
    return changes


class ControlStore:
    """Thread-safe holder of the current Controls plus a queue of one-shot events."""

    def __init__(self, initial: Controls | None = None) -> None:
        self._lock = threading.Lock()
        self._controls = initial or Controls()
        self._events: list[str] = []  # for the generator (GENERATOR_EVENTS)
        self._service_events: list[str] = []  # for the service's main loop (the playlist actions)
        self._version = 0

    def snapshot(self) -> Controls:
        """The current controls (an immutable object: read it once per frame)."""
        return self._controls  # a single reference read is atomic in CPython

    @property
    def version(self) -> int:
        """Increments on every change, so readers can tell that something moved."""
        return self._version

    def set(self, name: str, value: float | bool) -> None:
        """Set one control (clamped to its range) from any thread."""
        self.update(**{name: value})

    def update(self, **changes: float | bool) -> None:
        """Set several controls at once, atomically."""
        with self._lock:
            self._controls = self._controls.replace(**changes)
            self._version += 1

    def trigger(self, event: str) -> None:
        """Queue a one-shot action ('reseed', 'next_bundle', 'previous_bundle')."""
        if event not in EVENTS:
            raise ConfigError(f"unknown action {event!r}; known actions: {', '.join(EVENTS)}")
        with self._lock:
            (self._events if event in GENERATOR_EVENTS else self._service_events).append(event)

    def take_events(self) -> tuple[str, ...]:
        """Remove and return the generator's queued events (the shared empty tuple most frames: no allocation)."""
        if not self._events:
            return ()
        with self._lock:
            events, self._events = self._events, []
        return tuple(events)

    def take_service_events(self) -> tuple[str, ...]:
        """Remove and return the queued playlist actions ('next_bundle', 'previous_bundle'): the service's main
        loop takes them, so they never pass through the audio thread."""
        if not self._service_events:
            return ()
        with self._lock:
            events, self._service_events = self._service_events, []
        return tuple(events)
