"""The shipped fakes and the real parts both satisfy the device's protocols (mypy checks the signatures in
`make lint`; this checks, at run time, that nothing lost a member), and a protocol notices a part that does."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from murmur.device import protocols
from murmur.device.appliance.clock import WallClock
from murmur.device.appliance.status import ClockSync
from murmur.device.dsp.vocoder import StreamingVocoder
from murmur.device.playback.sinks import NullSink, WavSink
from murmur.device.testing.fakes import FakeEngine, FakeStepModel, FakeVocoder, SimClock


class Bundle:
    bundle_id = "b"


def test_fakes_and_real_parts_satisfy_the_protocols(tmp_path):
    clock = SimClock(datetime(2026, 12, 1, 12, 0))
    assert isinstance(FakeStepModel(1025), protocols.StepModelLike)
    assert isinstance(FakeVocoder(n_fft=2048, hop_length=512), protocols.VocoderLike)
    assert isinstance(StreamingVocoder(n_fft=2048, hop_length=512), protocols.VocoderLike)
    assert isinstance(NullSink(), protocols.Sink) and isinstance(WavSink(Path(tmp_path / "x.wav")), protocols.Sink)
    assert isinstance(clock, protocols.Clock) and isinstance(WallClock(), protocols.Clock)
    assert isinstance(FakeEngine(Bundle(), clock), protocols.EngineLike)


def test_a_part_missing_a_member_is_not_taken_for_one():
    class HalfVocoder:
        def process(self, magnitude):
            return magnitude

    assert not isinstance(HalfVocoder(), protocols.VocoderLike)


def test_sim_clock_moves_only_when_told_and_reports_its_sync_state():
    import threading

    clock = SimClock(datetime(2026, 12, 1, 12, 0))
    assert clock.now() == datetime(2026, 12, 1, 12, 0) and clock.sync() == ClockSync.SYNCHRONISED
    assert clock.wait(threading.Event(), 90.0) is False
    assert clock.now() == datetime(2026, 12, 1, 12, 1, 30) and clock.monotonic() == 1090.0
    clock.synchronised = ClockSync.UNSYNCHRONISED
    assert clock.sync() == ClockSync.UNSYNCHRONISED


def test_notify_listener_receives_what_the_service_notifier_sends(tmp_path):
    from murmur.device.appliance.systemd import Notifier
    from murmur.device.testing.fakes import NotifyListener

    listener = NotifyListener(tmp_path / "notify.sock")
    notifier = Notifier(str(listener.path))
    try:
        for message in ("STATUS=starting", "READY=1", "WATCHDOG=1", "WATCHDOG=1"):
            assert notifier.notify(message)
        assert listener.wait_for(lambda m: m == "READY=1", 5) == "READY=1"
        listener.wait_for(lambda m: m == "WATCHDOG=1", 5)
        listener.wait_for(lambda m: m == "WATCHDOG=1", 5)
        assert len(listener.pings) == 2 and len(listener.gaps()) == 1 and listener.gaps()[0] >= 0
        import pytest

        with pytest.raises(AssertionError, match="no matching notify message"):
            listener.wait_for(lambda m: m == "READY=1", 0.2)  # consumed already: a second READY never came
    finally:
        notifier.close()
        listener.close()
