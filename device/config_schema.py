"""The config file's schema: every key of ``/etc/murmur/murmur.toml`` declared once, with its type, range or
choices, default and a one-line help, and the one place where keys are checked and refused.

It sits at device's top level (beside ``errors``) because two layers read the file: ``controls`` (the knob map,
the keyboard's wiring check, the control ranges) and ``appliance`` (``load_config``), and ``controls`` sits below
``appliance``. So both import from here and this module imports only ``errors``. The generic types
(``Boolean``, ``Integer``, ``Float``, ``String``, ``List``, ``Hours``) and the per-table declarations (``PLAYBACK``,
``SAMPLER``, ``SCHEDULE``, ``KNOBS`` with its input types, ``LED``, ``OSC``, ``ROOM``, ``MIDI``) live together, so one file answers "what may
this file hold". The readers beside their dataclasses (``appliance.config``, ``appliance.schedule``,
``controls.mapping``) call ``read_table`` and add only rules that tie keys together (bundle *or* playlist, a pot's
range within its control's, one GPIO per input).

Every refusal reads ``<file>: [<table>] <key> = <value as written>: <fix> (<help>)``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from murmur.device.errors import ConfigError


class Invalid(Exception):
    """Raised by a type's ``check``: the value does not fit; the argument is the fix."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # a key's default when the file must give it


