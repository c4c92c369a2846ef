"""The studio's MIDI learn, server side: the server in this process with the shipped fake MIDI system
(``murmur.device.testing.midi.FakeMidiPorts``, the same seam as mido/python-rtmidi), driven over HTTP as the page
does, and the live engine in its real child process.

Learn -> the mapping is written into the project's murmur.toml (read back by the Pi's own config reader); a CC after
learning moves the control, with the Pi's soft takeover, and the live sound; no controller, a controller plugged
in and out, a pad where a knob is needed, a broken config: each is said, and nothing stops.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("requests")

from murmur.device.appliance.config import load_config
from murmur.device.config_schema import read_file
from murmur.device.controls.midi import CcSpec, NoteSpec, parse_midi
from murmur.device.testing.midi import FakeMidiPorts
from tests.studio.in_process import InProcessStudio

NANO = "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"  # an ALSA port name as mido lists it


@pytest.fixture
def ports():
    return FakeMidiPorts()


@pytest.fixture
def studio(tmp_path, ports):
    server = InProcessStudio(tmp_path / "project", ports)
    yield server
    server.stop()


def plugged(studio: InProcessStudio) -> dict:
    studio.ports.plug(NANO)
    return studio.midi(lambda s: s["connected"], what="the controller is found")


def learn(studio: InProcessStudio, target: str | None):
    return studio.send("POST", "/api/midi/learn", json={"target": target})


def test_no_controller_is_said_plainly_and_learning_asks_for_one(studio):
    state = studio.get("/api/midi").json()
    assert state["connected"] is False and state["port"] is None and state["mappings"] == []
    refused = learn(studio, "fidelity")
    assert refused.status_code == 400
    assert "no MIDI controller is plugged in" in refused.json()["error"] and "USB" in refused.json()["error"]
    assert not (studio.studio.project.root / "murmur.toml").exists()
    assert studio.get("/api/state").status_code == 200  # the rest of the studio goes on


def test_a_controller_plugged_in_and_out_is_followed(studio):
    state = plugged(studio)
    assert state["port"] == "nanoKONTROL2" and state["port_name"] == NANO
    studio.ports.unplug(NANO)
    studio.midi(lambda s: not s["connected"] and s["port"] is None, what="the unplug is seen")
    studio.ports.plug(NANO)
    studio.midi(lambda s: s["connected"], what="the controller is found again")
    assert studio.ports.opens == 2


def test_a_learnt_knob_is_written_for_the_pi_and_read_back_by_its_config_reader(studio, tiny_bundle):
    plugged(studio)
    assert learn(studio, "fidelity").json()["learning"] == "fidelity"
    assert studio.ports.send(NANO, "control_change", 21, 64)
    state = studio.midi(lambda s: s["last"] is not None, what="the knob is learnt")
    assert state["last"]["error"] is None and state["learning"] is None
    assert state["last"]["mapping"]["words"] == "fidelity ← CC 21 on nanoKONTROL2"
    assert [m["words"] for m in state["mappings"]] == ["fidelity ← CC 21 on nanoKONTROL2"]
    config = studio.studio.project.root / "murmur.toml"
    assert state["config"] == str(config) and state["config_exists"]
    midi = parse_midi(read_file(config)["midi"], str(config))
    assert midi.enabled and midi.ccs == (CcSpec(name="fidelity", number=21, control="fidelity", low=0.0, high=1.0),)
    # the file is a whole Pi config: the service's own reader takes it (its bundle pointed at a real one here)
    text = config.read_text(encoding="utf-8")
    assert 'bundle = "/opt/murmur/current/bundle"' in text and "config = " in text  # and it says how to deploy it
    pi = config.with_name("pi.toml")
    pi.write_text(text.replace('"/opt/murmur/current/bundle"', json.dumps(str(tiny_bundle))), encoding="utf-8")
    assert load_config(pi).midi.ccs == midi.ccs

    # a pad for the new-path button, then a second knob learnt for fidelity replaces the first
    learn(studio, "reseed")
    studio.ports.send(NANO, "note_on", 36, 100)
    studio.midi(lambda s: s["last"] and s["last"]["target"] == "reseed", what="the pad is learnt")
    learn(studio, "fidelity")
    studio.ports.send(NANO, "control_change", 22, 10)
    state = studio.midi(lambda s: s["last"] and s["last"]["mapping"]["number"] == 22, what="the second knob")
    assert [m["words"] for m in state["mappings"]] == ["fidelity ← CC 22 on nanoKONTROL2",
                                                       "reseed ← note 36 on nanoKONTROL2"]
    midi = parse_midi(read_file(config)["midi"], str(config))
    assert [s.number for s in midi.ccs] == [22] and midi.notes == (NoteSpec(name="reseed", number=36, press="reseed"),)

    # a new studio on the same project starts with what was learnt
    again = InProcessStudio(studio.studio.project.root, FakeMidiPorts())
    try:
        assert [m["words"] for m in again.get("/api/midi").json()["mappings"]] == ["fidelity ← CC 22", "reseed ← note 36"]
    finally:
        again.stop()


def test_a_cc_after_learning_moves_the_control_with_the_pis_soft_takeover(studio):
    plugged(studio)
    learn(studio, "fidelity")
    studio.ports.send(NANO, "control_change", 21, 0)  # the touch that learns it is not a turn
    studio.midi(lambda s: s["last"] is not None, what="the knob is learnt")
    assert "fidelity" not in studio.moved
    # fidelity is 0.3 (the page's default): the knob at 0 is far from it and does nothing until it gets there
    studio.ports.send(NANO, "control_change", 21, 5)
    studio.ports.send(NANO, "control_change", 21, 127)  # passes 0.3 on the way: taken over
    studio.midi(lambda s: studio.moved.get("fidelity") == 1.0, what="the knob moves fidelity")
    studio.ports.send(NANO, "control_change", 21, 64)
    studio.midi(lambda s: studio.moved.get("fidelity") == pytest.approx(64 / 127), what="it follows the knob")
    # the artist moves the on-screen knob: the MIDI knob must pick it up again before it moves it
    assert studio.send("POST", "/api/midi/controls", json={"set": {"fidelity": 0.9}}).json() == {"ok": True}
    mirror, knobs = studio.studio.midi.store, studio.studio.midi.knobs
    studio.ports.send(NANO, "control_change", 21, 60)  # below 0.9 (the fake delivers before it returns): nothing
    assert mirror.snapshot().fidelity == 0.9 and knobs.reports()["midi"]["not_picked_up"] == ["fidelity"]
    studio.ports.send(NANO, "control_change", 21, 120)  # passes 0.9 (114 of 127): taken
    studio.midi(lambda s: studio.moved.get("fidelity") == pytest.approx(120 / 127), what="picked up at 0.9")
    assert mirror.snapshot().fidelity == pytest.approx(120 / 127)


def test_a_pad_where_a_knob_is_needed_is_said_and_nothing_is_written(studio):
    plugged(studio)
    learn(studio, "temperature")
    studio.ports.send(NANO, "note_on", 40, 90)
    state = studio.midi(lambda s: s["last"] is not None, what="the refusal")
    assert state["last"]["mapping"] is None
    assert "note" in state["last"]["error"] and "temperature" in state["last"]["error"] and "knob" in state["last"]["error"]
    assert state["mappings"] == [] and not (studio.studio.project.root / "murmur.toml").exists()


def test_learning_can_be_stopped_before_anything_is_touched(studio):
    plugged(studio)
    learn(studio, "jump")
    assert learn(studio, None).json()["learning"] is None
    studio.ports.send(NANO, "control_change", 30, 90)
    studio.midi(lambda s: studio.studio.midi.knobs.messages >= 1, what="the CC arrives")
    assert studio.get("/api/midi").json()["mappings"] == []
    assert not (studio.studio.project.root / "murmur.toml").exists()
    assert learn(studio, "volume").status_code == 400 and "fidelity" in learn(studio, "volume").json()["error"]


def test_a_broken_config_is_named_with_its_value_and_its_fix(tmp_path, ports):
    project = tmp_path / "project"
    project.mkdir()
    config = project / "murmur.toml"
    config.write_text('[playback]\nbundle = "/opt/murmur/current/bundle"\n\n[midi]\nenabled = true\n\n'
                      '[midi.wild]\ntype = "cc"\nnumber = 300\ncontrol = "temperature"\n', encoding="utf-8")
    before = config.read_bytes()
    server = InProcessStudio(project, ports)
    try:
        problem = server.get("/api/midi").json()["config_problem"]
        assert str(config) in problem and "300" in problem and "0–127" in problem
        ports.plug(NANO)
        server.midi(lambda s: s["connected"], what="the controller is still found")
        refused = learn(server, "fidelity")
        assert refused.status_code == 400 and str(config) in refused.json()["error"]
        assert config.read_bytes() == before
    finally:
        server.stop()


def test_a_learnt_knob_steers_the_live_sound(tmp_path, ports, tiny_bundle):
    """The sound itself: gain_db learnt, then the knob turned down to its end -> the live engine's blocks fall
    more than 40 dB, within a second of the CC (the figure is printed)."""
    import aiohttp

    run = tmp_path / "project" / "runs" / "run-20261207-000000"
    shutil.copytree(tiny_bundle, run / "bundle")
    (run / "run.json").write_text(json.dumps({"id": run.name}))
    server = InProcessStudio(tmp_path / "project", ports)
    try:
        plugged(server)
        learn(server, "gain_db")
        ports.send(NANO, "control_change", 7, 106)
        server.midi(lambda s: s["last"] is not None, what="gain_db is learnt")

        async def listen() -> tuple[float, float, float]:
            url = f"ws://127.0.0.1:{server.port}/api/live?run={run.name}&token={server.token}"
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                assert "hello" in await ws.receive_json(timeout=60)
                levels: list[float] = []
                while len(levels) < 40:
                    msg = await ws.receive(timeout=30)
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        pcm = np.frombuffer(msg.data[4:], dtype="<i2").astype(np.float64) / 32768
                        levels.append(float(np.sqrt(np.mean(pcm ** 2))))
                before = float(np.sqrt(np.mean(np.square(levels[-30:]))))
                ports.send(NANO, "control_change", 7, 106)  # at 0 dB (106/127 of -60 … 12): picked up
                ports.send(NANO, "control_change", 7, 0)  # -60 dB
                sent = time.monotonic()
                deadline = sent + 10
                while time.monotonic() < deadline:
                    msg = await ws.receive(timeout=30)
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        continue
                    pcm = np.frombuffer(msg.data[4:], dtype="<i2").astype(np.float64) / 32768
                    level = float(np.sqrt(np.mean(pcm ** 2)))
                    if level < before * 10 ** (-40 / 20):
                        return before, level, time.monotonic() - sent
                raise AssertionError(f"the sound did not follow the MIDI knob within 10 s (level {before:.4f})")

        before, after, seconds = asyncio.run(listen())
        print(f"MIDI CC -> a block 40 dB quieter reached the page after {1000 * seconds:.0f} ms "
              f"({20 * math.log10(max(after, 1e-9) / before):.1f} dB)")
        assert before > 1e-3 and seconds < 1.0
        assert server.studio.midi.store.snapshot().gain_db == -60.0
    finally:
        server.stop()


@pytest.mark.parametrize("query", ["after=abc", "after=1&wait=soon", "after=1.5", "after=1&wait=nan"])
def test_a_long_poll_with_a_version_that_is_not_a_number_is_refused(studio, query):
    refused = studio.get(f"/api/midi?{query}")
    assert refused.status_code == 400 and "numbers" in refused.json()["error"]


def test_a_mapping_that_cannot_be_written_is_said_with_the_file_and_the_fix(studio, tmp_path):
    config = studio.studio.project.root / "murmur.toml"
    config.symlink_to(tmp_path / "no-such-folder" / "murmur.toml")  # the file cannot be made there
    plugged(studio)
    learn(studio, "jump")
    studio.ports.send(NANO, "control_change", 23, 90)
    state = studio.midi(lambda s: s["last"] is not None, what="the outcome")
    error = state["last"]["error"]
    assert error.startswith("jump ← CC 23 on nanoKONTROL2 works now, but was not written into " + str(config))
    assert "No such file" in error and "writable" in error
    # it works for this session all the same, as said
    assert [m["words"] for m in state["mappings"]] == ["jump ← CC 23 on nanoKONTROL2"]


def test_a_config_that_cannot_be_read_stops_learning_with_its_name(tmp_path, ports):
    project = tmp_path / "project"
    (project / "murmur.toml").mkdir(parents=True)  # a folder where the file should be
    server = InProcessStudio(project, ports)
    try:
        problem = server.get("/api/midi").json()["config_problem"]
        assert str(project / "murmur.toml") in problem and "moved away" in problem
        ports.plug(NANO)
        server.midi(lambda s: s["connected"], what="the controller is found")
        assert learn(server, "fidelity").json()["error"] == problem
    finally:
        server.stop()


def test_the_page_is_told_which_pis_a_deploy_gives_the_mappings_to(tmp_path, ports):
    project = tmp_path / "project"
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f'[hosts.hall-1]\naddress = "a.local"\nconfig = "{project / "murmur.toml"}"\n'
                         '[hosts.foyer]\naddress = "b.local"\n', encoding="utf-8")
    server = InProcessStudio(project, ports, inventory=str(inventory))
    try:
        assert server.get("/api/state").json()["midi_hosts"] == ["hall-1"]
    finally:
        server.stop()


def test_a_pending_long_poll_answers_at_once_when_the_studio_stops(tmp_path):
    """The page keeps a 25-s long poll open on /api/midi; the studio's shutdown wakes it (and any later one returns at
    once), so the server exits promptly instead of waiting up to 25 s for the poll."""
    from murmur.studio.midi import StudioMidi
    from murmur.studio.server import Options, Studio, build_app

    midi = StudioMidi(tmp_path / "murmur.toml", ports=FakeMidiPorts(), watch=False)

    async def scenario() -> float:
        poll = asyncio.create_task(midi.wait(midi.version, 25.0))
        await asyncio.sleep(0)  # let the poll start waiting (one loop turn, no time)
        assert not poll.done()
        started = time.monotonic()
        midi.wake()
        await asyncio.wait_for(poll, 5.0)
        await asyncio.wait_for(midi.wait(midi.version, 25.0), 1.0)  # a poll after the wake-up returns at once
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.0
    studio = Studio(Options(project=tmp_path / "project", port=0, midi_ports=FakeMidiPorts()))
    app = build_app(studio)
    assert not studio.midi._closing
    app.freeze()
    asyncio.run(app.shutdown())  # what the server's runner does first when it stops
    assert studio.midi._closing
