"""The Knobs handle every back-end returns: values for the health report, the status LED, close()."""

from __future__ import annotations


class Knobs:
    """Nothing attached: what the service runs with when there is no GPIO (or no knob is configured).

    Back-ends (GPIO, keyboard) subclass it; the service only calls these methods.
    """

    backend = "none"

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason

    def values(self) -> dict:
        """JSON-ready state for status.json's "knobs": back-end, inputs, LED pattern, problems."""
        return {"backend": self.backend, "inputs": {}, "led": None, "problems": [self.reason] if self.reason else []}

    def set_status(self, state: str) -> None:
        """Show a service state ("playing", "starting", "quiet-hours", "error", "power_warning") on the status LED,
        if any."""

    def wait_polls(self, count: int = 1, timeout: float = 1.0) -> bool:
        """Block until ``count`` more input polls have run (False: nothing is polled here)."""
        return False

    def close(self) -> None:
        """Release every pin / the terminal. Safe to call twice."""

    def __enter__(self) -> Knobs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
