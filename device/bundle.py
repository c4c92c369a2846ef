"""The bundle: the contract between trainer and device, a directory of ``model.tflite`` (the one-frame step model),
``seeds.npz`` (the frame bank: uint8 frames of the training audio, from format 2 with their PCA index) and
``bundle.json`` (settings, tensor names, training summary, the sha256 of every other file); each file's content:
docs/ARCHITECTURE.md §2.

``load_bundle`` checks all of it before anything plays; ``write_bundle`` replaces a bundle directory atomically
(temporary sibling directory + rename), so an interrupted export leaves the old bundle or none, never half of one.
The TFLite runtime check (the model really loads and steps) lives in ``murmur.device.generate.step_model``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from murmur.device.errors import BundleError
from murmur.device.files import fsync_dir, sha256_file

FORMAT = "murmur-bundle"
FORMAT_VERSION = 2  # what the trainer writes: 2 = the seeds are the frame bank, with its PCA index
READABLE_VERSIONS = (1, 2)  # 1: seeds only (played by the regression sampler, murmur.device.generate.sampler)
META_FILE = "bundle.json"
MODEL_FILE = "model.tflite"
SEEDS_FILE = "seeds.npz"
TFLITE_MAGIC = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer


@dataclass(frozen=True)
class AudioSpec:
    """STFT settings the model was trained on; the vocoder must use the same."""

    sample_rate_hz: int
    n_fft: int
    hop_length: int
    window: str = "hann"

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frame_s(self) -> float:
        """Duration of one hop in seconds (11.61 ms at 44.1 kHz, hop 512)."""
        return self.hop_length / self.sample_rate_hz


@dataclass(frozen=True)
class ModelSpec:
    """Where the step model's tensors are: signature key, frame input/output and the state names, in order.

    ``input_states[i]`` is fed with the value of ``output_states[i]`` from the previous step.
    """

    file: str
    signature: str
    input_frame: str
    output_frame: str
    input_states: tuple[str, ...]
    output_states: tuple[str, ...]
    state_sizes: tuple[int, ...]
    quantisation: str


@dataclass(frozen=True)
class ContextIndex:
    """Where in the recording each bank frame fits, as the LSTM hears it (optional part of a format-2 bank).

    ``keys[j] = components @ (h_before(j) - mean)``: ``h_before(j)`` is the LSTM state ``state`` (the last layer's
    h) after the step model has run over the bank's frames up to j - 1 from a zeroed state at the start of j's run.
    A cut compares the state of what was played with these keys: the frames whose past sounds like the present.
    """

    state: str  # the step model's state that is compared, e.g. "h2"
    mean: np.ndarray  # (state_size,) float32
    components: np.ndarray  # (n_dims, state_size) float32
    keys: np.ndarray  # (n_frames, n_dims) float32 (stored as float16)

    @property
    def n_dims(self) -> int:
        return int(self.components.shape[0])


@dataclass(frozen=True)
class BankIndex:
    """Format 2: a PCA of the bank frames, so the generator finds real frames near a predicted one.

    ``coords[i] = (seed_frames(i) - mean) @ components.T``, all in model units.
    """

    mean: np.ndarray  # (n_bins,) float32
    components: np.ndarray  # (n_dims, n_bins) float32, orthonormal rows
    coords: np.ndarray  # (n_frames, n_dims) float32 (stored as float16)
    context: ContextIndex | None = None

    @property
    def n_dims(self) -> int:
        return int(self.components.shape[0])


CONTEXT_ARRAYS = ("context_mean", "context_components", "context_keys")


@dataclass(frozen=True)
class Bundle:
    """A verified bundle, loaded in memory. Seeds stay uint8 (one byte per bin) until a window is asked for."""

    path: Path
    meta: dict[str, Any]
    audio: AudioSpec
    model: ModelSpec
    log_floor: float
    std: float
    mean: np.ndarray  # (n_bins,) float32, per-bin mean of log magnitudes
    lo: np.ndarray  # (n_bins,) float32, per-bin minimum seen in training, model units
    hi: np.ndarray  # (n_bins,) float32, per-bin maximum seen in training, model units
    seeds_u8: np.ndarray  # (n_seed_frames, n_bins) uint8
    segment_starts: np.ndarray  # (n_segments,) int64
    bank: BankIndex | None = None  # format 2: the PCA index over the seed frames (the frame bank); None in format 1

    @property
    def format_version(self) -> int:
        return int(self.meta.get("format_version", 1))

    @property
    def bundle_id(self) -> str:
        return str(self.meta.get("bundle_id", "unknown"))

    @property
    def model_path(self) -> Path:
        return self.path / self.model.file

    @property
    def n_seed_frames(self) -> int:
        return int(self.seeds_u8.shape[0])

    def seed_frames(self, start: int, count: int, out: np.ndarray | None = None) -> np.ndarray:
        """Seed frames [start, start+count) in model units -> (count, n_bins) float32 (into ``out`` if given)."""
        if not 0 <= start <= self.n_seed_frames - count:
            raise IndexError(f"seed window {start}+{count} outside 0..{self.n_seed_frames}")
        if out is None:
            out = np.empty((count, self.audio.n_bins), dtype=np.float32)
        np.multiply(self.seeds_u8[start : start + count], (self.hi - self.lo) / np.float32(255.0), out=out)
        np.add(out, self.lo, out=out)
        return out

    def seed_magnitudes(self, start: int, count: int, out: np.ndarray) -> np.ndarray:
        """Seed frames [start, start+count) as linear magnitudes, computed in ``out`` (count, n_bins) float32."""
        frames = self.seed_frames(start, count, out=out)
        np.multiply(frames, np.float32(self.std), out=frames)
        np.add(frames, self.mean, out=frames)
        np.exp(frames, out=frames)
        np.subtract(frames, np.float32(self.log_floor), out=frames)
        np.maximum(frames, 0.0, out=frames)
        return frames


def _require(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    if key not in table:
        raise BundleError(f"{where}: key {key!r} is missing; re-export the bundle with `make train`")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BundleError(f"{where}: key {key!r} has value {value!r}, expected {kind}; re-export the bundle")
    return value


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and check a bundle directory: version, checksums, settings, array shapes. Raises BundleError."""
    path = Path(path)
    meta_path = path / META_FILE
    meta, version = _read_meta(path, meta_path)
    files = _check_files(path, meta, meta_path)
    audio = _audio_spec(meta, meta_path)
    log_floor, std = _normalisation(meta, meta_path)
    model = _model_spec(meta, meta_path, files)
    _check_tflite_magic(path / model.file)
    seeds_path = path / SEEDS_FILE
    arrays = _read_seed_arrays(seeds_path, version)
    seeds_u8, segment_starts = _check_seed_arrays(arrays, seeds_path, audio)
    bank = _bank_index(arrays, seeds_path, audio.n_bins) if version >= 2 else None
    if bank is not None and all(key in arrays for key in CONTEXT_ARRAYS):
        bank = replace(bank, context=_context_index(arrays, seeds_path, meta, model))
    return Bundle(
        path=path,
        meta=meta,
        audio=audio,
        model=model,
        log_floor=log_floor,
        std=std,
        mean=arrays["mean"].astype(np.float32),
        lo=arrays["lo"].astype(np.float32),
        hi=arrays["hi"].astype(np.float32),
        seeds_u8=seeds_u8,
        segment_starts=segment_starts,
        bank=bank,
    )


