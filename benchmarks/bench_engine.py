"""Engine: model step, vocoder and whole-engine time per frame on one core, device process RSS, start to first
audio block, control latency in frames, and a free-running stability run (1 hour; 60 s with --quick).

`make bench ARGS="--only engine"`. The bundle is the demo clip's trained bundle
(``benchmarks.common.trained_demo_bundle()``; ``MURMUR_BENCH_BUNDLE=<dir>`` overrides it).

- Timing runs in a ``.venv/device`` subprocess pinned to one core (``taskset -c 0``, BLAS/OMP threads = 1).
- The device process (RSS, first block) is ``.venv/device`` playing through PyAudio into ALSA's ``file`` plugin
  writing to /dev/null, the same code path as a sound card.
- The stability run streams the engine's ``BlockPipeline`` (generator -> vocoder -> gain -> limiter) with default
  controls and a fixed seed, faster than real time, analysing each second as it goes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from murmur import REPO_ROOT as ROOT

DEVICE_PYTHON = ROOT / ".venv" / "device" / "bin" / "python"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
ASOUNDRC = 'pcm.!default {\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n  format "raw"\n}\n'

# issue 23's targets (the engine near its floor: headroom for the small Pis); the worst case is the full-size bank at
# fidelity 0, profiled stage by stage in benchmarks/bench_engine_stages.py
TARGETS = {"step_ms": 0.08, "vocoder_ms": 0.2, "engine_ms": 0.35, "rss_mb": 150.0, "first_block_s": 2.0,
           "latency_ms": 100.0, "hour_render_s": 120.0}
LONG_RENDER_BUNDLE = Path("out/bench/sound/piece/bundle")  # the Sound section's 200-s corpus piece (full-size bank)
CLIP_LEVEL = 0.999
MAX_BANK_S = 200.0  # the trainer keeps every frame of up to this much audio (trainer/export.py MAX_BANK_SECONDS)


def demo_bundle_dir() -> Path:
    override = os.environ.get("MURMUR_BENCH_BUNDLE")
    if override:
        return Path(override)
    try:
        from benchmarks.common import trained_demo_bundle
    except ImportError as exc:
        raise RuntimeError(
            f"benchmarks.common.trained_demo_bundle is not available ({exc}); set MURMUR_BENCH_BUNDLE=<bundle dir>"
        ) from exc
    return Path(trained_demo_bundle())


# -- workers (run in .venv/device subprocesses) -------------------------------------------------------------------
def _worker_timing(bundle_dir: str, quick: bool) -> dict:
    from murmur.device.controls.values import Controls
    from murmur.device.generate.step_model import StepModel, open_bundle
    from murmur.device.playback.engine import BlockPipeline, default_vocoder_factory, make_sampler

    bundle, model = open_bundle(bundle_dir)
    repeats, n = (3, 1000) if quick else (7, 3000)
    cpu = time.thread_time  # CPU time of this thread (invoke runs in it): immune to other processes on the core
    step_ms = float(np.median([model.time_step_ms(n, clock=cpu) for _ in range(repeats)]))
    step_wall_ms = float(np.median([model.time_step_ms(n) for _ in range(repeats)]))
    public_ms = float(np.median([StepModel(bundle, fast_path=False).time_step_ms(n, clock=cpu) for _ in range(repeats)]))
    runner_ms = float(np.median([_signature_runner_step_ms(bundle, n) for _ in range(repeats)]))

    sampler = make_sampler(bundle, model, seed=1, controls=Controls())
    n_frames = 600 if quick else 3000
    mags = np.stack([sampler.next_frame(Controls()).copy() for _ in range(n_frames)])
    vocoder = default_vocoder_factory(bundle)
    for i in range(50):
        vocoder.process(mags[i])
    started = time.thread_time()
    for i in range(50, n_frames):
        vocoder.process(mags[i])
    vocoder_ms = (time.thread_time() - started) / (n_frames - 50) * 1e3

    pipeline = BlockPipeline(bundle, seed=1)
    controls = Controls()
    n_frames = 2000 if quick else 20000
    per_frame = np.empty(n_frames)
    cpu_started = time.thread_time()
    wall_started = time.perf_counter()
    for i in range(n_frames):
        t = time.perf_counter()
        pipeline.next_block(controls)
        per_frame[i] = time.perf_counter() - t
    cpu_ms = (time.thread_time() - cpu_started) / n_frames * 1e3
    wall_ms = (time.perf_counter() - wall_started) / n_frames * 1e3
    return {
        "runtime": model.runtime_name, "fast_path": model.fast_path, "step_ms": step_ms, "vocoder_ms": vocoder_ms,
        "public_step_ms": public_ms, "runner_step_ms": runner_ms, "step_wall_ms": step_wall_ms,
        "engine_cpu_ms": cpu_ms, "engine_wall_ms": wall_ms, "engine_median_ms": float(np.median(per_frame) * 1e3),
        "engine_p99_ms": float(np.percentile(per_frame, 99) * 1e3), "frame_ms": bundle.audio.frame_s * 1e3,
        "jumps": pipeline.voice.sampler.jumps, "frames": n_frames, **_bank_timing(bundle, model, quick),
    }


def _bank_timing(bundle, model, quick: bool) -> dict:
    """CPU ms per frame of the bank generator (model step + choice of the frame), on the bundle's own bank and on
    a bank as large as the trainer writes (MAX_BANK_S of frames: the bundle's tiled), at fidelity 0 (a cut at every
    frame: the worst case) and at the default."""
    import dataclasses

    from murmur.device.bundle import BankIndex
    from murmur.device.controls.values import Controls
    from murmur.device.generate.bank import BankSampler

    if bundle.bank is None:
        return {}
    out = {"bank_frames": bundle.n_seed_frames}
    reps = max(1, math.ceil(MAX_BANK_S / bundle.audio.frame_s / bundle.n_seed_frames))
    big = dataclasses.replace(
        bundle, seeds_u8=np.tile(bundle.seeds_u8, (reps, 1)),
        segment_starts=np.concatenate([bundle.segment_starts + i * bundle.n_seed_frames for i in range(reps)]),
        bank=BankIndex(bundle.bank.mean, bundle.bank.components, np.tile(bundle.bank.coords, (reps, 1)),
                       None if bundle.bank.context is None else
                       dataclasses.replace(bundle.bank.context, keys=np.tile(bundle.bank.context.keys, (reps, 1)))))
    out["big_bank_frames"] = big.n_seed_frames
    n = 500 if quick else 3000
    for label, source in (("own", bundle), ("big", big)):
        for fidelity in (0.0, Controls().fidelity):
            sampler = BankSampler(source, model, seed=1)
            controls = Controls(fidelity=fidelity)
            for _ in range(100):
                sampler.next_frame(controls)
            started = time.thread_time()
            for _ in range(n):
                sampler.next_frame(controls)
            out[f"bank_{label}_{fidelity:g}_ms"] = (time.thread_time() - started) / n * 1e3
    return out


def _signature_runner_step_ms(bundle, n: int) -> float:
    """The same free-running steps through the runtime's SignatureRunner (dict in, dict out, states fed back)."""
    from murmur.device.generate.runtime import load_interpreter_class

    interpreter_class, _ = load_interpreter_class()
    spec = bundle.model
    runner = interpreter_class(model_path=str(bundle.model_path), num_threads=1).get_signature_runner(spec.signature)
    inputs = {name: np.zeros((1, size), np.float32) for name, size in zip(spec.input_states, spec.state_sizes, strict=True)}
    inputs[spec.input_frame] = bundle.seed_frames(0, 1)
    for _ in range(20):
        runner(**inputs)
    started = time.thread_time()
    for _ in range(n):
        outputs = runner(**inputs)
        for name_in, name_out in zip(spec.input_states, spec.output_states, strict=True):
            inputs[name_in] = outputs[name_out]
        inputs[spec.input_frame] = outputs[spec.output_frame]
    return (time.thread_time() - started) / n * 1e3


