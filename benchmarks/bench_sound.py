"""Sound: does the device's endless output sound like the recording it learned, without copying it? Six corpus
clips (benchmarks/corpus.py), each trained with the real command at default options, rendered with the real device
command, measured with trainer/soundcheck.py against the clip and against two references without a model.

`make bench ARGS="--only sound"`. Other scripts reuse the pieces for ablation rows:

    from benchmarks import bench_sound, corpus
    clip = corpus.ensure_corpus(["folk"])[0]
    run = bench_sound.run_clip(clip, render_args=("--set", "temperature=0.5"), tag="t05")
    print(bench_sound.table([run]))                     # or run.figures.to_dict(); bench_sound.targets(run)
    figures = bench_sound.evaluate_wav(clip, "some.wav")  # any WAV against a clip
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import corpus
from .common import BENCH_OUT, ROOT, code_digest

SOUND_OUT = BENCH_OUT / "sound"
RENDER_SECONDS = 120.0
LONG_RENDER_SECONDS = 3600.0
LONG_CLIP = "folk"
RENDER_SEED = 1
REFERENCE_SEED = 0  # the granular player's
TRAIN_TARGET_S = 180.0  # for clips of up to SHORT_CLIP_S, incl. export, preview off
SHORT_CLIP_S = 30.0
QUICK_CLIP, QUICK_MINUTES, QUICK_RENDER_SECONDS = "voice", 0.5, 20.0
REPLAY_MAX_PCT = 20.0
MOVEMENT_RANGE = (0.5, 2.0)
DEAD_AIR_MARGIN_PCT = 1.0
LOOP_MAX_PCT = 5.0  # of 1.5-s windows that repeat the generator's own output of the last 10 s


BUNDLE_CODE = ("trainer/*.py", "device/bundle.py", "device/dsp/frames.py")  # what decides a bundle's content
NOT_BUNDLE_CODE = ("trainer/soundcheck.py", "trainer/preview.py", "trainer/liveness.py")  # measuring, not making


def code_hash() -> str:
    """code_digest of the code that makes a bundle (BUNDLE_CODE): a bundle made by other code is trained again;
    a change to the generator (device/generate/bank.py, device/generate/sampler.py …) or to a docstring only re-renders."""
    return code_digest([path for pattern in BUNDLE_CODE for path in ROOT.glob(pattern)
                        if str(path.relative_to(ROOT)) not in NOT_BUNDLE_CODE])


# ------------------------------------------------------------------------------------------------------ training


@dataclass
class Training:
    """A clip's bundle: where, how long the train command took (wall, s; from the stamp when reused), the
    trainer's own summary line, and whether it was reused from an earlier run."""

    bundle: Path
    wall_s: float
    summary: str
    reused: bool
    args: tuple[str, ...]


def train_clip(clip: corpus.Clip, *, minutes: float | None = None, extra_args: tuple[str, ...] = (),
               tag: str = "default") -> Training:
    """``python -m murmur.trainer train <clip.wav> --out out/bench/sound/<name>/bundle[-tag] --preview-seconds 0``
    (default options unless ``minutes``/``extra_args``), reused while a stamp beside it holds the same code hash,
    clip SHA-256 and arguments. Raises RuntimeError with the log's tail if training fails."""
    from murmur.device.bundle import load_bundle
    from murmur.device.errors import BundleError

    folder = SOUND_OUT / clip.name
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "" if tag == "default" else f"-{tag}"
    bundle, stamp_path, log_path = folder / f"bundle{suffix}", folder / f"bundle{suffix}.stamp.json", folder / f"train{suffix}.log"
    args = (*(() if minutes is None else ("--minutes", f"{minutes:g}")), *extra_args)
    key = {"code": code_hash(), "clip_sha256": corpus.sha256_file(clip.path), "args": list(args)}
    if bundle.is_dir() and stamp_path.is_file():
        try:
            stamp = json.loads(stamp_path.read_text())
            if stamp.get("key") == key:
                load_bundle(bundle)
                return Training(bundle, float(stamp["wall_s"]), stamp.get("summary", ""), True, args)
        except (ValueError, KeyError, BundleError):
            pass
    if bundle.exists():
        shutil.rmtree(bundle)
    cmd = [sys.executable, "-m", "murmur.trainer", "train", str(clip.path), "--out", str(bundle), "--preview-seconds", "0",
           *args]
    print(f"sound: training {clip.name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(log_path, "w") as log:
        code = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                              stdout=subprocess.DEVNULL, stderr=log).returncode
    wall = time.monotonic() - started
    text = log_path.read_text()
    if code != 0:
        raise RuntimeError(f"training {clip.name} failed (exit {code}); {log_path}:\n{text[-2000:]}")
    summary = next((line for line in text.splitlines() if line.startswith("done in")), "")
    stamp_path.write_text(json.dumps({"key": key, "wall_s": round(wall, 2), "summary": summary}, indent=1) + "\n")
    return Training(bundle, wall, summary, False, args)