class Type:
    """A key's type: ``check(value)`` returns the value to use or raises Invalid(fix)."""

    def check(self, value: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Boolean(Type):
    """true or false."""

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid("expected true or false")
        return value


@dataclass(frozen=True)
class Integer(Type):
    """A whole number within ``minimum``..``maximum``, or one of ``choices``."""

    minimum: int = 0
    maximum: int = 1 << 30
    choices: tuple[int, ...] = ()

    def check(self, value: Any) -> int:
        allowed = " or ".join(map(str, self.choices)) if self.choices else f"{self.minimum}–{self.maximum}"
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected a whole number, {allowed}")
        if (self.choices and value not in self.choices) or not self.minimum <= value <= self.maximum:
            raise Invalid(f"expected {allowed}")
        return value


@dataclass(frozen=True)
class Float(Type):
    """A finite number (TOML integer or float) within ``minimum``..``maximum``; read as a float."""

    minimum: float = -math.inf
    maximum: float = math.inf

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            bounded = math.isfinite(self.minimum) and math.isfinite(self.maximum)
            raise Invalid(f"expected a number between {self.minimum:g} and {self.maximum:g}" if bounded
                          else "expected a number")
        if not self.minimum <= value <= self.maximum:
            raise Invalid(f"out of range; use {self.minimum:g} … {self.maximum:g}")
        return float(value)


@dataclass(frozen=True)
class String(Type):
    """Text in quotes; with ``choices``, one of them ("" among the choices means "not set" and is not shown)."""

    choices: tuple[str, ...] = ()
    non_empty: bool = False

    def check(self, value: Any) -> str:
        if self.choices:
            if not isinstance(value, str) or value not in self.choices:
                raise Invalid("expected one of " + ", ".join(f'"{c}"' for c in self.choices if c))
            return value
        if not isinstance(value, str) or (self.non_empty and not value.strip()):
            raise Invalid("expected text in quotes" + (", not empty" if self.non_empty else ""))
        return value


@dataclass(frozen=True)
class List(Type):
    """A list of ``item`` values: ``length`` of them (or at least ``min_length``), all different if ``distinct``.
    ``expected`` words the fix, e.g. "two GPIO numbers [A, B] within 0–27, e.g. [17, 18]"."""

    item: Type
    expected: str
    length: int | None = None
    min_length: int = 0
    distinct: bool = False

    def check(self, value: Any) -> list[Any]:
        fix = f"expected {self.expected}"
        if not isinstance(value, list) or len(value) < self.min_length:
            raise Invalid(fix)
        if (self.length is not None and len(value) != self.length) or (self.distinct and len(set(value)) < len(value)):
            raise Invalid(fix)
        try:
            return [self.item.check(item) for item in value]
        except Invalid:
            raise Invalid(fix) from None


@dataclass(frozen=True)
class IpAddress(Type):
    """An IP address written as text ("192.168.1.20", "::1"); with ``network``, also a network ("192.168.1.0/24").
    Read as the text, normalised ("192.168.001.020" is refused: ``ipaddress`` takes no leading zeros)."""

    network: bool = False

    def check(self, value: Any) -> str:
        example = '"192.168.1.20" or a network "192.168.1.0/24"' if self.network else '"0.0.0.0" (every IPv4 ' \
                  'address of this Pi), "127.0.0.1" or one address of this Pi such as "192.168.1.20"'
        if not isinstance(value, str):
            raise Invalid(f"expected an IP address in quotes, e.g. {example}")
        try:
            if self.network:
                return str(ipaddress.ip_network(value.strip(), strict=False))
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise Invalid(f"not an IP address; use e.g. {example} (host names are not taken here)") from None


@dataclass(frozen=True)
class Hours(Type):
    """One weekday's opening hours as written: a string or a list of strings (``appliance.schedule`` parses them)."""

    def check(self, value: Any) -> str | list[str]:
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            return value
        raise Invalid('expected a string like "10:00-18:00", "10:00-13:00, 14:00-18:00", "closed" or "always", '
                      "or a list of such strings")


@dataclass(frozen=True)
class Key:
    """One key: its type, its default (REQUIRED: the file must give it; None: worked out by the reader, as the
    help says) and a one-line help, shown after every fix."""

    type: Type
    default: Any
    help: str


@dataclass(frozen=True)
class Table:
    """One table's keys, in the order the example file documents them. ``items``: sub-tables ``[<name>.<any>]``
    whose ``type`` key picks their declaration (the knobs); other keys holding a table are refused."""

    name: str
    keys: dict[str, Key]
    help: str
    items: dict[str, Table] = field(default_factory=dict)


def toml_value(value: object) -> str:
    """A value as it is written in the file (``"text"``, ``true``, ``[1, 2]``), for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{…}"
    return repr(value)


def key_error(where: str, table: str, key: str, value: object, fix: str) -> ConfigError:
    """The one wording of a refused key: file, table, key, the value found (None: missing) and the fix."""
    shown = "(missing)" if value is None else f"= {toml_value(value)}"
    return ConfigError(f"{where + ': ' if where else ''}[{table}] {key} {shown}: {fix}")


@dataclass(frozen=True)
class Values:
    """A table read against its declaration: ``values[key]`` (the file's value or the default), ``given(key)``,
    ``error(key, fix)`` for a reader's own rules, and ``items`` ((name, type, Values) per sub-table)."""

    table: Table
    label: str
    where: str
    raw: dict[str, Any]
    values: dict[str, Any]
    items: tuple[tuple[str, str, Values], ...] = ()

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def given(self, key: str) -> bool:
        return key in self.raw

    def error(self, key: str, fix: str) -> ConfigError:
        return key_error(self.where, self.label, key, self.raw.get(key), fix)

    def check(self, key: str, narrower: Type) -> Any:
        """The key's value checked again against a narrower type (a range that depends on another key), refused
        in the same words as ``read_table``'s."""
        try:
            return narrower.check(self.values[key])
        except Invalid as exc:
            raise self.error(key, f"{exc} ({self.table.keys[key].help})") from None


def read_table(table: Table, raw: dict[str, Any], where: str, label: str | None = None) -> Values:
    """Check one table of the file against its declaration: unknown keys and wrong types refused (naming the
    file, the key, the value and the fix), required keys demanded, defaults filled in; then each sub-table."""
    label = label or table.name
    known = ", ".join(table.keys)
    for key, value in raw.items():
        if key not in table.keys and not (table.items and isinstance(value, dict)):
            raise key_error(where, label, key, value, f"unknown key; known keys here: {known}")
    values: dict[str, Any] = {}
    for key, decl in table.keys.items():
        if key not in raw:
            if decl.default is REQUIRED:
                raise key_error(where, label, key, None, f"this key is required ({decl.help})")
            values[key] = decl.default
            continue
        try:
            values[key] = decl.type.check(raw[key])
        except Invalid as exc:
            raise key_error(where, label, key, raw[key], f"{exc} ({decl.help})") from None
    items = []
    for name, sub in raw.items():
        if name in table.keys or not isinstance(sub, dict):
            continue
        sub_label = f"{label}.{name}"
        kind = sub.get("type")
        if not isinstance(kind, str) or kind not in table.items:
            shown = ", ".join(f'"{t}"' for t in table.items)
            fix = "this key is required; one of" if kind is None else "expected one of"
            raise key_error(where, sub_label, "type", kind, f"{fix} {shown}")
        items.append((name, kind, read_table(table.items[kind], sub, where, sub_label)))
    return Values(table=table, label=label, where=where, raw=raw, values=values, items=tuple(items))


# ───────────────────────────────────────────── the file's tables ──────────────────────────────────────────────

# Control names: the continuous ones (Float keys of [sampler]), the on/off ones, and the one-shot actions.
EVENTS = ("reseed", "next_bundle", "previous_bundle")

SAMPLER = Table("sampler", {
    "temperature": Key(Float(0.0, 2.0), 0.3, "how freely the next real frame is picked at a cut: 0 = always the "
                       "nearest to the model's prediction; format-1 bundles: noise added to each predicted frame"),
    "fidelity": Key(Float(0.0, 1.0), 0.3, "faithful (1: long real phrases of the recording, 6 s on average) ↔ "
                    "inventive (0: 0.05-s phrases, the model choosing ~20 times a second)"),
    "jump": Key(Float(0.0, 4.0), 0.25, "jumps per second to a random spot of the material"),
    "position": Key(Float(0.0, 1.0), 0.5, "where in the training material the sound comes from: 0 = start, 1 = end"),
    "spread": Key(Float(0.0, 1.0), 1.0, "how much of the material around position may play, as a fraction; 1 = all"),
    "hold": Key(Boolean(), False, "freeze the sound on the current frame"),
    "gain_db": Key(Float(-60.0, 12.0), 0.0, "output gain before the volume cap, dB"),
}, help="the starting values of the sound controls; knobs move them while playing")

CONTROL_NAMES = tuple(name for name, key in SAMPLER.keys.items() if isinstance(key.type, Float))
BOOL_CONTROL_NAMES = tuple(name for name, key in SAMPLER.keys.items() if isinstance(key.type, Boolean))

# "auto", then the names of murmur.device.dsp.vocoder.PRESETS (a test keeps them equal)
VOCODER_PRESETS = ("auto", "full", "light")

PLAYBACK = Table("playback", {
    "bundle": Key(String(non_empty=True), None, "the bundle directory to play, e.g. \"/opt/murmur/current/bundle\"; a relative path starts "
                  "at this file's folder; set bundle or playlist, not both"),
    "playlist": Key(List(String(non_empty=True), 'a non-empty list of bundle directories, e.g. '
                         '["/opt/murmur/bundles/a"]', min_length=1), None,
                    "bundle directories played in turn, instead of bundle"),
    "rotate_minutes": Key(Float(0.0, 7 * 24 * 60), 0.0, "minutes per playlist entry, 0 = no rotation"),
    "output_device": Key(String(), "", "part of the sound card name as `python -m murmur.device list-devices` shows "
                         "it, e.g. \"sndrpihifiberry\"; \"\" = the system default"),
    "volume_cap_db": Key(Float(-60.0, 0.0), -6.0, "dBFS ceiling of the output, 0 = digital full scale"),
    "crossfade_s": Key(Float(0.0, 30.0), 3.0, "seconds of crossfade when the sound changes, 0 = cut"),
    "silence_restart_s": Key(Float(0.0, 3600.0), 60.0, "seconds of silent or frozen output before the generator "
                             "restarts, 0 = never restart"),
    "vocoder": Key(String(choices=VOCODER_PRESETS), "auto", "phase reconstruction: \"full\" = the finest; "
                   "\"light\" = about 60 % of its CPU time, a little more phasey; \"auto\" = full, light from "
                   "the moment the sound takes more than a third of a CPU core"),
}, help="what plays and how loud")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_FADE_S = 3600.0
UNSYNCHRONISED_POLICIES = ("play", "trust")

SCHEDULE = Table("schedule", {
    "unsynchronised_clock": Key(String(choices=UNSYNCHRONISED_POLICIES), "play", "until network time arrives: "
                                "\"play\" through (ignore the hours) or \"trust\" the clock as it is"),
    **{day: Key(Hours(), None, f"{day}'s opening hours, e.g. \"10:00-18:00\", \"closed\", \"always\"; "
                "no weekday at all = always open, a weekday left out of a listed week = closed") for day in DAYS},
    "fade_s": Key(Float(0.0, MAX_FADE_S), 10.0, "seconds of fade in after opening and fade out before closing"),
    "fade_in_s": Key(Float(0.0, MAX_FADE_S), None, "seconds of fade in after opening; default: fade_s"),
    "fade_out_s": Key(Float(0.0, MAX_FADE_S), None, "seconds of fade out before closing; default: fade_s"),
}, help="opening hours, local time of the Pi")

MAX_BCM_PIN = 27  # the 40-pin header carries GPIO 0–27
INPUT_TYPES = ("pot", "encoder", "button", "switch")
CURVES = ("linear", "log")
PULLS = ("up", "down", "none")
LED_PATTERNS = ("off", "on", "blink", "fast_blink", "breathe", "flash")
# status.json states ('-' written as '_') and "power_warning": playing after under-voltage or throttling since boot
LED_STATES = ("playing", "starting", "quiet_hours", "error", "power_warning")

_PIN = Integer(0, MAX_BCM_PIN)
_TARGETS = ("",) + EVENTS + BOOL_CONTROL_NAMES  # what a press does: an action, or toggle an on/off control
_BOUNCE = Key(Float(0.0, 0.5), 0.02, "debounce: a change counts once the contact has been steady this many seconds")


def _input_type(name: str) -> Key:
    return Key(String(choices=INPUT_TYPES), REQUIRED, f"the kind of input: \"{name}\" here")


POT = Table("pot", {
    "type": _input_type("pot"),
    "channel": Key(Integer(0, 7), REQUIRED, "the MCP3008 input, CH0 … CH7"),
    "control": Key(String(choices=CONTROL_NAMES), REQUIRED, "the continuous control the pot turns"),
    "range": Key(List(Float(), "two numbers [from, to]; from > to reverses the knob", length=2), None,
                 "the value at the knob's left end and at its right end; default: the control's whole range"),
    "curve": Key(String(choices=CURVES), "linear", "\"log\": equal ratios per equal turn (both ends above 0)"),
    "smoothing_s": Key(Float(0.0, 1.0), 0.03, "low-pass time constant, s (0 = none)"),
    "deadband": Key(Float(0.0, 0.2), 0.01, "the value moves only once the knob has moved this fraction of its travel"),
}, help="a potentiometer on an MCP3008 channel driving a continuous control")

ENCODER = Table("encoder", {
    "type": _input_type("encoder"),
    "pins": Key(List(_PIN, f"two GPIO numbers [A, B] within 0–{MAX_BCM_PIN}, e.g. [17, 18]", length=2,
                     distinct=True), REQUIRED, "the GPIOs of the encoder's A and B pins; its common pin goes to GND"),
    "pull": Key(String(choices=("up",)), "up", "the Pi's internal pull-ups are used (the only choice)"),
    "control": Key(String(choices=("",) + CONTROL_NAMES), "", "the continuous control stepped per detent"),
    "step": Key(Float(), None, "change per detent, clockwise; negative reverses; default: 1/50 of the control's range"),
    "clockwise": Key(String(choices=("",) + EVENTS), "", "instead of a control: the action fired per detent clockwise"),
    "counter_clockwise": Key(String(choices=("",) + EVENTS), "", "the action fired per detent counter-clockwise"),
    "push_pin": Key(_PIN, None, "the GPIO of the optional push switch (to GND)"),
    "push": Key(String(choices=_TARGETS), "", "short press of the push switch: an action, or hold to toggle it"),
    "push_long": Key(String(choices=_TARGETS), "", "the push switch held for 1 s: an action, or hold to toggle it"),
}, help="a rotary encoder stepping a control or firing actions, with an optional push switch")

BUTTON = Table("button", {
    "type": _input_type("button"),
    "pin": Key(_PIN, REQUIRED, "the GPIO the button is wired to"),
    "pull": Key(String(choices=PULLS), "up", "\"up\": button to GND; \"down\": to 3.3 V; \"none\": external resistor"),
    "press": Key(String(choices=_TARGETS), "", "short press: an action, or hold to toggle it"),
    "long_press": Key(String(choices=_TARGETS), "", "held for long_press_s: an action, or hold to toggle it"),
    "long_press_s": Key(Float(0.1, 30.0), 1.0, "seconds a press must last to count as long"),
    "bounce_s": _BOUNCE,
}, help="a momentary push button")

SWITCH = Table("switch", {
    "type": _input_type("switch"),
    "pin": Key(_PIN, REQUIRED, "the GPIO the switch is wired to"),
    "pull": Key(String(choices=PULLS), "up", "\"up\": switch to GND; \"down\": to 3.3 V; \"none\": external resistor"),
    "control": Key(String(choices=BOOL_CONTROL_NAMES), REQUIRED, "the on/off control that follows the switch"),
    "bounce_s": _BOUNCE,
}, help="a latching toggle switch")

KNOBS = Table("knobs", {
    "enabled": Key(Boolean(), True, "false = leave every pin alone (the inputs are still checked)"),
    "spi_chip_select": Key(Integer(choices=(0, 1)), 0, "the MCP3008's CS line: 0 = CE0 (GPIO8), 1 = CE1 (GPIO7)"),
    "poll_hz": Key(Float(20.0, 1000.0), 100.0, "pots, buttons and switches are read this many times per second"),
    "stuck_s": Key(Float(1.0, 3600.0), 30.0, "a button held longer than this many seconds is ignored until released"),
    "max_presses_per_minute": Key(Integer(1, 600), 30, "more presses than this from one button in a minute mute it"),
    "pickup": Key(Boolean(), False, "soft takeover for the pots: a pot does nothing until it reaches its control's "
                  "value, after OSC, MIDI, the room or a start set it elsewhere (no jump)"),
}, help="the physical controls; each input is a table [knobs.<any name>] with a type",
    items={"pot": POT, "encoder": ENCODER, "button": BUTTON, "switch": SWITCH})

LED = Table("led", {
    "pin": Key(_PIN, REQUIRED, "the GPIO the status LED is wired to (with its resistor, to GND)"),
    "pwm": Key(Boolean(), True, "true: dimmable (needed for \"breathe\"); false: plain on/off"),
    "active_high": Key(Boolean(), True, "false if the LED is lit when the pin is low (wired from 3.3 V)"),
    "playing": Key(String(choices=LED_PATTERNS), "on", "the LED's pattern while playing"),
    "starting": Key(String(choices=LED_PATTERNS), "blink", "the LED's pattern while starting"),
    "quiet_hours": Key(String(choices=LED_PATTERNS), "off", "the LED's pattern outside opening hours"),
    "error": Key(String(choices=LED_PATTERNS), "fast_blink", "the LED's pattern when there is no sound"),
    "power_warning": Key(String(choices=LED_PATTERNS), "flash", "the LED's pattern when playing after the supply "
                         "sagged or the CPU was slowed by heat"),
}, help="the optional status LED; delete the table for none")

OSC_PORT = 9000
OSC = Table("osc", {
    "enabled": Key(Boolean(), False, "true: listen for OSC messages /murmur/<control> <value>, /murmur/reseed, "
                   "/murmur/hold <0|1> (the deploy then lets the service use the network)"),
    "listen": Key(IpAddress(), "0.0.0.0", "the address to listen on: \"0.0.0.0\" = every IPv4 address of this Pi, "
                  "\"::\" = every IPv6 one, or one address of this Pi"),
    "port": Key(Integer(1024, 65535), OSC_PORT, "the UDP port to listen on"),
    "allowed_senders": Key(List(IpAddress(network=True), 'a list of addresses or networks, e.g. ["192.168.1.30", '
                                '"10.0.0.0/24"]'), [], "only these addresses or networks may send; [] = any "
                           "sender on a private network (10/8, 172.16/12, 192.168/16, link-local, this Pi)"),
    "max_messages_per_s": Key(Float(1.0, 10000.0), 200.0, "messages per second taken from all senders together; "
                              "faster values are merged (the latest value of each control wins), faster "
                              "reseeds dropped, and each is counted"),
}, help="Open Sound Control: TouchOSC, Pure Data, Max, TouchDesigner, QLab steer the controls over the network")

MIDI_KINDS = ("cc", "note")
_MIDI_NUMBER = Integer(0, 127)


def _midi_type(name: str) -> Key:
    return Key(String(choices=MIDI_KINDS), REQUIRED, f"what the controller sends: \"{name}\" here")


MIDI_CC = Table("cc", {
    "type": _midi_type("cc"),
    "number": Key(_MIDI_NUMBER, REQUIRED, "the controller number (CC 0 … 127) of the knob or fader; `python -m "
                  "murmur.device midi` prints what each one sends"),
    "control": Key(String(choices=CONTROL_NAMES + BOOL_CONTROL_NAMES), REQUIRED, "the control it turns; an on/off "
                   "control (hold) is on from 64 up (a sustain pedal is CC 64)"),
    "range": Key(List(Float(), "two numbers [from, to]; from > to reverses the knob", length=2), None,
                 "the value at 0 and at 127; default: the control's whole range"),
    "curve": Key(String(choices=CURVES), "linear", "\"log\": equal ratios per equal turn (both ends above 0)"),
}, help="a knob or fader sending a MIDI control change")

MIDI_NOTE = Table("note", {
    "type": _midi_type("note"),
    "number": Key(_MIDI_NUMBER, REQUIRED, "the note number (0 … 127; middle C = 60) of the pad or key"),
    "press": Key(String(choices=_TARGETS), REQUIRED, "what a press does: an action, or hold to toggle it"),
}, help="a pad or key sending a MIDI note")

MIDI = Table("midi", {
    "enabled": Key(Boolean(), False, "true: take a USB MIDI controller's knobs, faders and pads"),
    "device": Key(String(), "", "part of the controller's name as `python -m murmur.device midi` lists it, e.g. "
                  "\"nanoKONTROL2\"; \"\" = the first controller found"),
    "channel": Key(Integer(0, 16), 0, "only this MIDI channel, 1 … 16; 0 = every channel"),
    "pickup": Key(Boolean(), True, "soft takeover: a knob whose position differs from the control's value (set by "
                  "another knob, OSC, the room) does nothing until it passes that value, so the sound never jumps"),
    "rescan_s": Key(Float(0.2, 60.0), 1.0, "seconds between looks for a controller unplugged or plugged in"),
}, help="a USB MIDI controller; each knob, fader or pad is a table [midi.<any name>] with a type",
    items={"cc": MIDI_CC, "note": MIDI_NOTE})

ROOM_PORT = 9001
ROOM = Table("room", {
    "enabled": Key(Boolean(), False, "true: every control change here (knob, OSC) goes to the room's other Pis, "
                   "and theirs come here"),
    "name": Key(String(), "", "the room's name, for the status report"),
    "peers": Key(List(String(non_empty=True), 'a list of the other Pis as "address" or "address:port", e.g. '
                      '["192.168.1.12", "murmur-hall-3.local:9001"]'), [],
                 "the room's other Pis (the deploy writes it from the inventory's room = \"…\")"),
    "listen": Key(IpAddress(), "0.0.0.0", "the address the room's messages arrive on: \"0.0.0.0\" = every IPv4 "
                  "address of this Pi, \"::\" = IPv4 and IPv6"),
    "port": Key(Integer(1024, 65535), ROOM_PORT, "the UDP port the room's Pis talk on (the same on each)"),
    "heartbeat_s": Key(Float(0.1, 10.0), 1.0, "seconds between the full state each Pi sends the others: a Pi "
                       "back on the network is in step with the room within it"),
}, help="a room of Pis steered as one: a knob on any of them turns them all")

TABLES: dict[str, Table] = {t.name: t for t in (PLAYBACK, SAMPLER, SCHEDULE, KNOBS, LED, OSC, ROOM, MIDI)}


def read_file(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The file's tables as TOML gives them, after the file-level checks: readable, valid TOML, only known
    tables, each a table. The one TOML reader of the config; raises ConfigError naming the file and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file; copy deploy/murmur.toml there and edit it") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); compare with deploy/murmur.toml") from exc
    for name, value in data.items():
        if name not in TABLES:
            raise ConfigError(f"{path}: unknown table or key {name!r}; known tables: {', '.join(TABLES)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {name} = {value!r} must be a table; write [{name}] on its own line")
    return data
