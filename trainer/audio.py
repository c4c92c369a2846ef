"""Find and decode the artist's audio files: mono float32 at the bundle's sample rate, checked at the boundary.

Every refusal is an ``AudioFileError`` naming the file, what was found and the fix; accepted-but-changed input
(downmix, resample) is reported through the returned notes so the CLI can say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from murmur.device.errors import AudioFileError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc")
SILENCE_PEAK = 10 ** (-80 / 20)  # a file whose peak is below -80 dBFS is treated as silent
TRIM_BELOW_PEAK_DB = 40.0  # leading/trailing stretches this far below the loudest block are trimmed (fade-ins, tails, room tone)
DECODE_BLOCK = 1 << 16  # frames decoded at a time
TRIM_BLOCK = 1024  # samples per level block when looking for the trim points


@dataclass
class DecodedAudio:
    """One source file as mono float32 samples at ``sample_rate_hz``, with what was done to it."""

    path: Path
    samples: np.ndarray  # (n_samples,) float32 mono
    sample_rate_hz: int
    source_rate_hz: int
    source_channels: int
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate_hz


def is_trainer_preview(path: Path) -> bool:
    """True for a preview WAV this trainer wrote beside its bundle (``OUT-preview.wav``, or ``preview.wav`` next
    to ``bundle/``): keeping OUT inside DATA must not feed the model its own output on the next run."""
    if path.name.endswith("-preview.wav"):
        return (path.parent / path.name[: -len("-preview.wav")] / "bundle.json").is_file()
    return path.name == "preview.wav" and (path.parent / "bundle" / "bundle.json").is_file()


def find_audio_files(data: str | os.PathLike[str], skipped: list[Path] | None = None) -> list[Path]:
    """A file, or every audio file under a folder (recursive, sorted) -> list of paths. Raises AudioFileError.

    Previews written by this trainer are left out (and appended to ``skipped`` if given).
    """
    data = Path(data)
    if not data.exists():
        raise AudioFileError(f"{data}: no such file or folder; pass DATA=<audio file or folder of audio files>")
    if data.is_file():
        return [data]
    every = sorted(p for p in data.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not every:
        raise AudioFileError(f"{data}: the folder is empty; put your recordings (WAV, FLAC, OGG, MP3, AIFF) in it")
    audio = [p for p in every if p.suffix.lower() in AUDIO_EXTENSIONS]
    previews = [p for p in audio if is_trainer_preview(p)]
    if previews:
        audio = [p for p in audio if p not in previews]
        if skipped is not None:
            skipped.extend(previews)
    if not audio:
        shown = ", ".join(p.name for p in every[:5]) + (" …" if len(every) > 5 else "")
        raise AudioFileError(
            f"{data}: no audio files here ({len(every)} other files: {shown}); "
            f"supported extensions are {' '.join(AUDIO_EXTENSIONS)}"
        )
    return audio


def trim_silence(samples: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Cut leading/trailing blocks whose RMS is TRIM_BELOW_PEAK_DB below the loudest block -> (view, (cut_start, cut_end)).

    Silence at the ends teaches the model silence (dead air on the device) and skews the held-out end part.
    """
    n_blocks = samples.shape[0] // TRIM_BLOCK
    if n_blocks < 2:
        return samples, (0, 0)
    blocks = samples[: n_blocks * TRIM_BLOCK].reshape(n_blocks, TRIM_BLOCK)
    rms = np.sqrt(np.mean(blocks.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-TRIM_BELOW_PEAK_DB / 20))
    start = int(loud[0]) * TRIM_BLOCK
    stop = samples.shape[0] if loud[-1] == n_blocks - 1 else (int(loud[-1]) + 1) * TRIM_BLOCK
    return samples[start:stop], (start, samples.shape[0] - stop)


def decode(path: str | os.PathLike[str], sample_rate_hz: int) -> DecodedAudio:
    """Decode one file -> mono float32 at ``sample_rate_hz``. Refuses unreadable, NaN-holding and silent audio."""
    path = Path(path)
    parts: list[np.ndarray] = []
    n_bad, first_bad, position = 0, -1, 0
    try:
        # block by block, mixed down as it goes: a long multichannel file never sits in memory whole
        with soundfile.SoundFile(path) as f:
            source_rate, n_channels = int(f.samplerate), int(f.channels)
            for block in f.blocks(blocksize=DECODE_BLOCK, dtype="float32", always_2d=True):
                bad = ~np.isfinite(block)
                if bad.any():
                    if n_bad == 0:
                        first_bad = position + int(np.argwhere(bad)[0][0])
                    n_bad += int(bad.sum())
                parts.append(block.mean(axis=1, dtype=np.float32) if n_channels > 1 else block[:, 0].copy())
                position += block.shape[0]
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        raise AudioFileError(
            f"{path}: cannot be decoded as audio ({exc}); check the file plays, or export it again as WAV or FLAC"
        ) from exc
    if position == 0:
        raise AudioFileError(f"{path}: holds no samples; remove it or export the recording again")
    if n_bad:
        raise AudioFileError(
            f"{path}: {n_bad} samples are NaN or infinite (first at {first_bad / source_rate:.3f} s); "
            "re-export the file from your editor (fixed-point WAV or FLAC cannot hold NaN)"
        )
    mono = np.concatenate(parts) if len(parts) > 1 else parts[0]
    del parts
    notes: list[str] = []
    if n_channels > 1:
        notes.append(f"{n_channels} channels mixed down to mono")
    peak = float(np.max(np.abs(mono)))
    if peak < SILENCE_PEAK:
        level = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        raise AudioFileError(
            f"{path}: the audio is silent (peak {level}); remove the file or record it again with signal"
        )
    mono, trimmed = trim_silence(mono)
    if trimmed[0] + trimmed[1] > 0.05 * source_rate:
        notes.append(f"trimmed silence: {trimmed[0] / source_rate:.2f} s at the start, {trimmed[1] / source_rate:.2f} s at the end")
    if source_rate != sample_rate_hz:
        import librosa  # heavy import, only when needed

        mono = librosa.resample(mono, orig_sr=source_rate, target_sr=sample_rate_hz, res_type="soxr_hq")
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        notes.append(f"resampled {source_rate} Hz -> {sample_rate_hz} Hz")
    return DecodedAudio(
        path=path,
        samples=np.ascontiguousarray(mono, dtype=np.float32),
        sample_rate_hz=sample_rate_hz,
        source_rate_hz=int(source_rate),
        source_channels=int(n_channels),
        notes=notes,
    )