def _worker_process(bundle_dir: str, spawned_monotonic: float, seconds: float) -> dict:
    import threading

    from murmur.device.bundle import load_bundle
    from murmur.device.playback.engine import Engine
    from murmur.device.playback.sinks import PyAudioSink

    imported = time.monotonic()
    engine = Engine(load_bundle(bundle_dir), sink=PyAudioSink(None), seed=1)
    engine.start()
    started = engine.wait_started(10.0)
    first_block = time.monotonic()
    latency_s = engine.sink._stream.get_output_latency()
    threading.Event().wait(seconds)  # let it play (the file device is unpaced: this is a load test)
    stats = engine.stats
    engine.stop()
    status = Path("/proc/self/status").read_text()
    fields = {line.split(":")[0]: line.split(":")[1].strip() for line in status.splitlines() if ":" in line}
    return {
        "started": started, "first_block_s": first_block - spawned_monotonic, "imports_s": imported - spawned_monotonic,
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "hwm_mb": int(fields["VmHWM"].split()[0]) / 1024,
        "frames": stats.frames_produced, "portaudio_latency_ms": latency_s * 1e3,
        "heavy_modules": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "librosa")),
    }


def worker() -> None:
    mode, bundle_dir = sys.argv[1], sys.argv[2]
    if mode == "timing":
        result = _worker_timing(bundle_dir, sys.argv[3] == "1")
    else:
        result = _worker_process(bundle_dir, float(sys.argv[3]), float(sys.argv[4]))
    print("RESULT " + json.dumps(result), flush=True)


