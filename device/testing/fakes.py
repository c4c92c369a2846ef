"""Inspectable stand-ins for the hardware-ish parts, shipped in the package rather than hidden in tests/, so
every test and tool imports the same fakes.

``FakeStepModel`` has the ``StepModel`` interface without a TFLite runtime (a small deterministic recurrence);
``FakeVocoder`` has the ``StreamingVocoder`` interface (plain overlap-add with bin-centre phase advance: cheap, not
good-sounding). Tests of the real path use the real model and vocoder; these serve plumbing tests and benchmarks.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from murmur.device.appliance.status import ClockSync
from murmur.device.dsp.frames import analysis_window
from murmur.device.protocols import EngineStats


class FakeStepModel:
    """Deterministic stand-in: next = 0.9·frame + 0.1·roll(frame) + 0.2·tanh(state); state tracks the frame mean."""

    runtime_name = "fake"
    fast_path = True

    def __init__(self, n_bins: int, state_sizes: Sequence[int] = (8, 8)):
        self.n_bins = n_bins
        self.state_sizes = tuple(state_sizes)
        self._state = self.new_state()
        self._out = np.zeros(n_bins, dtype=np.float32)
        self.steps = 0

    def new_state(self) -> list[np.ndarray]:
        return [np.zeros((1, size), dtype=np.float32) for size in self.state_sizes]

    def reset(self) -> None:
        for state in self._state:
            state.fill(0.0)

    def get_state(self, out: list[np.ndarray] | None = None) -> list[np.ndarray]:
        out = self.new_state() if out is None else out
        for target, source in zip(out, self._state, strict=True):
            np.copyto(target, source)
        return out

    def set_state(self, state: Sequence[np.ndarray]) -> None:
        for target, source in zip(self._state, state, strict=True):
            np.copyto(target, source)

    def step(self, frame: np.ndarray) -> np.ndarray:
        self.steps += 1
        first = self._state[0]
        first *= np.float32(0.5)
        first += np.float32(0.5 * float(np.mean(frame)))
        np.multiply(frame, np.float32(0.9), out=self._out)
        self._out[1:] += np.float32(0.1) * frame[:-1]
        self._out += np.float32(0.2) * np.tanh(first[0, 0])
        return self._out


class FakeVocoder:
    """``StreamingVocoder`` interface: magnitude (n_bins,) -> (hop_length,) audio, phase advanced at bin centres."""

    def __init__(self, *, n_fft: int, hop_length: int, lookahead: int = 0, iterations: int = 0, window: str = "hann"):
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.latency_samples = n_fft - hop_length
        self._window = analysis_window(n_fft, window).astype(np.float32)
        overlap = (self._window**2).sum() / hop_length
        self._synthesis = (self._window / overlap).astype(np.float32)
        self._advance = (2 * np.pi * hop_length * np.arange(n_fft // 2 + 1) / n_fft).astype(np.float64)
        self._phase = np.zeros(n_fft // 2 + 1)
        self._ola = np.zeros(n_fft + hop_length, dtype=np.float32)
        self._out = np.zeros(hop_length, dtype=np.float32)

    def reset(self) -> None:
        self._phase[:] = 0.0
        self._ola[:] = 0.0

    def process(self, magnitude: np.ndarray) -> np.ndarray:
        self._phase += self._advance
        spectrum = magnitude * np.exp(1j * self._phase)
        frame = np.fft.irfft(spectrum, n=self.n_fft).astype(np.float32)
        self._ola[: self.n_fft] += frame * self._synthesis
        self._out[:] = self._ola[: self.hop_length]
        self._ola[: -self.hop_length] = self._ola[self.hop_length :]
        self._ola[-self.hop_length :] = 0.0
        return self._out


class SimClock:
    """A ``protocols.Clock`` whose time moves only when told: ``wait()`` advances it by its whole timeout without
    waiting, so a test or a benchmark runs hours of the service's schedule in milliseconds. ``synchronised`` is
    what ``sync()`` reports (set it to fake a boot without network time)."""

    def __init__(self, start: datetime, *, monotonic_base: float = 1000.0) -> None:
        self.start = start
        self.offset = 0.0  # seconds since ``start``
        self.monotonic_base = monotonic_base
        self.synchronised = ClockSync.SYNCHRONISED

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.offset)

    def time(self) -> float:
        return self.start.timestamp() + self.offset

    def monotonic(self) -> float:
        return self.monotonic_base + self.offset

    def wait(self, event: threading.Event, timeout: float) -> bool:
        self.advance(timeout)
        return event.is_set()

    def sync(self) -> ClockSync:
        return self.synchronised


@dataclass(frozen=True)
class FakeAudio:
    """The audio settings a service test's bundle claims (a bundle's ``audio``): 44.1 kHz, n_fft 2048, hop 512."""

    frame_s: float = 512 / 44100
    sample_rate_hz: int = 44100
    n_fft: int = 2048
    hop_length: int = 512


@dataclass(frozen=True)
class FakeBundle:
    """What the service reads of a bundle it hands a FakeEngine: its path, id and audio settings."""

    path: Path
    bundle_id: str
    audio: FakeAudio = FakeAudio()


class FakeEngine:
    """A ``protocols.EngineLike`` without audio, for the service's tests: it records start/stop/swap in ``log`` and
    every ``fade_to`` in ``fades``; frames count with ``clock`` (real time for the audio path); the level and the
    count of identical blocks are plain attributes a test sets. ``starts=False`` is a sound card that never takes a
    block (``wait_started`` fails)."""

    def __init__(self, bundle, clock: SimClock, *, log: list[tuple] | None = None, frame_s: float = 512 / 44100,
                 starts: bool = True) -> None:
        self.bundle = bundle
        self.clock = clock
        self.log: list[tuple] = [] if log is None else log
        self.frame_s = frame_s
        self.starts = starts
        self.started_at = clock.offset
        self.fades: list[tuple[float, float]] = []
        self.level_dbfs_10s = -20.0
        self.identical_blocks = 0
        self.failure: BaseException | None = None  # what ``error`` reports (a producer that died)

    @property
    def stats(self) -> EngineStats:
        return EngineStats(
            frames_produced=int((self.clock.offset - self.started_at) / self.frame_s), blocks_delivered=0,
            underruns=0, level_dbfs_10s=self.level_dbfs_10s, peak_dbfs_10s=-6.0,
            identical_blocks=self.identical_blocks, nonfinite_frames=0, bundle_id=self.bundle.bundle_id,
            last_progress_monotonic=time.monotonic(),  # the producer is alive
            buffer_frames=3, swapping=False)

    @property
    def error(self) -> BaseException | None:
        return self.failure

    def start(self) -> None:
        self.log.append(("start", self.bundle.bundle_id))

    def wait_started(self, timeout: float | None = None) -> bool:
        return self.starts

    def stop(self, fade_s: float = 0.05) -> None:
        self.log.append(("stop", self.bundle.bundle_id))

    def fade_to(self, gain_linear: float, seconds: float) -> None:
        self.fades.append((gain_linear, round(seconds, 3)))

    def swap_bundle(self, bundle, crossfade_s: float = 5.0) -> None:
        self.log.append(("swap", bundle.bundle_id, crossfade_s))
        self.bundle = bundle


class NotifyListener:
    """Binds a ``NOTIFY_SOCKET`` as systemd does and collects every datagram with its real arrival time
    (``time.monotonic()``), on a thread of its own: tests wait for a message, benchmarks read the watchdog gaps."""

    def __init__(self, path: Path) -> None:
        if path.exists():
            path.unlink()
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._consumed = 0  # messages before this index were matched or counted already (as if read off a socket)
        self._arrived = threading.Condition()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._arrived:
                self.messages.append((time.monotonic(), data))
                self._arrived.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first message not yet consumed that satisfies ``predicate`` (it and those before it are consumed
        then); AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for index in range(self._consumed, len(self.messages)):
                    if predicate(self.messages[index][1]):
                        self._consumed = index + 1
                        return self.messages[index][1]
                self._consumed = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    last = [m for _, m in self.messages[-10:]]
                    raise AssertionError(f"no matching notify message within {timeout} s; last seen: {last}")
                self._arrived.wait(left)

    def count(self, message: str, seconds: float) -> int:
        """How many ``message`` datagrams arrive in the next ``seconds`` (an observation window)."""
        start = time.monotonic()
        deadline = start + seconds
        with self._arrived:
            while (left := deadline - time.monotonic()) > 0:
                self._arrived.wait(left)
            self._consumed = len(self.messages)
            return sum(1 for t, m in self.messages if m == message and start <= t < deadline)

    @property
    def pings(self) -> list[float]:
        """Arrival times of every WATCHDOG=1."""
        with self._arrived:
            return [t for t, m in self.messages if m == "WATCHDOG=1"]

    def gaps(self, since: float = 0.0) -> list[float]:
        """Seconds between consecutive WATCHDOG=1 that arrived after ``since``."""
        pings = [t for t in self.pings if t >= since]
        return [b - a for a, b in zip(pings, pings[1:], strict=False)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
