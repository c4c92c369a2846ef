"""Frame maths shared by trainer and device: STFT magnitudes and the log-magnitude normalisation.

Convention: frames are time-major, ``(n_frames, n_bins)`` float32 with ``n_bins = n_fft // 2 + 1``.
The STFT matches ``librosa.stft(center=True, pad_mode="constant", window="hann")`` to ~1e-5, so the device
needs no librosa.
"""

from __future__ import annotations

import numpy as np

SUPPORTED_WINDOWS = ("hann",)


def analysis_window(n_fft: int, window: str = "hann") -> np.ndarray:
    """Periodic analysis window, (n_fft,) float64 (the scipy/librosa ``fftbins=True`` form)."""
    if window not in SUPPORTED_WINDOWS:
        raise ValueError(f"window={window!r} is not supported; use one of {SUPPORTED_WINDOWS}")
    n = np.arange(n_fft)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)


def stft(
    audio: np.ndarray, *, n_fft: int, hop_length: int, window: str = "hann", center: bool = True
) -> np.ndarray:
    """Complex STFT of mono audio (n_samples,) -> (n_frames, n_bins) complex64.

    With ``center=True`` the signal is zero-padded by n_fft // 2 on both sides, so frame t is centred on
    sample t * hop_length (librosa's convention).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"stft expects mono audio of shape (n_samples,), got {audio.shape}")
    if center:
        audio = np.pad(audio, n_fft // 2)
    if audio.shape[0] < n_fft:
        audio = np.pad(audio, (0, n_fft - audio.shape[0]))
    n_frames = 1 + (audio.shape[0] - n_fft) // hop_length
    frames = np.lib.stride_tricks.as_strided(
        audio,
        shape=(n_frames, n_fft),
        strides=(audio.strides[0] * hop_length, audio.strides[0]),
        writeable=False,
    )
    win = analysis_window(n_fft, window).astype(np.float32)
    return np.fft.rfft(frames * win, axis=1).astype(np.complex64)


def stft_magnitudes(
    audio: np.ndarray, *, n_fft: int, hop_length: int, window: str = "hann", center: bool = True
) -> np.ndarray:
    """|STFT| of mono audio (n_samples,) -> (n_frames, n_bins) float32, linear amplitude."""
    return np.abs(stft(audio, n_fft=n_fft, hop_length=hop_length, window=window, center=center)).astype(
        np.float32
    )


def to_log(magnitudes: np.ndarray, log_floor: float) -> np.ndarray:
    """Linear magnitudes -> natural-log magnitudes, ``log(mag + log_floor)``, same shape, float32."""
    return np.log(np.maximum(magnitudes, 0.0) + np.float32(log_floor)).astype(np.float32)


def normalise(log_magnitudes: np.ndarray, mean: np.ndarray, std: float) -> np.ndarray:
    """Log magnitudes (..., n_bins) -> model units: minus the per-bin mean, over one global std."""
    return ((log_magnitudes - mean) / np.float32(std)).astype(np.float32)


def denormalise_into(
    frame_norm: np.ndarray, mean: np.ndarray, std: float, log_floor: float, out: np.ndarray
) -> np.ndarray:
    """Model units (n_bins,) -> linear magnitudes written into ``out`` (n_bins,) float32; no allocation."""
    np.multiply(frame_norm, np.float32(std), out=out)
    np.add(out, mean, out=out)
    np.exp(out, out=out)
    np.subtract(out, np.float32(log_floor), out=out)
    np.maximum(out, 0.0, out=out)
    return out


def denormalise(frame_norm: np.ndarray, mean: np.ndarray, std: float, log_floor: float) -> np.ndarray:
    """Model units (..., n_bins) -> linear magnitudes, float32 (allocating convenience form)."""
    out = np.empty(np.shape(frame_norm), dtype=np.float32)
    if out.ndim == 1:
        return denormalise_into(np.asarray(frame_norm, np.float32), mean, std, log_floor, out)
    mags = np.exp(np.asarray(frame_norm, np.float32) * np.float32(std) + mean) - np.float32(log_floor)
    return np.maximum(mags, 0.0).astype(np.float32)
