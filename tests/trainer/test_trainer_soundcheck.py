"""trainer/soundcheck.py on synthetic signals: each figure moves the way its definition says, and the documented
recipes (log-mel, liveness) agree with the libraries they name."""

from __future__ import annotations

import numpy as np
import pytest

from murmur.device.dsp import measures
from murmur.trainer import liveness
from murmur.trainer import soundcheck as sc

SR = 22050  # frame counts are fixed, so half the usual rate halves the work and changes nothing in the maths


def melody(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    """Notes of 0.1-0.5 s (random pitch on a scale, 3 harmonics, decaying) over quiet noise: (n,) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = rng.normal(0, 0.003, n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.1, 0.5) * sr)
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        t = np.arange(min(length, n - pos)) / sr
        note = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3))
        out[pos : pos + t.size] += 0.2 * note * np.exp(-t * rng.uniform(2, 8))
        pos += length
    return out.astype(np.float32)


def noise(seconds: float, seed: int, level: float = 0.1, sr: int = SR) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, level, int(seconds * sr)).astype(np.float32)


@pytest.fixture(scope="module")
def source() -> sc.Analysis:
    return sc.analyse(melody(20, seed=1), SR)


def test_log_mel_and_movement_follow_the_documented_recipes():
    import librosa

    audio = melody(4, seed=7)
    mel = sc.log_mel_db(audio, SR)
    power = librosa.feature.melspectrogram(y=audio, sr=SR, n_fft=2048, hop_length=512, n_mels=64, fmax=SR / 2,
                                           center=True, pad_mode="constant", power=2.0)
    expected = 10 * np.log10(power + 1e-10).T
    assert mel.shape == (1 + audio.size // 512, 64)
    np.testing.assert_allclose(mel, expected, atol=1e-3)
    np.testing.assert_allclose(sc.analyse(audio, SR).movements_db, liveness.movements(audio, SR), rtol=1e-4)


def test_log_mel_in_blocks_equals_one_pass(monkeypatch):
    audio = melody(6, seed=3)
    whole = sc.log_mel_db(audio, SR)
    monkeypatch.setattr(measures, "BLOCK_S", 1)  # many blocks, boundaries inside the signal
    blocked = sc.analyse(audio, SR)
    np.testing.assert_allclose(blocked.mel_db, whole, atol=1e-4)  # float32 BLAS sums differ by block size
    np.testing.assert_allclose(blocked.movements_db, liveness.movements(audio, SR), rtol=1e-4)


def test_fd_is_zero_against_itself_and_grows_for_a_different_signal(source):
    itself = sc.frechet_distances(source, source, SR)
    same_kind = sc.frechet_distances(source, melody(20, seed=2), SR)
    other_kind = sc.frechet_distances(source, noise(20, seed=2), SR)
    assert set(itself) == {"frame", "93ms", "1.5s"}
    for scale, margin in (("frame", 5), ("93ms", 5), ("1.5s", 2)):  # few 1.5-s windows: a noisier FD
        assert itself[scale] < 1e-6 * other_kind[scale], scale
        assert same_kind[scale] < other_kind[scale] / margin, (scale, same_kind[scale], other_kind[scale])


def test_fd_at_the_phrase_scale_tells_grains_from_phrases():
    """Grains keep the frame statistics of slow chords but lose their 1.5-s shape: only the 1.5-s FD sees it."""
    rng = np.random.default_rng(5)
    t = np.arange(int(3.0 * SR)) / SR
    bars = []
    for _ in range(10):  # 3-s bars: a chord gliding up and back, so 1.5-s windows have a direction
        f = 220 * 2 ** (rng.integers(0, 12) / 12)
        glide = f * (1 + 0.5 * np.sin(np.pi * t / 3.0))
        bars.append(0.3 * np.sin(2 * np.pi * np.cumsum(glide) / SR))
    src = sc.analyse(np.concatenate(bars).astype(np.float32), SR)
    another_take = sc.frechet_distances(src, np.concatenate(bars[::-1]).astype(np.float32), SR)
    grains = sc.frechet_distances(src, sc.granular_player(np.concatenate(bars), 30, SR, seed=0), SR)
    assert grains["1.5s"] > 3 * another_take["1.5s"]


def test_phrase_replay_counts_copies_and_nothing_else(source):
    audio = melody(20, seed=1)
    assert sc.phrase_replay(source, audio, SR) == 100.0
    assert sc.phrase_replay(source, audio[::-1].copy(), SR) <= 5.0
    assert sc.phrase_replay(source, sc.granular_player(audio, 20, SR, seed=3), SR) <= 5.0
    assert sc.phrase_replay(source, melody(20, seed=2), SR) <= 5.0
    half_copied = np.concatenate([audio[: 10 * SR], melody(10, seed=4)])
    assert 40.0 <= sc.phrase_replay(source, half_copied, SR) <= 60.0


@pytest.mark.parametrize("seconds", [0.7, 3.3, 12.0])
def test_granular_player_length_is_exact_and_level_is_kept(seconds):
    src = noise(10, seed=0, level=0.1)
    out = sc.granular_player(src, seconds, SR, seed=1)
    assert out.dtype == np.float32 and out.shape == (int(round(seconds * SR)),)
    if seconds >= 3:
        assert abs(liveness.rms_dbfs(out) - liveness.rms_dbfs(src)) < 1.0
        # and no slow dip at grain boundaries: every 0.1-s stretch within 1.5 dB of the whole
        blocks = out[: out.size // 2205 * 2205].reshape(-1, 2205)
        levels = 10 * np.log10(np.mean(blocks.astype(np.float64) ** 2, axis=1))
        assert np.max(np.abs(levels - liveness.rms_dbfs(out))) < 1.5


def test_granular_player_reads_only_the_source_and_is_deterministic():
    src = melody(5, seed=0)
    a = sc.granular_player(src, 4, SR, seed=7)
    assert np.array_equal(a, sc.granular_player(src, 4, SR, seed=7))
    assert not np.array_equal(a, sc.granular_player(src, 4, SR, seed=8))
    assert np.all(np.isfinite(a)) and np.max(np.abs(a)) <= 1.5 * np.max(np.abs(src))
    with pytest.raises(ValueError, match="fewer than one grain"):
        sc.granular_player(src[:1000], 1, SR)


def test_dead_air_counts_silent_seconds_of_candidate_and_source():
    live = melody(10, seed=1)
    gappy = live.copy()
    gappy[2 * SR : 5 * SR] = 0.0  # 3 whole seconds of silence
    gappy[7 * SR : 8 * SR] *= 10 ** (-60 / 20)  # one second at about -70 dBFS
    figures = sc.evaluate(gappy, gappy, SR)
    assert figures.dead_air_pct == pytest.approx(40.0)
    assert figures.source_dead_air_pct == pytest.approx(40.0)
    assert sc.evaluate(live, gappy, SR).source_dead_air_pct == 0.0


def test_nan_samples_are_counted_and_count_as_zero():
    src = melody(10, seed=1)
    cand = melody(10, seed=2)
    broken = cand.copy()
    broken[SR : SR + 100] = np.nan
    broken[3 * SR : 3 * SR + 5] = np.inf
    zeroed = cand.copy()
    zeroed[SR : SR + 100] = 0.0
    zeroed[3 * SR : 3 * SR + 5] = 0.0
    a, b = sc.evaluate(src, broken, SR), sc.evaluate(src, zeroed, SR)
    assert a.nan_samples == 105 and b.nan_samples == 0
    assert {k: v for k, v in a.to_dict().items() if k != "nan_samples"} == \
        {k: v for k, v in b.to_dict().items() if k != "nan_samples"}
    assert all(np.isfinite(v) for v in a.to_dict().values())


def test_movement_and_static_seconds_tell_a_drone_from_the_source(source):
    audio = melody(20, seed=1)
    itself = sc.evaluate(source, audio, SR)
    assert itself.movement_ratio == pytest.approx(1.0) and itself.static_pct == 0.0
    t = np.arange(20 * SR) / SR
    drone = (0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    stuck = sc.evaluate(source, drone, SR)
    assert stuck.movement_ratio < 0.2 and stuck.static_pct > 90.0


@pytest.mark.slow
def test_evaluate_and_references_are_deterministic_and_consistent(source):
    audio = melody(20, seed=1)
    cand = melody(8, seed=9)
    first = sc.evaluate(audio, cand, SR).to_dict()
    assert first == sc.evaluate(source, cand, SR).to_dict()  # samples or an Analysis: the same figures
    refs = sc.reference_figures(source, SR, 8, seed=0, source_audio=audio)
    assert refs["own_half"] == sc.reference_figures(source, SR, 8, seed=0, source_audio=audio)["own_half"]
    assert refs["granular"].to_dict() == sc.evaluate(source, sc.granular_player(audio, 8, SR, seed=0), SR).to_dict()
    h = source.mel_db.shape[0] // 2
    by_audio = sc.frechet_distances(audio[: h * 512], audio[h * 512 :], SR)  # halves cut in samples, not frames
    assert refs["own_half"]["93ms"] == pytest.approx(by_audio["93ms"], rel=0.05)
    lines = sc.summary_lines(sc.evaluate(source, cand, SR), refs)
    assert 3 <= len(lines) <= 4 and "granular" in lines[1] and "NaN" in lines[-1]


def test_too_short_audio_is_refused_naming_the_signal(source):
    with pytest.raises(ValueError, match="candidate audio.*too short"):
        sc.evaluate(source, melody(1.0, seed=0), SR)
    with pytest.raises(ValueError, match="source audio.*too short"):
        sc.evaluate(melody(2.0, seed=0), melody(5.0, seed=0), SR)
    with pytest.raises(ValueError, match="mono"):
        sc.evaluate(source, np.zeros((SR * 3, 2), np.float32), SR)


def test_a_candidate_that_repeats_itself_within_10_s_loops_and_fresh_material_does_not(source):
    fresh = melody(40, seed=7)
    looped = np.tile(melody(5, seed=7), 8)  # the same 5 s (10 s of frames at this rate), eight times
    assert sc.loop_pct(source, fresh, SR) < 5.0
    assert sc.loop_pct(source, looped, SR) > 80.0
    # repeated 25 s later: 1077 frames, beyond the 861-frame (10 s at 44.1 kHz) loop window at this rate
    spaced = np.concatenate([melody(5, seed=8), melody(20, seed=9), melody(5, seed=8)])
    assert sc.loop_pct(source, spaced, SR) < 5.0


def test_liveness_counts_each_dead_second_even_between_loud_passages():
    # 2 s of near-silence inside 10 s of -20 dBFS: a 10-s window would read about -21 dBFS, 1-s windows see it
    rng = np.random.default_rng(0)
    loud = rng.standard_normal(5 * SR).astype(np.float32) * 0.1
    audio = np.concatenate([loud, loud[: 2 * SR] * 1e-3, loud])
    live = liveness.measure(audio, np.concatenate([loud, loud]), SR)
    assert live.dead_air_windows == 2
    assert live.quietest_window_dbfs == pytest.approx(-80, abs=0.5)
    assert sc.analyse(audio, SR).dead_air_pct == pytest.approx(100 * 2 / 12)
