"""No sound card at start (a USB interface switched on with the amplifier, a HAT's driver late): the service waits
for one, says so (status, LED state, systemd STATUS) and plays as soon as it appears, without exiting into
systemd's restart limit. The booted system test (tests/system) does the same with a real card loaded late."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from murmur.device.appliance import service as service_module
from murmur.device.appliance.config import load_config
from murmur.device.appliance.service import Service
from murmur.device.appliance.systemd import Notifier
from murmur.device.errors import OutputDeviceError
from murmur.device.testing.fakes import FakeBundle, FakeEngine, SimClock

MONDAY_9 = datetime(2026, 11, 23, 9, 0)





class CardlessEngine(FakeEngine):
    """A FakeEngine whose start fails like PyAudioSink's with no card, until ``cards`` lists one."""

    def __init__(self, *args, cards: Path, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cards = cards

    def start(self) -> None:
        if "Loopback" not in self.cards.read_text():
            raise OutputDeviceError("no audio output device has 'Loopback' in its name; available outputs:\n  (none)")
        super().start()


@pytest.fixture
def no_card(tmp_path, monkeypatch) -> Path:
    """A machine with no sound card yet (its /proc/asound/cards stand-in, returned) and a config naming 'Loopback'."""
    cards = tmp_path / "cards"
    cards.write_text("--- no soundcards ---\n")
    monkeypatch.setattr(service_module, "SOUND_CARDS", cards)
    (tmp_path / "a").mkdir()
    (tmp_path / "murmur.toml").write_text('[playback]\nbundle = "a"\noutput_device = "Loopback"\n')
    return cards


def test_waits_for_a_late_card_and_plays_when_it_appears(tmp_path, monkeypatch, no_card):
    cards = no_card
    clock = SimClock(MONDAY_9)
    engines: list[CardlessEngine] = []
    sent: list[str] = []

    class Recorder(Notifier):
        def notify(self, message: str) -> bool:
            sent.append(message)
            return True

    def engine_factory(bundle, **kwargs):
        engines.append(CardlessEngine(bundle, clock, cards=cards))
        return engines[-1]

    svc = Service(load_config(tmp_path / "murmur.toml"), engine_factory=engine_factory, knobs_factory=None,
                  notifier=Recorder(""), clock=clock, status_file=tmp_path / "status.json",
                  bundle_loader=lambda path: FakeBundle(path, "id-a"), model_check=lambda bundle: None)
    tries_while_unchanged: list[int] = []
    real_cards = service_module._sound_cards

    def cards_then_plug_in() -> str:
        # called once per main-loop second while waiting: the card appears after 5 minutes
        if clock.offset >= 300 and "Loopback" not in cards.read_text():
            tries_while_unchanged.append(len(engines))
            cards.write_text(" 0 [Loopback       ]: Loopback - Loopback\n")
        return real_cards()

    monkeypatch.setattr(service_module, "_sound_cards", cards_then_plug_in)
    svc._start()
    assert svc.ready and svc.state == "playing" and svc.message is None
    # one try at start, then one every OUTPUT_RETRY_S (at 30, 60 … 270 s) while nothing changed, then one at once
    # when the card list changed (300 s)
    assert tries_while_unchanged == [1 + int(300 // service_module.OUTPUT_RETRY_S) - 1]
    assert len(engines) == tries_while_unchanged[0] + 1
    assert clock.offset < 300 + 2 * svc.tick_s  # played within a main-loop tick or two of the card appearing
    assert sent.count("READY=1") == 2  # when it settled into waiting, and when it played
    assert sum(m == "WATCHDOG=1" for m in sent) >= 299  # fed while waiting: systemd does not kill the wait
    status_lines = [m for m in sent if m.startswith("STATUS=")]
    assert any("waiting for the sound card" in m and "Loopback" in m for m in status_lines)
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "playing"


def test_waiting_status_says_what_is_missing_and_stop_ends_the_wait(tmp_path, monkeypatch, no_card):
    cards = no_card
    clock = SimClock(MONDAY_9)

    def engine_factory(bundle, **kwargs):
        return CardlessEngine(bundle, clock, cards=cards)

    svc = Service(load_config(tmp_path / "murmur.toml"), engine_factory=engine_factory, knobs_factory=None,
                  notifier=Notifier(""), clock=clock, status_file=tmp_path / "status.json",
                  bundle_loader=lambda path: FakeBundle(path, "id-a"), model_check=lambda bundle: None)
    seen: list[dict] = []
    real_cards = service_module._sound_cards

    def look_then_stop() -> str:
        seen.append(json.loads((tmp_path / "status.json").read_text()))
        if clock.offset >= 60:
            svc.request_stop()
        return real_cards()

    monkeypatch.setattr(service_module, "_sound_cards", look_then_stop)
    assert svc.run() == 0  # a stop while waiting is a clean stop, not a failure
    waiting = seen[1]
    assert waiting["state"] == "error" and not waiting["playing"]
    assert "waiting for the sound card" in waiting["message"] and "'Loopback'" in waiting["message"]
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "stopped"