# ------------------------------------------------------------------------------------------------------- rendering


@dataclass
class Render:
    """One device render: the WAV, its length (s), the process wall time (s) and the device's own × real time."""

    wav: Path
    seconds: float
    wall_s: float
    realtime_x: float | None
    args: tuple[str, ...]


def render(bundle: Path, wav: Path, seconds: float, render_args: tuple[str, ...] = ()) -> Render:
    """``python -m murmur.device render --bundle B --seconds S --out WAV --seed 1 [render_args…]``; RuntimeError on failure."""
    wav.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "murmur.device", "render", "--bundle", str(bundle), "--seconds", f"{seconds:g}",
           "--out", str(wav), "--seed", str(RENDER_SEED), *render_args]
    print(f"sound: rendering {seconds:g} s: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
                          text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"`python -m murmur.device render` failed (exit {proc.returncode}) on {bundle}:\n"
                           f"{(proc.stderr or proc.stdout)[-2000:]}")
    found = re.search(r"\((\d+(?:\.\d+)?)x real time\)", proc.stdout + proc.stderr)
    return Render(wav, seconds, wall, float(found.group(1)) if found else None, tuple(render_args))


# ------------------------------------------------------------------------------------------------------ measuring

_SOURCES: dict[str, tuple[np.ndarray, object]] = {}  # clip name -> (samples, soundcheck.Analysis), this process
_REFERENCES: dict[tuple[str, float], dict] = {}


def read_mono_44k(path: Path) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    audio = audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1)  # (n,) view for mono: an hour is 635 MB
    if rate != corpus.SAMPLE_RATE_HZ:
        import soxr

        audio = soxr.resample(audio, rate, corpus.SAMPLE_RATE_HZ, quality="HQ").astype(np.float32)
    return audio


def source_of(clip: corpus.Clip):
    """(samples (n,) float32 at 44.1 kHz, soundcheck.Analysis) of the clip's WAV, once per process."""
    from murmur.trainer import soundcheck

    sha = corpus.sha256_file(clip.path)
    key = f"{clip.name}:{sha}"
    if key not in _SOURCES:
        samples = read_mono_44k(clip.path)
        _SOURCES[key] = (samples, soundcheck.analyse(samples, corpus.SAMPLE_RATE_HZ, what=f"clip {clip.name}"))
    return _SOURCES[key]


def evaluate_wav(clip: corpus.Clip, wav_path: str | os.PathLike[str]):
    """Any WAV (mixed down, resampled to 44.1 kHz if needed) against the clip -> soundcheck.SoundFigures."""
    from murmur.trainer import soundcheck

    _, analysis = source_of(clip)
    return soundcheck.evaluate(analysis, read_mono_44k(Path(wav_path)), corpus.SAMPLE_RATE_HZ)


def references(clip: corpus.Clip, seconds: float) -> dict:
    """soundcheck.reference_figures of the clip: own halves and a granular render of ``seconds`` (seed 0)."""
    from murmur.trainer import soundcheck

    samples, analysis = source_of(clip)
    key = (clip.name, float(seconds))
    if key not in _REFERENCES:
        _REFERENCES[key] = soundcheck.reference_figures(analysis, corpus.SAMPLE_RATE_HZ, seconds, REFERENCE_SEED,
                                                        source_audio=samples)
    return _REFERENCES[key]


