"""The service's real clocks (``protocols.Clock``); ``murmur.device.testing.fakes.SimClock`` is the simulated one."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from murmur.device.appliance import health
from murmur.device.appliance.status import ClockSync


class WallClock:
    """The real clocks: local wall time for the schedule, unix time for files, monotonic for durations."""

    def now(self) -> datetime:
        return datetime.now()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(timeout)

    def sync(self) -> ClockSync:
        """Whether the wall clock was set from network time since boot."""
        return health.read_clock_sync()
