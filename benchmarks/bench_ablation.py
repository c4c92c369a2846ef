"""Ablation of generator designs on the evaluation corpus: which design plays closest to each recording.

Every row is one way to turn a trained bundle (or the clip's frames, for the token rows) into 120 s of audio,
measured against its clip by ``trainer/soundcheck.py`` exactly as the "Sound" section measures the default
(``benchmarks/bench_sound.py``; the device rows reuse its bundles, trained with the default ``make train``).

    make bench ARGS="--only ablation"                               every row (all clips)
    .venv/trainer/bin/python -m benchmarks.bench_ablation --rows bigram token-lstm   some rows; the rest kept

Results per row and clip are kept in out/bench/ablation/results.json, so re-running rows rewrites the table with
the others as they were measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import bench_sound, corpus
from benchmarks.common import BENCH_OUT, ROOT
from murmur.device.files import replace_file

RESULTS = BENCH_OUT / "ablation" / "results.json"
SECONDS = bench_sound.RENDER_SECONDS


@dataclass(frozen=True)
class Row:
    """One design: how its audio is made (device CLI flags on the clip's default bundle, or a token variant)."""

    label: str
    render_args: tuple[str, ...] = ()
    tokens: str = ""  # a benchmarks/ablation_tokens.py variant instead of the device

    def command(self, name: str) -> str:
        if self.tokens:
            return (f"`python -m benchmarks.ablation_tokens --clip out/corpus/<clip>.wav --variant {self.tokens} "
                    f"--seconds {SECONDS:g} --seed {bench_sound.RENDER_SEED} --out <wav>`")
        extra = " ".join(f'"{a}"' if " " in a else a for a in self.render_args)
        return f"`python -m murmur.device render --bundle <clip bundle> --seconds {SECONDS:g} --seed 1 {extra}`".replace(" `", "`")


ROWS: dict[str, Row] = {
    "regression": Row("the LSTM's own frames fed back (the regression sampler of format-1 bundles: noise, clamping, "
                      "re-warmed jumps)", ("--generator", "regression")),
    "snap-every-frame": Row("the LSTM's prediction snapped to the nearest real frame at every frame (fed back, frames "
                            "of the last 4 s barred): fidelity 0", ("--set", "fidelity=0")),
    "bank": Row("**chosen:** LSTM + frame bank, real phrases cut where the LSTM chooses (default controls, "
                "fidelity 0.3)"),
    "bank-no-model": Row("the same phrases, but a cut picks frames near the current frame: no LSTM",
                         ("--generator", "bank-no-model")),
    "bank-faithful": Row("LSTM + frame bank at fidelity 1 (phrases of 6 s on average)", ("--set", "fidelity=1")),
    "bigram": Row("no network: k-means tokens (PCA-64, K = frames/8 within 64…512), bigram chain mixed 10 % with "
                  "the unigram, each token played as a real member frame", tokens="bigram"),
    "token-lstm": Row("token LSTM (embedding 64, 2 × LSTM 256) fitted to the material for 90 s, sampled at T 1, "
                      "member frames", tokens="token_lstm"),
}


def _token_render(clip: corpus.Clip, variant: str, wav: Path) -> float:
    """Render a token variant with its CLI -> wall seconds. Raises RuntimeError with its output on failure."""
    cmd = [sys.executable, "-m", "benchmarks.ablation_tokens", "--clip", str(clip.path), "--variant", variant,
           "--seconds", f"{SECONDS:g}", "--seed", str(bench_sound.RENDER_SEED), "--out", str(wav)]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed: {proc.stderr[-1500:]}")
    return time.monotonic() - started


def measure(name: str, clip: corpus.Clip) -> dict:
    """One row on one clip -> {"figures": {...}, "targets": {...}, "wall_s": …} or {"error": …}."""
    row = ROWS[name]
    try:
        if row.tokens:
            wav = bench_sound.SOUND_OUT / clip.name / f"ablation-{name}-{SECONDS:g}s.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            wall = _token_render(clip, row.tokens, wav)
            run = bench_sound.ClipRun(clip, name, figures=bench_sound.evaluate_wav(clip, wav),
                                      refs=bench_sound.references(clip, SECONDS))
        else:
            run = bench_sound.run_clip(clip, render_args=row.render_args, tag=f"ablation-{name}", seconds=SECONDS)
            if run.error:
                return {"error": run.error}
            wall = run.render.wall_s if run.render is not None else float("nan")
    except (RuntimeError, ValueError) as exc:
        return {"error": str(exc)}
    own, granular = run.refs["own_half"], run.refs["granular"]
    return {"figures": run.figures.to_dict(), "targets": bench_sound.targets(run), "wall_s": round(wall, 1),
            "own_half": own, "granular_fd_1500ms": granular.fd_1500ms}


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference > 0 else "—"


def report(results: dict) -> str:
    """Markdown: a summary per row (ratios to the references, medians over clips) and the per-clip figures."""
    clips = [c.name for c in corpus.CLIPS]
    lines = [
        "## Sound ablation: generator designs on the evaluation corpus",
        "",
        __doc__.split("\n\n")[1].strip().replace("\n", " ") + " Lower FD is closer to the recording. Ratios make "
        "the clips comparable: frame and 93-ms FD divided by the clip's own-half FD (below 1 = closer to the "
        "recording than its two halves are to each other), 1.5-s FD divided by the granular player's (below 1 = "
        "better phrases than random 0.25-s grains); medians over the clips, worst clip in brackets. Targets: the "
        "eight of the Sound section (frame and 93-ms FD ≤ own half, 1.5-s FD ≤ granular, replay ≤ 20 %, movement "
        "0.5–2, dead air ≤ source + 1 %, no NaN, loops ≤ 5 %).",
        "",
        "Re-run a row: `.venv/trainer/bin/python -m benchmarks.bench_ablation --rows NAME` (all rows: `make bench "
        "ARGS=\"--only ablation\"`).",
        "",
        "| row | design | frame FD ÷ own half | 93-ms FD ÷ own half | 1.5-s FD ÷ granular | replay % (max) | "
        "movement (range) | clips meeting all 8 targets |",
        "|---|---|---|---|---|---|---|---|",
    ]
    import numpy as np

    for name, row in ROWS.items():
        per_clip = [results.get(name, {}).get(c) for c in clips]
        done = [r for r in per_clip if r and "figures" in r]
        if not done:
            lines.append(f"| `{name}` | {row.label} | not measured | | | | | |")
            continue
        frame = [r["figures"]["fd_frame"] / r["own_half"]["frame"] for r in done]
        patch = [r["figures"]["fd_93ms"] / r["own_half"]["93ms"] for r in done]
        phrase = [r["figures"]["fd_1500ms"] / r["granular_fd_1500ms"] for r in done]
        replay = [r["figures"]["replay_pct"] for r in done]
        movement = [r["figures"]["movement_ratio"] for r in done]
        met = sum(all(r["targets"].values()) for r in done)
        lines.append(
            f"| `{name}` | {row.label} | {np.median(frame):.2f} ({max(frame):.2f}) | {np.median(patch):.2f} "
            f"({max(patch):.2f}) | {np.median(phrase):.2f} ({max(phrase):.2f}) | {np.median(replay):.1f} "
            f"({max(replay):.1f}) | {np.median(movement):.2f} ({min(movement):.2f}–{max(movement):.2f}) | "
            f"{met} of {len(done)} |")
    lines += ["", "Per clip: frame / 93-ms / 1.5-s FD, replay % (✅ = all eight targets met on that clip).", "",
              "| row | " + " | ".join(clips) + " |", "|---|" + "---|" * len(clips)]
    refs_own = {c: next((results[n][c]["own_half"] for n in rows_of(results)
                         if c in results[n] and "own_half" in results[n][c]), None) for c in clips}
    refs_gran = {c: next((results[n][c]["granular_fd_1500ms"] for n in rows_of(results)
                          if c in results[n] and "granular_fd_1500ms" in results[n][c]), None) for c in clips}
    lines.append("| *own half* | " + " | ".join(
        f"{o['frame']:.0f} / {o['93ms']:.0f} / {o['1.5s']:.0f}" if o else "—" for o in refs_own.values()) + " |")
    lines.append("| *granular (1.5-s FD)* | " + " | ".join(f"{g:.0f}" if g else "—" for g in refs_gran.values()) + " |")
    for name in ROWS:
        cells = []
        for c in clips:
            r = results.get(name, {}).get(c)
            if not r:
                cells.append("—")
            elif "error" in r:
                cells.append("error")
            else:
                f = r["figures"]
                mark = " ✅" if all(r["targets"].values()) else ""
                cells.append(f"{f['fd_frame']:.0f} / {f['fd_93ms']:.0f} / {f['fd_1500ms']:.0f}, "
                             f"{f['replay_pct']:.0f} %{mark}")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "How each row is made:", ""]
    lines += [f"- `{name}`: {row.command(name)}" for name, row in ROWS.items()]
    errors = [f"- `{n}` on {c}: {r['error'][:300]}" for n in rows_of(results) for c, r in results[n].items()
              if "error" in r]
    if errors:
        lines += ["", "Errors:", *errors]
    return "\n".join(lines) + controls_report(results)


