"""`python -m murmur.device render` keeps the TFLite runtime's delegate notice out of the user's terminal, and
``quiet_delegate_notice`` passes every other line of stderr through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from murmur import REPO_ROOT as ROOT
from murmur.device.generate.runtime import DELEGATE_NOTICE, quiet_delegate_notice


def test_render_prints_no_delegate_notice(tiny_bundle, tmp_path):
    # A child process: the runtime writes the notice once per process, so an earlier test here would hide it.
    device_python = ROOT / ".venv" / "device" / "bin" / "python"
    python = str(device_python) if device_python.exists() else sys.executable
    out = tmp_path / "one second.wav"
    result = subprocess.run([python, "-m", "murmur.device", "render", "--bundle", str(tiny_bundle), "--seconds", "1",
                             "--out", str(out), "--seed", "1"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote {out}" in result.stdout and out.stat().st_size > 0
    assert "XNNPACK" not in result.stdout + result.stderr


def test_other_stderr_lines_pass_through_in_order(capfd):
    with quiet_delegate_notice():
        os.write(2, b"runtime: a real warning\n" + DELEGATE_NOTICE + b"\nERROR: a real error\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "runtime: a real warning\nERROR: a real error\nafter\n"


def test_stderr_is_restored_when_building_fails(capfd):
    with pytest.raises(ValueError, match="no model"):
        with quiet_delegate_notice():
            os.write(2, b"ERROR: could not open the model\n")
            raise ValueError("no model")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "ERROR: could not open the model\nafter\n"


def test_a_last_line_without_newline_passes_and_no_descriptor_is_left_open(capfd):
    open_fds = Path("/proc/self/fd")
    before = sorted(os.listdir(open_fds)) if open_fds.is_dir() else []
    with quiet_delegate_notice():
        os.write(2, DELEGATE_NOTICE + b"\nno newline at the end")
    assert capfd.readouterr().err == "no newline at the end"
    if before:
        assert sorted(os.listdir(open_fds)) == before


def test_render_with_the_light_vocoder_is_the_same_sound_reconstructed_differently(tiny_bundle, tmp_path):
    from murmur.device.cli.engine import cli
    from murmur.device.dsp.wavio import read_audio

    rendered = {}
    for preset in ("full", "light"):
        out = tmp_path / f"{preset}.wav"
        assert cli(["render", "--bundle", str(tiny_bundle), "--seconds", "1", "--out", str(out), "--seed", "1",
                    "--vocoder", preset]) == 0
        rendered[preset], _ = read_audio(out)
    full, light = rendered["full"], rendered["light"]
    assert full.shape == light.shape and np.sqrt(np.mean(light**2)) > 1e-3
    assert not np.array_equal(full, light)  # the phases differ ...
    level_db = 20 * np.log10(np.sqrt(np.mean(light**2)) / np.sqrt(np.mean(full**2)))
    assert abs(level_db) < 1.0  # ... the sound (its level) does not


def test_the_streamed_render_writes_the_samples_render_returns(tiny_bundle, tmp_path):
    """`make render` streams blocks into the WAV (an hour never sits in memory): the same samples, to the last one
    of a length that is no whole number of hops."""
    from murmur.device.bundle import load_bundle
    from murmur.device.cli.engine import cli
    from murmur.device.controls.values import Controls
    from murmur.device.dsp.wavio import read_audio, write_wav
    from murmur.device.playback.engine import render

    seconds = 1.3
    streamed = tmp_path / "streamed.wav"
    assert cli(["render", "--bundle", str(tiny_bundle), "--seconds", str(seconds), "--out", str(streamed),
                "--seed", "4", "--set", "fidelity=0.1"]) == 0
    bundle = load_bundle(tiny_bundle)
    whole = write_wav(tmp_path / "whole.wav", render(bundle, seconds, controls=Controls().replace(fidelity=0.1), seed=4),
                      bundle.audio.sample_rate_hz)
    assert streamed.read_bytes() == whole.read_bytes()
    audio, rate = read_audio(streamed)
    assert audio.shape[0] == round(seconds * rate) and np.sqrt(np.mean(audio**2)) > 1e-3