@dataclass
class ClipRun:
    """One clip, one render setting: training, render, figures, references (own half, granular of equal length)."""

    clip: corpus.Clip
    tag: str
    training: Training | None = None
    render: Render | None = None
    figures: object | None = None  # soundcheck.SoundFigures
    refs: dict = field(default_factory=dict)
    error: str = ""


def run_clip(clip: corpus.Clip, *, render_args: tuple[str, ...] = (), tag: str = "default",
             seconds: float = RENDER_SECONDS, train_minutes: float | None = None,
             train_args: tuple[str, ...] = ()) -> ClipRun:
    """Train (or reuse) the clip's bundle, render ``seconds`` with ``render_args`` (device CLI flags, e.g.
    ``("--set", "temperature=0.5")``) to out/bench/sound/<name>/<tag>-<seconds>s.wav, measure it against the clip
    and the references of the same length. ``train_minutes``/``train_args`` (trainer CLI flags) train a separate
    bundle, ``bundle-<tag>``; without them the default bundle is shared. Failures are kept in ``ClipRun.error``
    (the section still renders)."""
    result = ClipRun(clip, tag)
    try:
        trained_as = "default" if train_minutes is None and not train_args else tag  # own bundle for other options
        result.training = train_clip(clip, minutes=train_minutes, extra_args=train_args, tag=trained_as)
        wav = SOUND_OUT / clip.name / f"{tag}-{seconds:g}s.wav"
        result.render = render(result.training.bundle, wav, seconds, render_args)
        result.figures = evaluate_wav(clip, wav)
        result.refs = references(clip, seconds)
    except (RuntimeError, ValueError) as exc:
        result.error = str(exc)
    return result


# ----------------------------------------------------------------------------------------------------- reporting