def rows_of(results: dict) -> list[str]:
    """The row names in ``results`` (the controls table is kept under "_controls")."""
    return [name for name in results if not name.startswith("_")]


CONTROLS_CLIP = "piece"  # the 200-s piece: enough material for position/spread to mean something
CONTROLS_SECONDS = 60.0
CONTROL_SETTINGS: tuple[tuple[str, str], ...] = (
    ("default", ""),
    ("fidelity=0", "fidelity=0"), ("fidelity=0.3", "fidelity=0.3"), ("fidelity=0.6", "fidelity=0.6"),
    ("fidelity=1", "fidelity=1"),
    ("temperature=0", "temperature=0"), ("temperature=1", "temperature=1"), ("temperature=2", "temperature=2"),
    ("jump=0", "jump=0"), ("jump=4", "jump=4"),
    ("position=0 spread=0.1", "position=0 spread=0.1"), ("position=1 spread=0.1", "position=1 spread=0.1"),
    ("hold=on", "hold=1"), ("gain_db=-12", "gain_db=-12"),
)


def measure_controls() -> dict:
    """60-s renders of the controls clip's default bundle at each of CONTROL_SETTINGS -> {setting: figures}.

    Besides the usual figures: frame FD of the render against the first and the last tenth of the clip (where
    position/spread put the sound).
    """
    from murmur.trainer import soundcheck

    clip = corpus.ensure_corpus([CONTROLS_CLIP])[0]
    samples, _ = bench_sound.source_of(clip)
    tenth = len(samples) // 10
    out = {}
    for label, setting in CONTROL_SETTINGS:
        print(f"ablation: controls {label}", file=sys.stderr, flush=True)
        tag = "controls-" + (setting.replace(" ", "-").replace("=", "") or "default")
        run = bench_sound.run_clip(clip, render_args=("--set", setting) if setting else (), tag=tag,
                                   seconds=CONTROLS_SECONDS)
        if run.error:
            out[label] = {"error": run.error}
            continue
        audio = bench_sound.read_mono_44k(run.render.wav)
        rate = corpus.SAMPLE_RATE_HZ
        out[label] = {
            "figures": run.figures.to_dict(),
            "fd_first_tenth": soundcheck.frechet_distances(samples[:tenth], audio, rate)["frame"],
            "fd_last_tenth": soundcheck.frechet_distances(samples[-tenth:], audio, rate)["frame"],
        }
    return out


