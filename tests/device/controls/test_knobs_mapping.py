"""The [knobs]/[led] config tables → KnobMap: the shipped example parses, and every mistake names key and value."""

from __future__ import annotations

import tomllib

import pytest

from murmur import REPO_ROOT as ROOT
from murmur.device.controls.mapping import KnobMap, parse_knobs
from murmur.device.errors import ConfigError

WHERE = "/etc/murmur/murmur.toml"


def pot(**overrides) -> dict:
    return {"type": "pot", "channel": 0, "control": "temperature", **overrides}


def test_shipped_example_parses_into_the_documented_panel():
    example = ROOT / "deploy" / "murmur.toml"
    data = tomllib.loads(example.read_text())
    knob_map = parse_knobs(data["knobs"], data.get("led"), str(example))
    assert {p.control for p in knob_map.pots} == {"fidelity", "temperature", "jump", "position"}
    jumps = next(p for p in knob_map.pots if p.control == "jump")
    assert (jumps.curve, jumps.low, jumps.high) == ("log", 0.05, 4.0)
    assert knob_map.encoders[0].control == "gain_db" and knob_map.encoders[0].push == "hold"
    assert {b.press for b in knob_map.buttons} == {"next_bundle", "reseed"}
    assert knob_map.led is not None and knob_map.led.patterns["playing"] == "breathe"
    # shipped switched off: an unwired MCP3008 would read random values
    assert not knob_map.enabled and not knob_map.needs_gpio


def test_empty_tables_give_an_empty_map_that_needs_no_gpio():
    knob_map = parse_knobs({}, None, WHERE)
    assert knob_map == KnobMap()
    assert not knob_map.needs_gpio


def test_pot_defaults_to_the_controls_full_range():
    knob_map = parse_knobs({"k": pot(control="gain_db")}, None, WHERE)
    spec = knob_map.pots[0]
    assert (spec.low, spec.high, spec.curve, spec.name) == (-60.0, 12.0, "linear", "k")


@pytest.mark.parametrize(
    ("table", "led", "named"),
    [
        ({"k": pot(channel=9)}, None, ["[knobs.k] channel = 9", "0–7"]),
        ({"k": pot(control="tempo")}, None, ['[knobs.k] control = "tempo"', '"temperature"']),
        ({"k": pot(range=[0.0, 5.0])}, None, ["[knobs.k] range = [0.0, 5.0]", "0..2"]),
        ({"k": pot(range=[0.5, 0.5])}, None, ["[knobs.k] range = [0.5, 0.5]", "equal"]),
        ({"k": pot(curve="log")}, None, ['[knobs.k] curve = "log"', "above zero"]),
        ({"k": pot(curve="exp")}, None, ['[knobs.k] curve = "exp"', '"linear", "log"']),
        ({"k": pot(deadband=0.5)}, None, ["[knobs.k] deadband = 0.5"]),
        ({"k": pot(chanel=1)}, None, ["[knobs.k] chanel = 1", "unknown key"]),
        ({"k": {"type": "knob"}}, None, ['[knobs.k] type = "knob"', '"pot"']),
        ({"k": {"channel": 1}}, None, ["[knobs.k] type (missing)"]),
        ({"poll_hz": 5}, None, ["[knobs] poll_hz = 5", "20"]),
        ({"spi_chip_select": 2}, None, ["[knobs] spi_chip_select = 2", "0 or 1"]),
        ({"enabled": "yes"}, None, ['[knobs] enabled = "yes"', "true or false"]),
        ({"b": {"type": "button", "pin": 22}}, None, ["[knobs.b] press (missing)"]),
        ({"b": {"type": "button", "pin": 22, "press": "skip"}}, None, ['[knobs.b] press = "skip"', '"next_bundle"']),
        ({"b": {"type": "button", "pin": 40, "press": "reseed"}}, None, ["[knobs.b] pin = 40"]),
        ({"b": {"type": "button", "pin": 22, "press": "reseed", "pull": "float"}}, None,
         ['[knobs.b] pull = "float"', '"up", "down", "none"']),
        ({"e": {"type": "encoder", "pins": [17], "control": "jump"}}, None, ["[knobs.e] pins = [17]"]),
        ({"e": {"type": "encoder", "pins": [17, 18]}}, None, ["[knobs.e] control (missing)"]),
        ({"e": {"type": "encoder", "pins": [17, 18], "control": "jump", "step": 0}}, None, ["[knobs.e] step = 0"]),
        ({"e": {"type": "encoder", "pins": [17, 18], "control": "jump", "step": 9}}, None,
         ["[knobs.e] step = 9", "out of range; use -4 … 4", "change per detent"]),
        ({"e": {"type": "encoder", "pins": [17, 18], "clockwise": "reseed", "step": 1}}, None,
         ["[knobs.e] step = 1", "an encoder firing actions has no step"]),
        ({"e": {"type": "encoder", "pins": [17, 18], "control": "jump", "push": "reseed"}}, None,
         ['[knobs.e] push = "reseed"', "push_pin"]),
        ({"e": {"type": "encoder", "pins": [17, 18], "control": "jump", "clockwise": "reseed"}}, None,
         ['[knobs.e] control = "jump"', "not both"]),
        ({"s": {"type": "switch", "pin": 5, "control": "jump"}}, None, ['[knobs.s] control = "jump"', '"hold"']),
        ({}, {"pin": 12, "pwm": False, "playing": "breathe"}, ['[led] playing = "breathe"', "pwm = true"]),
        ({}, {"pin": 12, "error": "strobe"}, ['[led] error = "strobe"', '"fast_blink"']),
        ({}, {"pwm": True}, ["[led] pin (missing)"]),
    ],
)
def test_config_errors_name_the_file_the_key_and_the_value(table, led, named):
    with pytest.raises(ConfigError) as caught:
        parse_knobs(table, led, WHERE)
    message = str(caught.value)
    assert message.startswith(WHERE + ": ")
    for part in named:
        assert part in message, message


def test_a_gpio_cannot_be_claimed_twice_nor_taken_from_the_mcp3008():
    buttons = {"a": {"type": "button", "pin": 22, "press": "reseed"},
               "b": {"type": "button", "pin": 22, "press": "next_bundle"}}
    with pytest.raises(ConfigError, match=r"\[knobs.b\] pin = 22: GPIO 22 is already used by \[knobs.a\] pin"):
        parse_knobs(buttons, None, WHERE)
    on_spi = {"k": pot(), "b": {"type": "button", "pin": 9, "press": "reseed"}}
    with pytest.raises(ConfigError, match=r"\[knobs.b\] pin = 9: GPIO 9 is already used by the MCP3008 \(SPI0 MISO\)"):
        parse_knobs(on_spi, None, WHERE)
    # CE1 is free while the MCP3008 sits on CE0, and GPIO 9 is free without pots
    parse_knobs({"k": pot(), "b": {"type": "button", "pin": 7, "press": "reseed"}}, None, WHERE)
    parse_knobs({"b": {"type": "button", "pin": 9, "press": "reseed"}}, None, WHERE)
    with pytest.raises(ConfigError, match=r"\[knobs.j\] channel = 0: MCP3008 channel 0 is already read by \[knobs.k\]"):
        parse_knobs({"k": pot(), "j": pot(control="jump")}, None, WHERE)