def _read_meta(path: Path, meta_path: Path) -> tuple[dict[str, Any], int]:
    """bundle.json of the directory ``path``, with its format and a version this device reads -> (meta, version)."""
    if not path.is_dir():
        raise BundleError(f"{path}: not a directory; pass a bundle directory written by `make train`")
    if not meta_path.is_file():
        raise BundleError(f"{path}: no {META_FILE} here, so this is not a bundle; pass a directory written by `make train`")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path}: unreadable JSON ({exc}); re-export the bundle") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{meta_path}: format is {meta.get('format') if isinstance(meta, dict) else meta!r}, expected {FORMAT!r}")
    version = meta.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise BundleError(
            f"{meta_path}: format_version {version!r} is not supported by this device (it reads {readable}); "
            "update the device code (`make deploy`) or re-export the bundle with this version of the trainer"
        )
    return meta, version


def _check_files(path: Path, meta: dict[str, Any], meta_path: Path) -> dict[str, Any]:
    """Every file listed in ``files`` is a plain name, present, and has its listed sha256 -> the ``files`` table."""
    files = _require(meta, "files", dict, meta_path)
    for name in (MODEL_FILE, SEEDS_FILE):
        if name not in files:
            raise BundleError(f"{meta_path}: 'files' does not list {name}; re-export the bundle")
    for name, entry in files.items():
        file_path = path / name
        if Path(name).name != name:
            raise BundleError(f"{meta_path}: file name {name!r} is not a plain name")
        if not file_path.is_file():
            raise BundleError(f"{file_path}: missing (listed in {META_FILE}); copy the whole bundle directory again")
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        actual = sha256_file(file_path)
        if actual != expected:
            raise BundleError(
                f"{file_path}: checksum mismatch (sha256 {actual[:12]}…, {META_FILE} says {str(expected)[:12]}…); "
                "the file is damaged or was changed: copy the bundle again or re-export it"
            )
    return files


