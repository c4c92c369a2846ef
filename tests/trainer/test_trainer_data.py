"""Trainer input side: finding and decoding files, bad input, frames, the cache, the split and the windows.

No TensorFlow here: these are fast. Audio is real (the tiny clip from conftest) or built from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from murmur.device.dsp import frames
from murmur.device.errors import AudioFileError, BundleError
from murmur.trainer.audio import decode, find_audio_files
from murmur.trainer.dataset import FrameSettings, build_dataset, load_source, lsd_db, min_frames
from murmur.trainer.pipeline import check_out_dir

SETTINGS = FrameSettings()


@pytest.fixture(scope="module")
def clip(tiny_audio: Path) -> tuple[np.ndarray, int]:
    """The tiny real clip at 44.1 kHz mono: (samples, rate)."""
    return decode(tiny_audio, 44100).samples, 44100


def write(path: Path, samples: np.ndarray, rate: int, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


# --- finding files -------------------------------------------------------------------------------------------


def test_folder_is_searched_recursively_and_only_audio_is_kept(tmp_path, clip):
    samples, rate = clip
    write(tmp_path / "b.wav", samples, rate)
    write(tmp_path / "sub" / "a.flac", samples, rate, subtype="PCM_16")
    (tmp_path / "notes.txt").write_text("not audio")
    found = find_audio_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["b.wav", "sub/a.flac"]


def test_previews_the_trainer_wrote_are_not_training_data(tmp_path, clip):
    samples, rate = clip
    write(tmp_path / "take.wav", samples, rate)
    for bundle_dir in (tmp_path / "mine", tmp_path / "demo" / "bundle"):
        bundle_dir.mkdir(parents=True)
        (bundle_dir / "bundle.json").write_text("{}")
    write(tmp_path / "mine-preview.wav", samples, rate)
    write(tmp_path / "demo" / "preview.wav", samples, rate)
    write(tmp_path / "other-preview.wav", samples, rate)  # no bundle beside it: the artist's own file
    skipped: list[Path] = []
    found = find_audio_files(tmp_path, skipped)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["other-preview.wav", "take.wav"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in skipped) == ["demo/preview.wav", "mine-preview.wav"]


def test_empty_folder_is_refused_with_the_fix(tmp_path):
    with pytest.raises(AudioFileError, match="folder is empty") as err:
        find_audio_files(tmp_path)
    assert str(tmp_path) in str(err.value) and "WAV" in str(err.value)


def test_folder_without_audio_files_is_refused_naming_what_is_there(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(AudioFileError, match="no audio files") as err:
        find_audio_files(tmp_path)
    assert "readme.txt" in str(err.value) and ".flac" in str(err.value)


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(AudioFileError, match="no such file"):
        find_audio_files(tmp_path / "nope")


# --- decoding and bad files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "aiff", "mp3"])
def test_every_supported_format_decodes(tmp_path, clip, ext):
    samples, rate = clip
    path = tmp_path / f"clip.{ext}"
    soundfile.write(path, samples[: rate], rate, format={"aiff": "AIFF", "mp3": "MP3"}.get(ext, ext.upper()))
    decoded = decode(path, 44100)
    assert decoded.samples.dtype == np.float32 and decoded.samples.ndim == 1
    assert abs(decoded.samples.shape[0] - rate) < rate * 0.1  # codecs may pad a little
    rms = float(np.sqrt(np.mean(decoded.samples**2)) / np.sqrt(np.mean(samples[:rate] ** 2)))
    assert 0.8 < rms < 1.25  # the same sound came back (lossy codecs change samples, not the level)


def test_corrupt_file_names_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" + bytes(range(256)) * 4)
    with pytest.raises(AudioFileError, match="cannot be decoded") as err:
        decode(bad, 44100)
    assert str(bad) in str(err.value) and "export it again" in str(err.value)


def test_silent_file_is_refused(tmp_path):
    path = write(tmp_path / "silence.wav", np.zeros(44100 * 2, np.float32), 44100, "PCM_16")
    with pytest.raises(AudioFileError, match="silent") as err:
        decode(path, 44100)
    assert str(path) in str(err.value)


def test_nan_samples_are_refused_with_their_position(tmp_path, clip):
    samples = clip[0][: 44100 * 2].copy()
    samples[44100] = np.nan
    path = write(tmp_path / "nan.wav", samples, 44100, "FLOAT")
    with pytest.raises(AudioFileError, match="NaN") as err:
        decode(path, 44100)
    assert str(path) in str(err.value) and "1.000 s" in str(err.value)


def test_multichannel_is_mixed_down_and_said(tmp_path, clip):
    samples = clip[0][: 44100 * 2]
    stereo = np.stack([samples, 0.5 * samples], axis=1)
    decoded = decode(write(tmp_path / "stereo.wav", stereo, 44100), 44100)
    np.testing.assert_allclose(decoded.samples, 0.75 * samples, atol=1e-6)
    assert decoded.source_channels == 2 and any("mixed down to mono" in n for n in decoded.notes)


def test_odd_sample_rate_is_resampled_and_said(tmp_path, clip):
    import librosa

    samples = clip[0][: 44100 * 2]
    at_22k = librosa.resample(samples, orig_sr=44100, target_sr=22050)
    decoded = decode(write(tmp_path / "low.wav", at_22k, 22050), 44100)
    assert decoded.source_rate_hz == 22050 and abs(decoded.samples.shape[0] - samples.shape[0]) <= 2
    assert any("resampled 22050 Hz -> 44100 Hz" in n for n in decoded.notes)


def test_too_short_file_is_refused_with_the_minimum(tmp_path, clip):
    path = write(tmp_path / "short.wav", clip[0][: int(0.4 * 44100)], 44100)
    with pytest.raises(AudioFileError, match="shorter than one training window") as err:
        build_dataset([path], SETTINGS, cache_dir=tmp_path / "cache")
    assert str(path) in str(err.value) and "--seq-len" in str(err.value)
    need = min_frames(64, 0.1)
    assert need - max(1, round(0.1 * need)) == 65  # exactly one window of 64 inputs + 1 target fits


def test_out_dir_that_is_not_a_bundle_is_refused_before_any_work(tmp_path):
    precious = tmp_path / "my_music"
    precious.mkdir()
    (precious / "song.wav").write_bytes(b"keep me")
    with pytest.raises(BundleError, match="not a bundle"):
        check_out_dir(precious)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="is a file"):
        check_out_dir(tmp_path / "file")
    check_out_dir(tmp_path / "new")  # a new path is fine
    assert (precious / "song.wav").read_bytes() == b"keep me"


# --- frames, cache, split, windows ---------------------------------------------------------------------------


def test_cached_frames_are_the_device_stft_in_log_units(tmp_path, clip):
    samples, rate = clip
    path = write(tmp_path / "clip.wav", samples, rate)
    source = load_source(path, SETTINGS, tmp_path / "cache")
    expected = frames.to_log(frames.stft_magnitudes(samples, n_fft=2048, hop_length=512), 1e-5)
    assert source.log_mag.shape == expected.shape
    np.testing.assert_allclose(source.log_mag, expected, atol=2e-4)
    assert isinstance(source.log_mag, np.memmap)  # memory-mapped from the cache, not held in RAM


def test_cache_reuses_unchanged_files_and_keys_on_settings(tmp_path, clip):
    samples, rate = clip
    data, cache = tmp_path / "data", tmp_path / "cache"
    write(data / "a.wav", samples, rate)
    first = build_dataset(find_audio_files(data), SETTINGS, cache_dir=cache)
    assert [s.source.from_cache for s in first.segments] == [False]
    entry = next(cache.glob("*.npy"))
    stamp = entry.stat().st_mtime_ns
    write(data / "b.wav", samples[::-1].copy(), rate)
    second = build_dataset(find_audio_files(data), SETTINGS, cache_dir=cache)
    assert [s.source.from_cache for s in second.segments] == [True, False]
    assert entry.stat().st_mtime_ns == stamp  # the first file was not recomputed
    other_hop = build_dataset(find_audio_files(data), FrameSettings(hop_length=256), cache_dir=cache)
    assert [s.source.from_cache for s in other_hop.segments] == [False, False]
    assert len(list(cache.glob("*.npy"))) == 4
    write(data / "a.wav", samples * 0.5, rate)  # same name, new content -> new entry
    third = build_dataset(find_audio_files(data), SETTINGS, cache_dir=cache)
    assert [s.source.from_cache for s in third.segments] == [False, True]


def test_split_normalisation_and_validation_windows(tmp_path, clip):
    samples, rate = clip
    data = tmp_path / "data"
    write(data / "a.wav", samples, rate)
    write(data / "b.wav", samples[: rate * 3], rate)
    ds = build_dataset(find_audio_files(data), SETTINGS, cache_dir=tmp_path / "cache", val_fraction=0.1)
    for seg in ds.segments:
        assert seg.n_frames - seg.n_train == round(0.1 * seg.n_frames)  # the last 10 % of every file
    train = np.concatenate([ds.normalised(np.asarray(s.source.log_mag[: s.n_train])) for s in ds.segments])
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-3)
    assert abs(float(train.std()) - 1.0) < 1e-3
    val = ds.validation
    assert val.n_frames == ds.n_val_frames  # every held-out frame weighted exactly once
    assert np.all(val.inputs[:, 1:] == val.targets[:, :-1])
    baseline = lsd_db(val.inputs, val.targets, val.weights, ds.std)
    assert 0.5 < baseline < 30  # a real clip: frames change, by a plausible number of dB


def test_training_batches_are_windows_by_index_with_shifted_targets(tmp_path, clip):
    samples, rate = clip
    ds = build_dataset([write(tmp_path / "a.wav", samples, rate)], SETTINGS, cache_dir=tmp_path / "cache")
    x = np.empty((8, ds.seq_len, SETTINGS.n_bins), np.float32)
    y = np.empty_like(x)
    ds.sample_batch(np.random.default_rng(1), 8, x, y)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    train = ds.normalised(np.asarray(ds.segments[0].source.log_mag[: ds.segments[0].n_train]))
    for row in x:  # every window is a real run of training frames (none from the held-out part)
        hits = np.flatnonzero(np.all(np.isclose(train, row[0]), axis=1))
        assert any(np.allclose(train[h : h + ds.seq_len], row) for h in hits if h + ds.seq_len < len(train))
    x2, y2 = np.empty_like(x), np.empty_like(y)
    ds.sample_batch(np.random.default_rng(1), 8, x2, y2)
    np.testing.assert_array_equal(x, x2)  # seeded
