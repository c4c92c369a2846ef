"""Inspectable stand-ins for the hardware-ish parts, shipped in the package (STYLE.md #2).

``FakeStepModel`` has the ``StepModel`` interface without a TFLite runtime (a small deterministic recurrence);
``FakeVocoder`` has the ``StreamingVocoder`` interface (plain overlap-add with bin-centre phase advance: cheap, not
good-sounding). Tests of the real path use the real model and vocoder; these serve plumbing tests and ``--dry-run``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .frames import analysis_window


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
