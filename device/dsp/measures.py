"""Dead air and movement: the one definition of each, for the device, the trainer and the benchmarks (numpy only).

Dead air
    A window of ``DEAD_AIR_WINDOW_S`` = 1 s whose RMS is below ``DEAD_AIR_DBFS`` = -50 dBFS. From audio: whole,
    non-overlapping windows of round(1 s · sample rate) samples (a shorter tail is dropped; audio shorter than one
    window is one window); the level is 10·log10(mean(x²) + 1e-20) dBFS. From magnitude frames: the mean of the
    frames' levels (``frame_dbfs``, Parseval) over whole windows of round(1 s · rate / hop) frames. The dead-air
    share is the fraction of windows below the threshold.
    Why 1 s and not 10 s: 1 s is what the device's generator guards against (more than 1 s of frames below
    -50 dBFS makes it jump) and about what a listener hears as a hole; a 10-s mean power is dominated by its
    loud part and hides holes (9 s of silence and 1 s at -20 dBFS read -30 dBFS). And it is the unit of movement.

Movement
    The STFT of ``murmur.device.dsp.frames`` (centred, Hann; n_fft ``N_FFT`` = 2048, hop ``HOP`` = 512 unless
    told), frames grouped by whole "seconds" of round(rate / hop) frames (86 at 44.1 kHz; a last partial group is
    dropped); per group the mean of 20·log10(|X| + 1e-5) -> (n_seconds, n_bins) dB. The movement of a second is
    the RMS over bins of its change from the previous second, in dB. Movement ratio = median movement / the
    reference's median movement (music against itself ~1, a static drone ~0.1); a second is *static* when it moves
    less than ``STATIC_FRACTION`` of the reference's median.

Non-finite samples count as 0 (``AudioMeasures.nonfinite_samples`` counts them). ``measure_audio`` runs over an
array in blocks, ``AudioMeter`` over a stream of blocks; both give the same figures for the same samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from murmur.device.dsp.frames import stft_magnitudes

DEAD_AIR_DBFS = -50.0  # a window (or, on the device, a run of frames) quieter than this is dead air
DEAD_AIR_WINDOW_S = 1.0  # the window of dead air, s (the device's guard: more than this much below the threshold)
STATIC_FRACTION = 0.25  # a second moving less than this × the reference's median movement is static
MAGNITUDE_FLOOR = 1e-5  # added to |X| before 20·log10 (movement spectra)
POWER_FLOOR = 1e-20  # added to a mean square before 10·log10 (levels)
HANN_MEAN_SQUARE = 0.375  # mean of hann(n)²: turns a windowed frame's energy into the signal's mean square
N_FFT = 2048  # STFT of the movement spectra unless told otherwise
HOP = 512
BLOCK_S = 24  # measure_audio's block, s of audio (bounds the temporaries to ~25 MB at 44.1 kHz)


def frames_per_window(sample_rate_hz: int, hop_length: int, seconds: float = DEAD_AIR_WINDOW_S) -> int:
    """STFT frames in ``seconds`` (at least 1): 86 per second at 44.1 kHz, hop 512."""
    return max(1, int(round(seconds * sample_rate_hz / hop_length)))


def level_dbfs(mean_square: np.ndarray | float) -> np.ndarray:
    """Mean square(s) of full-scale-1 audio -> level(s) in dBFS (RMS): 10·log10(ms + 1e-20)."""
    return 10.0 * np.log10(np.asarray(mean_square, np.float64) + POWER_FLOOR)


def frame_mean_squares(magnitudes: np.ndarray, n_fft: int) -> np.ndarray:
    """Mean square of the audio under each STFT frame (Hann window) from its one-sided magnitudes (..., n_bins),
    by Parseval -> (...,) float64."""
    power = np.asarray(magnitudes, np.float64) ** 2
    energy = 2.0 * power.sum(axis=-1) - power[..., 0] - power[..., -1]  # both halves of the spectrum
    return energy / (n_fft * n_fft * HANN_MEAN_SQUARE)


def frame_dbfs(magnitudes: np.ndarray, n_fft: int) -> np.ndarray:
    """Level of the audio under each STFT frame, dBFS, from its one-sided magnitudes (..., n_bins) -> (...,) float32.

    A full-scale sine reads about -3 dBFS (its RMS), as an RMS meter would.
    """
    return level_dbfs(frame_mean_squares(magnitudes, n_fft)).astype(np.float32)


def dead_air_share(window_levels_dbfs: np.ndarray) -> float:
    """Fraction (0..1) of the windows (n_windows,) dBFS below DEAD_AIR_DBFS."""
    levels = np.asarray(window_levels_dbfs)
    return float(np.mean(levels < DEAD_AIR_DBFS)) if levels.size else 0.0


def frame_window_levels_dbfs(magnitudes: np.ndarray, n_fft: int, frames_per_win: int) -> np.ndarray:
    """Magnitude frames (n_frames, n_bins) -> level of each whole window of ``frames_per_win`` frames, dBFS
    (n_windows,): the mean of the frames' mean squares (``frame_mean_squares``). Fewer frames than a window: one window."""
    mean_squares = frame_mean_squares(magnitudes, n_fft)
    n = mean_squares.shape[0] // frames_per_win
    if n == 0:
        return level_dbfs(np.array([mean_squares.mean() if mean_squares.size else 0.0]))
    return level_dbfs(mean_squares[: n * frames_per_win].reshape(n, frames_per_win).mean(axis=1))


