"""Service: hardening score, a simulated day of unattended running, real-time pacing, reload latency.

`make bench ARGS="--only service"`. Everything runs the real ``murmur.device.appliance.service.Service`` around the real
``murmur.device.playback.engine.Engine`` (real TFLite bundles, the real streaming vocoder) with a null sink, in this process, and
a WATCHDOG listener bound to its own ``NOTIFY_SOCKET`` (as systemd would).

- Exposure: ``systemd-analyze security --offline=true deploy/murmur.service``.
- Simulated 24 h: the service's clock is accelerated — its main loop ticks at the service's own tick (1 s of
  simulated time per tick; 10 s in quick mode), each tick waiting only a few real milliseconds — so the
  schedule (open 10:00-18:00 every day with 10-s fades), hourly playlist rotation between two bundles
  (validate + crossfade), a reload every 3 simulated hours (alternately a good one, a bad config and a corrupt
  bundle), the silence detector and the status file all run through a full day (08:00 to 08:00). Meanwhile the
  audio path runs as many real frames as the CPU gives it (unpaced null sink), far fewer than a real day's
  7.4 M. RSS is sampled every simulated hour; growth is reported per simulated hour and, taking the audio path
  as the cause, extrapolated to a real day's frames. Watchdog: the real-time gaps between WATCHDOG=1 datagrams,
  with WATCHDOG_USEC=2 s (pings every 0.5 s; the unit's WatchdogSec is 20 s); a miss is a gap over 2 s.
- Real-time pacing: the service on a null sink paced like a sound card (pulls every 11.6 ms, never waits for
  the producer, so a late block counts as an underrun) for 10 minutes (30 s in quick mode).
- Reload to new sound: config rewritten to the other bundle, then ``request_reload()`` (what SIGHUP calls);
  time until the crossfade starts in the producer, plus the audio already queued (ring + vocoder look-ahead)
  = when the new bundle is first heard.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from murmur import REPO_ROOT as ROOT
from murmur.device.appliance.clock import WallClock
from murmur.device.appliance.config import load_config
from murmur.device.appliance.service import Service
from murmur.device.appliance.status import ClockSync
from murmur.device.appliance.systemd import Notifier
from murmur.device.bundle import load_bundle
from murmur.device.cli.serve import BUFFER_FRAMES
from murmur.device.playback.engine import Engine
from murmur.device.playback.sinks import NullSink
from murmur.device.testing.fakes import NotifyListener

UNIT = ROOT / "deploy" / "murmur.service"
WORK = ROOT / "out" / "bench" / "service"
DEMO_CLIP = ROOT / "trainer" / "demo" / "demo.ogg"
FRAMES_PER_DAY = 24 * 3600 * 44100 / 512
SIM_HOURS = float(os.environ.get("MURMUR_BENCH_SIM_HOURS", "24"))


# -- fixtures ----------------------------------------------------------------------------------------------------
def bundles() -> list[Path]:
    """Two real bundles (3 x 192 LSTM, the trainer's default size, dynamic-range) trained briefly on two parts of
    the demo clip; cached in out/bench/service/ and reused while they load and have today's format."""
    from murmur.device.bundle import FORMAT_VERSION

    out = []
    for name, offset_s in (("a", 0.0), ("b", 12.0)):
        path = WORK / "bundles" / name
        try:
            current = load_bundle(path).format_version == FORMAT_VERSION  # older ones play another generator
        except Exception:
            current = False
        if not current:
            _train(path, offset_s)
        out.append(path)
    return out


def _train(path: Path, offset_s: float) -> None:
    import soundfile

    from murmur.trainer.pipeline import TrainOptions, train_bundle

    data, rate = soundfile.read(DEMO_CLIP, dtype="float32", always_2d=True)
    clip = data[int(offset_s * rate): int((offset_s + 10.0) * rate)].mean(axis=1)
    wav = WORK / f"clip-{path.name}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(wav, clip, rate, subtype="FLOAT")
    if path.exists():
        shutil.rmtree(path)
    options = TrainOptions(minutes=1.0, max_epochs=3, seed=1, cache_dir=WORK / "cache", name=f"bench-{path.name}",
                           export_reserve_s=0.0)
    train_bundle(wav, path, options)


def _bundle_format(paths: list[Path]) -> str:
    """The bundles' format versions, for the report (e.g. "2")."""
    return "/".join(sorted({str(load_bundle(p).format_version) for p in paths}))


class AcceleratedClock(WallClock):
    """Simulated wall/unix/monotonic time: each main-loop wait advances it by its whole timeout while waiting only
    ``real_wait_s`` of real time."""

    def __init__(self, start: datetime, real_wait_s: float) -> None:
        self.start, self.real_wait_s, self.offset = start, real_wait_s, 0.0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.offset)

    def time(self) -> float:
        return self.start.timestamp() + self.offset

    def monotonic(self) -> float:
        return 1e6 + self.offset

    def sync(self) -> ClockSync:
        return ClockSync.SYNCHRONISED  # simulated time is the truth here, whatever this machine's clock says

    def wait(self, event: threading.Event, timeout: float) -> bool:
        hit = event.wait(self.real_wait_s)
        self.offset += timeout
        return hit


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def write_config(path: Path, playlist: list[Path], *, rotate_minutes: float, schedule: str, crossfade_s: float = 3.0,
                 extra: str = "") -> None:
    entries = ", ".join(f'"{p}"' for p in playlist)
    path.write_text(f"[playback]\nplaylist = [{entries}]\nrotate_minutes = {rotate_minutes}\ncrossfade_s = {crossfade_s}\n"
                    f"{extra}\n[schedule]\n{schedule}\nfade_s = 10\n")


