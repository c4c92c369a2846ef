"""The engine on the real tiny bundle: offline render, control latency in frames, swap without gap or click,
fades, the soft limiter, NaN recovery, the producer/ring/sink threads, and the device venv staying TF-free."""

from __future__ import annotations

import math
import os
import subprocess
import threading
import wave

import numpy as np
import pytest

from murmur import REPO_ROOT as ROOT
from murmur.device.bundle import load_bundle
from murmur.device.controls.values import Controls, ControlStore
from murmur.device.dsp.vocoder import FULL_PASSES, PRESETS
from murmur.device.playback.engine import DEFAULT_BUFFER_FRAMES, BlockPipeline, DropoutSmoother, Engine, Ring, render
from murmur.device.playback.sinks import NullSink, WavSink, _ThreadSink
from murmur.device.testing.fakes import FakeStepModel, FakeVocoder

CONTROL_LATENCY_TARGET_S = 0.100


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


def blocks(audio: np.ndarray, hop: int) -> np.ndarray:
    return audio[: len(audio) // hop * hop].reshape(-1, hop)


class RecordingSink(_ThreadSink):
    """Keeps every pulled block (test helper; offline pacing)."""

    def __init__(self):
        super().__init__()
        self.blocks: list[np.ndarray] = []

    def _consume(self, block):
        self.blocks.append(block.copy())

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)


# -- offline render ---------------------------------------------------------------------------------------------
def test_render_is_deterministic_sized_alive_and_never_clips(bundle):
    seconds = 4.0
    a = render(bundle, seconds, seed=11)
    b = render(bundle, seconds, seed=11)
    c = render(bundle, seconds, seed=12)
    assert a.shape == (int(seconds * bundle.audio.sample_rate_hz),) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.isfinite(a).all()
    rms_db = 20 * np.log10(np.sqrt(np.mean(a**2)))
    assert rms_db > -40.0, f"render is nearly silent ({rms_db:.1f} dBFS)"
    assert np.abs(a).max() < 0.999


@pytest.mark.parametrize(("name", "value"), [("hold", True), ("temperature", 1.5), ("gain_db", -20.0)])
def test_a_control_change_is_heard_within_the_latency_target(bundle, name, value):
    """Frames from the change to the first block whose difference from the unchanged render reaches -20 dB of
    the signal (as benchmarks/bench_engine.py); plus the ring's lead (buffer_frames), this must stay within 100 ms."""
    hop = bundle.audio.hop_length
    change_frame = 60
    base = render(bundle, 1.5, controls=Controls(jump=0.0), seed=3)
    store = ControlStore(Controls(jump=0.0))

    def on_frame(i):
        if i == change_frame:
            store.set(name, value)

    changed = render(bundle, 1.5, controls=store, seed=3, on_frame=on_frame)
    np.testing.assert_array_equal(changed[: change_frame * hop], base[: change_frame * hop])  # causal
    difference = np.sqrt((blocks(changed - base, hop) ** 2).mean(axis=1) / ((blocks(base, hop) ** 2).mean(axis=1) + 1e-12))
    audible = np.nonzero(20 * np.log10(difference[change_frame:] + 1e-12) > -20.0)[0]
    assert len(audible), f"{name}={value} never changed the sound"
    buffer_frames = DEFAULT_BUFFER_FRAMES
    budget_frames = CONTROL_LATENCY_TARGET_S / bundle.audio.frame_s - buffer_frames
    assert audible[0] <= budget_frames, f"{name}: {audible[0]} frames + {buffer_frames} buffered > 100 ms"


def test_fade_to_zero_reaches_exact_silence_and_back(bundle):
    pipeline = BlockPipeline(bundle, seed=1)
    controls = Controls()
    for _ in range(20):
        pipeline.next_block(controls)
    pipeline.fade_to(0.0, 0.1)
    fade_frames = math.ceil(0.1 / bundle.audio.frame_s)
    out = np.concatenate([pipeline.next_block(controls).copy() for _ in range(fade_frames + 10)])
    tail = blocks(out, pipeline.hop)[fade_frames + 1 :]
    assert np.all(tail == 0.0)
    head = np.abs(out[: pipeline.hop * 3]).max()
    assert head > 0.0
    pipeline.fade_to(1.0, 0.05)
    back = np.concatenate([pipeline.next_block(controls).copy() for _ in range(20)])
    assert np.sqrt(np.mean(back[-pipeline.hop * 5 :] ** 2)) > 1e-3