class _GroupMeans:
    """Means of consecutive whole groups of ``size`` rows of a stream of (n, width) blocks; a partial last group
    is kept apart (``partial``)."""

    def __init__(self, size: int, width: int) -> None:
        self.size = size
        self._sum = np.zeros(width, np.float64)
        self._count = 0
        self.means: list[np.ndarray] = []  # (n_groups_in_block, width) float64 each
        self.total = np.zeros(width, np.float64)
        self.rows = 0

    def feed(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float64)
        self.total += rows.sum(axis=0)
        self.rows += rows.shape[0]
        if self._count:
            take = min(self.size - self._count, rows.shape[0])
            self._sum += rows[:take].sum(axis=0)
            self._count += take
            rows = rows[take:]
            if self._count < self.size:
                return
            self.means.append((self._sum / self.size)[None])
            self._sum[:], self._count = 0.0, 0
        whole = (rows.shape[0] // self.size) * self.size
        if whole:
            self.means.append(rows[:whole].reshape(-1, self.size, rows.shape[1]).mean(axis=1))
        if rows.shape[0] > whole:
            self._sum += rows[whole:].sum(axis=0)
            self._count = rows.shape[0] - whole

    def result(self) -> np.ndarray:
        """(n_groups, width) float64 means of the whole groups."""
        return np.concatenate(self.means) if self.means else np.zeros((0, self._sum.shape[0]))


def second_spectra_db(magnitudes: np.ndarray, frames_per_second: int) -> np.ndarray:
    """Magnitude frames (n_frames, n_bins) -> (n_seconds, n_bins) float32: per whole group of
    ``frames_per_second`` frames, the mean of 20·log10(|X| + 1e-5), dB."""
    groups = _GroupMeans(frames_per_second, np.shape(magnitudes)[1])
    groups.feed(20.0 * np.log10(np.asarray(magnitudes, np.float32) + np.float32(MAGNITUDE_FLOOR)))
    return groups.result().astype(np.float32)


def movements_db(second_db: np.ndarray) -> np.ndarray:
    """(n_seconds, n_bins) dB spectra -> (n_seconds - 1,) movement of each second from the previous one, dB (RMS
    over bins of the change)."""
    return np.sqrt(np.mean(np.diff(np.asarray(second_db, np.float64), axis=0) ** 2, axis=1))


def movement_ratio(moves: np.ndarray, reference_moves: np.ndarray) -> float:
    """Median movement / the reference's median movement (nan when the reference does not move)."""
    ref = float(np.median(reference_moves))
    return float(np.median(moves) / ref) if ref > 0 else float("nan")


def static_share(moves: np.ndarray, reference_moves: np.ndarray) -> float:
    """Fraction (0..1) of the seconds moving less than STATIC_FRACTION × the reference's median movement."""
    return float(np.mean(np.asarray(moves) < STATIC_FRACTION * float(np.median(reference_moves))))


@dataclass
class AudioMeasures:
    """What the figures need from one audio signal.

    second_db: (n_seconds, n_bins) float32 movement spectra, dB; window_levels_dbfs: (n_windows,) level of each
    1-s dead-air window, dBFS; level_dbfs: RMS of the whole audio, dBFS; n_samples; nonfinite_samples.
    """

    second_db: np.ndarray
    window_levels_dbfs: np.ndarray
    level_dbfs: float
    n_samples: int
    nonfinite_samples: int

    @property
    def movements_db(self) -> np.ndarray:
        return movements_db(self.second_db)

    @property
    def dead_air_share(self) -> float:
        return dead_air_share(self.window_levels_dbfs)


class AudioMeter:
    """Streaming ``AudioMeasures``: ``feed(block)`` mono float audio blocks of any length, ``finish()`` once.

    The STFT is centred as ``frames.stft(center=True)`` over the whole stream (n_fft // 2 zeros before the first
    sample and after the last), so the frames equal those of the whole signal at once: 1 + n_samples // hop.
    ``on_magnitudes(first_frame, magnitudes (k, n_bins) float32)`` sees every frame once, in order (soundcheck
    takes its log-mel frames from them).
    """

    def __init__(self, sample_rate_hz: int, *, n_fft: int = N_FFT, hop_length: int = HOP,
                 on_magnitudes: Callable[[int, np.ndarray], None] | None = None, batch_frames: int = 64) -> None:
        self.sample_rate_hz, self.n_fft, self.hop = int(sample_rate_hz), n_fft, hop_length
        self.on_magnitudes = on_magnitudes
        self._batch = max(1, batch_frames)
        self._pending = np.zeros(n_fft // 2, np.float32)  # samples from the start of the next frame on …
        self._queued: list[np.ndarray] = []  # … followed by these blocks, not yet joined to it
        self._queued_n = 0
        self._frames_done = 0
        self._seconds = _GroupMeans(frames_per_window(sample_rate_hz, hop_length), n_fft // 2 + 1)
        self._windows = _GroupMeans(max(1, int(round(DEAD_AIR_WINDOW_S * sample_rate_hz))), 1)
        self.n_samples = 0
        self.nonfinite_samples = 0

    def feed(self, block: np.ndarray) -> None:
        """Add mono float audio (n,); non-finite samples are counted and taken as 0."""
        block = np.asarray(block, np.float32).reshape(-1)
        bad = ~np.isfinite(block)
        if bad.any():
            self.nonfinite_samples += int(np.count_nonzero(bad))
            block = np.where(bad, np.float32(0), block)
        self.n_samples += block.shape[0]
        self._windows.feed((block.astype(np.float64) ** 2)[:, None])
        self._queued.append(block)
        self._queued_n += block.shape[0]
        if self._pending.shape[0] + self._queued_n >= self.n_fft + (self._batch - 1) * self.hop:
            self._frames(1 + (self._pending.shape[0] + self._queued_n - self.n_fft) // self.hop)

    def _frames(self, count: int) -> None:
        """Compute the next ``count`` frames from the pending samples (blocks are joined here, once per batch)."""
        if self._queued:
            self._pending = np.concatenate([self._pending, *self._queued])
            self._queued, self._queued_n = [], 0
        if count <= 0:
            return
        span = self.n_fft + (count - 1) * self.hop
        mags = stft_magnitudes(self._pending[:span], n_fft=self.n_fft, hop_length=self.hop, center=False)
        if self.on_magnitudes is not None:
            self.on_magnitudes(self._frames_done, mags)
        self._seconds.feed(20.0 * np.log10(mags + np.float32(MAGNITUDE_FLOOR)))
        self._frames_done += count
        self._pending = self._pending[count * self.hop :]

    def finish(self) -> AudioMeasures:
        """The measures of everything fed (the last frames are computed with the closing zero padding)."""
        total_frames = 1 + self.n_samples // self.hop
        self._queued.append(np.zeros(self.n_fft // 2, np.float32))
        self._frames(total_frames - self._frames_done)
        windows = self._windows.result()[:, 0]
        total_sq = float(self._windows.total[0])
        if windows.size == 0:  # shorter than one window: the whole audio is one window
            windows = np.array([total_sq / max(1, self.n_samples)])
        return AudioMeasures(
            second_db=self._seconds.result().astype(np.float32),
            window_levels_dbfs=level_dbfs(windows),
            level_dbfs=float(level_dbfs(total_sq / max(1, self.n_samples))),
            n_samples=self.n_samples,
            nonfinite_samples=self.nonfinite_samples,
        )


def measure_audio(audio: np.ndarray, sample_rate_hz: int, *, n_fft: int = N_FFT, hop_length: int = HOP,
                  on_magnitudes: Callable[[int, np.ndarray], None] | None = None) -> AudioMeasures:
    """(n_samples,) mono float audio -> AudioMeasures, in blocks of BLOCK_S (memory: the result, not the STFT)."""
    meter = AudioMeter(sample_rate_hz, n_fft=n_fft, hop_length=hop_length, on_magnitudes=on_magnitudes,
                       batch_frames=frames_per_window(sample_rate_hz, hop_length, BLOCK_S))
    step = int(BLOCK_S * sample_rate_hz)
    for start in range(0, np.shape(audio)[0], step):
        meter.feed(audio[start : start + step])
    return meter.finish()
