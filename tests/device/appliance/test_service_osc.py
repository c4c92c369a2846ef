"""The service with ``[osc]`` on: the real knobs factory starts the listener beside the (absent) GPIO knobs, an OSC
message from a real UDP client moves the service's controls, the status report and ``make status`` show the
listener, and a reload that switches OSC off closes its port."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime

from pythonosc.udp_client import SimpleUDPClient

from murmur.device.appliance.config import load_config
from murmur.device.appliance.health import format_report, read_status
from murmur.device.appliance.service import Service
from murmur.device.appliance.systemd import Notifier
from murmur.device.cli.serve import default_knobs_factory
from murmur.device.controls.base import KnobSet
from murmur.device.controls.osc import OscKnobs
from murmur.device.testing.fakes import FakeBundle, FakeEngine, SimClock


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_text(port: int, enabled: bool) -> str:
    return f"""
[playback]
bundle = "a"
[knobs]
enabled = false
[osc]
enabled = {'true' if enabled else 'false'}
listen = "127.0.0.1"
port = {port}
"""


def test_osc_reaches_the_service_controls_and_shows_in_the_status(tmp_path):
    (tmp_path / "a").mkdir()
    port = free_udp_port()
    path = tmp_path / "murmur.toml"
    path.write_text(config_text(port, True))
    clock = SimClock(datetime(2026, 11, 23, 12, 0))
    svc = Service(load_config(path), engine_factory=lambda bundle, **_: FakeEngine(bundle, clock),
                  knobs_factory=default_knobs_factory, notifier=Notifier(""), clock=clock,
                  status_file=tmp_path / "status.json", bundle_loader=lambda p: FakeBundle(p, "id-a"),
                  model_check=lambda bundle: None)
    svc._start()
    try:
        assert isinstance(svc.knobs, KnobSet) and svc.knobs.backend == "none+osc"  # GPIO off, OSC on
        osc = svc.knobs.parts[1]
        assert isinstance(osc, OscKnobs) and osc.bound == ("127.0.0.1", port)
        SimpleUDPClient("127.0.0.1", port).send_message("/murmur/fidelity", 0.75)
        assert osc.wait_until(lambda: svc.store.snapshot().fidelity == 0.75), (osc.counters, osc.values())
        assert svc.tick()
        status = read_status(tmp_path / "status.json")
        assert status is not None and status.knobs["fidelity"] == 0.75
        assert status.osc["listening"] == f"127.0.0.1:{port}" and status.osc["applied"] == 1
        report = format_report(status, time.time() if status.updated_unix == 0 else status.updated_unix)
        assert f"OSC:          listening on 127.0.0.1:{port} (private networks); 1 messages applied" in report

        path.write_text(config_text(port, False))
        assert svc.reload()
        assert svc.knobs is not None and svc.knobs.backend == "none" and svc.tick()
        assert json.loads((tmp_path / "status.json").read_text())["osc"] == {}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(("127.0.0.1", port))  # the listener let its port go
    finally:
        svc._shutdown()
