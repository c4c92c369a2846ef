"""The service's opening-hours keeper: where the clock's time falls in ``[schedule]`` (with the unsynchronised-clock
policy, logged when the clock's synchronisation changes) and the fade it commands the engine, only when the
target moves. The schedule arithmetic itself is ``murmur.device.appliance.schedule`` (pure functions)."""

from __future__ import annotations

import logging

from murmur.device.appliance.schedule import Schedule, ScheduleState, schedule_state
from murmur.device.appliance.status import ClockSync
from murmur.device.protocols import Clock, EngineLike

log = logging.getLogger("murmur.service")

START_FADE_S = 2.0  # fade in after (re)start in the middle of opening hours


class OpeningHours:
    """State between ticks: the clock's last synchronisation (``sync``, for the status report) and the gain last
    commanded (so an unchanged target is not re-commanded every second)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sync = ClockSync.UNKNOWN
        self._commanded: float | None = None

    def now(self, schedule: Schedule) -> ScheduleState:
        """The opening hours at the clock's time; while the clock has had no network time since boot, the
        schedule's ``unsynchronised_clock`` policy decides."""
        sync = self.clock.sync()
        if sync != self.sync:
            if sync == ClockSync.UNSYNCHRONISED:
                log.warning("clock: no network time since boot (%s is a guess); opening hours: %s", self.clock.now(),
                            "playing through until it is set" if schedule.unsynchronised_clock == "play"
                            else "following the clock as it is")
            elif self.sync == ClockSync.UNSYNCHRONISED:
                log.info("clock: synchronised to network time (%s)", self.clock.now())
            self.sync = sync
        return schedule_state(self.clock.now(), schedule, clock_trusted=sync != ClockSync.UNSYNCHRONISED)

    def forget(self) -> None:
        """The next ``command`` fades whatever the target (after a restart or a reload)."""
        self._commanded = None

    def command(self, engine: EngineLike, sched: ScheduleState, *, starting: bool = False) -> None:
        """Fade the engine to the schedule's target when it moved (an edge, a reload, a restart); at a start in
        the middle of opening hours, fade in over at least START_FADE_S."""
        if sched.target_gain == self._commanded and not starting:
            return
        ramp = max(sched.ramp_s, START_FADE_S) if starting and sched.target_gain > 0 else sched.ramp_s
        engine.fade_to(sched.target_gain, ramp)
        if self._commanded is not None or starting:
            log.info("schedule: %s, output -> %.0f %% over %.1f s%s", sched.phase, 100 * sched.target_gain, ramp,
                     f"; next edge {sched.next_edge:%a %H:%M}" if sched.next_edge else "")
        self._commanded = sched.target_gain


def describe(sched: ScheduleState | None) -> str:
    """For the status report: 'open until Tue 18:00', 'always-open', '' before the first tick."""
    if sched is None:
        return ""
    return sched.phase if sched.next_edge is None else f"{sched.phase} until {sched.next_edge:%a %H:%M}"