class EngineTally:
    """The engines a service made: the current one, and the frames/underruns of those it replaced (not kept
    alive, so that RSS sees what the service itself holds)."""

    def __init__(self) -> None:
        self.current: Engine | None = None
        self.count = 0
        self.old_frames = 0
        self.old_underruns = 0

    def add(self, engine: Engine) -> Engine:
        if self.current is not None:
            stats = self.current.stats
            self.old_frames += stats.frames_produced
            self.old_underruns += stats.underruns
        self.current, self.count = engine, self.count + 1
        return engine

    def frames(self) -> int:
        return self.old_frames + (self.current.stats.frames_produced if self.current else 0)

    def underruns(self) -> int:
        return self.old_underruns + (self.current.stats.underruns if self.current else 0)


def make_service(config_path: Path, listener: NotifyListener, sink: NullSink, *, clock=None, tick_s=1.0,
                 status_file: Path | None = None):
    engines = EngineTally()

    def engine_factory(bundle, *, config, store, on_frame):
        return engines.add(Engine(bundle, sink=sink, controls=store, volume_cap_db=config.playback.volume_cap_db,
                                  on_frame=on_frame, buffer_frames=BUFFER_FRAMES))

    svc = Service(load_config(config_path), engine_factory=engine_factory, knobs_factory=None,
                  notifier=Notifier(str(listener.path)), clock=clock,
                  status_file=status_file or WORK / "run" / "status.json",
                  state_dir=WORK / "state", tick_s=tick_s)
    return svc, engines


def run_in_thread(svc: Service) -> tuple[threading.Thread, dict]:
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", svc.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not svc.ready and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not svc.ready:
        raise RuntimeError("the service did not become ready")
    return thread, result


# -- measurements ------------------------------------------------------------------------------------------------
def exposure() -> float:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True, text=True,
                         cwd=UNIT.parent, timeout=60).stdout
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
    return float(match.group(1)) if match else float("nan")


class LogCapture(logging.Handler):
    """Keeps every record the service logs at the level the unit runs it with (INFO), for the journal figures."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def proc_io() -> dict[str, int]:
    """This process's /proc/self/io counters: write_bytes = bytes it caused to be written to block storage
    (page-cache writes of disk-backed files; not tmpfs, not sockets); wchar = bytes passed to write calls."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {key: int(value) for key, value in fields.items()}


