"""The GPIO back-end driven through gpiozero's own MockFactory: pots on a mock MCP3008, encoders, buttons, LED."""

from __future__ import annotations

import io
import json
import logging
import threading
import warnings

import pytest
from gpiozero import LED, Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from murmur.device.controls.base import Knobs
from murmur.device.controls.gpio import start_knobs
from murmur.device.controls.mapping import parse_knobs
from murmur.device.controls.values import Controls, ControlStore
from murmur.device.testing.mcp3008 import MockMCP3008, RecordingStore

WHERE = "test.toml"


@pytest.fixture
def factory():
    """gpiozero's MockFactory, also installed as the default: gpiozero 2.0's software SPI bus (which the mock
    MCP3008 talks to) builds its pins on the default factory whatever pin_factory the device was given."""
    saved = Device.pin_factory
    mock = MockFactory()
    Device.pin_factory = mock
    yield mock
    mock.reset()
    Device.pin_factory = saved


@pytest.fixture
def store() -> RecordingStore:
    return RecordingStore()


def start(knobs_table: dict, store: ControlStore, factory, led: dict | None = None, on_error=None) -> Knobs:
    return start_knobs(parse_knobs(knobs_table, led, WHERE), store, pin_factory=factory, on_error=on_error)


def quadrature(pin_a, pin_b, clockwise: bool, *, bounce: bool = False) -> None:
    """One detent: a full quadrature cycle (pull-ups: idle high, contacts pull low), optionally with contact bounce
    on every edge (each edge chatters twice before it settles)."""
    first, second = (pin_a, pin_b) if clockwise else (pin_b, pin_a)
    for pin, level in ((first, 0), (second, 0), (first, 1), (second, 1)):
        settle, other = (pin.drive_low, pin.drive_high) if level == 0 else (pin.drive_high, pin.drive_low)
        if bounce:
            settle(), other(), settle(), other()
        settle()


def test_pots_drive_their_controls_through_range_and_curve(factory, store):
    adc = MockMCP3008(pin_factory=factory)
    adc.turn(0, 0.25)
    adc.turn(3, 0.5)
    table = {"noise": {"type": "pot", "channel": 0, "control": "temperature", "range": [0.0, 2.0]},
             "jumps": {"type": "pot", "channel": 3, "control": "jump", "range": [0.05, 4.0], "curve": "log"}}
    with start(table, store, factory) as knobs:
        assert knobs.backend == "gpio"
        assert store.wait_for(lambda c: abs(c.temperature - 0.5) < 0.01 and abs(c.jump - 0.447) < 0.01)
        adc.turn(0, 0.75)
        assert store.wait_for(lambda c: abs(c.temperature - 1.5) < 0.03)
        values = knobs.values()["inputs"]
        assert values["noise"]["raw"] == pytest.approx(0.75, abs=0.002)
        assert values["jumps"]["control"] == "jump"
    assert adc.reads > 0


def test_adc_jitter_does_not_move_the_control(factory, store):
    adc = MockMCP3008(pin_factory=factory)
    adc.turn(0, 0.5)
    table = {"noise": {"type": "pot", "channel": 0, "control": "temperature", "range": [0.0, 2.0]}}
    with start(table, store, factory) as knobs:
        assert store.wait_for(lambda c: abs(c.temperature - 1.0) < 0.01)
        assert knobs.wait_polls(20)
        version = store.version
        for i in range(60):  # ±3 LSB of noise, changing at every other poll
            adc.turn(0, 0.5 + (3 if i % 2 else -3) / 1023)
            assert knobs.wait_polls(1)
        assert store.version == version
        adc.turn(0, 0.6)  # a real turn still gets through
        assert store.wait_for(lambda c: c.temperature > 1.15)


