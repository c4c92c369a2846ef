"""Endurance: the service for hours at real-time pace, as the unit runs it (SCHED_FIFO), with the other cores
kept busy; and what it does with a clock that has no network time and with a weak power supply.

`make bench ARGS="--only endurance"` (not part of a plain `make bench`: it takes MURMUR_BENCH_ENDURANCE_HOURS,
default 2, of real time).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from murmur.device.playback.engine import BUFFER_DECAY_S

from .bench_service import (
    ROOT,
    UNIT_RT_PRIORITY,
    WORK,
    bundles,
    fifo_available,
    rss_mb,
    start_realtime_service,
    write_config,
)

DEFAULT = False  # run only when named: `make bench ARGS="--only endurance"`
HOURS = float(os.environ.get("MURMUR_BENCH_ENDURANCE_HOURS", "2"))
SAMPLE_S = 10.0
EDGE_S = 300.0  # latency "at the start" / "at the end": the median over the first / last five minutes
LOAD_SOURCE = """
import numpy as np
a = np.random.default_rng(0).random((256, 256))
while True:
    a = np.tanh(a @ a.T / 256.0)  # cache- and FPU-heavy, like a busy neighbour process
"""

# The machine-stall probe: a separate process (its own interpreter lock) pinned to one core, one per core, at a
# SCHED_FIFO priority above the service's.
# Every 20 ms it wakes and does a fixed piece of pure-Python work (~0.2 ms on this x86 VM): waking late or the
# work taking many times its usual time is the machine's own stall (a hypervisor lending the CPU elsewhere, the
# kernel), not the service's. It appends "monotonic-s-when-due late-ms work-ms" whenever either is unusual; the
# monotonic clock is shared by all processes, so the lines line up with the service's underruns.
PROBE_RT_PRIORITY = 90  # above the service's: the service's own threads on all cores would otherwise delay it too
PROBE_SOURCE = """
import sys, time
def work():
    total = 0
    for i in range(4000):
        total += i * i
    return total
period, out = 0.020, open(sys.argv[1], "w", buffering=1)
usual = []
for _ in range(200):  # the usual duration of the work: the median of 200 runs
    t0 = time.perf_counter(); work(); usual.append(time.perf_counter() - t0)
usual = sorted(usual)[100]
out.write(f"usual {usual * 1000:.3f}\\n")
due = time.monotonic()
while True:
    due += period
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    woke = time.monotonic()
    work()
    took = time.monotonic() - woke
    if woke - due >= 0.005 or took >= 3 * usual:
        out.write(f"{due:.4f} {(woke - due) * 1000:.1f} {took * 1000:.1f}\\n")
    if woke - due > period:
        due = woke
