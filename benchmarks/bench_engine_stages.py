"""Engine stages: where each frame's CPU time goes, the model's quantisations side by side, and a Pi budget estimate.

`make bench ARGS="--only engine_stages"` (about 3 minutes; it trains nothing for the profile, and a 2-epoch copy of the
default model once for the quantisation table, cached under ``out/bench/quant/``).

- Profile: the worst case of the Engine section: the demo bundle's frame bank tiled to a full-size bank
  (``bench_engine.MAX_BANK_S``, the trainer's limit), fidelity 0 (the shortest phrases, 0.05 s: the most cuts), default other knobs, seed 1.
  A ``.venv/device`` process pinned to one core (``taskset -c 0``, BLAS/OMP threads 1) runs the engine's own objects
  frame by frame: ``BlockPipeline.next_block`` -> ``Engine._publish`` (levels, ring write) -> ``Engine._pull_nowait``
  (ring read, dropout smoother) -> what ``PyAudioSink``'s callback adds (the stereo copy and ``tobytes``). Each stage
  is timed with ``time.thread_time_ns`` (CPU time of the thread: other processes on the core do not count) by
  wrapping the method that does it; the whole frame is timed again without the wrappers.
- Quantisation: the same Keras weights (the default 3 x 192 model trained for 2 epochs on the demo clip) converted by
  ``trainer.export.convert`` as float32, float16 and dynamic-range, and as full int8 (int8 weights and activations,
  float input/output, calibrated on 200 real frames): per-step CPU time under ai-edge-litert, one thread (the
  engine's call path, ``StepModel.step``); parity = max |TFLite - Keras| over 200 teacher-forced steps of real frames
  (the exporter's check) and over 200 free-running steps (each model fed its own output).
- Pi budget: the whole-frame CPU time scaled by a published single-core ratio (see ``PI_SYSBENCH``), as % of the
  frame's duration. An estimate until the same bench runs on a Pi.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_engine import DEVICE_PYTHON, MAX_BANK_S, ONE_THREAD, demo_bundle_dir
from murmur import REPO_ROOT as ROOT

STAGES = (  # (key, label)
    ("model", "model step (`StepModel.step`, TFLite invoke + state copies)"),
    ("generator", "generator bookkeeping (`BankSampler.next_frame`: guards, dequantise, denormalise)"),
    ("projection", "projection (`BankSampler._project`: 32 x 1025 PCA query), at cuts"),
    ("search", "cut search (`BankSampler._cut`: distances, bar, recency penalty, Gumbel pick), at cuts"),
    ("vocoder", "vocoder (`StreamingVocoder.process`)"),
    ("output", "gain, fade, NaN check, soft limiter (rest of `BlockPipeline.next_block`)"),
    ("ring", "producer bookkeeping + ring write (`Engine._publish`)"),
    ("pull", "ring read + dropout smoother (`Engine._pull_nowait`)"),
    ("sink", "sink callback's own work (stereo copy, `tobytes`)"),
)
TARGETS = {"engine_ms": 0.35, "step_ms": 0.08, "vocoder_ms": 0.2, "zero2w_load": 0.5}
# Published single-thread results of `sysbench cpu --threads=1 --time=60 run` (1.0.20, primes up to 10 000; events
# per second) on Raspberry Pi OS, from https://leoncode.co.uk/articles/raspberry-pi-benchmarks. The Zero 2 W is not in
# that table: it has the Pi 3B+'s Cortex-A53 at 1.0 GHz instead of 1.4 GHz, so its figure is the 3B+'s scaled by
# clock (an estimate of an estimate). The workload is integer arithmetic (trial division), not the engine's float
# SIMD and memory traffic: the ratios place the boards, they do not replace running this bench on one.
PI_SYSBENCH = {"Pi Zero 2 W": 687.45 * 1.0 / 1.4, "Pi 3B+": 687.45, "Pi 4": 1477.83, "Pi 5": 2737.49}
QUANTISATIONS = ("float32", "float16", "dynamic", "int8")
QUANT_DIR = ROOT / "out" / "bench" / "quant"


# -- the profile (runs in .venv/device) ---------------------------------------------------------------------------
def full_size_bank(bundle):
    """The bundle with its frame bank tiled to MAX_BANK_S of frames (each copy its own segments)."""
    import dataclasses

    from murmur.device.bundle import BankIndex

    reps = max(1, math.ceil(MAX_BANK_S / bundle.audio.frame_s / bundle.n_seed_frames))
    return dataclasses.replace(
        bundle, seeds_u8=np.tile(bundle.seeds_u8, (reps, 1)),
        segment_starts=np.concatenate([bundle.segment_starts + i * bundle.n_seed_frames for i in range(reps)]),
        bank=BankIndex(bundle.bank.mean, bundle.bank.components, np.tile(bundle.bank.coords, (reps, 1)),
                       None if bundle.bank.context is None else
                       dataclasses.replace(bundle.bank.context, keys=np.tile(bundle.bank.context.keys, (reps, 1)))))


def _sink_work(frames: np.ndarray, mono: np.ndarray) -> bytes:
    """What PyAudioSink's callback does around ``pull`` for a stereo card (device/playback/sinks.py)."""
    for c in range(frames.shape[1]):
        frames[:, c] = mono
    return frames.tobytes()


