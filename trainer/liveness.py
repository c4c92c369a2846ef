"""Liveness of generated audio against the training audio: movement, static seconds, dead air, level
(docs/ARCHITECTURE.md §9).

Per 1-s window (hop 1 s): the mean log-magnitude spectrum, 20·log10(|STFT| + 1e-5) averaged over the window's
frames -> (n_windows, n_bins) dB. Movement of a second = RMS over bins of its change from the previous second,
in dB. ``movement_ratio`` = median movement of the generated audio / median movement of the reference (real
music against itself scores ~1; a static drone ~0.1). A second is *static* when its movement is below
STATIC_FRACTION of the reference median. Dead air: any 10-s window whose RMS is below -50 dBFS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from murmur.device.dsp import frames

STATIC_FRACTION = 0.25
DEAD_AIR_DBFS = -50.0
DEAD_AIR_WINDOW_S = 10.0


@dataclass
class Liveness:
    movement_ratio: float
    static_fraction: float  # of generated seconds
    dead_air_windows: int  # 10-s windows (hop 1 s) below DEAD_AIR_DBFS
    quietest_10s_dbfs: float
    level_dbfs: float  # RMS of the whole generated audio
    reference_level_dbfs: float
    nan_samples: int

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def second_spectra(audio: np.ndarray, sample_rate_hz: int, *, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """(n_samples,) audio -> (n_seconds, n_bins) mean dB spectrum of each whole second."""
    db = 20.0 * np.log10(frames.stft_magnitudes(audio, n_fft=n_fft, hop_length=hop_length) + 1e-5)
    per_second = max(1, int(round(sample_rate_hz / hop_length)))
    n_seconds = db.shape[0] // per_second
    return db[: n_seconds * per_second].reshape(n_seconds, per_second, -1).mean(axis=1)


def movements(audio: np.ndarray, sample_rate_hz: int, **stft) -> np.ndarray:
    spectra = second_spectra(audio, sample_rate_hz, **stft)
    return np.sqrt(np.mean(np.diff(spectra, axis=0) ** 2, axis=1))


def rms_dbfs(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(audio, np.float64) ** 2) + 1e-20))


def measure(generated: np.ndarray, reference: np.ndarray, sample_rate_hz: int, **stft) -> Liveness:
    """Compare generated (n,) with reference (m,) audio, both float at ``sample_rate_hz``."""
    nan_samples = int(np.count_nonzero(~np.isfinite(generated)))
    generated = np.nan_to_num(generated)
    ref_move = float(np.median(movements(reference, sample_rate_hz, **stft)))
    gen_moves = movements(generated, sample_rate_hz, **stft)
    window, hop = int(DEAD_AIR_WINDOW_S * sample_rate_hz), sample_rate_hz
    levels = [rms_dbfs(generated[i : i + window]) for i in range(0, max(1, len(generated) - window + 1), hop)]
    return Liveness(
        movement_ratio=float(np.median(gen_moves) / ref_move),
        static_fraction=float(np.mean(gen_moves < STATIC_FRACTION * ref_move)),
        dead_air_windows=int(np.sum(np.asarray(levels) < DEAD_AIR_DBFS)),
        quietest_10s_dbfs=float(min(levels)),
        level_dbfs=rms_dbfs(generated),
        reference_level_dbfs=rms_dbfs(reference),
        nan_samples=nan_samples,
    )
