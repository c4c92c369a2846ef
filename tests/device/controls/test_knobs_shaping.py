"""Pure knob shaping: smoothing, dead-band, curves, and the button logic (debounce, long press, stuck, flapping)."""

from __future__ import annotations

import numpy as np
import pytest

from murmur.device.controls.shaping import PotShaper, PressLogic, apply_curve, dead_band, smooth, smoothing_alpha

DT = 0.01  # 100 Hz polling
LSB = 1.0 / 1023.0


def test_curves_map_the_travel_onto_the_range():
    assert apply_curve(0.0, "linear", 0.0, 2.0) == 0.0
    assert apply_curve(0.25, "linear", 0.0, 2.0) == pytest.approx(0.5)
    assert apply_curve(0.25, "linear", 2.0, 0.0) == pytest.approx(1.5)  # reversed knob
    assert apply_curve(0.0, "log", 0.05, 4.0) == pytest.approx(0.05)
    assert apply_curve(1.0, "log", 0.05, 4.0) == pytest.approx(4.0)
    # equal turns give equal ratios: the middle is the geometric mean
    assert apply_curve(0.5, "log", 0.05, 4.0) == pytest.approx(np.sqrt(0.05 * 4.0))
    assert apply_curve(1.7, "linear", 0.0, 1.0) == 1.0  # clamped


def test_smoothing_alpha_is_a_time_constant():
    assert smoothing_alpha(0.01, 0.0) == 1.0
    value = 0.0
    for _ in range(4):  # 40 ms at 100 Hz = one time constant of 0.04 s
        value = smooth(value, 1.0, smoothing_alpha(DT, 0.04))
    assert value == pytest.approx(1.0 - np.exp(-1.0))


def test_dead_band_holds_until_the_move_is_larger_than_the_band_and_snaps_the_ends():
    assert dead_band(0.5, 0.508, 0.01) == 0.5
    assert dead_band(0.5, 0.492, 0.01) == 0.5
    assert dead_band(0.5, 0.52, 0.01) == 0.52
    assert dead_band(0.5, 0.004, 0.01) == 0.0
    assert dead_band(0.5, 0.995, 0.01) == 1.0


def test_adc_jitter_never_moves_the_value():
    rng = np.random.default_rng(0)
    shaper = PotShaper(0.0, 2.0)
    first = shaper.update(0.5, DT)
    assert first == pytest.approx(1.0, abs=0.01)
    changes = [shaper.update(0.5 + rng.integers(-2, 3) * LSB, DT) for _ in range(2000)]  # 20 s of ±2 LSB noise
    assert changes == [None] * 2000
    # without the dead-band the same noise would wobble the value
    raw = PotShaper(0.0, 2.0, deadband=0.0)
    raw.update(0.5, DT)
    assert any(raw.update(0.5 + rng.integers(-2, 3) * LSB, DT) is not None for _ in range(200))


def test_a_turn_reaches_the_control_within_a_few_polls_and_settles_near_the_target():
    shaper = PotShaper(0.0, 2.0)
    shaper.update(0.2, DT)
    # first poll after the turn already moves the value (latency: one poll, 10 ms)
    assert shaper.update(0.8, DT) == pytest.approx(2.0 * (0.2 + 0.6 * (1 - np.exp(-DT / 0.03))))
    values = [v for v in (shaper.update(0.8, DT) for _ in range(9)) if v is not None]  # 100 ms after the turn
    assert values[-1] >= 0.4 + 0.95 * 1.2  # 95 % of the way (default smoothing_s 0.03 s)
    settled = [shaper.update(0.8, DT) for _ in range(100)]
    assert shaper.value == pytest.approx(1.6, abs=2.0 * 0.011)
    assert all(v is None for v in settled[-50:])  # and then it stays put


def test_the_ends_are_reachable_despite_the_band_and_the_adc_offset():
    shaper = PotShaper(0.05, 4.0, curve="log")
    shaper.update(0.5, DT)
    for _ in range(100):
        shaper.update(0.000488, DT)  # MCP3008's reading of a knob at zero
    assert shaper.value == pytest.approx(0.05)
    for _ in range(100):
        shaper.update(1.0, DT)
    assert shaper.value == pytest.approx(4.0)


