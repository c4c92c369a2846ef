"""The frame-bank generator (device/generate/bank.py) over the real tiny bundle's step model and its real frame bank.

What it promises: only real bank frames come out; phrases are runs of the source whose mean length follows
``fidelity``; a frame played within ``bar_s`` is never chosen again; position/spread bound where frames come from;
the dead-air and loop guards hold; knob turns end a phrase at once; a seed fixes everything.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from murmur.device.bundle import BankIndex, load_bundle, quantise_seeds
from murmur.device.controls.values import Controls
from murmur.device.dsp.frames import normalise
from murmur.device.errors import BundleError
from murmur.device.generate.bank import (
    DEFAULT_TEMPERATURE,
    QUIET_DBFS,
    TOP_TEMPERATURE,
    BankSampler,
    BankSettings,
    frame_dbfs,
    phrase_frames,
    temperature_tau,
)
from murmur.device.generate.sampler import Sampler
from murmur.device.generate.step_model import open_step_model
from murmur.device.playback.engine import make_sampler

# the tiny bank holds only 5 s of frames; fidelity 0 is a cut at every frame here (the shortest phrase one frame)
SHORT = BankSettings(bar_s=0.5, min_region_s=1.0, max_phrase_s=2.0, min_phrase_s=0.0)


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def model(bundle):
    return open_step_model(bundle)


def run(sampler: BankSampler, controls: Controls, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n frames -> (bank index of each frame (n,), emitted linear magnitudes (n, n_bins))."""
    indices, mags = np.empty(n, dtype=np.int64), []
    for i in range(n):
        mags.append(sampler.next_frame(controls).copy())
        indices[i] = sampler.current
    return indices, np.stack(mags)


def mean_phrase_frames(indices: np.ndarray) -> float:
    """Mean length of the runs of consecutive bank indices."""
    cuts = np.count_nonzero(np.diff(indices) != 1)
    return len(indices) / (cuts + 1)


def test_a_format_2_bundle_plays_through_the_bank_and_format_1_through_the_regression(bundle, model):
    assert bundle.format_version == 2 and bundle.bank is not None and bundle.bank.n_dims == 32
    assert isinstance(make_sampler(bundle, model, seed=0, controls=Controls()), BankSampler)
    assert isinstance(make_sampler(bundle, model, seed=0, controls=Controls(), generator="regression"), Sampler)
    old = dataclasses.replace(bundle, bank=None, meta=dict(bundle.meta, format_version=1))
    assert isinstance(make_sampler(old, model, seed=0, controls=Controls()), Sampler)
    with pytest.raises(BundleError, match="no frame bank.*retrain"):
        make_sampler(old, model, seed=0, controls=Controls(), generator="bank")


def test_only_real_bank_frames_come_out(bundle, model):
    sampler = BankSampler(bundle, model, seed=1, settings=SHORT)
    for _ in range(300):
        mags = sampler.next_frame(Controls(jump=1.0))
        real = bundle.seed_frames(sampler.current, 1)[0]
        np.testing.assert_array_equal(sampler.frame_model_units, real)
        assert mags.dtype == np.float32 and np.isfinite(mags).all() and (mags >= 0).all()


def test_same_seed_same_frames_other_seed_other_frames(bundle, model):
    a, mags_a = run(BankSampler(bundle, model, seed=7, settings=SHORT), Controls(), 400)
    b, mags_b = run(BankSampler(bundle, model, seed=7, settings=SHORT), Controls(), 400)
    c, _ = run(BankSampler(bundle, model, seed=8, settings=SHORT), Controls(), 400)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mags_a, mags_b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("fidelity", [0.0, 0.3, 0.6])  # longer phrases do not fit the 5-s bank
def test_fidelity_sets_the_mean_phrase_length(bundle, model, fidelity):
    settings = dataclasses.replace(SHORT, min_phrase_s=BankSettings().min_phrase_s)  # the shipped shortest phrase
    sampler = BankSampler(bundle, model, seed=3, settings=settings)
    indices, _ = run(sampler, Controls(fidelity=fidelity, jump=0.0), 3000)
    expected = phrase_frames(fidelity, bundle.audio.frame_s, settings.max_phrase_s, settings.min_phrase_s)
    measured = mean_phrase_frames(indices)
    # runs also end at the end of a source run and at jumps/guards: somewhat shorter than the mean drawn
    assert 0.4 * expected <= measured <= 1.2 * expected, (measured, expected)


