"""The studio's server in this test process (its own event loop on a thread), so that a test can hold what the
server was built with: the fake MIDI system (``murmur.device.testing.midi.FakeMidiPorts``), into which it plugs a
controller and turns its knobs. The live engine is still the real child process, as with ``make studio``."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from pathlib import Path

import requests

from murmur.studio.server import Options, Studio, serve


class InProcessStudio:
    """``serve(Studio(Options(project, midi_ports=ports)))`` on a thread; ``get``/``send`` as the page does;
    ``midi(predicate)`` follows the page's long poll until the MIDI state satisfies ``predicate``."""

    def __init__(self, project: Path, ports, **options) -> None:
        self.studio = Studio(Options(project=project, port=0, midi_ports=ports, **options))
        self.ports = ports
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._task: asyncio.Task | None = None
        self.thread = threading.Thread(target=self._run, name="studio-in-process", daemon=True)
        self.thread.start()
        if not self._ready.wait(60):
            raise AssertionError("the in-process studio did not start listening within 60 s")
        self.base = f"http://127.0.0.1:{self.port}"
        self.moved: dict = {}  # every control a MIDI knob moved, as the page heard of it (last value wins)
        self.seen = -1

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._task = self.loop.create_task(serve(self.studio, self._on_ready))
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self._task)
        self.loop.close()

    def _on_ready(self, url: str) -> None:
        match = re.match(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)$", url)
        assert match, url
        self.url, self.port, self.token = url, int(match[1]), match[2]
        self._ready.set()

    def get(self, path: str, **kw):
        kw.setdefault("headers", {}).setdefault("X-Studio-Token", self.token)
        return requests.get(self.base + path, timeout=60, **kw)

    def send(self, method: str, path: str, **kw):
        kw.setdefault("headers", {}).setdefault("X-Studio-Token", self.token)
        return requests.request(method, self.base + path, timeout=60, **kw)

    def midi(self, predicate, timeout: float = 10.0, what: str = "") -> dict:
        """The page's long poll (``/api/midi?after=…``) until ``predicate(state)`` holds; AssertionError with the
        last state after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        wait = 0.0
        while True:
            state = self.get(f"/api/midi?after={self.seen}&wait={wait:.2f}").json()
            self.seen = state["version"]
            self.moved.update(state["moved"])
            if predicate(state):
                return state
            wait = min(deadline - time.monotonic(), 2.0)
            if wait <= 0:
                raise AssertionError(f"MIDI: {what or 'condition'} not met within {timeout} s; last state: {state}")

    def stop(self) -> None:
        if self._task is not None:
            self.loop.call_soon_threadsafe(self._task.cancel)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the in-process studio did not stop"
