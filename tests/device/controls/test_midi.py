"""MIDI on the shipped fake port (device/testing/midi.py): CCs shaped like pots (range, curve), soft takeover,
pads firing actions, the channel filter, hot-plug (gone, found again, each logged once), a missing MIDI system,
the ``[midi]`` table; and that the real back-end and the fake both satisfy the seam."""

from __future__ import annotations

import logging

import pytest

from murmur.device.controls.midi import MidiPorts, MidiSettings, MidoPorts, parse_midi, start_midi
from murmur.device.controls.shaping import Pickup, curve_position
from murmur.device.controls.values import Controls
from murmur.device.errors import ConfigError
from murmur.device.testing.mcp3008 import RecordingStore
from murmur.device.testing.midi import FakeMidiPorts

PAD = "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"
TABLE = {
    "enabled": True, "device": "nanoKONTROL2",
    "wild": {"type": "cc", "number": 16, "control": "temperature", "range": [0.0, 1.0]},
    "jumps": {"type": "cc", "number": 17, "control": "jump", "range": [0.05, 4.0], "curve": "log"},
    "pedal": {"type": "cc", "number": 64, "control": "hold"},
    "again": {"type": "note", "number": 36, "press": "reseed"},
    "freeze": {"type": "note", "number": 37, "press": "hold"},
}


def midi(table=None, ports=None, *, pickup=True, store=None):
    table = dict(table or TABLE, pickup=pickup)
    store = store or RecordingStore(Controls(temperature=0.0))
    ports = ports or FakeMidiPorts("Midi Through:Midi Through Port-0 14:0", PAD)
    return start_midi(parse_midi(table, "m.toml"), store, ports=ports, watch=False), store, ports


def test_the_fake_and_the_real_back_end_satisfy_the_seam():
    assert isinstance(FakeMidiPorts(), MidiPorts)
    assert all(hasattr(MidoPorts, name) for name in ("input_names", "open_input", "still_connected"))


def test_ccs_are_shaped_like_pots_and_pads_fire():
    knobs, store, ports = midi(pickup=False)
    assert knobs.port_name == PAD  # the named controller, not ALSA's Midi Through
    ports.send(PAD, "control_change", 16, 127)
    ports.send(PAD, "control_change", 17, 0)
    ports.send(PAD, "control_change", 64, 100)
    ports.send(PAD, "note_on", 36, 90)
    ports.send(PAD, "note_off", 36, 0)
    ports.send(PAD, "control_change", 99, 5)  # not mapped
    controls = store.snapshot()
    assert controls.temperature == 1.0 and controls.jump == pytest.approx(0.05) and controls.hold is True
    assert store.triggered == ["reseed"] and knobs.unmapped == 1
    ports.send(PAD, "control_change", 17, 64)  # halfway on a log curve: the geometric middle
    assert store.snapshot().jump == pytest.approx(0.05 * (4.0 / 0.05) ** (64 / 127))
    ports.send(PAD, "note_on", 37, 100)  # a pad toggles hold
    assert store.snapshot().hold is False
    knobs.close()


def test_a_knob_picks_up_the_value_before_it_moves_it():
    knobs, store, ports = midi(store=RecordingStore(Controls(temperature=0.5)))
    ports.send(PAD, "control_change", 16, 0)  # the fader sits at the bottom; the sound is at 0.5
    ports.send(PAD, "control_change", 16, 30)
    assert store.snapshot().temperature == 0.5 and knobs.reports()["midi"]["not_picked_up"] == ["jumps", "wild"]
    ports.send(PAD, "control_change", 16, 70)  # passes 63.5: picked up
    assert store.snapshot().temperature == pytest.approx(70 / 127)
    ports.send(PAD, "control_change", 16, 80)
    assert store.snapshot().temperature == pytest.approx(80 / 127)
    store.update(temperature=0.1)  # OSC, another knob or the room moved it meanwhile
    ports.send(PAD, "control_change", 16, 82)
    assert store.snapshot().temperature == 0.1  # the fader must come down to 0.1 first
    ports.send(PAD, "control_change", 16, 13)
    assert store.snapshot().temperature == pytest.approx(13 / 127)
    knobs.close()


def test_the_channel_filter():
    knobs, store, ports = midi(dict(TABLE, channel=2), pickup=False)
    ports.send(PAD, "control_change", 16, 127, channel=1)
    assert store.snapshot().temperature == 0.0 and knobs.unmapped == 1
    ports.send(PAD, "control_change", 16, 127, channel=2)
    assert store.snapshot().temperature == 1.0
    knobs.close()


