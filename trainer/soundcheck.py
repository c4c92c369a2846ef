"""Sound check: how close generated audio is to its source at three time scales (Fréchet distance of log-mel
vectors: "frame", "93ms", "1.5s"), whether it copies whole phrases or loops, and whether it stays alive (movement,
static seconds, dead air, level). The figures ``make train`` prints and BENCHMARKS.md reports; each is defined
exactly in docs/ARCHITECTURE.md §9. Pure numpy/scipy/librosa; deterministic (the granular player takes a seed).

Inputs are mono float audio (n_samples,) at one sample rate ``sr`` in Hz. ``evaluate(source, candidate, sr)`` gives
the candidate's figures (``SoundFigures``), ``reference_figures`` the own-half FDs and the granular player's; every
function taking audio also takes an ``Analysis`` (``analyse(audio, sr)``), so a source used several times is
analysed once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from murmur.device.dsp import measures

N_FFT = 2048
HOP = 512  # samples per frame
N_MELS = 64
POWER_FLOOR = 1e-10  # added to the mel power before 10·log10

# scale name -> (frames per window, hop in frames, pooled steps or None, PCA components)
SCALES: dict[str, tuple[int, int, int | None, int]] = {
    "frame": (1, 1, None, 16),
    "93ms": (8, 4, None, 32),
    "1.5s": (129, 22, 16, 32),
}
PHRASE_FRAMES, PHRASE_STEPS, PHRASE_HOP = 129, 16, 22
PHRASE_SOURCE_HOP = 2  # source windows for phrase replay start every 2 frames (bounds memory; 1 would double it)
REPLAY_COMPONENTS = 32
REPLAY_THRESHOLD_FRACTION = 0.25
GRAIN_HOP_S = 0.125  # grains of twice this length, 50 % overlap
VECTOR_BLOCK = 4096  # window vectors built at a time
NEIGHBOUR_BLOCK = 512  # candidate windows per nearest-neighbour block


@dataclass
class SoundFigures:
    """Figures of one candidate against its source (see the module docstring for every definition).

    fd_*: Fréchet distances (dB², PCA of the source) at the frame, 93-ms and 1.5-s scales; replay_pct: % of the
    candidate's 1.5-s windows that nearly copy the source; movement_ratio: median movement of candidate / source;
    static_pct: % of candidate seconds that hardly move; dead_air_pct / source_dead_air_pct: % of 1-s windows
    below -50 dBFS; level_dbfs / source_level_dbfs: RMS level of the whole audio; nan_samples: non-finite samples.
    """

    fd_frame: float
    fd_93ms: float
    fd_1500ms: float
    replay_pct: float
    movement_ratio: float
    static_pct: float
    dead_air_pct: float
    source_dead_air_pct: float
    level_dbfs: float
    source_level_dbfs: float
    nan_samples: int
    loop_pct: float = 0.0  # % of candidate 1.5-s windows that repeat its own output of 1.5-10 s before

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Analysis:
    """One audio signal reduced to what the figures need (``analyse`` makes it).

    mel_db: (n_frames, 64) float32 log-mel frames, dB; second_db: (n_seconds, 1025) float32 mean dB spectrum of
    each whole second; second_rms_dbfs: (n_windows,) RMS of each 1-s window, dBFS; level_dbfs: RMS of the whole
    audio, dBFS; nan_samples: non-finite samples (counted as 0 everywhere else).
    """

    sample_rate_hz: int
    n_samples: int
    mel_db: np.ndarray
    second_db: np.ndarray
    second_rms_dbfs: np.ndarray
    level_dbfs: float
    nan_samples: int
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def movements_db(self) -> np.ndarray:
        """(n_seconds - 1,) movement of each second from the previous one, dB."""
        if "movements" not in self._cache:
            self._cache["movements"] = measures.movements_db(self.second_db)
        return self._cache["movements"]

    @property
    def dead_air_pct(self) -> float:
        return 100.0 * measures.dead_air_share(self.second_rms_dbfs)


def _mel_filters(sr: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS, fmax=sr / 2).astype(np.float32).T  # (1025, 64)


def _check_audio(audio: np.ndarray, sr: int, what: str) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"{what}: expected mono audio of shape (n_samples,), got shape {audio.shape}; mix it down first")
    if not (isinstance(sr, int | np.integer) and sr > 0):
        raise ValueError(f"{what}: sample rate {sr!r} must be a positive integer in Hz")
    if audio.shape[0] < N_FFT:
        raise ValueError(f"{what}: {audio.shape[0]} samples is shorter than one STFT frame ({N_FFT} samples)")
    return audio


def analyse(audio: np.ndarray, sr: int, *, what: str = "audio") -> Analysis:
    """(n_samples,) float audio at ``sr`` Hz -> Analysis: log-mel frames, per-second spectra, levels, NaN count.

    One pass of ``murmur.device.dsp.measures.measure_audio`` (the STFT in blocks of measures.BLOCK_S) gives the
    liveness figures and, frame by frame, the magnitudes the log-mel frames are made from. Memory: an hour at
    44.1 kHz needs ~80 MB for mel_db and ~15 MB for second_db beyond the audio itself.
    """
    audio = _check_audio(audio, sr, what)
    fb = _mel_filters(sr)
    mel_db = np.empty((1 + audio.shape[0] // HOP, N_MELS), dtype=np.float32)

    def to_mel(first: int, mag: np.ndarray) -> None:
        mel_db[first : first + mag.shape[0]] = 10.0 * np.log10((mag * mag) @ fb + np.float32(POWER_FLOOR))

    found = measures.measure_audio(audio, sr, n_fft=N_FFT, hop_length=HOP, on_magnitudes=to_mel)
    return Analysis(
        sample_rate_hz=int(sr),
        n_samples=found.n_samples,
        mel_db=mel_db,
        second_db=found.second_db,
        second_rms_dbfs=found.window_levels_dbfs,
        level_dbfs=found.level_dbfs,
        nan_samples=found.nonfinite_samples,
    )


def _as_analysis(audio_or_analysis, sr: int, what: str) -> Analysis:
    if isinstance(audio_or_analysis, Analysis):
        if audio_or_analysis.sample_rate_hz != sr:
            raise ValueError(f"{what}: analysed at {audio_or_analysis.sample_rate_hz} Hz, asked for {sr} Hz")
        return audio_or_analysis
    return analyse(audio_or_analysis, sr, what=what)


def log_mel_db(audio: np.ndarray, sr: int) -> np.ndarray:
    """(n_samples,) audio -> (1 + n_samples // 512, 64) float32 log-mel frames in dB (module docstring)."""
    return analyse(audio, sr).mel_db


# ----------------------------------------------------------------------------------------------- window vectors


def _n_windows(n_frames: int, length: int, hop: int) -> int:
    return 0 if n_frames < length else 1 + (n_frames - length) // hop


def _pool_edges(length: int, steps: int) -> np.ndarray:
    return (np.arange(steps + 1) * length) // steps  # [0, 8, 16, …, 120, 129] for 129 frames in 16 steps


def window_vectors(mel_db: np.ndarray, length: int, hop: int, steps: int | None = None,
                   block: int = VECTOR_BLOCK) -> Iterator[np.ndarray]:
    """Windows of ``length`` frames every ``hop`` frames of (n_frames, 64) dB -> blocks of (m, dims) float64.

    Stacked frame after frame (dims = length·64), or average-pooled into ``steps`` steps (dims = steps·64).
    """
    n = _n_windows(mel_db.shape[0], length, hop)
    edges = None if steps is None else _pool_edges(length, steps)
    for w0 in range(0, n, block):
        w1 = min(n, w0 + block)
        f0, f1 = w0 * hop, (w1 - 1) * hop + length  # frames this block reads
        part = np.asarray(mel_db[f0:f1], dtype=np.float64)
        starts = np.arange(w1 - w0) * hop
        if edges is None:
            if length == 1:
                yield part[starts]
            else:
                view = np.lib.stride_tricks.sliding_window_view(part, length, axis=0)[starts]  # (m, 64, length)
                yield view.transpose(0, 2, 1).reshape(w1 - w0, -1)
        else:
            cs = np.concatenate([np.zeros((1, part.shape[1])), np.cumsum(part, axis=0)])  # (frames + 1, 64)
            sums = np.diff(cs[starts[:, None] + edges[None, :]], axis=1)  # (m, steps, 64)
            yield (sums / np.diff(edges)[None, :, None]).reshape(w1 - w0, -1)


def _scale_vectors(mel_db: np.ndarray, scale: str, hop: int | None = None) -> Iterator[np.ndarray]:
    length, scale_hop, steps, _ = SCALES[scale]
    return window_vectors(mel_db, length, scale_hop if hop is None else hop, steps)


# ------------------------------------------------------------------------------------------------------- PCA + FD


@dataclass
class Pca:
    """Mean (dims,) and components (dims, k) fitted on a reference set of vectors."""

    mean: np.ndarray
    components: np.ndarray

    def project(self, blocks: Iterator[np.ndarray] | np.ndarray) -> np.ndarray:
        """Vectors (m, dims), or blocks of them -> (m, k) float64."""
        parts = [(b - self.mean) @ self.components for b in ([blocks] if isinstance(blocks, np.ndarray) else blocks)]
        k = self.components.shape[1]
        return np.concatenate(parts) if parts else np.zeros((0, k))


def fit_pca(make_blocks, n_components: int, *, what: str = "reference") -> Pca:
    """PCA of the vectors yielded by ``make_blocks()`` (called twice: mean, then centred covariance).

    Keeps min(n_components, n_vectors - 1) eigenvectors of the covariance (n - 1), largest eigenvalues first.
    With fewer vectors than dimensions the same eigenvectors come from the (n, n) Gram matrix (cheaper).
    """
    from scipy.linalg import eigh

    total: np.ndarray | None = None
    count = 0
    for b in make_blocks():
        total = b.sum(axis=0) if total is None else total + b.sum(axis=0)
        count += b.shape[0]
    if count < 2 or total is None:
        raise ValueError(f"{what}: {count} vector(s); at least 2 are needed for a covariance (the audio is too short)")
    mean = total / count
    dims = mean.shape[0]
    k = max(1, min(n_components, count - 1, dims))
    if count <= dims:  # covariance eigenvectors = Xcᵀ·u / sqrt(λ), u the Gram matrix's eigenvectors
        centred = np.concatenate([b - mean for b in make_blocks()])  # (count, dims), count <= dims
        values, vectors = eigh(centred @ centred.T, subset_by_index=[count - k, count - 1], driver="evr")
        values, vectors = values[::-1], vectors[:, ::-1]
        keep = values > 1e-9 * max(float(values[0]), 1e-300)  # directions with no variance have no eigenvector here
        keep[0] = True
        components = centred.T @ vectors[:, keep] / np.sqrt(np.maximum(values[keep], 1e-300))
        return Pca(mean, components)
    scatter = np.zeros((dims, dims))
    for b in make_blocks():
        c = b - mean
        scatter += c.T @ c
    values, vectors = eigh(scatter / (count - 1), subset_by_index=[dims - k, dims - 1], driver="evr")
    return Pca(mean, vectors[:, ::-1])


def frechet_distance(reference: np.ndarray, candidate: np.ndarray) -> float:
    """FD between two sets of already projected vectors, (n_r, k) and (n_c, k) -> dB² (module docstring)."""
    from scipy.linalg import sqrtm

    if reference.shape[0] < 2 or candidate.shape[0] < 2:
        raise ValueError(f"Fréchet distance needs at least 2 vectors per set, got {reference.shape[0]} (reference) "
                         f"and {candidate.shape[0]} (candidate); the audio is too short for this scale")
    mu_r, mu_c = reference.mean(axis=0), candidate.mean(axis=0)
    s_r = np.atleast_2d(np.cov(reference, rowvar=False))
    s_c = np.atleast_2d(np.cov(candidate, rowvar=False))
    root = sqrtm(s_r @ s_c)
    if not np.all(np.isfinite(root)):
        eye = np.eye(s_r.shape[0]) * 1e-6
        root = sqrtm((s_r + eye) @ (s_c + eye))
    fd = float(np.sum((mu_r - mu_c) ** 2) + np.trace(s_r) + np.trace(s_c) - 2.0 * np.trace(np.real(root)))
    return max(0.0, fd)


def _fd_scale(ref_mel: np.ndarray, cand_mel: np.ndarray, scale: str, pca: Pca | None = None) -> float:
    if pca is None:
        pca = fit_pca(lambda: _scale_vectors(ref_mel, scale), SCALES[scale][3], what=f"reference at scale {scale}")
    return frechet_distance(pca.project(_scale_vectors(ref_mel, scale)), pca.project(_scale_vectors(cand_mel, scale)))


def _source_pca(source: Analysis, scale: str) -> tuple[Pca, np.ndarray]:
    key = ("fd_pca", scale)
    if key not in source._cache:
        pca = fit_pca(lambda: _scale_vectors(source.mel_db, scale), SCALES[scale][3], what=f"source at scale {scale}")
        source._cache[key] = (pca, pca.project(_scale_vectors(source.mel_db, scale)))
    return source._cache[key]


def _check_frames(mel_db: np.ndarray, what: str, sr: int) -> None:
    need = PHRASE_FRAMES + PHRASE_HOP  # two 1.5-s windows
    if mel_db.shape[0] < need:
        raise ValueError(f"{what}: {mel_db.shape[0]} frames ({(mel_db.shape[0] - 1) * HOP / sr:.2f} s) is too short; "
                         f"the 1.5-s scale needs at least {need} frames ({(need - 1) * HOP / sr:.2f} s)")


def frechet_distances(reference_audio, candidate_audio, sr: int) -> dict[str, float]:
    """FD of the candidate against the reference at each scale -> {"frame", "93ms", "1.5s"}: dB².

    Audio (n_samples,) float at ``sr`` Hz, or an ``Analysis``. The PCA is fitted on the reference.
    """
    ref = _as_analysis(reference_audio, sr, "reference audio")
    cand = _as_analysis(candidate_audio, sr, "candidate audio")
    _check_frames(ref.mel_db, "reference audio", sr)
    _check_frames(cand.mel_db, "candidate audio", sr)
    out = {}
    for scale in SCALES:
        pca, ref_proj = _source_pca(ref, scale)
        out[scale] = frechet_distance(ref_proj, pca.project(_scale_vectors(cand.mel_db, scale)))
    return out


def own_half(source, sr: int) -> dict[str, float]:
    """FD of the source's second half (frames h…, h = n_frames // 2) against its first half (frames 0…h-1), per
    scale -> {"frame", "93ms", "1.5s"}: dB². ``source``: (n_samples,) audio at ``sr`` Hz or an ``Analysis``."""
    src = _as_analysis(source, sr, "source audio")
    h = src.mel_db.shape[0] // 2
    first, second = src.mel_db[:h], src.mel_db[h:]
    _check_frames(first, "first half of the source", sr)
    if "own_half" not in src._cache:
        src._cache["own_half"] = {scale: _fd_scale(first, second, scale) for scale in SCALES}
    return dict(src._cache["own_half"])


# ------------------------------------------------------------------------------------------------ granular player


def granular_player(source: np.ndarray, seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A no-model reference player -> (round(seconds·sr),) float32: 0.25-s Hann grains from uniformly random
    source positions, 50 % overlap, normalised sample by sample by sqrt(Σ w²) (module docstring)."""
    source = np.asarray(source, dtype=np.float32)
    if source.ndim != 1:
        raise ValueError(f"granular_player: expected mono audio (n_samples,), got shape {source.shape}")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"granular_player: seconds={seconds!r} must be a positive number")
    hop = int(round(GRAIN_HOP_S * sr))
    grain = 2 * hop
    if source.shape[0] < grain:
        raise ValueError(f"granular_player: the source has {source.shape[0]} samples, fewer than one grain ({grain} "
                         f"samples = {grain / sr:.3f} s)")
    n = int(round(seconds * sr))
    n_grains = -(-n // hop) + 1
    positions = np.random.default_rng(seed).integers(0, source.shape[0] - grain + 1, size=n_grains)
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(grain) / grain)).astype(np.float32)
    buf = np.zeros((n_grains + 1) * hop, dtype=np.float32)  # buffer sample b = output sample b - hop
    for i, p in enumerate(positions):
        buf[i * hop : i * hop + grain] += source[p : p + grain] * w
    # every buffer sample from hop on lies under two grains, at window phases m and m + hop (m = b mod hop)
    norm = np.sqrt(w[:hop].astype(np.float64) ** 2 + w[hop:].astype(np.float64) ** 2).astype(np.float32)
    buf.reshape(-1, hop)[:] /= norm
    return buf[hop : hop + n]  # a contiguous view: no second copy of an hour of audio


# ------------------------------------------------------------------------------------------------- phrase replay


def _phrase_space(src: Analysis) -> tuple[Pca, np.ndarray, float]:
    """Source 1.5-s windows at hop 2 -> (PCA, projected windows (n_s, k), replay threshold)."""
    if "phrase" in src._cache:
        return src._cache["phrase"]
    mel = src.mel_db
    h = mel.shape[0] // 2
    _check_frames(mel[:h], "first half of the source (phrase replay)", src.sample_rate_hz)

    def blocks():
        return window_vectors(mel, PHRASE_FRAMES, PHRASE_SOURCE_HOP, PHRASE_STEPS)

    pca = fit_pca(blocks, REPLAY_COMPONENTS, what="source 1.5-s windows")
    projected = pca.project(blocks())
    starts = np.arange(projected.shape[0]) * PHRASE_SOURCE_HOP
    first = projected[starts + PHRASE_FRAMES <= h]
    second = projected[starts >= h]
    threshold = REPLAY_THRESHOLD_FRACTION * float(np.median(_nearest_distances(second, first)))
    src._cache["phrase"] = (pca, projected, threshold)
    return src._cache["phrase"]


def _nearest_distances(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """(m, k) and (p, k) -> (m,) Euclidean distance from each query to its nearest pool vector (blocked)."""
    pool_sq = np.sum(pool * pool, axis=1)
    out = np.empty(queries.shape[0])
    for q0 in range(0, queries.shape[0], NEIGHBOUR_BLOCK):
        q = queries[q0 : q0 + NEIGHBOUR_BLOCK]
        d2 = np.sum(q * q, axis=1)[:, None] + pool_sq[None, :] - 2.0 * (q @ pool.T)
        out[q0 : q0 + q.shape[0]] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def phrase_replay(source, candidate, sr: int) -> float:
    """% of the candidate's 1.5-s windows (hop 22 frames) within the replay threshold of a source window (hop 2).

    ``source``/``candidate``: (n_samples,) audio at ``sr`` Hz or ``Analysis``; definition in the module docstring.
    """
    src = _as_analysis(source, sr, "source audio")
    cand = _as_analysis(candidate, sr, "candidate audio")
    _check_frames(cand.mel_db, "candidate audio", sr)
    pca, src_proj, threshold = _phrase_space(src)
    cand_proj = pca.project(window_vectors(cand.mel_db, PHRASE_FRAMES, PHRASE_HOP, PHRASE_STEPS))
    nearest = _nearest_distances(cand_proj, src_proj)
    return float(100.0 * np.mean(nearest < threshold))


LOOP_WINDOW_FRAMES = 861  # 10 s: an earlier window this recent that the candidate repeats makes a loop


def loop_pct(source, candidate, sr: int) -> float:
    """% of the candidate's 1.5-s windows that nearly copy one of its own windows 1.5-10 s earlier (see above)."""
    src = _as_analysis(source, sr, "source audio")
    cand = _as_analysis(candidate, sr, "candidate audio")
    pca, _, threshold = _phrase_space(src)
    mel = cand.mel_db
    queries = pca.project(window_vectors(mel, PHRASE_FRAMES, PHRASE_HOP, PHRASE_STEPS))  # window i starts at 22 i
    pool = pca.project(window_vectors(mel, PHRASE_FRAMES, PHRASE_SOURCE_HOP, PHRASE_STEPS))  # window j at 2 j
    query_starts = np.arange(queries.shape[0]) * PHRASE_HOP
    best = np.full(queries.shape[0], np.inf)
    for lag in range(PHRASE_FRAMES + 1, LOOP_WINDOW_FRAMES + 1, PHRASE_SOURCE_HOP):  # even lags: pool starts are even
        earlier = query_starts - lag
        valid = earlier >= 0
        if not valid.any():
            break
        d = np.sqrt(np.sum((queries[valid] - pool[earlier[valid] // PHRASE_SOURCE_HOP]) ** 2, axis=1))
        np.minimum(best[valid], d, out=d)
        best[valid] = d
    return float(100.0 * np.mean(best < threshold)) if queries.shape[0] else 0.0


# -------------------------------------------------------------------------------------------------- entry points


def evaluate(source, candidate, sr: int) -> SoundFigures:
    """All figures of ``candidate`` against ``source``: (n_samples,) float audio at ``sr`` Hz, or ``Analysis``.

    Raises ValueError naming the signal when one is too short (at 44.1 kHz the source needs ≥ 3.5 s: two halves
    holding two 1.5-s windows each; the candidate ≥ 1.75 s).
    """
    src = _as_analysis(source, sr, "source audio")
    cand = _as_analysis(candidate, sr, "candidate audio")
    need = 2 * (PHRASE_FRAMES + PHRASE_HOP)
    if src.mel_db.shape[0] < need:
        raise ValueError(f"source audio: {src.n_samples / sr:.2f} s is too short for the sound check; it needs "
                         f"{need} frames ({(need - 1) * HOP / sr:.2f} s): two halves holding two 1.5-s windows each")
    fds = frechet_distances(src, cand, sr)
    src_moves, cand_moves = src.movements_db, cand.movements_db
    if src_moves.size == 0 or cand_moves.size == 0:
        raise ValueError(f"movement needs at least 2 whole seconds of audio; the source has {src.n_samples / sr:.2f} s "
                         f"and the candidate {cand.n_samples / sr:.2f} s")
    return SoundFigures(
        fd_frame=fds["frame"],
        fd_93ms=fds["93ms"],
        fd_1500ms=fds["1.5s"],
        replay_pct=phrase_replay(src, cand, sr),
        movement_ratio=measures.movement_ratio(cand_moves, src_moves),
        static_pct=100.0 * measures.static_share(cand_moves, src_moves),
        dead_air_pct=cand.dead_air_pct,
        source_dead_air_pct=src.dead_air_pct,
        level_dbfs=cand.level_dbfs,
        source_level_dbfs=src.level_dbfs,
        nan_samples=cand.nan_samples,
        loop_pct=loop_pct(src, cand, sr),
    )


def reference_figures(source, sr: int, seconds: float, seed: int = 0, *, source_audio: np.ndarray | None = None) -> dict:
    """What the source scores without a model -> {"own_half": {"frame", "93ms", "1.5s"} (dB²), "granular":
    SoundFigures of ``granular_player(source, seconds, sr, seed)`` against the source}.

    ``source``: (n_samples,) float audio at ``sr`` Hz (or an ``Analysis``, then pass the samples as
    ``source_audio`` for the granular player).
    """
    if isinstance(source, Analysis):
        if source_audio is None:
            raise ValueError("reference_figures: with an Analysis as source, pass the samples as source_audio=")
        src, samples = source, source_audio
    else:
        src, samples = analyse(source, sr, what="source audio"), source
    granular = granular_player(np.nan_to_num(np.asarray(samples, dtype=np.float32)), seconds, sr, seed)
    return {"own_half": own_half(src, sr), "granular": evaluate(src, granular, sr)}


def summary_lines(figures: SoundFigures, refs: dict | None = None, *, what: str = "generated") -> list[str]:
    """Four short lines for the trainer's output and picture: ``figures`` of the candidate, ``refs`` from
    ``reference_figures`` (optional)."""
    f = figures
    fd = f"{f.fd_frame:.1f} / {f.fd_93ms:.1f} / {f.fd_1500ms:.1f}"
    lines = [f"sound check, {what} vs training audio (trainer/soundcheck.py; FD lower = closer):"]
    if refs:
        own, g = refs["own_half"], refs["granular"]
        lines.append(f"  Fréchet distance frame / 93 ms / 1.5 s: {fd}  (source's own halves {own['frame']:.1f} / "
                     f"{own['93ms']:.1f} / {own['1.5s']:.1f}; granular player {g.fd_frame:.1f} / {g.fd_93ms:.1f} / "
                     f"{g.fd_1500ms:.1f})")
        lines.append(f"  phrase replay {f.replay_pct:.0f} % (granular {g.replay_pct:.0f} %; ≤ 20 % wanted), movement "
                     f"x{f.movement_ratio:.2f} (granular x{g.movement_ratio:.2f}), static seconds {f.static_pct:.0f} %")
    else:
        lines.append(f"  Fréchet distance frame / 93 ms / 1.5 s: {fd}")
        lines.append(f"  phrase replay {f.replay_pct:.0f} % (≤ 20 % wanted), movement x{f.movement_ratio:.2f}, "
                     f"static seconds {f.static_pct:.0f} %")
    lines.append(f"  dead air {f.dead_air_pct:.0f} % of seconds (source {f.source_dead_air_pct:.0f} %), level "
                 f"{f.level_dbfs:.1f} dBFS (source {f.source_level_dbfs:.1f} dBFS), NaN samples {f.nan_samples}")
    return lines
