"""``python -m device serve --config FILE``: the appliance as a systemd service (deploy/murmur.service).

What it does, once a second in the main loop: applies the opening hours (``engine.fade_to``), rotates the
playlist, handles reload (SIGHUP: re-read config and bundle, validate, crossfade; a bad one is logged and the
old sound keeps playing) and stop (SIGTERM: short fade, clean stop), restarts the generator when the output stays
digitally silent or frozen while open, and writes the status file (``device.health``) on tmpfs. READY=1 goes to
systemd once the first audio block reached the sound card; WATCHDOG=1 comes from the engine's producer loop
(and only while this main loop is alive too), so a stalled generator or a hung service gets restarted.

Writes: the status file (tmpfs, /run/murmur) every second and, only when the playlist entry changes, the
playlist position in the StateDirectory (/var/lib/murmur), atomically. Nothing else.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import health
from .atomic import replace_file
from .bundle import Bundle, load_bundle
from .config import Config, load_config
from .controls import Controls, ControlStore
from .errors import BundleError, ConfigError, DeviceError
from .protocols import Clock, EngineLike
from .schedule import OPEN_PHASES, ScheduleState, schedule_state
from .status import ClockSync, State, StatusReport

if TYPE_CHECKING:  # the knobs package is imported only where knobs are built
    from .knobs.base import Knobs

log = logging.getLogger("murmur.service")

START_TIMEOUT_S = 30.0  # first audio block must reach the sink within this
START_FADE_S = 2.0  # fade in after (re)start in the middle of opening hours
STOP_FADE_S = 0.5  # fade out on SIGTERM
SILENT_DBFS = -100.0  # RMS over 10 s below this counts as digital silence
DEFAULT_WATCHDOG_PING_S = 5.0  # when not under a systemd watchdog (WATCHDOG_USEC unset)
STATE_FILE = "playlist.json"
BUFFER_FRAMES = 4  # audio computed ahead (46 ms at hop 512/44.1 kHz): one more than the engine's default for
# margin, small enough that a knob still reaches the sound in <= 100 ms; the engine grows it after underruns
SINK_ENV = "MURMUR_SINK"  # "pyaudio" (default), "null", "wav:PATH": picks the sink without editing the config


# ---------------------------------------------------------------------------------------------------------------
# systemd notify protocol
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


# ---------------------------------------------------------------------------------------------------------------
# clocks (injected so the benchmark can run a day of schedule/rotation machinery in minutes)
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


# ---------------------------------------------------------------------------------------------------------------
# small pure-ish parts
class SilenceDetector:
    """Says when the output has stayed digitally silent or bit-identical for ``restart_after_s`` while it should
    sound. ``update`` is fed once per main-loop tick; ``active`` False (closed, fading, starting) resets it."""

    def __init__(self, restart_after_s: float, silent_dbfs: float = SILENT_DBFS) -> None:
        self.restart_after_s = restart_after_s
        self.silent_dbfs = silent_dbfs
        self._silent_since: float | None = None
        self._stuck_since: float | None = None
        self._last_identical = 0

    def reset(self) -> None:
        self._silent_since = self._stuck_since = None
        self._last_identical = 0

    def update(self, now_s: float, *, active: bool, level_dbfs: float, identical_blocks: int) -> str | None:
        """A reason to restart ('digitally silent …', 'frozen …') or None. ``now_s``: seconds of audio produced
        (the service passes frames × frame duration, the time base of the engine's level window)."""
        growing = identical_blocks > self._last_identical
        self._last_identical = identical_blocks
        if not active or self.restart_after_s <= 0:
            self._silent_since = self._stuck_since = None
            return None
        silent = not level_dbfs > self.silent_dbfs  # -inf and NaN count as silent
        self._silent_since = (self._silent_since if self._silent_since is not None else now_s) if silent else None
        self._stuck_since = (self._stuck_since if self._stuck_since is not None else now_s) if growing else None
        if self._silent_since is not None and now_s - self._silent_since >= self.restart_after_s:
            return (f"output digitally silent (RMS {level_dbfs:.1f} dBFS over 10 s, below {self.silent_dbfs:.0f}) "
                    f"for {now_s - self._silent_since:.0f} s while open")
        if self._stuck_since is not None and now_s - self._stuck_since >= self.restart_after_s:
            return (f"output frozen ({identical_blocks} consecutive bit-identical blocks) for "
                    f"{now_s - self._stuck_since:.0f} s while open")
        return None


@dataclass
class PlaylistState:
    """Which playlist entry plays and since when (unix s); persisted so a reboot resumes it."""

    index: int = 0
    since_unix: float = 0.0


def read_playlist_state(state_dir: Path | None, bundles: tuple[Path, ...], now_unix: float) -> PlaylistState:
    """The saved position if it still fits the playlist (same entry path), else the start of the playlist."""
    if state_dir is None:
        return PlaylistState(0, now_unix)
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        saved_path, index, since = Path(data["bundle_path"]), int(data["index"]), float(data["since_unix"])
    except (OSError, ValueError, KeyError, TypeError):
        return PlaylistState(0, now_unix)
    if 0 <= index < len(bundles) and bundles[index] == saved_path:
        return PlaylistState(index, min(since, now_unix))
    if saved_path in bundles:  # the playlist was edited: follow the entry, restart its time
        return PlaylistState(bundles.index(saved_path), now_unix)
    return PlaylistState(0, now_unix)


def write_playlist_state(state_dir: Path | None, state: PlaylistState, bundle_path: Path) -> None:
    """Atomic, durable write (temp file, fsync, rename, fsync dir): a power cut leaves the old or the new one."""
    if state_dir is None:
        return
    payload = json.dumps({"index": state.index, "since_unix": state.since_unix, "bundle_path": str(bundle_path)})
    replace_file(state_dir / STATE_FILE, payload.encode(), durable=True)


def same_stft(a: Bundle | None, b: Bundle | None) -> bool:
    """True when the engine can crossfade from ``a`` to ``b`` (same sample rate, n_fft and hop)."""
    if a is None or b is None:
        return False
    return (a.audio.sample_rate_hz, a.audio.n_fft, a.audio.hop_length) == (b.audio.sample_rate_hz, b.audio.n_fft, b.audio.hop_length)


def check_model(bundle: Bundle) -> None:
    """The TFLite runtime really loads and steps the bundle's model. Raises BundleError."""
    from .step_model import open_step_model

    open_step_model(bundle)


def validate_bundle(path: Path) -> Bundle:
    """Load and check a bundle (files, checksums, settings) and its model. Raises BundleError."""
    bundle = load_bundle(path)
    check_model(bundle)
    return bundle


def make_sink(config: Config, spec: str | None = None):
    """The output: PyAudio on the configured device name by default; ``MURMUR_SINK``/``--sink`` = 'null' or
    'wav:PATH' for tests and dry runs."""
    from . import sinks

    spec = spec if spec is not None else os.environ.get(SINK_ENV, "pyaudio")
    if spec == "null":  # paced like a sound card
        return sinks.NullSink(realtime=True)
    if spec == "null-fast":  # as fast as the generator runs
        return sinks.NullSink(realtime=False)
    if spec.startswith("wav:"):
        return sinks.WavSink(spec[4:])
    if spec not in ("", "pyaudio"):
        raise ConfigError(f"{SINK_ENV}={spec!r}: use pyaudio, null, null-fast or wav:PATH")
    return sinks.PyAudioSink(config.playback.output_device)


def default_engine_factory(bundle: Bundle, *, config: Config, store: ControlStore, on_frame, on_event, sink_spec=None):
    """The real engine on the configured sink."""
    from .engine import Engine

    return Engine(bundle, sink=make_sink(config, sink_spec), controls=store, volume_cap_db=config.playback.volume_cap_db,
                  on_frame=on_frame, on_event=on_event, buffer_frames=BUFFER_FRAMES)


def default_knobs_factory(config: Config, store: ControlStore):
    """The knobs helper's GPIO inputs when it is installed and configured; never stops the sound if it fails."""
    try:
        from .knobs import start_knobs
    except ImportError as exc:
        log.warning("knobs: package not available (%s); playing on the [sampler] values", exc)
        return None
    if isinstance(config.knobs, dict):  # raw tables: the parser was missing at load
        return None
    try:
        return start_knobs(config.knobs, store, on_error=lambda message: log.warning("knobs: %s", message))
    except Exception as exc:  # GPIO missing/busy: play without knobs rather than not at all
        log.warning("knobs: could not start (%s); playing on the [sampler] values", exc)
        return None


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
    code_root = Path(__file__).resolve().parent.parent
    return code_root.name if code_root.parent.name == "releases" else None


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


def _controls_dict(controls: Controls) -> dict[str, Any]:
    return {name: getattr(controls, name) for name in controls.__slots__}


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ServiceCounters:
    restarts: int = 0
    reloads: int = 0
    rejected_reloads: int = 0
    rotations: int = 0
    watchdog_pings: int = 0
    last_problem: str | None = None


class Service:
    """The appliance's main loop around one Engine. Build, ``run()`` (blocks), stop with ``request_stop()``.

    Injected: ``engine_factory(bundle, *, config, store, on_frame, on_event)``, ``knobs_factory(config, store)``,
    ``notifier``, ``clock`` (``WallClock``), ``bundle_loader(path) -> Bundle`` (``load_bundle``: files and
    checksums; the engine opens and steps the model itself) and ``startup_check(bundle)`` (``check_model``: at
    start-up, so that a playlist entry whose model does not run is skipped for the next one).
    """

    def __init__(self, config: Config, *, config_path: Path | None = None,
                 engine_factory: Callable[..., EngineLike] | None = None,
                 knobs_factory: Callable[..., Knobs | None] | None = default_knobs_factory,
                 notifier: Notifier | None = None, clock: Clock | None = None, status_file: Path | None = None, state_dir: Path | None = None,
                 bundle_loader: Callable[[Path], Bundle] = load_bundle,
                 startup_check: Callable[[Bundle], Any] | None = check_model, tick_s: float = 1.0,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.config = config
        self.config_path = config_path or config.path
        self.engine_factory = engine_factory or default_engine_factory
        self.knobs_factory = knobs_factory
        self.notifier = notifier or Notifier()
        self.clock: Clock = clock or WallClock()
        self.status_file = status_file
        self.state_dir = state_dir
        self.bundle_loader = bundle_loader
        self.startup_check = startup_check
        self.tick_s = tick_s
        self.start_timeout_s = start_timeout_s
        self.store = ControlStore(config.sampler)
        self.engine: EngineLike | None = None
        self.knobs: Knobs | None = None
        self.bundle: Bundle | None = None
        self.counters = ServiceCounters()
        self.detector = SilenceDetector(config.playback.silence_restart_s)
        self.playlist = PlaylistState()
        self.state = State.STARTING
        self.message: str | None = None
        self.clock_sync = ClockSync.UNKNOWN
        self._power_word = 0  # throttle bits already reported in the log
        self._throttled: str | None = None  # the last throttle word read (hex), None: not a Pi
        self.ready = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._events: list[str] = []  # next_bundle / previous_bundle from the producer thread
        self._events_lock = threading.Lock()
        self._ping_interval_s = watchdog_ping_interval_s()
        self._last_ping = -math.inf
        self._heartbeat = time.monotonic()  # main loop alive (real monotonic: the watchdog is real)
        self._heartbeat_grace_s = max(5.0, 4 * self._ping_interval_s)
        self._commanded: float | None = None
        self._trim_pending = False  # a bundle changed: release freed heap once its crossfade is over
        self._status_text = ""
        self._started_mono = self.clock.monotonic()
        self._engine_started_mono = self._started_mono
        self._bundle_loaded_unix = self.clock.time()

    @property
    def playing_bundle(self) -> Bundle:
        """The bundle the engine plays: set at start-up, before the main loop runs."""
        if self.bundle is None:
            raise DeviceError("the service has not loaded a bundle yet")
        return self.bundle

    @property
    def running_engine(self) -> EngineLike:
        """The engine: built at start-up, replaced (never left None) by every restart that returns."""
        if self.engine is None:
            raise DeviceError("the service has no engine running")
        return self.engine

    # -- requests (signal handlers and other threads) ---------------------------------------------------------
    def request_reload(self) -> None:
        self._reload.set()
        self._wake.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- engine callbacks (producer thread: cheap, never blocks) ----------------------------------------------
    def _on_frame(self, frame_index: int) -> None:
        now = time.monotonic()
        if now - self._last_ping >= self._ping_interval_s and now - self._heartbeat <= self._heartbeat_grace_s:
            self._last_ping = now
            if self.notifier.notify("WATCHDOG=1"):
                self.counters.watchdog_pings += 1

    def _on_event(self, event: str) -> None:
        with self._events_lock:
            self._events.append(event)
        self._wake.set()

    # -- lifecycle --------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Start playing, loop until asked to stop, stop cleanly. 0 on a clean stop, 1 if it could not play."""
        try:
            self._start()
        except DeviceError as exc:
            self._fail(f"cannot start: {exc}")
            return 1
        try:
            while not self._stop.is_set():
                self.clock.wait(self._wake, self.tick_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                if not self.tick():
                    return 1
        finally:
            self._shutdown()
        return 0

    def _start(self) -> None:
        self.write_status(playing=False)  # "starting": the status command can tell a slow start from no service
        now_unix = self.clock.time()
        bundles = self.config.playback.bundles
        self.playlist = read_playlist_state(self.state_dir, bundles, now_unix)
        self.bundle = self._load_first_playable(self.playlist.index)
        self.knobs = self.knobs_factory(self.config, self.store) if self.knobs_factory else None
        self._set_led(self._led_state())
        self._start_engine(self.bundle)
        self.ready = True
        self.notifier.notify("READY=1")
        log.info("playing %s (%s); schedule: %s; volume cap %.1f dBFS; output %s", self.bundle.bundle_id,
                 self.bundle.path, self.config.schedule.describe(), self.config.playback.volume_cap_db,
                 self.config.playback.output_device or "system default")
        self.tick()

    def _load_first_playable(self, index: int) -> Bundle:
        """The playlist entry at ``index``, or the next one that validates (each failure logged)."""
        bundles = self.config.playback.bundles
        errors = []
        for offset in range(len(bundles)):
            i = (index + offset) % len(bundles)
            try:
                bundle = self.bundle_loader(bundles[i])
                if self.startup_check is not None:
                    self.startup_check(bundle)
            except DeviceError as exc:
                log.error("bundle %s cannot play: %s", bundles[i], exc)
                errors.append(str(exc))
                continue
            if i != self.playlist.index:
                self.playlist = PlaylistState(i, self.clock.time())
                write_playlist_state(self.state_dir, self.playlist, bundles[i])
            self._bundle_loaded_unix = self.clock.time()
            return bundle
        raise BundleError("no playable bundle in the config: " + "; ".join(errors))

    def _start_engine(self, bundle: Bundle) -> None:
        engine = self.engine_factory(bundle, config=self.config, store=self.store, on_frame=self._on_frame,
                                     on_event=self._on_event)
        sched = self._schedule_now()
        engine.fade_to(0.0, 0.0)  # start silent; the schedule decides below how fast it comes up
        self._heartbeat = time.monotonic()
        engine.start()
        self.engine = engine
        if not engine.wait_started(self.start_timeout_s):
            error = engine.error
            engine.stop()
            raise DeviceError(f"no audio reached the output within {self.start_timeout_s:.0f} s"
                              + (f" ({error})" if error else "; check the output device name and that the card is free"))
        self._engine_started_mono = self.clock.monotonic()
        self.detector.reset()
        self._commanded = None
        self._apply_schedule(sched, starting=True)

    def _shutdown(self) -> None:
        self.notifier.notify("STOPPING=1")
        if self.engine is not None:
            log.info("stopping: fading out over %.1f s", STOP_FADE_S)
            try:
                self.engine.stop(fade_s=STOP_FADE_S)
            except Exception:  # stopping must finish whatever the engine does
                log.exception("engine stop failed")
        self.ready = False
        if self.state != State.ERROR:
            self.state = State.STOPPED
        if self.knobs is not None:
            try:
                self.knobs.close()
            except Exception:
                log.exception("knobs close failed")
        self.write_status(playing=False)

    def _fail(self, message: str) -> None:
        log.error("%s", message)
        self.state, self.message = State.ERROR, message
        self.notifier.notify(f"STATUS=error: {message[:200]}")
        self._set_led(self._led_state())
        self.write_status(playing=False)
        if self.knobs is not None:
            self.knobs.close()

    def _led_state(self) -> str:
        """What the status LED shows: the state, or "power_warning" while playing after under-voltage or
        throttling since boot (the sound goes on; the technician should check the supply and the heat)."""
        if self._power_word and self.state in (State.PLAYING, State.QUIET_HOURS):
            return "power_warning"
        return str(self.state)

    def _check_power(self) -> None:
        """Read the firmware's throttle word; log what to do the first time each problem shows since boot."""
        self._throttled = health.read_throttled()
        try:
            value = int(self._throttled, 16) if self._throttled else 0
        except ValueError:
            return
        new = value & (health.UNDER_VOLTAGE_BITS | health.HEAT_BITS) & ~self._power_word
        if new:
            self._power_word |= new
            for advice in health.power_problems(hex(new)):
                log.warning("power: %s (%s)", advice, health.describe_throttled(self._throttled))
            self._set_led(self._led_state())

    def _set_led(self, state: str) -> None:
        if self.knobs is not None:
            try:
                self.knobs.set_status(state)
            except Exception:
                log.exception("status LED failed")

    # -- one main-loop iteration ------------------------------------------------------------------------------
    def tick(self) -> bool:
        """Reload, events, schedule, rotation, health; write status. False if the service must exit."""
        self._heartbeat = time.monotonic()
        if self._reload.is_set():
            self._reload.clear()
            self.notifier.notify("RELOADING=1")  # systemd shows "reloading" until READY=1 (sd_notify protocol)
            try:
                self.reload()
            finally:
                self.notifier.notify("READY=1")
        with self._events_lock:
            events, self._events = self._events, []
        for event in events:
            self._step_playlist(+1 if event == "next_bundle" else -1, reason=f"knob action {event}")
        sched = self._schedule_now()
        self._apply_schedule(sched)
        self._check_power()
        self._maybe_rotate()
        if not self._check_health(sched):
            return False
        self.write_status(playing=self._is_playing(sched), sched=sched)
        return True

    def _schedule_now(self) -> ScheduleState:
        """The opening hours at the clock's time; while the clock has no network time since boot, the config's
        unsynchronised_clock policy decides (logged when the synchronisation changes)."""
        sync = self.clock.sync()
        if sync != self.clock_sync:
            if sync == ClockSync.UNSYNCHRONISED:
                log.warning("clock: no network time since boot (%s is a guess); opening hours: %s", self.clock.now(),
                            "playing through until it is set" if self.config.schedule.unsynchronised_clock == "play"
                            else "following the clock as it is")
            elif self.clock_sync == ClockSync.UNSYNCHRONISED:
                log.info("clock: synchronised to network time (%s)", self.clock.now())
            self.clock_sync = sync
        return schedule_state(self.clock.now(), self.config.schedule,
                              clock_trusted=sync != ClockSync.UNSYNCHRONISED)

    def _apply_schedule(self, sched: ScheduleState, *, starting: bool = False) -> None:
        """Command the engine's fade when the schedule's target changes (edges, fades, reboot mid-window)."""
        state = State.PLAYING if sched.is_open else State.QUIET_HOURS
        if state != self.state:
            self.state = state
            self._set_led(self._led_state())
        key = sched.target_gain  # re-command only when the target moves (an edge, a reload, a restart)
        if key == self._commanded and not starting:
            return
        ramp = sched.ramp_s
        if starting and sched.target_gain > 0:
            ramp = max(ramp, START_FADE_S)
        self.running_engine.fade_to(sched.target_gain, ramp)
        if self._commanded is not None or starting:
            log.info("schedule: %s, output -> %.0f %% over %.1f s%s", sched.phase, 100 * sched.target_gain, ramp,
                     f"; next edge {sched.next_edge:%a %H:%M}" if sched.next_edge else "")
        self._commanded = key

    def _maybe_rotate(self) -> None:
        playback = self.config.playback
        if len(playback.bundles) < 2 or playback.rotate_minutes <= 0:
            return
        now = self.clock.time()
        if now < self.playlist.since_unix:  # the wall clock went back (NTP after a boot without RTC)
            self.playlist.since_unix = now
        if now - self.playlist.since_unix >= playback.rotate_minutes * 60.0:
            self._step_playlist(+1, reason=f"rotation every {playback.rotate_minutes:g} min")

    def _step_playlist(self, step: int, *, reason: str) -> None:
        bundles = self.config.playback.bundles
        if len(bundles) < 2:
            log.info("%s: the playlist has one entry; nothing to change", reason)
            return
        for k in range(1, len(bundles)):
            index = (self.playlist.index + step * k) % len(bundles)
            if self._swap_to(bundles[index], reason=reason):
                self.playlist = PlaylistState(index, self.clock.time())
                write_playlist_state(self.state_dir, self.playlist, bundles[index])
                self.counters.rotations += 1
                return
        self.playlist.since_unix = self.clock.time()  # nothing else plays: keep this one, try again next period

    def _swap_to(self, path: Path, *, reason: str) -> bool:
        """Validate ``path`` and crossfade to it; False (logged, old keeps playing) if it cannot play."""
        try:
            bundle = self.bundle_loader(path)
            if same_stft(bundle, self.bundle):
                self.running_engine.swap_bundle(bundle, self.config.playback.crossfade_s)  # checks the model first
            else:
                check_model(bundle)
                self._restart_engine(bundle, reason=f"{reason}: {bundle.bundle_id} has other STFT settings")
        except DeviceError as exc:
            log.error("%s: bundle %s rejected, the current one keeps playing: %s", reason, path, exc)
            self.message = f"rejected {path}: {exc}"
            if self.engine is None:  # a restart with the new one failed after the old engine stopped
                self._restart_engine(self.playing_bundle, reason="back to the previous bundle")
            return False
        log.info("%s: crossfading to %s (%s) over %.1f s", reason, bundle.bundle_id, path, self.config.playback.crossfade_s)
        self.bundle = bundle
        self._bundle_loaded_unix = self.clock.time()
        self.message = None
        self._trim_pending = True
        return True

    # -- reload -----------------------------------------------------------------------------------------------
    def reload(self) -> bool:
        """SIGHUP: re-read config and bundle; apply only if all of it validates. Returns True if applied.

        The new bundle is checked (files and checksums here, the model by the engine's ``swap_bundle``, which
        opens and steps it before changing anything); nothing of the new config is applied before that passed.
        """
        log.info("reload: reading %s", self.config_path)
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            return self._reject(exc, "keeping the running config")
        old = self.config
        bundles = new.playback.bundles
        if self.bundle is not None and self.bundle.path in bundles:
            playlist = PlaylistState(bundles.index(self.bundle.path), self.playlist.since_unix)
        else:
            playlist = read_playlist_state(self.state_dir, bundles, self.clock.time())
        try:
            bundle = self.bundle_loader(bundles[playlist.index])
        except DeviceError as exc:
            return self._reject(exc, "keeping the running config and bundle")
        output_changed = (new.playback.output_device != old.playback.output_device
                          or new.playback.volume_cap_db != old.playback.volume_cap_db)
        if output_changed or not same_stft(bundle, self.bundle):
            why = "output device or volume cap changed" if output_changed else "the new bundle has other STFT settings"
            self.config = new
            try:
                self._restart_engine(bundle, reason=f"reload: {why}")
            except DeviceError as exc:
                self.config = old
                self._restart_engine(self.playing_bundle, reason="reload failed: back to the previous config and bundle")
                return self._reject(exc, "back to the previous config and bundle")
        else:
            try:
                self.running_engine.swap_bundle(bundle, new.playback.crossfade_s)
            except DeviceError as exc:
                return self._reject(exc, "keeping the running config and bundle")
            log.info("reload: crossfading to %s (%s) over %.1f s", bundle.bundle_id, bundle.path, new.playback.crossfade_s)
        # The sound is committed: now the rest of the new config.
        self.config = new
        self.bundle, self._bundle_loaded_unix = bundle, self.clock.time()
        self._trim_pending = True
        self.detector.restart_after_s = new.playback.silence_restart_s
        if new.sampler != old.sampler:
            self.store.update(**_controls_dict(new.sampler))
        if new.knobs != old.knobs and self.knobs_factory is not None:
            if self.knobs is not None:
                self.knobs.close()
            self.knobs = self.knobs_factory(new, self.store)
        if playlist.index != self.playlist.index or bundles[playlist.index] != self.bundle.path:
            write_playlist_state(self.state_dir, playlist, bundles[playlist.index])
        self.playlist = playlist
        self._commanded = None  # the schedule may have changed: re-command it
        self.counters.reloads += 1
        self.message = None
        return True

    def _reject(self, exc: Exception, what: str) -> bool:
        self.counters.rejected_reloads += 1
        self.message = f"reload rejected: {exc}"
        log.error("reload rejected, %s: %s", what, exc)
        return False

    # -- health -----------------------------------------------------------------------------------------------
    def _restart_engine(self, bundle: Bundle, *, reason: str) -> None:
        log.warning("restarting the generator: %s", reason)
        self.counters.restarts += 1
        self.counters.last_problem = reason
        old, self.engine = self.engine, None
        if old is not None:
            old.stop(fade_s=0.05)
        self._trim_pending = True
        self._start_engine(bundle)

    def _check_health(self, sched: ScheduleState) -> bool:
        engine = self.running_engine
        stats = engine.stats
        if self._trim_pending and not stats.swapping:
            self._trim_pending = False
            release_free_heap()
        error = engine.error
        reason = None
        if error is not None:
            reason = f"the generator stopped with an error: {error!r}"
        else:
            warm = self.clock.monotonic() - self._engine_started_mono > max(START_FADE_S, sched.ramp_s) + 1.0
            # Time in seconds of produced audio, the same base as the engine's 10-s level window.
            audio_s = stats.frames_produced * self.playing_bundle.audio.frame_s
            reason = self.detector.update(audio_s, active=sched.phase in OPEN_PHASES and warm,
                                          level_dbfs=stats.level_dbfs_10s, identical_blocks=stats.identical_blocks)
        if reason is None:
            return True
        try:
            self._restart_engine(self.playing_bundle, reason=reason)
        except DeviceError as exc:
            self._fail(f"generator restart failed: {exc}")
            return False
        return True

    def _is_playing(self, sched: ScheduleState) -> bool:
        if self.engine is None or not self.ready or not sched.is_open or self.engine.error is not None:
            return False
        return time.monotonic() - self.engine.stats.last_progress_monotonic < 5.0

    # -- status -----------------------------------------------------------------------------------------------
    def status(self, *, playing: bool, sched: ScheduleState | None = None) -> StatusReport:
        stats = self.engine.stats if self.engine is not None else None
        level = stats.level_dbfs_10s if stats is not None else -math.inf
        peak = stats.peak_dbfs_10s if stats is not None else -math.inf
        knobs: dict[str, Any] = _controls_dict(self.store.snapshot())
        if self.knobs is not None:
            try:
                knobs["inputs"] = self.knobs.values()
            except Exception:  # a knob read must never stop the status
                log.exception("knob values failed")
        now_unix = self.clock.time()
        return StatusReport(
            playing=bool(playing),
            ready=self.ready,
            state=self.state,
            message=self.message,
            level_dbfs_10s=round(level, 2) if math.isfinite(level) else -200.0,
            peak_dbfs_10s=round(peak, 2) if math.isfinite(peak) else -200.0,
            underruns=stats.underruns if stats else 0,
            frames_produced=stats.frames_produced if stats else 0,
            bundle_id=self.bundle.bundle_id if self.bundle else "",
            bundle_path=str(self.bundle.path) if self.bundle else "",
            bundle_age_s=round(now_unix - self._bundle_loaded_unix, 1),
            playlist_index=self.playlist.index,
            playlist_length=len(self.config.playback.bundles),
            uptime_s=round(self.clock.monotonic() - self._started_mono, 1),
            schedule=self._schedule_text(sched),
            knobs=knobs,
            restarts=self.counters.restarts,
            reloads=self.counters.reloads,
            rejected_reloads=self.counters.rejected_reloads,
            watchdog_pings=self.counters.watchdog_pings,
            last_problem=self.counters.last_problem,
            cpu_temp_c=health.read_cpu_temp_c(),
            throttled=self._throttled,
            clock=self.clock_sync,
            release=release_id(),
            venv=venv_id(),
            updated_unix=now_unix,
            pid=os.getpid(),
        )

    def _schedule_text(self, sched: ScheduleState | None) -> str:
        if sched is None:
            return ""
        if sched.next_edge is None:
            return sched.phase
        return f"{sched.phase} until {sched.next_edge:%a %H:%M}"

    def write_status(self, *, playing: bool, sched: ScheduleState | None = None) -> None:
        status = self.status(playing=playing, sched=sched)
        if self.status_file is not None:
            try:
                health.write_status(self.status_file, status)
            except OSError as exc:
                log.warning("cannot write %s: %s", self.status_file, exc)
        text = (f"{'playing' if playing else self.state} {status.bundle_id}"
                + (f" [{status.playlist_index + 1}/{status.playlist_length}]" if status.playlist_length > 1 else "")
                + (f"; {status.schedule}" if status.schedule else "")
                + (f"; {self.message}" if self.message else ""))
        if text != self._status_text:
            self._status_text = text
            self.notifier.notify(f"STATUS={text[:400]}")


# ---------------------------------------------------------------------------------------------------------------
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


def cli(argv: list[str]) -> int:
    """``python -m device serve --config FILE``: run the appliance until SIGTERM; SIGHUP reloads."""
    parser = argparse.ArgumentParser(prog=f"python -m device {argv[0] if argv else 'serve'}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("/etc/murmur/murmur.toml"), help="config file (TOML)")
    parser.add_argument("--status-file", type=Path, default=None,
                        help=f"status JSON (default ${health.STATUS_ENV}, $RUNTIME_DIRECTORY/status.json or {health.DEFAULT_STATUS_FILE})")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where the playlist position is kept (default $STATE_DIRECTORY; none: not kept)")
    parser.add_argument("--sink", default=None, help=f"pyaudio (default), null or wav:PATH (also ${SINK_ENV})")
    parser.add_argument("--check", action="store_true", help="validate the config and its bundles, then exit")
    args = parser.parse_args(argv[1:])
    pin_import_paths()
    venv_id()  # resolved (and cached) now, before a deploy can move `current`
    setup_logging()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        Notifier().notify(f"STATUS=config error: {str(exc)[:300]}")
        return 1
    if args.check:
        failed = 0
        for path in config.playback.bundles:
            try:
                bundle = validate_bundle(path)
                print(f"ok   {path}  ({bundle.bundle_id})")
            except DeviceError as exc:
                failed += 1
                print(f"BAD  {path}: {exc}")
        print(f"config {args.config}: {'ok' if not failed else f'{failed} bad bundle(s)'}")
        return 1 if failed else 0
    status_file = args.status_file
    if status_file is None:
        if os.environ.get(health.STATUS_ENV):
            status_file = Path(os.environ[health.STATUS_ENV])
        elif os.environ.get("RUNTIME_DIRECTORY"):
            status_file = Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0]) / "status.json"
        else:
            status_file = health.DEFAULT_STATUS_FILE
    state_dir = args.state_dir or (Path(os.environ["STATE_DIRECTORY"].split(":")[0]) if os.environ.get("STATE_DIRECTORY") else None)
    sink_spec = args.sink

    def engine_factory(bundle, **kwargs):
        return default_engine_factory(bundle, sink_spec=sink_spec, **kwargs)

    service = Service(config, config_path=args.config, engine_factory=engine_factory, status_file=status_file,
                      state_dir=state_dir)
    signal.signal(signal.SIGHUP, lambda *_: service.request_reload())
    signal.signal(signal.SIGTERM, lambda *_: service.request_stop())
    signal.signal(signal.SIGINT, lambda *_: service.request_stop())
    return service.run()
