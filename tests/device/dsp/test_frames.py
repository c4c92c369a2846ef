"""murmur.device.dsp.frames: the numpy STFT the device uses instead of librosa, and the normalisation round trip."""

import numpy as np
import pytest

from murmur.device.dsp import frames


@pytest.mark.parametrize("hop_length", [512, 256])
def test_stft_matches_librosa(hop_length):
    librosa = pytest.importorskip("librosa")
    audio = np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1
    ours = frames.stft_magnitudes(audio, n_fft=2048, hop_length=hop_length)
    theirs = np.abs(librosa.stft(audio, n_fft=2048, hop_length=hop_length)).T
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5 * np.abs(theirs).max())


def test_sine_peaks_in_its_bin():
    sample_rate_hz, n_fft = 44100, 2048
    tone_hz = 43 * sample_rate_hz / n_fft  # exactly on bin 43
    t = np.arange(sample_rate_hz) / sample_rate_hz
    mags = frames.stft_magnitudes(np.sin(2 * np.pi * tone_hz * t), n_fft=n_fft, hop_length=512)
    assert np.all(np.argmax(mags[4:-4], axis=1) == 43)
    # a full-scale sine through a Hann window of sum n_fft/2 peaks at n_fft/4
    assert mags[10, 43] == pytest.approx(n_fft / 4, rel=1e-3)


def test_normalise_round_trip_without_allocation():
    rng = np.random.default_rng(1)
    mags = rng.random((5, 1025)).astype(np.float32)
    log_floor = 1e-5
    logs = frames.to_log(mags, log_floor)
    mean, std = logs.mean(axis=0), float(logs.std())
    norm = frames.normalise(logs, mean, std)
    out = np.empty(1025, np.float32)
    result = frames.denormalise_into(norm[2], mean, std, log_floor, out)
    assert result is out
    np.testing.assert_allclose(out, mags[2], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(frames.denormalise(norm, mean, std, log_floor), mags, rtol=1e-4, atol=1e-6)


def test_unsupported_window_is_named():
    with pytest.raises(ValueError, match="window='hamming'"):
        frames.analysis_window(2048, "hamming")


def test_stereo_input_is_refused():
    with pytest.raises(ValueError, match=r"\(2, 100\)"):
        frames.stft(np.zeros((2, 100)), n_fft=64, hop_length=16)