def test_limiter_bends_loud_peaks_below_full_scale_without_hard_clipping(bundle):
    quiet = render(bundle, 2.0, seed=2)
    loud = render(bundle, 2.0, controls=Controls(gain_db=12.0), seed=2, volume_cap_db=12.0)
    assert np.abs(quiet).max() * 10 ** (12 / 20) > 1.0, "the test must drive the limiter"
    assert np.abs(loud).max() < 0.999
    # soft, not flat-topped: no run of three equal samples near full scale (two may meet at a smooth peak)
    top = np.abs(loud) > 0.9
    assert top.any()
    flat = top[1:] & top[:-1] & (np.diff(loud) == 0.0)
    assert not (flat[1:] & flat[:-1]).any()
    # below the knee the limiter leaves the signal alone
    small = np.abs(quiet * 10 ** (12 / 20)) < 0.5
    np.testing.assert_allclose(loud[small][1000:], (quiet * np.float32(10 ** (12 / 20)))[small][1000:], rtol=1e-5, atol=1e-6)


def test_volume_cap_caps_the_gain_knob_and_the_peak(bundle):
    capped = render(bundle, 2.0, controls=Controls(gain_db=12.0), seed=2, volume_cap_db=-12.0)
    plain = render(bundle, 2.0, seed=2)
    assert np.abs(capped).max() < 10 ** (-12 / 20)
    ratio = np.sqrt(np.mean(capped[44100:] ** 2) / np.mean(plain[44100:] ** 2))
    assert abs(20 * np.log10(ratio) + 12.0) < 0.5


def test_nonfinite_audio_is_silenced_and_playback_recovers(bundle):
    class PoisonedVocoder(FakeVocoder):
        calls = 0

        def process(self, magnitude):
            PoisonedVocoder.calls += 1
            out = super().process(magnitude)
            if PoisonedVocoder.calls == 40:
                out[7] = np.nan
            return out

    def make_vocoder(b):
        return PoisonedVocoder(n_fft=b.audio.n_fft, hop_length=b.audio.hop_length)

    pipeline = BlockPipeline(bundle, seed=1, vocoder_factory=make_vocoder)
    out = np.concatenate([pipeline.next_block(Controls()).copy() for _ in range(100)])
    assert np.isfinite(out).all()
    assert pipeline.nonfinite_frames == 1
    assert np.sqrt(np.mean(out[-20 * pipeline.hop :] ** 2)) > 1e-4, "it must sound again after recovering"


# -- swap ------------------------------------------------------------------------------------------------------
def max_step(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x)).max())


def test_swap_bundle_crossfades_without_gap_or_click(bundle):
    pipeline = BlockPipeline(bundle, seed=4)
    controls = Controls(jump=0.0)
    hop = pipeline.hop
    before = np.concatenate([pipeline.next_block(controls).copy() for _ in range(200)])
    voice = pipeline.prepare_voice(bundle, controls)
    pipeline.start_swap(voice, crossfade_s=0.5)
    swap_frames = math.ceil(0.5 / bundle.audio.frame_s)
    during = np.concatenate([pipeline.next_block(controls).copy() for _ in range(swap_frames + 100)])
    assert pipeline.incoming is None and pipeline.voice is voice
    joined = np.concatenate([before[-hop * 20 :], during])
    # no click: the largest sample-to-sample step around the swap is no larger than in ordinary playback
    assert max_step(joined) <= 1.5 * max(max_step(before), max_step(during[-hop * 60 :]))
    # no gap: every 11.6-ms block keeps sounding
    rms_db = 10 * np.log10((blocks(during, hop) ** 2).mean(axis=1) + 1e-20)
    level_before = 10 * np.log10(np.mean(before**2))
    assert rms_db.min() > level_before - 20.0, f"a block fell to {rms_db.min():.1f} dB (level {level_before:.1f})"


def test_swap_to_a_bundle_with_other_stft_settings_is_refused_before_anything_changes(bundle, tmp_path):
    import dataclasses

    from murmur.device.bundle import AudioSpec
    from murmur.device.errors import BundleError

    pipeline = BlockPipeline(bundle, seed=4)
    other = dataclasses.replace(bundle, audio=AudioSpec(bundle.audio.sample_rate_hz, bundle.audio.n_fft, 256))
    with pytest.raises(BundleError, match="seamless swap needs the same STFT settings"):
        pipeline.prepare_voice(other, Controls())
    assert pipeline.incoming is None