def test_fidelity_zero_cuts_at_every_frame_when_the_shortest_phrase_is_one_frame(bundle, model):
    settings = dataclasses.replace(SHORT, min_phrase_s=0.0)
    indices, _ = run(BankSampler(bundle, model, seed=3, settings=settings), Controls(fidelity=0.0, jump=0.0), 1000)
    assert mean_phrase_frames(indices) == pytest.approx(1.0)  # a cut never continues the phrase


def test_the_knob_runs_from_the_shortest_to_the_longest_phrase_on_a_square_law_taper():
    frame_s = 512 / 44100
    lengths = [phrase_frames(f, frame_s, 6.0, 0.05) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert lengths[0] == pytest.approx(0.05 / frame_s) and lengths[-1] == pytest.approx(6.0 / frame_s)
    assert all(b > a for a, b in zip(lengths, lengths[1:], strict=False))
    # log length ∝ fidelity²: the step in log length grows linearly along the knob
    steps = np.diff(np.log(lengths))
    np.testing.assert_allclose(np.diff(steps), np.diff(steps)[0], rtol=1e-9)
    assert phrase_frames(0.3, frame_s, 6.0, 0.05) * frame_s == pytest.approx(0.077, abs=0.001)
    assert phrase_frames(0.0, frame_s, 6.0, 0.001) == 1.0  # never below one frame


def test_no_frame_is_chosen_again_within_the_bar(bundle, model):
    # the bar covers single frames here (recency_region_s 0): regions of 0.25 s over 1 s of cuts would cover the
    # whole 5-s bank, and then the bar gives way
    settings = dataclasses.replace(SHORT, bar_s=1.0, recency_region_s=0.0)
    bar_frames = settings.bar_s / bundle.audio.frame_s
    indices, _ = run(BankSampler(bundle, model, seed=4, settings=settings), Controls(fidelity=0.0, jump=0.0), 2000)
    last_seen: dict[int, int] = {}
    for t, index in enumerate(indices.tolist()):
        if index in last_seen:
            assert t - last_seen[index] > bar_frames, f"frame {index} again after {t - last_seen[index]} frames"
        last_seen[index] = t


def test_temperature_zero_takes_the_nearest_allowed_frame_and_temperature_varies_it(bundle, model):
    sampler = BankSampler(bundle, model, seed=5, settings=SHORT)
    still = Controls(temperature=0.0, fidelity=0.0, jump=0.0)
    run(sampler, still, 50)
    # one more cut by hand: the nearest allowed frame to the model's prediction, in the bank's PCA space
    index = bundle.bank
    query = (sampler._prediction - index.mean) @ index.components.T
    distance = ((index.coords - query) ** 2).sum(axis=1)
    now = sampler.frame_index + 1  # the frame the cut is for
    context = bundle.bank.context  # the LSTM's state against the bank's context keys, weighted as the sampler does
    state = model.get_state()[bundle.model.input_states.index(context.state)][0]
    context_query = (state - context.mean) @ context.components.T
    distance += sampler._context_weight * ((context.keys - context_query) ** 2).sum(axis=1)
    distance += SHORT.recency_penalty * sampler._typical_distance * np.clip(
        1.0 - (now - sampler._region_last_used) / sampler._recency_window_frames, 0.0, 1.0)
    barred = sampler._region_last_used > now - SHORT.bar_s / bundle.audio.frame_s
    if barred.all():
        barred[:] = False
    barred[sampler.current + 1] = sampler._continues[sampler.current]
    allowed = np.where(barred, np.inf, distance)
    sampler.next_frame(still)
    assert sampler.guard_jumps == 0 and not barred[sampler.current]
    assert allowed[sampler.current] <= allowed.min() + 1e-3 * abs(allowed.min()) + 1e-3  # the nearest (float32 ties)
    cold, _ = run(BankSampler(bundle, model, seed=5, settings=SHORT), Controls(temperature=0.0, fidelity=0.0), 200)
    warm, _ = run(BankSampler(bundle, model, seed=5, settings=SHORT), Controls(temperature=1.0, fidelity=0.0), 200)
    assert not np.array_equal(cold, warm)


def test_the_temperature_curve_keeps_the_default_and_widens_the_top_by_the_context_weight(bundle, model):
    """Up to the default the knob is τ in typical distances as before; above it τ grows to widen × the value at the
    top, so the context term's extra spread between candidates does not take the upper half of the knob away."""
    low = np.linspace(0.0, DEFAULT_TEMPERATURE, 7)
    assert [temperature_tau(t, 2.0) for t in low] == pytest.approx(low)
    knob = np.linspace(0.0, TOP_TEMPERATURE, 41)
    assert np.all(np.diff([temperature_tau(t, 2.0) for t in knob]) > 0)  # one smooth road up
    assert temperature_tau(TOP_TEMPERATURE, 2.0) == pytest.approx(2.0 * TOP_TEMPERATURE)
    assert temperature_tau(1.5, 1.0) == 1.5  # nothing to widen: the plain unit
    with_context = BankSampler(bundle, model, seed=1)
    assert with_context._context is not None and with_context._temperature_widen == 1.0 + BankSettings().context_weight
    without = BankSampler(bundle, model, seed=1, settings=BankSettings(context_weight=0.0))
    assert without._temperature_widen == 1.0


def test_position_and_spread_choose_where_in_the_material(bundle, model):
    sampler = BankSampler(bundle, model, seed=2, settings=SHORT)
    n = bundle.n_seed_frames
    for position in (0.0, 1.0):
        controls = Controls(position=position, spread=0.0, jump=1.0, fidelity=0.3)
        start, stop = sampler.region(controls)
        assert stop - start == round(SHORT.min_region_s / bundle.audio.frame_s)
        assert (start == 0) if position == 0.0 else (stop == n)
        indices, _ = run(sampler, controls, 400)
        assert np.all((indices[5:] >= start) & (indices[5:] < stop))  # after the first cut the region holds


def test_turning_a_knob_ends_the_phrase_at_once(bundle, model):
    sampler = BankSampler(bundle, model, seed=9, settings=SHORT)
    run(sampler, Controls(fidelity=1.0, jump=0.0), 50)
    cuts = sampler.cuts
    sampler.next_frame(Controls(fidelity=1.0, jump=0.0, temperature=0.6))
    assert sampler.cuts == cuts + 1
    sampler.next_frame(Controls(fidelity=1.0, jump=0.0, temperature=0.6))
    assert sampler.cuts == cuts + 1 and sampler.phrase_left > 0  # the phrase drawn at the cut goes on
    sampler.next_frame(Controls(fidelity=0.0, jump=0.0, temperature=0.6))
    assert sampler.phrase_left == 0  # fidelity turned down: the rest of the phrase is drawn anew (none at 0)


def test_a_cut_prefers_frames_whose_past_sounds_like_what_was_played(bundle, model):
    """The context term alone (the frame term made flat): a cut lands where the bank's context key is nearest the
    LSTM's state; with the keys shuffled it lands elsewhere."""
    flat = dataclasses.replace(bundle, bank=dataclasses.replace(bundle.bank, coords=np.zeros_like(bundle.bank.coords)))
    settings = dataclasses.replace(SHORT, recency_penalty=0.0, bar_s=0.0, recency_region_s=0.0)
    sampler = BankSampler(flat, model, seed=1, settings=settings)
    context = flat.bank.context
    still = Controls(temperature=0.0, fidelity=0.0, jump=0.0)
    run(sampler, still, 20)
    state = model.get_state()[flat.model.input_states.index(context.state)][0]
    nearest = ((context.keys - (state - context.mean) @ context.components.T) ** 2).sum(axis=1)
    nearest[sampler.current + 1] = np.inf if sampler._continues[sampler.current] else nearest[sampler.current + 1]
    sampler.next_frame(still)
    assert sampler.current == int(np.argmin(nearest))
    no_context = BankSampler(flat, model, seed=1, settings=dataclasses.replace(settings, context_weight=0.0))
    assert no_context._context is None


def test_hold_freezes_the_frame_and_reseed_jumps(bundle, model):
    sampler = BankSampler(bundle, model, seed=2, settings=SHORT)
    run(sampler, Controls(), 10)
    held = [sampler.next_frame(Controls(hold=True)).copy() for _ in range(20)]
    assert all(np.array_equal(h, held[0]) for h in held)
    jumps = sampler.jumps
    sampler.request_jump()
    sampler.next_frame(Controls(jump=0.0))
    assert sampler.jumps == jumps + 1


def quiet_half_bundle(bundle):
    """The tiny bundle with a silent stretch (-90 dBFS frames) as long as the audio in front of it."""
    real = bundle.seed_frames(0, bundle.n_seed_frames)
    silent_log = np.full_like(real, np.log(1e-6 + bundle.log_floor))
    frames_norm = np.concatenate([real, normalise(silent_log, bundle.mean, bundle.std)])
    frames_u8, lo, hi = quantise_seeds(frames_norm)
    deq = frames_u8 * ((hi - lo) / np.float32(255.0)) + lo
    mean = deq.mean(axis=0)
    _, _, vt = np.linalg.svd(deq - mean, full_matrices=False)
    components = vt[:32].astype(np.float32)
    index = BankIndex(mean=mean.astype(np.float32), components=components,
                      coords=((deq - mean) @ components.T).astype(np.float32))
    return dataclasses.replace(bundle, seeds_u8=frames_u8, lo=lo, hi=hi, bank=index)


@pytest.mark.slow
def test_the_dead_air_guard_leaves_a_silent_stretch_within_max_quiet_s(bundle, model):
    quiet = quiet_half_bundle(bundle)
    settings = dataclasses.replace(SHORT, max_quiet_s=0.5)
    sampler = BankSampler(quiet, model, seed=11, settings=settings)
    assert np.mean(sampler.level_dbfs < QUIET_DBFS) >= 0.45  # the silent half really reads as silence
    indices, mags = run(sampler, Controls(fidelity=1.0, jump=1.0), 4000)
    levels = frame_dbfs(mags, quiet.audio.n_fft)
    longest = current = 0
    for level in levels:
        current = current + 1 if level < QUIET_DBFS else 0
        longest = max(longest, current)
    assert longest * quiet.audio.frame_s <= settings.max_quiet_s + 2 * quiet.audio.frame_s
    assert np.any(levels < QUIET_DBFS)  # it did wander into the silence (the guard had something to do)
    assert sampler.guard_jumps > 0


def test_no_passage_repeats_step_for_step_longer_than_max_repeat_s(bundle, model):
    settings = dataclasses.replace(SHORT, bar_s=0.2, max_repeat_s=0.5, repeat_window_s=20.0)
    sampler = BankSampler(bundle, model, seed=12, settings=settings)
    indices, _ = run(sampler, Controls(fidelity=1.0, jump=0.0, temperature=0.0), 6000)
    limit = settings.max_repeat_s / bundle.audio.frame_s + 2
    window = settings.repeat_window_s / bundle.audio.frame_s
    last_seen: dict[int, int] = {}
    repeat = 0
    for t in range(1, len(indices)):
        a, b = int(indices[t - 1]), int(indices[t])
        before_a, before_b = last_seen.get(a), last_seen.get(b)
        step_again = b == a + 1 and before_b is not None and before_a is not None and before_b == before_a + 1 \
            and t - before_b < window
        repeat = repeat + 1 if step_again else 0
        assert repeat <= limit, f"a passage repeated for {repeat} frames at frame {t}"
        last_seen[a] = t - 1
    assert sampler.guard_jumps > 0  # long phrases in a 5-s bank do come back: the guard cut them


def test_frame_dbfs_reads_a_full_scale_sine_as_its_rms():
    from murmur.device.dsp.frames import stft_magnitudes

    n_fft, hop = 2048, 512
    t = np.arange(44100) / 44100
    mags = stft_magnitudes(np.sin(2 * np.pi * 1000 * t).astype(np.float32), n_fft=n_fft, hop_length=hop)
    assert float(np.median(frame_dbfs(mags, n_fft))) == pytest.approx(-3.01, abs=0.1)


def test_the_recency_penalty_spreads_the_choice_over_the_bank(bundle, model):
    def played_share(settings: BankSettings) -> float:
        indices, _ = run(BankSampler(bundle, model, seed=13, settings=settings), Controls(fidelity=0.0, jump=0.0), 600)
        return len(set(indices.tolist())) / bundle.n_seed_frames

    plain = played_share(dataclasses.replace(SHORT, recency_penalty=0.0, recency_region_s=0.0))
    spread = played_share(dataclasses.replace(SHORT, recency_penalty=10.0, recency_region_s=0.0))
    assert spread > plain + 0.05, (plain, spread)


def test_a_cut_at_every_frame_allocates_nothing_on_a_large_bank(bundle, model):
    """The per-frame path (model step, cut search over the whole bank, dequantise, denormalise) keeps no temporaries:
    on a bank of ~4000 frames any (n_frames,) float32 temporary alone would be 16 KB."""
    import tracemalloc

    reps = -(-4000 // bundle.n_seed_frames)
    big = dataclasses.replace(
        bundle, seeds_u8=np.tile(bundle.seeds_u8, (reps, 1)),
        segment_starts=np.concatenate([bundle.segment_starts + i * bundle.n_seed_frames for i in range(reps)]),
        bank=BankIndex(bundle.bank.mean, bundle.bank.components, np.tile(bundle.bank.coords, (reps, 1)),
                       dataclasses.replace(bundle.bank.context, keys=np.tile(bundle.bank.context.keys, (reps, 1)))))
    sampler = BankSampler(big, model, seed=4, settings=BankSettings(min_phrase_s=0.0))
    assert sampler._context is not None  # the context term is on the path measured
    controls = Controls(fidelity=0.0, jump=0.0)
    run(sampler, controls, 50)
    cuts = sampler.cuts
    tracemalloc.start()
    tracemalloc.reset_peak()
    for _ in range(100):
        sampler.next_frame(controls)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sampler.cuts - cuts == 100  # every frame was a cut over the whole bank
    assert peak < 4096, peak


def magnitudes(bundle, index: int) -> np.ndarray:
    """Bank frame ``index`` as linear magnitudes (n_bins,) float32."""
    return bundle.seed_magnitudes(index, 1, out=np.empty((1, bundle.audio.n_bins), np.float32))[0]


def test_a_cut_crossfades_the_high_bins_from_the_outgoing_phrase_and_cuts_the_low_ones_at_once(bundle, model):
    """After a cut (here a jump), for glide_frames frames the bins above glide_from_hz mix the outgoing phrase's
    continuation into the new frame (weights 2/3, 1/3); the bins below are the new frame alone, and so is
    everything after the glide."""
    settings = dataclasses.replace(SHORT, max_phrase_s=60.0, glide_frames=2, glide_from_hz=4000.0)
    sampler = BankSampler(bundle, model, seed=3, settings=settings)
    long = Controls(fidelity=1.0, jump=0.0)
    run(sampler, long, 5)
    while not sampler._continues[sampler.current]:  # an outgoing phrase that goes on in the source
        sampler.next_frame(long)
    outgoing = sampler.current + 1
    sampler.request_jump()
    first = int(np.ceil(4000.0 * bundle.audio.n_fft / bundle.audio.sample_rate_hz))
    for k, weight in enumerate((2 / 3, 1 / 3, 0.0)):
        out = sampler.next_frame(long).copy()
        new = magnitudes(bundle, sampler.current)
        np.testing.assert_allclose(out[:first], new[:first], rtol=1e-5, atol=1e-7)
        if weight:
            old = magnitudes(bundle, outgoing + k)
            np.testing.assert_allclose(out[first:], new[first:] + weight * (old[first:] - new[first:]), rtol=1e-4,
                                       atol=1e-6)
            assert not np.allclose(out[first:], new[first:])  # the mix is there to see
        else:
            np.testing.assert_allclose(out, new, rtol=1e-5, atol=1e-7)
    assert sampler.current != outgoing + 2  # it was a cut, not the old phrase going on
