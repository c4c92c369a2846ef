"""Liveness of generated audio against the training audio: movement, static seconds, dead air, level
(docs/ARCHITECTURE.md §9).

The definitions (1-s dead-air windows below -50 dBFS, per-second movement spectra, the static threshold) are
``murmur.device.dsp.measures``'s, shared with ``trainer/soundcheck.py``, the benchmarks and the device's
generator. ``movement_ratio`` = median movement of the generated audio / median movement of the reference (real
music against itself scores ~1; a static drone ~0.1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from murmur.device.dsp import measures
from murmur.device.dsp.measures import DEAD_AIR_DBFS, STATIC_FRACTION

__all__ = ["DEAD_AIR_DBFS", "STATIC_FRACTION", "Liveness", "measure", "movements", "rms_dbfs"]


@dataclass
class Liveness:
    movement_ratio: float
    static_fraction: float  # of generated seconds
    dead_air_windows: int  # 1-s windows (measures.DEAD_AIR_WINDOW_S) below DEAD_AIR_DBFS
    quietest_window_dbfs: float  # the quietest of those 1-s windows
    level_dbfs: float  # RMS of the whole generated audio
    reference_level_dbfs: float
    nan_samples: int

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def movements(audio: np.ndarray, sample_rate_hz: int, *, n_fft: int = measures.N_FFT,
              hop_length: int = measures.HOP) -> np.ndarray:
    """(n_samples,) audio -> (n_seconds - 1,) movement of each whole second from the previous one, dB."""
    return measures.measure_audio(audio, sample_rate_hz, n_fft=n_fft, hop_length=hop_length).movements_db


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level of the whole audio (n_samples,), dBFS."""
    return float(measures.level_dbfs(float(np.mean(np.asarray(audio, np.float64) ** 2))))


def measure(generated: np.ndarray, reference: np.ndarray, sample_rate_hz: int, *, n_fft: int = measures.N_FFT,
            hop_length: int = measures.HOP) -> Liveness:
    """Compare generated (n,) with reference (m,) audio, both float at ``sample_rate_hz``."""
    gen = measures.measure_audio(generated, sample_rate_hz, n_fft=n_fft, hop_length=hop_length)
    ref = measures.measure_audio(reference, sample_rate_hz, n_fft=n_fft, hop_length=hop_length)
    return Liveness(
        movement_ratio=measures.movement_ratio(gen.movements_db, ref.movements_db),
        static_fraction=measures.static_share(gen.movements_db, ref.movements_db),
        dead_air_windows=int(np.sum(gen.window_levels_dbfs < DEAD_AIR_DBFS)),
        quietest_window_dbfs=float(np.min(gen.window_levels_dbfs)),
        level_dbfs=gen.level_dbfs,
        reference_level_dbfs=ref.level_dbfs,
        nan_samples=gen.nonfinite_samples,
    )
