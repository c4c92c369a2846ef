"""murmur.device.dsp.wavio: read/write round trips, downmix, the stdlib fallback and clear errors on bad files."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from murmur.device.dsp import wavio
from murmur.device.errors import AudioFileError


def _sine(n: int, sample_rate_hz: int = 16000, freq_hz: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(n) / sample_rate_hz
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def test_write_then_read_round_trip(tmp_path):
    audio = _sine(4000)
    path = wavio.write_wav(tmp_path / "a.wav", audio, 16000)
    back, rate = wavio.read_audio(path)
    assert rate == 16000
    assert back.dtype == np.float32 and back.shape == audio.shape
    assert np.max(np.abs(back - audio)) < 2.0 / 32767
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_write_clips_and_stdlib_reader_matches(tmp_path, monkeypatch):
    audio = np.array([0.0, 2.0, -3.0, 0.25, np.nan], dtype=np.float32)
    path = wavio.write_wav(tmp_path / "clip.wav", audio, 8000)
    monkeypatch.setattr(wavio, "_soundfile", None)
    back, rate = wavio.read_audio(path)
    assert rate == 8000
    np.testing.assert_allclose(back, [0.0, 1.0, -1.0, 0.25, 0.0], atol=1e-4)


def test_stereo_is_downmixed_by_stdlib_reader(tmp_path, monkeypatch):
    left = np.full(100, 8000, dtype="<i2")
    right = np.full(100, -4000, dtype="<i2")
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(22050)
        wav.writeframes(np.stack([left, right], axis=1).tobytes())
    monkeypatch.setattr(wavio, "_soundfile", None)
    audio, rate = wavio.read_audio(path)
    assert rate == 22050 and audio.shape == (100,)
    np.testing.assert_allclose(audio, (8000 - 4000) / 2 / 32768.0, atol=1e-6)


def test_streaming_writer_concatenates_blocks(tmp_path):
    audio = _sine(3000)
    target = tmp_path / "sub" / "stream.wav"
    with wavio.WavWriter(target, 16000) as writer:
        for start in range(0, 3000, 512):
            writer.write(audio[start : start + 512])
        assert not target.exists(), "target must appear only when the writer is closed"
    assert writer.samples_written == 3000
    back, rate = wavio.read_audio(target)
    assert rate == 16000
    assert np.max(np.abs(back - audio)) < 2.0 / 32767
    with pytest.raises(ValueError, match="closed"):
        writer.write(audio[:10])


def test_streaming_writer_discards_on_error(tmp_path):
    target = tmp_path / "broken.wav"
    with pytest.raises(RuntimeError), wavio.WavWriter(target, 16000) as writer:
        writer.write(_sine(100))
        raise RuntimeError("producer failed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_missing_file_error_names_it(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioFileError, match="nope.wav"):
        wavio.read_audio(missing)


@pytest.mark.parametrize("use_soundfile", [True, False])
def test_garbage_file_error_names_it(tmp_path, monkeypatch, use_soundfile):
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    if not use_soundfile:
        monkeypatch.setattr(wavio, "_soundfile", None)
    elif wavio._soundfile is None:
        pytest.skip("soundfile not installed in this venv")
    with pytest.raises(AudioFileError, match="garbage.wav"):
        wavio.read_audio(bad)


def test_empty_wav_is_rejected(tmp_path):
    path = wavio.write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioFileError, match="no audio"):
        wavio.read_audio(path)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="sample_rate_hz"):
        wavio.write_wav(tmp_path / "x.wav", np.zeros(10, np.float32), 0)
    with pytest.raises(ValueError, match="mono"):
        wavio.write_wav(tmp_path / "x.wav", np.zeros((10, 2), np.float32), 16000)
    assert not (tmp_path / "x.wav").exists()
