"""Two real services (``python -m murmur.device serve`` on a null sink) in a room on loopback: an OSC message to one
moves the other's controls, and the other, stopped and started again, takes up the room's controls; both status
reports show the room. What systemd and the Pi add (the drop-in, the network) is tested in tests/deploy."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pythonosc.udp_client import SimpleUDPClient

from murmur import REPO_ROOT as ROOT

pytestmark = pytest.mark.slow  # two engines running for ~15 s


def free_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


class Pi:
    """One service: its config, status file and process."""

    def __init__(self, tmp_path: Path, name: str, bundle: Path, room_port: int, peer_port: int,
                 osc_port: int | None) -> None:
        self.dir = tmp_path / name
        self.dir.mkdir()
        self.status = self.dir / "status.json"
        osc = f'[osc]\nenabled = true\nlisten = "127.0.0.1"\nport = {osc_port}\n' if osc_port else ""
        (self.dir / "murmur.toml").write_text(
            f'[playback]\nbundle = "{bundle}"\n[knobs]\nenabled = false\n{osc}'
            f'[room]\nenabled = true\nname = "hall"\nlisten = "127.0.0.1"\nport = {room_port}\n'
            f'peers = ["127.0.0.1:{peer_port}"]\nheartbeat_s = 0.5\n')
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.status.unlink(missing_ok=True)
        env = dict(os.environ, MURMUR_SINK="null", MURMUR_STATUS_FILE=str(self.status), NOTIFY_SOCKET="")
        self.proc = subprocess.Popen([sys.executable, "-m", "murmur.device", "serve", "--config",
                                      str(self.dir / "murmur.toml")], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "log", "a"))

    def report(self) -> dict:
        try:
            return json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, predicate, timeout: float = 60.0) -> dict:
        """Poll the status file (rewritten once a second) until ``predicate(report)``; fail with the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            report = self.report()
            if report and predicate(report):
                return report
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)  # polling the file the service rewrites: the observable state, not a synchronisation
        pytest.fail(f"{self.dir.name}: not reached; last report {self.report()}\n{(self.dir / 'log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=30) == 0
        self.proc = None


def test_two_services_in_a_room_follow_each_other(tmp_path, tiny_bundle):
    room_a, room_b, osc_a = free_ports(3)
    a = Pi(tmp_path, "a", tiny_bundle, room_a, room_b, osc_a)
    b = Pi(tmp_path, "b", tiny_bundle, room_b, room_a, None)
    try:
        a.start()
        b.start()
        for pi in (a, b):
            pi.wait(lambda r: r.get("playing") and r["room"].get("peers", [{}])[0].get("in_step"))
        client = SimpleUDPClient("127.0.0.1", osc_a)
        client.send_message("/murmur/temperature", 1.25)
        b.wait(lambda r: r["knobs"]["temperature"] == 1.25)
        b.stop()
        client.send_message("/murmur/fidelity", 0.75)  # the room moves while b is away
        a.wait(lambda r: r["knobs"]["fidelity"] == 0.75)
        b.start()
        report = b.wait(lambda r: r.get("playing") and r["knobs"]["fidelity"] == 0.75)
        assert report["knobs"]["temperature"] == 1.25 and report["room"]["name"] == "hall"
        a_report = a.wait(lambda r: r["osc"].get("applied") == 2)
        assert a_report["osc"]["listening"] == f"127.0.0.1:{osc_a}"
    finally:
        a.stop()
        b.stop()
