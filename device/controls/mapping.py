"""The knob map: which physical input drives which control, parsed and validated once from the config's tables.

``parse_knobs(knobs_table, led_table, where)`` turns the ``[knobs]`` / ``[led]`` tables of the appliance's TOML
file into a frozen :class:`KnobMap`. Every error is a ConfigError naming the file, the key and the value found.
Pins are BCM GPIO numbers (gpiozero's default naming); the MCP3008 sits on hardware SPI0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from murmur.device.controls.values import BOOL_CONTROLS, CONTROL_RANGES, EVENTS
from murmur.device.errors import ConfigError

INPUT_TYPES = ("pot", "encoder", "button", "switch")
CURVES = ("linear", "log")
PULLS = ("up", "down", "none")
LED_PATTERNS = ("off", "on", "blink", "fast_blink", "breathe", "flash")
# status.json states ('-' written as '_') and "power_warning": playing after under-voltage or throttling since boot
LED_STATES = ("playing", "starting", "quiet_hours", "error", "power_warning")
SPI0_PINS = {8: "SPI0 CE0", 7: "SPI0 CE1", 9: "SPI0 MISO", 10: "SPI0 MOSI", 11: "SPI0 SCLK"}
MAX_BCM_PIN = 27  # the 40-pin header carries GPIO 0–27


@dataclass(frozen=True, slots=True)
class PotSpec:
    """A potentiometer on one MCP3008 channel driving a continuous control.

    The raw reading (0..1) is smoothed (time constant ``smoothing_s``), held inside a dead-band of ``deadband``
    (fraction of the travel), shaped by ``curve`` and scaled to ``low``..``high`` (low > high reverses the knob).
    """

    name: str
    channel: int
    control: str
    low: float
    high: float
    curve: str = "linear"
    smoothing_s: float = 0.03
    deadband: float = 0.01


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    """A rotary encoder (A/B to GPIO, common to GND, internal pull-ups): each detent steps a control or fires actions."""

    name: str
    pin_a: int
    pin_b: int
    control: str | None = None  # continuous control stepped by `step` per detent, clockwise = up
    step: float = 0.0
    clockwise: str | None = None  # or: actions fired per detent
    counter_clockwise: str | None = None
    push_pin: int | None = None  # optional push switch, handled as a button
    push: str | None = None
    push_long: str | None = None
    pull: str = "up"


@dataclass(frozen=True, slots=True)
class ButtonSpec:
    """A momentary push button: `press` on a short press, `long_press` once held `long_press_s`.

    A value is an action (EVENTS) or a boolean control name, which the press toggles.
    """

    name: str
    pin: int
    press: str | None = None
    long_press: str | None = None
    pull: str = "up"
    bounce_s: float = 0.02
    long_press_s: float = 1.0


@dataclass(frozen=True, slots=True)
class SwitchSpec:
    """A latching toggle switch: the boolean `control` follows it (on while closed)."""

    name: str
    pin: int
    control: str
    pull: str = "up"
    bounce_s: float = 0.02


@dataclass(frozen=True, slots=True)
class LedSpec:
    """An optional status LED; one pattern per service state."""

    pin: int
    pwm: bool = True
    active_high: bool = True
    patterns: dict[str, str] = field(
        default_factory=lambda: {"playing": "on", "starting": "blink", "quiet_hours": "off", "error": "fast_blink",
                                 "power_warning": "flash"}
    )


@dataclass(frozen=True, slots=True)
class KnobMap:
    """Everything the GPIO back-end needs, validated. An empty map attaches nothing."""

    enabled: bool = True
    spi_chip_select: int = 0
    poll_hz: float = 100.0
    stuck_s: float = 30.0
    max_presses_per_minute: int = 30
    pots: tuple[PotSpec, ...] = ()
    encoders: tuple[EncoderSpec, ...] = ()
    buttons: tuple[ButtonSpec, ...] = ()
    switches: tuple[SwitchSpec, ...] = ()
    led: LedSpec | None = None

    @property
    def has_inputs(self) -> bool:
        return bool(self.pots or self.encoders or self.buttons or self.switches)

    @property
    def needs_gpio(self) -> bool:
        return self.enabled and (self.has_inputs or self.led is not None)


def parse_knobs(knobs_table: dict | None, led_table: dict | None, where: str) -> KnobMap:
    """Validate the ``[knobs]`` and ``[led]`` tables (as tomllib returns them) into a KnobMap. Raises ConfigError."""
    knobs_table = dict(knobs_table or {})
    reader = _Table(knobs_table, "knobs", where)
    settings: dict[str, Any] = dict(
        enabled=reader.boolean("enabled", True),
        spi_chip_select=reader.integer("spi_chip_select", 0, choices=(0, 1)),
        poll_hz=reader.number("poll_hz", 100.0, low=20.0, high=1000.0),
        stuck_s=reader.number("stuck_s", 30.0, low=1.0, high=3600.0),
        max_presses_per_minute=reader.integer("max_presses_per_minute", 30, low=1, high=600),
    )
    pots: list[PotSpec] = []
    encoders: list[EncoderSpec] = []
    buttons: list[ButtonSpec] = []
    switches: list[SwitchSpec] = []
    for name, table in knobs_table.items():
        if not isinstance(table, dict):
            continue
        kind = _Table(table, f"knobs.{name}", where).choice("type", None, INPUT_TYPES)
        parser = {"pot": _parse_pot, "encoder": _parse_encoder, "button": _parse_button, "switch": _parse_switch}[kind]
        spec = parser(name, _Table(table, f"knobs.{name}", where))
        by_kind: dict[str, list[Any]] = {"pot": pots, "encoder": encoders, "button": buttons, "switch": switches}
        by_kind[kind].append(spec)
    reader.finish(extra_ok=lambda value: isinstance(value, dict))
    led = _parse_led(led_table, where) if led_table else None
    knob_map = KnobMap(
        pots=tuple(pots), encoders=tuple(encoders), buttons=tuple(buttons), switches=tuple(switches), led=led,
        **settings,
    )
    _check_pins(knob_map, where)
    return knob_map


def _parse_pot(name: str, t: _Table) -> PotSpec:
    t.choice("type", None, INPUT_TYPES)
    control = t.choice("control", None, tuple(CONTROL_RANGES))
    low, high = t.pair("range", CONTROL_RANGES[control], within=CONTROL_RANGES[control])
    curve = t.choice("curve", "linear", CURVES)
    if curve == "log" and (low <= 0.0 or high <= 0.0):
        raise t.error("curve", curve, f"a log curve needs a range above zero, got range = [{low:g}, {high:g}]; "
                      "use curve = \"linear\" or raise the lower end (e.g. 0.05)")
    spec = PotSpec(
        name=name,
        channel=t.integer("channel", None, low=0, high=7),
        control=control,
        low=low,
        high=high,
        curve=curve,
        smoothing_s=t.number("smoothing_s", 0.03, low=0.0, high=1.0),
        deadband=t.number("deadband", 0.01, low=0.0, high=0.2),
    )
    t.finish()
    return spec


def _parse_encoder(name: str, t: _Table) -> EncoderSpec:
    t.choice("type", None, INPUT_TYPES)
    control = t.choice("control", "", ("",) + tuple(CONTROL_RANGES)) or None
    clockwise = t.choice("clockwise", "", ("",) + EVENTS) or None
    counter_clockwise = t.choice("counter_clockwise", "", ("",) + EVENTS) or None
    if control and (clockwise or counter_clockwise):
        raise t.error("control", control, "an encoder steps either a control or fires clockwise/counter_clockwise "
                      "actions, not both")
    if not control and not (clockwise or counter_clockwise):
        raise t.error("control", None, "set control = \"<name>\" (with step) or clockwise/counter_clockwise actions")
    step = 0.0
    if control:
        low, high = CONTROL_RANGES[control]
        step = t.number("step", (high - low) / 50.0, low=-(high - low), high=high - low)
        if step == 0.0:
            raise t.error("step", step, "a step of 0 would make the encoder do nothing")
    pins = t.pins("pins")
    pull = t.choice("pull", "up", ("up",))
    push_pin = t.integer("push_pin", -1, low=0, high=MAX_BCM_PIN) if "push_pin" in t.table else None
    push = _target(t, "push")
    push_long = _target(t, "push_long")
    if push_pin is None and (push or push_long):
        raise t.error("push", push or push_long, "needs push_pin = <GPIO> for the encoder's push switch")
    spec = EncoderSpec(
        name=name, pin_a=pins[0], pin_b=pins[1], control=control, step=step, clockwise=clockwise,
        counter_clockwise=counter_clockwise, push_pin=push_pin, push=push, push_long=push_long, pull=pull,
    )
    t.finish()
    return spec


def _parse_button(name: str, t: _Table) -> ButtonSpec:
    t.choice("type", None, INPUT_TYPES)
    press = _target(t, "press")
    long_press = _target(t, "long_press")
    if not press and not long_press:
        raise t.error("press", None, f"set press = \"<action>\" (one of {', '.join(EVENTS + BOOL_CONTROLS)})")
    spec = ButtonSpec(
        name=name,
        pin=t.integer("pin", None, low=0, high=MAX_BCM_PIN),
        press=press,
        long_press=long_press,
        pull=t.choice("pull", "up", PULLS),
        bounce_s=t.number("bounce_s", 0.02, low=0.0, high=0.5),
        long_press_s=t.number("long_press_s", 1.0, low=0.1, high=30.0),
    )
    t.finish()
    return spec


def _parse_switch(name: str, t: _Table) -> SwitchSpec:
    t.choice("type", None, INPUT_TYPES)
    spec = SwitchSpec(
        name=name,
        pin=t.integer("pin", None, low=0, high=MAX_BCM_PIN),
        control=t.choice("control", None, BOOL_CONTROLS),
        pull=t.choice("pull", "up", PULLS),
        bounce_s=t.number("bounce_s", 0.02, low=0.0, high=0.5),
    )
    t.finish()
    return spec


def _parse_led(led_table: dict, where: str) -> LedSpec:
    t = _Table(dict(led_table), "led", where)
    pin = t.integer("pin", None, low=0, high=MAX_BCM_PIN)
    pwm = t.boolean("pwm", True)
    defaults = LedSpec(pin=pin).patterns
    patterns = {state: t.choice(state, defaults[state], LED_PATTERNS) for state in LED_STATES}
    for state, pattern in patterns.items():
        if pattern == "breathe" and not pwm:
            raise t.error(state, pattern, "\"breathe\" needs pwm = true (a PWMLED); use \"on\" or \"blink\"")
    spec = LedSpec(pin=pin, pwm=pwm, active_high=t.boolean("active_high", True), patterns=patterns)
    t.finish()
    return spec


def _target(t: _Table, key: str) -> str | None:
    """An action (EVENTS) or a boolean control to toggle, or None when the key is absent."""
    return t.choice(key, "", ("",) + EVENTS + BOOL_CONTROLS) or None


def _check_pins(knob_map: KnobMap, where: str) -> None:
    """No GPIO used twice; nothing on the SPI0 pins while the MCP3008 needs them."""
    used: dict[int, str] = {}
    if knob_map.pots:
        spi = dict(SPI0_PINS)
        spi.pop(7 if knob_map.spi_chip_select == 0 else 8)  # the other chip select stays free
        used.update({pin: f"the MCP3008 ({label})" for pin, label in spi.items()})
    claims: list[tuple[str, str, int]] = []
    for enc in knob_map.encoders:
        claims += [(f"knobs.{enc.name}", "pins", enc.pin_a), (f"knobs.{enc.name}", "pins", enc.pin_b)]
        if enc.push_pin is not None:
            claims.append((f"knobs.{enc.name}", "push_pin", enc.push_pin))
    claims += [(f"knobs.{b.name}", "pin", b.pin) for b in knob_map.buttons]
    claims += [(f"knobs.{s.name}", "pin", s.pin) for s in knob_map.switches]
    if knob_map.led is not None:
        claims.append(("led", "pin", knob_map.led.pin))
    for table, key, pin in claims:
        if pin in used:
            raise ConfigError(f"{where}: [{table}] {key} = {pin}: GPIO {pin} is already used by {used[pin]}; "
                              "give each input its own GPIO")
        used[pin] = f"[{table}] {key}"
    channels: dict[int, str] = {}
    for pot in knob_map.pots:
        if pot.channel in channels:
            raise ConfigError(f"{where}: [knobs.{pot.name}] channel = {pot.channel}: MCP3008 channel {pot.channel} "
                              f"is already read by [knobs.{channels[pot.channel]}]")
        channels[pot.channel] = pot.name


_MISSING = object()


class _Table:
    """Reads typed keys from one TOML table, remembers which were read, and words errors the same way."""

    def __init__(self, table: dict, label: str, where: str) -> None:
        self.table, self.label, self.where = table, label, where
        self.read: set[str] = set()

    def error(self, key: str, value: object, fix: str) -> ConfigError:
        shown = "(missing)" if value is None or value is _MISSING else f"= {_toml(value)}"
        return ConfigError(f"{self.where}: [{self.label}] {key} {shown}: {fix}")

    def _get(self, key: str, default: object) -> object:
        self.read.add(key)
        value = self.table.get(key, _MISSING)
        if value is _MISSING:
            if default is None:
                raise self.error(key, None, "this key is required")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, value, "expected true or false")
        return value

    def number(self, key: str, default: float | None, *, low: float, high: float) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(key, value, f"expected a number between {low:g} and {high:g}")
        if not low <= value <= high:
            raise self.error(key, value, f"expected a number between {low:g} and {high:g}")
        return float(value)

    def integer(self, key: str, default: int | None, *, low: int = 0, high: int = 1 << 30,
                choices: tuple[int, ...] = ()) -> int:
        value = self._get(key, default)
        allowed = " or ".join(map(str, choices)) if choices else f"{low}–{high}"
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, value, f"expected a whole number, {allowed}")
        if (choices and value not in choices) or not low <= value <= high:
            raise self.error(key, value, f"expected {allowed}")
        return value

    def choice(self, key: str, default: str | None, choices: tuple[str, ...]) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or value not in choices:
            shown = ", ".join(f'"{c}"' for c in choices if c)
            raise self.error(key, value, f"expected one of {shown}")
        return value

    def pair(self, key: str, default: tuple[float, float], *, within: tuple[float, float]) -> tuple[float, float]:
        value = self._get(key, list(default))
        lo, hi = within
        fix = f"expected two numbers [from, to] within {lo:g}..{hi:g} (from > to reverses the knob)"
        if not isinstance(value, list) or len(value) != 2:
            raise self.error(key, value, fix)
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | float) or not lo <= item <= hi:
                raise self.error(key, value, fix)
        if value[0] == value[1]:
            raise self.error(key, value, "the two ends are equal: the knob would do nothing")
        return float(value[0]), float(value[1])

    def pins(self, key: str) -> tuple[int, int]:
        value = self._get(key, None)
        fix = f"expected two GPIO numbers [A, B] within 0–{MAX_BCM_PIN}, e.g. [17, 18]"
        if not isinstance(value, list) or len(value) != 2 or value[0] == value[1]:
            raise self.error(key, value, fix)
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= MAX_BCM_PIN:
                raise self.error(key, value, fix)
        return value[0], value[1]

    def finish(self, extra_ok=lambda value: False) -> None:
        """Refuse keys nobody read (typos): name the key and what is known."""
        for key, value in self.table.items():
            if key not in self.read and not extra_ok(value):
                known = ", ".join(sorted(self.read))
                raise self.error(key, value, f"unknown key; known keys here: {known}")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{…}"
    return repr(value)