def _audio_spec(meta: dict[str, Any], meta_path: Path) -> AudioSpec:
    """The ``audio`` table, checked: rate 8-192 kHz, n_fft a power of two >= 64, hop <= n_fft/2, Hann."""
    audio_table = _require(meta, "audio", dict, meta_path)
    audio = AudioSpec(
        sample_rate_hz=_require(audio_table, "sample_rate_hz", int, meta_path),
        n_fft=_require(audio_table, "n_fft", int, meta_path),
        hop_length=_require(audio_table, "hop_length", int, meta_path),
        window=_require(audio_table, "window", str, meta_path),
    )
    if not (8000 <= audio.sample_rate_hz <= 192000):
        raise BundleError(f"{meta_path}: audio.sample_rate_hz={audio.sample_rate_hz} is outside 8000..192000")
    if audio.n_fft < 64 or audio.n_fft & (audio.n_fft - 1):
        raise BundleError(f"{meta_path}: audio.n_fft={audio.n_fft} must be a power of two >= 64")
    if not (0 < audio.hop_length <= audio.n_fft // 2):
        raise BundleError(f"{meta_path}: audio.hop_length={audio.hop_length} must be in 1..n_fft/2 ({audio.n_fft // 2})")
    if audio.window != "hann":
        raise BundleError(f"{meta_path}: audio.window={audio.window!r} is not supported (only 'hann')")
    return audio


def _normalisation(meta: dict[str, Any], meta_path: Path) -> tuple[float, float]:
    """The ``normalisation`` table -> (log_floor, std), both finite and > 0."""
    norm = _require(meta, "normalisation", dict, meta_path)
    log_floor = float(_require(norm, "log_floor", (int, float), meta_path))
    std = float(_require(norm, "std", (int, float), meta_path))
    if not (log_floor > 0 and np.isfinite(std) and std > 0):
        raise BundleError(f"{meta_path}: normalisation log_floor={log_floor}, std={std} must both be > 0")
    return log_floor, std


def _model_spec(meta: dict[str, Any], meta_path: Path, files: dict[str, Any]) -> ModelSpec:
    """The ``model`` table: tensor names, one state size per state pair, and a model file listed in ``files``."""
    model_table = _require(meta, "model", dict, meta_path)
    input_states = tuple(_require(model_table, "input_states", list, meta_path))
    output_states = tuple(_require(model_table, "output_states", list, meta_path))
    state_sizes = tuple(int(s) for s in _require(model_table, "state_sizes", list, meta_path))
    if not (len(input_states) == len(output_states) == len(state_sizes) > 0):
        raise BundleError(
            f"{meta_path}: model has {len(input_states)} input states, {len(output_states)} output states and "
            f"{len(state_sizes)} state sizes; they must match"
        )
    model = ModelSpec(
        file=_require(model_table, "file", str, meta_path),
        signature=_require(model_table, "signature", str, meta_path),
        input_frame=_require(model_table, "input_frame", str, meta_path),
        output_frame=_require(model_table, "output_frame", str, meta_path),
        input_states=input_states,
        output_states=output_states,
        state_sizes=state_sizes,
        quantisation=_require(model_table, "quantisation", str, meta_path),
    )
    if model.file not in files:
        raise BundleError(f"{meta_path}: model file {model.file!r} is not listed in 'files'")
    return model


def _check_tflite_magic(model_path: Path) -> None:
    """The model file carries the TFLite flatbuffer identifier (bytes 4..8)."""
    with open(model_path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_MAGIC:
        raise BundleError(f"{model_path}: not a TFLite flatbuffer (no 'TFL3' identifier); re-export the bundle")


def _read_seed_arrays(seeds_path: Path, version: int) -> dict[str, np.ndarray]:
    """The arrays of seeds.npz that format ``version`` needs, by name (all present, no pickles)."""
    keys: tuple[str, ...] = ("frames_u8", "lo", "hi", "mean", "segment_starts")
    if version >= 2:
        keys += ("pca_mean", "pca_components", "bank_coords")
    try:
        with np.load(seeds_path, allow_pickle=False) as npz:
            missing = [key for key in keys if key not in npz.files]
            if missing:
                raise BundleError(f"{seeds_path}: array {', '.join(repr(k) for k in missing)} missing (format "
                                  f"{version} needs {', '.join(keys)}); re-export the bundle with `make train`")
            return {key: npz[key] for key in (*keys, *(k for k in CONTEXT_ARRAYS if k in npz.files))}
    except BundleError:
        raise
    except (OSError, ValueError) as exc:
        raise BundleError(f"{seeds_path}: unreadable ({exc}); re-export the bundle") from exc


def _check_seed_arrays(arrays: dict[str, np.ndarray], seeds_path: Path, audio: AudioSpec) -> tuple[np.ndarray, np.ndarray]:
    """Shapes, dtypes and finiteness of the seed frames and per-bin arrays, and the segment starts -> (frames_u8
    (n, n_bins) uint8, segment_starts (n_segments,) int64)."""
    n_bins = audio.n_bins
    seeds_u8 = arrays["frames_u8"]
    if seeds_u8.dtype != np.uint8 or seeds_u8.ndim != 2 or seeds_u8.shape[1] != n_bins or seeds_u8.shape[0] < 1:
        raise BundleError(
            f"{seeds_path}: frames_u8 has shape {seeds_u8.shape} dtype {seeds_u8.dtype}, expected (n, {n_bins}) uint8 "
            f"for n_fft={audio.n_fft}"
        )
    for key in ("lo", "hi", "mean"):
        if arrays[key].shape != (n_bins,) or not np.all(np.isfinite(arrays[key])):
            raise BundleError(f"{seeds_path}: {key} has shape {arrays[key].shape} or non-finite values, expected ({n_bins},) finite")
    segment_starts = arrays["segment_starts"].astype(np.int64)
    if segment_starts.ndim != 1 or len(segment_starts) < 1 or segment_starts[0] != 0 or np.any(np.diff(segment_starts) <= 0) \
            or segment_starts[-1] >= seeds_u8.shape[0]:
        raise BundleError(f"{seeds_path}: segment_starts {segment_starts[:8]} must start at 0 and increase within the seed frames")
    return seeds_u8, segment_starts


def _bank_index(arrays: dict[str, np.ndarray], seeds_path: Path, n_bins: int) -> BankIndex:
    """Check the format-2 PCA arrays against the frames and each other. Raises BundleError."""
    components, mean, coords = arrays["pca_components"], arrays["pca_mean"], arrays["bank_coords"]
    n_frames = arrays["frames_u8"].shape[0]
    if components.ndim != 2 or components.shape[1] != n_bins or not 1 <= components.shape[0] <= 256:
        raise BundleError(f"{seeds_path}: pca_components has shape {components.shape}, expected (n_dims <= 256, "
                          f"{n_bins}); re-export the bundle with `make train`")
    if mean.shape != (n_bins,) or coords.shape != (n_frames, components.shape[0]):
        raise BundleError(f"{seeds_path}: pca_mean {mean.shape} / bank_coords {coords.shape} do not match "
                          f"{n_frames} frames of {n_bins} bins and {components.shape[0]} dims; re-export the bundle")
    for name, array in (("pca_components", components), ("pca_mean", mean), ("bank_coords", coords)):
        if not np.all(np.isfinite(array)):
            raise BundleError(f"{seeds_path}: {name} holds non-finite values; re-export the bundle")
    return BankIndex(mean=mean.astype(np.float32), components=np.ascontiguousarray(components, dtype=np.float32),
                     coords=np.ascontiguousarray(coords, dtype=np.float32))


def _context_index(arrays: dict[str, np.ndarray], seeds_path: Path, meta: dict[str, Any],
                   model: ModelSpec) -> ContextIndex:
    """Check the optional context arrays against the frames, the model's states and bundle.json. Raises BundleError."""
    state = (meta.get("seeds", {}).get("bank", {}).get("context") or {}).get("state")
    if state not in model.input_states:
        raise BundleError(f"{seeds_path} holds context keys but bundle.json seeds.bank.context.state is {state!r}, "
                          f"not one of the model's states {list(model.input_states)}; re-export the bundle")
    size = model.state_sizes[model.input_states.index(state)]
    mean, components, keys = (arrays[k] for k in CONTEXT_ARRAYS)
    n_frames = arrays["frames_u8"].shape[0]
    if mean.shape != (size,) or components.ndim != 2 or components.shape[1] != size or \
            not 1 <= components.shape[0] <= 256 or keys.shape != (n_frames, components.shape[0]):
        raise BundleError(f"{seeds_path}: context_mean {mean.shape} / context_components {components.shape} / "
                          f"context_keys {keys.shape} do not match {n_frames} frames and the {size}-wide state "
                          f"{state!r}; re-export the bundle")
    for name in CONTEXT_ARRAYS:
        if not np.all(np.isfinite(arrays[name])):
            raise BundleError(f"{seeds_path}: {name} holds non-finite values; re-export the bundle")
    return ContextIndex(state=state, mean=mean.astype(np.float32),
                        components=np.ascontiguousarray(components, dtype=np.float32),
                        keys=np.ascontiguousarray(keys, dtype=np.float32))


def quantise_seeds(frames_norm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model-unit frames (n, n_bins) -> (frames_u8 (n, n_bins) uint8, lo (n_bins,), hi (n_bins,)) per-bin ranges."""
    lo = frames_norm.min(axis=0).astype(np.float32)
    hi = frames_norm.max(axis=0).astype(np.float32)
    span = np.maximum(hi - lo, np.float32(1e-6))
    hi = lo + span
    frames_u8 = np.rint((frames_norm - lo) / span * 255.0).clip(0, 255).astype(np.uint8)
    return frames_u8, lo, hi


def write_bundle(out_dir: str | os.PathLike[str], meta: dict[str, Any], files: dict[str, bytes | Path], *,
                 format_version: int = FORMAT_VERSION) -> Path:
    """Write ``files`` and ``meta`` (plus checksums) as a bundle at ``out_dir``, atomically.

    The new bundle is built in a temporary sibling directory, fsynced, then renamed into place; an existing
    bundle at ``out_dir`` is moved aside first and deleted last. ``out_dir`` that exists and is not a bundle
    (a non-empty directory without bundle.json, or a file) is refused: nothing of the user's is overwritten.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise BundleError(f"{out_dir}: exists and is a file, not a bundle directory; choose another OUT=")
        if any(out_dir.iterdir()) and not (out_dir / META_FILE).is_file():
            raise BundleError(
                f"{out_dir}: exists, is not empty and holds no {META_FILE}, so it is not a bundle; "
                "choose a new directory for OUT= (nothing was written)"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    old_dir = None
    try:
        checksums: dict[str, dict[str, Any]] = {}
        for name, content in files.items():
            target = tmp_dir / name
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_bytes(content)
            checksums[name] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
        full_meta = dict(meta, format=FORMAT, format_version=format_version, files=checksums)
        (tmp_dir / META_FILE).write_text(json.dumps(full_meta, indent=2, sort_keys=False) + "\n")
        for entry in tmp_dir.iterdir():
            with open(entry, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp_dir, 0o755)
        if out_dir.exists():
            old_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old_dir / "bundle")
        os.rename(tmp_dir, out_dir)
        fsync_dir(out_dir.parent)
        if old_dir is not None:
            shutil.rmtree(old_dir, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if old_dir is not None:  # interrupted between the two renames: put the old bundle back, drop the aside dir
            if (old_dir / "bundle").is_dir() and not out_dir.exists():
                os.rename(old_dir / "bundle", out_dir)
            shutil.rmtree(old_dir, ignore_errors=True)
        raise
    return out_dir
