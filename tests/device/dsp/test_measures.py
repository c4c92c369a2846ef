"""murmur.device.dsp.measures: the one dead-air and movement definition (1-s windows below -50 dBFS; per-second
dB spectra), the same from a stream of blocks, from a whole array and from magnitude frames."""

from __future__ import annotations

import numpy as np
import pytest

from murmur.device.dsp import measures
from murmur.device.dsp.frames import stft_magnitudes

SR = 22050


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    """White noise of RMS ``dbfs``: (n,) float32."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SR)) * 10 ** (dbfs / 20)).astype(np.float32)


def test_a_two_second_hole_between_loud_passages_is_dead_air():
    # 2 s of near-silence inside 10 s of -20 dBFS: any 10-s window still reads about -21 dBFS, 1-s windows see it
    audio = np.concatenate([noise(5, -20), noise(2, -80, seed=1), noise(5, -20, seed=2)])
    found = measures.measure_audio(audio, SR)
    assert found.window_levels_dbfs.shape == (12,)
    assert found.dead_air_share == pytest.approx(2 / 12)


def test_the_threshold_is_minus_50_dbfs():
    assert measures.measure_audio(noise(3, -49), SR).dead_air_share == 0.0
    assert measures.measure_audio(noise(3, -51), SR).dead_air_share == 1.0


def test_a_stream_in_odd_blocks_gives_the_figures_of_the_whole_array():
    audio = np.concatenate([noise(2.3, -20), noise(1.1, -60, seed=4)])
    whole = measures.measure_audio(audio, SR)
    meter = measures.AudioMeter(SR)
    for start in range(0, audio.size, 777):
        meter.feed(audio[start : start + 777])
    streamed = meter.finish()
    np.testing.assert_allclose(streamed.second_db, whole.second_db, atol=1e-4)
    np.testing.assert_allclose(streamed.window_levels_dbfs, whole.window_levels_dbfs, atol=1e-9)
    assert streamed.level_dbfs == pytest.approx(whole.level_dbfs)
    assert streamed.n_samples == whole.n_samples == audio.size


def test_movement_spectra_from_frames_equal_those_from_audio():
    audio = noise(4.5, -20)
    mags = stft_magnitudes(audio, n_fft=measures.N_FFT, hop_length=measures.HOP)
    per_second = measures.frames_per_window(SR, measures.HOP)
    from_frames = measures.second_spectra_db(mags, per_second)
    assert from_frames.shape == (mags.shape[0] // per_second, mags.shape[1])
    np.testing.assert_allclose(from_frames, measures.measure_audio(audio, SR).second_db, atol=1e-4)


def test_a_steady_tone_does_not_move_and_is_static_against_moving_music():
    t = np.arange(6 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    rng = np.random.default_rng(5)
    music = np.concatenate([noise(1, rng.uniform(-40, -10), seed=s) for s in range(6)])  # level jumps every second
    tone_moves = measures.measure_audio(tone, SR).movements_db
    music_moves = measures.measure_audio(music, SR).movements_db
    assert measures.movement_ratio(tone_moves, music_moves) < 0.1
    assert measures.static_share(tone_moves[1:-1], music_moves) == 1.0  # the edges hold the STFT's zero padding
    assert measures.movement_ratio(music_moves, music_moves) == 1.0


def test_frame_levels_read_a_full_scale_sine_as_its_rms_and_windows_average_them():
    t = np.arange(3 * SR) / SR
    sine = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    mags = stft_magnitudes(sine, n_fft=1024, hop_length=256)
    assert float(np.median(measures.frame_dbfs(mags, 1024))) == pytest.approx(-3.01, abs=0.1)
    silent = stft_magnitudes(np.zeros(3 * SR, np.float32), n_fft=1024, hop_length=256)
    per_window = measures.frames_per_window(SR, 256)
    three = 3 * per_window  # three whole windows of each
    levels = measures.frame_window_levels_dbfs(np.concatenate([mags[:three], silent[:three]]), 1024, per_window)
    np.testing.assert_allclose(levels[:3], -3.01, atol=0.1)
    assert measures.dead_air_share(levels) == 0.5


def test_non_finite_samples_are_counted_and_taken_as_silence():
    audio = noise(2, -20)
    audio[100:110] = np.nan
    audio[200] = np.inf
    found = measures.measure_audio(audio, SR)
    assert found.nonfinite_samples == 11
    assert np.all(np.isfinite(found.second_db)) and np.isfinite(found.level_dbfs)
