"""The regression generator: the step model's own predictions fed back -> the next linear magnitude frame, forever.

Format-1 bundles (no frame bank) play through it; format-2 bundles play through the frame bank
(``murmur.device.generate.bank.BankSampler``), which comes closer to the source (BENCHMARKS.md, "Sound ablation",
row ``regression``: this generator on format-2 bundles). What keeps it alive unattended: sampling noise
(``temperature``) and a clamp to each bin's training range on every fed-back frame, jumps that re-warm a second LSTM
state on real seed frames and crossfade to it, and a slow level keeper (30-s average, at most ±6 dB) that makes up
for the low level of MSE predictions; the details: docs/ARCHITECTURE.md §3. Deterministic under a seed: one
``numpy.random.Generator`` drives every random choice, in frame order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from murmur.device.bundle import Bundle
from murmur.device.controls.values import Controls
from murmur.device.dsp.frames import denormalise_into
from murmur.device.protocols import StepModelLike


@dataclass(frozen=True)
class SamplerSettings:
    """Fixed sampler mechanics (the knobs are in ``Controls``)."""

    warm_frames: int = 32  # seed frames a fresh LSTM state is warmed on
    warm_steps_per_frame: int = 8  # extra model steps per output frame while warming (spreads the cost)
    crossfade_frames: int = 16  # old chain -> new chain crossfade after a jump, frames
    level_time_constant_s: float = 30.0  # level keeper: averaging time of the output frame power
    max_level_correction_db: float = 6.0  # level keeper: largest correction either way (0 turns it off)


class Sampler:
    """Generates (n_bins,) float32 linear magnitude frames from a step model, steered by ``Controls``.

    ``model`` is a ``murmur.device.generate.step_model.StepModel`` (or ``murmur.device.testing.fakes.FakeStepModel``): ``n_bins``, ``step``,
    ``reset``, ``get_state``, ``set_state``, ``new_state``.
    """

    def __init__(self, bundle: Bundle, model: StepModelLike, *, seed: int | None = None,
                 settings: SamplerSettings | None = None,
                 controls: Controls | None = None):
        self.bundle = bundle
        self.model = model
        self.settings = settings or SamplerSettings()
        self.n_bins = bundle.audio.n_bins
        if model.n_bins != self.n_bins:
            raise ValueError(f"model has {model.n_bins} bins, bundle {bundle.path} has {self.n_bins}")
        self.frame_s = bundle.audio.frame_s
        n = self.n_bins
        self._lo = bundle.lo.astype(np.float32)
        self._hi = bundle.hi.astype(np.float32)
        self._mean = bundle.mean.astype(np.float32)
        self._noise = np.zeros(n, dtype=np.float32)
        self._current = np.zeros(n, dtype=np.float32)  # last frame fed back on the main chain, model units
        self._output = np.zeros(n, dtype=np.float32)  # what was emitted last, model units (mixed while fading)
        self._magnitudes = np.zeros(n, dtype=np.float32)  # the returned linear frame
        self._main_state = model.new_state()
        self._warm_state = model.new_state()
        self._warm_current = np.zeros(n, dtype=np.float32)  # the new chain's last frame
        max_window = max(1, min(self.settings.warm_frames, bundle.n_seed_frames))
        self._window = np.zeros((max_window, n), dtype=np.float32)
        self._window_len = 0
        self._warm_pos = 0  # next window frame to feed to the warming chain
        self._fade_pos = -1  # >= 0 while crossfading: frames into the fade
        self._phase = "run"  # "run" | "warm" | "fade"
        self._seed = seed
        self.rng = np.random.default_rng(seed)
        self.frame_index = 0
        self.jumps = 0
        self._controls = controls or Controls()
        self.target_power = self._training_frame_power()
        self._level_alpha = min(1.0, self.frame_s / max(self.settings.level_time_constant_s, 1e-6))
        self._level_limit = 10.0 ** (self.settings.max_level_correction_db / 20.0)
        self._power_average = self.target_power
        self.level_gain = 1.0  # linear factor the level keeper applies now
        self.reset(seed)

    def _training_frame_power(self) -> float:
        """Mean over the seed (training) frames of sum(magnitude^2), in chunks (no big temporary)."""
        chunk = np.empty((min(512, self.bundle.n_seed_frames), self.n_bins), dtype=np.float32)
        total, count = 0.0, 0
        for start in range(0, self.bundle.n_seed_frames, chunk.shape[0]):
            n = min(chunk.shape[0], self.bundle.n_seed_frames - start)
            frames = self.bundle.seed_magnitudes(start, n, out=chunk[:n])
            total += float(np.einsum("ij,ij->", frames, frames, dtype=np.float64))
            count += n
        return total / max(count, 1)

    @property
    def level_correction_db(self) -> float:
        """What the level keeper adds now, dB."""
        return 20.0 * float(np.log10(self.level_gain))

    @property
    def frame_model_units(self) -> np.ndarray:
        """The last emitted frame in model units, (n_bins,) float32 (a live buffer: copy it to keep it)."""
        return self._output

    @property
    def phase(self) -> str:
        """'run', 'warm' (a fresh state is warming on seed frames) or 'fade' (crossfading to it)."""
        return self._phase

    # -- seeding ----------------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Start over: warm the LSTM on a seed window chosen by the controls (synchronously), no fade."""
        if seed is not None:
            self._seed = seed
        self.rng = np.random.default_rng(self._seed)
        self.frame_index = 0
        self.jumps = 0
        self._phase = "run"
        self._fade_pos = -1
        self._choose_window(self._controls)
        self.model.reset()
        last = self._window[0]
        for t in range(self._window_len):
            last = self.model.step(self._window[t])
        # continue from the prediction after the window's last real frame
        np.clip(last, self._lo, self._hi, out=self._current)
        self._output[:] = self._current

    def seed_window_start(self, controls: Controls) -> tuple[int, int]:
        """Draw a seed window (start, length) from the controls' position/spread, inside one source segment."""
        n_seed = self.bundle.n_seed_frames
        length = self._window.shape[0]
        centre = controls.position * max(n_seed - length, 0)
        half_width = controls.spread * n_seed / 2.0
        start = int(round(centre + (self.rng.random() * 2.0 - 1.0) * half_width))
        start = min(max(start, 0), max(n_seed - length, 0))
        starts = self.bundle.segment_starts
        k = int(np.searchsorted(starts, start, side="right") - 1)
        seg_lo = int(starts[k])
        seg_hi = int(starts[k + 1]) if k + 1 < len(starts) else n_seed
        if seg_hi - seg_lo >= length:
            start = min(max(start, seg_lo), seg_hi - length)
        else:  # a segment shorter than the window: use all of it
            start, length = seg_lo, seg_hi - seg_lo
        return start, length

    def _choose_window(self, controls: Controls) -> None:
        start, length = self.seed_window_start(controls)
        self.bundle.seed_frames(start, length, out=self._window[:length])
        self._window_len = length

    def request_jump(self) -> None:
        """Start a jump now (the ``reseed`` event), unless one is already under way."""
        if self._phase == "run":
            self._start_jump(self._controls)

    def _start_jump(self, controls: Controls) -> None:
        self._choose_window(controls)
        self.model.get_state(out=self._main_state)
        self.model.reset()
        self.model.get_state(out=self._warm_state)
        self.model.set_state(self._main_state)
        self._warm_pos = 0
        self._phase = "warm"
        self.jumps += 1

    # -- the per-frame call -----------------------------------------------------------------------------------
    def next_frame(self, controls: Controls) -> np.ndarray:
        """One frame: (n_bins,) float32 linear magnitudes (a buffer reused by the next call)."""
        self._controls = controls
        self.frame_index += 1
        if controls.hold:
            return self._magnitudes if self.frame_index > 1 else self._emit(self._output)
        if self._phase == "run" and controls.jump > 0.0 and self.rng.random() < controls.jump * self.frame_s:
            self._start_jump(controls)
        if self._phase == "warm":
            self._advance_warm_chain()
        self._step_chain(self._current, controls.temperature)  # main chain, state already in the model
        if self._phase != "fade":
            return self._emit(self._current)
        # fading: step the new chain too, mix old -> new in model units
        self.model.get_state(out=self._main_state)
        self.model.set_state(self._warm_state)
        self._step_chain(self._warm_current, controls.temperature)
        self.model.get_state(out=self._warm_state)
        self.model.set_state(self._main_state)
        self._fade_pos += 1
        weight = np.float32(self._fade_pos / self.settings.crossfade_frames)
        if self._fade_pos >= self.settings.crossfade_frames:  # the new chain takes over
            self.model.set_state(self._warm_state)
            self._current[:] = self._warm_current
            self._phase = "run"
            self._fade_pos = -1
            return self._emit(self._current)
        np.subtract(self._warm_current, self._current, out=self._output)
        np.multiply(self._output, weight, out=self._output)
        np.add(self._output, self._current, out=self._output)
        return self._emit(self._output)

    def _step_chain(self, frame: np.ndarray, temperature: float) -> None:
        """Autoregressive step in place: frame <- clip(model(frame) + temperature * noise, lo, hi)."""
        predicted = self.model.step(frame)
        if temperature > 0.0:
            self.rng.standard_normal(out=self._noise, dtype=np.float32)
            np.multiply(self._noise, np.float32(temperature), out=self._noise)
            np.add(predicted, self._noise, out=frame)
        else:
            frame[:] = predicted
        np.clip(frame, self._lo, self._hi, out=frame)

    def _advance_warm_chain(self) -> None:
        """Feed up to ``warm_steps_per_frame`` seed frames to the new chain; start the fade when the window is in."""
        self.model.get_state(out=self._main_state)
        self.model.set_state(self._warm_state)
        end = min(self._warm_pos + self.settings.warm_steps_per_frame, self._window_len)
        predicted = None
        for t in range(self._warm_pos, end):
            predicted = self.model.step(self._window[t])
        self._warm_pos = end
        if end >= self._window_len and predicted is not None:
            np.clip(predicted, self._lo, self._hi, out=self._warm_current)
            self._phase = "fade"
            self._fade_pos = 0
        self.model.get_state(out=self._warm_state)
        self.model.set_state(self._main_state)

    def _emit(self, frame_norm: np.ndarray) -> np.ndarray:
        if frame_norm is not self._output:
            self._output[:] = frame_norm
        magnitudes = denormalise_into(frame_norm, self._mean, self.bundle.std, self.bundle.log_floor, self._magnitudes)
        if self.settings.max_level_correction_db > 0.0 and self.target_power > 0.0:
            power = float(np.dot(magnitudes, magnitudes))
            self._power_average += self._level_alpha * (power - self._power_average)
            gain = (self.target_power / max(self._power_average, 1e-30)) ** 0.5
            self.level_gain = min(max(gain, 1.0 / self._level_limit), self._level_limit)
            magnitudes *= np.float32(self.level_gain)
        return magnitudes
