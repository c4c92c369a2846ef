"""One status schema: device/appliance/status.py's StatusReport is what the service writes and what everything reads; the
standard-library-only deploy code mirrors its names (and reads no key outside them); the deploy gate shows the
service's own reason when it reports an error."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest

from murmur import REPO_ROOT as ROOT
from murmur.deploy import pi_release
from murmur.device.appliance import health
from murmur.device.appliance.status import STATUS_FIELDS, ClockSync, State, StatusReport

JSON_EXTRAS = {"ok", "exit_code", "problems", "status_file", "age_s"}  # added by `python -m murmur.device status --json`


@pytest.mark.parametrize("environ", [
    {},
    {"MURMUR_STATUS_FILE": "/tmp/murmur-status.json"},
    {"RUNTIME_DIRECTORY": "/run/murmur-a:/run/murmur-b"},
    {"MURMUR_STATUS_FILE": "/tmp/s.json", "RUNTIME_DIRECTORY": "/run/murmur-a"},
    {"MURMUR_STATUS_FILE": "", "RUNTIME_DIRECTORY": "/run/murmur-a"},
])
def test_pi_release_finds_the_status_file_by_the_services_rule(environ):
    assert pi_release.status_file(Path("/"), environ) == health.status_path(environ)


def test_pi_release_mirrors_the_field_names_and_states():
    assert pi_release.STATUS_FIELDS == STATUS_FIELDS
    assert pi_release.STATUS_STATES == tuple(state.value for state in State)


def _report_keys(path: Path) -> set[str]:
    """String keys read from a variable named ``report`` (``report.get("k")``, ``report["k"]``)."""
    keys = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "report" and node.args
                and isinstance(node.args[0], ast.Constant)):
            keys.add(node.args[0].value)
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "report"
                and isinstance(node.slice, ast.Constant)):
            keys.add(node.slice.value)
    return keys


def test_deploy_code_reads_only_keys_the_service_writes():
    for name in ("deploy/pi_release.py", "deploy/tool.py"):
        keys = _report_keys(ROOT / name)
        assert keys, f"{name}: no report reads found (the test would pass vacuously)"
        unknown = keys - set(STATUS_FIELDS) - JSON_EXTRAS
        assert not unknown, f"{name} reads status keys the service never writes: {sorted(unknown)}"


def test_report_round_trips_through_json_and_tolerates_older_files():
    report = StatusReport(playing=True, ready=True, state=State.QUIET_HOURS, clock=ClockSync.UNSYNCHRONISED,
                          knobs={"fidelity": 0.3}, throttled="0x50000", updated_unix=time.time(), pid=7)
    text = json.dumps(report.to_dict(), allow_nan=False)
    data = json.loads(text)
    assert data["state"] == "quiet-hours" and data["clock"] == "unsynchronised"
    assert StatusReport.from_dict(data) == report
    older = {k: v for k, v in data.items() if k not in ("clock", "peak_dbfs_10s")} | {"retired_field": 1}
    back = StatusReport.from_dict(older)
    assert back.clock == ClockSync.UNKNOWN and back.peak_dbfs_10s == -200.0 and back.pid == 7
    assert StatusReport.from_dict({"state": "exploded"}).state == State.ERROR


def test_gate_shows_the_services_own_error_message(tmp_path, monkeypatch):
    pi = pi_release.Pi(pi_release.Layout(str(tmp_path)), python="python3", systemctl="true", gate_timeout_s=5.0,
                       min_level_dbfs=-60.0, allow_quiet_hours=False)
    since = time.time()
    error = StatusReport(state=State.ERROR, message="no audio reached the output within 20 s (nosuchcard)",
                         bundle_id="sea", updated_unix=since + 1.0).to_dict()
    monkeypatch.setattr(pi, "read_status", lambda release_dir: error)
    monkeypatch.setattr(pi_release, "bundle_id_of", lambda bundle_dir: "sea")
    problem = pi.gate("r1", since_unix=since, old_pid=None, restarted=False)
    assert problem is not None and "state 'error'" in problem and "nosuchcard" in problem
