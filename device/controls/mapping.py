"""The knob map: which physical input drives which control, parsed and validated once from the config's tables.

``parse_knobs(knobs_table, led_table, where)`` turns the ``[knobs]`` / ``[led]`` tables of the appliance's TOML
file into a frozen :class:`KnobMap`. Each key's type, range and default are declared in the config schema
(``murmur.device.config_schema``: ``KNOBS``, ``POT``, ``ENCODER``, ``BUTTON``, ``SWITCH``, ``LED``), which
refuses unknown keys and wrong values; this module adds the rules that tie keys together (a pot's range within its
control's, one GPIO per input, nothing on the SPI pins while pots need them). Every error is a ConfigError naming
the file, the key and the value found. Pins are BCM GPIO numbers (gpiozero's default naming); the MCP3008 sits on
hardware SPI0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from murmur.device.config_schema import (
    CURVES,
    INPUT_TYPES,
    KNOBS,
    LED,
    LED_PATTERNS,
    LED_STATES,
    MAX_BCM_PIN,
    PULLS,
    Float,
    List,
    Values,
    read_table,
)
from murmur.device.controls.values import BOOL_CONTROLS, CONTROL_RANGES, EVENTS
from murmur.device.errors import ConfigError

__all__ = ["CURVES", "INPUT_TYPES", "LED_PATTERNS", "LED_STATES", "MAX_BCM_PIN", "PULLS", "SPI0_PINS", "ButtonSpec",
           "EncoderSpec", "KnobMap", "LedSpec", "PotSpec", "SwitchSpec", "parse_knobs"]
SPI0_PINS = {8: "SPI0 CE0", 7: "SPI0 CE1", 9: "SPI0 MISO", 10: "SPI0 MOSI", 11: "SPI0 SCLK"}


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
    patterns: dict[str, str] = field(default_factory=lambda: {state: LED.keys[state].default for state in LED_STATES})


@dataclass(frozen=True, slots=True)
class KnobMap:
    """Everything the GPIO back-end needs, validated. An empty map attaches nothing."""

    enabled: bool = True
    spi_chip_select: int = 0
    poll_hz: float = 100.0
    stuck_s: float = 30.0
    max_presses_per_minute: int = 30
    pickup: bool = False  # soft takeover for the pots (shaping.Pickup)
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

    @property
    def needs_spi(self) -> bool:
        """Pots read an MCP3008 over SPI. deploy/install.sh works out the same from the raw file (any [knobs.*]
        table of type "pot", enabled unless ``enabled = false``) to check that SPI is on before installing."""
        return self.enabled and bool(self.pots)


def parse_knobs(knobs_table: dict | None, led_table: dict | None, where: str) -> KnobMap:
    """Validate the ``[knobs]`` and ``[led]`` tables (as tomllib returns them) into a KnobMap. Raises ConfigError."""
    knobs = read_table(KNOBS, dict(knobs_table or {}), where)
    parsers = {"pot": _parse_pot, "encoder": _parse_encoder, "button": _parse_button, "switch": _parse_switch}
    specs: dict[str, list[Any]] = {kind: [] for kind in parsers}
    for name, kind, values in knobs.items:
        specs[kind].append(parsers[kind](name, values))
    led = _parse_led(read_table(LED, dict(led_table), where)) if led_table else None
    knob_map = KnobMap(
        enabled=knobs["enabled"], spi_chip_select=knobs["spi_chip_select"], poll_hz=knobs["poll_hz"],
        stuck_s=knobs["stuck_s"], max_presses_per_minute=knobs["max_presses_per_minute"], pickup=knobs["pickup"],
        pots=tuple(specs["pot"]), encoders=tuple(specs["encoder"]), buttons=tuple(specs["button"]),
        switches=tuple(specs["switch"]), led=led,
    )
    _check_pins(knob_map, where)
    return knob_map


def knob_range(t: Values, control: str) -> tuple[float, float]:
    """A knob's ``range`` (default: the control's whole range; from > to reverses it), checked against its
    ``curve``: (low, high) in the control's units. Shared by pots and MIDI CCs. Raises ConfigError."""
    lo, hi = CONTROL_RANGES[control]
    low, high = lo, hi
    if t.given("range"):
        within = List(Float(lo, hi), f"two numbers [from, to] within {lo:g}..{hi:g}; from > to reverses the knob",
                      length=2)
        low, high = t.check("range", within)
        if low == high:
            raise t.error("range", "the two ends are equal: the knob would do nothing")
    if t["curve"] == "log" and (low <= 0.0 or high <= 0.0):
        raise t.error("curve", f"a log curve needs a range above zero, got range = [{low:g}, {high:g}]; "
                      "use curve = \"linear\" or raise the lower end (e.g. 0.05)")
    return low, high


def _parse_pot(name: str, t: Values) -> PotSpec:
    control = t["control"]
    low, high = knob_range(t, control)
    curve = t["curve"]
    return PotSpec(name=name, channel=t["channel"], control=control, low=low, high=high, curve=curve,
                   smoothing_s=t["smoothing_s"], deadband=t["deadband"])


def _parse_encoder(name: str, t: Values) -> EncoderSpec:
    control = t["control"] or None
    clockwise = t["clockwise"] or None
    counter_clockwise = t["counter_clockwise"] or None
    if control and (clockwise or counter_clockwise):
        raise t.error("control", "an encoder steps either a control or fires clockwise/counter_clockwise "
                      "actions, not both")
    if not control and not (clockwise or counter_clockwise):
        raise t.error("control", "set control = \"<name>\" (with step) or clockwise/counter_clockwise actions")
    step = 0.0
    if control:
        low, high = CONTROL_RANGES[control]
        step = t.check("step", Float(-(high - low), high - low)) if t.given("step") else (high - low) / 50.0
        if step == 0.0:
            raise t.error("step", "a step of 0 would make the encoder do nothing")
    elif t.given("step"):
        raise t.error("step", "step goes with control = \"<name>\"; an encoder firing actions has no step")
    push = t["push"] or None
    push_long = t["push_long"] or None
    if t["push_pin"] is None and (push or push_long):
        raise t.error("push" if push else "push_long", "needs push_pin = <GPIO> for the encoder's push switch")
    pin_a, pin_b = t["pins"]
    return EncoderSpec(
        name=name, pin_a=pin_a, pin_b=pin_b, control=control, step=step, clockwise=clockwise,
        counter_clockwise=counter_clockwise, push_pin=t["push_pin"], push=push, push_long=push_long, pull=t["pull"],
    )


def _parse_button(name: str, t: Values) -> ButtonSpec:
    press = t["press"] or None
    long_press = t["long_press"] or None
    if not press and not long_press:
        raise t.error("press", f"set press = \"<action>\" (one of {', '.join(EVENTS + BOOL_CONTROLS)})")
    return ButtonSpec(name=name, pin=t["pin"], press=press, long_press=long_press, pull=t["pull"],
                      bounce_s=t["bounce_s"], long_press_s=t["long_press_s"])


def _parse_switch(name: str, t: Values) -> SwitchSpec:
    return SwitchSpec(name=name, pin=t["pin"], control=t["control"], pull=t["pull"], bounce_s=t["bounce_s"])


def _parse_led(t: Values) -> LedSpec:
    patterns = {state: t[state] for state in LED_STATES}
    for state, pattern in patterns.items():
        if pattern == "breathe" and not t["pwm"]:
            raise t.error(state, "\"breathe\" needs pwm = true (a PWMLED); use \"on\" or \"blink\"")
    return LedSpec(pin=t["pin"], pwm=t["pwm"], active_high=t["active_high"], patterns=patterns)


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
