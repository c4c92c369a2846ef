"""Sinks: PyAudio through ALSA's ``file`` plugin into a raw float32 file (docs/ARCHITECTURE.md §7), device choice
by name.

ALSA reads its configuration once per process, so the PyAudio checks run in a subprocess whose HOME holds an
``.asoundrc`` making the default PCM a file. The plugin is not paced in real time: count frames, not seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from murmur import REPO_ROOT as ROOT
from murmur.device.bundle import load_bundle
from murmur.device.errors import OutputDeviceError
from murmur.device.playback.engine import render
from murmur.device.playback.sinks import OutputDevice, choose_device, format_devices

ASOUNDRC = """\
pcm.!default {{
  type file
  slave.pcm "null"
  file "{path}"
  format "raw"
}}
pcm.murmurtest {{
  type file
  slave.pcm "null"
  file "{path}.named"
  format "raw"
}}
"""

PLAYER = textwrap.dedent("""
    import json, sys, threading
    from murmur.device.bundle import load_bundle
    from murmur.device.playback.engine import Engine
    from murmur.device.errors import OutputDeviceError
    from murmur.device.playback.sinks import PyAudioSink, list_output_devices
    bundle_dir, device_name, n_blocks = sys.argv[1], sys.argv[2] or None, int(sys.argv[3])
    result = {"devices": [d.name for d in list_output_devices()]}
    try:
        PyAudioSink("no-such-card-xyz").start(lambda out: True, sample_rate_hz=44100, block_frames=512)
    except OutputDeviceError as exc:
        result["missing_error"] = str(exc)
    reached = threading.Event()
    sink = PyAudioSink(device_name)
    # no dropout fades: the file must hold the engine's exact samples (the fades are tested in test_engine.py)
    engine = Engine(load_bundle(bundle_dir), sink=sink, seed=5, dropout_fade_s=0.0)
    engine.on_frame = lambda i: engine.stats.blocks_delivered >= n_blocks and reached.set()
    engine.start()
    result["started"] = engine.wait_started(10.0)
    result["reached"] = reached.wait(60.0)
    engine.stop()
    stats = engine.stats
    result.update(callbacks=sink.callbacks, channels=sink.channels, block=engine.hop, device=sink.device.name,
                  delivered=engine._samples_delivered, underruns=stats.underruns,
                  fade_start=engine.pipeline.fade_start_frame(), buffer_frames=stats.buffer_frames)
    print("RESULT " + json.dumps(result))
""")


def play_through_alsa_file(tmp_path: Path, bundle_dir: Path, device_name: str, n_blocks: int) -> tuple[dict, Path]:
    home = tmp_path / "home"
    home.mkdir()
    raw = tmp_path / "out.raw"
    (home / ".asoundrc").write_text(ASOUNDRC.format(path=raw))
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("ALSA_CONFIG_PATH", None)
    result = subprocess.run([sys.executable, "-c", PLAYER, str(bundle_dir), device_name, str(n_blocks)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :]), raw


@pytest.mark.slow
def test_pyaudio_writes_the_engine_audio_through_alsa(tiny_bundle, tmp_path):
    report, raw = play_through_alsa_file(tmp_path, tiny_bundle, "", n_blocks=120)
    assert report["started"] and report["reached"]
    assert report["device"] == "default"
    assert "no-such-card-xyz" in report["missing_error"] and "default" in report["missing_error"]
    data = np.fromfile(raw, dtype=np.float32)
    channels, block = report["channels"], report["block"]
    # right number of frames: every callback wrote one block of `channels` interleaved samples (PortAudio may
    # add a block or two of its own priming silence)
    written = data.size // channels - report["callbacks"] * block
    assert data.size % channels == 0 and 0 <= written <= 4 * block
    frames = data.reshape(-1, channels)
    np.testing.assert_array_equal(frames[:, 0], frames[:, -1])
    mono = frames[:, 0]
    # the unpaced file device pulls faster than real time, so underruns put silence between delivered samples;
    # the delivered samples themselves are exactly the offline render of the same seed
    sounding = mono[mono != 0.0]
    # every sounding sample in the file was delivered by the engine (after the stop fade it delivers exact zeros)
    assert sounding.size <= report["delivered"]
    assert sounding.size >= 100 * block
    assert 20 * np.log10(np.sqrt(np.mean(sounding**2))) > -40.0
    bundle = load_bundle(tiny_bundle)
    reference = render(bundle, sounding.size / bundle.audio.sample_rate_hz + 0.1, seed=5)
    head = report["fade_start"] * block  # before the stop fade
    assert 100 * block <= head <= sounding.size
    reference_sounding = reference[reference != 0.0]
    np.testing.assert_array_equal(sounding[:head], reference_sounding[:head])


@pytest.mark.slow
def test_pyaudio_picks_the_output_by_name(tiny_bundle, tmp_path):
    report, raw = play_through_alsa_file(tmp_path, tiny_bundle, "MURMURTEST", n_blocks=20)
    if "murmurtest" not in report["devices"]:
        pytest.skip(f"PortAudio does not list user-defined ALSA PCMs here: {report['devices']}")
    assert report["device"] == "murmurtest"
    named = np.fromfile(str(raw) + ".named", dtype=np.float32)
    assert named.size >= report["callbacks"] * report["block"] * report["channels"]
    assert not raw.exists() or raw.stat().st_size == 0, "the default output must not have been used"
    assert np.abs(named).max() > 0.01


DEVICES = [
    OutputDevice(0, "bcm2835 Headphones: - (hw:0,0)", 8, 44100.0, "ALSA", False),
    OutputDevice(3, "snd_rpi_hifiberry_dacplus: HiFiBerry DAC+ HiFi pcm5122-hifi-0 (hw:2,0)", 2, 44100.0, "ALSA", False),
    OutputDevice(7, "default", 128, 44100.0, "ALSA", True),
]


def test_choose_device_by_case_insensitive_substring():
    assert choose_device(DEVICES, "HIFIBERRY").index == 3
    assert choose_device(DEVICES, "headphones").index == 0


def test_choose_device_without_a_name_takes_the_default():
    assert choose_device(DEVICES, None).name == "default"


def test_unknown_device_error_lists_what_is_there():
    with pytest.raises(OutputDeviceError) as info:
        choose_device(DEVICES, "usb audio")
    message = str(info.value)
    assert "'usb audio'" in message and "HiFiBerry DAC+" in message and "bcm2835 Headphones" in message
    assert "--device" in message


def test_a_name_matching_the_card_and_an_alsa_plugin_takes_the_card_itself():
    """ALSA plugins that name the card (sysdefault, dmix …) resample and buffer behind the engine's back; the
    card's own "(hw:N,M)" device is the direct path, whatever order PortAudio lists them in."""
    devices = [OutputDevice(9, "sysdefault:CARD=Loopback", 128, 44100.0, "ALSA", False),
               OutputDevice(2, "Loopback: PCM (hw:1,0)", 32, 44100.0, "ALSA", False),
               OutputDevice(3, "Loopback: PCM (hw:1,1)", 32, 44100.0, "ALSA", False), *DEVICES]
    assert choose_device(devices, "loopback").name == "Loopback: PCM (hw:1,0)"
    assert choose_device(devices, "CARD=Loopback").index == 9  # a plugin asked for by its own name is kept