def _run_worker(args: list[str], *, pin: bool, home: Path | None = None, spawned: float | None = None) -> dict:
    python = DEVICE_PYTHON if DEVICE_PYTHON.exists() else Path(sys.executable)
    env = dict(os.environ, PYTHONPATH=str(ROOT), **ONE_THREAD)
    if home is not None:
        env["HOME"] = str(home)
        env.pop("ALSA_CONFIG_PATH", None)
    command = [str(python), "-c", "from benchmarks.bench_engine import worker; worker()", *args]
    if pin and shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"bench worker {args[0]} failed:\n{result.stderr[-3000:]}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


# -- in-process measurements ------------------------------------------------------------------------------------
LATENCY_THRESHOLD_DB = -20.0
LATENCY_CHANGE_FRAMES = (60, 100, 140, 180, 220)
LATENCY_TEMPERATURE_SEEDS = (3, 4, 5)  # the first is every other control's seed


def control_latency_frames(bundle) -> dict[str, int]:
    """Worst case over several change points: frames from a control change (at a frame boundary) to the first
    block where the difference from the unchanged render (same seed) reaches LATENCY_THRESHOLD_DB relative to the
    signal; 'reseed' is the jump button (warm-up + crossfade). The temperature acts through random draws that both
    renders share, so by chance its first pick can be the one the old setting made too (heard only at the next
    pick): for it each change point counts the median over LATENCY_TEMPERATURE_SEEDS."""
    from murmur.device.controls.values import Controls, ControlStore
    from murmur.device.playback.engine import render

    hop = bundle.audio.hop_length
    seconds = (max(LATENCY_CHANGE_FRAMES) + 40) * bundle.audio.frame_s
    bases = {}
    for seed in LATENCY_TEMPERATURE_SEEDS:
        base = render(bundle, seconds, controls=Controls(jump=0.0), seed=seed)
        usable = len(base) // hop * hop
        bases[seed] = base, usable, (base[:usable].reshape(-1, hop) ** 2).mean(axis=1) + 1e-20

    def first_audible(name, value, change, seed) -> int:
        base, usable, base_power = bases[seed]
        store = ControlStore(Controls(jump=0.0))

        def on_frame(i):
            if i == change:
                store.trigger("reseed") if value is None else store.set(name, value)

        changed = render(bundle, seconds, controls=store, seed=seed, on_frame=on_frame)
        diff_power = ((changed - base)[:usable].reshape(-1, hop) ** 2).mean(axis=1)
        audible = np.nonzero(10 * np.log10(diff_power[change:] / base_power[change:] + 1e-20) > LATENCY_THRESHOLD_DB)[0]
        return int(audible[0]) if len(audible) else 10**6

    out = {}
    for name, value in (("gain_db", -20.0), ("temperature", 1.5), ("hold", True), ("reseed", None)):
        seeds = LATENCY_TEMPERATURE_SEEDS if name == "temperature" else LATENCY_TEMPERATURE_SEEDS[:1]
        out[name] = max(int(np.median([first_audible(name, value, change, seed) for seed in seeds]))
                        for change in LATENCY_CHANGE_FRAMES)
    return out


