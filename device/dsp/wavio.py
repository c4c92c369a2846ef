"""Audio file I/O for trainer and device: read any common format to mono float32, write 16-bit PCM WAV.

Reading uses soundfile (libsndfile: WAV/FLAC/OGG/MP3/AIFF) when it is importable and falls back to the
standard-library ``wave`` module (PCM WAV only), so the device needs no extra dependency for WAV.
Writing is always 16-bit PCM WAV through ``wave``, atomic and durable (``murmur.device.files.PendingFile``: temporary
sibling, fsync, rename), the file's mode following the umask.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from murmur.device.errors import AudioFileError
from murmur.device.files import PendingFile

try:  # optional: decodes compressed formats; absent on a minimal device install
    import soundfile as _soundfile
except (ImportError, OSError):  # OSError: the Python package is there but libsndfile is not
    _soundfile = None

_INT16_SCALE = 32767.0


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file -> (audio (n_samples,) float32 mono in [-1, 1], sample_rate_hz).

    Multichannel audio is downmixed by averaging the channels. Raises AudioFileError naming the file
    when it is missing, undecodable, empty or contains NaN/inf.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such audio file; check the path (a WAV/FLAC/OGG/MP3/AIFF file is expected)")
    if _soundfile is not None:
        try:
            data, sample_rate_hz = _soundfile.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
            raise AudioFileError(
                f"{path}: cannot decode audio ({exc}); convert it to WAV or FLAC, e.g. `ffmpeg -i {path.name} out.wav`"
            ) from exc
    else:
        data, sample_rate_hz = _read_wav_stdlib(path)
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no audio samples; use a recording with sound in it")
    audio = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if not np.all(np.isfinite(audio)):
        raise AudioFileError(f"{path}: the audio contains NaN or infinite samples; re-export the file")
    np.clip(audio, -1.0, 1.0, out=audio)
    return audio, int(sample_rate_hz)


def _read_wav_stdlib(path: Path) -> tuple[np.ndarray, int]:
    """PCM WAV via the standard library -> ((n_samples, n_channels) float32, sample_rate_hz)."""
    try:
        with wave.open(str(path), "rb") as wav:
            n_channels = wav.getnchannels()
            sample_width = wav.getsampwidth()
            sample_rate_hz = wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise AudioFileError(
            f"{path}: cannot read as PCM WAV ({exc}); without the soundfile package only PCM WAV is readable — "
            "convert the file to 16-bit WAV or install soundfile"
        ) from exc
    if sample_width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif sample_width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif sample_width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        samples = ints.astype(np.float32) / float(1 << 23)
    elif sample_width == 4:
        samples = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    else:
        raise AudioFileError(f"{path}: unsupported WAV sample width {sample_width} bytes; convert to 16-bit PCM WAV")
    usable = samples.shape[0] - samples.shape[0] % n_channels
    return samples[:usable].reshape(-1, n_channels), sample_rate_hz


def _to_pcm16(audio: np.ndarray) -> bytes:
    """float audio (n_samples,) in [-1, 1] -> little-endian int16 bytes (clipped; NaN becomes 0)."""
    block = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    if block.ndim != 1:
        raise ValueError(f"audio must be mono of shape (n_samples,), got shape {block.shape}")
    return np.round(np.clip(block, -1.0, 1.0) * _INT16_SCALE).astype("<i2").tobytes()


def _check_rate(sample_rate_hz: int) -> int:
    rate = int(sample_rate_hz)
    if rate <= 0 or rate != sample_rate_hz:
        raise ValueError(f"sample_rate_hz must be a positive integer, got {sample_rate_hz!r}")
    return rate


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate_hz: int) -> Path:
    """Write mono float audio (n_samples,) as 16-bit PCM WAV, clipped to [-1, 1]; atomic (temp + rename).

    Returns the path written. A reader never sees a half-written file.
    """
    path = Path(path)
    rate = _check_rate(sample_rate_hz)
    data = _to_pcm16(audio)
    with PendingFile(path) as pending, wave.open(pending.file, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data)
    return path


class WavWriter:
    """Streaming 16-bit PCM mono WAV writer: ``write(block)`` appends float audio, ``close()`` finalises.

    Written to a temporary file beside ``path`` and renamed on ``close()``, so ``path`` only ever holds a
    complete WAV. Usable as a context manager; an exception inside the ``with`` discards the partial file.
    """

    def __init__(self, path: str | os.PathLike, sample_rate_hz: int) -> None:
        self.path = Path(path)
        self.sample_rate_hz = _check_rate(sample_rate_hz)
        self.samples_written = 0
        self._pending = PendingFile(self.path)
        self._wav = wave.open(self._pending.file, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(self.sample_rate_hz)
        self._closed = False

    def write(self, block: np.ndarray) -> None:
        """Append a block of mono float audio (n,) in [-1, 1] (clipped)."""
        if self._closed:
            raise ValueError(f"{self.path}: WavWriter is closed; open a new one to write more")
        self._wav.writeframes(_to_pcm16(block))
        self.samples_written += int(np.shape(block)[0])

    def close(self) -> Path:
        """Finish the header and move the file into place; idempotent. Returns the path."""
        if not self._closed:
            self._closed = True
            try:
                self._wav.close()
            except BaseException:
                self._pending.abort()
                raise
            self._pending.commit()
        return self.path

    def abort(self) -> None:
        """Discard the partial file without touching ``path``."""
        if not self._closed:
            self._closed = True
            try:
                self._wav.close()
            finally:
                self._pending.abort()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
