"""Trainer figures on the 30-s demo clip: held-out LSD vs baselines, `make train` wall time, bundle size, peak
memory of training, and 60 s of free-running preview (NaN, dead air, static drone); plus the wall time of
`make train` on a 200-s piece of the evaluation corpus within its default 3-minute budget."""

from __future__ import annotations

import shutil

import numpy as np

from .common import BENCH_OUT, DEMO_BUNDLE, DEMO_CLIP, STAMP, run_train, trainer_code_hash

PREVIEW_S = 60.0
SEEDS = (0, 1)


def _lsd_baselines() -> dict[str, float]:
    """Teacher-forced held-out LSD of the no-training predictors, on the trainer's own validation windows."""
    from murmur.trainer.dataset import FrameSettings, build_dataset, lsd_db

    ds = build_dataset([DEMO_CLIP], FrameSettings(), cache_dir=BENCH_OUT / "cache")
    v = ds.validation
    scale = ds.persistence_scale()
    return {
        "repeat the last frame": lsd_db(v.inputs, v.targets, v.weights, ds.std),
        "shrink the last frame toward the per-bin mean (least squares, no training)":
            lsd_db(v.inputs * scale, v.targets, v.weights, ds.std),
        "constant per-bin mean spectrum": lsd_db(np.zeros_like(v.inputs), v.targets, v.weights, ds.std),
    }


def _liveness(bundle_dir, seconds: float):
    import soundfile

    from murmur.device.bundle import load_bundle
    from murmur.device.playback.engine import render
    from murmur.trainer.audio import decode
    from murmur.trainer.liveness import measure

    bundle = load_bundle(bundle_dir)
    reference = decode(DEMO_CLIP, bundle.audio.sample_rate_hz).samples
    results = []
    for seed in SEEDS:
        audio = render(bundle, seconds, seed=seed)
        soundfile.write(BENCH_OUT / f"preview-seed{seed}.wav", np.clip(audio, -1, 1), bundle.audio.sample_rate_hz)
        results.append(measure(audio, reference, bundle.audio.sample_rate_hz))
    return results


def _piece_run():
    """``make train`` at defaults (3-min budget, preview on) on the corpus's 200-s piece: (TrainRun, clip seconds);
    None when the corpus cannot be built here (no Debian package mirror)."""
    from . import corpus

    try:
        (clip,) = corpus.ensure_corpus(["piece"])
    except corpus.CorpusError:
        return None
    out = BENCH_OUT / "piece_bundle"
    shutil.rmtree(out, ignore_errors=True)
    return run_train(out, "--name", "piece", minutes=3.0, clip=clip.path), corpus.duration_s(clip)


