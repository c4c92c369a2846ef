"""The seams between the device's parts, as typed protocols: what the engine needs of a step model, a vocoder and
a sink, and what the service needs of an engine and a clock.

The real parts (``step_model.StepModel``, ``vocoder.StreamingVocoder``, ``sinks.PyAudioSink`` …,
``engine.Engine``, ``clock.WallClock``) and the shipped fakes (``device/testing/fakes.py``) implement them; ``make lint``
(mypy) checks both against these definitions, and ``tests/device/test_protocols.py`` checks the fakes at run time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from murmur.device.appliance.status import ClockSync
    from murmur.device.bundle import Bundle


@runtime_checkable
class StepModelLike(Protocol):
    """One LSTM step per frame: (n_bins,) float32 in model units -> the predicted next frame (a view the next call
    overwrites); its recurrent state lives inside and can be saved and restored."""

    n_bins: int

    def step(self, frame: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...

    def new_state(self) -> list[np.ndarray]: ...

    def get_state(self, out: list[np.ndarray] | None = None) -> list[np.ndarray]: ...

    def set_state(self, state: Sequence[np.ndarray]) -> None: ...


@runtime_checkable
class VocoderLike(Protocol):
    """Streaming phase reconstruction: one magnitude frame (n_bins,) in, one hop of audio (hop_length,) out,
    ``latency_samples`` behind the frames fed."""

    latency_samples: int

    def process(self, magnitude: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


Pull = Callable[[np.ndarray], bool]  # fills its (n,) float32 argument; False once the engine has stopped


@runtime_checkable
class Sink(Protocol):
    """Where audio goes. The sink pulls: ``start`` hands it the engine's ``pull``, which it calls for every block
    (from the sound card's callback or its own thread); ``realtime`` says whether it is paced by a clock."""

    realtime: bool

    def start(self, pull: Pull, *, sample_rate_hz: int, block_frames: int) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine's counters (read from any thread)."""

    frames_produced: int
    blocks_delivered: int
    underruns: int  # sink pulls that found fewer samples ready than asked, filled with silence (not the first few)
    level_dbfs_10s: float  # RMS of the produced audio over the last 10 s, dBFS (-inf when silent)
    peak_dbfs_10s: float  # highest |sample| over the last 10 s, dBFS
    identical_blocks: int  # consecutive produced blocks that were bit-identical to the one before (stuck output)
    nonfinite_frames: int  # frames whose audio held NaN/inf (replaced by silence, generator restarted)
    bundle_id: str
    last_progress_monotonic: float  # time.monotonic() of the last produced frame (the real clock, not an injected one)
    buffer_frames: int  # ring lead in frames now (grows after underruns, up to max_buffer_frames)
    swapping: bool
    reseeds: int = 0  # reseed events the generator took (knob presses), since the engine started
    cpu_load: float = 0.0  # the producer's CPU time per frame / the frame's duration, over the last 10 s
    vocoder: str = ""  # the vocoder's preset: "full", "light", "light (auto)" ("" when it has none)


@runtime_checkable
class EngineLike(Protocol):
    """What the service drives: start/stop, fades, bundle swaps, and a stats snapshot for health and status."""

    @property
    def stats(self) -> EngineStats: ...

    @property
    def error(self) -> BaseException | None: ...

    def start(self) -> None: ...

    def wait_started(self, timeout: float) -> bool: ...

    def stop(self, fade_s: float = ...) -> None: ...

    def fade_to(self, gain_linear: float, seconds: float) -> None: ...

    def swap_bundle(self, bundle: Bundle, crossfade_s: float) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """The service's clocks: local wall time (schedule), unix time (files), monotonic (durations), a wait the main
    loop sleeps in, and whether the wall clock has network time (``sync``)."""

    def now(self) -> datetime: ...

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    def wait(self, event: threading.Event, timeout: float) -> bool: ...

    def sync(self) -> ClockSync: ...