def feed(logic: PressLogic, samples: list[tuple[float, bool]]) -> list[tuple[float, str]]:
    fired = []
    for now, pressed in samples:
        fired += [(now, action) for action in logic.update(pressed, now)]
    return fired


def polls(start: float, stop: float, pressed: bool) -> list[tuple[float, bool]]:
    return [(round(t, 4), pressed) for t in np.arange(start, stop, DT)]


def test_debounce_turns_a_bouncing_contact_into_one_press():
    logic = PressLogic(bounce_s=0.02)
    bounce = [(1.000, True), (1.002, False), (1.004, True), (1.006, False), (1.008, True)]
    fired = feed(logic, polls(0.0, 1.0, False) + bounce + polls(1.01, 1.5, True) + polls(1.5, 2.0, False))
    assert [a for _, a in fired] == ["press"]
    assert 1.02 <= fired[0][0] <= 1.04  # 20 ms steady after the last bounce, within a poll
    # a 5 ms glitch (shorter than bounce_s) is no press at all
    logic = PressLogic(bounce_s=0.02)
    assert feed(logic, polls(0.0, 1.0, False) + [(1.0, True), (1.005, False)] + polls(1.01, 2.0, False)) == []


def test_short_and_long_press():
    logic = PressLogic(bounce_s=0.02, long_press_s=1.0)
    fired = feed(logic, polls(0.0, 0.5, False) + polls(0.5, 0.8, True) + polls(0.8, 1.0, False))
    assert [a for _, a in fired] == ["press"]
    assert fired[0][0] >= 0.8  # a short press fires on release when a long press exists
    fired = feed(logic, polls(1.0, 3.0, True) + polls(3.0, 3.5, False))
    assert [a for _, a in fired] == ["long_press"]  # once, and the release does not add a short press
    assert 2.0 <= fired[0][0] <= 2.05


def test_a_stuck_button_is_ignored_until_released():
    logic = PressLogic(bounce_s=0.02, long_press_s=1.0, stuck_s=5.0)
    fired = feed(logic, polls(0.0, 0.1, False) + polls(0.1, 20.0, True))
    assert [a for _, a in fired] == ["long_press"]  # one long press, then nothing for the remaining 19 s
    assert logic.stuck and "held for 5 s" in logic.problem
    assert feed(logic, polls(20.0, 20.5, False)) == []  # the release of a stuck button does nothing
    assert not logic.stuck
    assert [a for _, a in feed(logic, polls(21.0, 21.3, True) + polls(21.3, 21.5, False))] == ["press"]


def test_a_button_down_at_start_never_fires_until_released():
    logic = PressLogic(bounce_s=0.02)
    assert feed(logic, polls(0.0, 60.0, True)) == []
    assert "already pressed at start" in logic.problem
    assert feed(logic, polls(60.0, 60.2, False)) == []
    assert [a for _, a in feed(logic, polls(60.2, 60.4, True))] == ["press"]


def test_a_chattering_pin_is_muted_for_a_minute():
    logic = PressLogic(bounce_s=0.02, max_per_minute=10)
    samples = []
    for i in range(40):  # 40 clean presses, one every 0.5 s: a floating pin picking up mains hum, say
        t = 1.0 + 0.5 * i
        samples += polls(t, t + 0.1, True) + polls(t + 0.1, t + 0.5, False)
    fired = feed(logic, samples)
    assert len(fired) == 10
    assert "within a minute" in logic.problem
    chatter = []
    for i in range(100):  # it keeps chattering for another 100 s: muted all along
        t = 22.0 + i
        chatter += polls(t, t + 0.1, True) + polls(t + 0.1, t + 1.0, False)
    assert feed(logic, chatter) == []
    quiet = polls(122.0, 181.0, False)  # still for 59 s: not yet
    assert feed(logic, quiet + polls(181.0, 181.2, True) + polls(181.2, 181.4, False)) == []
    later = feed(logic, polls(181.4, 242.0, False) + polls(242.0, 242.2, True) + polls(242.2, 242.4, False))
    assert [a for _, a in later] == ["press"]  # after a still minute it works again
