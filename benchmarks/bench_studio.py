"""Studio: start to page ready, the demo clip from upload to a trained run, and live listening in a real browser
(knob → sound latency, stream underruns over 10 minutes).

`make bench ARGS="--only studio"` (not part of a plain `make bench`: it listens for MURMUR_BENCH_STUDIO_LISTEN_S,
default 600 s, of real time). Debian's chromium, headless, drives the page as tests/studio/test_studio_browser.py does.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from murmur import REPO_ROOT as ROOT

from .bench_endurance import MATCH_S, longest_before, match_figure, read_probe, spells_in, start_probe, stop_probes

DEFAULT = False  # run only when named
LISTEN_S = float(os.environ.get("MURMUR_BENCH_STUDIO_LISTEN_S", "600"))
KNOB_EVERY_S = 10.0  # a gain move (0 dB ⇄ -60 dB) this often while listening: one latency figure each
DEMO_CLIP = ROOT / "trainer" / "demo" / "demo.ogg"


def _browser(profile: Path):
    """Headless chromium with its profile in ``profile`` (the bench's work dir, removed after the run)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1800",
                     "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


def _until(condition, timeout: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(None, timeout, poll_frequency=0.1).until(lambda _: condition(), message=what)


def run(quick: bool) -> str:
    from selenium.webdriver.common.by import By

    listen_s = 30.0 if quick else LISTEN_S
    work = Path(tempfile.mkdtemp(prefix="murmur-bench-studio-"))
    spawned = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "murmur.studio", "--project", str(work / "project"), "--port", "0",
                             "--no-browser"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    driver = None
    probes: list = []
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if line.startswith("studio: http"):
                url = line.split(" ", 1)[1].strip()
                break
        if not url:
            raise RuntimeError("the studio did not print its address")
        address_s = time.monotonic() - spawned
        driver = _browser(work / "chromium-profile")
        d = driver
        d.get(url)
        _until(lambda: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", 60, "page never ready")
        ready_s = time.monotonic() - spawned

        uploaded = time.monotonic()
        d.find_element(By.ID, "files").send_keys(str(DEMO_CLIP))
        _until(lambda: d.find_elements(By.CSS_SELECTOR, ".recording"), 120, "the clip never appeared")
        added_s = time.monotonic() - uploaded
        d.find_element(By.ID, "train").click()  # the page's defaults: 3 minutes, as `make train`
        _until(lambda: d.find_element(By.ID, "train-text").get_attribute("data-status") in ("done", "failed"), 600,
               "training never finished")
        trained_s = time.monotonic() - uploaded
        status = d.find_element(By.ID, "train-text").get_attribute("data-status")
        if status != "done":
            raise RuntimeError(f"training failed in the page: {d.find_element(By.ID, 'train-error').text}")

        d.find_element(By.ID, "live-start").click()
        _until(lambda: d.find_element(By.ID, "live-status").get_attribute("data-playing") == "1", 60, "no live audio")
        _until(lambda: d.execute_script("return window.studioLive.received") > 100, 60, "no stream")
        probes = start_probe(work / "probe.txt")
        started = time.monotonic()
        gain = 0
        next_knob = started + KNOB_EVERY_S
        loads = []
        while time.monotonic() - started < listen_s:
            time.sleep(min(1.0, max(0.0, next_knob - time.monotonic())))  # pacing the artist's hand, not a sync
            loads.append(os.getloadavg()[0])
            if time.monotonic() >= next_knob:
                gain = -60 if gain == 0 else 0
                d.execute_script("const k = document.querySelector('#knob-gain_db'); k.value = arguments[0];"
                                 "k.dispatchEvent(new Event('input'))", gain)
                next_knob += KNOB_EVERY_S
        live = d.execute_script("const l = window.studioLive; return {underruns: l.underruns, received: l.received,"
                                " latencies: l.latencies || [], dropped: l.droppedSamples || 0, server: l.server || {},"
                                " target: l.target || 0, underrunTimes: l.underrunTimes || [],"
                                " rate: l.ctx.sampleRate, outputLatency: l.ctx.outputLatency || l.ctx.baseLatency || 0}")
        listened_s = time.monotonic() - started
        epoch_minus_monotonic_s = time.time() - time.monotonic()  # the page's times are epoch ms
        stop_probes(probes)  # before its logs are read
        probes = []
        usual_ms, stalls = read_probe(work / "probe.txt")
        found = spells_in(usual_ms, stalls, (started, started + listened_s))
        moments = [ms / 1000 - epoch_minus_monotonic_s for ms in live["underrunTimes"]]
        moments = [t for t in moments if started <= t <= started + listened_s]  # not the start's fill-up
    finally:
        stop_probes(probes)  # never leave a real-time probe behind
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)

    own = sum(longest_before(found, t) == 0.0 for t in moments)
    latencies = sorted(live["latencies"])
    median = statistics.median(latencies) if latencies else float("nan")
    worst = latencies[-1] if latencies else float("nan")
    server = live["server"]
    rows = [
        ("studio start → address printed → page ready", f"{address_s:.1f} s → {ready_s:.1f} s", "", True),
        ("demo clip (29 s): upload + decode + overview", f"{added_s:.1f} s", "", True),
        ("demo clip: upload → trained run (page defaults: 3-min budget, 30-s preview)", f"{trained_s:.0f} s",
         "≤ 180 s + upload", trained_s <= 200),
        (f"knob → sound, gain moves of 60 dB ({len(latencies)} moves): median / worst", f"{median:.0f} / {worst:.0f} ms",
         "~150 ms", median <= 150),
        (f"stream underruns in the page over {listened_s / 60:.1f} min of live listening", f"{live['underruns']}", "0",
         live["underruns"] == 0),
        ("the page's buffer at the end: target / samples dropped beyond 150 ms",
         f"{1000 * live['target']:.0f} ms / {live['dropped']}", "", True),
        ("blocks the engine had not ready when due (the page's buffer covered them) / blocks sent / late restarts of "
         "the pacing clock / ring lead at the end",
         f"{server.get('late_blocks', '?')} / {server.get('blocks_sent', '?')} / {server.get('late_restarts', '?')}"
         f" / {server.get('engine_buffer_frames', '?')} frames", "", True),
        ("machine slow spells while listening (the endurance bench's probes, one per core: a fixed piece of work every "
         "20 ms started ≥ 5 ms late or ran ≥ 3× slower): count; ≥ 100 ms long; longest",
         f"{len(found):,}; {sum(b - a >= 0.1 for a, b, _ in found):,}; "
         f"{1000 * max((b - a for a, b, _ in found), default=0.0):.0f} ms", "", True),
        (f"page underrun moments seen ≤ {MATCH_S:g} s after a slow spell (the longest spell before each); share of "
         f"all {MATCH_S:g}-s windows that hold a spell as long as the shortest of those",
         match_figure(found, moments, (started, started + listened_s)), "", True),
        (f"page underruns with no slow spell of the machine in the {MATCH_S:g} s before them (the stream's own)",
         f"{own}", "0", own == 0),
    ]
    table = "\n".join(f"| {a} | {b} | {c} | {'ok' if d else '**MISSED**'} |" if c else f"| {a} | {b} | | |"
                      for a, b, c, d in rows)
    return f"""## Studio: the page, training from it, live listening in the browser

`make bench ARGS="--only studio"` (MURMUR_BENCH_STUDIO_LISTEN_S={listen_s:g}){' — quick mode: a smoke check' if quick else ''}

| figure | measured | target | |
|---|---|---|---|
{table}

How: `python -m murmur.studio --port 0 --no-browser` on a fresh project, driven by Debian's chromium (headless, through
chromium-driver) as an artist would: the demo clip dropped into the file field, Train with the page's defaults,
Play, and the gain knob moved between 0 and -60 dB every {KNOB_EVERY_S:g} s. Knob → sound is measured in the page:
from the knob's input event to the first streamed block made with the new setting (the live worker names it), plus what the page's
AudioWorklet had buffered ahead of it then (its target starts at 50 ms) and the AudioContext's output latency
({1000 * live['outputLatency']:.0f} ms here, a headless browser without a sound card). Load average while listening:
mean {statistics.fmean(loads or [0]):.1f}, max {max(loads or [0]):.1f} on {os.cpu_count()} cores. A page underrun is a
128-sample render quantum that found the buffer short. The engine's ring (2 frames, 23 ms) is in the figure; the
engine runs in its own process (`studio/live_worker.py`) and waits for a late block rather than sending silence, so
the page's buffer is the stream's one real-time consumer. Slow spells are this machine's own (a virtual machine's
host lending its CPU elsewhere shows as them); every program on it, the browser's audio thread included, stalls
through them. The page notes when it heard of each underrun (epoch ms; the player reports every 23 ms); each is set against
the longest slow spell in the {MATCH_S:g} s before it, and against how many of all {MATCH_S:g}-s windows hold a
spell that long (the chance of an accidental match). An underrun is still a gap, but its edges fade (no click).
"""