def controls_report(results: dict) -> str:
    measured = results.get("_controls")
    if not measured:
        return ""
    lines = [
        "",
        f"### What each control does on the chosen design (`{CONTROLS_CLIP}` clip, {CONTROLS_SECONDS:g}-s renders, "
        "seed 1, one control changed from the defaults)",
        "",
        "Re-run: `.venv/trainer/bin/python -m benchmarks.bench_ablation --controls`. \"FD first / last tenth\": frame "
        "FD of the render against the first and the last 10 % of the clip (position/spread choose where in the "
        "material the sound comes from).",
        "",
        "| setting | frame FD | 1.5-s FD | replay % | movement | static % | level dBFS | FD first / last tenth |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in measured.items():
        if "error" in r:
            lines.append(f"| `{label}` | error: {r['error'][:200]} | | | | | | |")
            continue
        f = r["figures"]
        lines.append(f"| `{label}` | {f['fd_frame']:.0f} | {f['fd_1500ms']:.0f} | {f['replay_pct']:.1f} | "
                     f"{f['movement_ratio']:.2f} | {f['static_pct']:.0f} | {f['level_dbfs']:.1f} | "
                     f"{r['fd_first_tenth']:.0f} / {r['fd_last_tenth']:.0f} |")
    return "\n".join(lines)


def measure_rows(names: list[str], clip_names: list[str] | None = None) -> dict:
    """Measure ``names`` on the corpus (or ``clip_names``), merge into RESULTS, return all results."""
    clips = corpus.ensure_corpus(clip_names)
    for name in names:
        for clip in clips:
            print(f"ablation: {name} on {clip.name}", file=sys.stderr, flush=True)
            result = measure(name, clip)
            _update(lambda results, name=name, clip=clip, result=result:
                    results.setdefault(name, {}).__setitem__(clip.name, result))
    return _read()


def _read() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def _update(change) -> None:
    """Read RESULTS, apply ``change(results)``, write it back (read just before writing: runs of other rows keep
    their results)."""
    results = _read()
    change(results)
    replace_file(RESULTS, json.dumps(results, indent=1) + "\n")


def run(quick: bool) -> str:
    if quick:
        return report(measure_rows(["bank", "bank-no-model"], ["voice"]))
    measure_rows(list(ROWS))
    return report(save_controls())


def save_controls() -> dict:
    measured = measure_controls()
    _update(lambda results: results.__setitem__("_controls", measured))
    return _read()


def main(argv: list[str] | None = None) -> int:
    from benchmarks.__main__ import OUTPUT, read_sections, write

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ablation", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--clips", nargs="+", choices=[c.name for c in corpus.CLIPS], default=None)
    parser.add_argument("--controls", action="store_true", help="measure the controls table only")
    parser.add_argument("--report", action="store_true", help="measure nothing: rewrite the section from the results")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.report:
        body = report(_read())
    else:
        body = report(save_controls() if args.controls else measure_rows(args.rows, args.clips))
    sections = read_sections(OUTPUT.read_text()) if OUTPUT.exists() else {}
    import platform

    sections["ablation"] = (f"{body}\n\n_{time.strftime('%Y-%m-%d')}, {platform.machine()}, Python "
                            f"{platform.python_version()}, last run: "
                            f"{'report' if args.report else 'controls' if args.controls else 'rows ' + ', '.join(args.rows)}: "
                            f"{time.monotonic() - started:.0f} s_")
    write(sections)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
