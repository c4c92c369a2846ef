"""The appliance's coordinator: ``Service`` runs one engine for ``python -m murmur.device serve`` (``device/cli/serve.py``,
which builds the real engine, sink and knobs; deploy/murmur.service runs it).

What it does, once a second in the main loop: applies the opening hours (``engine.fade_to``), rotates the
playlist, handles reload (SIGHUP: re-read config and bundle, validate, crossfade; a bad one is logged and the
old sound keeps playing) and stop (SIGTERM: short fade, clean stop), restarts the generator when the output stays
digitally silent or frozen while open, and writes the status report (``murmur.device.appliance.status``) on tmpfs. READY=1 goes to
systemd once the first audio block reached the sound card (or once it waits for a sound card that is missing:
it plays as soon as one appears); WATCHDOG=1 comes from the engine's producer loop
(and only while this main loop is alive too), so a stalled generator or a hung service gets restarted.

Writes: the status file (tmpfs, /run/murmur) every second and, only when the playlist entry changes, the
playlist position in the StateDirectory (/var/lib/murmur), atomically. Nothing else.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from murmur.device.appliance import health, hours, reporting
from murmur.device.appliance.clock import WallClock
from murmur.device.appliance.config import Config, load_config
from murmur.device.appliance.health import SilenceDetector
from murmur.device.appliance.hours import START_FADE_S
from murmur.device.appliance.playlist import PlaylistState, read_playlist_state, write_playlist_state
from murmur.device.appliance.reporting import controls_dict
from murmur.device.appliance.schedule import OPEN_PHASES, ScheduleState
from murmur.device.appliance.status import State, StatusReport
from murmur.device.appliance.systemd import Notifier, Watchdog, release_free_heap, release_id, venv_id
from murmur.device.bundle import Bundle, load_bundle
from murmur.device.controls.values import ControlStore
from murmur.device.errors import BundleError, ConfigError, DeviceError, OutputDeviceError
from murmur.device.generate.step_model import open_step_model
from murmur.device.playback.engine import same_stft
from murmur.device.protocols import Clock, EngineLike

if TYPE_CHECKING:  # the knobs package is imported only where knobs are built
    from murmur.device.controls.base import Knobs

log = logging.getLogger("murmur.service")

START_TIMEOUT_S = 30.0  # first audio block must reach the sink within this
OUTPUT_RETRY_S = 30.0  # no sound card: try the output again this often even if the card list did not change
SOUND_CARDS = Path("/proc/asound/cards")
STOP_FADE_S = 0.5  # fade out on SIGTERM


# ---------------------------------------------------------------------------------------------------------------
# small pure-ish parts
def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [""])[0].split("; available outputs")[0]


def _sound_cards() -> str:
    """The kernel's list of sound cards ("" when it has none, or no ALSA): cheap to poll, changes when one appears."""
    try:
        return SOUND_CARDS.read_text()
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ServiceCounters:
    restarts: int = 0
    reloads: int = 0
    rejected_reloads: int = 0
    rotations: int = 0
    last_problem: str | None = None


