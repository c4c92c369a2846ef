"""The sampler over the real tiny bundle's step model: determinism, clamping, hold, jumps, seed windows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from murmur.device.bundle import load_bundle
from murmur.device.controls.values import Controls
from murmur.device.generate.sampler import Sampler
from murmur.device.generate.step_model import open_step_model
from murmur.device.testing.fakes import FakeStepModel


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def model(bundle):
    return open_step_model(bundle)


def frames(sampler: Sampler, controls: Controls, n: int) -> np.ndarray:
    return np.stack([sampler.next_frame(controls).copy() for _ in range(n)])


def test_same_seed_same_frames_other_seed_other_frames(bundle, model):
    controls = Controls(jump=2.0)
    a = frames(Sampler(bundle, model, seed=7), controls, 200)
    b = frames(Sampler(bundle, model, seed=7), controls, 200)
    c = frames(Sampler(bundle, model, seed=8), controls, 200)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (200, bundle.audio.n_bins) and a.dtype == np.float32 and np.isfinite(a).all() and (a >= 0).all()


def test_every_fed_back_frame_stays_in_the_training_range(bundle, model):
    sampler = Sampler(bundle, model, seed=1)
    hot = Controls(temperature=2.0, jump=0.0)
    for _ in range(300):
        sampler.next_frame(hot)
        x = sampler.frame_model_units
        assert np.all(x >= bundle.lo) and np.all(x <= bundle.hi)


def test_temperature_changes_the_output(bundle, model):
    cold = frames(Sampler(bundle, model, seed=3), Controls(temperature=0.0, jump=0.0), 50)
    warm = frames(Sampler(bundle, model, seed=3), Controls(temperature=0.5, jump=0.0), 50)
    assert not np.allclose(cold, warm)


def test_hold_freezes_the_frame_and_release_moves_on(bundle, model):
    sampler = Sampler(bundle, model, seed=2)
    frames(sampler, Controls(), 20)
    held = frames(sampler, Controls(hold=True), 30)
    assert np.all(held == held[0])
    after = frames(sampler, Controls(hold=False), 5)
    assert not np.array_equal(after[-1], held[0])


def test_jump_rate_follows_the_control(bundle, model):
    sampler = Sampler(bundle, model, seed=4)
    n = 3000  # ~35 s at hop 512 / 44.1 kHz
    frames(sampler, Controls(jump=1.0), n)
    seconds = n * bundle.audio.frame_s
    # a jump takes warm_frames/warm_steps_per_frame + crossfade frames; none starts during one: rate a bit < 1/s
    assert 0.5 * seconds < sampler.jumps < 1.2 * seconds
    quiet = Sampler(bundle, model, seed=4)
    frames(quiet, Controls(jump=0.0), 1000)
    assert quiet.jumps == 0


def test_reseed_request_warms_then_crossfades(bundle, model):
    sampler = Sampler(bundle, model, seed=5)
    controls = Controls(jump=0.0)
    frames(sampler, controls, 10)
    sampler.request_jump()
    assert sampler.phase == "warm" and sampler.jumps == 1
    warm_frames = -(-sampler.settings.warm_frames // sampler.settings.warm_steps_per_frame)
    phases = [sampler.phase]
    for _ in range(warm_frames + sampler.settings.crossfade_frames + 2):
        sampler.next_frame(controls)
        phases.append(sampler.phase)
    # weights 1/16 … 15/16 are mixed frames, at 16/16 the new chain alone plays on
    assert phases.count("fade") == sampler.settings.crossfade_frames - 1
    assert phases.index("fade") == warm_frames
    assert phases[-1] == "run"


def test_jump_frames_have_no_step_in_level(bundle, model):
    """The crossfade keeps the change between consecutive frames of a jump as small as ordinary movement."""
    sampler = Sampler(bundle, model, seed=6)
    controls = Controls(jump=0.0, temperature=0.3)
    run = frames(sampler, controls, 200)
    sampler.request_jump()
    jump = frames(sampler, controls, 40)
    log_run = np.log(run + 1e-5).mean(axis=1)
    log_jump = np.log(np.vstack([run[-1:], jump]) + 1e-5).mean(axis=1)
    assert np.abs(np.diff(log_jump)).max() <= 2.0 * np.abs(np.diff(log_run)).max() + 1e-3


def test_position_and_spread_choose_the_seed_window(bundle, model):
    sampler = Sampler(bundle, model, seed=0)
    length = sampler._window.shape[0]
    assert sampler.seed_window_start(Controls(position=0.0, spread=0.0)) == (0, length)
    end = bundle.n_seed_frames - length
    assert sampler.seed_window_start(Controls(position=1.0, spread=0.0)) == (end, length)
    starts = [sampler.seed_window_start(Controls(position=0.5, spread=0.1))[0] for _ in range(200)]
    centre = 0.5 * end
    assert max(abs(s - centre) for s in starts) <= 0.05 * bundle.n_seed_frames + 1
    assert len(set(starts)) > 5


def test_seed_windows_never_cross_a_source_file_boundary(bundle, model):
    n = bundle.n_seed_frames
    starts = np.array([0, n // 3, n // 3 + 10, n - 50], dtype=np.int64)  # includes a 10-frame segment
    multi = dataclasses.replace(bundle, segment_starts=starts)
    sampler = Sampler(multi, model, seed=0)
    ends = list(starts[1:]) + [n]
    for _ in range(500):
        start, length = sampler.seed_window_start(Controls(position=float(sampler.rng.random()), spread=1.0))
        k = int(np.searchsorted(starts, start, side="right") - 1)
        assert start + length <= ends[k], (start, length, starts)
        assert length == min(sampler._window.shape[0], ends[k] - starts[k])


def test_fake_model_runs_the_same_sampler(bundle):
    fake = FakeStepModel(bundle.audio.n_bins)
    sampler = Sampler(bundle, fake, seed=1)
    out = frames(sampler, Controls(jump=4.0), 300)
    assert np.isfinite(out).all() and sampler.jumps > 0 and fake.steps > 300


def test_level_keeper_holds_the_training_frame_power(bundle, model):
    from murmur.device.generate.sampler import SamplerSettings

    settings = SamplerSettings(level_time_constant_s=5.0)
    kept = Sampler(bundle, model, seed=9, settings=settings)
    free = Sampler(bundle, model, seed=9, settings=SamplerSettings(max_level_correction_db=0.0))
    n = int(30.0 / bundle.audio.frame_s)
    quiet = Controls(temperature=0.0)  # without sampling noise an MSE-trained model runs low
    kept_frames = frames(kept, quiet, n)[n // 2 :]
    free_frames = frames(free, quiet, n)[n // 2 :]
    kept_db = 10 * np.log10((kept_frames.astype(np.float64) ** 2).sum(axis=1).mean() / kept.target_power)
    free_db = 10 * np.log10((free_frames.astype(np.float64) ** 2).sum(axis=1).mean() / free.target_power)
    assert free.level_gain == 1.0
    assert abs(free_db) > 1.0, f"the tiny model should be off level by itself ({free_db:.2f} dB) for this test to bite"
    assert abs(kept_db) < 1.0, f"kept {kept_db:.2f} dB from the training power (uncorrected {free_db:.2f} dB)"
    assert abs(kept.level_correction_db) <= 6.0 + 1e-6
