"""Knobs: physical inputs (gpiozero) or their desktop stand-in, writing into the engine's ControlStore.

``start_knobs(knob_map, store)`` attaches the inputs of a validated :class:`KnobMap` (``mapping.parse_knobs``) to
GPIO; with no GPIO hardware it logs one line and returns a :class:`Knobs` with nothing attached, so the service
plays on the config's defaults. ``start_keyboard(store)`` is the terminal stand-in used by ``make play``.
"""

from __future__ import annotations

import logging
import warnings

from ..controls import ControlStore
from .base import Knobs
from .keyboard import KeyboardKnobs, start_keyboard
from .mapping import KnobMap, parse_knobs

__all__ = ["KeyboardKnobs", "KnobMap", "Knobs", "parse_knobs", "start_keyboard", "start_knobs"]

log = logging.getLogger("murmur.knobs")


def start_knobs(knob_map: KnobMap, store: ControlStore, *, pin_factory=None, on_error=None) -> Knobs:
    """Attach every configured input to ``store`` and start polling; returns a handle with values() and close().

    ``pin_factory``: a gpiozero pin factory (tests pass ``MockFactory()``); None picks gpiozero's default
    (lgpio on a Pi 5, ``GPIOZERO_PIN_FACTORY`` overrides). ``on_error(message)`` hears about inputs that fail.
    """
    if not knob_map.needs_gpio:
        return Knobs()
    if pin_factory is None:
        pin_factory, reason = _default_pin_factory()
        if pin_factory is None:
            message = (f"no GPIO on this machine ({reason}): knobs and LED are off, playing on the config's "
                       "[sampler] defaults")
            log.warning("knobs: %s", message)
            return Knobs(reason=message)
    from .gpio import GpioKnobs

    knobs = GpioKnobs(knob_map, store, pin_factory, on_error)
    knobs.attach()
    log.info("knobs: %s", knobs.summary())
    return knobs


def _default_pin_factory():
    """gpiozero's default pin factory, or (None, why not) without GPIO hardware. Its fallback warnings are muted:
    the caller logs one line instead of four."""
    try:
        from gpiozero import Device
        from gpiozero.exc import PinFactoryFallback
    except ImportError as exc:
        return None, f"gpiozero is not installed: {exc}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PinFactoryFallback)
            Device.ensure_pin_factory()
    except Exception as exc:  # BadPinFactory, ImportError, OSError: every way of "no GPIO here"
        return None, f"gpiozero: {exc}"
    return Device.pin_factory, None