def profile(bundle_dir: str, fidelity: float, n_frames: int, repeats: int, vocoder: str = "full") -> dict:
    from murmur.device.bundle import load_bundle
    from murmur.device.controls.values import Controls, ControlStore
    from murmur.device.generate.step_model import open_step_model
    from murmur.device.playback.engine import Engine, preset_vocoder_factory
    from murmur.device.playback.sinks import NullSink

    bundle = full_size_bank(load_bundle(bundle_dir))
    model = open_step_model(bundle)
    controls = Controls(fidelity=fidelity)
    clock = time.thread_time_ns
    overhead = int(np.median(np.diff([clock() for _ in range(2001)])))
    samples = {key: [] for key, _ in STAGES} | {"frame": [], "frame_plain": [], "cuts": 0}
    for repeat in range(repeats):
        engine = Engine(bundle, sink=NullSink(realtime=True), controls=ControlStore(controls), seed=1 + repeat,
                        model_factory=lambda b: model, vocoder_factory=preset_vocoder_factory(vocoder))
        pipeline, sampler = engine.pipeline, engine.pipeline.voice.sampler
        out = np.zeros(engine.hop, np.float32)
        stereo = np.zeros((engine.hop, 2), np.float32)

        def one_frame(engine=engine, pipeline=pipeline, out=out, stereo=stereo):
            engine._publish(pipeline.next_block(controls))
            engine._pull_nowait(out)
            _sink_work(stereo, out)

        for _ in range(200):  # warm up: the bar and the recency penalty reach their steady state
            one_frame()
        plain = np.empty(n_frames, np.int64)
        for i in range(n_frames):
            t = clock()
            one_frame()
            plain[i] = clock() - t
        # the same again, every stage timed by a wrapper around the method that does it
        acc = {key: np.zeros(n_frames, np.int64) for key in ("model", "projection", "cut", "play", "next_frame",
                                                                "vocoder", "ring", "pull", "sink", "frame")}
        frame = [0]

        def timed(key, method, acc=acc, frame=frame):
            def wrapper(*args):
                t = clock()
                result = method(*args)
                acc[key][frame[0]] += clock() - t - overhead
                return result
            return wrapper

        model.step = timed("model", model.step)
        sampler._project = timed("projection", sampler._project)
        sampler._cut = timed("cut", sampler._cut)
        sampler._play = timed("play", sampler._play)
        sampler.next_frame = timed("next_frame", sampler.next_frame)
        pipeline.vocoder.process = timed("vocoder", pipeline.vocoder.process)
        publish, pull, sink = timed("ring", engine._publish), timed("pull", engine._pull_nowait), timed("sink", _sink_work)
        cuts_before = sampler.cuts
        for i in range(n_frames):
            frame[0] = i
            t = clock()
            block = pipeline.next_block(controls)
            publish(block)
            pull(out)
            sink(stereo, out)
            acc["frame"][i] = clock() - t - overhead
        del model.step  # back to the class's method for the next repeat
        at_cut = acc["cut"] > 0
        samples["model"].append(acc["model"])
        samples["projection"].append(acc["projection"][at_cut])
        # the cut's own work: _cut minus the projection and the _play it ends with (which holds the model step)
        samples["search"].append((acc["cut"] - acc["projection"] - acc["play"])[at_cut])
        samples["generator"].append(acc["next_frame"] - acc["model"] - acc["projection"]
                                    - np.where(at_cut, acc["cut"] - acc["projection"] - acc["play"], 0))
        samples["vocoder"].append(acc["vocoder"])
        samples["output"].append(acc["frame"] - acc["next_frame"] - acc["vocoder"] - acc["ring"] - acc["pull"]
                                 - acc["sink"] - 5 * overhead)  # the wrappers' own clock reads around the stages
        for key in ("ring", "pull", "sink", "frame"):
            samples[key].append(acc[key])
        samples["frame_plain"].append(plain)
        samples["cuts"] += int(sampler.cuts - cuts_before)
    result = {"frames": n_frames * repeats, "cuts": samples.pop("cuts"), "clock_overhead_ns": overhead,
              "bank_frames": bundle.n_seed_frames, "runtime": model.runtime_name}
    for key, parts in samples.items():
        values = np.concatenate(parts) / 1e6  # ms
        result[key] = {"median": float(np.median(values)), "mean": float(np.mean(values)),
                       "p99": float(np.percentile(values, 99)), "n": int(values.size)}
    return result