def test_with_pickup_a_pot_takes_over_only_once_it_reaches_the_value(factory):
    """[knobs] pickup: the pot sits at 0.5 (temperature 1.0 of 0..2) while the sound is at 0.2: nothing happens
    until the pot passes 0.2; after OSC (or the room) moves the control, the pot must come to it again."""
    store = RecordingStore()
    store.update(temperature=0.2)
    adc = MockMCP3008(pin_factory=factory)
    adc.turn(0, 0.5)
    table = {"pickup": True, "noise": {"type": "pot", "channel": 0, "control": "temperature", "range": [0.0, 2.0]}}
    with start(table, store, factory) as knobs:
        assert knobs.wait_polls(10)
        assert store.snapshot().temperature == 0.2 and knobs.values()["inputs"]["noise"]["picked_up"] is False
        adc.turn(0, 0.3)  # still above 0.1 (= 0.2 of 0..2): not yet
        assert knobs.wait_polls(10) and store.snapshot().temperature == 0.2
        adc.turn(0, 0.05)  # passes through it: picked up, and from here the pot steers (to within its dead-band)
        assert store.wait_for(lambda c: abs(c.temperature - 0.1) < 0.025)
        adc.turn(0, 0.4)
        assert store.wait_for(lambda c: abs(c.temperature - 0.8) < 0.025)
        store.update(temperature=1.6)  # OSC, MIDI or the room moved it
        adc.turn(0, 0.5)
        assert knobs.wait_polls(10) and store.snapshot().temperature == 1.6
        adc.turn(0, 0.85)  # passes 0.8 (= 1.6): picked up again
        assert store.wait_for(lambda c: abs(c.temperature - 1.7) < 0.025)


def test_encoder_steps_both_ways_and_bounce_never_steps_backwards(factory, store):
    store.update(gain_db=0.0)
    table = {"volume": {"type": "encoder", "pins": [17, 18], "control": "gain_db", "step": 1.0}}
    pin_a, pin_b = factory.pin(17), factory.pin(18)
    with start(table, store, factory) as knobs:
        for _ in range(3):
            quadrature(pin_a, pin_b, clockwise=True)
        assert store.wait_for(lambda c: c.gain_db == 3.0)
        quadrature(pin_a, pin_b, clockwise=False)
        assert store.wait_for(lambda c: c.gain_db == 2.0)
        seen = []
        original = store.update

        def record(**changes):
            seen.append(changes["gain_db"])
            original(**changes)

        store.update = record
        for _ in range(4):
            quadrature(pin_a, pin_b, clockwise=True, bounce=True)
        assert store.wait_for(lambda c: c.gain_db == 6.0)
        assert seen == [3.0, 4.0, 5.0, 6.0]  # every step forwards, none back
        for _ in range(2):
            quadrature(pin_a, pin_b, clockwise=False, bounce=True)
        assert store.wait_for(lambda c: c.gain_db == 4.0)
        assert seen[4:] == [5.0, 4.0]
        assert knobs.values()["inputs"]["volume"]["steps"] == 3 - 1 + 4 - 2  # gpiozero's own count


def test_encoder_can_fire_actions_per_detent(factory, store):
    table = {"browse": {"type": "encoder", "pins": [5, 6], "clockwise": "next_bundle",
                        "counter_clockwise": "previous_bundle"}}
    pin_a, pin_b = factory.pin(5), factory.pin(6)
    with start(table, store, factory):
        quadrature(pin_a, pin_b, clockwise=True)
        quadrature(pin_a, pin_b, clockwise=False)
        quadrature(pin_a, pin_b, clockwise=False)
        assert store.wait_triggered(3)
    assert store.triggered == ["next_bundle", "previous_bundle", "previous_bundle"]
    assert store.take_service_events() == ("next_bundle", "previous_bundle", "previous_bundle")


def test_button_debounce_short_and_long_press(factory, store):
    table = {"next": {"type": "button", "pin": 22, "pull": "up", "press": "next_bundle",
                      "long_press": "previous_bundle", "long_press_s": 0.6}}
    pin = factory.pin(22)
    with start(table, store, factory) as knobs:
        assert knobs.wait_polls(3)
        for _ in range(5):  # contact bounce, then held down
            pin.drive_low()
            pin.drive_high()
        pin.drive_low()
        assert knobs.wait_polls(6)  # held for ~60 ms: past the 20 ms debounce, well short of the long press
        pin.drive_high()
        assert store.wait_triggered(1)
        pin.drive_low()
        assert store.wait_triggered(2)  # fires while still held, after long_press_s
        pin.drive_high()
        assert knobs.wait_polls(10)
    assert store.triggered == ["next_bundle", "previous_bundle"]


def test_pull_down_button_fires_on_a_high_level(factory, store):
    table = {"again": {"type": "button", "pin": 23, "pull": "down", "press": "reseed"}}
    pin = factory.pin(23)
    with start(table, store, factory) as knobs:
        assert knobs.wait_polls(3)
        assert pin.state is False or pin.state == 0  # the internal pull-down holds it low
        pin.drive_high()
        assert store.wait_triggered(1)
    assert store.triggered == ["reseed"]


