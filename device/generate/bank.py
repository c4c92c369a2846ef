"""The frame-bank generator (format-2 bundles): the LSTM proposes the next frame, the bank plays the nearest real one.

Why: an MSE-trained model predicts the *average* of what may come next, and averages sound muffled; real training
frames do not. So ``BankSampler`` plays *phrases* of real bank frames (length set by ``fidelity``), and at each cut
picks, softly (``temperature``), a frame near the LSTM's prediction in the bank's PCA space and whose context key
(the LSTM's state before it in the recording) is near the LSTM's state now, away from what was played lately and
inside the ``position``/``spread`` region; guards jump away from dead air and loops. One seeded
``numpy.random.Generator`` drives every choice; nothing is allocated per frame. The design, step by step, and why:
docs/ARCHITECTURE.md §3; the measurements that chose it: BENCHMARKS.md, "Sound ablation".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from murmur.device.bundle import Bundle
from murmur.device.config_schema import SAMPLER, Float
from murmur.device.controls.values import Controls
from murmur.device.dsp.frames import denormalise_into
from murmur.device.dsp.measures import DEAD_AIR_DBFS, DEAD_AIR_WINDOW_S, frame_dbfs
from murmur.device.protocols import StepModelLike

__all__ = ["QUIET_DBFS", "BankSampler", "BankSettings", "frame_dbfs", "nearest_neighbour_scale", "phrase_frames"]

QUIET_DBFS = DEAD_AIR_DBFS  # a frame quieter than this counts as silence (measures.py: the one dead-air definition)
NEVER = -(2**62)  # last_used value of a frame never played
KNOB_MOVE = 0.02  # a temperature or fidelity change this large ends the phrase: a knob turn is heard at once
DEFAULT_TEMPERATURE: float = SAMPLER.keys["temperature"].default  # the knob curve below is anchored here …
_temperature_range = SAMPLER.keys["temperature"].type
assert isinstance(_temperature_range, Float)
TOP_TEMPERATURE: float = _temperature_range.maximum  # … and here


@dataclass(frozen=True)
class BankSettings:
    """Fixed mechanics of the bank generator (the knobs are in ``Controls``)."""

    max_phrase_s: float = 6.0  # mean phrase length at fidelity 1
    min_phrase_s: float = 0.05  # mean phrase length at fidelity 0: the model still chooses ~20 times a second, but a
    # 93-ms patch holds a few real frames in a row, not a shuffle of single frames (measured: BENCHMARKS.md "Model")
    context_weight: float = 1.0  # at a cut, how much "its past sounds like the present" (the LSTM's state against
    # the bank's context keys) counts beside "it sounds like the LSTM's next frame", in typical distances
    bar_s: float = 4.0  # a frame played this recently cannot be chosen at a cut
    max_quiet_s: float = DEAD_AIR_WINDOW_S  # longer than this below QUIET_DBFS: jump to an audible frame
    max_repeat_s: float = 2.0  # longer than this repeating our own recent output: jump
    repeat_window_s: float = 30.0  # "recent" for the repeat guard
    min_region_s: float = 8.0  # position/spread never narrow the choice below this much material
    recency_penalty: float = 10.0  # at a cut, a frame just played counts this many typical distances farther …
    recency_window_banks: float = 2.0  # … fading linearly to nothing over this many plays-through of the bank
    min_recency_window_s: float = 20.0
    recency_region_s: float = 0.25  # the bar and the penalty of a cut cover this much of the source around each frame
    proposer: str = "model"  # "model": the LSTM's prediction picks the cut; "current": the frame itself (ablation)
    glide_frames: int = 3  # after a cut, the outgoing phrase's continuation fades out over this many frames while
    glide_from_hz: float = 4000.0  # the new one fades in, in the bins above this (magnitudes mixed as an audio
    # crossfade: a cut across a cymbal's decay is no audible edit; below it the cut is immediate, attacks stay sharp);
    # 0 frames = a hard cut


def phrase_frames(fidelity: float, frame_s: float, max_phrase_s: float, min_phrase_s: float = 0.0) -> float:
    """Mean phrase length in frames for ``fidelity`` in [0, 1]: min_phrase_s (at least 1 frame) at 0, max_phrase_s
    at 1, and in between min · (max / min) ** fidelity²: the log of the length follows a square-law taper, gentle
    near 0 (0.3 gives ~0.08 s, where the model chooses often and little is replayed) and steep toward 1."""
    longest = max(1.0, max_phrase_s / frame_s)
    shortest = min(longest, max(1.0, min_phrase_s / frame_s))
    f = min(max(fidelity, 0.0), 1.0)
    return float(shortest * math.exp(f * f * math.log(longest / shortest)))


def temperature_tau(temperature: float, widen: float) -> float:
    """The temperature knob -> the Gumbel-max τ of a cut, in typical distances: the temperature itself up to the
    default, then times a factor rising linearly to ``widen`` at the knob's top. The context term adds up to
    (1 + context weight) typical distances between candidates, so ``widen`` = 1 + that weight keeps the upper half
    of the knob as free as it is without it (the default and everything below are unchanged)."""
    if temperature <= DEFAULT_TEMPERATURE:
        return temperature
    rise = min(1.0, (temperature - DEFAULT_TEMPERATURE) / (TOP_TEMPERATURE - DEFAULT_TEMPERATURE))
    return temperature * (1.0 + (widen - 1.0) * rise)


def nearest_neighbour_scale(coords: np.ndarray, norms: np.ndarray) -> float:
    """Median squared distance from a frame to its nearest other frame in ``coords`` (n_frames, n_dims), its
    neighbours in time (±2 frames) not counted, over 256 frames drawn with seed 0; ``norms`` (n_frames,) the rows'
    squared norms. The unit of the temperature and of the context weight (the trainer's retrieval τ too)."""
    n_frames = coords.shape[0]
    picks = np.random.default_rng(0).choice(n_frames, size=min(256, n_frames), replace=False)
    nearest = []
    for i in picks:
        d = norms - 2.0 * (coords @ coords[i]) + norms[i]
        d[max(0, i - 2) : i + 3] = np.inf
        nearest.append(float(d.min()) if np.isfinite(d).any() else 1.0)
    return max(float(np.median(nearest)), 1e-6)


class BankSampler:
    """Generates (n_bins,) float32 linear magnitude frames: real bank frames chosen with the step model.

    ``model`` has ``n_bins``, ``step``, ``reset`` (a ``murmur.device.generate.step_model.StepModel`` or ``murmur.device.testing.fakes.FakeStepModel``).
    Same per-frame interface as ``murmur.device.generate.sampler.Sampler``: ``next_frame(controls)``, ``request_jump()``,
    ``reset(seed)``.
    """

    def __init__(self, bundle: Bundle, model: StepModelLike, *, seed: int | None = None,
                 settings: BankSettings | None = None,
                 controls: Controls | None = None):
        if bundle.bank is None:
            raise ValueError(f"{bundle.path}: format {bundle.format_version} bundle has no frame bank")
        self.bundle = bundle
        self.model = model
        self.settings = settings or BankSettings()
        self.n_bins = bundle.audio.n_bins
        if model.n_bins != self.n_bins:
            raise ValueError(f"model has {model.n_bins} bins, bundle {bundle.path} has {self.n_bins}")
        self.frame_s = bundle.audio.frame_s
        bank = bundle.bank
        self.n_frames = bundle.n_seed_frames
        self._frames_u8 = bundle.seeds_u8
        self._lo = bundle.lo.astype(np.float32)
        self._step_size = ((bundle.hi - bundle.lo) / np.float32(255.0)).astype(np.float32)
        self._mean = bundle.mean.astype(np.float32)
        self._coords = bank.coords  # (n_frames, n_dims) float32
        self._norms = np.einsum("ij,ij->i", self._coords, self._coords).astype(np.float32)
        self._components = bank.components
        self._pca_mean = bank.mean
        starts = np.zeros(self.n_frames, dtype=bool)
        starts[bundle.segment_starts] = True
        self._continues = np.ones(self.n_frames, dtype=bool)  # frame i+1 follows frame i in the source
        self._continues[:-1] = ~starts[1:]
        self._continues[-1] = False
        self.level_dbfs = self._bank_levels()  # (n_frames,) float32
        self._audible = self.level_dbfs >= QUIET_DBFS
        self._typical_distance = nearest_neighbour_scale(self._coords, self._norms)
        # the context term: the LSTM's state against the bank's context keys (bundles exported with them)
        # (a stand-in model whose state is not the bundle's LSTM state has no context to compare: see _uses_context)
        self._context = bank.context if self._uses_context(bundle, model) else None
        self._temperature_widen = 1.0 + self.settings.context_weight if self._context is not None else 1.0
        if self._context is not None:
            context = self._context
            self._context_norms = np.einsum("ij,ij->i", context.keys, context.keys).astype(np.float32)
            self._context_weight = np.float32(self.settings.context_weight * self._typical_distance /
                                              nearest_neighbour_scale(context.keys, self._context_norms))
            self._state = model.new_state()
            self._state_index = bundle.model.input_states.index(context.state)
            self._context_centred = np.zeros(context.components.shape[1], dtype=np.float32)
            self._context_query = np.zeros(context.n_dims, dtype=np.float32)
            self._context_distance = np.zeros(self.n_frames, dtype=np.float32)
        # per-frame buffers
        self._frame = np.zeros(self.n_bins, dtype=np.float32)  # the frame played now, model units
        self._prediction = np.zeros(self.n_bins, dtype=np.float32)  # the model's prediction of the next frame
        self._centred = np.zeros(self.n_bins, dtype=np.float32)
        self._query = np.zeros(bank.n_dims, dtype=np.float32)
        self._distance = np.zeros(self.n_frames, dtype=np.float32)
        table = np.random.default_rng(seed).standard_exponential(2 * self.n_frames)  # (2 n_frames,) Gumbel values
        self._gumbel = (-np.log(np.maximum(table, 1e-30))).astype(np.float32)
        self._bar = np.zeros(self.n_frames, dtype=np.float32)  # +inf barred, -inf allowed (np.maximum applies it)
        self._age = np.zeros(self.n_frames, dtype=np.float32)
        self._age64 = np.zeros(self.n_frames, dtype=np.float64)
        self._penalty = np.zeros(self.n_frames, dtype=np.float32)
        # an age (whole frames since the frame's region was last played) below this is barred: ceil(bar) - 0.5 gives
        # the integer comparison age < bar_s / frame_s exactly and is never equal to an age
        self._bar_edge = np.float32(math.ceil(self.settings.bar_s / self.frame_s) - 0.5)
        self._recency_window_frames = max(self.settings.recency_window_banks * self.n_frames,
                                          self.settings.min_recency_window_s / self.frame_s)
        self._last_used = np.full(self.n_frames, NEVER, dtype=np.int64)  # when each frame was last played
        # when anything within the frame's region (recency_region_s of the source around it) was last played: what a
        # cut's bar and penalty read, so a cut also avoids the neighbours of what it played lately
        self._region_frames = max(1, int(round(self.settings.recency_region_s / self.frame_s)))
        # float64: exact for any frame count an appliance reaches, and a cut's age pass is one subtraction
        self._region_last_used = np.full(self.n_frames, NEVER, dtype=np.float64)
        self._magnitudes = np.zeros(self.n_bins, dtype=np.float32)
        self._glide_left = 0  # frames of the cut's crossfade still to come
        self._glide_from = 0  # the bank frame the outgoing phrase would play now
        self._glide_frame = np.zeros(self.n_bins, dtype=np.float32)  # that frame, model units …
        self._glide_magnitudes = np.zeros(self.n_bins, dtype=np.float32)  # … and linear
        first = self._bin_of(self.settings.glide_from_hz)
        self._glide_high = (self._magnitudes[first:], self._glide_magnitudes[first:])  # the crossfaded bins (views)
        self._seed = seed
        self.rng = np.random.default_rng(seed)
        self._controls = controls or Controls()
        self.frame_index = 0
        self.current = 0  # bank index of the frame played now
        self.phrase_left = 0  # frames the current phrase still continues
        self.jumps = 0  # jumps to a random frame (jump rate, reseed, guards)
        self.cuts = 0  # LSTM-chosen cuts
        self.guard_jumps = 0  # of the jumps, those the dead-air or loop guard made
        self._quiet_run = 0
        self._repeat_run = 0
        self._current_previous_use = NEVER  # when the current frame had been played before this time
        self._pending_jump = False
        self._phrase_controls = (0.0, 0.0)  # temperature and fidelity when the current phrase began
        self.reset(seed)

    def _bin_of(self, hz: float) -> int:
        """The first STFT bin at or above ``hz`` (the last bin if ``hz`` is beyond Nyquist)."""
        return min(self.n_bins - 1, int(math.ceil(hz * self.bundle.audio.n_fft / self.bundle.audio.sample_rate_hz)))

    def _bank_levels(self) -> np.ndarray:
        """dBFS of every bank frame, in chunks (no (n_frames, n_bins) float temporary)."""
        levels = np.empty(self.n_frames, dtype=np.float32)
        chunk = np.empty((min(1024, self.n_frames), self.n_bins), dtype=np.float32)
        for start in range(0, self.n_frames, chunk.shape[0]):
            n = min(chunk.shape[0], self.n_frames - start)
            frames = self.bundle.seed_magnitudes(start, n, out=chunk[:n])
            levels[start : start + n] = frame_dbfs(frames, self.bundle.audio.n_fft)
        return levels

    def _uses_context(self, bundle: Bundle, model: StepModelLike) -> bool:
        """True when a cut compares the model's state with the bank's context keys: the bundle has them, the LSTM
        proposes, the weight is on, and the model's state is laid out as the bundle's (its real step model)."""
        if bundle.bank is None or bundle.bank.context is None or self.settings.proposer != "model" \
                or self.settings.context_weight <= 0.0:
            return False
        return [s.shape[-1] for s in model.new_state()] == list(bundle.model.state_sizes)

    # -- properties the engine and benches read ---------------------------------------------------------------
    @property
    def frame_model_units(self) -> np.ndarray:
        """The frame played now in model units, (n_bins,) float32 (a live buffer: copy it to keep it)."""
        return self._frame

    # -- seeding ----------------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Start over at a random audible frame of the region, fresh LSTM state, no history."""
        if seed is not None:
            self._seed = seed
        self.rng = np.random.default_rng(self._seed)
        self.frame_index = 0
        self.jumps = self.cuts = self.guard_jumps = 0
        self._last_used.fill(NEVER)
        self._region_last_used.fill(NEVER)
        self._quiet_run = self._repeat_run = 0
        self._current_previous_use = NEVER
        self._pending_jump = False
        self.model.reset()
        self._jump(self._controls, count=False)
        self._glide_left = 0  # a fresh start: nothing fades out
        self._emit()

    def request_jump(self) -> None:
        """Jump to a random audible frame of the region at the next frame (the ``reseed`` event)."""
        self._pending_jump = True

    def region(self, controls: Controls) -> tuple[int, int]:
        """Bank frames [start, stop) that ``position``/``spread`` allow (at least ``min_region_s`` of material)."""
        n = self.n_frames
        width = max(controls.spread * n, min(n, self.settings.min_region_s / self.frame_s))
        centre = controls.position * n
        start = int(round(min(max(centre - width / 2.0, 0.0), n - width)))
        return start, min(n, start + max(1, int(round(width))))

    # -- the per-frame call -----------------------------------------------------------------------------------
    def next_frame(self, controls: Controls) -> np.ndarray:
        """One frame: (n_bins,) float32 linear magnitudes (a buffer reused by the next call)."""
        self._controls = controls
        self.frame_index += 1
        if controls.hold:
            return self._magnitudes
        if self._pending_jump or (controls.jump > 0.0 and self.rng.random() < controls.jump * self.frame_s):
            self._pending_jump = False
            self._jump(controls)
        elif self._quiet_run * self.frame_s > self.settings.max_quiet_s or \
                self._repeat_run * self.frame_s > self.settings.max_repeat_s:
            self.guard_jumps += 1
            self._jump(controls)
        elif abs(controls.fidelity - self._phrase_controls[1]) >= KNOB_MOVE and self._redraw_phrase(controls):
            self._play(self.current + 1)  # fidelity turned: the phrase goes on with a length drawn anew
        elif self.phrase_left > 0 and self._continues[self.current] and self._allowed(self.current + 1, controls) \
                and abs(controls.temperature - self._phrase_controls[0]) < KNOB_MOVE:
            self.phrase_left -= 1
            self._play(self.current + 1)
        else:
            self._cut(controls)
        return self._emit()

    def _allowed(self, index: int, controls: Controls) -> bool:
        start, stop = self.region(controls)
        return start <= index < stop and self.frame_index - self._last_used[index] > self.settings.bar_s / self.frame_s

    def _cut(self, controls: Controls) -> None:
        """The LSTM's prediction -> the nearest allowed bank frame (soft, by temperature); a new phrase starts."""
        start, stop = self.region(controls)
        distance = self._distance[start:stop]
        self._project()
        np.dot(self._coords[start:stop], self._query, out=distance)  # -2 c.q (the query holds -2 q: exact)
        np.add(distance, self._norms[start:stop], out=distance)  # |c|^2 - 2 c.q (+ |q|^2, the same for all)
        if self._context is not None:
            self._add_context(distance, start, stop)
        age = self._age[: stop - start]  # frames since anything in the frame's region was played (huge if never)
        age64 = self._age64[: stop - start]
        np.subtract(np.float64(self.frame_index), self._region_last_used[start:stop], out=age64)
        np.copyto(age, age64, casting="same_kind")  # a plain cast: a casting ufunc would buffer through a temporary
        bar = self._bar[: stop - start]  # +inf: played within bar_s (barred), -inf: allowed
        np.subtract(self._bar_edge, age, out=bar)
        np.multiply(bar, np.float32(np.inf), out=bar)
        if float(bar.min()) > 0.0:
            bar.fill(-np.inf)  # everything played recently (a tiny region): the bar gives way
        if self._continues[self.current] and start <= self.current + 1 < stop:
            bar[self.current + 1 - start] = np.inf  # a cut never just continues the phrase
        if self.settings.recency_penalty > 0.0:  # frames played lately weigh more: spreads the choice over the bank
            penalty = self._penalty[: stop - start]
            np.multiply(age, np.float32(-1.0 / self._recency_window_frames), out=penalty)
            np.add(penalty, np.float32(1.0), out=penalty)
            np.maximum(penalty, np.float32(0.0), out=penalty)  # 1 just played … 0 at the recency window and beyond
            np.multiply(penalty, np.float32(self.settings.recency_penalty * self._typical_distance), out=penalty)
            np.add(distance, penalty, out=distance)
        np.maximum(distance, bar, out=distance)
        if controls.temperature > 0.0:
            # Gumbel-max: argmin(d / tau - g), g ~ Gumbel  <=>  sampling with p ∝ exp(-d / tau). The Gumbel values
            # come from a fixed table read at a random offset (no exp/log per candidate per cut: half the cost).
            offset = int(self.rng.integers(self.n_frames))
            tau = np.float32(temperature_tau(controls.temperature, self._temperature_widen) * self._typical_distance)
            np.divide(distance, tau, out=distance)
            np.subtract(distance, self._gumbel[offset : offset + stop - start], out=distance)
        choice = start + int(np.argmin(distance))
        self.cuts += 1
        self._new_phrase(controls)
        self._start_glide()
        self._play(choice)

    def _add_context(self, distance: np.ndarray, start: int, stop: int) -> None:
        """distance += weight · |key - query|² (less the query's own norm, the same for all): frames whose past, as
        the LSTM heard it when it ran over the bank, is like the state it is in now after what was played."""
        context = self._context
        assert context is not None
        self.model.get_state(out=self._state)
        np.subtract(self._state[self._state_index][0], context.mean, out=self._context_centred)
        np.dot(context.components, self._context_centred, out=self._context_query)
        np.multiply(self._context_query, np.float32(-2.0), out=self._context_query)
        term = self._context_distance[: stop - start]
        np.dot(context.keys[start:stop], self._context_query, out=term)
        np.add(term, self._context_norms[start:stop], out=term)
        np.multiply(term, self._context_weight, out=term)
        np.add(distance, term, out=distance)

    def _project(self) -> None:
        """The model's prediction -> -2 x its PCA coordinates (the query of the distance pass)."""
        np.subtract(self._prediction, self._pca_mean, out=self._centred)
        np.dot(self._components, self._centred, out=self._query)
        np.multiply(self._query, np.float32(-2.0), out=self._query)  # a power of two: every product scales exactly

    def _jump(self, controls: Controls, *, count: bool = True) -> None:
        """A random audible, not recently played frame of the region (16 tries, then any frame of it)."""
        start, stop = self.region(controls)
        choice = start + int(self.rng.integers(stop - start))
        for _ in range(16):
            if self._audible[choice] and self.frame_index - self._last_used[choice] > self.settings.bar_s / self.frame_s:
                break
            choice = start + int(self.rng.integers(stop - start))
        if count:
            self.jumps += 1
        self._quiet_run = self._repeat_run = 0
        self._new_phrase(controls)
        self._start_glide()
        self._play(choice)

    def _redraw_phrase(self, controls: Controls) -> bool:
        """Fidelity moved: draw the rest of the phrase from the new mean; True if it continues at once."""
        self._new_phrase(controls)
        if self.phrase_left > 0 and self._continues[self.current] and self._allowed(self.current + 1, controls):
            self.phrase_left -= 1
            return True
        return False

    def _new_phrase(self, controls: Controls) -> None:
        self._phrase_controls = (controls.temperature, controls.fidelity)
        mean = phrase_frames(controls.fidelity, self.frame_s, self.settings.max_phrase_s, self.settings.min_phrase_s)
        self.phrase_left = int(self.rng.geometric(1.0 / mean)) - 1 if mean > 1.0 else 0

    def _play(self, index: int) -> None:
        """Make bank frame ``index`` the current frame: guards' bookkeeping, dequantise, step the model on it."""
        previous_use = int(self._last_used[index])
        # a repeat: this step (current -> index) was also a step the last time both frames played, recently
        repeats = index == self.current + 1 and previous_use != NEVER and \
            previous_use == self._current_previous_use + 1 and \
            self.frame_index - previous_use < self.settings.repeat_window_s / self.frame_s
        self._repeat_run = self._repeat_run + 1 if repeats else 0
        self._current_previous_use = previous_use
        self._quiet_run = 0 if self._audible[index] else self._quiet_run + 1
        self.current = index
        self._last_used[index] = self.frame_index
        region = index - index % self._region_frames
        self._region_last_used[region : region + self._region_frames] = self.frame_index
        self._dequantise_into(index, self._frame)
        if self.settings.proposer == "model":
            np.copyto(self._prediction, self.model.step(self._frame))
        else:  # ablation "no model": look for frames near the current one
            np.copyto(self._prediction, self._frame)

    def _dequantise_into(self, index: int, out: np.ndarray) -> None:
        """Bank frame ``index`` -> model units in ``out`` (n_bins,) float32."""
        np.copyto(out, self._frames_u8[index])  # exact; uint8 straight into the multiply would be buffered
        np.multiply(out, self._step_size, out=out)
        np.add(out, self._lo, out=out)

    def _start_glide(self) -> None:
        """A cut or jump leaves the current phrase: its continuation in the source fades out over the next frames."""
        glide = self.settings.glide_frames
        self._glide_left = glide if glide > 0 and self._continues[self.current] else 0
        self._glide_from = self.current + 1

    def _emit(self) -> np.ndarray:
        out = denormalise_into(self._frame, self._mean, self.bundle.std, self.bundle.log_floor, self._magnitudes)
        if self._glide_left > 0:  # the cut's crossfade above glide_from_hz: new + w (old - new), w falling to 0
            index = self._glide_from
            self._dequantise_into(index, self._glide_frame)
            denormalise_into(self._glide_frame, self._mean, self.bundle.std, self.bundle.log_floor,
                             self._glide_magnitudes)
            new, old = self._glide_high
            np.subtract(old, new, out=old)
            np.multiply(old, np.float32(self._glide_left / (self.settings.glide_frames + 1)), out=old)
            np.add(new, old, out=new)
            self._glide_left = self._glide_left - 1 if self._continues[index] else 0
            self._glide_from = index + 1
        return out