JOURNAL_REMOTE = Path("/lib/systemd/systemd-journal-remote")


def _journal_used_bytes(path: Path) -> int:
    """Bytes in use in a journal file: its tail object's offset + size (the file itself is preallocated in 8-MB
    steps). Header layout: systemd's journal-def.h (tail_object_offset at 136; an object's size at +8)."""
    data = path.read_bytes()
    tail = int.from_bytes(data[136:144], "little")
    size = int.from_bytes(data[tail + 8: tail + 16], "little")
    return tail + (size + 7) // 8 * 8


def journal_bytes(records: list[logging.LogRecord]) -> int | None:
    """What journald stores for these records: they are written in journal export format, with the fields
    python-systemd's JournalHandler sends and the trusted fields journald adds, by systemd-journal-remote (the
    journal file writer journald uses) into a fresh file; bytes in use minus those of the same file holding only
    the first record. None when systemd-journal-remote is not installed (apt install systemd-journal-remote)."""
    if not JOURNAL_REMOTE.exists() or not records:
        return None

    def export(recs: list[logging.LogRecord]) -> bytes:
        out = []
        for i, r in enumerate(recs):
            fields = {
                "__REALTIME_TIMESTAMP": str(int(r.created * 1e6)), "__MONOTONIC_TIMESTAMP": str(1_000_000 + i),
                "_BOOT_ID": "0" * 32, "MESSAGE": r.getMessage().replace("\n", " "),
                "PRIORITY": str({10: 7, 20: 6, 30: 4, 40: 3, 50: 2}.get(r.levelno, 6)),
                "LOGGER": r.name, "THREAD_NAME": r.threadName or "", "CODE_FILE": r.pathname,
                "CODE_LINE": str(r.lineno), "CODE_FUNC": r.funcName, "SYSLOG_IDENTIFIER": "python",
                "_PID": "812", "_UID": "998", "_GID": "998", "_COMM": "python", "_EXE": "/usr/bin/python3.11",
                "_CMDLINE": "/opt/murmur/current/venv/bin/python -m murmur.device serve", "_SYSTEMD_UNIT": "murmur.service",
                "_SYSTEMD_CGROUP": "/system.slice/murmur.service", "_TRANSPORT": "journal", "_HOSTNAME": "murmur",
                "_MACHINE_ID": "f" * 32, "_CAP_EFFECTIVE": "0", "_SELINUX_CONTEXT": "unconfined",
            }
            out.append("".join(f"{k}={v}\n" for k, v in fields.items()) + "\n")
        return "".join(out).encode()

    used = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, recs in enumerate((records[:1], records)):
            source, journal = Path(tmp) / f"{n}.export", Path(tmp) / f"{n}.journal"
            source.write_bytes(export(recs))
            subprocess.run([str(JOURNAL_REMOTE), "-o", str(journal), str(source)], capture_output=True, check=True,
                           timeout=120)
            used.append(_journal_used_bytes(journal))
    return used[1] - used[0]


