"""Knobs: how fast a turn or a press reaches the ControlStore, and that ADC noise never moves a value.

`make bench ARGS="--only knobs"`. The GPIO back-end runs on gpiozero's MockFactory with the package's mock
MCP3008 (software SPI in Python: slower per read than the Pi's hardware SPI, so these are upper bounds).
Latency: wall time from changing the mock channel (or driving the button pin low) to the store update, at the
default poll_hz 100, smoothing_s 0.03, deadband 0.01, bounce_s 0.02. The engine reads the store once per frame
(11.6 ms at hop 512 / 44.1 kHz); its ring-buffer lead and the vocoder look-ahead come on top (bench_engine).
Noise: ±2 LSB of uniform noise on a pot at rest, shaped at 100 Hz for 10 minutes (simulated), counting changes.
"""

from __future__ import annotations

import random
import time

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


def run(quick: bool) -> str:
    turns = 20 if quick else 100
    pot_ms, button_ms = _measure(turns)
    pot = _percentiles(pot_ms)
    button = _percentiles(button_ms)
    changes = _noise_changes(60.0 if quick else 600.0)
    rows = [
        f"| pot turn → store, ms (median / p95 / max, {turns} turns) | {pot[0]:.1f} / {pot[1]:.1f} / {pot[2]:.1f} "
        f"| ≤ {TARGET_MS:.0f} minus engine lead | {'ok' if pot[2] <= TARGET_MS / 2 else 'check'} |",
        f"| button press → action, ms (median / p95 / max) | {button[0]:.1f} / {button[1]:.1f} / {button[2]:.1f} "
        f"| ≤ {TARGET_MS:.0f} | {'ok' if button[2] <= TARGET_MS else 'check'} |",
        f"| value changes from ±2 LSB noise at rest ({'1' if quick else '10'} min) | {changes} | 0 "
        f"| {'ok' if changes == 0 else 'FAIL'} |",
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
        "Measured from the moment the mock input changes to the ControlStore update (wall time, this machine's "
        "load included). The sound follows one engine frame later plus the engine's buffer lead and the vocoder's "
        "look-ahead (see the engine section); tests/device/controls/test_knobs_e2e.py checks the whole path against rendered audio.",
    ])


if __name__ == "__main__":
    print(run(quick=True))