def test_unplugged_and_plugged_in_again_it_is_found_and_each_change_is_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="murmur.knobs")
    knobs, store, ports = midi(pickup=False)
    for cycle in range(3):
        ports.unplug(PAD)
        knobs.rescan()
        knobs.rescan()  # still gone: nothing more to say
        assert knobs.port_name is None and knobs.state == "waiting"
        assert not ports.send(PAD, "control_change", 16, 10) or store.snapshot().temperature != pytest.approx(10 / 127)
        ports.plug(PAD)
        knobs.rescan()
        knobs.rescan()
        assert knobs.port_name == PAD and knobs.connects == cycle + 2
        ports.send(PAD, "control_change", 16, 20 + cycle)
        assert store.snapshot().temperature == pytest.approx((20 + cycle) / 127)
    gone = [r for r in caplog.records if "is gone" in r.getMessage()]
    found = [r for r in caplog.records if "found again" in r.getMessage()]
    assert len(gone) == 3 and len(found) == 3 and knobs.disconnects == 3
    assert [p.closed for p in ports.open_ports] == [True, True, True, False]  # each lost port closed
    knobs.close()
    assert ports.open_ports[-1].closed


def test_a_replug_between_two_looks_is_opened_again(caplog):
    """Unplugged and plugged in again faster than rescan_s: the name is listed at every look, but the old port's
    connection died with the device (ALSA: the subscription goes with the deleted port); the watcher opens it
    again, logged once, and CCs after it arrive (found on a USB gadget in the booted guest)."""
    caplog.set_level(logging.INFO, logger="murmur.knobs")
    knobs, store, ports = midi(pickup=False)
    first = ports.open_ports[-1]
    ports.replug(PAD)
    ports.send(PAD, "control_change", 16, 127)
    assert store.snapshot().temperature == 0.0  # lost: the old port hears nothing more
    knobs.rescan()
    assert first.closed and len(ports.open_ports) == 2 and knobs.disconnects == 1 and knobs.connects == 2
    assert ports.send(PAD, "control_change", 16, 127) and store.snapshot().temperature == 1.0
    knobs.rescan()  # a look with nothing changed: no reopen, nothing logged
    assert len(ports.open_ports) == 2
    assert len([r for r in caplog.records if "found again" in r.getMessage()]) == 1
    knobs.close()


SEQ_TABLE = """Client info
  cur  clients : 5

Client   0 : "System" [Kernel Legacy]
  Port   0 : "Timer" (Rwe-)
Client  24 : "Murmur Test Knobs" [Kernel Legacy]
  Port   0 : "Murmur Test Knobs MIDI 1" (RWeX)
{sub}  Port   1 : "Murmur Test Knobs MIDI 2" (RWeX)
    Connecting To: 130:0
Client 128 : "RtMidiIn Client" [User Legacy]
  Port   0 : "RtMidi input" (-We-)
"""


def test_the_sequencer_table_tells_a_port_that_lost_its_subscriber(tmp_path):
    from murmur.device.controls.midi import seq_port_has_subscribers

    table = tmp_path / "clients"
    name = "Murmur Test Knobs:Murmur Test Knobs MIDI 1 24:0"
    table.write_text(SEQ_TABLE.format(sub="    Connecting To: 128:0\n"))
    assert seq_port_has_subscribers(name, table)
    table.write_text(SEQ_TABLE.format(sub=""))  # replugged: the same address, nobody subscribed
    assert not seq_port_has_subscribers(name, table)
    assert seq_port_has_subscribers("Murmur Test Knobs:Murmur Test Knobs MIDI 2 24:1", table)
    # cannot tell: the list of names decides
    assert seq_port_has_subscribers("a port without an address", table)
    assert seq_port_has_subscribers("Gone:Gone 40:0", table)
    assert seq_port_has_subscribers(name, tmp_path / "missing")


def test_a_named_controller_is_found_even_when_its_name_says_murmur():
    """A named controller is matched by its name alone (the booted guest's gadget is "Murmur Test Knobs");
    with no name, ALSA's Midi Through is still never taken."""
    name = "Murmur Test Knobs:Murmur Test Knobs MIDI 1 24:0"
    knobs, _store, _ports = midi(dict(TABLE, device="Test Knobs"),
                                 FakeMidiPorts("Midi Through:Midi Through Port-0 14:0", "f_midi:f_midi 20:0", name))
    assert knobs.port_name == name
    knobs.close()
    knobs, _store, _ports = midi(dict(TABLE, device=""), FakeMidiPorts("Midi Through:Midi Through Port-0 14:0", PAD))
    assert knobs.port_name == PAD
    knobs.close()


