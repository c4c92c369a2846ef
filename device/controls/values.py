"""Sampler controls: one immutable value object, read once per frame, and the thread-safe store knobs write to.

Knob back-ends (GPIO, keyboard, MIDI, the service's config) call ``ControlStore.set`` / ``ControlStore.trigger``
from their own threads; the engine's producer calls ``ControlStore.snapshot`` once per frame and
``ControlStore.take_events`` once per frame. Swapping one reference under a lock is all that crosses threads.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from murmur.device.config_schema import BOOL_CONTROL_NAMES, EVENTS, SAMPLER, Float
from murmur.device.errors import ConfigError

# name -> (minimum, maximum) for every continuous control, and the on/off controls: both from the config schema's
# [sampler] table (murmur.device.config_schema.SAMPLER), where each control's range, default and help are declared.
CONTROL_RANGES: dict[str, tuple[float, float]] = {
    name: (key.type.minimum, key.type.maximum) for name, key in SAMPLER.keys.items() if isinstance(key.type, Float)
}
BOOL_CONTROLS = BOOL_CONTROL_NAMES  # hold: freeze the sound on the current frame
GENERATOR_EVENTS = ("reseed",)  # taken by the engine's producer, once per frame; the others by the service
# Seconds between two of the same action from a remote or MIDI source; closer ones are dropped. A playlist step
# loads and checks a bundle: one repeated as fast as a network or a drummed pad allows would keep the service's
# main loop swapping bundles. (The GPIO buttons have their chatter guard for the same reason.)
ACTION_GAP_S = {"reseed": 0.1, "next_bundle": 2.0, "previous_bundle": 2.0}
__all__ = ["ACTION_GAP_S", "BOOL_CONTROLS", "CONTROL_RANGES", "EVENTS", "GENERATOR_EVENTS", "Controls", "ControlStore",
           "Listener", "coerce_control", "parse_settings"]
# Told of every change a control source makes: (the changed controls' new values, clamped; or an action). Called
# under the store's lock, in order, from the writer's thread (a knob poll, OSC, MIDI): it must only hand the news on.
Listener = Callable[[Mapping[str, float | bool], str | None], None]
_DEFAULTS = {name: key.default for name, key in SAMPLER.keys.items()}


@dataclass(frozen=True, slots=True)
class Controls:
    """The sampler's controls as values; defaults give a living, musical result unattended."""

    temperature: float = _DEFAULTS["temperature"]  # the defaults are [sampler]'s in the config schema
    fidelity: float = _DEFAULTS["fidelity"]
    jump: float = _DEFAULTS["jump"]
    position: float = _DEFAULTS["position"]
    spread: float = _DEFAULTS["spread"]
    hold: bool = _DEFAULTS["hold"]
    gain_db: float = _DEFAULTS["gain_db"]

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
    """Parse ``"name=value name=value"`` (the CLI's ``--set`` / make's ``SET=``) into validated changes.

    A number outside its control's range is refused, as in the config file's [sampler] table: the command line
    is the artist's intent too, and a silent clamp would play something else than asked for."""
    changes: dict[str, float | bool] = {}
    for item in text.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"setting {item!r} must look like name=value, e.g. temperature=0.5")
        name = name.strip()
        changes[name] = coerce_control(name, value)
        if name in CONTROL_RANGES:
            low, high = CONTROL_RANGES[name]
            given = float(value)
            if not low <= given <= high:
                raise ConfigError(f"control {name}={value}: out of range; use {low:g} … {high:g} "
                                  f"(e.g. {name}={changes[name]:g}, the nearest allowed value)")
    return changes


class ControlStore:
    """Thread-safe holder of the current Controls plus a queue of one-shot events."""

    def __init__(self, initial: Controls | None = None) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
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
        """Set several controls at once, atomically (a control source's change: listeners hear of it)."""
        self.apply(changes)

    def apply(self, changes: Mapping[str, float | bool], *, notify: bool = True) -> None:
        """Set several controls at once, atomically; ``notify=False``: a change listeners must not hear of (one
        that came from the room of Pis, or the config's starting values on a reload)."""
        with self._lock:
            self._controls = self._controls.replace(**changes)
            self._version += 1
            if notify and self._listeners:
                now = self._controls
                values = {name: getattr(now, name) for name in changes}
                for listener in self._listeners:
                    listener(values, None)

    def merge(self, decide: Callable[[Controls], Mapping[str, float | bool]]) -> Mapping[str, float | bool]:
        """Under the store's lock: ``decide(current controls)`` returns changes, which are applied without
        notifying; returns them. The room of Pis merges a peer's values this way, so no local change a listener
        is hearing of can slip in between its decision and the store."""
        with self._lock:
            changes = decide(self._controls)
            if changes:
                self._controls = self._controls.replace(**changes)
                self._version += 1
            return changes

    def trigger(self, event: str, *, notify: bool = True) -> None:
        """Queue a one-shot action ('reseed', 'next_bundle', 'previous_bundle'); listeners hear of the generator's
        ones (reseed) unless ``notify`` is False."""
        if event not in EVENTS:
            raise ConfigError(f"unknown action {event!r}; known actions: {', '.join(EVENTS)}")
        with self._lock:
            (self._events if event in GENERATOR_EVENTS else self._service_events).append(event)
            if notify and event in GENERATOR_EVENTS:
                for listener in self._listeners:
                    listener({}, event)

    def add_listener(self, listener: Listener) -> None:
        """Tell ``listener`` of every notified change from now on (the room of Pis sends them to the others)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

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