# -- the threads ---------------------------------------------------------------------------------------------
def wait_frames(engine: Engine, seen: threading.Event, timeout: float = 20.0) -> None:
    assert seen.wait(timeout), f"engine did not reach the frame count (stats {engine.stats})"


def test_engine_streams_the_render_exactly_and_stops_with_a_fade(bundle):
    seen = threading.Event()
    sink = RecordingSink()
    engine = Engine(bundle, sink=sink, seed=21, on_frame=lambda i: i >= 150 and seen.set())
    engine.start()
    assert engine.wait_started(5.0)
    wait_frames(engine, seen)
    engine.stop()
    assert not engine._thread.is_alive() and not sink._thread.is_alive()
    played = sink.audio
    reference = render(bundle, len(played) / bundle.audio.sample_rate_hz + 0.1, seed=21)
    head = engine.pipeline.fade_start_frame() * engine.hop  # everything before the stop fade
    assert head > 100 * engine.hop
    np.testing.assert_array_equal(played[:head], reference[:head])
    assert np.abs(played[-engine.hop :]).max() == 0.0, "stop must fade to silence before the sink stops"
    stats = engine.stats
    assert stats.underruns == 0 and stats.blocks_delivered == len(played) // engine.hop
    assert stats.frames_produced >= stats.blocks_delivered
    assert stats.bundle_id == bundle.bundle_id and np.isfinite(stats.level_dbfs_10s)


def test_engine_on_frame_sees_every_frame_in_order(bundle):
    indices: list[int] = []
    seen = threading.Event()

    def on_frame(i):
        indices.append(i)
        if i >= 60:
            seen.set()

    engine = Engine(bundle, sink=NullSink(), seed=1, on_frame=on_frame)
    engine.start()
    wait_frames(engine, seen)
    engine.stop()
    assert indices == list(range(indices[0], indices[0] + len(indices)))


