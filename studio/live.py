"""Listen live: the device's own engine, paced by a real-time thread, streamed as 16-bit PCM to the page.

The page's AudioWorklet keeps ~60 ms of it buffered and plays it; the knobs set the same ``ControlStore`` the
Pi's GPIO knobs set, so a move is heard after the engine's ring (3 frames, 35 ms) plus the page's buffer.
Each binary message is one block: uint32 sequence number, then ``block_frames`` little-endian int16 samples.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from device.controls import BOOL_CONTROLS, CONTROL_RANGES, GENERATOR_EVENTS, Controls, ControlStore, coerce_control
from device.errors import ConfigError

from .errors import StudioError

HEADER = struct.Struct("<I")
ENGINE_BUFFER_FRAMES = 3  # the engine's ring lead, as on the Pi
CATCH_UP_S = 0.25  # a pacing thread this far behind (a stalled laptop) restarts its clock instead of bursting


class StreamSink:
    """A ``Sink`` paced by ``time.monotonic``: pulls one block per block period and hands it to ``deliver``.

    ``deliver(message: bytes)`` runs on the pacing thread; keep it cheap (the server puts it on a queue).
    """

    realtime = True

    def __init__(self, deliver: Callable[[bytes], None]):
        self.deliver = deliver
        self.blocks_sent = 0
        self.late_restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, pull, *, sample_rate_hz: int, block_frames: int) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(pull, sample_rate_hz, block_frames),
                                        name="studio-stream", daemon=True)
        self._thread.start()

    def _run(self, pull, sample_rate_hz: int, block_frames: int) -> None:
        block = np.zeros(block_frames, dtype=np.float32)
        pcm = np.zeros(block_frames, dtype="<i2")
        message = bytearray(HEADER.size + 2 * block_frames)
        period = block_frames / sample_rate_hz
        due = time.monotonic()
        while not self._stop.is_set():
            if not pull(block):
                return
            np.multiply(block, 32767.0, out=block)
            np.clip(block, -32768.0, 32767.0, out=block)
            pcm[:] = block
            HEADER.pack_into(message, 0, self.blocks_sent & 0xFFFFFFFF)
            message[HEADER.size:] = pcm.tobytes()
            self.deliver(bytes(message))
            self.blocks_sent += 1
            due += period
            wait = due - time.monotonic()
            if wait < -CATCH_UP_S:
                due, self.late_restarts = time.monotonic(), self.late_restarts + 1
            elif wait > 0:
                self._stop.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


def control_spec() -> dict:
    """The controls the page draws: the same names, ranges and defaults as the GPIO knobs."""
    defaults = Controls()
    spec = {name: {"min": lo, "max": hi, "default": getattr(defaults, name)} for name, (lo, hi) in CONTROL_RANGES.items()}
    for name in BOOL_CONTROLS:
        spec[name] = {"bool": True, "default": getattr(defaults, name)}
    return {"controls": spec, "events": list(GENERATOR_EVENTS)}


class LiveSession:
    """The engine playing one bundle into a ``StreamSink``; ``apply(message)`` turns the page's knob messages
    ({"set": {name: value}} or {"trigger": "reseed"}) into ``ControlStore`` calls."""

    def __init__(self, bundle_dir: Path, deliver: Callable[[bytes], None], *, controls: dict | None = None,
                 seed: int | None = None):
        from device.bundle import load_bundle
        from device.engine import Engine

        self.bundle = load_bundle(bundle_dir)
        self.store = ControlStore(Controls().replace(**(controls or {})))
        self.sink = StreamSink(deliver)
        self.engine = Engine(self.bundle, sink=self.sink, controls=self.store, seed=seed,
                             buffer_frames=ENGINE_BUFFER_FRAMES)
        self.sample_rate_hz = self.bundle.audio.sample_rate_hz
        self.block_frames = self.engine.hop

    def start(self) -> None:
        self.engine.start()

    def apply(self, message: dict) -> None:
        try:
            for name, value in (message.get("set") or {}).items():
                if name not in CONTROL_RANGES and name not in BOOL_CONTROLS:
                    raise StudioError(f"unknown control {name!r}; the controls are {', '.join(control_spec()['controls'])}")
                self.store.set(name, coerce_control(name, value))
            event = message.get("trigger")
            if event:
                if event not in GENERATOR_EVENTS:
                    raise StudioError(f"unknown action {event!r}; the page can trigger {', '.join(GENERATOR_EVENTS)}")
                self.store.trigger(event)
        except ConfigError as exc:
            raise StudioError(str(exc)) from exc

    def stats(self) -> dict:
        s = self.engine.stats
        return {"frames": s.frames_produced, "engine_underruns": s.underruns, "blocks_sent": self.sink.blocks_sent,
                "late_restarts": self.sink.late_restarts, "bundle_id": self.bundle.bundle_id}

    def stop(self) -> None:
        self.engine.stop(fade_s=0.05)