def temperature_reach(bundle, frames: int = 3000) -> dict[str, float]:
    """How far the temperature knob carries a cut from the LSTM's choice: the median squared distance (in typical
    nearest-neighbour distances, the bank's PCA space) from each cut's pick to the model's prediction, over seeds
    1-3 at fidelity 0, at the default 0.3 and at 1.5, and at 1.5 without the context term (the reach to keep)."""
    from murmur.device.controls.values import Controls
    from murmur.device.generate.bank import BankSampler, BankSettings
    from murmur.device.generate.step_model import open_step_model

    model = open_step_model(bundle)
    out = {}
    for label, temperature, context_weight in (("0.3", 0.3, 1.0), ("1.5", 1.5, 1.0), ("1.5 no context", 1.5, 0.0)):
        picks = []
        for seed in (1, 2, 3):
            sampler = BankSampler(bundle, model, seed=seed, settings=BankSettings(context_weight=context_weight))
            controls = Controls(temperature=temperature, fidelity=0.0, jump=0.0)
            for _ in range(frames):
                query = (sampler._prediction - bundle.bank.mean) @ bundle.bank.components.T
                cuts = sampler.cuts
                sampler.next_frame(controls)
                if sampler.cuts > cuts:
                    picks.append(float(((bundle.bank.coords[sampler.current] - query) ** 2).sum()) /
                                 sampler._typical_distance)
        out[label] = float(np.median(picks))
    return out


def long_render(seconds: float = 3600.0) -> dict | None:
    """``make render SECONDS=3600`` of the corpus piece's bundle as a child process (the device venv, unpinned, as a
    user runs it): wall seconds and peak RSS (MB, wait4); None when that bundle has not been trained here."""
    bundle_dir = ROOT / LONG_RENDER_BUNDLE
    if not (bundle_dir / "bundle.json").is_file():
        return None
    python = DEVICE_PYTHON if DEVICE_PYTHON.exists() else Path(sys.executable)
    with tempfile.TemporaryDirectory() as work:
        command = [str(python), "-m", "murmur.device", "render", "--bundle", str(bundle_dir), "--seconds",
                   f"{seconds:g}", "--out", str(Path(work) / "hour.wav"), "--seed", "1"]
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    return {"wall_s": wall, "rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
            "load": os.getloadavg()[0]}


def training_reference(bundle) -> tuple[np.ndarray, str]:
    """The training audio when the bundle names a file we can find (the demo clip), else None."""
    names = [f.get("name", "") for f in bundle.meta.get("training", {}).get("data", {}).get("files", [])]
    candidates = [ROOT / "trainer" / "demo" / name for name in names]
    for path in candidates:
        if path.is_file():
            from murmur.device.dsp.wavio import read_audio

            audio, rate = read_audio(path)
            if rate != bundle.audio.sample_rate_hz:
                continue
            return audio.astype(np.float32), path.name
    return None, "seed frames"


