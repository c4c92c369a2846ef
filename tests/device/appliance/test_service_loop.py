"""The service's main-loop decisions with an injected clock and a recording stand-in engine (plumbing only; the
real engine is exercised in test_service.py): schedule fades at the edges and after a reboot mid-window, playlist
rotation and its persisted position, knob actions, the silence/stuck-output detector and its restart."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta

import pytest

from murmur.device.appliance.config import load_config
from murmur.device.appliance.health import SilenceDetector
from murmur.device.appliance.playlist import read_playlist_state
from murmur.device.appliance.service import Service
from murmur.device.appliance.status import ClockSync
from murmur.device.appliance.systemd import Notifier, setup_logging
from murmur.device.errors import BundleError
from murmur.device.testing.fakes import FakeBundle, FakeEngine, SimClock

MONDAY_9 = datetime(2026, 11, 23, 9, 0)




def make_service(tmp_path, text, *, start=MONDAY_9, bad=()):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir(exist_ok=True)
    (tmp_path / "murmur.toml").write_text(text)
    config = load_config(tmp_path / "murmur.toml")
    clock = SimClock(start)
    engines: list[FakeEngine] = []
    log: list[tuple] = []

    def loader(path):
        if path.name in bad:
            raise BundleError(f"{path}: checksum mismatch for model.tflite; re-export")
        return FakeBundle(path, f"id-{path.name}")

    def engine_factory(bundle, **kwargs):
        output = kwargs["config"].playback.output_device
        engines.append(FakeEngine(bundle, clock, log=log, starts=output != "broken"))
        engines[-1].output = output  # which sound card the service asked for
        return engines[-1]

    svc = Service(config, engine_factory=engine_factory, knobs_factory=None, notifier=Notifier(""), clock=clock,
                  status_file=tmp_path / "status.json", state_dir=tmp_path / "state", bundle_loader=loader,
                  model_check=lambda bundle: None)
    return svc, clock, engines, log


def run_for(svc, clock, seconds, step=1.0):
    end = clock.offset + seconds
    while clock.offset < end:
        clock.advance(step)
        assert svc.tick()


GALLERY = """
[playback]
bundle = "a"
[schedule]
mon = "10:00-18:00"
fade_in_s = 30
fade_out_s = 60
"""


def test_closed_at_start_then_fades_in_at_opening_and_out_before_closing(tmp_path):
    svc, clock, engines, _ = make_service(tmp_path, GALLERY)
    svc._start()
    engine = engines[0]
    assert engine.fades[:2] == [(0.0, 0.0), (0.0, 0.0)]  # started silent, stays silent: closed
    assert svc.state == "quiet-hours" and not json.loads((tmp_path / "status.json").read_text())["playing"]
    run_for(svc, clock, 3600)  # 10:00
    assert engine.fades[-1] == (1.0, 30.0)
    run_for(svc, clock, 8 * 3600 - 60, step=60)  # 17:59:00
    assert engine.fades[-1] == (0.0, 60.0)
    assert len(engine.fades) == 4  # nothing re-commanded in between (fade-in end: target unchanged)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["playing"] and "fading-out until Mon 18:00" in status["schedule"]
    run_for(svc, clock, 61)
    assert len(engine.fades) == 4 and svc.state == "quiet-hours"  # the fade-out already reached 0 at 18:00


def test_unsynchronised_clock_plays_through_the_hours_by_default_until_network_time_arrives(tmp_path, caplog):
    svc, clock, engines, _ = make_service(tmp_path, GALLERY)  # 09:00 by the guessed clock: closed
    clock.synchronised = ClockSync.UNSYNCHRONISED
    with caplog.at_level(logging.INFO, logger="murmur"):
        svc._start()
        engine = engines[0]
        assert engine.fades[-1][0] == 1.0 and svc.state == "playing"
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["clock"] == "unsynchronised" and status["playing"] and status["schedule"] == "playing-through"
        assert "no network time since boot" in caplog.text and "playing through" in caplog.text
        clock.synchronised = ClockSync.SYNCHRONISED  # NTP arrives: it really is 09:00, closed
        run_for(svc, clock, 1)
    assert engine.fades[-1][0] == 0.0 and svc.state == "quiet-hours"
    assert json.loads((tmp_path / "status.json").read_text())["clock"] == "synchronised"
    assert "synchronised to network time" in caplog.text


def test_unsynchronised_clock_with_trust_policy_follows_the_clock(tmp_path):
    svc, clock, engines, _ = make_service(tmp_path, GALLERY.replace("fade_in_s = 30", "fade_in_s = 30\n"
                                                                      'unsynchronised_clock = "trust"'))
    clock.synchronised = ClockSync.UNSYNCHRONISED
    svc._start()
    assert engines[0].fades[-1][0] == 0.0 and svc.state == "quiet-hours"
    assert json.loads((tmp_path / "status.json").read_text())["clock"] == "unsynchronised"


class LedKnobs:
    """A knobs object that records what the status LED was told."""

    def __init__(self) -> None:
        self.led: list[str] = []

    def set_status(self, state: str) -> None:
        self.led.append(state)

    def close(self) -> None:
        pass


def test_under_voltage_flashes_the_led_and_logs_the_fix_once(tmp_path, monkeypatch, caplog):
    from murmur.device.appliance import health

    word = {"value": "0x0"}
    monkeypatch.setattr(health, "read_throttled", lambda **kwargs: word["value"])
    svc, clock, engines, _ = make_service(tmp_path, "[playback]\nbundle = \"a\"\n")
    knobs = LedKnobs()
    svc.knobs_factory = lambda config, store: knobs
    with caplog.at_level(logging.WARNING, logger="murmur"):
        svc._start()
        assert knobs.led[-1] == "playing"
        word["value"] = "0x50005"  # under-voltage and throttling now
        run_for(svc, clock, 3)
        word["value"] = "0x50000"  # the supply recovered; it has occurred since boot
        run_for(svc, clock, 3)
    assert knobs.led[-1] == "power_warning"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("official Raspberry Pi supply" in w for w in warnings) == 1
    assert sum("give the Pi air" in w for w in warnings) == 1
    assert json.loads((tmp_path / "status.json").read_text())["throttled"] == "0x50000"


def test_reboot_mid_window_plays_at_once_with_a_short_fade(tmp_path):
    svc, clock, engines, _ = make_service(tmp_path, GALLERY, start=datetime(2026, 11, 23, 14, 0))
    svc._start()
    assert engines[0].fades[:2] == [(0.0, 0.0), (1.0, 2.0)]
    assert svc.state == "playing"


def test_reboot_mid_fade_in_finishes_the_fade_on_time(tmp_path):
    svc, clock, engines, _ = make_service(tmp_path, GALLERY, start=datetime(2026, 11, 23, 10, 0, 20))
    svc._start()
    assert engines[0].fades[1] == (1.0, 10.0)


PLAYLIST = """
[playback]
playlist = ["a", "b", "c"]
rotate_minutes = 60
crossfade_s = 4
"""


def test_rotation_crossfades_and_persists_the_position_across_a_restart(tmp_path):
    svc, clock, engines, log = make_service(tmp_path, PLAYLIST)
    svc._start()
    assert log == [("start", "id-a")]
    run_for(svc, clock, 3590, step=10)
    assert len(log) == 1
    run_for(svc, clock, 10, step=10)
    assert log[-1] == ("swap", "id-b", 4.0)
    state = json.loads((tmp_path / "state" / "playlist.json").read_text())
    assert state["index"] == 1 and state["bundle_path"] == str(tmp_path / "b")
    # "Reboot" 30 min later: the new process resumes b, and rotates to c when b's hour is up.
    svc2, clock2, engines2, log2 = make_service(tmp_path, PLAYLIST, start=clock.now() + timedelta(minutes=30))
    svc2._start()
    assert log2 == [("start", "id-b")]
    run_for(svc2, clock2, 29 * 60, step=10)
    assert len(log2) == 1
    run_for(svc2, clock2, 70, step=10)
    assert log2[-1] == ("swap", "id-c", 4.0)


def test_rotation_skips_a_bad_bundle_and_says_why(tmp_path, caplog):
    svc, clock, engines, log = make_service(tmp_path, PLAYLIST, bad=("b",))
    svc._start()
    with caplog.at_level(logging.ERROR, logger="murmur.service"):
        run_for(svc, clock, 3600, step=10)
    assert log[-1] == ("swap", "id-c", 4.0)
    assert "checksum mismatch" in caplog.text and str(tmp_path / "b") in caplog.text


def test_saved_position_follows_an_edited_playlist(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "playlist.json").write_text(json.dumps({"index": 2, "since_unix": 5.0, "bundle_path": str(tmp_path / "b")}))
    bundles = (tmp_path / "c", tmp_path / "b")
    assert read_playlist_state(tmp_path / "state", bundles, 100.0).index == 1
    (tmp_path / "state" / "playlist.json").write_text("{garbage")
    assert read_playlist_state(tmp_path / "state", bundles, 100.0).index == 0


def test_knob_actions_step_through_the_playlist(tmp_path):
    svc, clock, engines, log = make_service(tmp_path, PLAYLIST.replace("rotate_minutes = 60", "rotate_minutes = 0"))
    svc._start()
    svc.store.trigger("next_bundle")
    run_for(svc, clock, 1)
    svc.store.trigger("previous_bundle")
    svc.store.trigger("previous_bundle")
    run_for(svc, clock, 1)
    assert [entry[1] for entry in log[1:]] == ["id-b", "id-a", "id-c"]
    assert svc.playlist.index == 2


def test_silence_detector_restarts_the_generator_and_logs_why(tmp_path, caplog):
    svc, clock, engines, log = make_service(tmp_path, '[playback]\nbundle = "a"\nsilence_restart_s = 30\n')
    svc._start()
    run_for(svc, clock, 10)
    engines[0].level_dbfs_10s = -math.inf
    with caplog.at_level(logging.WARNING, logger="murmur.service"):
        run_for(svc, clock, 29)
        assert len(engines) == 1
        run_for(svc, clock, 2)
    assert len(engines) == 2 and log[-2:] == [("stop", "id-a"), ("start", "id-a")]
    assert "digitally silent" in caplog.text and svc.counters.restarts == 1
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["restarts"] == 1 and "digitally silent" in status["last_problem"]


def test_silence_in_quiet_hours_is_not_a_fault(tmp_path):
    svc, clock, engines, _ = make_service(tmp_path, GALLERY.replace('bundle = "a"', 'bundle = "a"\nsilence_restart_s = 5'))
    svc._start()
    engines[0].level_dbfs_10s = -math.inf
    run_for(svc, clock, 600)
    assert len(engines) == 1


def test_stuck_output_restarts_the_generator(tmp_path):
    svc, clock, engines, _ = make_service(tmp_path, '[playback]\nbundle = "a"\nsilence_restart_s = 20\n')
    svc._start()
    run_for(svc, clock, 5)
    for _ in range(25):
        engines[0].identical_blocks += 86
        run_for(svc, clock, 1)
    assert len(engines) == 2


def test_detector_needs_the_condition_to_last():
    detector = SilenceDetector(10.0)
    assert detector.update(0, active=True, level_dbfs=-math.inf, identical_blocks=0) is None
    assert detector.update(9, active=True, level_dbfs=-math.inf, identical_blocks=0) is None
    assert detector.update(9.5, active=True, level_dbfs=-30.0, identical_blocks=0) is None  # sound came back
    assert detector.update(19, active=True, level_dbfs=-math.inf, identical_blocks=0) is None
    assert "silent" in detector.update(29, active=True, level_dbfs=-math.inf, identical_blocks=0)
    assert detector.update(40, active=False, level_dbfs=-math.inf, identical_blocks=0) is None
    assert SilenceDetector(0).update(100, active=True, level_dbfs=-math.inf, identical_blocks=0) is None


def test_logging_goes_to_the_journal_under_systemd(monkeypatch):
    journal = pytest.importorskip("systemd.journal")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
        setup_logging()
        assert isinstance(root.handlers[0], journal.JournalHandler)
        monkeypatch.delenv("JOURNAL_STREAM")
        monkeypatch.delenv("INVOCATION_ID", raising=False)
        setup_logging()
        assert type(root.handlers[0]) is logging.StreamHandler
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_reload_to_an_output_that_does_not_play_rolls_back(tmp_path, caplog):
    svc, clock, engines, log = make_service(tmp_path, '[playback]\nbundle = "a"\noutput_device = "usb"\n')
    svc._start()
    (tmp_path / "murmur.toml").write_text('[playback]\nbundle = "b"\noutput_device = "broken"\n')
    svc.request_reload()
    with caplog.at_level(logging.ERROR, logger="murmur.service"):
        run_for(svc, clock, 1)
    assert [e.output for e in engines] == ["usb", "broken", "usb"]
    assert svc.engine is engines[-1] and svc.bundle.bundle_id == "id-a"
    assert svc.config.playback.output_device == "usb" and svc.counters.rejected_reloads == 1
    assert "no audio reached the output" in caplog.text
    # A good change of output restarts on the new one.
    (tmp_path / "murmur.toml").write_text('[playback]\nbundle = "b"\noutput_device = "hifiberry"\n')
    svc.request_reload()
    run_for(svc, clock, 1)
    assert engines[-1].output == "hifiberry" and svc.bundle.bundle_id == "id-b" and svc.counters.reloads == 1


def test_notifier_reaches_an_abstract_socket_and_never_blocks():
    import os
    import socket

    name = f"murmur-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    try:
        notifier = Notifier("@" + name)
        assert notifier.notify("READY=1") and receiver.recv(100) == b"READY=1"
        sent = sum(notifier.notify("WATCHDOG=1") for _ in range(5000))  # nobody reads: the queue fills up
        assert sent < 5000 and notifier.failed == 5000 - sent  # refused at once, not blocked
    finally:
        receiver.close()
    assert not Notifier("").enabled and Notifier("").notify("READY=1") is False