"""


def long_run(paths: list[Path], hours: float) -> dict:
    """The service (real Engine, bank generator, real-time null sink) for ``hours``; every SAMPLE_S: underruns,
    output latency (ring lead + vocoder look-ahead, ms), RSS."""
    collections: list[tuple[float, int, float]] = []  # Python's garbage collections: (monotonic s, generation, ms)
    gc_began = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_began[0] = time.perf_counter()
        else:
            collections.append((time.monotonic(), info["generation"], 1000.0 * (time.perf_counter() - gc_began[0])))

    gc.callbacks.append(on_gc)
    svc, engines, listener, thread, result = start_realtime_service("endurance", paths[0])
    # (s, underruns, latency ms, RSS MB, load average, steal s: time the hypervisor took from this machine's CPUs,
    #  ring lead target in frames: it grows one frame after an underrun and shrinks back one per BUFFER_DECAY_S)
    samples: list[tuple[float, int, float, float, float, float, int]] = []
    underruns: list[tuple[float, int, int]] = []  # (monotonic s when seen, how many, ring lead target after them)
    try:
        engine = engines.current
        vocoder_samples = engine.pipeline.vocoder.latency_samples
        started = time.monotonic()
        deadline = started + hours * 3600.0
        next_sample = started
        seen = 0
        while time.monotonic() < deadline and thread.is_alive():
            now = time.monotonic()
            if (count := engine.stats.underruns) > seen:  # when (to 0.1 s), and the ring lead target then
                underruns.append((now, count - seen, engine.buffer_frames))
                seen = count
            if now >= next_sample:
                lead = engine.ring.lead() + vocoder_samples
                samples.append((now - started, engine.stats.underruns, 1000.0 * lead / engine.sample_rate_hz,
                                rss_mb(), os.getloadavg()[0], steal_s(), engine.buffer_frames))
                next_sample += SAMPLE_S
            time.sleep(min(0.1, max(0.0, next_sample - time.monotonic())))
        elapsed = time.monotonic() - started
        stats = engine.stats
        gaps = listener.gaps(started)
    finally:
        svc.request_stop()
        thread.join(30)
        listener.close()
        gc.callbacks.remove(on_gc)
    during = [(t - started, g, ms) for t, g, ms in collections if started <= t <= started + elapsed]
    return {"gc": during, "underrun_times": underruns, "started": started, "seconds": elapsed,
            "underruns": stats.underruns, "blocks": stats.blocks_delivered,
            "expected_blocks": elapsed * engine.sample_rate_hz / engine.hop, "samples": samples,
            "misses": sum(g > 2.0 for g in gaps), "max_gap": max(gaps or [math.nan]), "pings": len(gaps) + 1,
            "restarts": svc.counters.restarts, "rc": result.get("rc"), "generator": type(engine.pipeline.voice.sampler).__name__,
            "frame_ms": 1000.0 * engine.hop / engine.sample_rate_hz}


def clock_and_power() -> list[tuple[str, str]]:
    """The service (fake engine, simulated clock) booted at 03:00 by a guessed clock with hours 10:00-18:00, under
    each policy, then network time arriving; and a throttle word that shows under-voltage: what it does."""
    from murmur.device.appliance import health
    from murmur.device.appliance.config import load_config
    from murmur.device.appliance.service import Service
    from murmur.device.appliance.status import ClockSync
    from murmur.device.appliance.systemd import Notifier
    from murmur.device.testing.fakes import FakeEngine, SimClock

    rows = []
    for policy in ("play", "trust"):
        config_path = WORK / f"clock-{policy}.toml"
        write_config(config_path, [Path(p) for p in (WORK / "bundles" / "a",)], rotate_minutes=0,
                     schedule=f'tue = "10:00-18:00"\nunsynchronised_clock = "{policy}"')
        clock = SimClock(datetime(2026, 11, 24, 3, 0))
        clock.synchronised = ClockSync.UNSYNCHRONISED
        engines: list[FakeEngine] = []

        def engine_factory(bundle, clock=clock, engines=engines, **kwargs) -> FakeEngine:
            engines.append(FakeEngine(bundle, clock))
            return engines[-1]

        svc = Service(load_config(config_path), knobs_factory=None, notifier=Notifier(""), clock=clock,
                      engine_factory=engine_factory,
                      status_file=WORK / "run" / f"clock-{policy}.json", state_dir=None)
        svc._start()
        before = json.loads(svc.status_file.read_text())
        gain_before = engines[0].fades[-1][0]
        clock.synchronised = ClockSync.SYNCHRONISED
        clock.advance(1.0)
        svc.tick()
        after = json.loads(svc.status_file.read_text())
        rows.append((f"boot at 03:00 without network time, hours tue 10:00-18:00, `unsynchronised_clock = \"{policy}\"`",
                     f"status `clock: {before['clock']}`, state `{before['state']}`, schedule `{before['schedule']}`, "
                     f"output gain → {gain_before:g}; network time arrives (it is 03:00): state "
                     f"`{after['state']}`, gain → {engines[0].fades[-1][0]:g}, `clock: {after['clock']}`"))
    word = {"value": "0x0"}
    original = health.read_throttled
    health.read_throttled = lambda **kw: word["value"]  # type: ignore[assignment]
    capture: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: capture.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("murmur").addHandler(handler)
    try:
        config_path = WORK / "power.toml"
        write_config(config_path, [WORK / "bundles" / "a"], rotate_minutes=0, schedule="")
        clock = SimClock(datetime(2026, 11, 24, 12, 0))
        led: list[str] = []

        class Led:
            def set_status(self, state: str) -> None:
                led.append(state)

            def values(self) -> dict:
                return {}

            def close(self) -> None:
                pass

        svc = Service(load_config(config_path), knobs_factory=lambda config, store: Led(), notifier=Notifier(""),
                      clock=clock, engine_factory=lambda bundle, **kw: FakeEngine(bundle, clock),
                      status_file=WORK / "run" / "power.json", state_dir=None)
        svc._start()
        word["value"] = "0x50005"
        for _ in range(3):
            clock.advance(1.0)
            svc.tick()
        status = json.loads(svc.status_file.read_text())
    finally:
        health.read_throttled = original  # type: ignore[assignment]
        logging.getLogger("murmur").removeHandler(handler)
    warnings = [m for m in capture if m.startswith("power:")]
    rows.append(("throttle word 0x50005 (under-voltage and throttling now) for 3 s while playing",
                 f"status `throttled: {status['throttled']}` (`{health.describe_throttled(status['throttled'])}`); "
                 f"LED `{led[-1]}`; {len(warnings)} log lines, once each: “{warnings[0][:90]}…”"))
    rows.append(("not a Raspberry Pi (no throttle word, no timesyncd)", "status `throttled: null` (“unknown”), "
                 "`clock: unknown` unless the kernel's adjtimex answers; the schedule follows the clock as it is"))
    return rows


def steal_s() -> float:
    """Seconds of CPU time the hypervisor has taken from this (virtual) machine since boot, all CPUs (0 on bare
    metal: a Raspberry Pi has none)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def latency_row(samples: list, edge: int, frame_ms: float) -> tuple[str, str, str, bool]:
    """Output latency (samples' [2], ms) over the first -> last ``edge`` samples, against the ring lead target
    ([6], frames): creep is latency growth the engine did not choose, so the target's own change (its answer to
    underruns, undone one frame per BUFFER_DECAY_S) is taken out."""
    lat_start = statistics.median(s[2] for s in samples[:edge])
    lat_end = statistics.median(s[2] for s in samples[-edge:])
    target_start = statistics.median(s[6] for s in samples[:edge])
    target_end = statistics.median(s[6] for s in samples[-edge:])
    creep_ms = (lat_end - lat_start) - (target_end - target_start) * frame_ms
    return ("output latency (ring lead + vocoder look-ahead), median of the first → last 5 min; the ring lead target "
            f"then (frames: one more after an underrun, one fewer per {BUFFER_DECAY_S / 60:g} min without); creep = "
            "the latency's change beyond the target's", f"{lat_start:.0f} → {lat_end:.0f} ms; {target_start:g} → "
            f"{target_end:g} frames; creep {creep_ms:+.0f} ms", f"no creep (≤ +{frame_ms:.0f} ms, one frame)",
            creep_ms <= frame_ms)


