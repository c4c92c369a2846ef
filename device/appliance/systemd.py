"""systemd plumbing for the service: sd_notify (READY, WATCHDOG, STATUS) over ``NOTIFY_SOCKET``, the watchdog
interval, logging to journald, handing freed heap back to the kernel, and which release and venv this process runs.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from murmur import REPO_ROOT

DEFAULT_WATCHDOG_PING_S = 5.0  # when not under a systemd watchdog (WATCHDOG_USEC unset)


class Notifier:
    """sd_notify over the ``NOTIFY_SOCKET`` AF_UNIX datagram socket (abstract '@name' or a path), non-blocking so
    the producer loop never waits on it. Does nothing when there is no socket (not run by systemd)."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self.address: str | None = None
        self.failed = 0
        self._sock: socket.socket | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, message: str) -> bool:
        """Send one datagram, e.g. 'READY=1' or 'STATUS=…'. False (counted) if it could not be sent now."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto(message.encode("utf-8", "replace"), self.address)
        except OSError:  # queue full (BlockingIOError), socket gone: never block, never raise
            self.failed += 1
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_ping_interval_s(environ: dict[str, str] | os._Environ = os.environ) -> float:
    """A quarter of systemd's WatchdogSec (``WATCHDOG_USEC``; ignored if ``WATCHDOG_PID`` is another
    process), so two pings may be lost before the deadline."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return DEFAULT_WATCHDOG_PING_S
    try:
        return max(0.05, int(usec) / 1e6 / 4.0)
    except ValueError:
        return DEFAULT_WATCHDOG_PING_S


class Watchdog:
    """WATCHDOG=1 from the engine's producer (``on_frame``, every ``interval_s``), but only while the main loop
    also says it is alive (``alive()`` each tick, within ``grace_s``): a stalled generator or a hung main loop both
    stop the pings, and systemd restarts the service."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.interval_s = watchdog_ping_interval_s()
        self.grace_s = max(5.0, 4 * self.interval_s)
        self.pings = 0
        self._last_ping = -math.inf
        self._heartbeat = time.monotonic()  # real monotonic time: systemd's watchdog is real

    def alive(self) -> None:
        self._heartbeat = time.monotonic()

    def on_frame(self, frame_index: int) -> None:
        """Producer thread, once per frame: cheap, never blocks."""
        now = time.monotonic()
        if now - self._last_ping >= self.interval_s and now - self._heartbeat <= self.grace_s:
            self._last_ping = now
            if self.notifier.notify("WATCHDOG=1"):
                self.pings += 1


def setup_logging(level: int = logging.INFO) -> None:
    """journald (with priorities) when run by systemd and systemd-python is present, plain stderr otherwise."""
    root = logging.getLogger()
    root.setLevel(level)
    handler: logging.Handler | None = None
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="murmur")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        except ImportError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]


def release_free_heap() -> bool:
    """Hand the heap pages freed by a bundle change (old interpreter, seeds, crossfade voice) back to the kernel:
    glibc keeps them in its per-thread arenas otherwise, and RSS steps up with every change. glibc only."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    return bool(_malloc_trim and _malloc_trim(0))


_malloc_trim: Any = None  # libc's malloc_trim once looked up; False where there is none


@functools.cache
def release_id() -> str | None:
    """The deployed release directory name (/opt/murmur/releases/<id>), or $MURMUR_RELEASE."""
    if os.environ.get("MURMUR_RELEASE"):
        return os.environ["MURMUR_RELEASE"]
    return REPO_ROOT.name if REPO_ROOT.parent.name == "releases" else None


def pin_import_paths() -> None:
    """Resolve the symlinks in ``sys.path`` (``/opt/murmur/current/venv/...`` -> ``/opt/murmur/venvs/<key>/...``).

    The unit starts ``/opt/murmur/current/venv/bin/python``; without this, a module imported late (the TFLite
    runtime loads with the first bundle) would come from whatever release ``current`` points at by then — a deploy
    switches it a moment before it restarts the service. The code itself is already pinned: ``python -m`` puts the
    resolved working directory on the path.
    """
    sys.path[:] = [os.path.realpath(p) if p else p for p in sys.path]


@functools.cache
def venv_id() -> str | None:
    """The venv this process runs in (/opt/murmur/venvs/<key>, resolved at start-up), for the health report."""
    prefix = Path(sys.prefix).resolve()
    return prefix.name if prefix.parent.name == "venvs" else None
