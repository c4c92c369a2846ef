"""GPIO back-end: MCP3008 pots, rotary encoders, buttons, switches and a status LED through gpiozero.

Pots, buttons and switches are polled by one thread at ``poll_hz`` and shaped by the pure helpers in ``shaping``
(buttons are polled DigitalInputDevices rather than event-driven Buttons so that debounce, long press, the stuck
limit and the chatter guard live in one testable state machine, the same on every pin factory). Encoders are
event-driven (gpiozero's quadrature state machine, which cannot turn bounce into a reverse step). Everything writes
into the ControlStore; nothing else crosses threads. gpiozero is imported here only, when a back-end is built.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from murmur.device.controls.base import Knobs
from murmur.device.controls.mapping import ButtonSpec, EncoderSpec, KnobMap, LedSpec, PotSpec, SwitchSpec
from murmur.device.controls.shaping import Pickup, PotShaper, PressLogic, curve_position
from murmur.device.controls.values import BOOL_CONTROLS, EVENTS, ControlStore

log = logging.getLogger("murmur.knobs")

ErrorCallback = Callable[[str], None]


def _pull_args(pull: str) -> dict:
    """gpiozero's pull arguments, explicit: "none" means an external resistor, active low."""
    if pull == "up":
        return {"pull_up": True}
    if pull == "down":
        return {"pull_up": False}
    return {"pull_up": None, "active_state": False}


class _PolledButton:
    """A button or switch read by the poll thread through a gpiozero DigitalInputDevice."""

    def __init__(self, name: str, device, logic: PressLogic, actions: dict[str, str | None], switch_control=None):
        self.name, self.device, self.logic, self.actions = name, device, logic, actions
        self.switch_control = switch_control
        self.applied: bool | None = None  # the level a switch last wrote into its control