def test_a_stuck_button_is_ignored_after_the_limit_and_reported(factory, store):
    problems: list[str] = []
    reported = threading.Event()

    def on_error(message: str) -> None:
        problems.append(message)
        reported.set()

    table = {"stuck_s": 1.0, "next": {"type": "button", "pin": 22, "press": "next_bundle"}}
    pin = factory.pin(22)
    with start(table, store, factory, on_error=on_error) as knobs:
        assert knobs.wait_polls(3)
        pin.drive_low()  # and it stays down: a stuck button
        assert store.wait_triggered(1)
        assert reported.wait(5.0)
        assert "button 'next' held for 1 s: ignored until released" in problems[0]
        assert knobs.values()["inputs"]["next"] == {"type": "button", "pressed": True, "ignored": True}
        pin.drive_high()
        assert knobs.wait_polls(5)
        assert store.triggered == ["next_bundle"]  # the release of an ignored button does nothing
        pin.drive_low()  # back in service
        assert store.wait_triggered(2)
        assert knobs.values()["problems"] == problems


def test_a_button_already_down_at_start_does_nothing(factory, store):
    problems = []
    pin = factory.pin(22)
    pin.drive_low()  # e.g. a floating pin that reads low with no pull-up yet, or a jammed button
    table = {"next": {"type": "button", "pin": 22, "pull": "none", "press": "next_bundle"}}
    with start(table, store, factory, on_error=problems.append) as knobs:
        assert knobs.wait_polls(10)
        assert store.triggered == []
        assert any("already pressed at start" in p for p in problems)


def test_switch_and_encoder_push_drive_hold(factory, store):
    table = {"freeze": {"type": "switch", "pin": 24, "control": "hold"},
             "volume": {"type": "encoder", "pins": [17, 18], "control": "gain_db", "push_pin": 27, "push": "hold",
                        "push_long": "reseed"}}
    switch, push = factory.pin(24), factory.pin(27)
    with start(table, store, factory) as knobs:
        assert knobs.wait_polls(3)
        switch.drive_low()
        assert store.wait_for(lambda c: c.hold)
        switch.drive_high()
        assert store.wait_for(lambda c: not c.hold)
        push.drive_low()
        assert knobs.wait_polls(6)
        push.drive_high()
        assert store.wait_for(lambda c: c.hold)  # short press toggles hold on
        assert store.triggered == []


def test_led_shows_the_service_state(factory, store):
    with start({}, store, factory, led={"pin": 12, "pwm": False, "playing": "on", "quiet_hours": "off"}) as knobs:
        led_pin = factory.pin(12)
        knobs.set_status("playing")
        assert led_pin.state
        assert knobs.values()["led"] == "on"
        knobs.set_status("quiet-hours")
        assert not led_pin.state
    factory.pin_class = MockPWMPin  # PWM-capable pins for the dimmable LED (PWMLED)
    with start({}, store, factory, led={"pin": 13, "playing": "on"}) as knobs:
        assert factory.pin(13).frequency  # driven as PWM
        knobs.set_status("playing")
        assert factory.pin(13).state == 1.0


def test_one_input_that_cannot_attach_is_reported_and_the_others_work(factory, store):
    problems = []
    blocker = LED(22, pin_factory=factory)  # something else holds GPIO 22
    table = {"next": {"type": "button", "pin": 22, "press": "next_bundle"},
             "again": {"type": "button", "pin": 23, "press": "reseed"}}
    try:
        with start(table, store, factory, on_error=problems.append) as knobs:
            assert len(problems) == 1 and "button 'next' (GPIO 22) not attached" in problems[0]
            assert knobs.wait_polls(3)
            factory.pin(23).drive_low()
            assert store.wait_triggered(1)
    finally:
        blocker.close()
    assert store.triggered == ["reseed"]


