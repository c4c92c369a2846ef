"""The service with the real engine, the real TFLite bundle and a sink paced like a sound card: the systemd notify
protocol against a socket the test binds (READY only after audio, WATCHDOG keeps coming, stops when the producer
or the main loop stalls), reload with a good and a bad bundle, SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from murmur import REPO_ROOT as ROOT
from murmur.device.appliance.clock import WallClock
from murmur.device.appliance.config import load_config
from murmur.device.appliance.health import read_status
from murmur.device.appliance.service import Service
from murmur.device.appliance.systemd import Notifier, pin_import_paths
from murmur.device.dsp.vocoder import FULL_PASSES, PRESETS
from murmur.device.generate.step_model import open_step_model
from murmur.device.playback.engine import Engine, preset_vocoder_factory
from murmur.device.playback.sinks import NullSink
from murmur.device.testing.fakes import NotifyListener


@pytest.fixture
def listener(tmp_path):
    listen = NotifyListener(tmp_path / "notify.sock")
    yield listen
    listen.close()


def write_config(path: Path, bundles: list[Path], extra: str = "") -> Path:
    entries = ", ".join(f'"{b}"' for b in bundles)
    path.write_text(f"[playback]\nplaylist = [{entries}]\ncrossfade_s = 0.5\n{extra}\n[schedule]\nfade_s = 0.5\n")
    return path


class GatedSink(NullSink):
    """A paced null sink whose first pull waits for ``gate`` (a sound card that is slow to open)."""

    def __init__(self) -> None:
        super().__init__(realtime=True)
        self.gate = threading.Event()

    def _next(self, pull):
        self.gate.wait(10.0)
        return super()._next(pull)


class GatedModel:
    """The real step model; ``stall`` set makes ``step`` block until ``release`` is set (a hung generator)."""

    def __init__(self, model) -> None:
        self._model = model
        self.stall = threading.Event()
        self.release = threading.Event()
        self.stalled = threading.Event()

    def __getattr__(self, name):
        return getattr(self._model, name)

    def step(self, frame):
        if self.stall.is_set():
            self.stalled.set()
            self.release.wait(10.0)
        return self._model.step(frame)


def start_service(tmp_path, tiny_bundle, listener, monkeypatch, *, sink=None, models=None, playlist=None, **kwargs):
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    config = load_config(write_config(tmp_path / "murmur.toml", playlist or [tiny_bundle]))
    sinks = []

    def model_factory(bundle):
        model = GatedModel(open_step_model(bundle))
        if models is not None:
            models.append(model)
        return model

    def engine_factory(bundle, *, config, store, on_frame):
        out = sink if sink is not None else NullSink(realtime=True)
        sinks.append(out)
        return Engine(bundle, sink=out, controls=store, volume_cap_db=config.playback.volume_cap_db,
                      on_frame=on_frame, model_factory=model_factory,
                      vocoder_factory=preset_vocoder_factory(config.playback.vocoder))

    svc = Service(config, engine_factory=engine_factory, knobs_factory=None, notifier=Notifier(str(listener.path)),
                  status_file=tmp_path / "run" / "status.json", state_dir=tmp_path / "state", tick_s=0.1, **kwargs)
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", svc.run()), daemon=True)
    thread.start()
    return svc, thread, result, sinks


def stop_service(svc, thread, result):
    svc.request_stop()
    thread.join(15)
    assert not thread.is_alive() and result.get("rc") == 0


def test_ready_only_after_first_audio_block_then_watchdog_keeps_coming(tmp_path, tiny_bundle, listener, monkeypatch):
    sink = GatedSink()
    svc, thread, result, _ = start_service(tmp_path, tiny_bundle, listener, monkeypatch, sink=sink)
    try:
        # The sink has not taken a block: READY must not come (the ring fills, then the producer waits).
        start = time.monotonic()
        listener.count("READY=1", 1.0)  # a one-second observation window
        early = [m for t, m in listener.messages if t >= start]
        assert "READY=1" not in early and sink.first_block_monotonic is None
        sink.gate.set()
        listener.wait_for(lambda m: m == "READY=1", 30)
        ready_at = next(t for t, m in listener.messages if m == "READY=1")
        assert sink.first_block_monotonic is not None and sink.first_block_monotonic <= ready_at
        assert listener.count("WATCHDOG=1", 1.0) >= 5  # 0.1 s interval: ~10 expected
        status = json.loads((tmp_path / "run" / "status.json").read_text())
        assert status["ready"] and status["playing"] and status["bundle_id"] == svc.bundle.bundle_id
    finally:
        sink.gate.set()
        stop_service(svc, thread, result)
    listener.wait_for(lambda m: m == "STOPPING=1", 5)


def test_watchdog_stops_while_the_producer_stalls_and_resumes_after(tmp_path, tiny_bundle, listener, monkeypatch):
    models: list[GatedModel] = []
    svc, thread, result, _ = start_service(tmp_path, tiny_bundle, listener, monkeypatch, models=models)
    try:
        listener.wait_for(lambda m: m == "READY=1", 30)
        for _ in range(3):  # pings keep coming while the producer runs (however slow the machine)
            listener.wait_for(lambda m: m == "WATCHDOG=1", 10)
        model = models[0]
        model.stall.set()
        assert model.stalled.wait(5)
        listener.count("WATCHDOG=1", 0.15)  # drain a ping that was already on its way
        assert listener.count("WATCHDOG=1", 1.0) == 0  # systemd would now kill and restart the service
        model.stall.clear()
        model.release.set()
        listener.wait_for(lambda m: m == "WATCHDOG=1", 5)
    finally:
        models[0].release.set()
        stop_service(svc, thread, result)


def test_watchdog_stops_when_the_main_loop_hangs(tmp_path, tiny_bundle, listener, monkeypatch):
    """The producer alone is not enough: a hung main loop (no schedule, no reload, no status) also starves the
    watchdog, so systemd restarts the service."""

    hang, hanging = threading.Event(), threading.Event()

    class HangingClock(WallClock):
        def wait(self, event, timeout):
            if hang.is_set():
                hanging.set()
                event.wait(30)  # the main loop stops ticking until stopped
                return True
            return event.wait(timeout)

    svc, thread, result, _ = start_service(tmp_path, tiny_bundle, listener, monkeypatch, clock=HangingClock())
    svc.watchdog.grace_s = 0.4
    try:
        listener.wait_for(lambda m: m == "READY=1", 30)
        for _ in range(2):
            listener.wait_for(lambda m: m == "WATCHDOG=1", 10)
        hang.set()
        assert hanging.wait(5)
        listener.count("WATCHDOG=1", 0.5)  # grace period
        assert listener.count("WATCHDOG=1", 1.0) == 0
    finally:
        stop_service(svc, thread, result)


def test_reload_good_bundle_crossfades_bad_bundle_is_refused(tmp_path, tiny_bundle, listener, monkeypatch):
    svc, thread, result, sinks = start_service(tmp_path, tiny_bundle, listener, monkeypatch)
    try:
        listener.wait_for(lambda m: m == "READY=1", 30)
        old_id = svc.bundle.bundle_id
        # A good new bundle: same files, new id (a re-export) -> crossfade, same engine, no restart.
        good = tmp_path / "good"
        shutil.copytree(tiny_bundle, good)
        meta = json.loads((good / "bundle.json").read_text())
        meta["bundle_id"] = "reloaded-good"
        (good / "bundle.json").write_text(json.dumps(meta))
        write_config(tmp_path / "murmur.toml", [good])
        engine = svc.engine
        svc.request_reload()
        listener.wait_for(lambda m: m.startswith("STATUS=") and "reloaded-good" in m, 10)
        listener.wait_for(lambda m: engine.stats.bundle_id == "reloaded-good", 10)  # checked at each ping
        assert engine.stats.bundle_id == "reloaded-good" and svc.engine is engine and svc.counters.restarts == 0
        # A bad bundle (corrupt model): refused with the reason, the running one keeps playing.
        bad = tmp_path / "bad"
        shutil.copytree(good, bad)
        (bad / "model.tflite").write_bytes(b"not a model")
        write_config(tmp_path / "murmur.toml", [bad])
        svc.request_reload()
        message = listener.wait_for(lambda m: m.startswith("STATUS=") and "rejected" in m, 10)
        assert str(bad) in message or "model.tflite" in message
        frames = engine.stats.frames_produced
        # a ping sent after a new frame (one already queued before `frames` was read does not count)
        listener.wait_for(lambda m: m == "WATCHDOG=1" and engine.stats.frames_produced > frames, 10)
        assert svc.engine is engine
        assert svc.bundle.bundle_id == "reloaded-good" and svc.counters.rejected_reloads == 1
        # Files intact but the model does not run as bundle.json says: the engine's check refuses it.
        wrong = tmp_path / "wrong"
        shutil.copytree(good, wrong)
        meta["model"]["input_frame"] = "no_such_input"
        (wrong / "bundle.json").write_text(json.dumps(meta))
        write_config(tmp_path / "murmur.toml", [wrong], extra="rotate_minutes = 7")
        svc.request_reload()
        listener.wait_for(lambda m: m.startswith("STATUS=") and "no_such_input" in m, 10)
        assert svc.engine is engine and svc.bundle.path == good and svc.counters.rejected_reloads == 2
        assert svc.config.playback.rotate_minutes == 0  # nothing of the refused config was applied
        # A bad config value: refused too.
        (tmp_path / "murmur.toml").write_text(f'[playback]\nbundle = "{good}"\nvolume_cap_db = 6\n')
        svc.request_reload()
        listener.wait_for(lambda m: m.startswith("STATUS=") and "volume_cap_db = 6" in m, 10)
        assert svc.config.playback.volume_cap_db == -6.0 and svc.counters.rejected_reloads == 3
        assert old_id != "reloaded-good"
    finally:
        stop_service(svc, thread, result)


def test_reload_with_another_vocoder_restarts_the_sound_with_it(tmp_path, tiny_bundle, listener, monkeypatch):
    svc, thread, result, _ = start_service(tmp_path, tiny_bundle, listener, monkeypatch)
    try:
        listener.wait_for(lambda m: m == "READY=1", 30)
        engine = svc.engine
        assert engine.pipeline.vocoder.passes == (4,) * FULL_PASSES
        write_config(tmp_path / "murmur.toml", [tiny_bundle], extra='vocoder = "light"')
        svc.request_reload()
        listener.wait_for(lambda m: svc.counters.reloads == 1, 10)
        assert svc.engine is not engine and svc.counters.restarts == 1
        assert svc.config.playback.vocoder == "light" and svc.engine.pipeline.vocoder.passes == PRESETS["light"]
        frames = svc.engine.stats.frames_produced
        listener.wait_for(lambda m: m == "WATCHDOG=1" and svc.engine.stats.frames_produced > frames, 10)
        status_file = tmp_path / "run" / "status.json"  # what `make status` reads
        listener.wait_for(lambda m: (s := read_status(status_file)) is not None and s.vocoder == "light", 10)
    finally:
        stop_service(svc, thread, result)


@pytest.mark.slow
def test_serve_cli_under_a_notify_socket_reload_and_sigterm(tmp_path, tiny_bundle, listener):
    """``python -m murmur.device serve`` as systemd runs it: READY, WATCHDOG, SIGHUP reload, SIGTERM -> clean exit 0."""
    good = tmp_path / "second"
    shutil.copytree(tiny_bundle, good)
    meta = json.loads((good / "bundle.json").read_text())
    meta["bundle_id"] = "second-bundle"
    (good / "bundle.json").write_text(json.dumps(meta))
    config = write_config(tmp_path / "murmur.toml", [tiny_bundle])
    status_file = tmp_path / "run" / "status.json"
    env = dict(os.environ, NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC="1000000", MURMUR_SINK="null",
               MURMUR_STATUS_FILE=str(status_file), STATE_DIRECTORY=str(tmp_path / "state"))
    env.pop("JOURNAL_STREAM", None)
    env.pop("INVOCATION_ID", None)
    proc = subprocess.Popen([sys.executable, "-m", "murmur.device", "serve", "--config", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        listener.wait_for(lambda m: m == "READY=1", 60)
        assert listener.count("WATCHDOG=1", 1.2) >= 2  # every 0.25 s
        write_config(config, [good])
        proc.send_signal(signal.SIGHUP)
        listener.wait_for(lambda m: m == "RELOADING=1", 15)
        listener.wait_for(lambda m: m == "READY=1", 15)
        listener.wait_for(lambda m: m.startswith("STATUS=") and "second-bundle" in m, 15)
        proc.send_signal(signal.SIGTERM)
        listener.wait_for(lambda m: m == "STOPPING=1", 15)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    assert "reload: crossfading to second-bundle" in log and "stopping: fading out" in log
    status = json.loads(status_file.read_text())
    assert status["state"] == "stopped" and not status["playing"] and status["bundle_id"] == "second-bundle"
    assert status["reloads"] == 1  # underruns are a timing figure: benchmarks/bench_service.py


def test_start_skips_a_playlist_entry_whose_model_does_not_run(tmp_path, tiny_bundle, listener, monkeypatch, caplog):
    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_bundle, wrong)
    meta = json.loads((wrong / "bundle.json").read_text())
    meta["model"]["input_frame"] = "no_such_input"
    (wrong / "bundle.json").write_text(json.dumps(meta))
    svc, thread, result, _ = start_service(tmp_path, tiny_bundle, listener, monkeypatch, playlist=[wrong, tiny_bundle])
    try:
        listener.wait_for(lambda m: m == "READY=1", 30)
        assert svc.bundle.path == tiny_bundle and svc.playlist.index == 1
        saved = json.loads((tmp_path / "state" / "playlist.json").read_text())
        assert saved["index"] == 1 and saved["bundle_path"] == str(tiny_bundle)
        assert "no_such_input" in caplog.text
    finally:
        stop_service(svc, thread, result)


ASOUNDRC = """\
pcm.!default {{
  type file
  slave.pcm "null"
  file "{raw}.default"
  format "raw"
}}
pcm.murmurtest {{
  type file
  slave.pcm "null"
  file "{raw}.named"
  format "raw"
}}
"""


def serve_through_alsa(tmp_path: Path, listener: NotifyListener, bundle: Path, output_device: str):
    """``python -m murmur.device serve`` on PyAudio, ALSA's ``file`` plugin standing in for the sound cards (no hardware)."""
    home = tmp_path / "home"
    home.mkdir()
    raw = tmp_path / "out.raw"
    (home / ".asoundrc").write_text(ASOUNDRC.format(raw=raw))
    config = tmp_path / "murmur.toml"
    config.write_text(f'[playback]\nbundle = "{bundle}"\noutput_device = "{output_device}"\n')
    device_python = ROOT / ".venv" / "device" / "bin" / "python"
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT), NOTIFY_SOCKET=str(listener.path),
               MURMUR_STATUS_FILE=str(tmp_path / "status.json"))
    for name in ("ALSA_CONFIG_PATH", "MURMUR_SINK", "JOURNAL_STREAM", "INVOCATION_ID", "STATE_DIRECTORY"):
        env.pop(name, None)
    python = str(device_python) if device_python.exists() else sys.executable
    proc = subprocess.Popen([python, "-m", "murmur.device", "serve", "--config", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, raw


@pytest.mark.slow
def test_serve_plays_on_the_output_named_in_the_config(tmp_path, tiny_bundle, listener):
    proc, raw = serve_through_alsa(tmp_path, listener, tiny_bundle, "MURMURTEST")
    try:
        listener.wait_for(lambda m: m == "READY=1", 60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    named = Path(f"{raw}.named")
    assert named.exists() and named.stat().st_size > 0, log[-2000:]
    assert not Path(f"{raw}.default").exists() or Path(f"{raw}.default").stat().st_size == 0


@pytest.mark.slow
def test_serve_with_a_missing_output_waits_for_it_and_says_which(tmp_path, tiny_bundle, listener):
    """No such card (yet): the service stays up, says what it waits for, and stops cleanly (no exit into systemd's
    restart limit; test_service_late_card.py plays once the card appears)."""
    proc, _ = serve_through_alsa(tmp_path, listener, tiny_bundle, "nosuchcard")
    try:
        listener.wait_for(lambda m: m.startswith("STATUS=") and "waiting for the sound card" in m, 60)
        assert proc.poll() is None
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["state"] == "error" and "nosuchcard" in status["message"] and not status["playing"]
        assert "waiting for the sound card" in status["message"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    assert "nosuchcard" in log and "plays as soon as one appears" in log


def test_import_paths_are_pinned_to_the_release_that_started(tmp_path, monkeypatch):
    """The unit starts current/venv/bin/python; after start-up a switch of `current` must not change where this
    process imports from (a deploy switches a moment before it restarts the service)."""
    for key in ("aaaa", "bbbb"):
        site = tmp_path / "venvs" / key / "site-packages"
        site.mkdir(parents=True)
        (site / "murmur_pin_probe.py").write_text(f"VENV = {key!r}\n")
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "venvs/aaaa")
    monkeypatch.setattr(sys, "path", [str(current / "site-packages"), *sys.path])
    monkeypatch.delitem(sys.modules, "murmur_pin_probe", raising=False)
    pin_import_paths()
    current.unlink()
    current.symlink_to(tmp_path / "venvs/bbbb")  # the deploy's switch
    import murmur_pin_probe

    assert murmur_pin_probe.VENV == "aaaa"
    assert sys.path[0] == os.path.realpath(tmp_path / "venvs/aaaa/site-packages")
    del sys.modules["murmur_pin_probe"]