def test_engine_restarts_after_stop_and_sounds_again(bundle):
    sink = RecordingSink()
    engine = Engine(bundle, sink=sink, seed=1)
    runs = []
    for _ in range(2):
        reached = threading.Event()
        target = engine.stats.frames_produced + 60
        engine.on_frame = lambda i, target=target, reached=reached: i >= target and reached.set()
        first_block = len(sink.blocks)
        engine.start()
        assert engine.wait_started(5.0)
        wait_frames(engine, reached)
        engine.stop()
        assert not engine._thread.is_alive()
        runs.append(np.concatenate(sink.blocks[first_block:]))
    for audio in runs:  # each run sounds (the restart fades back in from the stop fade) and ends in silence
        middle = audio[len(audio) // 4 : len(audio) // 2]
        assert 20 * np.log10(np.sqrt(np.mean(middle**2)) + 1e-12) > -40.0
        assert np.abs(audio[-engine.hop :]).max() == 0.0


def test_engine_swap_bundle_changes_the_bundle_without_underruns(bundle):
    swapped = threading.Event()
    sink = RecordingSink()
    engine = Engine(bundle, sink=sink, seed=5)
    engine.start()
    engine.swap_bundle(bundle, crossfade_s=0.2)
    target = engine.stats.frames_produced + math.ceil(0.2 / bundle.audio.frame_s) + 30
    engine.on_frame = lambda i: i >= target and swapped.set()
    wait_frames(engine, swapped)
    assert not engine.stats.swapping
    engine.stop()
    audio = sink.audio
    rms_db = 10 * np.log10((blocks(audio, engine.hop)[:-10] ** 2).mean(axis=1) + 1e-20)
    assert rms_db[5:].min() > rms_db.mean() - 25.0
    assert engine.stats.underruns == 0


def test_reseed_event_jumps_the_generator(bundle):
    pipeline = BlockPipeline(bundle, seed=1)
    assert pipeline.reseeds == 0
    pipeline.next_block(Controls(jump=0.0), ("reseed",))
    assert pipeline.voice.sampler.jumps == 1
    assert pipeline.reseeds == 1  # the status report's "reseeds" (Engine.stats)
    pipeline.next_block(Controls(jump=0.0))
    assert pipeline.reseeds == 1


def test_realtime_pull_counts_an_underrun_and_plays_silence():
    ring = Ring(4 * 8)
    ring.write(np.ones(8, np.float32))
    out = np.full(12, 5.0, np.float32)
    assert ring.read_into(out) == 8
    np.testing.assert_array_equal(out, np.r_[np.ones(8), np.zeros(4)])
    for _ in range(5):  # wrap around the ring
        ring.write(np.arange(8, dtype=np.float32))
        got = np.empty(8, np.float32)
        assert ring.read_into(got) == 8
        np.testing.assert_array_equal(got, np.arange(8))


def test_engine_counts_underruns_when_the_producer_is_late(bundle):
    release = threading.Event()
    engines: list[Engine] = []

    class StallingModel(FakeStepModel):
        def step(self, frame):  # once playback has started, the producer stalls until released
            if engines and engines[0].wait_started(0) and not release.is_set():
                release.wait(10.0)
            return super().step(frame)

    sink = NullSink(realtime=True)
    engine = Engine(bundle, sink=sink, seed=1, model_factory=lambda b: StallingModel(b.audio.n_bins),
                    vocoder_factory=lambda b: FakeVocoder(n_fft=b.audio.n_fft, hop_length=b.audio.hop_length))
    engines.append(engine)
    engine.start()
    assert engine.wait_started(5.0)
    for _ in range(1000):  # the real-time sink keeps pulling from the empty ring
        if engine.stats.underruns > 0:
            break
        release.wait(0.01)
    assert engine.stats.underruns > 0
    produced = engine.stats.frames_produced
    moved_on = threading.Event()
    engine.on_frame = lambda i: i > produced + 2 and moved_on.set()
    release.set()
    # the producer notices the underrun on its next frames and buffers one frame more
    assert moved_on.wait(10.0)
    assert engine.stats.buffer_frames > DEFAULT_BUFFER_FRAMES
    engine.stop(fade_s=0.0)
    assert sink.samples > 0


# -- packaging: the device venv never imports the trainer's stack ----------------------------------------------
DEVICE_PYTHON = ROOT / ".venv" / "device" / "bin" / "python"


@pytest.mark.skipif(not DEVICE_PYTHON.exists(), reason="no .venv/device (make setup)")
def test_render_cli_in_the_device_venv_imports_no_tensorflow_or_librosa(tiny_bundle, tmp_path):
    out = tmp_path / "r.wav"
    script = (
        "import sys; from murmur.device.cli import main; "
        f"rc = main(['render', '--bundle', {str(tiny_bundle)!r}, '--seconds', '2', '--out', {str(out)!r}, "
        "'--set', 'temperature=0.4 jump=1', '--seed', '3']); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'librosa', 'soundfile', 'trainer')); "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    result = subprocess.run([str(DEVICE_PYTHON), "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    with wave.open(str(out)) as wav:
        assert wav.getframerate() == 44100 and wav.getnframes() == 2 * 44100
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    assert np.abs(pcm).max() > 1000
    reference = render(load_bundle(tiny_bundle), 2.0, controls=Controls(temperature=0.4, jump=1.0), seed=3)
    assert np.abs(pcm / 32767.0 - reference).max() < 2.0 / 32767


def test_render_cli_rejects_a_bad_setting_with_exit_code_2(tiny_bundle, tmp_path, capsys):
    from murmur.device.cli.engine import cli

    rc = cli(["render", "--bundle", str(tiny_bundle), "--seconds", "1", "--out", str(tmp_path / "x.wav"),
              "--set", "warmth=3"])
    assert rc == 2
    assert "unknown control 'warmth'" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()


def test_wav_sink_writes_what_the_engine_played(bundle, tmp_path):
    seen = threading.Event()
    path = tmp_path / "live.wav"
    sink = WavSink(path)
    engine = Engine(bundle, sink=sink, seed=8, on_frame=lambda i: i >= 100 and seen.set())
    engine.start()
    wait_frames(engine, seen)
    engine.stop()
    with wave.open(str(path)) as wav:
        n = wav.getnframes()
        pcm = np.frombuffer(wav.readframes(n), dtype=np.int16) / 32767.0
    assert n == sink.samples and n % engine.hop == 0 and n >= 100 * engine.hop
    reference = render(bundle, n / bundle.audio.sample_rate_hz, seed=8)
    head = engine.pipeline.fade_start_frame() * engine.hop
    assert np.abs(pcm[:head] - reference[:head]).max() < 2.0 / 32767


def test_a_sink_that_cannot_open_leaves_no_producer_running(bundle):
    from murmur.device.errors import OutputDeviceError

    class BrokenSink(NullSink):
        def start(self, pull, *, sample_rate_hz, block_frames):
            raise OutputDeviceError("no audio output device has 'x' in its name")

    engine = Engine(bundle, sink=BrokenSink(), seed=1)
    with pytest.raises(OutputDeviceError):
        engine.start()
    assert not engine._thread.is_alive()
    engine.stop()  # idempotent after a failed start


# -- other real bundles: another STFT setting, another model ---------------------------------------------------
@pytest.mark.slow
def test_engine_plays_a_bundle_at_its_own_hop_and_rate(tiny_bundle_factory):
    other = load_bundle(tiny_bundle_factory(hop_length=256, sample_rate_hz=32000, max_epochs=1))  # shared with trainer tests
    audio = render(other, 1.0, seed=1)
    assert audio.shape == (32000,) and np.isfinite(audio).all()
    assert 20 * np.log10(np.sqrt(np.mean(audio[8000:] ** 2))) > -45.0
    assert np.abs(audio).max() < 0.999


@pytest.mark.slow
def test_swap_to_another_model_is_seamless_and_other_settings_are_refused(bundle, tiny_bundle_factory):
    from murmur.device.errors import BundleError

    other_model = load_bundle(tiny_bundle_factory(units=16, max_epochs=1))
    pipeline = BlockPipeline(bundle, seed=4)
    controls = Controls(jump=0.0)
    hop = pipeline.hop
    before = np.concatenate([pipeline.next_block(controls).copy() for _ in range(150)])
    with pytest.raises(BundleError, match="seamless swap needs the same STFT settings"):
        pipeline.prepare_voice(load_bundle(tiny_bundle_factory(hop_length=256, sample_rate_hz=32000, max_epochs=1)), controls)
    pipeline.start_swap(pipeline.prepare_voice(other_model, controls), crossfade_s=0.3)
    during = np.concatenate([pipeline.next_block(controls).copy() for _ in range(150)])
    assert pipeline.bundle is other_model
    assert max_step(np.concatenate([before[-hop * 20 :], during])) <= 1.5 * max(max_step(before), max_step(during[-hop * 60 :]))
    rms_db = 10 * np.log10((blocks(during, hop) ** 2).mean(axis=1) + 1e-20)
    assert rms_db.min() > 10 * np.log10(np.mean(before**2)) - 20.0


def _sine(n: int, start: int = 0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440.0 * (start + np.arange(n)) / 44100.0)).astype(np.float32)


def test_full_blocks_pass_the_dropout_smoother_untouched():
    smoother = DropoutSmoother(512, 44100)
    for i in range(3):
        block = _sine(512, 512 * i)
        out = block.copy()
        smoother.smooth(out, 512)
        np.testing.assert_array_equal(out, block)


def test_a_dropout_fades_out_as_the_mirror_of_the_sound_and_the_sound_fades_back_in():
    smoother = DropoutSmoother(512, 44100, fade_s=0.005)
    f = smoother.fade
    assert f == 220
    played = _sine(512)
    out = played.copy()
    smoother.smooth(out, 512)
    gap = np.zeros(512, np.float32)  # the ring was dry: read_into zero-filled the whole pull
    smoother.smooth(gap, 0)
    # the sound goes on from where it was cut (mirrored: the same sample values backwards), fading to silence
    np.testing.assert_allclose(gap[:f], played[::-1][:f] * (1 - np.arange(1, f + 1) / (f + 1)), atol=1e-6)
    assert not gap[f:].any()
    steps = np.abs(np.diff(np.r_[played, gap]))
    assert steps.max() <= np.abs(np.diff(played)).max() + 1e-6  # no step at the cut larger than the sine's own
    still_dry = np.zeros(512, np.float32)
    smoother.smooth(still_dry, 0)
    assert not still_dry.any()
    back = _sine(512, 4096)
    out = back.copy()
    smoother.smooth(out, 512)
    np.testing.assert_allclose(out[:f], back[:f] * np.arange(1, f + 1) / (f + 1), atol=1e-6)
    np.testing.assert_array_equal(out[f:], back[f:])
    assert abs(out[0]) < 0.01  # it starts from (nearly) silence: no click


def test_a_dropout_inside_a_pull_continues_the_samples_just_before_it():
    smoother = DropoutSmoother(512, 44100, fade_s=0.005)
    f = smoother.fade
    previous = _sine(512)
    out = previous.copy()
    smoother.smooth(out, 512)
    ready = 100  # fewer than the fade: what comes before the cut is partly from the previous pull
    part = _sine(512, 512)
    part[ready:] = 0.0
    smoother.smooth(part, ready)
    np.testing.assert_array_equal(part[:ready], _sine(ready, 512))
    before = np.r_[previous, _sine(ready, 512)][-f:]
    np.testing.assert_allclose(part[ready:ready + f], before[::-1] * (1 - np.arange(1, f + 1) / (f + 1)), atol=1e-6)
    assert not part[ready + f:].any()


def test_the_engine_smooths_its_real_time_pull_at_an_underrun(bundle):
    engine = Engine(bundle, sink=NullSink(realtime=True), seed=1,
                    model_factory=lambda b: FakeStepModel(b.audio.n_bins),
                    vocoder_factory=lambda b: FakeVocoder(n_fft=b.audio.n_fft, hop_length=b.audio.hop_length))
    hop = engine.hop
    played = _sine(hop)
    engine.ring.write(played)
    out = np.empty(hop, np.float32)
    engine._pull_nowait(out)
    np.testing.assert_array_equal(out, played)
    engine._pull_nowait(out)  # the ring is dry
    assert out[0] == pytest.approx(played[-1], abs=0.01) and not out[engine._smoother.fade:].any()


def test_the_dropout_smoother_allocates_no_sample_memory():
    import tracemalloc

    smoother = DropoutSmoother(512, 44100, fade_s=0.01)  # a 441-sample fade: any temporary copy is > 1.7 KB
    full, dry = _sine(512), np.zeros(512, np.float32)
    blocks_and_ready = [(full, 512), (dry, 0), (dry, 0), (full, 512), (full, 512)]
    for block, ready in blocks_and_ready:  # warm up
        smoother.smooth(block.copy(), ready)
    work = [(block.copy(), ready) for block, ready in blocks_and_ready * 20]
    tracemalloc.start()
    tracemalloc.reset_peak()
    for out, ready in work:
        smoother.smooth(out, ready)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1000, peak


def test_pulls_shorter_than_the_fade_are_smoothed_across_them():
    smoother = DropoutSmoother(512, 44100, fade_s=0.005)  # a 220-sample fade, pulls of 64
    stream = _sine(640)
    heard = []
    for i in range(10):
        out = stream[64 * i:64 * (i + 1)].copy()
        smoother.smooth(out, 64)
        heard.append(out)
    for _ in range(5):  # dry: the fade is cut to the pull it starts in
        out = np.zeros(64, np.float32)
        smoother.smooth(out, 0)
        heard.append(out)
    audio = np.concatenate(heard)
    np.testing.assert_array_equal(audio[:640], stream)
    np.testing.assert_allclose(audio[640:704], stream[::-1][:64] * (1 - np.arange(1, 65) / 65), atol=1e-6)
    assert not audio[704:].any()


@pytest.mark.parametrize(("auto_load", "expected"), [(0.0, "light (auto)"), (None, "full"), (1e9, "full")])
def test_auto_vocoder_goes_light_only_when_the_sound_takes_more_than_its_share(bundle, auto_load, expected):
    """``vocoder_auto_load``: over it (0 = any load), the vocoder switches to "light" while playing; under it, or
    without it, it stays "full". The load figure is the producer's CPU time per frame over the frame's duration."""
    seen = threading.Event()
    engine = Engine(bundle, sink=NullSink(), seed=1, on_frame=lambda i: i >= 40 and seen.set(),
                    vocoder_auto_load=auto_load, load_window_s=0.1)
    engine.start()
    wait_frames(engine, seen)
    stats = engine.stats
    engine.stop()
    assert stats.vocoder == expected and stats.cpu_load > 0
    light = expected.startswith("light")
    assert engine.pipeline.vocoder.passes == (PRESETS["light"] if light else (4,) * FULL_PASSES)
    assert engine.error is None and stats.frames_produced >= 40