NOISY_PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, json, sys
    if sys.argv[1] == "quiet":
        from murmur.device.playback.sinks import quiet_native_probing
        noise = quiet_native_probing()
    asound = ctypes.CDLL(ctypes.util.find_library("asound") or "libasound.so.2")
    pcm = ctypes.c_void_p()
    # what PortAudio's probe does for every PCM the configuration names: some do not exist on this machine
    code = asound.snd_pcm_open(ctypes.byref(pcm), b"murmur_no_such_pcm", 0, 0)
    print("RESULT " + json.dumps({"code": code, "alsa": noise.alsa if sys.argv[1] == "quiet" else None,
                                  "hooks": noise.hooks if sys.argv[1] == "quiet" else None}))
    print("murmur's own line", file=sys.stderr)
""")


@pytest.mark.skipif(not Path("/usr/lib/x86_64-linux-gnu/libasound.so.2").exists()
                    and not Path("/usr/lib/aarch64-linux-gnu/libasound.so.2").exists(), reason="no alsa-lib")
def test_alsa_lib_probe_messages_are_not_printed_but_our_own_lines_are(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("ALSA_CONFIG_PATH", None)

    def probe(mode: str) -> tuple[dict, str]:
        proc = subprocess.run([sys.executable, "-c", NOISY_PROBE, mode], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
        return json.loads(line[len("RESULT "):]), proc.stderr

    loud, loud_err = probe("loud")
    assert loud["code"] < 0 and "ALSA lib" in loud_err and "murmur_no_such_pcm" in loud_err  # what the journal got
    quiet, quiet_err = probe("quiet")
    assert quiet["code"] < 0 and "alsa-lib" in quiet["hooks"]
    assert "ALSA lib" not in quiet_err and quiet["alsa"] >= 1  # seen and counted, not printed
    assert "murmur's own line" in quiet_err


def test_no_devices_at_all_is_explained():
    with pytest.raises(OutputDeviceError, match="no audio output device found"):
        choose_device([], None)
    assert "audio' group" in format_devices([])


def run_cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    """``python -m murmur.device ARGS`` (the device venv when there is one) with the ALSA file plugin as the card."""
    home = tmp_path / "clihome"
    home.mkdir(exist_ok=True)
    raw = tmp_path / "cli.raw"
    (home / ".asoundrc").write_text(ASOUNDRC.format(path=raw))
    device_python = ROOT / ".venv" / "device" / "bin" / "python"
    python = str(device_python) if device_python.exists() else sys.executable
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("ALSA_CONFIG_PATH", None)
    result = subprocess.run([python, "-m", "murmur.device", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    return result, raw


@pytest.mark.slow
def test_play_cli_plays_for_the_given_seconds_on_the_named_device(tiny_bundle, tmp_path):
    result, raw = run_cli(tmp_path, "play", "--bundle", str(tiny_bundle), "--device", "default", "--seconds", "0.3",
                          "--set", "temperature=0.5", "--seed", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "playing" in result.stderr and "on 'default'" in result.stderr
    data = np.fromfile(raw, dtype=np.float32)
    assert data.size > 0 and np.sqrt(np.mean(data[data != 0] ** 2)) > 0.01


def test_play_cli_with_an_unknown_device_lists_the_outputs(tiny_bundle, tmp_path):
    result, _ = run_cli(tmp_path, "play", "--bundle", str(tiny_bundle), "--device", "nosuchcard", "--seconds", "0.3")
    assert result.returncode == 2
    assert "'nosuchcard'" in result.stderr and "default" in result.stderr


def test_list_devices_cli(tmp_path):
    result, _ = run_cli(tmp_path, "list-devices")
    assert result.returncode == 0 and "default" in result.stdout and "murmurtest" in result.stdout
