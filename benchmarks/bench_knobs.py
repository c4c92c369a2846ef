"""Knobs: how fast a turn or a press reaches the ControlStore, and that ADC noise never moves a value.

`make bench ARGS="--only knobs"`. The GPIO back-end runs on gpiozero's MockFactory with the package's mock
MCP3008 (software SPI in Python: slower per read than the Pi's hardware SPI, so these are upper bounds).
Latency: wall time from changing the mock channel (or driving the button pin low) to the store update, at the
default poll_hz 100, smoothing_s 0.03, deadband 0.01, bounce_s 0.02. The engine reads the store once per frame
(11.6 ms at hop 512 / 44.1 kHz); its ring-buffer lead and the vocoder look-ahead come on top (bench_engine).
Noise: ±2 LSB of uniform noise on a pot at rest, shaped at 100 Hz for 10 minutes (simulated), counting changes.
OSC: wall time from a real UDP client's send on loopback (python-osc) to the store update, at a random moment;
room: three room links on loopback, from a store update on one to both others' stores, and a restarted one's
time to the room's value and to being in step;
then a flood of random and mangled datagrams at the listener while a real engine plays on a real-time null sink:
every datagram must be counted, the sound must go on (frames produced, level, underruns during the flood), and a
good message afterwards must still arrive. MIDI: the back-end on the shipped fake port (no /dev/snd here), its own
cost per CC and hot-plug cycles while an engine plays.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import struct
import time
from pathlib import Path

import numpy as np

from murmur.device.controls.gpio import start_knobs
from murmur.device.controls.mapping import parse_knobs
from murmur.device.controls.shaping import PotShaper

TARGET_MS = 100.0


def _percentiles(values_ms: list[float]) -> tuple[float, float, float]:
    array = np.asarray(values_ms)
    return float(np.median(array)), float(np.percentile(array, 95)), float(array.max())


def _measure(turns: int) -> tuple[list[float], list[float]]:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    from murmur.device.testing.mcp3008 import MockMCP3008, RecordingStore

    saved, factory = Device.pin_factory, MockFactory()
    Device.pin_factory = factory  # gpiozero 2.0's software SPI bus uses the default factory
    try:
        adc = MockMCP3008(pin_factory=factory)
        # the bench presses faster than a visitor would: lift the floating-pin rate limit (30/min) out of the way
        table = {"max_presses_per_minute": 600,
                 "noise": {"type": "pot", "channel": 0, "control": "temperature", "range": [0.0, 2.0]},
                 "next": {"type": "button", "pin": 22, "press": "reseed"}}
        store = RecordingStore()
        pot_ms, button_ms = [], []
        rng = random.Random(0)
        with start_knobs(parse_knobs(table, None, "bench"), store, pin_factory=factory) as knobs:
            knobs.wait_polls(5)
            pin = factory.pin(22)
            for i in range(turns):
                knobs.wait_polls(20)  # settled after the previous turn
                before, upwards = store.snapshot().temperature, i % 2 == 0
                knobs.wait_polls(1)
                time.sleep(rng.random() * 0.01)  # turn at a random phase of the 10-ms poll cycle
                started = time.perf_counter()
                adc.turn(0, 0.8 if upwards else 0.2)
                with store.changed:
                    store.changed.wait_for(lambda b=before, up=upwards: (store.snapshot().temperature > b) == up
                                           and store.snapshot().temperature != b, 1.0)
                pot_ms.append((time.perf_counter() - started) * 1000)
                events = len(store.triggered)
                knobs.wait_polls(1)
                time.sleep(rng.random() * 0.01)
                started = time.perf_counter()
                pin.drive_low()
                with store.changed:
                    store.changed.wait_for(lambda n=events: len(store.triggered) > n, 1.0)
                button_ms.append((time.perf_counter() - started) * 1000)
                pin.drive_high()
                knobs.wait_polls(4)
        return pot_ms, button_ms
    finally:
        factory.reset()
        Device.pin_factory = saved


def _noise_changes(seconds: float) -> int:
    rng = np.random.default_rng(0)
    shaper = PotShaper(0.0, 2.0)
    shaper.update(0.5, 0.01)
    noise = rng.integers(-2, 3, size=int(seconds * 100)) / 1023.0
    return sum(shaper.update(0.5 + n, 0.01) is not None for n in noise)


def _osc_latency(messages: int) -> list[float]:
    """ms from SimpleUDPClient.send_message to the store holding the value, ``messages`` times."""
    from pythonosc.udp_client import SimpleUDPClient

    from murmur.device.controls.osc import OscSettings, start_osc
    from murmur.device.testing.mcp3008 import RecordingStore

    store = RecordingStore()
    rng = random.Random(1)
    out = []
    with start_osc(OscSettings(enabled=True, listen="127.0.0.1", port=0), store) as osc:
        assert osc.bound is not None, osc.values()["problems"]
        client = SimpleUDPClient("127.0.0.1", osc.bound[1])
        for i in range(messages):
            value = 0.25 + 0.5 * (i % 2)  # exact in float32: the store's value equals the one sent
            time.sleep(rng.random() * 0.01)  # a random moment, as the knob turns above (not a synchronisation)
            started = time.perf_counter()
            client.send_message("/murmur/position", value)
            if not store.wait_for(lambda c, v=value: c.position == v, 2.0):
                raise RuntimeError(f"OSC message {i} did not reach the store within 2 s")
            out.append((time.perf_counter() - started) * 1000)
    return out


def _flood_bundle() -> Path:
    """A bundle to play under the flood: MURMUR_BENCH_BUNDLE, else the cached demo bundle whatever trainer code made
    it (the flood measures the listener beside a playing engine, not the sound), else the demo bundle trained."""
    from murmur.device.bundle import load_bundle
    from murmur.device.errors import BundleError

    if os.environ.get("MURMUR_BENCH_BUNDLE"):
        return Path(os.environ["MURMUR_BENCH_BUNDLE"])
    from benchmarks.common import BENCH_OUT, trained_demo_bundle

    cached = BENCH_OUT / "demo_bundle"
    try:
        load_bundle(cached)
        return cached
    except BundleError:
        return trained_demo_bundle()


def _garbage(rng: random.Random, good: list[bytes], nested: bytes) -> bytes:
    kind = rng.random()
    if kind < 0.3:
        return rng.randbytes(rng.randrange(0, 200))
    if kind < 0.6:
        data = bytearray(rng.choice(good))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        return bytes(data)
    if kind < 0.8:
        source = rng.choice(good)
        return source[: rng.randrange(len(source))]
    if kind < 0.9:
        return nested[: rng.randrange(16, len(nested))]
    return (b"/murmur/fidelity\x00\x00\x00\x00," + bytes(rng.choice(b"ifsbTFNIhdtcrm[]") for _ in range(6))
            + b"\x00\x00" + rng.randbytes(rng.randrange(0, 24)))


def _osc_flood(packets: int) -> dict:
    """``packets`` random/mangled datagrams at a listener whose limits are lifted (10 000 messages/s: nearly every
    datagram is parsed, the worst case for the CPU) while an engine plays the bundle on a real-time null sink with
    the service's buffer. Sent in batches of 100, each waited for, so the kernel's receive buffer never drops one
    (what it drops would be uncounted)."""
    from pythonosc.osc_message_builder import OscMessageBuilder
    from pythonosc.udp_client import SimpleUDPClient

    from murmur.device.bundle import load_bundle
    from murmur.device.controls.osc import OscSettings, start_osc
    from murmur.device.controls.values import ControlStore
    from murmur.device.playback.engine import Engine
    from murmur.device.playback.sinks import NullSink

    def message(address: str, *args) -> bytes:
        builder = OscMessageBuilder(address)
        for arg in args:
            builder.add_arg(arg)
        return builder.build().dgram

    good = [message("/murmur/temperature", 0.4), message("/murmur/hold", 0), message("/murmur/reseed"),
            message("/murmur/jump/unit", 0.5)]
    nested = b"".join([b"#bundle\x00" + struct.pack(">Q", 1) + struct.pack(">i", 2**20)] * 50)
    store = ControlStore()
    engine = Engine(load_bundle(_flood_bundle()), sink=NullSink(realtime=True), controls=store, buffer_frames=4)
    engine.start()
    try:
        if not engine.wait_started(30.0):
            raise RuntimeError(f"the engine did not start: {engine.error}")
        with start_osc(OscSettings(enabled=True, listen="127.0.0.1", port=0, max_messages_per_s=10000.0),
                       store) as osc:
            assert osc.bound is not None, osc.values()["problems"]
            before = engine.stats
            rng = random.Random(26)
            raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            started = time.perf_counter()
            for sent in range(1, packets + 1):
                raw.sendto(_garbage(rng, good, nested), osc.bound)
                if sent % 100 == 0 and not osc.wait_packets(sent, 30.0):
                    raise RuntimeError(f"the listener stopped counting at {osc.counters.packets} of {sent}")
            osc.wait_packets(packets, 30.0)
            seconds = time.perf_counter() - started
            raw.close()
            after = engine.stats
            c = dataclasses.replace(osc.counters)  # the flood's counts, before the good message below
            SimpleUDPClient("127.0.0.1", osc.bound[1]).send_message("/murmur/temperature", 1.25)
            still = osc.wait_until(lambda: store.snapshot().temperature == 1.25, 5.0)
        quiet = engine.stats  # then as long again without the flood: the machine's own underruns, to compare
        time.sleep(seconds)
        baseline = engine.stats.underruns - quiet.underruns
        frame_s = engine.pipeline.hop / engine.sample_rate_hz
        return {"sent": packets, "counted": c.packets, "accounted": c.refused + c.dropped + c.malformed + c.parsed,
                "malformed": c.malformed, "parsed": c.parsed, "dropped": c.dropped, "messages": c.messages,
                "bad": c.bad_messages, "unknown": c.unknown, "applied": c.applied, "actions_dropped": c.actions_dropped, "seconds": seconds,
                "audio_s": (after.frames_produced - before.frames_produced) * frame_s,
                "underruns": after.underruns - before.underruns, "level_dbfs": after.level_dbfs_10s,
                "baseline_underruns": baseline,
                "alive": still and engine.error is None, "problems": osc.values()["problems"]}
    finally:
        engine.stop()


def _room(changes: int, rejoins: int) -> tuple[list[float], list[float], list[float]]:
    """Three room links on loopback (heartbeat 1 s, the default). ms from ``store.update`` on one to the value in
    both others' stores; ms from a restarted Pi's ``join_room`` to the room's value in its store, and to its
    peers reported in step (their full state had its stamps)."""
    from murmur.device.appliance.room import RoomSettings, join_room
    from murmur.device.testing.mcp3008 import RecordingStore

    probes = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()

    def join(i: int, store: RecordingStore):
        peers = tuple(("127.0.0.1", p) for p in ports if p != ports[i])
        return join_room(RoomSettings(enabled=True, name="bench", listen="127.0.0.1", port=ports[i], peers=peers),
                         store, me=f"pi{i}-{time.monotonic_ns()}")

    stores = [RecordingStore() for _ in range(3)]
    links = [join(i, store) for i, store in enumerate(stores)]
    rng = random.Random(3)
    change_ms, value_ms, step_ms = [], [], []
    try:
        for i in range(changes):
            source = i % 3
            value = (i % 40) / 40.0  # exact in float32: compared as sent
            time.sleep(rng.random() * 0.01)  # a random moment (not a synchronisation)
            started = time.perf_counter()
            stores[source].update(position=value)
            for k in range(3):
                if not stores[k].wait_for(lambda c, v=value: c.position == v, 2.0):
                    raise RuntimeError(f"room change {i} did not reach pi{k} within 2 s")
            change_ms.append((time.perf_counter() - started) * 1000)
        for i in range(rejoins):
            links[1].close()
            value = 0.5 + (i % 20) / 40.0
            stores[0].update(fidelity=value)
            fresh = RecordingStore()
            started = time.perf_counter()
            links[1] = join(1, fresh)
            stores[1] = fresh
            if not fresh.wait_for(lambda c, v=value: c.fidelity == v, 5.0):
                raise RuntimeError(f"rejoin {i}: the room's value did not arrive within 5 s")
            value_ms.append((time.perf_counter() - started) * 1000)
            if not links[1].wait_until(links[1].in_step, 5.0):
                raise RuntimeError(f"rejoin {i}: not in step within 5 s")
            step_ms.append((time.perf_counter() - started) * 1000)
    finally:
        for room in links:
            room.close()
    return change_ms, value_ms, step_ms


def _midi(messages: int, cycles: int) -> tuple[list[float], dict]:
    """MIDI on the shipped fake port (this machine has no /dev/snd): µs from a CC entering the back-end's callback
    to the store holding its value (the mapping's own cost; ALSA's and rtmidi's delivery are not in it); then
    ``cycles`` unplug/plug cycles with the watcher thread (rescan 0.2 s) while an engine plays the bundle on a
    real-time null sink: found again each time, audio made, underruns against as long without the cycles."""
    from murmur.device.bundle import load_bundle
    from murmur.device.controls.midi import parse_midi, start_midi
    from murmur.device.playback.engine import Engine
    from murmur.device.playback.sinks import NullSink
    from murmur.device.testing.mcp3008 import RecordingStore
    from murmur.device.testing.midi import FakeMidiPorts

    name = "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"
    table = {"enabled": True, "pickup": False, "rescan_s": 0.2,
             "wild": {"type": "cc", "number": 16, "control": "temperature", "range": [0.0, 1.0]}}
    ports = FakeMidiPorts(name)
    store = RecordingStore()
    knobs = start_midi(parse_midi(table, "bench"), store, ports=ports)
    cost_us = []
    try:
        for i in range(messages):
            value = i % 128
            started = time.perf_counter()
            ports.send(name, "control_change", 16, value)
            if store.snapshot().temperature != value / 127.0:
                raise RuntimeError(f"CC {value} did not reach the store")
            cost_us.append((time.perf_counter() - started) * 1e6)
        engine = Engine(load_bundle(_flood_bundle()), sink=NullSink(realtime=True), controls=store, buffer_frames=4)
        engine.start()
        try:
            if not engine.wait_started(30.0):
                raise RuntimeError(f"the engine did not start: {engine.error}")
            before, started = engine.stats, time.perf_counter()
            found = 0
            for cycle in range(cycles):
                ports.unplug(name)
                if not knobs.wait_until(lambda: knobs.port_name is None, 5.0):
                    raise RuntimeError(f"cycle {cycle}: the unplug was not noticed within 5 s")
                ports.plug(name)
                if knobs.wait_until(lambda: knobs.port_name == name, 5.0):
                    found += 1
            seconds = time.perf_counter() - started
            after = engine.stats
            time.sleep(seconds)  # as long again without hot-plugging: the machine's own underruns
            baseline = engine.stats.underruns - after.underruns
            frame_s = engine.pipeline.hop / engine.sample_rate_hz
            result = {"cycles": cycles, "found": found, "seconds": seconds,
                      "audio_s": (after.frames_produced - before.frames_produced) * frame_s,
                      "underruns": after.underruns - before.underruns, "baseline_underruns": baseline,
                      "level_dbfs": after.level_dbfs_10s, "error": engine.error}
        finally:
            engine.stop()
    finally:
        knobs.close()
    return cost_us, result


def _footprint(seconds: float) -> dict[str, tuple[float, float]]:
    """RSS and peak RSS (MB, /proc) of ``python -m murmur.device serve`` on a real-time null sink after ``seconds``
    of playing the bundle: with no control source but the config, and with [osc], [room] (one peer on loopback)
    and [midi] on (no MIDI system here: it waits, as on a Pi without a controller)."""
    import json
    import signal
    import subprocess
    import sys
    import tempfile

    from murmur import REPO_ROOT

    out: dict[str, tuple[float, float]] = {}
    osc_port, room_port, peer_port = (random.randrange(20000, 30000) + i for i in (0, 1, 2))
    extra = (f'[osc]\nenabled = true\nlisten = "127.0.0.1"\nport = {osc_port}\n'
             f'[room]\nenabled = true\nlisten = "127.0.0.1"\nport = {room_port}\npeers = ["127.0.0.1:{peer_port}"]\n'
             '[midi]\nenabled = true\n[midi.wild]\ntype = "cc"\nnumber = 16\ncontrol = "temperature"\n')
    with tempfile.TemporaryDirectory(prefix="murmur-bench-knobs-") as tmp:
        for label, tables in (("config only", ""), ("OSC + room + MIDI on", extra)):
            config, status = Path(tmp) / "murmur.toml", Path(tmp) / "status.json"
            config.write_text(f'[playback]\nbundle = "{_flood_bundle()}"\n[knobs]\nenabled = false\n{tables}')
            status.unlink(missing_ok=True)
            env = dict(os.environ, MURMUR_SINK="null", MURMUR_STATUS_FILE=str(status), NOTIFY_SOCKET="")
            proc = subprocess.Popen([sys.executable, "-m", "murmur.device", "serve", "--config", str(config)],
                                    cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 60.0
                while time.monotonic() < deadline:  # polling the status file the service rewrites every second
                    try:
                        if json.loads(status.read_text()).get("playing"):
                            break
                    except (OSError, ValueError):
                        pass
                    time.sleep(0.2)
                else:
                    raise RuntimeError(f"serve ({label}) did not play within 60 s")
                time.sleep(seconds)  # let it play: the figure is the memory of a playing service
                fields = dict(line.split(":", 1) for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines())
                out[label] = (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    return out


def run(quick: bool) -> str:
    turns = 20 if quick else 100
    pot_ms, button_ms = _measure(turns)
    pot = _percentiles(pot_ms)
    button = _percentiles(button_ms)
    changes = _noise_changes(60.0 if quick else 600.0)
    osc = _percentiles(_osc_latency(turns))
    flood = _osc_flood(10_000 if quick else 100_000)
    flood_ok = (flood["counted"] == flood["accounted"] == flood["sent"] and flood["alive"] and not flood["problems"]
                and flood["level_dbfs"] > -90.0)
    room_change, room_value, room_step = (_percentiles(x) for x in _room(30 if quick else 200, 3 if quick else 20))
    midi_cost, hotplug = _midi(1000 if quick else 10_000, 10 if quick else 100)
    midi_us = _percentiles(midi_cost)
    hotplug_ok = hotplug["found"] == hotplug["cycles"] and hotplug["error"] is None and hotplug["level_dbfs"] > -90.0
    footprint = _footprint(3.0 if quick else 10.0)
    plain, sources = footprint["config only"], footprint["OSC + room + MIDI on"]
    rows = [
        f"| pot turn → store, ms (median / p95 / max, {turns} turns) | {pot[0]:.1f} / {pot[1]:.1f} / {pot[2]:.1f} "
        f"| ≤ {TARGET_MS:.0f} minus engine lead | {'ok' if pot[2] <= TARGET_MS / 2 else 'check'} |",
        f"| button press → action, ms (median / p95 / max) | {button[0]:.1f} / {button[1]:.1f} / {button[2]:.1f} "
        f"| ≤ {TARGET_MS:.0f} | {'ok' if button[2] <= TARGET_MS else 'check'} |",
        f"| value changes from ±2 LSB noise at rest ({'1' if quick else '10'} min) | {changes} | 0 "
        f"| {'ok' if changes == 0 else 'FAIL'} |",
        f"| OSC message → store, ms (median / p95 / max, {turns} messages, UDP on loopback) | {osc[0]:.1f} / "
        f"{osc[1]:.1f} / {osc[2]:.1f} | ≤ {TARGET_MS:.0f} minus engine lead | {'ok' if osc[2] <= TARGET_MS / 2 else 'check'} |",
        f"| room: a change on one Pi → in both others' stores, ms (median / p95 / max, {30 if quick else 200} "
        f"changes, 3 links on loopback) | {room_change[0]:.1f} / {room_change[1]:.1f} / {room_change[2]:.1f} | ≤ 50 "
        f"| {'ok' if room_change[2] <= 50 else 'check'} |",
        f"| room: a restarted Pi → the room's value / its peers in step, ms (median / max, {3 if quick else 20} "
        f"restarts, heartbeat 1 s) | {room_value[0]:.1f} / {room_value[2]:.1f}; {room_step[0]:.0f} / "
        f"{room_step[2]:.0f} | ≤ 1000 | {'ok' if room_step[2] <= 1000 else 'check'} |",
        f"| MIDI CC → store, µs, the back-end's own cost on the fake port (median / p95 / max, "
        f"{len(midi_cost):,} CCs; ALSA and rtmidi delivery not included) | {midi_us[0]:.1f} / {midi_us[1]:.1f} / "
        f"{midi_us[2]:.1f} | ≤ 100 ms with delivery | {'ok' if midi_us[2] <= TARGET_MS / 2 * 1000 else 'check'} |",
        f"| MIDI hot-plug on the fake port: unplug/plug cycles while playing (watcher every 0.2 s) | "
        f"{hotplug['found']} of {hotplug['cycles']} found again in {hotplug['seconds']:.1f} s; "
        f"{hotplug['audio_s']:.1f} s of audio made, level {hotplug['level_dbfs']:.1f} dBFS; {hotplug['underruns']} "
        f"underruns ({hotplug['baseline_underruns']} in as long without) | all found, no silence, 0 crashes (a real "
        f"USB gadget in the booted guest: System) | {'ok' if hotplug_ok else 'FAIL'} |",
        f"| service RSS (peak), MB: config only / with OSC, room and MIDI on (serve on a null sink, "
        f"{3 if quick else 10} s playing) | {plain[0]:.0f} ({plain[1]:.0f}) / {sources[0]:.0f} ({sources[1]:.0f}) "
        f"| ≤ 150 | {'ok' if sources[1] <= 150 else 'check'} |",
        f"| OSC flood: {flood['sent']:,} random/mangled datagrams while playing: counted / sound / underruns during it "
        f"| {flood['counted']:,} counted ({flood['malformed']:,} malformed, {flood['parsed']:,} parsed: "
        f"{flood['applied']:,} applied, {flood['actions_dropped']:,} actions dropped, {flood['bad']:,} bad arguments, "
        f"{flood['unknown']:,} unknown; "
        f"{flood['dropped']:,} dropped) in {flood['seconds']:.1f} s; {flood['audio_s']:.1f} s of audio made, "
        f"level {flood['level_dbfs']:.1f} dBFS; {flood['underruns']} underruns ({flood['baseline_underruns']} in as "
        f"long without the flood); a good message after it "
        f"{'applied' if flood['alive'] else 'LOST'} | every datagram counted, 0 crashes, no silence "
        f"| {'ok' if flood_ok else 'FAIL'} |",
    ]
    return "\n".join([
        "## Knobs",
        "",
        '`make bench ARGS="--only knobs"` — gpiozero MockFactory + mock MCP3008, poll 100 Hz, default shaping.',
        "",
        "| figure | measured | target | |",
        "|---|---|---|---|",
        *rows,
        "",
        "Measured from the moment the mock input changes (or the OSC client sends) to the ControlStore update (wall "
        "time, this machine's load included). The OSC flood runs with the listener's limits lifted (10 000 "
        "messages/s), so nearly every datagram is parsed, beside an engine playing the demo bundle on a real-time "
        "null sink with the service's 4-frame buffer. The room's three links share this one Python process (one "
        "GIL, this machine's load); on Pis each is a service of its own. The sound follows one engine frame later plus the engine's buffer lead and the vocoder's "
        "look-ahead (see the engine section); tests/device/controls/test_knobs_e2e.py checks the whole path against rendered audio.",
    ])


if __name__ == "__main__":
    print(run(quick=True))
