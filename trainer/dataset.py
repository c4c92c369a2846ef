"""Training data: log-magnitude STFT frames per source file (cached), normalisation, windows sampled by index.

Memory stays bounded for long inputs: each file's frames live in one ``.npy`` file in the cache and are
memory-mapped; batches gather ``seq_len + 1`` frames per window by index (never one copy per window), and the
STFT is computed in chunks. Every file is cut into blocks of ~VAL_BLOCK_S seconds and the last ``val_fraction`` of each block is held out for
validation: the held-out part samples the whole piece, not only its ending (an ending is often a held chord
that "repeat the last frame" predicts perfectly, which says little about the music).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from murmur.device.dsp import frames
from murmur.device.errors import AudioFileError
from murmur.device.files import PendingFile, replace_file, sha256_file

from .audio import decode

CACHE_FORMAT = 3  # bump when the cached content changes meaning (3: ends trimmed at -40 dB re peak block)
DB_PER_NEPER = 20.0 / np.log(10.0)  # natural-log magnitude difference -> dB
STFT_CHUNK_FRAMES = 2048  # frames per STFT chunk: bounds the (chunk, n_fft) temporary to ~16 MB at n_fft 2048
MAX_VALIDATION_WINDOWS = 512  # caps validation memory/time on very long inputs (windows spread evenly)
VAL_BLOCK_S = 10.0  # every file is cut into blocks of about this length; the end of each block is held out


@dataclass(frozen=True)
class FrameSettings:
    """Audio -> frame settings; everything that changes the cached frames is in here."""

    sample_rate_hz: int = 44100
    n_fft: int = 2048
    hop_length: int = 512
    window: str = "hann"
    log_floor: float = 1e-5

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def check(self) -> None:
        """Refuse settings the device cannot play (the same rules as ``murmur.device.bundle.load_bundle``)."""
        if not 8000 <= self.sample_rate_hz <= 192000:
            raise ValueError(f"--sample-rate {self.sample_rate_hz} is outside 8000..192000 Hz")
        if self.n_fft < 64 or self.n_fft & (self.n_fft - 1):
            raise ValueError(f"--n-fft {self.n_fft} must be a power of two >= 64")
        if not 0 < self.hop_length <= self.n_fft // 2:
            raise ValueError(f"--hop {self.hop_length} must be in 1..{self.n_fft // 2} (n_fft / 2)")
        frames.analysis_window(self.n_fft, self.window)

    def cache_tag(self) -> str:
        blob = json.dumps(dict(asdict(self), cache_format=CACHE_FORMAT), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$MURMUR_CACHE``, else ``$XDG_CACHE_HOME/murmur``, else ``~/.cache/murmur``."""
    if os.environ.get("MURMUR_CACHE"):
        return Path(os.environ["MURMUR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "murmur"


@dataclass
class SourceFrames:
    """One source file's log magnitudes, ``log(|STFT| + log_floor)``: (n_frames, n_bins) float32, memory-mapped."""

    path: Path
    sha256: str
    log_mag: np.ndarray
    duration_s: float
    notes: list[str]
    from_cache: bool

    @property
    def n_frames(self) -> int:
        return int(self.log_mag.shape[0])


def _log_magnitudes_into(samples: np.ndarray, settings: FrameSettings, out: np.ndarray) -> None:
    """Centred STFT log magnitudes of (n_samples,) audio into ``out`` (n_frames, n_bins), chunk by chunk."""
    pad = settings.n_fft // 2
    padded = np.pad(samples, pad)
    n_frames = out.shape[0]
    for start in range(0, n_frames, STFT_CHUNK_FRAMES):
        stop = min(start + STFT_CHUNK_FRAMES, n_frames)
        piece = padded[start * settings.hop_length : (stop - 1) * settings.hop_length + settings.n_fft]
        mags = frames.stft_magnitudes(
            piece, n_fft=settings.n_fft, hop_length=settings.hop_length, window=settings.window, center=False
        )
        out[start:stop] = frames.to_log(mags[: stop - start], settings.log_floor)


def load_source(path: Path, settings: FrameSettings, cache_dir: Path) -> SourceFrames:
    """Frames of one file, from the cache when its content and the settings match, else decoded and cached."""
    digest = sha256_file(path)
    stem = f"{digest[:32]}-{settings.cache_tag()}"
    npy_path, info_path = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    if npy_path.is_file() and info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
            log_mag = np.load(npy_path, mmap_mode="r")
            if log_mag.ndim == 2 and log_mag.shape[1] == settings.n_bins and log_mag.dtype == np.float32:
                return SourceFrames(path, digest, log_mag, float(info["duration_s"]), list(info["notes"]), True)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            pass  # a damaged cache entry is rebuilt below
    audio = decode(path, settings.sample_rate_hz)
    n_frames = 1 + audio.samples.shape[0] // settings.hop_length
    with PendingFile(npy_path) as pending:  # written by name through the memmap, then renamed into place
        out = np.lib.format.open_memmap(pending.tmp_path, mode="w+", dtype=np.float32, shape=(n_frames, settings.n_bins))
        _log_magnitudes_into(audio.samples, settings, out)
        out.flush()
        del out
    info = {"source": str(path), "duration_s": audio.duration_s, "notes": audio.notes, "settings": asdict(settings)}
    replace_file(info_path, json.dumps(info))
    return SourceFrames(path, digest, np.load(npy_path, mmap_mode="r"), audio.duration_s, audio.notes, False)


@dataclass
class Segment:
    """A block of a source file, frames [start, stop): its first n_train frames train, the rest is held out."""

    source: SourceFrames
    start: int
    stop: int
    n_train: int

    @property
    def n_frames(self) -> int:
        return self.stop - self.start

    @property
    def log_mag(self) -> np.ndarray:
        """(n_frames, n_bins) float32 view of the source's memory-mapped frames."""
        return self.source.log_mag[self.start : self.stop]


@dataclass
class ValidationSet:
    """Teacher-forced validation windows: inputs/targets (n, seq_len, n_bins) model units, weights (n, seq_len).

    A weight is 1 where the target frame lies in a held-out part (each held-out frame exactly once, with at
    least seq_len/2 frames of real context before it), else 0.
    """

    inputs: np.ndarray
    targets: np.ndarray
    weights: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.weights.sum())


@dataclass
class Dataset:
    """Normalised access to all segments; ``mean`` (n_bins,) and ``std`` define model units
    (docs/ARCHITECTURE.md §4)."""

    settings: FrameSettings
    sources: list[SourceFrames]
    segments: list[Segment]
    mean: np.ndarray
    std: float
    seq_len: int
    val_fraction: float
    validation: ValidationSet = field(repr=False)

    @property
    def n_train_frames(self) -> int:
        return sum(s.n_train for s in self.segments)

    @property
    def n_val_frames(self) -> int:
        return sum(s.n_frames - s.n_train for s in self.segments)

    def normalised(self, log_mag: np.ndarray) -> np.ndarray:
        return frames.normalise(log_mag, self.mean, self.std)

    def train_window_starts(self) -> tuple[np.ndarray, np.ndarray]:
        """Per segment, the number of valid window starts, and its cumulative sum (for uniform sampling)."""
        counts = np.array([s.n_train - self.seq_len for s in self.segments], dtype=np.int64)
        return counts, np.cumsum(counts)

    def sample_batch(self, rng: np.random.Generator, batch_size: int, x_out: np.ndarray, y_out: np.ndarray) -> None:
        """Fill x_out/y_out (batch, seq_len, n_bins) with random training windows (targets = inputs shifted by 1)."""
        counts, cumulative = self.train_window_starts()
        picks = rng.integers(0, int(cumulative[-1]), size=batch_size)
        for row, pick in enumerate(picks):
            seg_index = int(np.searchsorted(cumulative, pick, side="right"))
            start = int(pick - (cumulative[seg_index] - counts[seg_index]))
            window = self.segments[seg_index].log_mag[start : start + self.seq_len + 1]
            window = self.normalised(window)
            x_out[row] = window[:-1]
            y_out[row] = window[1:]

    def persistence_scale(self, noise_std: float = 0.0) -> np.ndarray:
        """Per-bin least-squares coefficient a of x[t+1] ~ a * x[t] over the training frames, (n_bins,) float32.

        With ``noise_std`` the inputs are taken as noisy (x + N(0, noise_std²)), which shrinks a further.
        Model units are centred per bin, so this is "shrink the last frame toward the mean".
        """
        cross = np.zeros(self.mean.shape[0])
        power = np.zeros(self.mean.shape[0])
        count = 0
        for seg in self.segments:
            for start in range(0, seg.n_train - 1, STFT_CHUNK_FRAMES):
                stop = min(start + STFT_CHUNK_FRAMES + 1, seg.n_train)
                block = self.normalised(np.asarray(seg.log_mag[start:stop])).astype(np.float64)
                cross += np.sum(block[:-1] * block[1:], axis=0)
                power += np.sum(block[:-1] ** 2, axis=0)
                count += stop - start - 1
        return (cross / np.maximum(power + count * noise_std**2, 1e-9)).astype(np.float32)

    def summary(self) -> dict:
        """JSON-ready description of the data, for bundle.json and the CLI."""
        def held_out(source: SourceFrames) -> int:
            return sum(s.n_frames - s.n_train for s in self.segments if s.source is source)

        return {
            "files": [
                {
                    "name": src.path.name,
                    "sha256": src.sha256,
                    "duration_s": round(src.duration_s, 3),
                    "frames": src.n_frames,
                    "validation_frames": held_out(src),
                    "notes": src.notes,
                }
                for src in self.sources
            ],
            "total_duration_s": round(sum(src.duration_s for src in self.sources), 3),
            "validation": f"the last {self.val_fraction:g} of every ~{VAL_BLOCK_S:g}-s block of every file",
            "train_frames": self.n_train_frames,
            "validation_frames": self.n_val_frames,
            "seq_len": self.seq_len,
        }


def min_frames(seq_len: int, val_fraction: float) -> int:
    """Smallest file (in frames) that still gives one full training window plus a held-out part."""
    n = seq_len + 2
    while n - max(1, int(round(val_fraction * n))) < seq_len + 1:
        n += 1
    return n


def _normalisation(segments: list[Segment]) -> tuple[np.ndarray, float]:
    """Per-bin mean and one global std of the training frames' log magnitudes (float64 accumulation)."""
    n_bins = segments[0].log_mag.shape[1]
    total = np.zeros(n_bins)
    count = 0
    for seg in segments:
        for start in range(0, seg.n_train, STFT_CHUNK_FRAMES):
            total += seg.log_mag[start : min(start + STFT_CHUNK_FRAMES, seg.n_train)].sum(axis=0, dtype=np.float64)
        count += seg.n_train
    mean = total / count
    sq = 0.0
    for seg in segments:
        for start in range(0, seg.n_train, STFT_CHUNK_FRAMES):
            block = seg.log_mag[start : min(start + STFT_CHUNK_FRAMES, seg.n_train)].astype(np.float64) - mean
            sq += float(np.sum(block * block))
    std = float(np.sqrt(sq / (count * n_bins)))
    return mean.astype(np.float32), std


def _validation_set(segments: list[Segment], mean: np.ndarray, std: float, seq_len: int) -> ValidationSet:
    """Windows whose targets cover every held-out frame once, in chunks of seq_len/2 (see ValidationSet)."""
    chunk = max(1, seq_len // 2)
    picks: list[tuple[Segment, int, int, int]] = []  # (segment, window start, first weighted target, last)
    for seg in segments:
        for first in range(seg.n_train, seg.n_frames, chunk):
            last = min(first + chunk, seg.n_frames) - 1
            picks.append((seg, last - seq_len, first, last))
    if len(picks) > MAX_VALIDATION_WINDOWS:
        keep = np.linspace(0, len(picks) - 1, MAX_VALIDATION_WINDOWS).round().astype(int)
        picks = [picks[i] for i in keep]
    n_bins = mean.shape[0]
    inputs = np.empty((len(picks), seq_len, n_bins), np.float32)
    targets = np.empty_like(inputs)
    weights = np.zeros((len(picks), seq_len), np.float32)
    for row, (seg, start, first, last) in enumerate(picks):
        window = frames.normalise(seg.log_mag[start : start + seq_len + 1], mean, std)
        inputs[row], targets[row] = window[:-1], window[1:]
        # target j is frame start + 1 + j
        weights[row, first - start - 1 : last - start] = 1.0
    return ValidationSet(inputs, targets, weights)


def build_dataset(
    paths: list[Path],
    settings: FrameSettings,
    *,
    seq_len: int = 64,
    val_fraction: float = 0.1,
    cache_dir: Path | None = None,
    on_file: Callable[[SourceFrames], None] | None = None,
) -> Dataset:
    """Decode (or load cached) frames of every file, split each into train/validation, learn the normalisation."""
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"--val-fraction {val_fraction} must be between 0 and 0.5 (0.1 holds out the last 10 %)")
    settings.check()
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    need = min_frames(seq_len, val_fraction)
    block_frames = max(need, int(VAL_BLOCK_S * settings.sample_rate_hz / settings.hop_length))
    sources, segments = [], []
    for path in paths:
        source = load_source(path, settings, cache_dir)
        if source.n_frames < need:
            need_s = need * settings.hop_length / settings.sample_rate_hz
            raise AudioFileError(
                f"{path}: {source.duration_s:.2f} s is shorter than one training window plus its held-out part "
                f"({need_s:.2f} s = {need} frames of hop {settings.hop_length} at {settings.sample_rate_hz} Hz); "
                "remove it, use a longer recording, or lower --seq-len"
            )
        sources.append(source)
        n_blocks = max(1, int(round(source.n_frames / block_frames)))
        edges = np.linspace(0, source.n_frames, n_blocks + 1).round().astype(int)
        for start, stop in zip(edges[:-1], edges[1:], strict=True):
            n_val = max(1, int(round(val_fraction * (stop - start))))
            segments.append(Segment(source, int(start), int(stop), int(stop - start - n_val)))
        if on_file is not None:
            on_file(source)
    mean, std = _normalisation(segments)
    if not std > 0:
        raise AudioFileError(f"{paths[0]}: the spectrum never changes (std 0); use a recording with some variation")
    validation = _validation_set(segments, mean, std, seq_len)
    return Dataset(settings, sources, segments, mean, std, seq_len, val_fraction, validation)


def lsd_db(pred: np.ndarray, target: np.ndarray, weights: np.ndarray, std: float) -> float:
    """Mean log-spectral distance in dB over weighted frames; pred/target (..., n_bins) model units, weights (...)."""
    per_frame = DB_PER_NEPER * std * np.sqrt(np.mean((pred - target) ** 2, axis=-1))
    return float(np.sum(per_frame * weights) / np.sum(weights))
