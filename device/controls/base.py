"""The Knobs handle every back-end returns: values for the health report, the status LED, close(); and
``KnobSet``, several back-ends (GPIO, OSC, the room …) behind one handle, which is what the service holds."""

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

    def reports(self) -> dict[str, dict]:
        """Status report fields of their own ("osc", "room", "midi": JSON-ready dicts); none for plain knobs."""
        return {}

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


class KnobSet(Knobs):
    """Several back-ends as one handle: values merged (inputs side by side, every problem listed, the one LED),
    ``reports`` joined, the LED state and ``close`` passed to each (closed in reverse order)."""

    def __init__(self, parts: list[Knobs]) -> None:
        super().__init__()
        self.parts = parts
        self.backend = "+".join(part.backend for part in parts) or "none"

    def values(self) -> dict:
        merged: dict = {"backend": self.backend, "inputs": {}, "led": None, "problems": []}
        for part in self.parts:
            values = part.values()
            merged["inputs"].update(values.get("inputs", {}))
            merged["led"] = merged["led"] or values.get("led")
            merged["problems"] += values.get("problems", [])
        return merged

    def reports(self) -> dict[str, dict]:
        joined: dict[str, dict] = {}
        for part in self.parts:
            joined.update(part.reports())
        return joined

    def set_status(self, state: str) -> None:
        for part in self.parts:
            part.set_status(state)

    def wait_polls(self, count: int = 1, timeout: float = 1.0) -> bool:
        return any(part.wait_polls(count, timeout) for part in self.parts[:1])

    def close(self) -> None:
        for part in reversed(self.parts):
            part.close()
