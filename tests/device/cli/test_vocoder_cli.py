"""`python -m murmur.device resynth`: end to end through the command dispatcher, and its errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmarks.bench_vocoder import SPEECH
from murmur.device.cli import main
from murmur.device.dsp import wavio


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    audio, rate = wavio.read_audio(SPEECH[1])
    return wavio.write_wav(tmp_path_factory.mktemp("resynth") / "voice in.wav", audio, rate), audio, rate


def test_resynth_writes_an_aligned_file_and_reports_sc(speech_wav, tmp_path, capsys):
    path, audio, rate = speech_wav
    out = tmp_path / "sub" / "voice out.wav"
    assert main(["resynth", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    back, back_rate = wavio.read_audio(out)
    assert back_rate == rate and back.shape == audio.shape
    sc_db = float(re.search(r"spectral convergence (-?\d+\.\d+) dB", printed).group(1))
    assert sc_db < -20.0
    assert re.search(r"vocoder \d+\.\d+ ms per frame", printed)
    # aligned: short-time energy envelopes line up within a few ms
    env_in = np.convolve(audio**2, np.ones(256), "same")
    env_out = np.convolve(back**2, np.ones(256), "same")
    assert np.corrcoef(env_in, env_out)[0, 1] > 0.9
    shifted = np.r_[np.zeros(512), env_out[:-512]]
    assert np.corrcoef(env_in, shifted)[0, 1] < np.corrcoef(env_in, env_out)[0, 1]


def test_resynth_options_reach_the_vocoder(speech_wav, tmp_path, capsys):
    path, audio, _ = speech_wav
    out = tmp_path / "o.wav"
    args = ["resynth", str(path), "--out", str(out), "--n-fft", "1024", "--hop", "128", "--lookahead", "2",
            "--iterations", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "n_fft 1024, hop 128, look-ahead 2 frames" in printed
    assert wavio.read_audio(out)[0].shape == audio.shape


def test_unreadable_input_is_named(tmp_path, capsys):
    bad = tmp_path / "not audio.ogg"
    bad.write_bytes(b"\x00garbage" * 100)
    assert main(["resynth", str(bad), "--out", str(tmp_path / "o.wav")]) == 2
    assert "not audio.ogg" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()


def test_missing_and_silent_inputs_are_named(tmp_path, capsys):
    assert main(["resynth", str(tmp_path / "gone.wav"), "--out", str(tmp_path / "o.wav")]) == 2
    assert "gone.wav" in capsys.readouterr().err
    silent = wavio.write_wav(tmp_path / "silent.wav", np.zeros(8000, np.float32), 16000)
    assert main(["resynth", str(silent), "--out", str(tmp_path / "o.wav")]) == 2
    assert "silent" in capsys.readouterr().err


def test_bad_hop_is_named(speech_wav, tmp_path, capsys):
    path, _, _ = speech_wav
    assert main(["resynth", str(path), "--out", str(tmp_path / "o.wav"), "--hop", "1000"]) == 2
    assert "hop_length=1000" in capsys.readouterr().err


def test_unwritable_output_is_named(speech_wav, tmp_path, capsys):
    path, _, _ = speech_wav
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    assert main(["resynth", str(path), "--out", str(blocker / "o.wav")]) == 2
    assert "o.wav" in capsys.readouterr().err
