"""What the service shows of itself: the status report it writes every second, and the status LED's state.

Kept apart from ``device/service.py`` so the coordinator reads as the main loop; this module only reads the
service's state (``Service`` fields, the engine's stats snapshot) and never changes it.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any

from . import health, hours
from .controls import Controls
from .schedule import ScheduleState
from .status import State, StatusReport
from .systemd import release_id, venv_id

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger("murmur.service")


def controls_dict(controls: Controls) -> dict[str, Any]:
    return {name: getattr(controls, name) for name in controls.__slots__}


def led_state(state: State, power: health.PowerWatch) -> str:
    """What the status LED shows: the state, or "power_warning" while playing after under-voltage or throttling
    since boot (the sound goes on; the technician should check the supply and the heat)."""
    if power.warning and state in (State.PLAYING, State.QUIET_HOURS):
        return "power_warning"
    return str(state)


def build_status(service: Service, *, playing: bool, sched: ScheduleState | None = None) -> StatusReport:
    """The status report of ``service`` now (device/status.py is the schema)."""
    engine, bundle = service.engine, service.bundle
    stats = engine.stats if engine is not None else None
    level = stats.level_dbfs_10s if stats is not None else -math.inf
    peak = stats.peak_dbfs_10s if stats is not None else -math.inf
    knobs: dict[str, Any] = controls_dict(service.store.snapshot())
    if service.knobs is not None:
        try:
            knobs["inputs"] = service.knobs.values()
        except Exception:  # a knob read must never stop the status
            log.exception("knob values failed")
    now_unix = service.clock.time()
    counters = service.counters
    return StatusReport(
        playing=bool(playing),
        ready=service.ready,
        state=service.state,
        message=service.message,
        level_dbfs_10s=round(level, 2) if math.isfinite(level) else -200.0,
        peak_dbfs_10s=round(peak, 2) if math.isfinite(peak) else -200.0,
        underruns=stats.underruns if stats else 0,
        frames_produced=stats.frames_produced if stats else 0,
        bundle_id=bundle.bundle_id if bundle else "",
        bundle_path=str(bundle.path) if bundle else "",
        bundle_age_s=round(now_unix - service.bundle_loaded_unix, 1),
        playlist_index=service.playlist.index,
        playlist_length=len(service.config.playback.bundles),
        uptime_s=round(service.clock.monotonic() - service.started_mono, 1),
        schedule=hours.describe(sched),
        knobs=knobs,
        restarts=counters.restarts,
        reloads=counters.reloads,
        rejected_reloads=counters.rejected_reloads,
        watchdog_pings=service.watchdog.pings,
        last_problem=counters.last_problem,
        cpu_temp_c=health.read_cpu_temp_c(),
        throttled=service.power.word,
        clock=service.hours.sync,
        release=release_id(),
        venv=venv_id(),
        updated_unix=now_unix,
        pid=os.getpid(),
    )
