"""Pure helpers for what the service shows of itself: the status LED's state and the controls as a plain dict.

The report itself is built by ``Service.status`` from its own fields (``murmur.device.appliance.status`` is the
schema); these helpers take values, never the service, so this module imports nothing of the coordinator.
"""

from __future__ import annotations

import logging
from typing import Any

from murmur.device.appliance import health
from murmur.device.appliance.status import State
from murmur.device.controls.values import Controls

log = logging.getLogger("murmur.service")


def controls_dict(controls: Controls) -> dict[str, Any]:
    return {name: getattr(controls, name) for name in controls.__slots__}


def led_state(state: State, power: health.PowerWatch) -> str:
    """What the status LED shows: the state, or "power_warning" while playing after under-voltage or throttling
    since boot (the sound goes on; the technician should check the supply and the heat)."""
    if power.warning and state in (State.PLAYING, State.QUIET_HOURS):
        return "power_warning"
    return str(state)
