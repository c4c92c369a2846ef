"""A mock MCP3008 for gpiozero's MockFactory, shipped with the package so tests and demos turn the same fake pots.

gpiozero's own MCP3xxx mocks live in its test suite, not in the wheel. This one answers single-ended reads
on the software SPI that MockFactory gives an MCP3008 (clock GPIO 11, MOSI 10, MISO 9, select 8 or 7).

    factory = MockFactory()
    adc = MockMCP3008(pin_factory=factory)   # create it before the MCP3008 device
    adc.turn(0, 0.75)                        # channel 0 at 75 % of Vref
"""

from __future__ import annotations

import threading

from gpiozero.pins.mock import MockSPIDevice

from murmur.device.controls.values import Controls, ControlStore

SELECT_PINS = {0: 8, 1: 7}  # chip select -> GPIO (SPI0 CE0 / CE1)


class MockMCP3008(MockSPIDevice):
    """The slave side of an MCP3008: reads start bit, single/differential bit, 3 channel bits; answers 10 bits."""

    rx_buf: list[int]  # gpiozero's MockSPIDevice: the bits received since it was last cleared

    def __init__(self, *, chip_select: int = 0, pin_factory=None) -> None:
        super().__init__(11, 10, 9, SELECT_PINS[chip_select], pin_factory=pin_factory)
        self.ratios = [0.0] * 8  # each channel's input as a fraction of Vref, 0..1
        self.reads = 0  # conversions answered (tests wait on progress with it)
        self._phase = "idle"

    def turn(self, channel: int, ratio: float) -> None:
        """Set a channel's input (0..1 of Vref): what turning the pot does."""
        self.ratios[channel] = min(max(float(ratio), 0.0), 1.0)

    def on_start(self) -> None:
        super().on_start()
        self._phase = "idle"

    def on_bit(self) -> None:
        if self._phase == "idle":
            if self.rx_buf[-1]:  # the start bit
                self._phase, self.rx_buf = "mode", []
        elif self._phase == "mode":
            self._phase, self.rx_buf = ("single" if self.rx_buf[-1] else "differential"), []
        elif self._phase in ("single", "differential") and len(self.rx_buf) == 3:
            channel = self.rx_word()
            ratio = self.ratios[channel]
            if self._phase == "differential":
                ratio = max(0.0, ratio - self.ratios[channel ^ 1])
            # sampling clock, null bit, then 10 data bits MSB first
            self.tx_word(min(int(round(ratio * 1023)), 1023), 12)
            self.reads += 1
            self._phase = "result"


class RecordingStore(ControlStore):
    """A ControlStore that lets a test or a bench wait for what the knob threads write (no polling)."""

    def __init__(self, initial: Controls | None = None) -> None:
        super().__init__(initial)
        self.changed = threading.Condition()
        self.triggered: list[str] = []

    def apply(self, changes, *, notify: bool = True) -> None:
        super().apply(changes, notify=notify)
        with self.changed:
            self.changed.notify_all()

    def merge(self, decide):
        changes = super().merge(decide)
        with self.changed:
            self.changed.notify_all()
        return changes

    def trigger(self, event: str, *, notify: bool = True) -> None:
        super().trigger(event, notify=notify)
        with self.changed:
            self.triggered.append(event)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout: float = 3.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self.snapshot()), timeout)

    def wait_triggered(self, count: int, timeout: float = 3.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.triggered) >= count, timeout)