def test_a_port_leaving_while_the_list_is_read_is_not_a_missing_sequencer():
    """rtmidi fails the whole port list when a port leaves between its count and its name (an unplug at that
    moment, seen in the booted guest): the list is read again, and only a list that keeps failing is an error."""
    class Backend:
        def __init__(self, failures):
            self.failures, self.calls = failures, 0

        def get_input_names(self):
            self.calls += 1
            if self.calls <= self.failures:
                raise SystemError("MidiInAlsa::getPortName: error looking for port name!")
            return [PAD]

    ports = MidoPorts.__new__(MidoPorts)
    ports._backend = Backend(failures=2)
    assert ports.input_names() == [PAD] and ports._backend.calls == 3
    ports._backend = Backend(failures=3)
    with pytest.raises(OSError, match="ALSA sequencer cannot be opened"):
        ports.input_names()


def test_a_controller_lost_with_the_midi_system_is_counted_and_found_again(caplog):
    caplog.set_level(logging.INFO, logger="murmur.knobs")
    knobs, _store, ports = midi()
    ports.broken = "the ALSA sequencer cannot be opened (gone)"
    knobs.rescan()
    assert knobs.port_name is None and knobs.disconnects == 1
    ports.broken = None
    knobs.rescan()
    assert knobs.port_name == PAD and any("found again" in r.getMessage() for r in caplog.records)
    knobs.close()


def test_the_watcher_thread_finds_a_controller_plugged_in_later():
    ports = FakeMidiPorts()
    store = RecordingStore()
    knobs = start_midi(parse_midi(dict(TABLE, rescan_s=0.2), "m.toml"), store, ports=ports)
    try:
        assert knobs.state == "waiting" and knobs.reports()["midi"]["port"] is None
        ports.plug(PAD)
        assert knobs.wait_until(lambda: knobs.port_name == PAD, 5.0)
    finally:
        knobs.close()


def test_no_midi_system_is_waited_for_and_said_once(caplog):
    ports = FakeMidiPorts(PAD)
    ports.broken = "the ALSA sequencer cannot be opened (no /dev/snd/seq)"
    knobs, _store, _ = midi(ports=ports)
    knobs.rescan()
    assert knobs.state == "waiting" and "ALSA sequencer" in knobs.values()["problems"][0]
    assert len([r for r in caplog.records if "ALSA sequencer" in r.getMessage()]) == 1
    ports.broken = None
    knobs.rescan()
    assert knobs.port_name == PAD and knobs.values()["problems"] == []
    knobs.close()


def test_pickup_and_curve_position_are_pure():
    pickup = Pickup()
    assert not pickup.update(0.0, 0.5) and not pickup.update(0.3, 0.5)
    assert pickup.update(0.6, 0.5)  # passed through
    assert Pickup().update(0.49, 0.5)  # within the tolerance
    assert curve_position(2.0, "linear", 0.0, 4.0) == 0.5
    assert curve_position(1.0, "log", 0.25, 4.0) == pytest.approx(0.5)
    assert curve_position(9.0, "linear", 0.0, 4.0) == 1.0


def test_the_midi_table_is_read_through_the_schema():
    settings = parse_midi(TABLE, "m.toml")
    assert settings.enabled and settings.device == "nanoKONTROL2" and len(settings.ccs) == 3 and len(settings.notes) == 2
    assert parse_midi({}, "m") == MidiSettings()
    with pytest.raises(ConfigError, match=r"\[midi.a\] number = 128: expected 0–127"):
        parse_midi({"a": {"type": "cc", "number": 128, "control": "jump"}}, "m.toml")
    with pytest.raises(ConfigError, match=r"\[midi.a\] range = \[0.0, 9.0\]: .*within 0..4"):
        parse_midi({"a": {"type": "cc", "number": 1, "control": "jump", "range": [0.0, 9.0]}}, "m.toml")
    with pytest.raises(ConfigError, match=r"both take cc 1"):
        parse_midi({"a": {"type": "cc", "number": 1, "control": "jump"},
                    "b": {"type": "cc", "number": 1, "control": "spread"}}, "m.toml")
    with pytest.raises(ConfigError, match=r"\[midi.p\] range .*hold is on/off"):
        parse_midi({"p": {"type": "cc", "number": 64, "control": "hold", "range": [0, 1]}}, "m.toml")
    with pytest.raises(ConfigError, match=r'\[midi.x\] type = "knob": expected one of "cc", "note"'):
        parse_midi({"x": {"type": "knob"}}, "m.toml")