def run(quick: bool) -> str:
    from murmur.device.bundle import load_bundle
    from murmur.trainer.export import BUNDLE_BYTES_LIMIT

    BENCH_OUT.mkdir(parents=True, exist_ok=True)
    minutes = 1.0 if quick else 3.0
    out = BENCH_OUT / ("quick_bundle" if quick else DEMO_BUNDLE.name)
    cold_cache = BENCH_OUT / "cache-cold"
    shutil.rmtree(cold_cache, ignore_errors=True)  # preprocessing is measured from scratch
    run_ = run_train(out, "--name", "demo", minutes=minutes, cache=cold_cache)
    if run_.returncode != 0:
        return f"## Trainer\n\n`make train` on the demo clip FAILED (exit {run_.returncode}):\n\n```\n{run_.stderr[-3000:]}\n```\n"
    if not quick:
        STAMP.write_text(trainer_code_hash() + "\n")  # benchmarks.common.trained_demo_bundle() reuses it
    bundle = load_bundle(out)
    meta = bundle.meta
    training = meta["training"]
    validation = training["validation"]
    size = sum(p.stat().st_size for p in out.iterdir())
    files = meta["files"]
    summary = next((line for line in run_.stderr.splitlines() if line.startswith("done in")), "")
    baselines = _lsd_baselines()
    live = _liveness(out, 20.0 if quick else PREVIEW_S)
    seconds = 20 if quick else int(PREVIEW_S)
    piece = None if quick else _piece_run()

    def both(key: str, fmt: str) -> str:
        return " / ".join(fmt.format(getattr(r, key)) for r in live)

    lsd = validation["teacher_forced_lsd_db"]
    rows = [
        ("held-out teacher-forced next-frame LSD (dB)", f"{lsd:.2f} (best epoch {training['best_epoch']} of "
         f"{training['epochs']})", f"< repeat-the-last-frame {validation['repeat_last_frame_lsd_db']:.2f}",
         "pass" if lsd < validation["repeat_last_frame_lsd_db"] else "FAIL"),
        ("`make train` wall, 30-s clip, cold cache, incl. preprocessing, export and the 30-s preview",
         f"{run_.wall_s:.0f} s", "≤ 180 s (stretch 120 s)", "pass" if run_.wall_s <= 180 else "FAIL"),
        ("bundle size (dynamic-range model + seeds + json)",
         f"{size / 1e6:.2f} MB (model {files['model.tflite']['bytes'] / 1e6:.2f}, seeds {files['seeds.npz']['bytes'] / 1e6:.2f}; "
         f"{meta['seeds']['frames']} bank frames)", f"≤ {BUNDLE_BYTES_LIMIT / 1e6:g} MB",
         "pass" if size <= BUNDLE_BYTES_LIMIT else "FAIL"),
        ("peak RSS of the training process", f"{run_.peak_rss_bytes / 1e9:.2f} GB", "≤ 3 GB",
         "pass" if run_.peak_rss_bytes <= 3e9 else "FAIL"),
        (f"{seconds} s preview (seeds {SEEDS}): NaN samples", both("nan_samples", "{}"), "0",
         "pass" if all(r.nan_samples == 0 for r in live) else "FAIL"),
        (f"{seconds} s preview: 1-s windows below −50 dBFS (quietest second)",
         " / ".join(f"{r.dead_air_windows} ({r.quietest_window_dbfs:.1f} dBFS)" for r in live), "0",
         "pass" if all(r.dead_air_windows == 0 for r in live) else "FAIL"),
        (f"{seconds} s preview: movement ratio vs the training audio", both("movement_ratio", "{:.2f}"), "0.5 – 2 (music vs itself ≈ 1)",
         "pass" if all(0.5 <= r.movement_ratio <= 2 for r in live) else "FAIL"),
        (f"{seconds} s preview: static seconds", both("static_fraction", "{:.0%}"), "≤ 10 %",
         "pass" if all(r.static_fraction <= 0.1 for r in live) else "FAIL"),
        (f"{seconds} s preview: level vs source (RMS)",
         " / ".join(f"{r.level_dbfs - r.reference_level_dbfs:+.1f} dB" for r in live), "within ±6 dB",
         "pass" if all(abs(r.level_dbfs - r.reference_level_dbfs) <= 6 for r in live) else "FAIL"),
    ]
    if piece is not None:
        piece_run, piece_s = piece
        ok = piece_run.returncode == 0 and piece_run.wall_s <= 180
        rows.insert(2, (f"`make train` wall, corpus `piece` ({piece_s:.0f} s of music), default `MINUTES=3`, incl. "
                        "export and the 30-s preview", f"{piece_run.wall_s:.0f} s" + ("" if piece_run.returncode == 0
                        else f" (exit {piece_run.returncode})"), "≤ 180 s", "pass" if ok else "FAIL"))
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    base_rows = "\n".join(f"| {name} | {value:.2f} |" for name, value in baselines.items())
    model = meta["model"]
    return f"""## Trainer

`make bench ARGS="--only trainer"` — trains the default model ({model['layers']} × LSTM {model['units']}, hop
{meta['audio']['hop_length']}, {model['quantisation']}) on `trainer/demo/demo.ogg` (30 s) with
`python -m murmur.trainer train trainer/demo/demo.ogg --out {out.relative_to(BENCH_OUT.parent.parent)} --minutes {minutes:g}`
(the command `make train` runs), then renders with the device's own `murmur.device.playback.engine.render`.{" QUICK run: figures not for the record." if quick else ""}

| figure | measured | target | |
|---|---|---|---|
{table}

Trainer's own account: `{summary}`. Parity of the TFLite file with Keras: max |error|
{model['parity_max_abs_error']:.2g} over {model['parity_steps']} steps (model units); runtimes verified: {', '.join(model['runtimes_verified'])}.

Held-out LSD of the no-training predictors on the same windows (dB):

| predictor | LSD dB |
|---|---|
{base_rows}
| the trained model (teacher-forced, best epoch) | {lsd:.2f} |

How each figure is measured:
- **LSD**: held out = the last 10 % of every ~10-s block of the clip (silent ends trimmed first). Each held-out
  frame is predicted once from the real frames before it (≥ 32 frames of context) — teacher forcing. Per frame,
  LSD = 20/ln 10 · std · √(mean over bins of (pred − target)²) in model units, i.e. the RMS over bins of the dB
  difference of log(|STFT| + 1e-5); averaged over frames.
- **Wall time**: the train command as a child process, from start to exit, with an empty frame cache, the
  30-s preview render included. Peak RSS: that child's `ru_maxrss` from `os.wait4`.
- **Bundle size**: every file in the bundle directory. The frame bank is uint8 per bin
  (`murmur.device.bundle.quantise_seeds`), compressed: every frame of up to 200 s of audio, evenly spaced 256-frame runs
  beyond that, within the exporter's cap.
- **Piece**: `benchmarks/corpus.py` cuts the first 200 s of "Still Another Wanderer" from Debian's
  `wesnoth-1.16-music` (see the Sound section); trained with `python -m murmur.trainer train out/corpus/piece.wav --out
  out/bench/piece_bundle` at defaults, timed like the demo clip.
- **Preview**: `murmur.device.playback.engine.render(bundle, {seconds}, seed=s)` with the default controls (the Pi's code). Dead
  air and movement as `device/dsp/measures.py` defines them (`trainer/liveness.py`): dead air = RMS of a
  non-overlapping 1-s window below −50 dBFS. Movement: per 1-s window the mean dB
  spectrum; movement = RMS over bins of its change from one second to the next; ratio = median over the
  preview / median over the training audio. A second is static when its movement is below ¼ of the training
  audio's median.

Choices this defends: a record of development runs on this clip (2-core machine under load, 2026-11-24, seed 0,
bundle format 1: a 4-MB cap, the regression generator), not re-measured by this bench. Rows but the shrink-init ones re-run with `make train DATA=trainer/demo/demo.ogg
OUT=… ARGS="--units N --dropout D --input-noise X --max-epochs E --patience P"`; shrink init was a code change
that was not kept.

| variant | best held-out LSD dB (baseline 6.50) | 60-s preview movement ratio (2 seeds) |
|---|---|---|
| 3 × 192, persistence init, dropout 0.3 after each LSTM — **default** | 6.39 (epoch 18) | 0.89 / 0.77 |
| 3 × 192, persistence init, no dropout | 6.44 (epoch 4) | 0.98 / 0.99 |
| 3 × 192, persistence init, no dropout, input noise 0.2 instead of 0.5 | 6.45 (epoch 4) | 1.03 / 1.03 |
| 3 × 192, scale initialised to the least-squares shrink | 6.29 | 0.40 / 0.29 (drone) |
| 3 × 192, persistence init, 12 epochs, no early stopping | 6.50 | 1.00 / 0.92 |
| 3 × 128, persistence init | 6.40 (epoch 14) | 0.86 / 0.80 |
| 3 × 256, persistence init (model 2.7 MB: only 1 048 seed frames fit) | 6.42 (epoch 7) | 0.95 / 0.85 |
| 3 × 128 / 3 × 256, shrink init, best epoch | 6.27 / 6.26 | — |
| bundle with 3 × 256: model 2.74 MB, so only 1 048 of 2 584 seed frames fit in 4 MB; 3 × 192: 1.82 MB + all frames | | |

Without dropout, held-out loss is lowest after 2–4 epochs at every size (2 300 training frames against 1–3 M
weights); dropout 0.3 moves the best epoch to ~18 and is the only variant that beats the no-training "shrink"
predictor, and its free-running spectrogram keeps clearer harmonic partials (the no-dropout model's liveness
is mostly the sampler's noise). Early stopping on held-out data (patience 8, best weights restored) decides,
not the budget. Units barely change the LSD, so the size is set by the 4-MB bundle (model + as many seed
frames as possible). Initialising the per-bin scale to the least-squares shrink wins teacher-forced LSD but
drones when free-running, so the scale starts at 1 (persistence). Since then the device plays real frames of the
bank and the LSTM only chooses where to cut (see the Sound ablation), so the 4-MB trade-off above no longer binds.
"""
