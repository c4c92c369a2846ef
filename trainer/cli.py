"""Command line: ``train`` (your audio -> bundle + preview) and ``demo`` (the bundled clip -> out/demo/…).

Exit status: 0 done, 1 bad input or a failed check (the message names the file and the fix), 130 Ctrl-C.
Nothing is written to OUT unless the whole run succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from murmur import REPO_ROOT as ROOT

DEMO_CLIP = Path(__file__).resolve().parent / "demo" / "demo.ogg"
PREVIEW_SECONDS = 30.0
PREVIEW_RESERVE_S = 6.0  # of the budget kept for the preview: start-up of the render and the sound check …
# … plus this per second of preview: the preview's render at ~10x real time, figures, picture (0.3 s), and the same
# length rendered again without the model and measured (0.15 s: 2.1-3.1 s for 20 s, 3.0-3.3 s for 30 s on the demo
# clip, 2 cores at load 5)
PREVIEW_RESERVE_PER_S = 0.45
IMPORTED_AT = time.monotonic()  # the budget counts from here: Python and TensorFlow start-up are part of it


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


class ProgressLog:
    """Progress as JSON lines, one object per event, for a program that watches the training (the studio).

    Events: ``{"event": "file"|"stage"|"progress"|"epoch"|"done"|"error", ...}``; progress at most every 0.25 s.
    """

    def __init__(self, path: Path | None):
        self.stream = None if path is None else open(path, "a", buffering=1, encoding="utf-8")
        self.last = 0.0

    def write(self, event: str, **fields) -> None:
        if self.stream is not None:
            self.stream.write(json.dumps({"event": event, "t": round(time.time(), 3), **fields}) + "\n")

    def progress(self, p) -> None:
        now = time.monotonic()
        if self.stream is None or (now - self.last < 0.25 and p.batch < p.batches_per_epoch):
            return
        self.last = now
        self.write("progress", epoch=p.epoch, batch=p.batch, batches_per_epoch=p.batches_per_epoch, loss=p.loss,
                   val_loss=p.val_loss, elapsed_s=round(p.elapsed_s, 2), deadline_s=round(p.deadline_s, 2))

    def epoch(self, r) -> None:
        self.write("epoch", epoch=r.epoch, loss=r.loss, val_loss=r.val_loss, val_lsd_db=r.val_lsd_db,
                   seconds=round(r.seconds, 2))

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


class ProgressBar:
    """One line, redrawn in place on a terminal (one line per epoch otherwise): epoch, bar, losses, time, ETA."""

    def __init__(self, stream=sys.stderr, width: int = 24):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self.last_draw = 0.0

    def update(self, p) -> None:
        now = time.monotonic()
        if not self.tty or (now - self.last_draw < 0.2 and p.batch < p.batches_per_epoch):
            return
        self.last_draw = now
        self.stream.write("\r" + self._line(p) + "\x1b[K")
        self.stream.flush()

    def _line(self, p) -> str:
        fraction = min(1.0, p.elapsed_s / p.deadline_s) if p.deadline_s > 0 else 1.0
        filled = int(round(fraction * self.width))
        val = "   —  " if p.val_loss is None else f"{p.val_loss:.4f}"
        best = "" if p.best_val_loss is None else f" best {p.best_val_loss:.4f}"
        return (f"epoch {p.epoch:3d} {p.batch:2d}/{p.batches_per_epoch} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"loss {p.loss:.4f} val {val}{best}  {_duration(p.elapsed_s)}  ETA ≤{_duration(p.deadline_s - p.elapsed_s)}")

    def epoch(self, record) -> None:
        if not self.tty:
            self.stream.write(f"epoch {record.epoch:3d}  loss {record.loss:.4f}  val {record.val_loss:.4f}  "
                              f"held-out LSD {record.val_lsd_db:.2f} dB  {_duration(record.seconds)}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last_draw:
            self.stream.write("\n")
            self.stream.flush()
        self.last_draw = 0.0


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from .options import TrainOptions

    d = TrainOptions()
    parser.add_argument("--minutes", type=float, default=d.minutes,
                        help=f"time budget of the whole command: start-up, preprocessing, training, export and "
                             f"preview (default {d.minutes:g})")
    parser.add_argument("--units", type=int, default=d.units, help=f"LSTM units per layer (default {d.units})")
    parser.add_argument("--layers", type=int, default=d.layers, help=f"LSTM layers (default {d.layers})")
    parser.add_argument("--hop", type=int, default=d.hop_length, dest="hop_length",
                        help=f"STFT hop in samples (default {d.hop_length}; smaller = better phase, more frames)")
    parser.add_argument("--n-fft", type=int, default=d.n_fft, help=f"STFT size (default {d.n_fft})")
    parser.add_argument("--sample-rate", type=int, default=d.sample_rate_hz, dest="sample_rate_hz",
                        help=f"bundle sample rate in Hz; input is resampled to it (default {d.sample_rate_hz})")
    parser.add_argument("--quantisation", choices=("dynamic", "float16", "float32"), default=d.quantisation,
                        help="TFLite weights: dynamic-range int8 (default, smallest, fastest), float16, float32")
    parser.add_argument("--objective", choices=("retrieval", "mse"), default=d.objective,
                        help="what the model learns: 'retrieval' scores the real frames it will choose among, "
                             f"'mse' predicts the next frame (default {d.objective})")
    parser.add_argument("--retrieval-temperature", type=float, default=d.retrieval_temperature,
                        help=f"softness of the retrieval target, in nearest-neighbour distances (default {d.retrieval_temperature})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction,
                        help=f"held-out end part of every file (default {d.val_fraction:g})")
    parser.add_argument("--seq-len", type=int, default=d.seq_len, help=f"training window in frames (default {d.seq_len})")
    parser.add_argument("--patience", type=int, default=d.patience,
                        help=f"epochs without held-out improvement before stopping (default {d.patience})")
    parser.add_argument("--max-epochs", type=int, default=d.max_epochs,
                        help=f"stop after this many epochs even with budget left (default {d.max_epochs})")
    parser.add_argument("--input-noise", type=float, default=d.input_noise,
                        help=f"Gaussian input noise in training, model units (default {d.input_noise:g})")
    parser.add_argument("--dropout", type=float, default=d.dropout,
                        help=f"dropout after each LSTM layer in training (default {d.dropout:g})")
    parser.add_argument("--cache", type=Path, default=None, dest="cache_dir",
                        help="frame cache folder (default $MURMUR_CACHE or ~/.cache/murmur)")
    parser.add_argument("--name", default=None, help="bundle name (default: the OUT folder name)")
    parser.add_argument("--preview-seconds", type=float, default=PREVIEW_SECONDS,
                        help=f"length of the preview render (default {PREVIEW_SECONDS:g}; 0 = no preview)")
    parser.add_argument("--progress-jsonl", type=Path, default=None, metavar="FILE",
                        help="also write progress as JSON lines to FILE (for the studio: stage, progress, epoch, done)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m murmur.trainer", description="Murmur trainer: your audio -> a bundle.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train on a file or folder and write a bundle + preview")
    train.add_argument("data", type=Path, help="an audio file or a folder of them (WAV FLAC OGG MP3 AIFF)")
    train.add_argument("--out", type=Path, required=True, help="bundle directory to write (new, or an old bundle)")
    _add_model_options(train)
    demo = commands.add_parser("demo", help=f"train on the bundled clip ({DEMO_CLIP.relative_to(ROOT)})")
    demo.add_argument("--out", type=Path, default=Path("out/demo"),
                      help="folder for bundle/, preview.wav and preview.png (default out/demo)")
    demo.add_argument("--data", type=Path, default=DEMO_CLIP, help=argparse.SUPPRESS)
    _add_model_options(demo)
    return parser


@dataclass
class Paths:
    bundle: Path
    preview_wav: Path
    preview_png: Path


def _paths(args) -> Paths:
    if args.command == "demo":
        return Paths(args.out / "bundle", args.out / "preview.wav", args.out / "preview.png")
    out = args.out
    return Paths(out, out.with_name(f"{out.name}-preview.wav"), out.with_name(f"{out.name}-preview.png"))


def run(args) -> int:
    from . import pipeline  # imported before the budget is set: TensorFlow's start-up counts in it
    from .options import TrainOptions

    if args.command == "demo" and args.name is None:
        args.name = "demo"
    option_names = set(TrainOptions.__dataclass_fields__)
    options = TrainOptions(**{k: v for k, v in vars(args).items() if k in option_names})
    # --minutes is the whole command's budget: what passed before training and the preview come out of it
    options.export_reserve_s += time.monotonic() - IMPORTED_AT
    if args.preview_seconds > 0:
        options.export_reserve_s += PREVIEW_RESERVE_S + PREVIEW_RESERVE_PER_S * args.preview_seconds
    paths = _paths(args)
    data = args.data
    out = sys.stderr
    print(f"murmur trainer: {data} -> {paths.bundle}  (budget {options.minutes:g} min, {options.layers} x LSTM "
          f"{options.units}, hop {options.hop_length}, {options.quantisation})", file=out, flush=True)
    bar = ProgressBar(out)
    progress = ProgressLog(args.progress_jsonl)
    try:
        return _run(args, options, paths, bar, progress, pipeline.train_bundle)
    finally:
        progress.close()


def _run(args, options, paths: Paths, bar: ProgressBar, progress: ProgressLog, train_bundle) -> int:
    from murmur.device.errors import DeviceError

    out = sys.stderr

    def on_file(source) -> None:
        how = "cached" if source.from_cache else "decoded"
        notes = f" — {'; '.join(source.notes)}" if source.notes else ""
        print(f"  {source.path}: {source.duration_s:.1f} s, {source.n_frames} frames ({how}){notes}", file=out, flush=True)
        progress.write("file", path=str(source.path), seconds=source.duration_s, notes=list(source.notes))

    def on_stage(text: str) -> None:
        bar.close()
        print(text, file=out, flush=True)
        progress.write("stage", text=text)

    def on_progress(p) -> None:
        bar.update(p)
        progress.progress(p)

    def on_epoch(record) -> None:
        bar.epoch(record)
        progress.epoch(record)

    try:
        outcome = train_bundle(args.data, paths.bundle, options, on_file=on_file, on_progress=on_progress,
                               on_epoch=on_epoch, on_stage=on_stage)
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted: stopped cleanly, no bundle written ({paths.bundle} is as it was)", file=out)
        progress.write("error", text="cancelled: no bundle written")
        return 130
    except (DeviceError, ValueError) as exc:
        bar.close()
        print(f"error: {exc}", file=out)
        progress.write("error", text=str(exc))
        return 1
    fit, export, t = outcome.fit, outcome.export, outcome.timings_s
    best = next((r for r in fit.history if r.epoch == fit.best_epoch), None)
    lines = [
        f"done in {_duration(t['total'])} (preprocessing {t['preprocess']:.1f} s, training {_duration(t['train'])} "
        f"over {len(fit.history)} epochs, export {t['export']:.1f} s); {fit.stop_reason}",
        f"held-out next-frame LSD: {fit.best_val_lsd_db:.2f} dB at epoch {fit.best_epoch} "
        f"(repeat-the-last-frame baseline {fit.baseline_lsd_db:.2f} dB; lower is better)"
        if best else "held-out: no epoch finished",
        f"bundle: {export.path}  {_megabytes(export.bundle_bytes)} (model {_megabytes(export.model_bytes)} "
        f"{options.quantisation}, seeds {_megabytes(export.seeds_bytes)}), TFLite parity max error "
        f"{export.parity_max_abs_error:.2g}; id {export.meta['bundle_id']}",
    ]
    print("\n".join(lines), file=out, flush=True)
    done = {"bundle": str(export.path), "bundle_id": export.meta["bundle_id"], "bundle_bytes": export.bundle_bytes,
            "seconds": round(t["total"], 1), "epochs": len(fit.history), "stop_reason": fit.stop_reason,
            "val_lsd_db": fit.best_val_lsd_db if best else None, "baseline_lsd_db": fit.baseline_lsd_db,
            "summary": lines, "figures": [], "learned": None}
    if args.preview_seconds > 0:
        print(f"rendering a {args.preview_seconds:g}-s preview with the device's generator and vocoder …", file=out, flush=True)
        try:
            figures, learned = _preview(outcome, paths, args.preview_seconds, options.seed)
            print("\n".join(figures), file=out)
            print(f"preview: {paths.preview_wav} ({args.preview_seconds:g} s)\npicture: {paths.preview_png}", file=out)
            done.update(figures=figures, learned=learned, preview_wav=str(paths.preview_wav),
                        preview_png=str(paths.preview_png))
        except KeyboardInterrupt:
            print(f"\ninterrupted during the preview; the bundle is complete at {paths.bundle}", file=out)
            progress.write("done", **done)
            return 130
        except (ImportError, DeviceError) as exc:
            print(f"preview skipped: {exc} (the bundle itself is complete)", file=out)
    progress.write("done", **done)
    print(str(paths.bundle))
    return 0


def _preview(outcome, paths: Paths, seconds: float, seed: int) -> tuple[list[str], dict | None]:
    """Render the preview WAV, measure it against the training audio (trainer/soundcheck.py) and against the same
    player without the model, draw the picture with those figures on it -> (the figure lines to print, what the
    model learned: ``preview.learned_figures``, None when it could not be measured)."""
    import soundfile

    from .preview import draw, render_preview, write_wav

    audio, rate = render_preview(outcome.export.path, seconds, seed=seed)
    paths.preview_wav.parent.mkdir(parents=True, exist_ok=True)
    write_wav(paths.preview_wav, audio, rate)
    written = soundfile.read(paths.preview_wav, dtype="float32")[0]  # measure what the artist hears: 16-bit WAV
    figures, learned = _sound_check(outcome, written, rate, seed)
    ds = outcome.dataset
    source = ds.sources[0].log_mag[: int(seconds * rate / ds.settings.hop_length)]
    draw(paths.preview_png, np.asarray(source), audio, sample_rate_hz=rate, n_fft=ds.settings.n_fft,
         hop_length=ds.settings.hop_length, history=outcome.fit.history, baseline_lsd_db=outcome.fit.baseline_lsd_db,
         title=f"{outcome.export.meta['bundle_id']}", figures_text="\n".join(figures))
    return figures, learned


SOUND_CHECK_SOURCE_S = 180.0  # the training audio the preview is measured against: the first files, up to 3 min


def _sound_check(outcome, preview: np.ndarray, rate: int, seed: int) -> tuple[list[str], dict | None]:
    """Figures of the preview against the training audio (decoded again as the trainer did, first files up to 3
    minutes), the no-model references (own halves, granular player of the preview's length) and the same player
    without the model (``_learned``) -> (5-6 lines, what the model learned or None)."""
    from murmur.device.errors import AudioFileError

    from . import soundcheck
    from .audio import decode

    parts, total = [], 0
    for src in outcome.dataset.sources:
        try:
            samples = decode(src.path, rate).samples
        except AudioFileError as exc:  # changed or removed since training: the check is optional
            return [f"sound check skipped: {exc}"], None
        parts.append(samples[: int(SOUND_CHECK_SOURCE_S * rate) - total])
        total += parts[-1].shape[0]
        if total >= SOUND_CHECK_SOURCE_S * rate:
            break
    source = np.concatenate(parts)
    try:
        analysis = soundcheck.analyse(source, rate, what="training audio")
        figures = soundcheck.evaluate(analysis, preview, rate)
        refs = soundcheck.reference_figures(analysis, rate, preview.shape[0] / rate, seed, source_audio=source)
    except ValueError as exc:  # too short to measure
        return [f"sound check skipped: {exc}"], None
    lines = soundcheck.summary_lines(figures, refs, what="preview")
    extra, learned = _learned(outcome, analysis, figures, preview.shape[0] / rate, rate, seed)
    return lines + extra, learned


def _learned(outcome, analysis, figures, seconds: float, rate: int, seed: int) -> tuple[list[str], dict | None]:
    """The same bundle, seed, length and controls rendered by the player without the model, its distances to the
    training audio next to the preview's -> (2 lines: the figures and the sentence, ``preview.learned_figures``)."""
    from murmur.device.errors import DeviceError

    from . import soundcheck
    from .preview import NO_MODEL, as_heard, learned_figures, render_preview

    try:
        audio, _ = render_preview(outcome.export.path, seconds, seed=seed, generator=NO_MODEL)
        no_model = soundcheck.frechet_distances(analysis, as_heard(audio), rate)
        learned = learned_figures({"93ms": figures.fd_93ms, "1.5s": figures.fd_1500ms}, no_model)
    except (DeviceError, ValueError) as exc:  # a bundle without a frame bank, or a distance that is not a number
        return [f"what the model learned: not measured ({exc})"], None
    a, b = learned["fd_1500ms"], learned["fd_93ms"]
    line = (f"  the model vs the same player picking the nearest sound (same seed and length): 1.5 s "
            f"{a['model']:.1f} vs {a['no_model']:.1f}, 93 ms {b['model']:.1f} vs {b['no_model']:.1f}")
    return [line, learned["sentence"]], learned


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo" and not args.data.is_file():
        print(f"error: the demo clip {args.data} is missing; restore it with `git checkout {DEMO_CLIP.relative_to(ROOT)}`",
              file=sys.stderr)
        return 1
    return run(args)