def simulated_day(paths: list[Path], quick: bool) -> dict:
    tick_s, real_wait_s = (10.0, 0.004) if quick else (1.0, 0.002)
    # As on the Pi: the status file on tmpfs (/run there, /dev/shm here), the playlist state on the disk. The
    # benchmark's own files (configs it rewrites, the corrupt bundle) go to tmpfs too, so that this process's
    # write_bytes are the service's own writes to storage.
    shm = Path(tempfile.mkdtemp(prefix="murmur-bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    config_path = shm / "sim.toml"
    schedule = "\n".join(f'{day} = "10:00-18:00"' for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    write_config(config_path, paths, rotate_minutes=60, schedule=schedule)
    shutil.rmtree(WORK / "state", ignore_errors=True)
    bad_bundle = shm / "corrupt"
    shutil.copytree(paths[0], bad_bundle)
    (bad_bundle / "model.tflite").write_bytes((bad_bundle / "model.tflite").read_bytes()[:1000])
    listener = NotifyListener(WORK / "notify-sim.sock")
    clock = AcceleratedClock(datetime(2026, 11, 23, 8, 0), real_wait_s)
    sink = NullSink(realtime=False)
    os.environ["WATCHDOG_USEC"] = "2000000"
    os.environ["WATCHDOG_PID"] = str(os.getpid())
    svc, engines = make_service(config_path, listener, sink, clock=clock, tick_s=tick_s,
                                status_file=shm / "run" / "status.json")
    capture = LogCapture()
    root_logger = logging.getLogger()
    for handler in root_logger.handlers:
        handler.setLevel(logging.WARNING)
    root_logger.addHandler(capture)
    root_logger.setLevel(logging.INFO)  # what the unit logs (murmur.device.appliance.service.setup_logging)
    io_before = proc_io()
    started = time.monotonic()
    thread, result = run_in_thread(svc)
    samples: list[tuple[float, int, float]] = []  # (simulated hour, frames produced in total, RSS MB)
    reload_kinds = ["good", "bad-config", "good", "bad-bundle"]
    reloads_done = 0
    try:
        next_hour, next_sample = 1, 0.5
        while clock.offset < SIM_HOURS * 3600 and thread.is_alive():
            time.sleep(0.05)
            hour = clock.offset / 3600.0
            if hour >= next_sample:  # half past: away from the rotations and reloads on the hour
                samples.append((hour, engines.frames(), rss_mb()))
                next_sample += 1
            if hour >= next_hour:
                if next_hour % 3 == 0 and next_hour < SIM_HOURS:  # a reload every 3 simulated hours
                    kind = reload_kinds[reloads_done % len(reload_kinds)]
                    if kind == "good":
                        write_config(config_path, paths, rotate_minutes=60, schedule=schedule,
                                     crossfade_s=2.0 + reloads_done % 2)
                    elif kind == "bad-config":
                        config_path.write_text(config_path.read_text().replace("rotate_minutes = 60", "rotate_minutes = -1"))
                    else:
                        write_config(config_path, [bad_bundle], rotate_minutes=60, schedule=schedule)
                    svc.request_reload()
                    reloads_done += 1
                next_hour += 1
        real_s = time.monotonic() - started
        counters = svc.counters
        frames = engines.frames()
        underruns = engines.underruns()
    finally:
        svc.request_stop()
        thread.join(30)
        listener.close()
        io_after = proc_io()
        root_logger.removeHandler(capture)
        shutil.rmtree(shm, ignore_errors=True)
    day_fraction = clock.offset / 86400.0
    journal = journal_bytes(capture.records)
    gaps = listener.gaps()
    warm = [s for s in samples if s[0] >= 1.0]
    slope_h = _slope([s[0] for s in warm], [s[2] for s in warm])
    early = statistics.median(s[2] for s in warm[:3]) if warm else float("nan")
    late = statistics.median(s[2] for s in warm[-3:]) if warm else float("nan")
    return {
        "tick_s": tick_s, "real_s": real_s, "sim_h": clock.offset / 3600.0, "frames": frames,
        "audio_h": frames * 512 / 44100 / 3600.0, "engines": engines.count, "underruns": underruns,
        "rss_early": early, "rss_late": late, "rss_min": min(s[2] for s in warm), "rss_max": max(s[2] for s in warm),
        "rss_per_sim_h": slope_h,
        "pings": len(listener.pings), "max_gap": max(gaps) if gaps else float("nan"),
        "misses": sum(g > 2.0 for g in gaps), "rotations": counters.rotations, "reloads": counters.reloads,
        "rejected": counters.rejected_reloads, "restarts": counters.restarts, "rc": result.get("rc"),
        "ticks": round(clock.offset / tick_s), "samples": [(round(h, 2), f, round(r, 2)) for h, f, r in samples],
        "write_bytes_per_day": (io_after["write_bytes"] - io_before["write_bytes"]) / day_fraction,
        "wchar_per_day": (io_after["wchar"] - io_before["wchar"]) / day_fraction,
        "log_records_per_day": len(capture.records) / day_fraction,
        "log_text_bytes_per_day": sum(len(r.getMessage()) for r in capture.records) / day_fraction,
        "journal_bytes_per_day": None if journal is None else journal / day_fraction,
    }


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def frame_path(paths: list[Path], quick: bool) -> dict:
    """The audio path alone (engine, unpaced null sink, no service events): RSS against frames after warm-up,
    extrapolated to a real day's frames."""
    n_frames = 30_000 if quick else 200_000
    engine = Engine(load_bundle(paths[0]), sink=NullSink(realtime=False))
    engine.start()
    samples = []
    started = time.monotonic()
    try:
        while engine.stats.frames_produced < n_frames:
            time.sleep(0.25)
            frames = engine.stats.frames_produced
            if frames >= 5_000:  # warm-up: allocator pools, caches
                samples.append((frames, rss_mb()))
    finally:
        engine.stop()
    real_s = time.monotonic() - started
    slope = _slope([f for f, _ in samples], [r for _, r in samples])
    return {"frames": samples[-1][0] if samples else 0, "real_s": real_s, "rss_first": samples[0][1],
            "rss_last": samples[-1][1], "rss_day": slope * FRAMES_PER_DAY, "ms_per_frame": 1000 * real_s / max(1, n_frames)}


def start_realtime_service(name: str, bundle: Path):
    """The service on ``bundle`` with a null sink paced like a sound card and a real watchdog (2 s), running in a
    thread -> (service, engines, listener, thread, result); the config is WORK/<name>.toml."""
    config_path = WORK / f"{name}.toml"
    write_config(config_path, [bundle], rotate_minutes=0, schedule="", crossfade_s=3.0)
    listener = NotifyListener(WORK / f"notify-{name}.sock")
    os.environ["WATCHDOG_USEC"] = "2000000"
    os.environ["WATCHDOG_PID"] = str(os.getpid())
    svc, engines = make_service(config_path, listener, NullSink(realtime=True))
    thread, result = run_in_thread(svc)
    return svc, engines, listener, thread, result


def realtime_and_reload(paths: list[Path], quick: bool) -> dict:
    seconds = 30.0 if quick else 600.0
    config_path = WORK / "rt.toml"
    svc, engines, listener, thread, result = start_realtime_service("rt", paths[0])
    try:
        engine = engines.current
        rss_start = rss_mb()
        started = time.monotonic()
        deadline = started + seconds
        while time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        stats = engine.stats
        rt = {"seconds": elapsed, "underruns": stats.underruns, "blocks": stats.blocks_delivered,
              "expected_blocks": elapsed * 44100 / 512, "rss_growth": rss_mb() - rss_start,
              "misses": sum(g > 2.0 for g in listener.gaps(started)), "max_gap": max(listener.gaps(started) or [math.nan])}
        # Reloads to the other bundle and back.
        latencies = []
        queued_s = (engine.buffer_frames + math.ceil(engine.pipeline.vocoder.latency_samples / engine.hop)) * engine.pipeline.frame_s
        for i in range(3 if quick else 6):
            target = paths[(i + 1) % 2]
            write_config(config_path, [target], rotate_minutes=0, schedule="", crossfade_s=3.0)
            t0 = time.monotonic()
            svc.request_reload()
            while engine.pipeline.incoming is None and time.monotonic() - t0 < 10:
                time.sleep(0.001)
            latencies.append(time.monotonic() - t0 + queued_s)
            while engine.pipeline.incoming is not None and time.monotonic() - t0 < 20:
                time.sleep(0.01)  # let the crossfade finish before the next reload
        rt.update(reload_latencies=latencies, queued_s=queued_s, reload_underruns=engine.stats.underruns - stats.underruns,
                  restarts=svc.counters.restarts)
    finally:
        svc.request_stop()
        thread.join(30)
        listener.close()
    rt["rc"] = result.get("rc")
    return rt


def _child(kind: str, quick: bool) -> dict:
    """Run one measurement in a fresh process of the device venv (no TensorFlow in memory: RSS is the service's)."""
    python = ROOT / ".venv" / "device" / "bin" / "python"
    python = python if python.exists() else Path(sys.executable)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [str(python), "-m", "benchmarks.bench_service", kind, "quick" if quick else "full"]
    if kind == "rt" and fifo_available():  # the scheduling the unit gives the service (CPUSchedulingPolicy=fifo)
        command = ["chrt", "--fifo", str(UNIT_RT_PRIORITY), *command]
    result = subprocess.run(command,
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"bench_service {kind} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(lines[-1])


UNIT_RT_PRIORITY = int(re.search(r"^CPUSchedulingPriority=(\d+)", UNIT.read_text(), re.M).group(1))


def fifo_available() -> bool:
    """chrt can give a process SCHED_FIFO here (root, or RLIMIT_RTPRIO)."""
    try:
        return subprocess.run(["chrt", "--fifo", str(UNIT_RT_PRIORITY), "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def run(quick: bool) -> str:
    WORK.mkdir(parents=True, exist_ok=True)
    paths = bundles()  # trained here (trainer venv) if missing; the children only load them
    score = exposure()
    day = _child("sim", quick)
    frames = _child("frames", quick)
    load_before = os.getloadavg()[0]
    rt = _child("rt", quick)
    rt_sched = f"SCHED_FIFO {UNIT_RT_PRIORITY}, as the unit sets" if fifo_available() else "normal scheduling (chrt --fifo not permitted here)"
    lat = rt["reload_latencies"]
    rows = [
        ("exposure (`systemd-analyze security --offline=true`)", f"{score:.1f}", "≤ 2.0", score <= 2.0),
        ("simulated day: RSS growth, median at hours 1.5-3.5 → at hours 21.5-23.5", f"{day['rss_late'] - day['rss_early']:+.1f} MB "
         f"({day['rss_early']:.1f} → {day['rss_late']:.1f}; range {day['rss_min']:.1f}-{day['rss_max']:.1f})", "< 5 MB",
         day["rss_late"] - day["rss_early"] < 5),
        ("simulated day: RSS trend (least squares, hours 1.5-23.5) × 24 h", f"{day['rss_per_sim_h'] * 24:+.1f} MB", "< 5 MB",
         day["rss_per_sim_h"] * 24 < 5),
        (f"audio path alone: RSS trend over {frames['frames']:,} frames, extrapolated to a day's 7.4 M",
         f"{frames['rss_day']:+.1f} MB ({frames['rss_first']:.1f} → {frames['rss_last']:.1f})", "< 5 MB", frames["rss_day"] < 5),
        ("simulated day: watchdog misses (gap > 2 s; max gap)", f"{day['misses']} ({day['max_gap']:.2f} s)", "0",
         day["misses"] == 0),
        (f"real-time pacing {rt['seconds'] / 60:.1f} min: underruns", f"{rt['underruns']}", "0", rt["underruns"] == 0),
        ("real-time pacing: watchdog misses (max gap)", f"{rt['misses']} ({rt['max_gap']:.2f} s)", "0", rt["misses"] == 0),
        ("reload to new sound (median / max of "
         f"{len(lat)})", f"{statistics.median(lat):.2f} / {max(lat):.2f} s", "≤ 2 s", max(lat) <= 2.0),
        ("underruns during the reloads", f"{rt['reload_underruns']}", "0", rt["reload_underruns"] == 0),
        ("simulated day: bytes the service writes to storage per day (its own `/proc/<pid>/io` write_bytes)",
         f"{day['write_bytes_per_day'] / 1e3:.0f} kB", "≤ 1 MB", day["write_bytes_per_day"] <= 1e6),
        (f"simulated day: what journald stores of its log per day ({day['log_records_per_day']:.0f} entries at INFO, "
         f"{day['log_text_bytes_per_day'] / 1e3:.1f} kB of text)",
         "not measured (apt install systemd-journal-remote)" if day["journal_bytes_per_day"] is None
         else f"{day['journal_bytes_per_day'] / 1e3:.0f} kB", "≤ 1 MB with the above",
         day["journal_bytes_per_day"] is not None
         and day["journal_bytes_per_day"] + day["write_bytes_per_day"] <= 1e6),
    ]
    table = "\n".join(f"| {name} | {value} | {target} | {'ok' if good else '**MISSED**'} |" for name, value, target, good in rows)
    return f"""## Service: unattended running

`make bench ARGS="--only service"`{' (quick mode: figures are a smoke check)' if quick else ''}

| figure | measured | target | |
|---|---|---|---|
{table}

Writes to the SD card: the simulated day's process (the service in a thread; the benchmark's own files — configs it
rewrites, a corrupt bundle — and the status file on tmpfs, as `/run` on the Pi) reads its `/proc/self/io` before
and after: `write_bytes` counts what it sent towards block storage (the playlist position, written durably at each
of the day's rotations; anything else would show here too), {day['wchar_per_day'] / 1e6:.1f} MB/day of `wchar` is
every write call including tmpfs (the status file every second) and sockets. The log: every record at INFO (the
unit's level) is written in journal export format, with the fields journald keeps for each entry, by
`systemd-journal-remote` (journald's own file writer) into a fresh journal; bytes in use minus those of one
entry. `install.sh` caps the journal at 32 MB (`--journal volatile`: nothing on the card).

What was simulated: {day['sim_h']:.1f} h of the service's own clock in {day['real_s']:.0f} s of real time
({day['ticks']} main-loop ticks of {day['tick_s']:g} s), open 10:00-18:00 with 10-s fades, {day['rotations']} hourly
playlist rotations, {day['reloads']} good reloads and {day['rejected']} rejected ones (a bad config value, a corrupt
bundle), {day['restarts']} generator restarts, the status file rewritten every tick. The audio path ran
{day['frames']:,} real frames ({day['audio_h']:.2f} h of audio, unpaced null sink, {day['underruns']} underruns) —
{100 * day['frames'] / FRAMES_PER_DAY:.1f} % of a real day's frames, hence the separate audio-path row: the engine
alone, unpaced, {frames['ms_per_frame']:.2f} ms per frame, RSS sampled every 0.25 s after 5 000 frames of warm-up,
its least-squares slope × 7.44 M frames. Each measurement runs in its own process of the device venv (no
TensorFlow loaded), so RSS is the service's own; {day['engines']} engine(s) were built in the day (restarts
replace the engine). Watchdog pings were real-time ({day['pings']} received, WATCHDOG_USEC = 2 s).
Real-time pacing: {rt_sched}; load average {load_before:.1f} on {os.cpu_count()} cores when it began;
{rt['blocks']:,} blocks delivered of {rt['expected_blocks']:,.0f} expected; RSS change over the run {rt['rss_growth']:+.1f} MB. Reload latency = request → crossfade start in the producer (config re-read, bundle
loaded and checked, step model opened) + {rt['queued_s'] * 1000:.0f} ms of audio already queued (ring + vocoder
look-ahead); the crossfade itself then takes crossfade_s (3 s here). Bundles: two 3 × 192 LSTM bundles (format
{_bundle_format(paths)}, so the bank generator plays) trained briefly on parts of the demo clip (out/bench/service/bundles).
"""


if __name__ == "__main__":  # the child processes of run()
    import logging

    logging.basicConfig(level=logging.WARNING)
    sys.dont_write_bytecode = True  # imports during a measurement must not count as the service's writes
    kind, mode = sys.argv[1], sys.argv[2]
    paths = [WORK / "bundles" / "a", WORK / "bundles" / "b"]
    measure = {"sim": simulated_day, "frames": frame_path, "rt": realtime_and_reload}[kind]
    print(json.dumps(measure(paths, mode == "quick")))