def stability_run(bundle, seconds: float) -> dict:
    """``seconds`` of ``BlockPipeline`` output measured as it streams (``murmur.device.dsp.measures``: 1-s dead-air
    windows, movement spectra at the bundle's n_fft/hop) against the training audio, or its seed frames."""
    from murmur.device.controls.values import Controls
    from murmur.device.dsp import measures
    from murmur.device.dsp.frames import denormalise
    from murmur.device.playback.engine import BlockPipeline

    rate, hop, n_fft = bundle.audio.sample_rate_hz, bundle.audio.hop_length, bundle.audio.n_fft
    pipeline = BlockPipeline(bundle, seed=1)
    controls = Controls()
    n_seconds = int(seconds)
    meter = measures.AudioMeter(rate, n_fft=n_fft, hop_length=hop)
    clips = 0
    peak = 0.0
    started = time.perf_counter()
    for _ in range(-(-n_seconds * rate // hop)):
        block = pipeline.next_block(controls)
        finite = block[np.isfinite(block)]
        clips += int(np.count_nonzero(np.abs(finite) >= CLIP_LEVEL))
        peak = max(peak, float(np.abs(finite).max(initial=0.0)))
        meter.feed(block)
    elapsed = time.perf_counter() - started
    found = meter.finish()

    reference, reference_name = training_reference(bundle)
    if reference is not None:
        ref = measures.measure_audio(reference, rate, n_fft=n_fft, hop_length=hop)
        ref_moves, ref_windows, ref_level_db = ref.movements_db, ref.window_levels_dbfs, ref.level_dbfs
    else:  # the seed frames are the training frames: their magnitudes give the same spectra and levels
        mags = denormalise(bundle.seed_frames(0, bundle.n_seed_frames), bundle.mean, bundle.std, bundle.log_floor)
        per_second = measures.frames_per_window(rate, hop)
        ref_moves = measures.movements_db(measures.second_spectra_db(mags, per_second))
        ref_windows = measures.frame_window_levels_dbfs(mags, n_fft, per_second)
        ref_level_db = float(measures.level_dbfs(measures.frame_mean_squares(mags, n_fft).mean()))
    moves, level_db = found.movements_db, found.window_levels_dbfs
    below = level_db < measures.DEAD_AIR_DBFS
    longest = run = 0  # longest stretch of consecutive dead-air windows
    for flag in below:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return {
        "seconds": n_seconds, "realtime_x": n_seconds / elapsed, "nonfinite_samples": found.nonfinite_samples,
        "nonfinite_frames_recovered": pipeline.nonfinite_frames, "hard_clips": clips, "peak_dbfs": 20 * math.log10(max(peak, 1e-12)),
        "min_window_dbfs": float(level_db.min()), "windows_below": int(below.sum()),
        "longest_below_s": longest * measures.DEAD_AIR_WINDOW_S, "ref_min_window_dbfs": float(ref_windows.min()),
        "movement_ratio": measures.movement_ratio(moves, ref_moves),
        "static_fraction": measures.static_share(moves, ref_moves),
        "level_dbfs": found.level_dbfs, "ref_level_dbfs": ref_level_db,
        "seconds_6db_off": float(np.mean(np.abs(level_db - ref_level_db) > 6.0)),
        "jumps": pipeline.voice.sampler.jumps, "reference": reference_name,
    }


# -- report -------------------------------------------------------------------------------------------------------
def _bank_rows(timing: dict) -> list[str]:
    """Rows for the bank generator's cost: its own bank and a full-size bank, worst case and default."""
    if "bank_own_0_ms" not in timing:
        return []
    from murmur.device.controls.values import Controls

    default = f"{Controls().fidelity:g}"
    worst = timing["bank_big_0_ms"] + timing["vocoder_ms"]
    return [
        f"| bank generator per frame (model step + choice of the frame), this bundle's bank of "
        f"{timing['bank_frames']} frames: fidelity 0 (the shortest phrases, 0.05 s) / {default} (default) | "
        f"{timing['bank_own_0_ms']:.3f} / {timing[f'bank_own_{default}_ms']:.3f} ms | | |",
        f"| the same with a full-size bank ({timing['big_bank_frames']} frames = {MAX_BANK_S:g} s, the trainer's "
        f"limit): fidelity 0 / {default}; worst case + vocoder | {timing['bank_big_0_ms']:.3f} / "
        f"{timing[f'bank_big_{default}_ms']:.3f} ms; {worst:.3f} ms | ≤ {TARGETS['engine_ms']} ms | "
        f"{_ok(worst, TARGETS['engine_ms'])} |",
    ]



def _ok(value: float, target: float, higher_is_better: bool = False) -> str:
    good = value >= target if higher_is_better else value <= target
    return "yes" if good else "**no**"


def run(quick: bool) -> str:
    from murmur.device.bundle import load_bundle
    from murmur.device.dsp import measures

    bundle_dir = demo_bundle_dir()
    bundle = load_bundle(bundle_dir)
    timing = _run_worker(["timing", str(bundle_dir), "1" if quick else "0"], pin=True)
    with tempfile.TemporaryDirectory() as home:
        Path(home, ".asoundrc").write_text(ASOUNDRC)
        spawned = time.monotonic()
        process = _run_worker(["process", str(bundle_dir), repr(spawned), "3" if quick else "10"], pin=False,
                              home=Path(home))
    latency = control_latency_frames(bundle)
    reach = temperature_reach(bundle)
    stability = stability_run(bundle, 60.0 if quick else 3600.0)
    hour = None if quick else long_render()

    frame_ms = bundle.audio.frame_s * 1e3
    from murmur.device.playback.engine import DEFAULT_BUFFER_FRAMES

    buffer_frames = DEFAULT_BUFFER_FRAMES
    sound_latency = {k: v for k, v in latency.items() if k != "reseed"}
    worst = max(sound_latency.values())
    latency_ms = (worst + buffer_frames) * frame_ms
    s = stability
    rt = frame_ms / timing["engine_cpu_ms"]
    level_row = (f"| level vs training; seconds > 6 dB off | {s['level_dbfs']:.1f} vs {s['ref_level_dbfs']:.1f} dBFS; "
                 f"{100 * s['seconds_6db_off']:.0f} % | ±3 dB | {_ok(abs(s['level_dbfs'] - s['ref_level_dbfs']), 3.0)} |"
                 if math.isfinite(s["ref_level_dbfs"]) else
                 f"| level | {s['level_dbfs']:.1f} dBFS (no training audio found to compare) | ±3 dB of training | n/a |")
    lines = [
        "## Engine (real-time generation)",
        "",
        f"`make bench ARGS=\"--only engine\"`{' (quick)' if quick else ''} — bundle `{bundle.bundle_id}` "
        f"({bundle.audio.sample_rate_hz} Hz, n_fft {bundle.audio.n_fft}, hop {bundle.audio.hop_length} = "
        f"{frame_ms:.2f} ms/frame, {len(bundle.model.state_sizes) // 2} x LSTM {bundle.model.state_sizes[0]}, "
        f"{bundle.model.quantisation}), runtime {timing['runtime']}.",
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
        f"| model step (one core, CPU time; wall) | {timing['step_ms']:.3f} ms; {timing['step_wall_ms']:.3f} ms | ≤ {TARGETS['step_ms']} ms | {_ok(timing['step_ms'], TARGETS['step_ms'])} |",
        f"| model step, other call paths: set_tensor/invoke/get_tensor; SignatureRunner | {timing['public_step_ms']:.3f}; "
        f"{timing['runner_step_ms']:.3f} ms | (the engine uses raw tensor views) | |",
        f"| vocoder per frame (one core, CPU time) | {timing['vocoder_ms']:.3f} ms | ≤ {TARGETS['vocoder_ms']} ms | {_ok(timing['vocoder_ms'], TARGETS['vocoder_ms'])} |",
        f"| whole engine per frame (one core): CPU time mean | {timing['engine_cpu_ms']:.3f} ms | ≤ {TARGETS['engine_ms']} ms | {_ok(timing['engine_cpu_ms'], TARGETS['engine_ms'])} |",
        f"| whole engine per frame, wall clock: mean / median / p99 | {timing['engine_wall_ms']:.3f} / "
        f"{timing['engine_median_ms']:.3f} / {timing['engine_p99_ms']:.3f} ms | (shared machine: preemption shows here) | |",
        f"| whole engine, × real time (one core) | {rt:.1f}× | ≥ {frame_ms / TARGETS['engine_ms']:.0f}× | "
        f"{_ok(rt, frame_ms / TARGETS['engine_ms'], True)} |",
        *_bank_rows(timing),
        f"| device process RSS (playing; peak) | {process['rss_mb']:.0f} MB ({process['hwm_mb']:.0f} MB) | ≤ {TARGETS['rss_mb']:.0f} MB | {_ok(process['hwm_mb'], TARGETS['rss_mb'])} |",
        f"| start to first audio block (process spawn → sink) | {process['first_block_s']:.2f} s (imports {process['imports_s']:.2f} s) | ≤ {TARGETS['first_block_s']} s | {_ok(process['first_block_s'], TARGETS['first_block_s'])} |",
        f"| control → sound (gain / temperature / hold), frames | {latency['gain_db']} / {latency['temperature']} / {latency['hold']} + {buffer_frames} buffered = {latency_ms:.0f} ms | ≤ 100 ms | {_ok(latency_ms, TARGETS['latency_ms'])} |",
        f"| temperature reach: a cut's pick from the LSTM's prediction, median, typical distances (fidelity 0, "
        f"seeds 1-3): 0.3 (default) / 1.5 / 1.5 without the context term | {reach['0.3']:.2f} / {reach['1.5']:.2f} / "
        f"{reach['1.5 no context']:.2f} | 1.5 ≥ 0.95 × without | {_ok(reach['1.5'], 0.95 * reach['1.5 no context'], True)} |",
        (f"| `make render SECONDS=3600` of the 200-s corpus piece ({LONG_RENDER_BUNDLE}, full-size bank, seed 1, "
         f"streamed to the WAV): wall; CPU; peak RSS (1-min load after) | {hour['wall_s']:.0f} s; {hour['cpu_s']:.0f} s; "
         f"{hour['rss_mb']:.0f} MB ({hour['load']:.1f}) | ≤ {TARGETS['hour_render_s']:.0f} s on a quiet machine | "
         f"{_ok(hour['wall_s'], TARGETS['hour_render_s'])} |" if hour is not None else
         "| `make render SECONDS=3600` of the 200-s corpus piece | not measured: its bundle is made by "
         "`make bench ARGS=\"--only sound\"` | ≤ 120 s | |"),
        f"| reseed button → new material audible, frames | {latency['reseed']} ({latency['reseed'] * frame_ms:.0f} ms + buffer) | — | |",
        "",
        f"Free-running stability: {s['seconds'] / 60:.0f} min of audio, default controls, seed 1, rendered at "
        f"{s['realtime_x']:.0f}× real time ({s['jumps']} jumps); reference: {s['reference']}.",
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
        f"| NaN/inf samples (frames recovered by the guard) | {s['nonfinite_samples']} ({s['nonfinite_frames_recovered']}) | 0 | {_ok(s['nonfinite_samples'] + s['nonfinite_frames_recovered'], 0)} |",
        f"| longest dead air (consecutive 1-s windows below −50 dBFS) | {s['longest_below_s']:g} s (quietest second {s['min_window_dbfs']:.1f} dBFS; training {s['ref_min_window_dbfs']:.1f} dBFS) | 0 s | {_ok(s['longest_below_s'], 0)} |",
        f"| movement ratio vs training (device/dsp/measures.py) | {s['movement_ratio']:.2f} | ~1 (reference drone 0.1) | {_ok(s['movement_ratio'], 0.5, True)} |",
        f"| static seconds | {100 * s['static_fraction']:.1f} % | 0 % (drone 70–95 %) | {_ok(s['static_fraction'], 0.01)} |",
        f"| hard clips (\\|x\\| ≥ 0.999) | {s['hard_clips']} (peak {s['peak_dbfs']:.1f} dBFS) | 0 | {_ok(s['hard_clips'], 0)} |",
        level_row,
        "",
        "How measured:",
        "- Model step: `StepModel.time_step_ms` (free-running steps through the raw tensor views; median of runs), "
        "CPU time of the calling thread (TFLite's invoke runs in it). Vocoder: mean CPU time of "
        "`StreamingVocoder.process` on generated frames. Whole engine: each "
        "`BlockPipeline.next_block` (controls → sampler → model → vocoder → gain → limiter), CPU time of the thread "
        "(`time.thread_time`, immune to other processes on the shared core) and wall clock, in a `.venv/device` "
        "process pinned with `taskset -c 0`, BLAS/OMP threads 1. × real time = frame duration / CPU time.",
        f"- Device process: `.venv/device` opening the bundle and playing through PyAudio into ALSA's `file` plugin "
        f"(/dev/null); first block = process spawn (parent's monotonic clock) to the first block pulled by the "
        f"PortAudio callback; RSS/peak from /proc/self/status after {3 if quick else 10} s of playing. TF/librosa "
        f"imported: {process['heavy_modules'] or 'none'}. PortAudio reports {process['portaudio_latency_ms']:.0f} ms "
        "output latency on this (virtual) device: add the sound card's own buffer to the control latency.",
        f"- Control latency: the same seeded render with and without a change at frames {LATENCY_CHANGE_FRAMES}; "
        f"frames until the difference per {frame_ms:.1f}-ms block reaches {LATENCY_THRESHOLD_DB:.0f} dB relative to "
        f"the signal (worst case); plus the engine's ring lead ({buffer_frames} frames). The vocoder's look-ahead is "
        "inside the measured frames. Gain acts after the vocoder (0 frames). The temperature acts through random "
        f"draws both renders share, so its first pick can by chance be the old setting's: per change point it counts "
        f"the median over seeds {', '.join(map(str, LATENCY_TEMPERATURE_SEEDS))}.",
        "- Stability: `BlockPipeline` streamed block by block through `murmur.device.dsp.measures.AudioMeter` (the "
        "definitions the trainer's liveness and sound check use). Dead air: RMS of each 1-s window below −50 dBFS. "
        "Drone: per second (round(rate/hop) frames of the centred STFT, n_fft/hop of the bundle) the mean dB "
        "spectrum; movement = RMS over bins of its change from one second to the next; ratio = median movement / "
        "the training audio's median movement; a second is static when it moves less than "
        f"{measures.STATIC_FRACTION} × the training audio's median. Clips: samples at |x| ≥ 0.999 after the soft "
        "limiter.",
    ]
    return "\n".join(lines).replace("training nan dBFS", "no training audio")


if __name__ == "__main__":  # pragma: no cover
    print(run(quick="--quick" in sys.argv))