def test_make_status_shows_the_controller_or_what_it_waits_for():
    from murmur.device.appliance.health import describe_midi

    knobs, _store, ports = midi()
    ports.send(PAD, "control_change", 16, 127)  # the sound's temperature is 0: the fader at the top waits
    line = describe_midi(knobs.reports()["midi"])
    assert line.startswith(f"connected to {PAD!r}; 1 messages, 0 applied, 1 before pickup; knobs to pick up: jumps, wild")
    ports.unplug(PAD)
    knobs.rescan()
    assert describe_midi(knobs.reports()["midi"]).startswith("WAITING for nanoKONTROL2; ")
    assert "1 unplugged" in describe_midi(knobs.reports()["midi"])
    knobs.close()


def test_learn_maps_the_next_knob_or_pad_and_writes_a_valid_config(tmp_path):
    from murmur.device.appliance.config import load_config
    from murmur.device.controls.keyboard import KeyboardKnobs
    from murmur.device.controls.midi import table_text, write_learned

    config = tmp_path / "murmur.toml"
    (tmp_path / "b").mkdir()
    config.write_text('[playback]\nbundle = "b"\n\n[midi]\nenabled = true\n\n[midi.old]\ntype = "cc"\nnumber = 21\n'
                      'control = "spread"\n')
    knobs, store, ports = midi({"enabled": True}, pickup=False)
    learned = []

    def arm(target: str) -> str:
        def done(spec, event):
            learned.append(spec)
            if spec is not None:
                write_learned(config, spec)
        knobs.learn(target, done)
        return f"learning {target}"

    import io

    keys = KeyboardKnobs(store, io.StringIO(""), io.StringIO(), learn=arm)
    keys.handle_key("l")
    keys.handle_key("q")  # temperature
    ports.send(PAD, "control_change", 21, 127)  # CC 21 was spread's: the new mapping wins
    keys.handle_key("l")
    keys.handle_key("r")  # reseed
    ports.send(PAD, "note_on", 40, 100)
    keys.handle_key("l")
    keys.handle_key("f")  # fidelity, but a pad is hit: cannot drive it
    ports.send(PAD, "note_on", 41, 100)
    keys.close()
    assert [None if s is None else s.name for s in learned] == ["temperature", "reseed", None]
    ports.send(PAD, "control_change", 21, 127)  # live at once
    ports.send(PAD, "note_on", 40, 90)
    assert store.snapshot().temperature == 2.0 and store.triggered == ["reseed"]
    midi_config = load_config(config).midi
    assert [(c.name, c.number, c.control) for c in midi_config.ccs] == [("temperature", 21, "temperature")]
    assert [(n.name, n.number, n.press) for n in midi_config.notes] == [("reseed", 40, "reseed")]
    assert table_text(midi_config.notes[0]) in config.read_text()
    knobs.close()


def test_play_midi_learn_starts_without_a_midi_system_and_arms_learning(tmp_path, capsys):
    """`play --midi-learn FILE` on a machine without /dev/snd/seq (this one): it waits for MIDI, says so, and the
    keyboard's hook still arms learning; a FILE that does not exist yet is fine."""
    from murmur.device.cli.engine import _midi_learn
    from murmur.device.controls.values import ControlStore

    midi_knobs, learn = _midi_learn(str(tmp_path / "new.toml"), ControlStore())
    try:
        assert learn("temperature") == "MIDI learn: now turn a knob or hit a pad for temperature"
        assert "learnt mappings go to" in capsys.readouterr().err
    finally:
        midi_knobs.close()


def test_a_drummed_pad_steps_the_playlist_once_per_gap():
    table = {"enabled": True, "next": {"type": "note", "number": 48, "press": "next_bundle"}}
    knobs, store, ports = midi(table)
    for _ in range(6):
        ports.send(PAD, "note_on", 48, 100)
    assert store.take_service_events() == ("next_bundle",) and knobs.actions_dropped == 5
    knobs.close()


def test_cancelled_learning_maps_nothing_and_the_knob_keeps_its_old_job():
    knobs, store, ports = midi({"enabled": True, "temperature": {"type": "cc", "number": 21, "control": "temperature"}},
                               pickup=False)
    learned = []
    knobs.learn("spread", lambda spec, event: learned.append(spec))
    knobs.cancel_learn()
    ports.send(PAD, "control_change", 21, 127)
    assert learned == [] and store.snapshot().temperature == 2.0
    knobs.close()