class GpioKnobs(Knobs):
    """The attached inputs and their poll thread. Build with :func:`attach`; ``close()`` releases every pin."""

    backend = "gpio"

    def __init__(self, knob_map: KnobMap, store: ControlStore, pin_factory, on_error: ErrorCallback | None) -> None:
        super().__init__()
        self.knob_map, self.store, self.pin_factory = knob_map, store, pin_factory
        self._on_error = on_error
        self._devices: list = []
        self._pots: list[tuple[str, Any, PotShaper, str]] = []  # (name, MCP3008, shaper, control)
        self._pickups: dict[str, tuple[Pickup, list[float | None]]] = {}  # pot -> (pickup, [value it last set])
        self._buttons: list[_PolledButton] = []
        self._encoders: dict[str, Any] = {}  # gpiozero RotaryEncoder (untyped)
        self._raw: dict[str, float] = {}
        self._problems: list[str] = []
        self._reported: set[str] = set()
        self._stop = threading.Event()
        self._polls = 0
        self._poll_cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._led = None
        self._led_pattern = "off"

    # ── building ───────────────────────────────────────────────────────────────────────────────────────────────
    def attach(self) -> None:
        """Create every device; one that fails is reported and skipped, the others still work."""
        km = self.knob_map
        for pot in km.pots:
            self._try(f"pot {pot.name!r} (MCP3008 channel {pot.channel}, CE{km.spi_chip_select})",
                      functools.partial(self._attach_pot, pot))
        for enc in km.encoders:
            self._try(f"encoder {enc.name!r} (GPIO {enc.pin_a}/{enc.pin_b})", functools.partial(self._attach_encoder, enc))
            if enc.push_pin is not None:
                push = ButtonSpec(name=f"{enc.name}.push", pin=enc.push_pin, press=enc.push, long_press=enc.push_long,
                                  pull=enc.pull)
                self._try(f"push switch of {enc.name!r} (GPIO {enc.push_pin})",
                          functools.partial(self._attach_button, push))
        for button in km.buttons:
            self._try(f"button {button.name!r} (GPIO {button.pin})", functools.partial(self._attach_button, button))
        for switch in km.switches:
            self._try(f"switch {switch.name!r} (GPIO {switch.pin})", functools.partial(self._attach_switch, switch))
        if km.led is not None:
            self._try(f"LED (GPIO {km.led.pin})", functools.partial(self._attach_led, km.led))
        if self._pots or self._buttons:
            self._thread = threading.Thread(target=self._poll_loop, name="murmur-knobs", daemon=True)
            self._thread.start()

    def _keep(self, device):
        self._devices.append(device)
        return device

    def _try(self, what: str, build: Callable[[], object]) -> None:
        try:
            build()
        except Exception as exc:  # gpiozero raises many kinds (pin busy, SPI, permissions): report and go on
            self._report(what, f"{what} not attached: {type(exc).__name__}: {exc}")

    def _attach_pot(self, pot: PotSpec) -> None:
        from gpiozero import MCP3008

        adc = self._keep(MCP3008(channel=pot.channel, device=self.knob_map.spi_chip_select,
                                 pin_factory=self.pin_factory))
        shaper = PotShaper(pot.low, pot.high, pot.curve, pot.smoothing_s, pot.deadband)
        self._pots.append((pot.name, adc, shaper, pot.control))

    def _input(self, pin: int, pull: str):
        from gpiozero import DigitalInputDevice

        return self._keep(DigitalInputDevice(pin, **_pull_args(pull), pin_factory=self.pin_factory))

    def _attach_encoder(self, enc: EncoderSpec) -> None:
        from gpiozero import RotaryEncoder

        encoder = self._keep(RotaryEncoder(enc.pin_a, enc.pin_b, max_steps=0, pin_factory=self.pin_factory))
        if enc.control:
            encoder.when_rotated_clockwise = lambda: self._nudge(enc.control, enc.step)
            encoder.when_rotated_counter_clockwise = lambda: self._nudge(enc.control, -enc.step)
        else:
            encoder.when_rotated_clockwise = lambda: self._fire(enc.clockwise)
            encoder.when_rotated_counter_clockwise = lambda: self._fire(enc.counter_clockwise)
        self._encoders[enc.name] = encoder

    def _attach_button(self, spec: ButtonSpec) -> None:
        device = self._input(spec.pin, spec.pull)
        logic = PressLogic(
            bounce_s=spec.bounce_s, long_press_s=spec.long_press_s if spec.long_press else None,
            stuck_s=self.knob_map.stuck_s, max_per_minute=self.knob_map.max_presses_per_minute,
        )
        self._buttons.append(_PolledButton(spec.name, device, logic, {"press": spec.press,
                                                                      "long_press": spec.long_press}))

    def _attach_switch(self, spec: SwitchSpec) -> None:
        device = self._input(spec.pin, spec.pull)
        # a switch is meant to stay closed: no stuck limit, no long press, no flapping guard that mutes it for good
        logic = PressLogic(bounce_s=spec.bounce_s, stuck_s=float("inf"), max_per_minute=1 << 30)
        logic.raw = logic.pressed = False  # a switch already closed at start applies at once
        self._buttons.append(_PolledButton(spec.name, device, logic, {}, switch_control=spec.control))

    def _attach_led(self, spec: LedSpec) -> None:
        from gpiozero import LED, PWMLED
        from gpiozero.exc import PinPWMUnsupported

        try:
            led = (PWMLED if spec.pwm else LED)(spec.pin, active_high=spec.active_high, pin_factory=self.pin_factory)
        except PinPWMUnsupported:  # no PWM on this pin/factory: plain on/off, "breathe" shows as "on"
            log.warning("knobs: GPIO %d cannot dim (no PWM): the LED shows \"breathe\" as \"on\"", spec.pin)
            led = LED(spec.pin, active_high=spec.active_high, pin_factory=self.pin_factory)
        self._led = self._keep(led)
        self.set_status("starting")

    # ── runtime ────────────────────────────────────────────────────────────────────────────────────────────────
    def _nudge(self, control: str, step: float) -> None:
        self.store.set(control, getattr(self.store.snapshot(), control) + step)

    def _fire(self, target: str | None) -> None:
        """An action (EVENTS) is queued; a boolean control name is toggled."""
        if target in EVENTS:
            self.store.trigger(target)
        elif target in BOOL_CONTROLS:
            self.store.set(target, not getattr(self.store.snapshot(), target))

    def _poll_loop(self) -> None:
        period = 1.0 / self.knob_map.poll_hz
        last = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                self.poll_once(now, now - last)
            except Exception as exc:  # never let one bad read end the polling for good
                self._report(f"poll {type(exc).__name__}", f"polling the inputs failed: {type(exc).__name__}: {exc}")
            last = now
            self._stop.wait(max(0.0, period - (time.monotonic() - now)))

    def poll_once(self, now: float, dt_s: float) -> None:
        """Read every pot and button once; write what changed into the store in one update."""
        changes: dict[str, float | bool] = {}
        for name, adc, shaper, control in self._pots:
            try:
                raw = adc.value
            except Exception as exc:
                self._report(f"pot {name}", f"pot {name!r}: reading the MCP3008 failed: {type(exc).__name__}: {exc}")
                continue
            self._raw[name] = raw
            value = shaper.update(raw, dt_s)
            if value is not None and (not self.knob_map.pickup or self._picked_up(name, shaper, control, value)):
                changes[control] = value
        for button in self._buttons:
            try:
                pressed = bool(button.device.is_active)
            except Exception as exc:
                self._report(f"button {button.name}", f"{button.name!r}: reading the pin failed: {exc}")
                continue
            actions = button.logic.update(pressed, now)
            if button.logic.problem:
                self._report(f"{button.name} {button.logic.problem}", f"button {button.name!r} {button.logic.problem}")
                button.logic.problem = None
            if button.switch_control is not None and button.logic.pressed != button.applied:
                # a switch sets its control when it moves (and once at start); other inputs may change it between
                button.applied = changes[button.switch_control] = button.logic.pressed
            for action in actions:
                self._fire(button.actions.get(action))
        if changes:
            self.store.update(**changes)
        with self._poll_cond:
            self._polls += 1
            self._poll_cond.notify_all()

    def _picked_up(self, name: str, shaper: PotShaper, control: str, value: float) -> bool:
        """Soft takeover: True once the pot has reached its control's value (``[knobs] pickup``); a change made
        elsewhere since this pot last set the control makes it pick up again."""
        pickup, last_set = self._pickups.setdefault(name, (Pickup(), [None]))
        current = float(getattr(self.store.snapshot(), control))
        if last_set[0] is not None and current != last_set[0]:
            pickup.release()
        position = shaper.held if shaper.held is not None else 0.0
        if not pickup.update(position, curve_position(current, shaper.curve, shaper.low, shaper.high)):
            return False
        last_set[0] = value
        return True

    def wait_polls(self, count: int = 1, timeout: float = 1.0) -> bool:
        """Block until the poll thread has completed ``count`` more passes (tests and health checks)."""
        with self._poll_cond:
            target = self._polls + count
            return self._poll_cond.wait_for(lambda: self._polls >= target or self._stop.is_set(), timeout)

    def _report(self, key: str, message: str) -> None:
        """Log a problem once (not once per poll) and pass it to on_error."""
        if key in self._reported:
            return
        self._reported.add(key)
        self._problems.append(message)
        log.warning("knobs: %s", message)
        if self._on_error is not None:
            self._on_error(message)

    def set_status(self, state: str) -> None:
        """Show a service state ("playing", "starting", "quiet-hours", "error", "power_warning") on the LED, if
        there is one."""
        if self._led is None or self.knob_map.led is None:
            return
        pattern = self.knob_map.led.patterns.get(state.replace("-", "_"), "off")
        if pattern == self._led_pattern:
            return
        self._led_pattern = pattern
        led = self._led
        if pattern == "on":
            led.on()
        elif pattern == "off":
            led.off()
        elif pattern == "blink":
            led.blink(on_time=0.5, off_time=0.5)
        elif pattern == "fast_blink":
            led.blink(on_time=0.1, off_time=0.1)
        elif pattern == "flash":  # a short flash every 2 s: unlike every other pattern, also from across a room
            led.blink(on_time=0.1, off_time=1.9)
        elif pattern == "breathe":
            if hasattr(led, "pulse"):
                led.pulse(fade_in_time=1.5, fade_out_time=1.5)
            else:
                led.on()

    def summary(self) -> str:
        """What is attached, for the start-up log line."""
        kinds = {"pot": len(self._pots), "encoder": len(self._encoders),
                 "button": sum(1 for b in self._buttons if b.switch_control is None),
                 "switch": sum(1 for b in self._buttons if b.switch_control is not None)}
        parts = [f"{count} {kind}{'es' if kind == 'switch' and count != 1 else 's' if count != 1 else ''}"
                 for kind, count in kinds.items() if count]
        if self._led is not None:
            parts.append("the status LED")
        problems = f"; {len(self._problems)} problem(s), see above" if self._problems else ""
        return (", ".join(parts) or "nothing") + " attached" + problems

    def values(self) -> dict:
        """JSON-ready view for the health report: raw pot readings, button states, LED pattern, problems."""
        inputs: dict[str, dict] = {}
        for name, _adc, shaper, control in self._pots:
            raw = self._raw.get(name)
            inputs[name] = {"type": "pot", "control": control, "raw": None if raw is None else round(raw, 4),
                            "value": shaper.value}
            if self.knob_map.pickup:
                inputs[name]["picked_up"] = name in self._pickups and self._pickups[name][0].engaged
        for name, encoder in self._encoders.items():
            inputs[name] = {"type": "encoder", "steps": encoder.steps}
        for button in self._buttons:
            inputs[button.name] = {"type": "switch" if button.switch_control else "button",
                                   "pressed": button.logic.pressed, "ignored": button.logic.stuck}
        return {"backend": self.backend, "inputs": inputs, "led": self._led_pattern if self._led else None,
                "problems": list(self._problems)}

    def close(self) -> None:
        self._stop.set()
        with self._poll_cond:
            self._poll_cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for device in reversed(self._devices):
            try:
                device.close()
            except Exception:  # closing is best effort; a dead pin must not stop the shutdown
                log.debug("knobs: closing %r failed", device, exc_info=True)
        self._devices.clear()


