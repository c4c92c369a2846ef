"""Streaming phase reconstruction: one STFT-magnitude frame in, one hop of audio out, forever.

RTISI-LA (real-time iterative spectrogram inversion with look-ahead, Zhu et al. 2007) with a phase-gradient
start for each new frame (RTPGHI-style, Průša & Holighaus 2017) and Griffin-Lim momentum. The ``lookahead + 1``
newest frames are refined together, as one batch of FFTs, against the overlap-add of everything synthesised so
far; the oldest is then committed and one hop of finished audio leaves. Phase and overlap-add are continuous
across calls, so the stream has no block joins. See DESIGN.md §5 for the measurements behind the choice.
"""

from __future__ import annotations

import numpy as np

from device import frames

# Hann window constant of the phase-gradient relations (gamma = C * window_length**2), Průša et al.
_HANN_GAMMA_FACTOR = 0.25645
_TINY = np.float32(1e-12)


class StreamingVocoder:
    """Magnitude frames (n_bins,) float32 -> audio hops (hop_length,) float32, with ``latency_samples`` delay.

    Output sample k corresponds to input sample k - latency_samples of the signal whose
    ``frames.stft_magnitudes(center=True)`` the frames are. Not thread-safe; one instance per stream.
    """

    def __init__(
        self,
        *,
        n_fft: int,
        hop_length: int,
        lookahead: int = 3,
        iterations: int = 4,
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
        if not isinstance(iterations, int | np.integer) or not 0 <= iterations <= 64:
            raise ValueError(f"iterations={iterations!r} must be an integer from 0 to 64")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum!r} must be in [0, 1)")
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.lookahead = int(lookahead)
        self.iterations = int(iterations)
        self.window = window
        self.momentum = float(momentum)
        self.n_bins = self.n_fft // 2 + 1
        self.latency_samples = self.lookahead * self.hop_length + self.n_fft // 2

        n, h, w_count = self.n_fft, self.hop_length, self.lookahead + 1
        win = frames.analysis_window(n, window)
        # Steady-state sum of squared windows over all frames touching a sample: periodic with period hop.
        wss = np.zeros(n + h)
        for start in range(-(n // h) * h, h, h):
            lo, hi = max(start, 0), min(start + n, n + h)
            wss[lo:hi] += win[lo - start : hi - start] ** 2
        self._win = win.astype(np.float32)
        self._synth_win = (win / np.tile(wss[:h], n // h + 1)[:n]).astype(np.float32)
        self._beta = np.float32(self.momentum / (1.0 + self.momentum))

        # Phase-gradient constants: per-bin phase advance per hop and the log-magnitude slope factors.
        gamma = _HANN_GAMMA_FACTOR * n * n
        self._omega = (2.0 * np.pi * h * np.arange(self.n_bins) / n).astype(np.float32)
        self._tgrad_scale = np.float32(h * n / gamma / 2.0)  # times a centred difference over bins

        f32, c64 = np.float32, np.complex64
        self._buf_len = n + self.lookahead * h
        # Double-buffered state (shifting by one frame copies into the other set, no overlap, no allocation).
        self._mags = [np.zeros((w_count, self.n_bins), f32) for _ in range(2)]
        self._spec = [np.zeros((w_count, self.n_bins), c64) for _ in range(2)]
        self._tprev = [np.zeros((w_count, self.n_bins), c64) for _ in range(2)]
        self._synth = [np.zeros((w_count, n), f32) for _ in range(2)]
        self._fixed = [np.zeros(self._buf_len, f32) for _ in range(2)]
        self._cur = 0
        # Scratch.
        self._ola = np.zeros(self._buf_len, f32)
        self._seg = np.zeros((w_count, n), f32)
        self._rebuilt = np.zeros((w_count, self.n_bins), c64)
        self._angles = np.zeros((w_count, self.n_bins), c64)
        self._absbuf = np.zeros((w_count, self.n_bins), f32)
        self._logmag = np.zeros(self.n_bins, f32)
        self._logmag_prev = np.zeros(self.n_bins, f32)
        self._tgrad = np.zeros(self.n_bins, f32)
        self._tgrad_prev = np.zeros(self.n_bins, f32)
        self._phase = np.zeros(self.n_bins, f32)
        self._phase_prev = np.zeros(self.n_bins, f32)
        self._tmp_bins = np.zeros(self.n_bins, f32)
        self._out = np.zeros(h, f32)
        self._frames_in = 0

    def reset(self) -> None:
        """Forget the stream: silence in, silence out; the next frame starts a new signal."""
        for group in (self._mags, self._spec, self._tprev, self._synth, self._fixed):
            for arr in group:
                arr.fill(0)
        for arr in (self._logmag, self._logmag_prev, self._tgrad, self._tgrad_prev, self._phase, self._phase_prev):
            arr.fill(0)
        self._frames_in = 0

    def process(self, magnitude: np.ndarray) -> np.ndarray:
        """One magnitude frame (n_bins,) float32, linear -> the next (hop_length,) float32 audio hop.

        The returned array is a view into an internal buffer, valid until the next call.
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
        # Shift every frame-indexed state by one frame (copy into the other buffer set).
        if last:
            np.copyto(mags[:-1], self._mags[old][1:])
            np.copyto(spec[:-1], self._spec[old][1:])
            np.copyto(tprev[:-1], self._tprev[old][1:])
            np.copyto(synth[:-1], self._synth[old][1:])
        np.copyto(fixed[:-h], self._fixed[old][h:])
        fixed[-h:] = 0.0
        tprev[last] = 0.0
        np.copyto(mags[last], magnitude, casting="unsafe")
        np.maximum(mags[last], 0.0, out=mags[last])
        np.nan_to_num(mags[last], copy=False, nan=0.0, posinf=0.0)

        self._init_newest(mags[last], spec[last])
        np.fft.irfft(spec[last], n=self.n_fft, out=synth[last])
        np.multiply(synth[last], self._synth_win, out=synth[last])

        for _ in range(self.iterations):
            self._iterate(mags, spec, tprev, synth, fixed)

        # Commit the oldest frame: its overlap-add completes the first hop of the buffer.
        fixed[: self.n_fft] += synth[0]
        np.copyto(self._out, fixed[:h])
        self._frames_in += 1
        return self._out

    # -- internals -----------------------------------------------------------------------------------------

    def _init_newest(self, mag: np.ndarray, spec_row: np.ndarray) -> None:
        """Initial phase of the newest frame from the previous one by phase-gradient time integration."""
        np.add(mag, _TINY, out=self._logmag)
        np.log(self._logmag, out=self._logmag)
        tg = self._tgrad
        tg[0] = 0.0
        tg[-1] = 0.0
        np.subtract(self._logmag[2:], self._logmag[:-2], out=tg[1:-1])
        np.multiply(tg, self._tgrad_scale, out=tg)
        np.add(tg, self._omega, out=tg)
        # Previous frame's current phase estimate (after its iterations).
        prev = self._spec[self._cur][self.lookahead - 1] if self.lookahead else self._spec[1 - self._cur][0]
        np.arctan2(prev.imag, prev.real, out=self._phase_prev)
        np.add(self._tgrad_prev, tg, out=self._tmp_bins)
        np.multiply(self._tmp_bins, np.float32(0.5), out=self._tmp_bins)
        np.add(self._phase_prev, self._tmp_bins, out=self._phase)
        np.cos(self._phase, out=spec_row.real)
        np.sin(self._phase, out=spec_row.imag)
        np.multiply(spec_row, mag, out=spec_row)
        self._tgrad, self._tgrad_prev = self._tgrad_prev, self._tgrad

    def _iterate(self, mags, spec, tprev, synth, fixed) -> None:
        """One batched Griffin-Lim step with momentum over the look-ahead frames."""
        n, h = self.n_fft, self.hop_length
        ola = self._ola
        np.copyto(ola, fixed)
        for j in range(self.lookahead + 1):
            ola[j * h : j * h + n] += synth[j]
        segments = np.lib.stride_tricks.as_strided(
            ola, shape=(self.lookahead + 1, n), strides=(ola.strides[0] * h, ola.strides[0]), writeable=False
        )
        np.multiply(segments, self._win, out=self._seg)
        rebuilt = self._rebuilt
        np.fft.rfft(self._seg, axis=-1, out=rebuilt)
        angles = self._angles
        np.multiply(tprev, self._beta, out=angles)
        np.subtract(rebuilt, angles, out=angles)
        np.copyto(tprev, rebuilt)
        np.abs(angles, out=self._absbuf)
        np.maximum(self._absbuf, _TINY, out=self._absbuf)
        np.divide(mags, self._absbuf, out=self._absbuf)
        np.multiply(angles, self._absbuf, out=spec)
        np.fft.irfft(spec, n=n, axis=-1, out=synth)
        np.multiply(synth, self._synth_win, out=synth)