def diagnosis_rows(collections: list, samples: list) -> list[tuple[str, str, str, bool]]:
    """Where underruns might come from: hypervisor steal (on a virtual machine) and Python's garbage collector in
    the service process, against the underrun windows (the SAMPLE_S samples in which the count rose)."""
    counts = [sum(1 for _, g, _ in collections if g == gen) for gen in (0, 1, 2)]
    longest = [max((ms for _, g, ms in collections if g == gen), default=0.0) for gen in (0, 1, 2)]
    pairs = list(zip(samples[:-1], samples[1:], strict=True))  # (window start sample, window end sample)
    windows = [(a[0], b[0]) for a, b in pairs if b[1] > a[1]]
    full = [t for t, g, _ in collections if g == 2]
    with_full = sum(1 for a, b in windows if any(a <= t <= b for t in full))
    steal_ms = [1000 * (b[5] - a[5]) for a, b in pairs]
    steal_underrun_ms = [1000 * (b[5] - a[5]) for a, b in pairs if b[1] > a[1]]
    in_underruns = f"{statistics.median(steal_underrun_ms):.0f} ms" if steal_underrun_ms else "no underrun windows"
    rows = [] if not steal_ms else [
        (f"hypervisor steal per {SAMPLE_S:g}-s window: median / max; in the windows with underruns: median",
         f"{statistics.median(steal_ms):.0f} / {max(steal_ms):.0f} ms; {in_underruns}", "", True)]
    return rows + [("Python garbage collections in the service (generation 0 / 1 / 2): count; longest pause",
             f"{counts[0]:,} / {counts[1]:,} / {counts[2]:,}; {longest[0]:.1f} / {longest[1]:.1f} / {longest[2]:.1f} ms",
             "", True),
            (f"{SAMPLE_S:g}-s windows with underruns / of them with a generation-2 collection",
             f"{len(windows)} / {with_full}", "", True)]


