"""The whole trainer run under one time budget: files -> dataset -> training -> export -> bundle.

``train_bundle`` is what ``python -m murmur.trainer train`` and the test fixture call. Nothing is written to the
bundle path until export has verified the model; Ctrl-C (KeyboardInterrupt) before that leaves it untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from murmur.device import bundle as bundle_mod
from murmur.device.errors import BundleError

from .audio import find_audio_files
from .dataset import Dataset, FrameSettings, SourceFrames, build_dataset
from .export import ExportResult, export_bundle
from .fit import EpochRecord, FitResult, Progress, train
from .model import ModelConfig
from .options import TrainOptions
from .retrieval import build_space

__all__ = ["TrainOptions", "TrainOutcome", "check_out_dir", "train_bundle"]


@dataclass
class TrainOutcome:
    dataset: Dataset
    fit: FitResult
    export: ExportResult
    timings_s: dict[str, float] = field(default_factory=dict)


def check_out_dir(out_dir: Path) -> None:
    """Refuse, before any work, an OUT that exists and is not a bundle (write_bundle would refuse it at the end)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise BundleError(f"{out_dir}: exists and is a file, not a bundle directory; choose another OUT=")
        if any(out_dir.iterdir()) and not (out_dir / bundle_mod.META_FILE).is_file():
            raise BundleError(
                f"{out_dir}: exists, is not empty and holds no {bundle_mod.META_FILE}, so it is not a bundle; "
                "choose a new directory for OUT= (nothing was written)"
            )


def train_bundle(
    data: Path,
    out_dir: Path,
    options: TrainOptions,
    *,
    on_file: Callable[[SourceFrames], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train on ``data`` (file or folder) and write a verified bundle to ``out_dir`` within ``options.minutes``."""
    started = time.monotonic()
    options.check()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    settings = FrameSettings(sample_rate_hz=options.sample_rate_hz, n_fft=options.n_fft, hop_length=options.hop_length)
    skipped: list[Path] = []
    paths = find_audio_files(data, skipped)
    if skipped and on_stage is not None:
        on_stage(f"skipping {len(skipped)} preview(s) this trainer wrote: {', '.join(p.name for p in skipped)}")
    dataset = build_dataset(paths, settings, seq_len=options.seq_len, val_fraction=options.val_fraction,
                            cache_dir=options.cache_dir, on_file=on_file)
    prepared = time.monotonic()
    cfg = ModelConfig(n_bins=settings.n_bins, units=options.units, layers=options.layers,
                      input_noise=options.input_noise, dropout=options.dropout, learning_rate=options.learning_rate,
                      batch_size=options.batch_size, seq_len=options.seq_len)
    budget_s = options.minutes * 60.0
    deadline_s = max(1.0, budget_s - (prepared - started) - options.export_reserve_s)
    space = build_space(dataset, options.retrieval_temperature) if options.objective == "retrieval" else None
    fit = train(dataset, cfg, seed=options.seed, deadline_s=deadline_s, patience=options.patience,
                max_epochs=options.max_epochs, on_progress=on_progress, on_epoch=on_epoch, retrieval=space)
    trained = time.monotonic()
    best = next((r for r in fit.history if r.epoch == fit.best_epoch), None)
    training = {
        "epochs": len(fit.history),
        "best_epoch": fit.best_epoch,
        "stop_reason": fit.stop_reason,
        "seed": options.seed,
        "objective": options.objective,
        "val_fraction": options.val_fraction,
        "validation": {
            "teacher_forced_lsd_db": None if best is None else round(best.val_lsd_db, 4),
            "repeat_last_frame_lsd_db": round(fit.baseline_lsd_db, 4),
            "mse_model_units": None if best is None else round(best.val_loss, 6),
        },
        "train_seconds": round(fit.train_seconds, 2),
        "preprocess_seconds": round(prepared - started, 2),
        "budget_minutes": options.minutes,
        "history": [{"epoch": r.epoch, "loss": round(r.loss, 6), "val_loss": round(r.val_loss, 6),
                     "val_lsd_db": round(r.val_lsd_db, 4)} for r in fit.history],
    }
    if on_stage is not None:
        on_stage(f"exporting: TFLite ({options.quantisation}), checking it against Keras, writing the bundle")
    export = export_bundle(fit.model, cfg, dataset, out_dir, quantisation=options.quantisation,
                           name=options.name, training=training)
    done = time.monotonic()
    timings = {"preprocess": prepared - started, "train": trained - prepared, "export": done - trained,
               "total": done - started}
    return TrainOutcome(dataset, fit, export, timings)