def test_without_gpio_hardware_one_line_is_logged_and_nothing_is_attached(monkeypatch, caplog, store):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(Device, "pin_factory", None)  # as in a fresh service process
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Device._default_pin_factory().close()
    except Exception:
        pass  # no GPIO here: the path under test
    else:
        pytest.skip("this machine has GPIO: the no-hardware path cannot be taken here")
    knob_map = parse_knobs({"next": {"type": "button", "pin": 22, "press": "next_bundle"}}, {"pin": 12}, WHERE)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        knobs = start_knobs(knob_map, store)
    lines = [r for r in caplog.records if r.name.startswith("murmur")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "no GPIO on this machine" in lines[0].getMessage()
    assert "[sampler] defaults" in lines[0].getMessage()
    assert [str(w.message) for w in caught] == []  # gpiozero's four fallback warnings are not repeated
    assert knobs.backend == "none"
    values = knobs.values()
    assert values["backend"] == "none" and values["inputs"] == {} and values["led"] is None
    assert len(values["problems"]) == 1 and values["problems"][0] in lines[0].getMessage()
    knobs.set_status("playing")
    knobs.close()
    assert store.snapshot() == Controls()


def test_a_disabled_or_empty_map_touches_no_gpio(caplog, store):
    caplog.set_level(logging.DEBUG)
    factory_before = Device.pin_factory
    table = {"enabled": False, "next": {"type": "button", "pin": 22, "press": "next_bundle"}}
    knobs = start_knobs(parse_knobs(table, None, WHERE), store)
    assert knobs.backend == "none" and knobs.values()["problems"] == []
    assert not [r for r in caplog.records if r.name.startswith("murmur")]
    assert Device.pin_factory is factory_before  # no pin factory was even looked for


def test_close_releases_every_pin_so_a_reload_can_attach_again(factory, store):
    MockMCP3008(pin_factory=factory).turn(0, 0.5)
    table = {"noise": {"type": "pot", "channel": 0, "control": "temperature"},
             "volume": {"type": "encoder", "pins": [17, 18], "control": "gain_db", "push_pin": 27, "push": "hold"},
             "next": {"type": "button", "pin": 22, "press": "next_bundle"}}
    led = {"pin": 12, "pwm": False}
    problems: list[str] = []
    first = start(table, store, factory, led=led, on_error=problems.append)
    assert first.wait_polls(2)
    first.close()
    first.close()  # twice is fine
    with start(table, store, factory, led=led, on_error=problems.append) as second:  # e.g. after SIGHUP
        assert second.wait_polls(2)
        values = second.values()
        json.dumps(values, allow_nan=False)  # goes into status.json as is
        assert set(values["inputs"]) == {"noise", "volume", "volume.push", "next"}
    assert problems == []


def test_a_pin_without_pwm_still_shows_breathe_as_steady_light(factory, store, caplog):
    with start({}, store, factory, led={"pin": 12, "pwm": True, "playing": "breathe"}) as knobs:
        knobs.set_status("playing")
        assert factory.pin(12).state  # MockFactory's default pins have no PWM: plain LED, on
        assert knobs.values()["led"] == "breathe" and knobs.values()["problems"] == []
    assert "cannot dim" in caplog.text


def _real_gpio_available() -> bool:
    if Device.pin_factory is not None and not isinstance(Device.pin_factory, MockFactory):
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Device._default_pin_factory().close()
    except Exception:
        return False
    return True


@pytest.mark.hardware
@pytest.mark.skipif(not _real_gpio_available(), reason="no GPIO on this machine")
def test_on_a_pi_a_pulled_up_button_attaches_and_reads_released(store, monkeypatch):
    """On the Pi itself (lgpio): a button on a free GPIO (MURMUR_TEST_GPIO, default 26, nothing wired) with the
    internal pull-up is polled and reads released; nothing fires."""
    import os

    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    pin = int(os.environ.get("MURMUR_TEST_GPIO", "26"))
    with start_knobs(parse_knobs({"probe": {"type": "button", "pin": pin, "press": "reseed"}}, None, WHERE),
                     store) as knobs:
        assert knobs.backend == "gpio"
        assert knobs.wait_polls(10)
        assert knobs.values()["inputs"]["probe"] == {"type": "button", "pressed": False, "ignored": False}
    assert store.triggered == []


def test_keys_command_with_a_config_attaches_the_panel_for_a_wiring_check(factory, tmp_path, monkeypatch, capsys):
    from murmur.device.controls.keyboard import cli

    MockMCP3008(pin_factory=factory).turn(2, 0.5)
    config = tmp_path / "murmur.toml"
    config.write_text('[knobs]\nenabled = false\n[knobs.place]\ntype = "pot"\nchannel = 2\ncontrol = "position"\n'
                      '[knobs.again]\ntype = "button"\npin = 23\npress = "reseed"\n')
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli(["keys", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "position 0.50" in err
    assert "'place': {'type': 'pot', 'control': 'position', 'raw': 0.5" in err
    assert "'again': {'type': 'button', 'pressed': False" in err
    config.write_text('[knobs.place]\ntype = "pot"\nchannel = 12\ncontrol = "position"\n')
    assert cli(["keys", "--config", str(config)]) == 2
    assert "[knobs.place] channel = 12" in capsys.readouterr().err