def _num(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


TARGET_NAMES = ("frame FD ≤ own half", "93-ms FD ≤ own half", "1.5-s FD ≤ granular", f"replay ≤ {REPLAY_MAX_PCT:g} %",
                f"movement {MOVEMENT_RANGE[0]:g}–{MOVEMENT_RANGE[1]:g}",
                f"dead air ≤ source + {DEAD_AIR_MARGIN_PCT:g} %", "0 NaN", f"loops ≤ {LOOP_MAX_PCT:g} %")


def targets(run: ClipRun) -> dict[str, bool]:
    """The targets of one measured run (TARGET_NAMES -> met): FD frame/93 ms ≤ own half, FD 1.5 s ≤ granular of
    equal length, replay ≤ 20 %, movement 0.5–2, dead air ≤ source + 1 %, no NaN."""
    f, own, g = run.figures, run.refs["own_half"], run.refs["granular"]
    met = (
        f.fd_frame <= own["frame"],
        f.fd_93ms <= own["93ms"],
        f.fd_1500ms <= g.fd_1500ms,
        f.replay_pct <= REPLAY_MAX_PCT,
        MOVEMENT_RANGE[0] <= f.movement_ratio <= MOVEMENT_RANGE[1],
        f.dead_air_pct <= f.source_dead_air_pct + DEAD_AIR_MARGIN_PCT,
        f.nan_samples == 0,
        f.loop_pct <= LOOP_MAX_PCT,
    )
    return dict(zip(TARGET_NAMES, met, strict=True))


TABLE_HEAD = ("| | frame FD | 93-ms FD | 1.5-s FD | replay % | loops % | movement | static % | dead air % (source) | "
              "level dBFS (source) | NaN |\n|---|---|---|---|---|---|---|---|---|---|---|")


def _row(label: str, f) -> str:
    return (f"| {label} | {_num(f.fd_frame)} | {_num(f.fd_93ms)} | {_num(f.fd_1500ms)} | {f.replay_pct:.1f} | "
            f"{f.loop_pct:.1f} | {f.movement_ratio:.2f} | {f.static_pct:.1f} | {f.dead_air_pct:.1f} ({f.source_dead_air_pct:.1f}) | "
            f"{f.level_dbfs:.1f} ({f.source_level_dbfs:.1f}) | {f.nan_samples} |")


def _length(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def table(runs: list[ClipRun], *, labels: list[str] | None = None) -> str:
    """Markdown: own half, then per run the granular reference of its length and the model's row (runs of one
    clip; ``labels`` name the model rows, default "model (<length>)" plus the tag when not default)."""
    lines = [TABLE_HEAD]
    own_done, granular_done = False, set()
    for i, run in enumerate(runs):
        length = _length(run.render.seconds) if run.render else "?"
        label = labels[i] if labels else f"model ({length}{'' if run.tag == 'default' else ', ' + run.tag})"
        if run.error:
            lines.append(f"| {label} | FAILED: {run.error.splitlines()[0][:200]} | | | | | | | | |")
            continue
        own = run.refs["own_half"]
        if not own_done:
            lines.append(f"| own half (2nd vs 1st) | {_num(own['frame'])} | {_num(own['93ms'])} | {_num(own['1.5s'])} "
                         "| — | — | — | — | — | — |")
            own_done = True
        if run.render.seconds not in granular_done:
            lines.append(_row(f"granular ({length})", run.refs["granular"]))
            granular_done.add(run.render.seconds)
        lines.append(_row(label, run.figures))
    return "\n".join(lines)


def targets_line(run: ClipRun) -> str:
    if run.error:
        return "targets: not measured (failed)"
    return "targets: " + " · ".join(f"{name} {_mark(ok)}" for name, ok in targets(run).items())


def _clip_block(clip: corpus.Clip, runs: list[ClipRun]) -> str:
    seconds = corpus.duration_s(clip)
    notes = []
    t = runs[0].training
    if t:
        target = (f" (target ≤ {TRAIN_TARGET_S:g} s for clips ≤ {SHORT_CLIP_S:g} s: {_mark(t.wall_s <= TRAIN_TARGET_S)})"
                  if seconds <= SHORT_CLIP_S + 0.5 else "")
        reused = " (bundle reused: same code, same clip; time from its first run)" if t.reused else ""
        notes.append(f"Train command {t.wall_s:.0f} s wall{target}{reused}; the trainer said: {t.summary or '—'}.")
    renders = [f"{_length(r.render.seconds)} at {r.render.realtime_x:g}× real time ({r.render.wall_s:.0f} s wall "
               "incl. start-up)" for r in runs if r.render and r.render.realtime_x]
    if renders:
        notes.append("Render: " + "; ".join(renders) + ".")
    lines = [f"### `{clip.name}` — {clip.kind}, {seconds:.1f} s", "", *([" ".join(notes), ""] if notes else []),
             table(runs), ""]
    lines += [f"- {_length(r.render.seconds) if r.render else 'render'} {targets_line(r)}" for r in runs]
    for r in runs:
        if r.error:
            lines += ["", "```", r.error[-1500:], "```"]
    return "\n".join(lines)


def _summary(per_clip: dict[str, list[ClipRun]]) -> str:
    rows = [f"| clip (render) | train | render × RT | {' | '.join(TARGET_NAMES)} | met |",
            "|" + "---|" * (len(TARGET_NAMES) + 4)]
    for name, runs in per_clip.items():
        for run in runs:
            length = _length(run.render.seconds) if run.render else "—"
            train = f"{run.training.wall_s:.0f} s" if run.training else "—"
            if run.error:
                rows.append(f"| `{name}` ({length}) | {train} | failed: see below |" + " |" * len(TARGET_NAMES) + " 0 |")
                continue
            marks = targets(run)
            rt = f"{run.render.realtime_x:g}×" if run.render.realtime_x else "—"
            rows.append(f"| `{name}` ({length}) | {train} | {rt} | " + " | ".join(_mark(v) for v in marks.values())
                        + f" | {sum(marks.values())}/{len(marks)} |")
    return "\n".join(rows)


METHOD = """Each clip is trained with the command an artist runs, `python -m murmur.trainer train <clip>.wav --out
out/bench/sound/<clip>/bundle --preview-seconds 0`, at default options (the bundle is reused while a stamp holds
the same hash of the code that makes bundles (`trainer/*.py`, `device/bundle.py`, `device/dsp/frames.py`) and the clip's SHA-256); rendered with `python -m murmur.device render
--bundle … --seconds 120 --seed 1` at default controls (`folk` also for 1 hour); every render is measured against
its clip with `trainer/soundcheck.py` (its docstring has the exact recipe):

- **Log-mel frames**: STFT n_fft 2048, hop 512 (11.6 ms), Hann, power through 64 librosa mel bands up to 22.05 kHz,
  10·log10(mel + 1e-10) dB.
- **Fréchet distance (FD)** at three scales: single frames (64 dims), 93-ms patches (8 frames stacked, 512 dims,
  hop 4 frames) and 1.5-s phrases (129 frames averaged into 16 steps, 1024 dims, hop 22 frames ≈ 0.25 s). PCA fitted
  on the clip's vectors (16 components for frames, 32 for patches), both sets projected, FD = |μ₁−μ₂|² +
  Tr(S₁ + S₂ − 2·(S₁S₂)^½), in dB². Lower = closer; it grows when a set is small, so each row is compared with a
  reference of like size.
- **References** (no model): *own half* = the clip's second half against its first half (the frame and 93-ms FD
  targets: the model should be as close to the clip as the clip is to itself); *granular* = a player that
  overlap-adds 0.25-s Hann grains from random positions of the clip (50 % overlap, RMS-preserving), rendered at the
  same length (the 1.5-s FD target: grains keep the texture, not the phrases).
- **Phrase replay**: each 1.5-s window of the render (hop 22 frames) against every 1.5-s window of the clip (hop 2
  frames), Euclidean in the clip's 32-component PCA space; a window counts as replay when its nearest distance is
  below ¼ of the median distance between the clip's second-half windows and their nearest first-half window.
  Replay % = share of such windows (the clip against itself: 100 %).
- **Loops**: the same test of each 1.5-s window of the render against the render's own windows that start 1.5 to
  10 s earlier (hop 2 frames): the share that nearly repeats what was just played (a cycle, a stuck phrase).
- **Liveness** (as `device/dsp/measures.py` defines it, shared with `trainer/liveness.py`): movement = median change of the 1-s mean dB spectrum from second to
  second, render / clip (≈1 for music against itself; a drone ≈0.1); static % = seconds moving less than ¼ of
  the clip's median; dead air % = non-overlapping 1-s windows below −50 dBFS RMS (render, and the clip in
  brackets); level = RMS of the whole audio in dBFS; NaN = non-finite samples.

Targets per clip (model rows): frame and 93-ms FD ≤ own half; 1.5-s FD ≤ granular of the same length; replay ≤
20 %; movement 0.5–2; dead air ≤ the clip's + 1 %; 0 NaN; loops ≤ 5 %. Train wall time is the whole command (start-up, decode,
training, export; the preview is off here), target ≤ 180 s for 30-s clips."""


def run(quick: bool) -> str:
    started = time.monotonic()
    names = [QUICK_CLIP] if quick else [c.name for c in corpus.CLIPS]
    try:
        clips = corpus.ensure_corpus(names)
    except corpus.CorpusError as exc:
        return f"## Sound\n\nThe corpus could not be made: {exc}\n"
    per_clip: dict[str, list[ClipRun]] = {}
    for clip in clips:
        if quick:
            runs = [run_clip(clip, seconds=QUICK_RENDER_SECONDS, train_minutes=QUICK_MINUTES, tag="quick")]
        else:
            runs = [run_clip(clip)]
            if clip.name == LONG_CLIP and not runs[0].error:
                runs.append(run_clip(clip, seconds=LONG_RENDER_SECONDS))
        per_clip[clip.name] = runs
        print(f"sound: {clip.name} done ({time.monotonic() - started:.0f} s so far)", file=sys.stderr, flush=True)
    parts = ["## Sound", "",
             "`make bench ARGS=\"--only sound\"` — is the endless output like the recording, without copying it? "
             + ("**Quick run (`--quick`): the `voice` clip only, trained for 0.5 min, 20-s render; figures not for "
                "the record.**" if quick else ""),
             "", METHOD, "", "Corpus (cut from Debian 12 packages at bench time by `benchmarks/corpus.py` into "
             "`out/corpus/`, never committed):", "", corpus.corpus_table(clips), "",
             "Summary (model rows):", "", _summary(per_clip), ""]
    for clip in clips:
        parts += [_clip_block(clip, per_clip[clip.name]), ""]
    return "\n".join(parts)
