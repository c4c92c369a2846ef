"""Model: what the LSTM adds to the sound, with seeds, along the fidelity knob.

Every figure is a 120-s render of a corpus clip's bundle (``benchmarks/bench_sound.py`` trains it with the default
``make train``; the retrieval row with ``--objective retrieval``), made in-process by the device's own
``murmur.device.playback.engine.render`` (the code ``make render`` runs) and scored by ``trainer/soundcheck.py``
against the clip, at seeds 1, 2 and 3: seed spread is as large as many effects, so a row only beats another where
its seed range does.

    make bench ARGS="--only model"                                   every clip, row and fidelity
    .venv/trainer/bin/python -m benchmarks.bench_model --clips voice --rows no-model     some; the rest kept
    .venv/trainer/bin/python -m benchmarks.bench_model --report      the section again from the kept results

Results are kept per clip, row, fidelity and seed in out/bench/model/results.json (with the bundle's id: a bundle
trained again is measured again). The fidelity picture is written to docs/fidelity.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import bench_sound, corpus
from benchmarks.common import BENCH_OUT, ROOT
from murmur.device.files import PendingFile, replace_file

RESULTS = BENCH_OUT / "model" / "results.json"
PICTURE = ROOT / "docs" / "fidelity.png"
SECONDS = bench_sound.RENDER_SECONDS
SEEDS = (1, 2, 3)
SWEEP = (0.0, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0)
ENDS_AND_DEFAULT = (0.0, 0.3, 1.0)
COMPARED = (0.0, 0.3, 0.6)  # where no model is measured beside the model: the ends of the knob's inventive half
DEFAULT_FIDELITY = 0.3
HIGH_BAND_HZ = 8000.0
QUICK_CLIP, QUICK_SECONDS = "voice", 20.0


@dataclass(frozen=True)
class Row:
    """One way of choosing frames: a bundle trained with ``train_args``, rendered with ``generator``."""

    label: str
    train_args: tuple[str, ...] = ()
    generator: str = "auto"
    fidelities: tuple[float, ...] = ENDS_AND_DEFAULT

    @property
    def bundle_tag(self) -> str:
        return "default" if not self.train_args else "retrieval"


ROWS: dict[str, Row] = {
    "lstm": Row("the shipped generator on today's model (`make train`: the LSTM predicts the next frame, MSE): a "
                "cut weighs the bank frame against the LSTM's prediction and the frame's context key against its "
                "state", fidelities=SWEEP),
    "lstm-retrieval": Row("the LSTM trained to pick the real next frame out of the bank (`--objective retrieval`: "
                          "cross-entropy through the cut's own softmax)", train_args=("--objective", "retrieval")),
    "no-model": Row("no model: a cut plays a bank frame near the current one (`--generator bank-no-model`)",
                    generator="bank-no-model", fidelities=COMPARED),
}


def high_band_jumps_db(audio: np.ndarray, sr: int, n_fft: int = 2048, hop: int = 512) -> float:
    """95th percentile of |frame-to-frame change| of the energy above HIGH_BAND_HZ, dB: how audible cuts are on
    bright material (a cut across a cymbal's decay is a step here). ``audio`` (n_samples,) float at ``sr`` Hz."""
    from murmur.device.dsp import frames

    mags = frames.stft_magnitudes(np.asarray(audio, np.float32), n_fft=n_fft, hop_length=hop)
    first = int(np.ceil(HIGH_BAND_HZ * n_fft / sr))
    energy_db = 10.0 * np.log10(np.sum(mags[:, first:].astype(np.float64) ** 2, axis=1) + 1e-10)
    return float(np.percentile(np.abs(np.diff(energy_db)), 95))


def measure_one(clip: corpus.Clip, bundle_dir: Path, row: Row, fidelity: float, seed: int, seconds: float) -> dict:
    """One render -> {"figures": SoundFigures as dict, "high_band_p95_db": …, "wall_s": …}."""
    from murmur.device.bundle import load_bundle
    from murmur.device.controls.values import Controls
    from murmur.device.playback.engine import render
    from murmur.trainer import soundcheck

    samples, analysis = bench_sound.source_of(clip)
    started = time.monotonic()
    audio = render(load_bundle(bundle_dir), seconds, controls=Controls().replace(fidelity=fidelity), seed=seed,
                   generator=row.generator)
    wall = time.monotonic() - started
    figures = soundcheck.evaluate(analysis, audio, corpus.SAMPLE_RATE_HZ)
    return {"figures": figures.to_dict(), "high_band_p95_db": round(high_band_jumps_db(audio, corpus.SAMPLE_RATE_HZ), 3),
            "wall_s": round(wall, 1)}


def _key(fidelity: float) -> str:
    return f"{fidelity:g}"


def measure(clip_names: list[str] | None, row_names: list[str], seconds: float = SECONDS) -> dict:
    """Measure what is missing (or made by an older bundle) for the clips and rows; merge into RESULTS."""
    for clip in corpus.ensure_corpus(clip_names):
        samples, _ = bench_sound.source_of(clip)
        refs = bench_sound.references(clip, seconds)
        clip_refs = {"own_half": refs["own_half"], "granular": refs["granular"].to_dict(),
                     "source_high_band_p95_db": round(high_band_jumps_db(samples, corpus.SAMPLE_RATE_HZ), 3)}
        _update(lambda r, c=clip.name, v=clip_refs: r.setdefault(c, {}).__setitem__("_refs", v))
        for name in row_names:
            row = ROWS[name]
            training = bench_sound.train_clip(clip, extra_args=row.train_args, tag=row.bundle_tag)
            bundle_id = json.loads((training.bundle / "bundle.json").read_text())["bundle_id"]
            for fidelity in row.fidelities:
                for seed in SEEDS:
                    kept = _read().get(clip.name, {}).get(name, {}).get(_key(fidelity), {}).get(str(seed))
                    if kept and kept.get("bundle_id") == bundle_id and kept.get("seconds") == seconds:
                        continue
                    print(f"model: {clip.name} {name} fidelity {fidelity:g} seed {seed}", file=sys.stderr, flush=True)
                    try:
                        result = measure_one(clip, training.bundle, row, fidelity, seed, seconds)
                    except (RuntimeError, ValueError) as exc:
                        result = {"error": str(exc)[:500]}
                    result.update(bundle_id=bundle_id, seconds=seconds)
                    where = (clip.name, name, _key(fidelity), str(seed))
                    _update(lambda r, w=where, v=result:
                            r.setdefault(w[0], {}).setdefault(w[1], {}).setdefault(w[2], {}).__setitem__(w[3], v))
    return _read()


# ----------------------------------------------------------------------------------------------------- reading


def seed_values(results: dict, clip: str, row: str, fidelity: float, what: str) -> list[float]:
    """The figure ``what`` at every measured seed; ratios: "fd_frame/own", "fd_93ms/own", "fd_1500ms/granular"."""
    refs = results.get(clip, {}).get("_refs")
    runs = results.get(clip, {}).get(row, {}).get(_key(fidelity), {})
    out = []
    for run in runs.values():
        if "figures" not in run:
            continue
        f = run["figures"]
        if what == "high_band_excess_db":
            out.append(run["high_band_p95_db"] - refs["source_high_band_p95_db"])
        elif "/" in what:
            figure, ref = what.split("/")
            scale = {"fd_frame": "frame", "fd_93ms": "93ms", "fd_1500ms": "1.5s"}[figure]
            base = refs["own_half"][scale] if ref == "own" else refs["granular"][figure]
            out.append(f[figure] / base)
        else:
            out.append(f[what])
    return out


def clip_median(results: dict, clip: str, row: str, fidelity: float, what: str) -> float:
    values = seed_values(results, clip, row, fidelity, what)
    return float(np.median(values)) if values else float("nan")


def clips_of(results: dict) -> list[str]:
    return [c.name for c in corpus.CLIPS if c.name in results]


def beats(results: dict, clip: str, better: str, worse: str, fidelity: float, by: float) -> tuple[float, bool]:
    """(1.5-s FD gain of ``better`` over ``worse`` as a fraction of worse's median, True when ``better`` wins by
    at least ``by`` and beyond the seed ranges: better's worst seed below worse's best seed)."""
    a = seed_values(results, clip, better, fidelity, "fd_1500ms")
    b = seed_values(results, clip, worse, fidelity, "fd_1500ms")
    if not a or not b:
        return float("nan"), False
    gain = 1.0 - float(np.median(a)) / float(np.median(b))
    return gain, gain >= by and max(a) < min(b)


def targets(results: dict) -> list[tuple[str, bool, str]]:
    """The issue's targets on the measured clips -> (target, met, the figures that decide it)."""
    clips = clips_of(results)
    out = []
    f0 = [(c, clip_median(results, c, "lstm", 0.0, "fd_93ms/own"), clip_median(results, c, "lstm", 0.0,
                                                                                    "fd_1500ms/granular"),
           clip_median(results, c, "lstm", 0.0, "replay_pct")) for c in clips]
    out.append(("fidelity 0: 93-ms FD ≤ own half on every clip", all(x[1] <= 1 for x in f0),
                ", ".join(f"{c} {v:.2f}" for c, v, _, _ in f0)))
    out.append(("fidelity 0: 1.5-s FD ≤ the granular player's on every clip", all(x[2] <= 1 for x in f0),
                ", ".join(f"{c} {v:.2f}" for c, _, v, _ in f0)))
    out.append(("fidelity 0: replay ≤ 5 % on every clip", all(x[3] <= 5 for x in f0),
                ", ".join(f"{c} {v:.1f} %" for c, _, _, v in f0)))
    gains = [beats(results, c, "lstm", "no-model", DEFAULT_FIDELITY, 0.15) for c in clips]
    median_gain = float(np.nanmedian([g for g, _ in gains])) if gains else float("nan")
    out.append(("default: the model's 1.5-s FD ≥ 15 % below no model's (median over clips), beyond the seed range",
                median_gain >= 0.15 and sum(ok for _, ok in gains) > len(gains) / 2,
                f"median {100 * median_gain:+.0f} %; " + ", ".join(f"{c} {100 * g:+.0f} %{' (beyond seeds)' if ok else ''}"
                                                                  for c, (g, ok) in zip(clips, gains, strict=True))))
    gains = [beats(results, c, "lstm", "no-model", 0.6, 0.15) for c in clips]
    median_gain = float(np.nanmedian([g for g, _ in gains])) if gains else float("nan")
    out.append(("(reported) fidelity 0.6: the model's 1.5-s FD below no model's (median over clips)",
                median_gain >= 0.15 and sum(ok for _, ok in gains) > len(gains) / 2,
                f"median {100 * median_gain:+.0f} %; " + ", ".join(f"{c} {100 * g:+.0f} %{' (beyond seeds)' if ok else ''}"
                                                                  for c, (g, ok) in zip(clips, gains, strict=True))))
    f1 = [(c, clip_median(results, c, "lstm", 1.0, "replay_pct")) for c in clips]
    out.append(("fidelity 1: replay ≥ 30 % on every clip", all(v >= 30 for _, v in f1),
                ", ".join(f"{c} {v:.0f} %" for c, v in f1)))
    rising, smooth = [], []
    for c in clips:
        replay = [clip_median(results, c, "lstm", f, "replay_pct") for f in SWEEP]
        rising.append(all(b >= a for a, b in zip(replay, replay[1:], strict=False)))
        scales = ("fd_frame/own", "fd_93ms/own", "fd_1500ms/granular")
        table = [[clip_median(results, c, "lstm", f, s) for s in scales] for f in SWEEP]
        smooth.append(not any(all(table[i][k] > table[i - 1][k] and table[i][k] > table[i + 1][k] for k in range(3))
                              for i in range(1, len(SWEEP) - 1)))
    out.append(("fidelity 0 → 1: replay rises monotonically on every clip", all(rising),
                ", ".join(f"{c} {'yes' if r else 'no'}" for c, r in zip(clips, rising, strict=True))))
    out.append(("no fidelity setting worse at all three scales than both neighbours", all(smooth),
                ", ".join(f"{c} {'yes' if s else 'no'}" for c, s in zip(clips, smooth, strict=True))))
    excess = [(c, clip_median(results, c, "lstm", DEFAULT_FIDELITY, "high_band_excess_db")) for c in clips]
    out.append(("cuts: 95th percentile of high-band (> 8 kHz) frame-to-frame jumps within +0.5 dB of the source's",
                all(v <= 0.5 for _, v in excess), ", ".join(f"{c} {v:+.1f} dB" for c, v in excess)))
    return out


# ----------------------------------------------------------------------------------------------------- reporting


def _cell(results: dict, clip: str, row: str, fidelity: float, what: str, fmt: str = "{:.2f}") -> str:
    values = seed_values(results, clip, row, fidelity, what)
    if not values:
        return "—"
    return f"{fmt.format(np.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(results: dict) -> str:
    clips = clips_of(results)
    lines = ["## Model: what the LSTM adds, with seeds and along the fidelity knob", "",
             __doc__.split("\n\n")[1].strip().replace("\n", " "), "",
             "Ratios as in the Sound ablation: 93-ms FD ÷ the clip's own-half FD, 1.5-s FD ÷ the granular player's "
             "(below 1 = better phrases than random 0.25-s grains). Cells: median of the seeds (range).", "",
             "### Rows at fidelity 0, 0.3 (default), 0.6 and 1: 1.5-s FD ÷ granular", "",
             "| clip | fidelity | " + " | ".join(f"`{n}`" for n in ROWS) + " |", "|---|---|" + "---|" * len(ROWS)]
    for c in clips:
        for f in sorted(set(ENDS_AND_DEFAULT) | set(COMPARED)):
            lines.append(f"| {c} | {f:g} | " + " | ".join(_cell(results, c, n, f, "fd_1500ms/granular") for n in ROWS) + " |")
    lines += ["", "Medians over the clips (of each clip's seed median): 93-ms FD ÷ own half / 1.5-s FD ÷ granular / "
              "replay %.", "", "| row | fidelity 0 | fidelity 0.3 | fidelity 0.6 | fidelity 1 |", "|---|---|---|---|---|"]
    for n in ROWS:
        cells = []
        for f in (0.0, 0.3, 0.6, 1.0):
            vals = [[clip_median(results, c, n, f, w) for c in clips]
                    for w in ("fd_93ms/own", "fd_1500ms/granular", "replay_pct")]
            cells.append(" / ".join(f"{np.nanmedian(v):.2f}" if np.isfinite(v).any() else "—" for v in vals[:2]) +
                         (f" / {np.nanmedian(vals[2]):.1f}" if np.isfinite(vals[2]).any() else " / —"))
        lines.append(f"| `{n}` | " + " | ".join(cells) + " |")
    lines += ["", "### Targets", "", "| target | met | figures (seed medians) |", "|---|---|---|"]
    lines += [f"| {t} | {'✅' if ok else '❌'} | {why} |" for t, ok, why in targets(results)]
    lines += ["", "### The fidelity knob (`lstm`): replay % and 1.5-s FD ÷ granular, seed medians", "",
              f"![fidelity sweep](docs/{PICTURE.name})", "",
              "| clip | " + " | ".join(f"{f:g}" for f in SWEEP) + " |", "|---|" + "---|" * len(SWEEP)]
    for c in clips:
        lines.append(f"| {c} | " + " | ".join(
            f"{clip_median(results, c, 'lstm', f, 'replay_pct'):.0f} % / "
            f"{clip_median(results, c, 'lstm', f, 'fd_1500ms/granular'):.2f}" for f in SWEEP) + " |")
    lines += ["", "How each row is made (per clip and seed): `python -m murmur.device render --bundle <clip bundle> "
              "--seconds 120 --seed S --set fidelity=F` (+ `--generator bank-no-model` for `no-model`); the "
              "bundles: `python -m murmur.trainer train out/corpus/<clip>.wav --out <bundle>` (+ `--objective "
              "retrieval`)."]
    for n, row in ROWS.items():
        lines.append(f"- `{n}`: {row.label}")
    return "\n".join(lines)


def draw(results: dict, path: Path = PICTURE) -> None:
    """PNG: replay and the three distances against fidelity, one line per clip (seed median, band = range)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("replay_pct", "phrase replay %"), ("fd_frame/own", "frame FD ÷ own half"),
              ("fd_93ms/own", "93-ms FD ÷ own half"), ("fd_1500ms/granular", "1.5-s FD ÷ granular"))
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
    for ax, (what, title) in zip(axes, panels, strict=True):
        for c in clips_of(results):
            values = [seed_values(results, c, "lstm", f, what) for f in SWEEP]
            mid = [np.median(v) if v else np.nan for v in values]
            lo = [min(v) if v else np.nan for v in values]
            hi = [max(v) if v else np.nan for v in values]
            (line,) = ax.plot(SWEEP, mid, marker="o", ms=3, label=c)
            ax.fill_between(SWEEP, lo, hi, color=line.get_color(), alpha=0.15)
        if what != "replay_pct":
            ax.set_yscale("log")
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("fidelity")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with PendingFile(path) as pending:
            fig.savefig(pending.file, format="png", dpi=80)
    finally:
        plt.close(fig)


def _read() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def _update(change) -> None:
    results = _read()
    change(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    replace_file(RESULTS, json.dumps(results, indent=1) + "\n")


def run(quick: bool) -> str:
    if quick:
        return report(measure([QUICK_CLIP], ["lstm", "no-model"], seconds=QUICK_SECONDS))
    results = measure(None, list(ROWS))
    draw(results)
    return report(results)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.__main__ import OUTPUT, read_sections, write

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_model", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--clips", nargs="+", choices=[c.name for c in corpus.CLIPS], default=None)
    parser.add_argument("--report", action="store_true", help="measure nothing: rewrite the section from the results")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = _read() if args.report else measure(args.clips, args.rows)
    draw(results)
    body = report(results)
    import platform

    sections = read_sections(OUTPUT.read_text()) if OUTPUT.exists() else {}
    sections["model"] = (f"{body}\n\n_{time.strftime('%Y-%m-%d')}, {platform.machine()}, Python "
                         f"{platform.python_version()}, {time.monotonic() - started:.0f} s_")
    write(sections)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