class Service:
    """The appliance's main loop around one Engine. Build, ``run()`` (blocks), stop with ``request_stop()``.

    Injected: ``engine_factory(bundle, *, config, store, on_frame) -> EngineLike`` (it opens and steps the
    bundle's model, once), ``knobs_factory(config, store) -> Knobs | None`` (or None: no knobs), ``notifier``,
    ``clock`` (``protocols.Clock``), ``bundle_loader(path) -> Bundle`` (``load_bundle``: files and checksums) and
    ``model_check(bundle)`` (``open_step_model``: opens and steps the model before a restart onto another bundle, so
    a bad one is refused before the old sound stops).
    Knob actions for the playlist reach it through the ``ControlStore`` (``take_service_events``), read by the
    main loop: the audio thread never relays them.
    """

    def __init__(self, config: Config, *, engine_factory: Callable[..., EngineLike],
                 knobs_factory: Callable[..., Knobs | None] | None, config_path: Path | None = None,
                 notifier: Notifier | None = None, clock: Clock | None = None, status_file: Path | None = None,
                 state_dir: Path | None = None, bundle_loader: Callable[[Path], Bundle] = load_bundle,
                 model_check: Callable[[Bundle], object] = open_step_model, tick_s: float = 1.0, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.config = config
        self.config_path = config_path or config.path
        self.engine_factory = engine_factory
        self.knobs_factory = knobs_factory
        self.notifier = notifier or Notifier()
        self.clock: Clock = clock or WallClock()
        self.status_file = status_file
        self.state_dir = state_dir
        self.bundle_loader = bundle_loader
        self.model_check = model_check
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
        self.hours = hours.OpeningHours(self.clock)
        self.power = health.PowerWatch(lambda: health.read_throttled())  # looked up per call: tests patch it
        self.ready = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.watchdog = Watchdog(self.notifier)
        self._trim_pending = False  # a bundle changed: release freed heap once its crossfade is over
        self._status_text = ""
        self.started_mono = self.clock.monotonic()
        self._engine_started_mono = self.started_mono
        self.bundle_loaded_unix = self.clock.time()

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
        bundles = self.config.playback.bundles
        self.playlist = read_playlist_state(self.state_dir, bundles, self.clock.time())
        self.knobs = self.knobs_factory(self.config, self.store) if self.knobs_factory else None
        self._set_led(self._led_state())
        try:
            self._start_first_playable(self.playlist.index)
        except OutputDeviceError as exc:
            if not self._wait_for_output(exc):
                return  # asked to stop while waiting
        self.ready = True
        self.notifier.notify("READY=1")
        log.info("playing %s (%s); schedule: %s; volume cap %.1f dBFS; output %s", self.playing_bundle.bundle_id,
                 self.playing_bundle.path, self.config.schedule.describe(), self.config.playback.volume_cap_db,
                 self.config.playback.output_device or "system default")
        self.tick()

    def _wait_for_output(self, first: OutputDeviceError) -> bool:
        """No sound card yet (a USB interface switched on with the amplifier, a HAT's driver late): wait for it
        and play as soon as it appears, never exit into a failed state only a person could clear. Meanwhile the
        state is "error" with the reason (status report, LED), the service counts as started for systemd
        (READY=1: nothing is wrong with the service itself) and keeps the watchdog fed. The output is tried again
        as soon as the kernel's card list (/proc/asound/cards) changes, and every ``OUTPUT_RETRY_S`` anyway.
        True once playing; False if asked to stop first."""
        waited_from = self.clock.monotonic()
        message = f"waiting for the sound card: {_first_line(first)}"
        log.warning("%s; it plays as soon as one appears", message)
        self.state, self.message = State.ERROR, message
        self._set_led(self._led_state())
        self.notifier.notify("READY=1")
        self.write_status(playing=False)
        cards, last_try = _sound_cards(), self.clock.monotonic()
        while not self._stop.is_set():
            self.clock.wait(self._wake, self.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.watchdog.alive()
            if self.notifier.notify("WATCHDOG=1"):
                self.watchdog.pings += 1
            if self._reload.is_set():  # e.g. a new output_device: take the config, try it at once
                self._reload.clear()
                try:
                    self.config = load_config(self.config_path)
                except ConfigError as exc:
                    self._reject(exc, "keeping the running config")
                last_try = -math.inf
            now_cards = _sound_cards()
            if now_cards == cards and self.clock.monotonic() - last_try < OUTPUT_RETRY_S:
                self.write_status(playing=False)
                continue
            cards, last_try = now_cards, self.clock.monotonic()
            try:
                self._start_first_playable(self.playlist.index)
            except OutputDeviceError as exc:
                self.message = f"waiting for the sound card: {_first_line(exc)}"
                self.write_status(playing=False)
                continue
            log.info("sound card found after %.0f s of waiting: playing", self.clock.monotonic() - waited_from)
            self.message = None
            return True
        self.state, self.message = State.STOPPED, None
        return False

    def _start_first_playable(self, index: int) -> None:
        """Play the playlist entry at ``index``, or the next one whose files check and whose model runs (each
        failure logged). The engine opens the model: once per start."""
        bundles = self.config.playback.bundles
        errors = []
        for offset in range(len(bundles)):
            i = (index + offset) % len(bundles)
            try:
                bundle = self.bundle_loader(bundles[i])
                self._start_engine(bundle)
            except BundleError as exc:
                log.error("bundle %s cannot play: %s", bundles[i], exc)
                errors.append(str(exc))
                continue
            if i != self.playlist.index:
                self.playlist = PlaylistState(i, self.clock.time())
                write_playlist_state(self.state_dir, self.playlist, bundles[i])
            self.bundle, self.bundle_loaded_unix = bundle, self.clock.time()
            return
        raise BundleError("no playable bundle in the config: " + "; ".join(errors))

    def _start_engine(self, bundle: Bundle) -> None:
        engine = self.engine_factory(bundle, config=self.config, store=self.store, on_frame=self.watchdog.on_frame)
        sched = self.hours.now(self.config.schedule)
        engine.fade_to(0.0, 0.0)  # start silent; the schedule decides below how fast it comes up
        self.watchdog.alive()
        engine.start()
        self.engine = engine
        if not engine.wait_started(self.start_timeout_s):
            error = engine.error
            engine.stop()
            raise DeviceError(f"no audio reached the output within {self.start_timeout_s:.0f} s"
                              + (f" ({error})" if error else "; check the output device name and that the card is free"))
        self._engine_started_mono = self.clock.monotonic()
        self.detector.reset()
        self.hours.forget()
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
        return reporting.led_state(self.state, self.power)

    def _check_power(self) -> None:
        advice = self.power.poll()
        for line in advice:
            log.warning("power: %s", line)
        if advice:
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
        self.watchdog.alive()
        if self._reload.is_set():
            self._reload.clear()
            self.notifier.notify("RELOADING=1")  # systemd shows "reloading" until READY=1 (sd_notify protocol)
            try:
                self.reload()
            finally:
                self.notifier.notify("READY=1")
        for event in self.store.take_service_events():
            self._step_playlist(+1 if event == "next_bundle" else -1, reason=f"knob action {event}")
        sched = self.hours.now(self.config.schedule)
        self._apply_schedule(sched)
        self._check_power()
        self._maybe_rotate()
        if not self._check_health(sched):
            return False
        self.write_status(playing=self._is_playing(sched), sched=sched)
        return True

    def _apply_schedule(self, sched: ScheduleState, *, starting: bool = False) -> None:
        """The state and LED for open/closed; the engine's fade when the target moves (``hours.command``)."""
        state = State.PLAYING if sched.is_open else State.QUIET_HOURS
        if state != self.state:
            self.state = state
            self._set_led(self._led_state())
        self.hours.command(self.running_engine, sched, starting=starting)

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
        """Validate ``path`` and change to it; False (logged, old keeps playing) if it cannot play."""
        try:
            self._change_bundle(self.bundle_loader(path), self.config, reason=reason)
        except DeviceError as exc:
            log.error("%s: bundle %s rejected, the current one keeps playing: %s", reason, path, exc)
            self.message = f"rejected {path}: {exc}"
            return False
        self.message = None
        return True

    def _change_bundle(self, bundle: Bundle, config: Config, *, reason: str, restart_because: str = "") -> None:
        """The one way the sound changes bundle (playlist step, rotation, reload): crossfade when the engine can
        (same STFT settings, and no ``restart_because``), else restart the generator on ``bundle`` under
        ``config``; if that fails, the previous bundle and config play again. Raises DeviceError: then nothing
        changed. The new model is opened and stepped before the old sound is touched."""
        if not restart_because and self.bundle is not None and same_stft(bundle.audio, self.bundle.audio):
            self.running_engine.swap_bundle(bundle, config.playback.crossfade_s)
            log.info("%s: crossfading to %s (%s) over %.1f s", reason, bundle.bundle_id, bundle.path,
                     config.playback.crossfade_s)
        else:
            self.model_check(bundle)
            old_config, self.config = self.config, config
            try:
                self._restart_engine(bundle, reason=f"{reason}: {restart_because or 'other STFT settings'}")
            except DeviceError:
                self.config = old_config
                self._restart_engine(self.playing_bundle, reason=f"{reason} failed: back to the previous bundle")
                raise
        self.bundle, self.bundle_loaded_unix = bundle, self.clock.time()
        self._trim_pending = True

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
                          or new.playback.volume_cap_db != old.playback.volume_cap_db
                          or new.playback.vocoder != old.playback.vocoder)
        try:
            self._change_bundle(bundle, new, reason="reload",
                                restart_because="output device, volume cap or vocoder changed" if output_changed else "")
        except DeviceError as exc:
            return self._reject(exc, "keeping the running config and bundle")
        # The sound is committed: now the rest of the new config.
        self.config = new
        self.detector.restart_after_s = new.playback.silence_restart_s
        if new.sampler != old.sampler:
            self.store.apply(reporting.controls_dict(new.sampler), notify=False)  # not a knob: the room keeps its
        sources = ("knobs", "osc", "room", "midi")
        if any(getattr(new, s) != getattr(old, s) for s in sources) and self.knobs_factory is not None:
            if self.knobs is not None:
                self.knobs.close()
            self.knobs = self.knobs_factory(new, self.store)
        if playlist.index != self.playlist.index or bundles[playlist.index] != self.playing_bundle.path:
            write_playlist_state(self.state_dir, playlist, bundles[playlist.index])
        self.playlist = playlist
        self.hours.forget()  # the schedule may have changed: re-command it
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
        # The engine stamps last_progress_monotonic from its audio threads with its own time.monotonic() (they know
        # no injected Clock), so the age is taken on that clock; self.clock would compare two different time bases.
        return time.monotonic() - self.engine.stats.last_progress_monotonic < 5.0

    # -- status -----------------------------------------------------------------------------------------------
    def status(self, *, playing: bool, sched: ScheduleState | None = None) -> StatusReport:
        """The status report now (``murmur.device.appliance.status`` is the schema)."""
        engine, bundle = self.engine, self.bundle
        stats = engine.stats if engine is not None else None
        level = stats.level_dbfs_10s if stats is not None else -math.inf
        peak = stats.peak_dbfs_10s if stats is not None else -math.inf
        knobs: dict[str, Any] = controls_dict(self.store.snapshot())
        reports: dict[str, dict] = {}
        if self.knobs is not None:
            try:
                knobs["inputs"] = self.knobs.values()
                reports = self.knobs.reports()
            except Exception:  # a knob read must never stop the status
                log.exception("knob values failed")
        now_unix = self.clock.time()
        counters = self.counters
        return StatusReport(
            playing=bool(playing),
            ready=self.ready,
            state=self.state,
            message=self.message,
            level_dbfs_10s=round(level, 2) if math.isfinite(level) else -200.0,
            peak_dbfs_10s=round(peak, 2) if math.isfinite(peak) else -200.0,
            underruns=stats.underruns if stats else 0,
            frames_produced=stats.frames_produced if stats else 0,
            reseeds=stats.reseeds if stats else 0,
            engine_load=round(stats.cpu_load, 3) if stats else 0.0,
            vocoder=stats.vocoder if stats else "",
            bundle_id=bundle.bundle_id if bundle else "",
            bundle_path=str(bundle.path) if bundle else "",
            bundle_age_s=round(now_unix - self.bundle_loaded_unix, 1),
            playlist_index=self.playlist.index,
            playlist_length=len(self.config.playback.bundles),
            uptime_s=round(self.clock.monotonic() - self.started_mono, 1),
            schedule=hours.describe(sched),
            knobs=knobs,
            osc=reports.get("osc", {}),
            room=reports.get("room", {}),
            midi=reports.get("midi", {}),
            restarts=counters.restarts,
            reloads=counters.reloads,
            rejected_reloads=counters.rejected_reloads,
            watchdog_pings=self.watchdog.pings,
            last_problem=counters.last_problem,
            cpu_temp_c=health.read_cpu_temp_c(),
            throttled=self.power.word,
            clock=self.hours.sync,
            release=release_id(),
            venv=venv_id(),
            updated_unix=now_unix,
            pid=os.getpid(),
        )

    def write_status(self, *, playing: bool, sched: ScheduleState | None = None) -> None:
        status = self.status(playing=playing, sched=sched)
        if self.status_file is not None:
            try:
                health.write_status(self.status_file, status)
            except OSError as exc:
                log.warning("cannot write %s: %s", self.status_file, exc)
        text = status.summary()
        if text != self._status_text:
            self._status_text = text
            self.notifier.notify(f"STATUS={text[:400]}")


