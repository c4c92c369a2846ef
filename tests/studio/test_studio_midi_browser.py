"""MIDI learn in the studio's page, in a real browser (Debian's chromium through chromium-driver, as
tests/studio/test_studio_browser.py; nothing downloads one), with the server in this process holding the shipped
fake MIDI system (``murmur.device.testing.midi.FakeMidiPorts``): no controller is said plainly; one plugged in gets
Learn buttons; Learn, a CC from the fake port, and the page shows the mapping in words and the file has it; the
learnt knob then moves the on-screen knob and the live sound; unplugged, the page says so again.
Screenshots go to out/test-artifacts/studio/ (not committed).
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

pytest.importorskip("aiohttp")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

from murmur.device.config_schema import read_file  # noqa: E402
from murmur.device.controls.midi import CcSpec, parse_midi  # noqa: E402
from murmur.device.testing.midi import FakeMidiPorts  # noqa: E402
from tests.studio.in_process import InProcessStudio  # noqa: E402
from tests.studio.test_studio_browser import (  # noqa: E402, F401  (browser, microphone_wav: the same fixtures)
    CHROMIUM,
    DRIVER,
    LAPTOP,
    SHOTS,
    accessible,
    browser,
    fits,
    microphone_wav,
    number,
    text,
    wait,
)

NANO = "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt)"),
]


@pytest.fixture
def studio(tmp_path, tiny_bundle):
    run = tmp_path / "project" / "runs" / "run-20261207-000000"
    shutil.copytree(tiny_bundle, run / "bundle")
    (run / "run.json").write_text(json.dumps({  # what a training writes (studio/training.py record), briefly
        "id": run.name, "created_unix": 1796662800.0, "minutes": 1, "run_seconds": 20.0, "advanced": "",
        "selection": [{"recording": "take_1", "start_s": 0.0, "end_s": 5.0}], "material_seconds": 5.0,
        "train_seconds": 15.0, "epochs": 4, "stop_reason": "", "val_lsd_db": None, "baseline_lsd_db": None,
        "bundle_id": "tiny", "bundle_bytes": 100_000, "summary": [], "preview": None, "picture": None, "figures": [],
        "learned": None}))
    server = InProcessStudio(tmp_path / "project", FakeMidiPorts())
    yield server
    server.stop()


def shown(d, css: str) -> bool:
    return bool(d.find_elements(By.CSS_SELECTOR, css)) and d.find_element(By.CSS_SELECTOR, css).is_displayed()


def test_learn_a_knob_on_the_page_and_turn_it_on_the_controller(studio, browser):  # noqa: F811 (the fixture)
    d = browser
    d.set_window_size(*LAPTOP)
    d.get(studio.url)
    wait(d, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", what="page never ready")
    ports = studio.ports

    # no controller: said plainly, with how to plug one; no Learn button to press in vain
    wait(d, lambda d: "No MIDI controller" in text(d, "#midi-status"), what="no word about the missing controller")
    assert "Plug a USB MIDI controller" in text(d, "#midi-status")
    assert not shown(d, "#learn-fidelity")

    # plugged in: found (the fake's port, as the back-end's hot-plug watcher sees it), Learn beside each knob
    ports.plug(NANO)
    wait(d, lambda d: d.find_element(By.ID, "midi").get_attribute("data-connected") == "1", timeout=10,
         what="the plugged controller never showed")
    assert "MIDI controller: nanoKONTROL2" in text(d, "#midi-status")
    assert shown(d, "#learn-fidelity") and shown(d, "#learn-reseed")
    fits(d, LAPTOP)

    # listen, so that the sound can be heard following the controller
    d.find_element(By.ID, "live-start").click()
    wait(d, lambda d: d.find_element(By.ID, "live-status").get_attribute("data-playing") == "1", what="no live audio")
    wait(d, lambda d: d.execute_script("return window.studioLive.received") > 20, what="no stream")

    # Learn on the faithfulness knob, then a knob on the controller
    d.find_element(By.ID, "learn-fidelity").click()
    wait(d, lambda d: d.find_element(By.ID, "midi").get_attribute("data-learning") == "fidelity", timeout=10,
         what="Learn was not armed")
    assert "Learning faithfulness: now turn a knob" in text(d, "#midi-learn")
    assert d.find_element(By.ID, "learn-fidelity").get_attribute("aria-pressed") == "true"
    assert ports.send(NANO, "control_change", 21, 0)
    wait(d, lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#midi-mappings li")]
         == ["faithfulness ← CC 21 on nanoKONTROL2"], timeout=10, what="the mapping was not shown")
    assert text(d, "#midi-learn") == "Mapped: faithfulness ← CC 21 on nanoKONTROL2."
    assert text(d, "#midi-map-fidelity") == "MIDI: CC 21"
    config = studio.studio.project.root / "murmur.toml"
    assert str(config) in text(d, "#midi-file") and 'config = "' in text(d, "#midi-file")
    assert parse_midi(read_file(config)["midi"], str(config)).ccs == (CcSpec("fidelity", 21, "fidelity"),)
    d.execute_script("document.querySelector('#listen').scrollIntoView()")
    d.save_screenshot(str(SHOTS / "m1-midi-learnt.png"))

    # the controller's knob now moves the one on the screen (from where the page had it: soft takeover)
    sent = time.time() * 1000
    ports.send(NANO, "control_change", 21, 5)
    ports.send(NANO, "control_change", 21, 127)
    wait(d, lambda d: d.execute_script("return document.querySelector('#knob-fidelity').value") == "1", timeout=10,
         what="the MIDI knob did not move the on-screen knob")
    assert text(d, "#value-fidelity") == "100 %"
    move = d.execute_script("return window.studioMidiMoves.find((m) => m.name === 'fidelity' && m.value === 1)")
    print(f"MIDI CC -> the on-screen knob moved after {move['t'] - sent:.0f} ms")

    # ... and the live sound: the volume learnt and turned to its end, the streamed level falls by more than 30 dB
    loud = number(d, "#live-level")
    assert loud is not None and loud > -60
    d.find_element(By.ID, "learn-gain_db").click()
    wait(d, lambda d: d.find_element(By.ID, "midi").get_attribute("data-learning") == "gain_db", timeout=10)
    ports.send(NANO, "control_change", 7, 106)
    wait(d, lambda d: "Mapped: volume ← CC 7" in text(d, "#midi-learn"), timeout=10, what="volume not learnt")
    ports.send(NANO, "control_change", 7, 106)  # where the volume is (0 dB of -60 … +12): picked up
    ports.send(NANO, "control_change", 7, 0)
    wait(d, lambda d: d.execute_script("return document.querySelector('#knob-gain_db').value") == "-60", timeout=10,
         what="the volume knob on the page did not follow")
    wait(d, lambda d: (number(d, "#live-level") or 0) < loud - 30, timeout=20, what="the sound did not follow the knob")
    accessible(d, "MIDI learnt")

    # unplugged: said again, nothing breaks, the sound goes on
    ports.unplug(NANO)
    wait(d, lambda d: d.find_element(By.ID, "midi").get_attribute("data-connected") == "", timeout=10,
         what="the unplug was not shown")
    assert "No MIDI controller" in text(d, "#midi-status") and not shown(d, "#learn-fidelity")
    received = d.execute_script("return window.studioLive.received")
    wait(d, lambda d: d.execute_script("return window.studioLive.received") > received + 20, what="the stream stopped")
    d.find_element(By.ID, "live-stop").click()
    assert not d.execute_script("return window.studioErrors || []")