def probe_logs(log: Path) -> list[Path]:
    """The per-core logs of the probes started with ``log``: <stem>-cpu<N><suffix>, one per CPU this process may use."""
    return [log.with_name(f"{log.stem}-cpu{cpu}{log.suffix}") for cpu in sorted(os.sched_getaffinity(0))]


def start_probe(log: Path) -> list[subprocess.Popen]:
    """The machine-stall probe (PROBE_SOURCE), one pinned to each core (a stall of one core only, e.g. its virtual
    CPU descheduled by the host, shows too), at SCHED_FIFO PROBE_RT_PRIORITY where permitted, logging to
    ``probe_logs(log)``; they run until killed."""
    probes = []
    for cpu, path in zip(sorted(os.sched_getaffinity(0)), probe_logs(log), strict=True):
        command = ["taskset", "-c", str(cpu), sys.executable, "-c", PROBE_SOURCE, str(path)]
        probes.append(subprocess.Popen(["chrt", "--fifo", str(PROBE_RT_PRIORITY), *command] if fifo_available()
                                       else command))
    return probes


def stop_probes(probes: list[subprocess.Popen]) -> None:
    """Kill the probes (they run at real-time priority until killed) and reap them."""
    for probe in probes:
        probe.kill()
        probe.wait()


def read_probe(log: Path) -> tuple[float, list[tuple[float, float, float]]]:
    """The probes' logs -> (usual work ms, [(monotonic s when due, ms late, ms the work took)]), all cores merged in
    time order; each core's work times are scaled to the first core's usual time (the cores differ a little)."""
    usual_ms = 0.0
    stalls: list[tuple[float, float, float]] = []
    for path in probe_logs(log):
        lines = path.read_text().splitlines()
        usual = float(lines[0].split()[1])
        usual_ms = usual_ms or usual
        scale = usual_ms / usual
        stalls += [(float(a), float(b), float(c) * scale) for a, b, c in (line.split() for line in lines[1:])]
    return usual_ms, sorted(stalls)


MATCH_S = 0.5  # an underrun "follows" a machine stall that ran at most this long before the underrun was seen
PROBE_PERIOD_S = 0.020


