"""Streaming phase reconstruction: one STFT-magnitude frame in, one hop of audio out, forever.

RTISI-LA (real-time iterative spectrogram inversion with look-ahead, Zhu et al. 2007): the ``lookahead + 1``
newest frames are refined together, as one batch of FFTs, by Griffin-Lim steps with momentum (Perraudin et al.
2013) against the overlap-add of everything synthesised so far; then the oldest is committed and one hop of
finished audio leaves. Three details carry most of the quality (BENCHMARKS.md, "Vocoder", has the figures):

- each look-ahead slot analyses the partial overlap-add divided by the window-square sum of the frames actually
  present (the least-squares signal given what has arrived, as LTFAT's ``gsrtisila``), not by the full sum;
- a new frame starts from the previous frame's phase advanced by the phase-gradient time derivative
  (bin frequency plus the log-magnitude slope across bins, Průša & Holighaus 2017);
- bins where energy appears (onsets) start with frame-centred phase instead of the previous frame's noise.

Phase and overlap-add are continuous across calls: a stream, never independent blocks, so nothing clicks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from murmur.device.dsp import frames

# Hann window constant of the phase-gradient relations, gamma = C * window_length**2 (Průša et al.).
_HANN_GAMMA_FACTOR = 0.25645
_TINY = np.float32(1e-12)
_ZERO = np.float32(0.0)
_ONSET_RATIO = np.float32(0.1)  # a bin whose previous magnitude is below this fraction of the new one is an onset
# Floor of the partial window-square sum, relative to its steady-state maximum (keeps the tail gain finite).
_PARTIAL_FLOOR = 5e-3
# Named schedules of Griffin-Lim passes per frame: each number is how many of the newest look-ahead frames one pass
# refines (clipped to lookahead + 1; None = ``FULL_PASSES`` passes over all of them). "light" gives the newest
# frames, furthest from consistent, passes of their own (the newest alone twice, the newest two once) before two
# full ones: 12 frame-updates instead of 24, about 60 % of the CPU time, for boards without headroom
# (BENCHMARKS.md, "Vocoder", has its cost and what it costs in quality).
FULL_PASSES = 6
PRESETS: dict[str, tuple[int, ...] | None] = {"full": None, "light": (1, 1, 2, 4, 4)}
# numpy >= 2 writes FFT results into ``out=``; numpy 1.x (the tflite-runtime 2.14 fallback needs it) cannot.
_FFT_HAS_OUT = int(np.__version__.split(".")[0]) >= 2


def _rfft_into(x: np.ndarray, out: np.ndarray) -> None:
    """rfft along the last axis into ``out`` (no allocation on numpy 2; a copy on numpy 1.x)."""
    if _FFT_HAS_OUT:
        np.fft.rfft(x, axis=-1, out=out)
    else:
        out[...] = np.fft.rfft(x, axis=-1)


def _irfft_into(spectrum: np.ndarray, n: int, out: np.ndarray) -> None:
    """irfft of length ``n`` along the last axis into ``out`` (as _rfft_into)."""
    if _FFT_HAS_OUT:
        np.fft.irfft(spectrum, n=n, axis=-1, out=out)
    else:
        out[...] = np.fft.irfft(spectrum, n=n, axis=-1)


class StreamingVocoder:
    """Magnitude frames (n_bins,) float32 -> audio hops (hop_length,) float32, ``latency_samples`` late.

    Output sample k corresponds to input sample k - latency_samples of the signal whose
    ``frames.stft_magnitudes(center=True)`` the frames are. Cost per frame: one batched FFT pair per pass, over
    the frames the pass refines: ``iterations`` passes over all ``lookahead + 1``, or the schedule ``passes``
    (e.g. ``PRESETS["light"]``; BENCHMARKS.md, sections "Vocoder" and "Engine stages", have the time). The
    per-frame path keeps all its buffers and allocates nothing on numpy 2 (numpy 1.x cannot write FFTs into a
    buffer: one copy each).
    Not thread-safe: one instance per stream.
    """

    def __init__(
        self,
        *,
        n_fft: int,
        hop_length: int,
        lookahead: int = 3,
        iterations: int | None = None,
        passes: Sequence[int] | None = None,
        window: str = "hann",
        momentum: float = 0.99,
    ) -> None:
        if not isinstance(n_fft, int | np.integer) or n_fft < 16 or n_fft % 2:
            raise ValueError(f"n_fft={n_fft!r} must be an even integer >= 16 (e.g. 2048)")
        if not isinstance(hop_length, int | np.integer) or hop_length < 1 or hop_length * 4 > n_fft:
            raise ValueError(
                f"hop_length={hop_length!r} must be a positive integer <= n_fft / 4 = {n_fft // 4} "
                "(the overlap-add needs at least 4 frames per window)"
            )
        if not isinstance(lookahead, int | np.integer) or not 0 <= lookahead <= 8:
            raise ValueError(f"lookahead={lookahead!r} must be an integer from 0 to 8 frames")
        slots = int(lookahead) + 1
        if iterations is not None and passes is not None:
            raise ValueError(f"give iterations={iterations!r} or passes={passes!r}, not both")
        if iterations is not None:
            if not isinstance(iterations, int | np.integer) or not 0 <= iterations <= 64:
                raise ValueError(f"iterations={iterations!r} must be an integer from 0 to 64")
            passes = (slots,) * int(iterations)
        elif passes is None:
            passes = (slots,) * FULL_PASSES
        passes = _checked_passes(passes, slots)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum!r} must be in [0, 1) (0.99 is the tested value)")
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.lookahead = int(lookahead)
        self.passes = passes
        self.iterations = len(passes)
        self.window = window
        self.momentum = float(momentum)
        self.n_bins = self.n_fft // 2 + 1
        self.latency_samples = self.lookahead * self.hop_length + self.n_fft // 2

        n, h, slots = self.n_fft, self.hop_length, self.lookahead + 1
        self._buf_len = n + self.lookahead * h  # samples spanned by the look-ahead frames
        win = frames.analysis_window(n, window)
        synth_win, slot_win = _window_set(win, h, self.lookahead)
        # (slots, n_fft) synthesis window / steady window-square sum, one row per slot: full-shape operands keep
        # numpy's in-place multiply from making a temporary copy (it does for broadcast in-place operands).
        self._synth_win = np.tile(synth_win.astype(np.float32), (slots, 1))
        self._slot_win = slot_win.astype(np.float32)  # (slots, n_fft) analysis window of each look-ahead slot
        self._beta = np.float32(self.momentum / (1.0 + self.momentum))  # librosa's momentum form
        gamma = _HANN_GAMMA_FACTOR * n * n
        self._omega = (2.0 * np.pi * h * np.arange(self.n_bins) / n).astype(np.float32)  # rad per hop, per bin
        self._tgrad_scale = np.float32(h * n / gamma / 2.0)  # rad per hop per unit of log-magnitude difference

        f32, c64 = np.float32, np.complex64
        self._slots = slots
        # Frame-indexed state, double-buffered: the one-frame shift copies into the other set (no overlap, no
        # temporary). Row j is look-ahead slot j, row 0 the oldest (next to commit), row -1 the newest.
        self._mags = [np.zeros((slots, self.n_bins), f32) for _ in range(2)]
        self._spec = [np.zeros((slots, self.n_bins), c64) for _ in range(2)]
        self._tprev = [np.zeros((slots, self.n_bins), c64) for _ in range(2)]
        # The overlap-add as one reduction: row 0 of each stack is the overlap-add of the committed frames
        # (``fixed``), row j + 1 is zero but for slot j's synthesised frame at its place (j * hop). Summing the rows in
        # order adds exactly what adding each frame into ``fixed`` in turn added, in one call instead of 1 + slots.
        self._stack = [np.zeros((slots + 1, self._buf_len), f32) for _ in range(2)]
        self._fixed = [stack[0] for stack in self._stack]
        self._synth = [_slot_rows(stack, n, h, slots) for stack in self._stack]  # (slots, n_fft) views
        self._cur = 0
        # Scratch, reused every frame.
        self._ola = np.zeros(self._buf_len, f32)
        # numpy's pocketfft is faster in float64 than in float32 here: the analysed segments are converted into a
        # float64 buffer, and the spectra come back in complex128, rounded to complex64 where the old spectra are kept.
        self._seg = np.zeros((slots, n), f32)
        self._seg64 = np.zeros((slots, n), np.float64)
        self._rebuilt = np.zeros((slots, self.n_bins), np.complex128)
        self._frames = np.zeros((slots, n), f32)  # the inverse FFTs, before the synthesis window places them
        self._angles = np.zeros((slots, self.n_bins), c64)
        self._absbuf = np.zeros((slots, self.n_bins), f32)
        self._scale = np.zeros((slots, self.n_bins), c64)  # |target| / |estimate|, as complex: a contiguous multiply
        # Per double-buffer set and per first refined slot k, the views one pass uses (built once: slicing per pass
        # would make new view objects every frame). Placing frames goes row by row: the destination is a strided
        # view, and so does analysing them (overlapping strided rows): numpy would buffer both through a temporary.
        self._pass_views = [
            [
                ([(self._ola[j * h : j * h + n], self._slot_win[j], self._seg[j]) for j in range(k, slots)],
                 self._seg[k:], self._seg64[k:], self._rebuilt[k:], self._mags[i][k:],
                 self._spec[i][k:], self._tprev[i][k:], self._angles[k:], self._absbuf[k:], self._scale[k:],
                 self._frames[k:], [(self._frames[j], self._synth_win[j], self._synth[i][j]) for j in range(k, slots)])
                for k in range(slots)
            ]
            for i in range(2)
        ]
        self._logmag = np.zeros(self.n_bins, f32)
        self._tgrad = np.zeros(self.n_bins, f32)
        self._tgrad_prev = np.zeros(self.n_bins, f32)
        self._phase = np.zeros(self.n_bins, f32)
        self._prev_mag = np.zeros(self.n_bins, f32)
        self._onset = np.zeros(self.n_bins, bool)
        # Phase of a frame-centred impulse in librosa's frame-start convention: pi * bin (mod 2 pi).
        self._centred_phase = np.where(np.arange(self.n_bins) % 2 == 1, np.pi, 0.0).astype(f32)
        self._out = np.zeros(h, f32)
        self._bad_bins = np.zeros(self.n_bins, bool)

    def reset(self) -> None:
        """Forget the stream: the next frame starts a new signal (the output restarts from silence)."""
        for group in (self._mags, self._spec, self._tprev, self._stack):
            for arr in group:
                arr.fill(0)
        self._tgrad.fill(0)
        self._tgrad_prev.fill(0)

    def use_passes(self, passes: Sequence[int]) -> None:
        """Change the schedule of passes between two frames: the stream goes on (nothing is reset, nothing clicks)."""
        self.passes = _checked_passes(passes, self._slots)
        self.iterations = len(self.passes)

    def process(self, magnitude: np.ndarray) -> np.ndarray:
        """One magnitude frame (n_bins,) float32, linear -> the next (hop_length,) float32 audio hop.

        Negative and non-finite magnitudes count as 0. The returned array is a view into an internal
        buffer, valid until the next call (copy it to keep it).
        """
        magnitude = np.asarray(magnitude)
        if magnitude.shape != (self.n_bins,):
            raise ValueError(
                f"magnitude frame has shape {magnitude.shape}; expected ({self.n_bins},) = n_fft // 2 + 1 "
                f"for n_fft={self.n_fft}"
            )
        h, last = self.hop_length, self.lookahead
        old, new = self._cur, 1 - self._cur
        self._cur = new
        mags, spec, tprev, synth, fixed = (
            self._mags[new], self._spec[new], self._tprev[new], self._synth[new], self._fixed[new]
        )
        if last:
            np.copyto(mags[:-1], self._mags[old][1:])
            np.copyto(spec[:-1], self._spec[old][1:])
            np.copyto(tprev[:-1], self._tprev[old][1:])
            np.copyto(synth[:-1], self._synth[old][1:])
        prev_spec = spec[last - 1] if last else self._spec[old][0]
        np.copyto(fixed[:-h], self._fixed[old][h:])
        fixed[-h:] = 0.0
        tprev[last] = 0.0
        newest = mags[last]
        np.copyto(newest, magnitude, casting="unsafe")
        if not math.isfinite(float(np.add.reduce(newest))):  # NaN or inf somewhere (or a huge sum): count them as 0
            np.isfinite(newest, out=self._bad_bins)
            np.logical_not(self._bad_bins, out=self._bad_bins)
            np.copyto(newest, _ZERO, where=self._bad_bins)
        np.maximum(newest, _ZERO, out=newest)

        self._start_phase(newest, prev_spec, spec[last])
        frame = self._frames[last]
        _irfft_into(spec[last], self.n_fft, frame)
        np.multiply(frame, self._synth_win[0], out=synth[last])
        stack, views, slots = self._stack[new], self._pass_views[new], self._slots
        for rows in self.passes:
            self._iterate(stack, views[slots - rows])

        # Commit the oldest frame: with it the first hop of the buffer is complete.
        fixed[: self.n_fft] += synth[0]
        np.copyto(self._out, fixed[:h])
        return self._out

    # -- internals -----------------------------------------------------------------------------------------

    def _start_phase(self, mag: np.ndarray, prev_spec: np.ndarray, spec_row: np.ndarray) -> None:
        """Newest frame's starting value: ``mag`` with the previous frame's phase advanced by the time gradient.

        Time gradient (rad per hop) = bin frequency + (hop n_fft / gamma) d log|S| / d bin, trapezoid-averaged
        over the two frames (the RTPGHI time step; frequency-direction integration measured no better here).
        Onset bins start frame-centred instead.
        """
        logmag, tg, phase = self._logmag, self._tgrad, self._phase
        np.add(mag, _TINY, out=logmag)
        np.log(logmag, out=logmag)
        np.subtract(logmag[2:], logmag[:-2], out=tg[1:-1])
        tg[0] = 0.0
        tg[-1] = 0.0
        np.multiply(tg, self._tgrad_scale, out=tg)
        np.add(tg, self._omega, out=tg)
        np.arctan2(prev_spec.imag, prev_spec.real, out=phase)
        np.add(tg, self._tgrad_prev, out=logmag)  # logmag is free again: reuse it as the step
        np.multiply(logmag, np.float32(0.5), out=logmag)
        np.add(phase, logmag, out=phase)
        # Onsets (the previous frame was > 20 dB quieter in that bin): its phase means nothing; anchor the new
        # energy at the frame centre instead (measured: +1.5 dB SC on bells and drums, no loss elsewhere).
        np.abs(prev_spec, out=self._prev_mag)
        np.multiply(mag, _ONSET_RATIO, out=logmag)
        np.less(self._prev_mag, logmag, out=self._onset)
        np.putmask(phase, self._onset, self._centred_phase)
        np.cos(phase, out=spec_row.real)
        np.sin(phase, out=spec_row.imag)
        np.multiply(spec_row.real, mag, out=spec_row.real)  # real and imaginary apart: no complex upcast of mag
        np.multiply(spec_row.imag, mag, out=spec_row.imag)
        self._tgrad, self._tgrad_prev = self._tgrad_prev, self._tgrad

    def _iterate(self, stack: np.ndarray, views: tuple) -> None:
        """One batched Griffin-Lim step with momentum over the newest look-ahead slots (those ``views`` hold)."""
        seg_rows, seg, seg64, rebuilt, mags, spec, tprev, angles, absbuf, scale, inverse, place_rows = views
        multiply = np.multiply
        np.add.reduce(stack, axis=0, out=self._ola)  # fixed + every slot's frame at its place, in slot order
        for ola_part, window, seg_row in seg_rows:
            multiply(ola_part, window, out=seg_row)
        np.copyto(seg64, seg)
        _rfft_into(seg64, rebuilt)
        multiply(tprev, self._beta, out=angles)
        np.copyto(tprev, rebuilt, casting="same_kind")  # the new spectra, rounded to complex64, are next time's old
        np.subtract(tprev, angles, out=angles)
        np.abs(angles, out=absbuf)
        np.maximum(absbuf, _TINY, out=absbuf)
        np.divide(mags, absbuf, out=absbuf)
        np.copyto(scale, absbuf)
        multiply(angles, scale, out=spec)
        _irfft_into(spec, self.n_fft, inverse)
        for frame, window, synth in place_rows:  # the synthesis window puts each frame in place
            multiply(frame, window, out=synth)


def _checked_passes(passes: Sequence[int], slots: int) -> tuple[int, ...]:
    """``passes`` as a tuple of ints, or ValueError naming the value and the allowed range."""
    if len(passes) > 64 or not all(isinstance(rows, int | np.integer) and 1 <= rows <= slots for rows in passes):
        raise ValueError(
            f"passes={tuple(passes)!r} must be at most 64 counts of the newest frames each pass refines, "
            f"each from 1 to lookahead + 1 = {slots}"
        )
    return tuple(int(rows) for rows in passes)


def _slot_rows(stack: np.ndarray, n_fft: int, hop_length: int, slots: int) -> np.ndarray:
    """(slots, n_fft) writable view of ``stack`` (slots + 1, span): row j is stack[j + 1, j * hop : j * hop + n_fft]."""
    span = stack.shape[1]
    item = stack.itemsize
    return np.lib.stride_tricks.as_strided(stack[1:].reshape(-1), shape=(slots, n_fft),
                                           strides=((span + hop_length) * item, item))


def _window_set(win: np.ndarray, hop_length: int, lookahead: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthesis window (n_fft,) and per-slot analysis windows (lookahead + 1, n_fft), float64.

    The synthesis window is ``win`` over the steady-state sum of squared windows (periodic with period
    hop_length), so the overlap-add of all frames is the least-squares signal. Slot j's analysis window is
    ``win`` times steady-sum / present-sum at its position: near the newest frame, frames that have not
    arrived are missing from the sum.
    """
    n, h = win.shape[0], hop_length
    span = n + lookahead * h
    steady = np.zeros(span)
    present = np.zeros(span)
    first = -(-n // h)  # earliest frame (start index / h) that still overlaps sample 0
    for k in range(-first, span // h + 1):
        lo, hi = max(k * h, 0), min(k * h + n, span)
        if hi > lo:
            steady[lo:hi] += win[lo - k * h : hi - k * h] ** 2
            if k <= lookahead:
                present[lo:hi] += win[lo - k * h : hi - k * h] ** 2
    synth_win = win / steady[:n]
    tail_gain = steady / np.maximum(present, _PARTIAL_FLOOR * steady.max())
    slot_win = np.stack([win * tail_gain[j * h : j * h + n] for j in range(lookahead + 1)])
    return synth_win, slot_win


def vocode(magnitudes: np.ndarray, vocoder: StreamingVocoder, *, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Offline helper: stream magnitude frames (n_frames, n_bins) through ``vocoder`` (from its current state).

    Returns (audio (n_samples,) float32 aligned with the analysed signal — latency removed, zero frames fed
    at the end to flush the look-ahead — and the seconds each ``process`` call took, (n_calls,) float64).
    """
    magnitudes = np.asarray(magnitudes, dtype=np.float32)
    if magnitudes.ndim != 2 or magnitudes.shape[1] != vocoder.n_bins:
        raise ValueError(
            f"magnitudes have shape {magnitudes.shape}; expected (n_frames, {vocoder.n_bins}) for n_fft={vocoder.n_fft}"
        )
    h, latency = vocoder.hop_length, vocoder.latency_samples
    n_calls = max(-(-(n_samples + latency) // h), magnitudes.shape[0])
    out = np.zeros(n_calls * h, np.float32)
    seconds = np.zeros(n_calls)
    silence = np.zeros(vocoder.n_bins, np.float32)
    clock = time.perf_counter
    for i in range(n_calls):
        frame = magnitudes[i] if i < magnitudes.shape[0] else silence
        started = clock()
        block = vocoder.process(frame)
        seconds[i] = clock() - started
        out[i * h : (i + 1) * h] = block
    return out[latency : latency + n_samples].copy(), seconds


def spectral_convergence_db(magnitudes: np.ndarray, audio: np.ndarray, *, n_fft: int, hop_length: int) -> float:
    """SC = 20 log10(||S - |STFT(audio)||| / ||S||) in dB over all frames (lower is better; -inf if exact).

    ``magnitudes`` (n_frames, n_bins) are the targets S; ``audio`` (n_samples,) is analysed the same way.
    """
    rebuilt = frames.stft_magnitudes(audio, n_fft=n_fft, hop_length=hop_length)
    n = min(rebuilt.shape[0], magnitudes.shape[0])
    reference = np.linalg.norm(magnitudes[:n])
    if reference == 0.0:
        raise ValueError("spectral convergence is undefined for all-zero target magnitudes (silent audio)")
    error = np.linalg.norm(magnitudes[:n] - rebuilt[:n])
    return float(20.0 * np.log10(error / reference)) if error > 0 else float("-inf")