def quant_timing(paths: list[str], bundle_dir: str, n_steps: int, repeats: int) -> dict:
    """Per-step CPU ms of each .tflite (same tensor names as the bundle's model) through StepModel."""
    import dataclasses

    from murmur.device.bundle import load_bundle
    from murmur.device.generate.step_model import StepModel

    bundle = load_bundle(bundle_dir)
    out = {}
    for path in paths:
        model_path = Path(path)
        variant = dataclasses.replace(bundle, path=model_path.parent,
                                      model=dataclasses.replace(bundle.model, file=model_path.name))
        model = StepModel(variant)
        times = [model.time_step_ms(n_steps, clock=time.thread_time) for _ in range(repeats)]
        out[model_path.parent.name] = {"step_ms": float(np.median(times)), "fast_path": model.fast_path,
                                       "bytes": model_path.stat().st_size}
    return out


def worker() -> None:
    mode = sys.argv[1]
    if mode == "profile":
        result = profile(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        result = quant_timing(json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    print("RESULT " + json.dumps(result), flush=True)


def _run_worker(args: list[str]) -> dict:
    python = DEVICE_PYTHON if DEVICE_PYTHON.exists() else Path(sys.executable)
    env = dict(os.environ, PYTHONPATH=str(ROOT), **ONE_THREAD)
    command = [str(python), "-c", "from benchmarks.bench_engine_stages import worker; worker()", *args]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"bench worker {args[0]} failed:\n{result.stderr[-3000:]}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


# -- quantisations (trainer venv: conversion and parity; .venv/device: timing) ------------------------------------
def _int8(step, cfg, frames: np.ndarray) -> bytes:
    """Full int8 (weights and activations, float input/output), calibrated on real frames with the states they reach."""
    import tempfile

    import tensorflow as tf

    from murmur.trainer.model import state_names

    in_names, out_names = state_names(cfg)

    def representative():
        states = {name: np.zeros((1, cfg.units), np.float32) for name in in_names}
        for frame in frames:
            feed = {"frame": frame[None, :].astype(np.float32), **states}
            yield feed
            outputs = step(feed, training=False)
            states = {i: np.asarray(outputs[o]) for i, o in zip(in_names, out_names, strict=True)}

    specs = {"frame": tf.TensorSpec((1, cfg.n_bins), tf.float32, name="frame")}
    specs.update({name: tf.TensorSpec((1, cfg.units), tf.float32, name=name) for name in in_names})
    with tempfile.TemporaryDirectory(prefix="murmur-savedmodel-") as tmp:
        step.export(tmp, format="tf_saved_model", input_signature=[specs], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        return converter.convert()


def _free_running(model_bytes: bytes, step, cfg, first: np.ndarray, n: int) -> float:
    """Max |TFLite - Keras| over n steps, each fed its own previous output from the same first frame."""
    from murmur.trainer.export import _runner
    from murmur.trainer.model import state_names

    runner = _runner(model_bytes)
    in_names, out_names = state_names(cfg)
    tfl = {name: np.zeros((1, cfg.units), np.float32) for name in in_names}
    ker = dict(tfl)
    x_t = x_k = first[None, :].astype(np.float32)
    worst = 0.0
    for _ in range(n):
        out_t = runner(frame=x_t, **tfl)
        out_k = step({"frame": x_k, **ker}, training=False)
        x_t, x_k = out_t["next_frame"], np.asarray(out_k["next_frame"])
        worst = max(worst, float(np.max(np.abs(x_t - x_k))))
        tfl = {i: out_t[o] for i, o in zip(in_names, out_names, strict=True)}
        ker = {i: np.asarray(out_k[o]) for i, o in zip(in_names, out_names, strict=True)}
    return worst


def quantisations(bundle_dir: Path, quick: bool) -> dict:
    """Convert one set of weights four ways (cached by trainer code), parity here, per-step time in .venv/device."""
    from benchmarks.common import DEMO_CLIP, trainer_code_hash

    QUANT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = QUANT_DIR / "stamp.json"
    code = trainer_code_hash()
    table = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if table.get("code") != code or not all((QUANT_DIR / q / "model.tflite").is_file() for q in QUANTISATIONS):
        from murmur.trainer.export import convert, parity
        from murmur.trainer.model import ModelConfig, build_step_model, copy_weights
        from murmur.trainer.pipeline import TrainOptions, train_bundle

        outcome = train_bundle(DEMO_CLIP, QUANT_DIR / "bundle", TrainOptions(max_epochs=2, minutes=10.0, name="quant"))
        units = outcome.export.meta["model"]["units"]
        cfg = ModelConfig(n_bins=outcome.dataset.settings.n_bins, units=units, layers=outcome.export.meta["model"]["layers"])
        step = build_step_model(cfg)
        copy_weights(outcome.fit.model, step, cfg)
        first = outcome.dataset.sources[0]
        probe = outcome.dataset.normalised(first.log_mag[:200])
        table = {"code": code}
        for q in QUANTISATIONS:
            model_bytes = _int8(step, cfg, probe) if q == "int8" else convert(step, cfg, q)
            (QUANT_DIR / q).mkdir(exist_ok=True)
            (QUANT_DIR / q / "model.tflite").write_bytes(model_bytes)
            table[q] = {"teacher_forced": parity(model_bytes, step, cfg, probe),
                        "free_running": _free_running(model_bytes, step, cfg, probe[0], 200)}
        stamp.write_text(json.dumps(table))
    paths = [str(QUANT_DIR / q / "model.tflite") for q in QUANTISATIONS]
    timing = _run_worker(["quant", json.dumps(paths), str(bundle_dir), "300" if quick else "2000", "3" if quick else "7"])
    return {q: table[q] | timing[q] for q in QUANTISATIONS}


# -- Pi budget ----------------------------------------------------------------------------------------------------
_CUT_PASS = """
import time
{first}
import numpy as np
coords = np.random.default_rng(0).standard_normal(({n}, 32)).astype(np.float32)
query, out, times = coords[0].copy(), np.empty({n}, np.float32), []
for _ in range(2000):
    start = time.perf_counter()
    np.dot(coords, query, out=out)
    times.append(time.perf_counter() - start)
times.sort()
print("RESULT", 1e3 * times[len(times) // 2], 1e3 * sum(times) / len(times))
"""


def blas_threads(n_frames: int, trials: int = 6) -> dict:
    """One cut's pass over a full-size bank (n_frames x 32 float32 matrix-vector product) in fresh processes without
    OPENBLAS_NUM_THREADS set: numpy alone (OpenBLAS on every core) and after `import murmur` (which sets one thread),
    on a quiet machine and with every core busy (a busy loop per core), unpinned, as the service runs. Whether a
    thread spread over the cores waits on one that is not running depends on where the scheduler put them, so each
    case is ``trials`` fresh processes: the median of their medians, the worst median (ms) and how many trials had a
    median over 1 ms."""
    env = {k: v for k, v in os.environ.items() if k not in ONE_THREAD or k == "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    python = str(DEVICE_PYTHON if DEVICE_PYTHON.exists() else Path(sys.executable))
    out = {}
    for busy in (False, True):
        for label, first in (("numpy", ""), ("murmur", "import murmur")):
            medians = []
            for _ in range(trials):
                hogs = [subprocess.Popen([python, "-c", "print('busy', flush=True)\nwhile True: pass"],
                                         stdout=subprocess.PIPE) for _ in range((os.cpu_count() or 1) if busy else 0)]
                try:
                    for hog in hogs:  # each is spinning before the measurement starts
                        assert hog.stdout is not None and hog.stdout.readline() == b"busy\n"
                    result = subprocess.run([python, "-c", _CUT_PASS.format(first=first, n=n_frames)], cwd=ROOT,
                                            env=env, capture_output=True, text=True, timeout=600)
                finally:
                    for hog in hogs:
                        hog.kill()
                        hog.wait()
                line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
                medians.append(float(line.split()[1]))
            out[f"{label}{' busy' if busy else ''}"] = {"median": float(np.median(medians)), "worst": max(medians),
                                                        "slow": sum(m > 1.0 for m in medians), "trials": trials}
    return out


def sysbench_here() -> float | None:
    """This machine's `sysbench cpu --threads=1` events per CPU second (the child's rusage, pinned to core 0)."""
    if not shutil.which("sysbench"):
        return None
    command = ["sysbench", "cpu", "--threads=1", "--time=20", "run"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = proc.stdout.read()
    _, _, usage = os.wait4(proc.pid, 0)
    match = re.search(r"total number of events:\s+(\d+)", output)
    cpu = usage.ru_utime + usage.ru_stime
    return int(match.group(1)) / cpu if match and cpu > 0 else None


# -- report -------------------------------------------------------------------------------------------------------
def _ok(value: float, target: float) -> str:
    return "yes" if value <= target else "**no**"


def run(quick: bool) -> str:
    from murmur.device.bundle import load_bundle

    bundle_dir = demo_bundle_dir()
    bundle = load_bundle(bundle_dir)
    load_before = os.getloadavg()
    n, repeats = (600, 2) if quick else (3000, 5)
    worst = _run_worker(["profile", str(bundle_dir), "0", str(n), str(repeats), "full"])
    default = _run_worker(["profile", str(bundle_dir), "0.3", str(n), str(repeats), "full"])
    light = _run_worker(["profile", str(bundle_dir), "0", str(n), str(repeats), "light"])
    quant = quantisations(bundle_dir, quick)
    threads = blas_threads(worst["bank_frames"])
    events = sysbench_here()
    load_after = os.getloadavg()
    frame_ms = bundle.audio.frame_s * 1e3

    def cell(result: dict, key: str) -> str:
        s = result[key]
        return f"{s['median']:.3f} / {s['mean']:.3f}"

    lines = [
        "## Engine stages: where a frame's time goes",
        "",
        f"`make bench ARGS=\"--only engine_stages\"`{' (quick)' if quick else ''} — bundle `{bundle.bundle_id}` "
        f"(3 x LSTM {bundle.model.state_sizes[0]}, {bundle.model.quantisation}), its bank tiled to "
        f"{worst['bank_frames']} frames ({MAX_BANK_S:g} s, the trainer's limit); runtime {worst['runtime']}; "
        f"{worst['frames']} frames per column ({repeats} runs, seeds 1..{repeats}). Machine load (1-min average, "
        f"2 cores) {load_before[0]:.1f} before, {load_after[0]:.1f} after.",
        "",
        "CPU time of the producer thread per frame, ms, median / mean (stages at cuts: over the frames with a cut):",
        "",
        "| stage | fidelity 0 (the shortest phrases: the worst case) | fidelity 0.3 (default) "
        "| fidelity 0, `[playback] vocoder = \"light\"` |",
        "|---|---|---|---|",
        *[f"| {label} | {cell(worst, key)} | {cell(default, key)} | {cell(light, key)} |" for key, label in STAGES],
        f"| **whole frame**, instrumented (sum of the stages + wrappers) | {cell(worst, 'frame')} "
        f"| {cell(default, 'frame')} | {cell(light, 'frame')} |",
        f"| **whole frame**, no wrappers | {cell(worst, 'frame_plain')} | {cell(default, 'frame_plain')} "
        f"| {cell(light, 'frame_plain')} |",
        f"| cuts | {worst['cuts']} of {worst['frames']} frames | {default['cuts']} of {default['frames']} frames "
        f"| {light['cuts']} of {light['frames']} frames |",
        "",
        "| target (worst case) | value | target | met |",
        "|---|---|---|---|",
        f"| whole engine per frame (mean, no wrappers) | {worst['frame_plain']['mean']:.3f} ms "
        f"({frame_ms / worst['frame_plain']['mean']:.0f}× real time) | ≤ {TARGETS['engine_ms']} ms | "
        f"{_ok(worst['frame_plain']['mean'], TARGETS['engine_ms'])} |",
        f"| model step (mean) | {worst['model']['mean']:.3f} ms | ≤ {TARGETS['step_ms']} ms | "
        f"{_ok(worst['model']['mean'], TARGETS['step_ms'])} |",
        f"| vocoder (mean) | {worst['vocoder']['mean']:.3f} ms | ≤ {TARGETS['vocoder_ms']} ms | "
        f"{_ok(worst['vocoder']['mean'], TARGETS['vocoder_ms'])} |",
        f"| with `vocoder = \"light\"`: whole engine; vocoder (mean) | {light['frame_plain']['mean']:.3f} ms "
        f"({frame_ms / light['frame_plain']['mean']:.0f}× real time); {light['vocoder']['mean']:.3f} ms "
        f"| ≤ {TARGETS['engine_ms']}; ≤ {TARGETS['vocoder_ms']} ms | {_ok(light['frame_plain']['mean'], TARGETS['engine_ms'])}; "
        f"{_ok(light['vocoder']['mean'], TARGETS['vocoder_ms'])} |",
        "",
        f"One cut's pass over the full-size bank ({worst['bank_frames']} x 32 float32 matrix-vector product), ms, "
        "unpinned, OPENBLAS_NUM_THREADS unset (`blas_threads`): median over fresh processes / the worst process's "
        "median (processes whose median passed 1 ms). numpy's OpenBLAS spreads it over every core; with every core "
        "busy its threads can wait on one that is not running, depending on where the scheduler put them. `import "
        "murmur` sets one thread first:",
        "",
        "| | quiet machine | every core busy (a busy loop per core) |",
        "|---|---|---|",
        *[f"| {label} | {threads[key]['median']:.3f} / {threads[key]['worst']:.3f} ({threads[key]['slow']} of "
          f"{threads[key]['trials']}) | {threads[key + ' busy']['median']:.3f} / {threads[key + ' busy']['worst']:.3f} "
          f"({threads[key + ' busy']['slow']} of {threads[key + ' busy']['trials']}) |"
          for key, label in (("numpy", "numpy's default (all cores)"), ("murmur", "after `import murmur` (one thread)"))],
        "",
        "Quantisation of the step model, side by side (the same weights: the default model after 2 epochs on the demo "
        "clip; per-step CPU time through `StepModel.step`, one thread, median of runs of back-to-back steps: the "
        "weights stay in cache, unlike in the engine, where the vocoder runs between two steps):",
        "",
        "| quantisation | model file | step (CPU ms) | parity, 200 teacher-forced steps | 200 free-running steps |",
        "|---|---|---|---|---|",
        *[f"| {q}{' (full int8, float I/O; not offered by the exporter)' if q == 'int8' else ''} | "
          f"{quant[q]['bytes'] / 1e6:.2f} MB | {quant[q]['step_ms']:.3f} | {quant[q]['teacher_forced']:.3g} | "
          f"{quant[q]['free_running']:.3g} |" for q in QUANTISATIONS],
        "",
    ]
    if events is not None:
        cells = []
        for board, pi_events in PI_SYSBENCH.items():
            scaled = worst["frame_plain"]["mean"] * events / pi_events
            scaled_light = light["frame_plain"]["mean"] * events / pi_events
            cells.append(f"{board}: {scaled:.2f} ms = {100 * scaled / frame_ms:.0f} % "
                         f"(light: {100 * scaled_light / frame_ms:.0f} %)")
        zero = worst["frame_plain"]["mean"] * events / PI_SYSBENCH["Pi Zero 2 W"] / frame_ms
        lines += [
            "| Pi budget (**estimate**: worst-case whole frame × this core's / the board's single-thread sysbench score, "
            "as % of one core during the frame's 11.6 ms) | value | target | met |",
            "|---|---|---|---|",
            f"| {'; '.join(cells)} | this core {events:.0f} events per CPU second | Pi Zero 2 W ≤ "
            f"{100 * TARGETS['zero2w_load']:.0f} % | not judged: an integer benchmark's ratio "
            f"({'within' if zero <= TARGETS['zero2w_load'] else 'beyond'} the target by it) |",
            "",
        ]
    else:
        lines += ["Pi budget: not estimated (`sysbench` is not installed: `apt-get install sysbench`).", ""]
    lines += [
        "How measured:",
        "- Stages: each wrapped method's CPU time (`time.thread_time_ns`) minus the clock's own cost "
        f"({worst['clock_overhead_ns']} ns a read); generator = `next_frame` minus the model step, the projection and "
        "the cut search; the output stage is what is left of the frame. A median of a sum is not the sum of the "
        "medians: compare means. The plain whole-frame time is the same loop without wrappers.",
        "- Pi budget: single-thread `sysbench cpu --threads=1` (1.0.20, primes up to 10 000), this machine measured "
        "by the bench (events per CPU second of the child, pinned to core 0); the boards' figures are published "
        "ones (https://leoncode.co.uk/articles/raspberry-pi-benchmarks: Pi 3B+ 687, Pi 4 1478, Pi 5 2737 events/s; "
        "the Zero 2 W is the 3B+'s Cortex-A53 at 1.0 instead of 1.4 GHz, scaled by clock). That workload is integer "
        "trial division, not the engine's float SIMD, FFTs and memory traffic (the full-size bank's PCA coordinates "
        "are 2.3 MB, read at every cut): an x86 core's lead is larger on those, so the boards' loads here are "
        "likely underestimated. Only a run on the board replaces it.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(run(quick="--quick" in sys.argv))