def spells(usual_ms: float, stalls: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """The probe's unusual wake-ups grouped into spells (consecutive 20-ms slots) -> [(monotonic start s, end s,
    how many times slower the work ran at worst)]."""
    out: list[tuple[float, float, float]] = []
    for due, late, took in stalls:
        end = due + (late + took) / 1000.0
        if out and due - out[-1][1] <= 1.5 * PROBE_PERIOD_S:
            start, previous_end, worst = out[-1]  # (the cores' probes interleave: an end may come earlier)
            out[-1] = (start, max(previous_end, end), max(worst, took / usual_ms))
        else:
            out.append((due, end, took / usual_ms))
    return out


def spells_in(usual_ms: float, stalls: list[tuple[float, float, float]],
              span: tuple[float, float]) -> list[tuple[float, float, float]]:
    """The spells that began within ``span`` (monotonic start, end s)."""
    return [(a, b, k) for a, b, k in spells(usual_ms, stalls) if span[0] <= a <= span[1]]


def longest_before(found: list[tuple[float, float, float]], seen: float) -> float:
    """The longest spell (ms) that ran in the MATCH_S seconds before ``seen`` (monotonic s); 0.0 when none did."""
    return max((1000 * (b - a) for a, b, _ in found if a <= seen and b >= seen - MATCH_S), default=0.0)


def window_share(found: list[tuple[float, float, float]], span: tuple[float, float], min_ms: float) -> float:
    """The share of the MATCH_S-long windows of ``span`` (monotonic s) that hold a spell of at least ``min_ms``:
    how often a moment picked at random would find such a spell just before it."""
    windows = max(1, int((span[1] - span[0]) / MATCH_S))
    touched = {w for a, b, _ in found if 1000 * (b - a) >= min_ms - 0.01  # (a spell as long, give or take rounding)
               for w in range(int((a - span[0]) / MATCH_S), int((b - span[0]) / MATCH_S) + 1)}
    return len(touched) / windows


def match_figure(found: list[tuple[float, float, float]], moments: list[float], span: tuple[float, float]) -> str:
    """Dropouts seen at ``moments`` (monotonic s) against the machine's spells: how many followed a spell, the
    longest spell before each, and the chance that all of those would find a spell that long by accident."""
    if not moments:
        return "no dropouts"
    before = sorted((longest_before(found, seen) for seen in moments), reverse=True)
    matched = [ms for ms in before if ms > 0]
    if not matched:
        return f"0 of {len(moments)}"
    share = window_share(found, span, matched[-1])
    lengths = ", ".join(f"{ms:.0f}" for ms in matched)
    return (f"{len(matched)} of {len(moments)} (spells of {lengths} ms); {100 * share:.1f} % of windows hold a spell "
            f"≥ {matched[-1]:.0f} ms: by chance {share ** len(matched):.0e}")


def stall_rows(usual_ms: float, stalls: list[tuple[float, float, float]], underruns: list[tuple[float, int, int]],
               span: tuple[float, float]) -> list[tuple[str, str, str, bool]]:
    """The probe's stalls against the underruns (monotonic s when seen, how many, ring lead target in frames after
    them) over ``span`` (monotonic start, end s): did the machine stall just before each underrun, for how long,
    and how often does a window of the same length hold a stall that long by chance?"""
    found = spells_in(usual_ms, stalls, span)
    lengths = [1000 * (b - a) for a, b, _ in found]
    moments = [seen for seen, _, _ in underruns]
    own = sum(n for seen, n, _ in underruns if longest_before(found, seen) == 0.0)
    leads = sorted(frames for _, _, frames in underruns)
    return [
        (f"machine slow spells (separate SCHED_FIFO {PROBE_RT_PRIORITY} probes, one pinned to each core, time a "
         f"{usual_ms:.2f}-ms piece of work every 20 ms; a spell = one started ≥ 5 ms late or ran ≥ 3× slower): count; "
         "≥ 100 ms long; longest; work slowed at most", f"{len(found):,}; {sum(ms >= 100 for ms in lengths):,}; "
         f"{max(lengths, default=0.0):.0f} ms; {max((k for _, _, k in found), default=1.0):.0f}×", "", True),
        (f"underrun moments seen ≤ {MATCH_S:g} s after a slow spell (the longest spell before each); share of all "
         f"{MATCH_S:g}-s windows that hold a spell as long as the shortest of those; ring lead target after them "
         "(frames)", match_figure(found, moments, span) + "; " + (f"{leads[0]}–{leads[-1]}" if leads else "–"), "",
         True),
        (f"underruns with no slow spell of the machine in the {MATCH_S:g} s before them (the service's own)", f"{own}",
         "0", own == 0)]


def _child_long(hours: float) -> dict:
    python = ROOT / ".venv" / "device" / "bin" / "python"
    python = python if python.exists() else Path(sys.executable)
    command = [str(python), "-m", "benchmarks.bench_endurance", str(hours)]
    if fifo_available():
        command = ["chrt", "--fifo", str(UNIT_RT_PRIORITY), *command]
    result = subprocess.run(command, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                            text=True, timeout=int(hours * 3600) + 600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"bench_endurance failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(lines[-1])


def run(quick: bool) -> str:
    WORK.mkdir(parents=True, exist_ok=True)
    bundles()  # trained here (trainer venv) if missing; the child only loads them
    hours = 0.05 if quick else HOURS
    n_load = max(1, (os.cpu_count() or 2) - 1)
    one_thread = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    load = [subprocess.Popen([sys.executable, "-c", LOAD_SOURCE], env=one_thread) for _ in range(n_load)]
    probe_log = WORK / "endurance-probe.txt"
    load.extend(start_probe(probe_log))
    try:
        time.sleep(2.0)  # the load is running before the service starts (not synchronisation: a warm-up)
        load_start = os.getloadavg()[0]
        long = _child_long(hours)
        load_end = os.getloadavg()[0]
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    usual_ms, stalls = read_probe(probe_log)
    # kept beside the probe's log, so the match can be looked at again: monotonic s when seen, how many, lead frames
    (WORK / "endurance-underruns.txt").write_text("".join(f"{t:.3f} {n} {f}\n" for t, n, f in long["underrun_times"]))
    rows_cp = clock_and_power()
    samples = long["samples"]
    edge = max(1, int(EDGE_S / SAMPLE_S))
    rss_start = statistics.median(s[3] for s in samples[:edge])
    rss_end = statistics.median(s[3] for s in samples[-edge:])
    sched = f"SCHED_FIFO {UNIT_RT_PRIORITY}, as the unit sets" if fifo_available() else "normal scheduling (chrt --fifo not permitted here)"
    rows = [
        (f"real-time play, {long['seconds'] / 3600:.2f} h: underruns", f"{long['underruns']}", "0", long["underruns"] == 0),
        ("blocks delivered / expected at real-time pace", f"{long['blocks']:,} / {long['expected_blocks']:,.0f}",
         "equal within a second's worth", abs(long["blocks"] - long["expected_blocks"]) <= 44100 / 512),
        latency_row(samples, edge, long["frame_ms"]),
        ("RSS, median of the first → last 5 min", f"{rss_start:.1f} → {rss_end:.1f} MB", "< +5 MB",
         rss_end - rss_start < 5),
        ("watchdog misses (gap > 2 s; max gap)", f"{long['misses']} ({long['max_gap']:.2f} s)", "0", long["misses"] == 0),
        ("generator restarts", f"{long['restarts']}", "0", long["restarts"] == 0),
        *diagnosis_rows(long.get("gc", []), samples),
        *stall_rows(usual_ms, stalls, long["underrun_times"], (long["started"], long["started"] + long["seconds"])),
    ]
    table = "\n".join(f"| {a} | {b} | {c} | {'ok' if d else '**MISSED**'} |" if c else f"| {a} | {b} | | |"
                      for a, b, c, d in rows)
    table_cp = "\n".join(f"| {a} | {b} |" for a, b in rows_cp)
    return f"""## Endurance: hours at real-time pace, clock and power

`make bench ARGS="--only endurance"` (MURMUR_BENCH_ENDURANCE_HOURS={hours:g}){' — quick mode: a smoke check' if quick else ''}

| figure | measured | target | |
|---|---|---|---|
{table}

How: the service (the real engine and `{long['generator']}` on a format-2 bundle trained on the demo clip, a null
sink that pulls one 512-sample block every 11.6 ms of real time like a sound card and counts an underrun when the
ring is short) ran in its own process of the device venv under {sched}, while {n_load} process(es) at normal
priority multiplied 256 × 256 matrices without pause on the other core(s) (load average {load_start:.1f} when
the service started, {load_end:.1f} at the end, mean {statistics.fmean(s[4] for s in samples):.1f} and max
{max(s[4] for s in samples):.1f} over the run, on {os.cpu_count()} cores: whatever else ran on this machine meanwhile
competed too). Sampled every {SAMPLE_S:g} s, underruns timed to 0.1 s; watchdog pings real ({long['pings']}
received, WATCHDOG_USEC = 2 s). The machine-stall probe is a separate process (its own interpreter lock), one
pinned to each core, at a priority above the service's, that wakes every 20 ms and times a fixed piece of work: a
stall it sees (late, or the work many times slower) is the machine's (hypervisor, kernel), not the service's; an
underrun with no stall before it on any core is the service's own doing.

Clock and power (the service's own code with a simulated clock and a fake engine; the same cases are unit tests
in `tests/device/appliance/test_service_loop.py`):

| situation | what the service does |
|---|---|
{table_cp}
"""


if __name__ == "__main__":  # the child process of run()
    logging.basicConfig(level=logging.WARNING)
    sys.dont_write_bytecode = True
    print(json.dumps(long_run([WORK / "bundles" / "a"], float(sys.argv[1]))))
