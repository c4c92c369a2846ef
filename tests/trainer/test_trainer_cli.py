"""The trainer as a user runs it: `python -m murmur.trainer train …` — the summary and preview, clear refusals of bad
input with nothing written, and Ctrl-C (a real SIGINT) stopping cleanly with no bundle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile

from murmur import REPO_ROOT as ROOT
from murmur.device.bundle import load_bundle
from murmur.trainer.cli import main

pytestmark = pytest.mark.slow  # trains real models (make test-fast leaves it out)



def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.mark.parametrize(
    "make_input, expected",
    [
        (lambda d: d, "folder is empty"),
        (lambda d: (d / "notes.txt").write_text("x") and d, "no audio files"),
        (lambda d: (d / "bad.flac").write_bytes(b"fLaC" + bytes(300)) and d / "bad.flac", "cannot be decoded"),
        (lambda d: soundfile.write(d / "quiet.wav", np.zeros(88200), 44100) or d / "quiet.wav", "silent"),
        (lambda d: soundfile.write(d / "short.wav", np.random.default_rng(0).normal(0, 0.1, 9000), 44100)
         or d / "short.wav", "shorter than one training window"),
    ],
    ids=["empty-folder", "no-audio", "corrupt", "silent", "too-short"],
)
def test_bad_input_exits_1_naming_the_file_and_writes_nothing(tmp_path, capsys, make_input, expected):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data = make_input(data_dir)
    out = tmp_path / "bundle"
    code, text = run_cli(["train", str(data), "--out", str(out), "--cache", str(tmp_path / "cache")], capsys)
    assert code == 1
    assert expected in text and str(data) in text
    assert not out.exists()


def test_out_that_is_not_a_bundle_is_refused_before_training(tmp_path, capsys, tiny_audio):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"precious")
    code, text = run_cli(["train", str(tiny_audio), "--out", str(out)], capsys)
    assert code == 1 and "not a bundle" in text and "epoch" not in text
    assert [p.name for p in out.iterdir()] == ["cat.jpg"] and (out / "cat.jpg").read_bytes() == b"precious"


def _cli_process(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "murmur.trainer", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_ctrl_c_during_training_stops_cleanly_without_a_bundle(tmp_path, tiny_audio):
    out = tmp_path / "bundle"
    proc = _cli_process(["train", str(tiny_audio), "--out", str(out), "--units", "16", "--patience", "100000",
                         "--minutes", "5", "--cache", str(tmp_path / "cache")])
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    try:
        lines = []
        for line in proc.stderr:  # non-terminal stderr: one line per finished epoch
            lines.append(line)
            if line.startswith("epoch"):
                proc.send_signal(signal.SIGINT)
                break
        _, rest = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    text = "".join(lines) + rest
    assert proc.returncode == 130, text[-2000:]
    assert "interrupted" in text and "no bundle written" in text
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"]  # no bundle, no temporary directory


@pytest.mark.slow
def test_train_command_writes_bundle_preview_and_summary(tmp_path, tiny_audio):
    stereo_22k = tmp_path / "data" / "take.flac"  # multichannel, odd sample rate: mixed down and resampled
    stereo_22k.parent.mkdir()
    samples, rate = soundfile.read(tiny_audio, dtype="float32")
    import librosa

    low = librosa.resample(samples, orig_sr=rate, target_sr=22050)
    soundfile.write(stereo_22k, np.stack([low, low * 0.5], axis=1), 22050)
    out = tmp_path / "mine"
    proc = _cli_process(["train", str(stereo_22k.parent), "--out", str(out), "--units", "16", "--max-epochs", "2",
                         "--preview-seconds", "3", "--cache", str(tmp_path / "cache")])
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.strip().splitlines()[-1] == str(out)
    for needle in ("2 channels mixed down to mono", "resampled 22050 Hz -> 44100 Hz", "held-out next-frame LSD",
                   "repeat-the-last-frame baseline", "bundle:", "MB", "preview:", "picture:"):
        assert needle in stderr, needle
    bundle = load_bundle(out)
    assert bundle.meta["training"]["data"]["files"][0]["name"] == "take.flac"
    preview, preview_rate = soundfile.read(tmp_path / "mine-preview.wav")
    assert preview_rate == 44100 and abs(len(preview) - 3 * 44100) <= 512 and np.all(np.isfinite(preview))
    assert (tmp_path / "mine-preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
