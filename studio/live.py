"""Listen live: the device's own engine, in a child process of its own, streamed as 16-bit PCM to the page.

The engine and its real-time pacing run in ``python -m murmur.studio.live_worker`` (one per listening page), not in
the server: the server's event loop, uploads and trainings then never hold the GIL the producer needs, so the stream
keeps time on a busy laptop. The worker writes frames to its stdout (``FRAME``: kind, length, payload; kind
``AUDIO`` is one WebSocket message, kind ``JSON`` a hello, stats or error object) and reads knob messages, one
JSON object per line, from its stdin; end of stdin stops it (after a short fade).

The page's AudioWorklet keeps ~50 ms buffered and is the stream's only real-time consumer (the worker's pacing
waits for a late block rather than sending silence); the knobs set the same ``ControlStore`` the Pi's GPIO knobs
set, so a move is heard after the engine's ring (2 frames, 23 ms) plus the page's buffer. Each audio message is one block:
uint32 sequence number, then ``block_frames`` little-endian int16 samples.

Knob -> sound, on every turn: a knob message may carry an ``"id"``; the worker then answers ``{"applied": {"id", "seq"}}``
where ``seq`` is the first block made with the new setting (block numbers are the engine's frames: one block per
frame). The page times the turn from its input event to that block's arrival, plus what its player had buffered
ahead of the block and the audio output's own latency.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from murmur.device.controls.values import (
    BOOL_CONTROLS,
    CONTROL_RANGES,
    GENERATOR_EVENTS,
    Controls,
    ControlStore,
    coerce_control,
)
from murmur.device.errors import ConfigError

from .errors import StudioError

HEADER = struct.Struct("<I")  # an audio message: sequence number, then the int16 samples
FRAME = struct.Struct("<BI")  # worker -> server: kind, payload length in bytes
AUDIO, JSON = 0, 1
# The engine's ring lead: one frame less than on the Pi, whose sound card pulls in real time; here the page's buffer
# absorbs the jitter, and the ring only has to have the next block ready when the pacing thread asks for it.
ENGINE_BUFFER_FRAMES = 2
# A pacing thread this far behind (a stalled laptop) restarts its clock instead of bursting: no more than the page's
# buffer holds (150 ms), since the page would drop the rest.
CATCH_UP_S = 0.15


class StreamSink:
    """A ``Sink`` paced by ``time.monotonic``: pulls one block per block period and hands it to ``deliver``.

    Not real-time for the engine (``realtime = False``): a pull waits for a whole block instead of taking silence,
    because the real-time consumer is the page's AudioWorklet and its buffer covers a late block. So the stream has
    one jitter buffer (the page's), never a gap of silence made here, and the engine's ring never grows its lead
    (and latency) after a late spell. ``deliver(message: bytes)`` runs on the pacing thread; keep it cheap.
    """

    realtime = False

    def __init__(self, deliver: Callable[[bytes], None]):
        self.deliver = deliver
        self.blocks_sent = 0
        self.late_blocks = 0  # blocks sent more than one block period after they were due (the page's buffer covered)
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
            now = time.monotonic()
            if now - due > period:
                self.late_blocks += 1
            due += period
            wait = due - now
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


def check_control_message(message: dict) -> tuple[dict[str, float | bool], str | None]:
    """The page's knob message ({"set": {name: value}} and/or {"trigger": "reseed"}) -> (clamped values, event).

    Raises StudioError naming the unknown control or action, or the bad value."""
    if not isinstance(message, dict) or not isinstance(message.get("set") or {}, dict):
        raise StudioError(f"a knob message is a JSON object like {{\"set\": {{\"gain_db\": -6}}}}, not {message!r}")
    changes: dict[str, float | bool] = {}
    try:
        for name, value in (message.get("set") or {}).items():
            if name not in CONTROL_RANGES and name not in BOOL_CONTROLS:
                raise StudioError(f"unknown control {name!r}; the controls are {', '.join(control_spec()['controls'])}")
            changes[name] = coerce_control(name, value)
    except ConfigError as exc:
        raise StudioError(str(exc)) from exc
    event = message.get("trigger") or None
    if event is not None and event not in GENERATOR_EVENTS:
        raise StudioError(f"unknown action {event!r}; the page can trigger {', '.join(GENERATOR_EVENTS)}")
    return changes, event


def message_id(message: dict) -> int | None:
    """A knob message's optional ``"id"`` (a whole number the page counts turns with); StudioError if it is not one."""
    value = message.get("id") if isinstance(message, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise StudioError(f"a knob message's \"id\" is a whole number from 0 (the page counts its turns), not {value!r}")
    return value


class LiveSession:
    """The engine playing one bundle into a ``StreamSink``; ``apply(message)`` turns the page's knob messages
    ({"set": {name: value}} or {"trigger": "reseed"}) into ``ControlStore`` calls."""

    def __init__(self, bundle_dir: Path, deliver: Callable[[bytes], None], *, controls: dict | None = None,
                 seed: int | None = None):
        from murmur.device.bundle import load_bundle
        from murmur.device.playback.engine import Engine

        self.bundle = load_bundle(bundle_dir)
        self.store = ControlStore(Controls().replace(**(controls or {})))
        self.sink = StreamSink(deliver)
        self.engine = Engine(self.bundle, sink=self.sink, controls=self.store, seed=seed,
                             buffer_frames=ENGINE_BUFFER_FRAMES)
        self.sample_rate_hz = self.bundle.audio.sample_rate_hz
        self.block_frames = self.engine.hop

    def start(self) -> None:
        self.engine.start()

    def apply(self, message: dict) -> int:
        """Apply one knob message (checked by ``check_control_message``) to the engine's controls -> the number of
        the first block made with it: the producer takes the controls once per frame, at its start, so the frame it
        may be making now can have the old values and the one after it cannot."""
        changes, event = check_control_message(message)
        if changes:
            self.store.update(**changes)
        if event:
            self.store.trigger(event)
        return self.engine.pipeline.frame_index + 1

    def stats(self) -> dict:
        s = self.engine.stats
        return {"frames": s.frames_produced, "late_blocks": self.sink.late_blocks, "blocks_sent": self.sink.blocks_sent,
                "late_restarts": self.sink.late_restarts, "engine_buffer_frames": s.buffer_frames,
                "bundle_id": self.bundle.bundle_id}

    def stop(self) -> None:
        self.engine.stop(fade_s=0.05)


class LiveProcess:
    """The server's handle on one ``studio.live_worker`` child: its hello, its frames, knob messages to it."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.hello: dict = {}

    @classmethod
    async def start(cls, bundle_dir: Path, controls: dict, *, timeout_s: float = 60.0) -> LiveProcess:
        """Start the worker and wait for its hello; StudioError with its own message when it cannot play."""
        from .training import child_env

        changes, _ = check_control_message({"set": controls})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "murmur.studio.live_worker", str(bundle_dir), "--controls", json.dumps(changes),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=child_env())
        live = cls(proc)
        try:
            frame = await asyncio.wait_for(live.read(), timeout_s)
        except TimeoutError:
            frame = None
        message = json.loads(frame[1]) if frame is not None and frame[0] == JSON else {}
        if "hello" not in message:
            await live.stop()
            raise StudioError(message.get("error") or f"{bundle_dir}: the live engine stopped before it played "
                              f"(exit code {proc.returncode}); its messages are in the studio's terminal")
        live.hello = message["hello"]
        return live

    async def read(self) -> tuple[int, bytes] | None:
        """The next (kind, payload) frame, or None once the worker has ended."""
        assert self.proc.stdout is not None
        try:
            kind, length = FRAME.unpack(await self.proc.stdout.readexactly(FRAME.size))
            return kind, await self.proc.stdout.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def send(self, message: dict) -> None:
        """Check one knob message (StudioError if bad) and pass it on to the engine."""
        changes, event = check_control_message(message)
        turn = message_id(message)
        assert self.proc.stdin is not None
        if self.proc.returncode is None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(json.dumps({"set": changes, "trigger": event, "id": turn}).encode() + b"\n")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """End its stdin (it fades out and exits); kill it if it has not gone after ``timeout_s``."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