def start_knobs(knob_map: KnobMap, store: ControlStore, *, pin_factory=None, on_error=None) -> Knobs:
    """Attach every configured input to ``store`` and start polling; returns a handle with values() and close().

    ``pin_factory``: a gpiozero pin factory (tests pass ``MockFactory()``); None picks gpiozero's default
    (lgpio on a Pi 5, ``GPIOZERO_PIN_FACTORY`` overrides). ``on_error(message)`` hears about inputs that fail.
    """
    if not knob_map.needs_gpio:
        return Knobs()
    if pin_factory is None:
        pin_factory, reason = _default_pin_factory()
        if pin_factory is None:
            message = (f"no GPIO on this machine ({reason}): knobs and LED are off, playing on the config's "
                       "[sampler] defaults")
            log.warning("knobs: %s", message)
            return Knobs(reason=message)
    knobs = GpioKnobs(knob_map, store, pin_factory, on_error)
    knobs.attach()
    log.info("knobs: %s", knobs.summary())
    return knobs


def _default_pin_factory():
    """gpiozero's default pin factory, or (None, why not) without GPIO hardware. Its fallback warnings are muted:
    the caller logs one line instead of four."""
    try:
        from gpiozero import Device
        from gpiozero.exc import PinFactoryFallback
    except ImportError as exc:
        return None, f"gpiozero is not installed: {exc}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PinFactoryFallback)
            Device.ensure_pin_factory()
    except Exception as exc:  # BadPinFactory, ImportError, OSError: every way of "no GPIO here"
        return None, f"gpiozero: {exc}"
    return Device.pin_factory, None
