"""Export: the one-frame step model -> TFLite (builtin ops only) -> parity check with the device runtime -> bundle.

Route (docs/ARCHITECTURE.md §4): ``model.export(format="tf_saved_model")`` with fixed batch-1 specs, then
``TFLiteConverter.from_saved_model``. Never ``from_concrete_functions`` (writes a model without weights) and
never Keras' ``format="litert"`` (always adds Flex ops no Pi runtime has). The exported file is reloaded with
ai-edge-litert and stepped alongside the Keras step model before the bundle is written (atomically).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from murmur import REPO_ROOT as ROOT
from murmur.device import bundle as bundle_mod
from murmur.device.errors import BundleError
from murmur.device.generate.runtime import quiet_delegate_notice

from .dataset import Dataset
from .model import ModelConfig, build_step_model, copy_weights, state_names
from .options import QUANTISATIONS

SIGNATURE = "serving_default"
# Max |Keras - TFLite| over the parity steps (model units, i.e. global-std units of log magnitude) that we accept.
PARITY_TOLERANCE = {"float32": 1e-3, "float16": 2e-2, "dynamic": 0.15}
FORBIDDEN_OPS = ("WHILE", "CUSTOM", "FLEX")

BUNDLE_BYTES_LIMIT = 20_000_000  # the whole bundle (model + frame bank + json): 3 min of uint8 frames is ~16 MB
MAX_BANK_SECONDS = 200.0  # the frame bank keeps every frame of up to this much audio, evenly spaced runs beyond
SEED_SEGMENT_FRAMES = 256  # when not every frame fits, the bank keeps evenly spaced runs of this many frames
MIN_SEED_FRAMES = 64  # never fewer (the sampler warms a fresh LSTM state on 32 seed frames)
PCA_DIMS = 32  # the bank's search space: 32 principal components of the frames (model units)
PCA_FIT_FRAMES = 6000  # frames (evenly spaced) the PCA is fitted on
CONTEXT_DIMS = 32  # the context keys: 32 principal components of the LSTM's last-layer state before each bank frame


class ExportError(BundleError):
    """The converted model failed a check (ops, parity, load); nothing was written."""


@dataclass
class ExportResult:
    path: Path
    meta: dict[str, Any]
    bundle_bytes: int
    model_bytes: int
    seeds_bytes: int
    parity_max_abs_error: float
    seconds: float


def convert(step: keras.Model, cfg: ModelConfig, quantisation: str) -> bytes:
    """Keras step model -> TFLite flatbuffer bytes, through a temporary SavedModel."""
    if quantisation not in QUANTISATIONS:
        raise ValueError(f"--quantisation {quantisation!r}: choose one of {', '.join(QUANTISATIONS)}")
    in_names, _ = state_names(cfg)
    specs = {"frame": tf.TensorSpec((1, cfg.n_bins), tf.float32, name="frame")}
    specs.update({name: tf.TensorSpec((1, cfg.units), tf.float32, name=name) for name in in_names})
    with tempfile.TemporaryDirectory(prefix="murmur-savedmodel-") as tmp:
        step.export(tmp, format="tf_saved_model", input_signature=[specs], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantisation == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            # one scale per weight matrix instead of per output channel: FULLY_CONNECTED stays at an op version
            # tflite-runtime 2.14 (the last legacy release) can load; per-channel would need version 12
            converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        elif quantisation == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def _interpreter(model_bytes: bytes):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model_bytes, num_threads=1)


def _runner(model_bytes: bytes):
    """The model's signature runner under ai-edge-litert, its tensors allocated: the runtime prints its delegate
    line then, which is kept out of the terminal."""
    with quiet_delegate_notice():
        interpreter = _interpreter(model_bytes)
        interpreter.allocate_tensors()
        return interpreter.get_signature_runner(SIGNATURE)


def check_ops(model_bytes: bytes) -> list[str]:
    """Names of the ops in the model; ExportError if any is not a plain builtin (Flex, custom, WHILE)."""
    interpreter = _interpreter(model_bytes)
    names = sorted({op["op_name"] for op in interpreter._get_ops_details()})
    bad = [n for n in names if any(n.upper().startswith(f) for f in FORBIDDEN_OPS)]
    if bad:
        raise ExportError(f"the converted model uses {bad}, which the device runtime cannot run; nothing was written")
    return names


def parity(model_bytes: bytes, step: keras.Model, cfg: ModelConfig, frames_norm: np.ndarray) -> float:
    """Step TFLite and the Keras step model over ``frames_norm`` (n, n_bins), each carrying its own states.

    Returns the max |difference| of the predicted frames (model units) over all steps.
    """
    runner = _runner(model_bytes)
    in_names, out_names = state_names(cfg)
    tfl_states = {name: np.zeros((1, cfg.units), np.float32) for name in in_names}
    keras_states = {name: np.zeros((1, cfg.units), np.float32) for name in in_names}
    worst = 0.0
    for frame in frames_norm:
        x = frame[None, :].astype(np.float32)
        out_t = runner(frame=x, **tfl_states)
        out_k = step({"frame": x, **keras_states}, training=False)
        pred_t, pred_k = out_t["next_frame"], np.asarray(out_k["next_frame"])
        if not np.all(np.isfinite(pred_t)):
            raise ExportError("the converted model returns NaN/inf on real frames; nothing was written")
        worst = max(worst, float(np.max(np.abs(pred_t - pred_k))))
        for i_name, o_name in zip(in_names, out_names, strict=True):
            tfl_states[i_name] = out_t[o_name]
            keras_states[i_name] = np.asarray(out_k[o_name])
    return worst


def tflite_runtime_python() -> Path | None:
    """Python of the legacy-runtime venv (``$MURMUR_TFLITE_RUNTIME_PYTHON`` or .venv/tflite-runtime), if present."""
    configured = os.environ.get("MURMUR_TFLITE_RUNTIME_PYTHON")
    path = Path(configured) if configured else ROOT / ".venv" / "tflite-runtime" / "bin" / "python"
    return path if path.is_file() else None


def legacy_runtime_error(model_bytes: bytes, model_table: dict[str, Any], frames_norm: np.ndarray,
                         reference: np.ndarray, python: Path) -> float:
    """Step the model under tflite-runtime 2.14 in its own venv -> max |difference| from ``reference`` outputs."""
    with tempfile.TemporaryDirectory(prefix="murmur-tflrt-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "model.tflite").write_bytes(model_bytes)
        (tmp_path / "meta.json").write_text(json.dumps({"model": model_table}))
        np.save(tmp_path / "frames.npy", frames_norm.astype(np.float32))
        proc = subprocess.run(
            [str(python), str(Path(__file__).with_name("tflite_runtime_probe.py")), str(tmp_path / "model.tflite"),
             str(tmp_path / "frames.npy"), str(tmp_path / "out.npy"), str(tmp_path / "meta.json")],
            capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise ExportError(f"tflite-runtime ({python}) cannot run the exported model: {proc.stderr.strip()[-400:]}")
        return float(np.max(np.abs(np.load(tmp_path / "out.npy") - reference)))


def device_runtime_outputs(model_bytes: bytes, cfg: ModelConfig, frames_norm: np.ndarray) -> np.ndarray:
    """(n, n_bins) predictions of ai-edge-litert over ``frames_norm``, states carried."""
    runner = _runner(model_bytes)
    in_names, out_names = state_names(cfg)
    states = {name: np.zeros((1, cfg.units), np.float32) for name in in_names}
    outputs = np.empty_like(frames_norm, dtype=np.float32)
    for i, frame in enumerate(frames_norm):
        out = runner(frame=frame[None].astype(np.float32), **states)
        outputs[i] = out["next_frame"][0]
        states = {i_name: out[o_name] for i_name, o_name in zip(in_names, out_names, strict=True)}
    return outputs


def seed_frames(dataset: Dataset, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Seed frames in model units (n, n_bins) and the start of each contiguous run (segment_starts).

    Every frame of every file if they fit in ``max_frames``; else evenly spaced runs of SEED_SEGMENT_FRAMES
    frames (each run its own segment, so the device never treats a jump between runs as continuous).
    """
    runs: list[tuple[int, int, int]] = []  # (source index, start, stop)
    total = sum(s.n_frames for s in dataset.sources)
    if total <= max_frames:
        runs = [(i, 0, s.n_frames) for i, s in enumerate(dataset.sources)]
    else:
        run = min(SEED_SEGMENT_FRAMES, max_frames)
        candidates = [(i, start, min(start + run, s.n_frames))
                      for i, s in enumerate(dataset.sources) for start in range(0, s.n_frames - 1, run)]
        keep = max(1, max_frames // run)
        picks = np.linspace(0, len(candidates) - 1, min(keep, len(candidates))).round().astype(int)
        runs = [candidates[i] for i in sorted(set(picks.tolist()))]
    parts, starts, at = [], [], 0
    for source_index, start, stop in runs:
        parts.append(dataset.normalised(dataset.sources[source_index].log_mag[start:stop]))
        starts.append(at)
        at += stop - start
    return np.concatenate(parts).astype(np.float32), np.asarray(starts, np.int64)


def bank_pca(frames_norm: np.ndarray, n_dims: int = PCA_DIMS) -> tuple[np.ndarray, np.ndarray]:
    """PCA of bank frames (n, n_bins) model units -> (mean (n_bins,), components (n_dims, n_bins)) float32.

    Fitted on at most PCA_FIT_FRAMES evenly spaced frames (an SVD of a few thousand frames takes well under a second).
    """
    picks = np.linspace(0, frames_norm.shape[0] - 1, min(PCA_FIT_FRAMES, frames_norm.shape[0])).round().astype(int)
    sample = frames_norm[picks].astype(np.float64)
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    components = np.zeros((n_dims, frames_norm.shape[1]))
    keep = min(n_dims, vt.shape[0])
    components[:keep] = vt[:keep]  # a bank smaller than n_dims frames leaves zero rows (distance unaffected)
    return mean.astype(np.float32), components.astype(np.float32)


def bank_coords(frames_u8: np.ndarray, lo: np.ndarray, hi: np.ndarray, pca_mean: np.ndarray,
                components: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """PCA coordinates (n, n_dims) float16 of the *dequantised* bank frames (what the device plays and feeds)."""
    step = (hi - lo) / np.float32(255.0)
    coords = np.empty((frames_u8.shape[0], components.shape[0]), np.float16)
    for start in range(0, frames_u8.shape[0], chunk):
        frames = frames_u8[start : start + chunk] * step + lo - pca_mean
        coords[start : start + chunk] = frames @ components.T
    return coords


def context_states(model_bytes: bytes, cfg: ModelConfig, frames: np.ndarray, segment_starts: np.ndarray) -> np.ndarray:
    """(n, units) float32: row j is the LSTM's last-layer h after the step model (under the device's runtime) has run
    over ``frames`` (n, n_bins) model units up to j - 1 from a zeroed state at the start of j's run (zeros there)."""
    runner = _runner(model_bytes)
    in_names, out_names = state_names(cfg)
    last = f"h{cfg.layers - 1}"
    starts = set(int(s) for s in segment_starts)
    zeros = {name: np.zeros((1, cfg.units), np.float32) for name in in_names}
    states = zeros
    out = np.zeros((frames.shape[0], cfg.units), np.float32)
    for j, frame in enumerate(frames):
        if j in starts:
            states = zeros
        out[j] = states[last][0]
        step = runner(frame=frame[None].astype(np.float32), **states)
        states = {i_name: step[o_name] for i_name, o_name in zip(in_names, out_names, strict=True)}
    return out


def context_arrays(states: np.ndarray, n_dims: int = CONTEXT_DIMS) -> dict[str, np.ndarray]:
    """States (n, units) -> the bank's context index: context_mean (units,), context_components (n_dims, units),
    context_keys (n, n_dims) float16 (``murmur.device.bundle.ContextIndex``)."""
    mean, components = bank_pca(states, n_dims)
    keys = ((states - mean) @ components.T).astype(np.float16)
    return {"context_mean": mean, "context_components": components, "context_keys": keys}


def dequantised(frames_u8: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The bank frames as the device plays and feeds them: (n, n_bins) float32 model units."""
    return (frames_u8 * ((hi - lo) / np.float32(255.0)) + lo).astype(np.float32)


def seeds_npz(frames_norm: np.ndarray, mean: np.ndarray, segment_starts: np.ndarray,
              context: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> bytes:
    """The bank (seeds.npz, format 2): uint8 frames, their per-bin ranges, the log mean, runs, the PCA index, and
    with ``context`` (dequantised frames, segment starts -> states (n, units)) the context index."""
    frames_u8, lo, hi = bundle_mod.quantise_seeds(frames_norm)
    pca_mean, components = bank_pca(frames_norm)
    arrays: dict[str, np.ndarray] = {
        "frames_u8": frames_u8, "lo": lo, "hi": hi, "mean": mean.astype(np.float32),
        "segment_starts": segment_starts.astype(np.int64), "pca_mean": pca_mean, "pca_components": components,
        "bank_coords": bank_coords(frames_u8, lo, hi, pca_mean, components)}
    if context is not None:
        arrays.update(context_arrays(context(dequantised(frames_u8, lo, hi), segment_starts)))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def max_bank_frames(dataset: Dataset) -> int:
    """Frames in MAX_BANK_SECONDS of audio at the dataset's hop."""
    settings = dataset.settings
    return int(MAX_BANK_SECONDS * settings.sample_rate_hz / settings.hop_length)


def _fit_seeds(dataset: Dataset, room_bytes: int,
               context: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> tuple[bytes, int]:
    """Largest bank whose compressed npz fits ``room_bytes`` (shrinks by measured bytes per frame)."""
    max_frames = min(sum(s.n_frames for s in dataset.sources), max_bank_frames(dataset))
    for _ in range(6):
        frames_norm, starts = seed_frames(dataset, max_frames)
        blob = seeds_npz(frames_norm, dataset.mean, starts, context)
        if len(blob) <= room_bytes or frames_norm.shape[0] <= MIN_SEED_FRAMES:
            return blob, frames_norm.shape[0]
        fixed = 4 * dataset.settings.n_bins * (PCA_DIMS + 4)  # PCA components and per-bin arrays (float32)
        per_frame = max(len(blob) - fixed, 1) / frames_norm.shape[0]
        max_frames = max(MIN_SEED_FRAMES, int((room_bytes - fixed) / per_frame * 0.97))
    return blob, frames_norm.shape[0]


def tool_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "numpy", "librosa", "soundfile", "ai-edge-litert"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return versions


def export_bundle(
    sequence: keras.Model,
    cfg: ModelConfig,
    dataset: Dataset,
    out_dir: Path,
    *,
    quantisation: str = "dynamic",
    name: str | None = None,
    training: dict[str, Any] | None = None,
    parity_steps: int = 200,
    bundle_limit_bytes: int = BUNDLE_BYTES_LIMIT,
    verify_legacy_runtime: bool = True,
) -> ExportResult:
    """Convert, check ops, check parity against Keras, pick seeds to fit the size limit, write the bundle."""
    started = time.monotonic()
    step = build_step_model(cfg)
    copy_weights(sequence, step, cfg)
    model_bytes = convert(step, cfg, quantisation)
    ops = check_ops(model_bytes)
    first = dataset.sources[0]
    probe = dataset.normalised(first.log_mag[: min(parity_steps, first.n_frames)])
    worst = parity(model_bytes, step, cfg, probe)
    tolerance = PARITY_TOLERANCE[quantisation]
    if not worst <= tolerance:
        raise ExportError(
            f"the {quantisation} TFLite model differs from Keras by {worst:.3g} (tolerance {tolerance}) over "
            f"{len(probe)} steps; try --quantisation float16; nothing was written"
        )
    seeds_blob, n_seed_frames = _fit_seeds(dataset, bundle_limit_bytes - len(model_bytes) - 16_000,
                                           lambda frames, starts: context_states(model_bytes, cfg, frames, starts))
    in_names, out_names = state_names(cfg)
    model_table: dict[str, Any] = {
        "file": bundle_mod.MODEL_FILE,
        "signature": SIGNATURE,
        "input_frame": "frame",
        "output_frame": "next_frame",
        "input_states": in_names,
        "output_states": out_names,
        "state_sizes": [cfg.units] * len(in_names),
        "quantisation": quantisation,
        "units": cfg.units,
        "layers": cfg.layers,
        "ops": ops,
        "parity_max_abs_error": worst,
        "parity_tolerance": tolerance,
        "parity_steps": int(len(probe)),
        "runtimes_verified": ["ai_edge_litert"],
    }
    legacy_python = tflite_runtime_python() if verify_legacy_runtime else None
    if legacy_python is not None:
        reference = device_runtime_outputs(model_bytes, cfg, probe)
        legacy_error = legacy_runtime_error(model_bytes, model_table, probe, reference, legacy_python)
        if not legacy_error <= tolerance:
            raise ExportError(f"tflite-runtime's output differs from ai-edge-litert's by {legacy_error:.3g} "
                              f"(tolerance {tolerance}); nothing was written")
        model_table["runtimes_verified"].append("tflite_runtime")
        model_table["tflite_runtime_max_abs_difference"] = legacy_error
    created = datetime.now(UTC)
    name = name or out_dir.name
    bundle_id = f"{name}-{created:%Y%m%dT%H%M%SZ}-{hashlib.sha256(model_bytes).hexdigest()[:8]}"
    settings = dataset.settings
    meta: dict[str, Any] = {
        "bundle_id": bundle_id,
        "name": name,
        "created_utc": created.isoformat(timespec="seconds"),
        "audio": {"sample_rate_hz": settings.sample_rate_hz, "n_fft": settings.n_fft,
                  "hop_length": settings.hop_length, "window": settings.window},
        "normalisation": {"log_floor": settings.log_floor, "std": dataset.std,
                          "formula": "x = (log(mag + log_floor) - mean[bin]) / std; mean in seeds.npz"},
        "model": model_table,
        "seeds": {"frames": n_seed_frames, "segments_are": "contiguous runs of frames (a file, or a part of one)",
                  "seconds": round(n_seed_frames * settings.hop_length / settings.sample_rate_hz, 2),
                  "every_frame": n_seed_frames == sum(s.n_frames for s in dataset.sources),
                  "bank": {"pca_dims": PCA_DIMS, "played_by": "murmur.device.generate.bank.BankSampler",
                           "context": {"state": f"h{cfg.layers - 1}", "dims": CONTEXT_DIMS}}},
        "training": dict(training or {}, data=dataset.summary(), model_config=cfg.to_dict()),
        "tools": tool_versions(),
    }
    path = bundle_mod.write_bundle(out_dir, meta, {bundle_mod.MODEL_FILE: model_bytes, bundle_mod.SEEDS_FILE: seeds_blob})
    bundle_mod.load_bundle(path)  # the device's own checks accept what we wrote
    total = sum(p.stat().st_size for p in path.iterdir())
    return ExportResult(path, json.loads((path / bundle_mod.META_FILE).read_text()), total, len(model_bytes),
                        len(seeds_blob), worst, time.monotonic() - started)
