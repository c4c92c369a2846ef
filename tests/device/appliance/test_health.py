"""`python -m murmur.device status`: the status file round trip, the human report, --json, exit codes, temperature and
throttle readings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from murmur import REPO_ROOT as ROOT
from murmur.device.appliance import health
from murmur.device.appliance.status import ClockSync, StatusReport


def sample_status(**changes) -> StatusReport:
    status = {
        "playing": True, "ready": True, "state": "playing", "message": None, "level_dbfs_10s": -23.46,
        "underruns": 2, "bundle_id": "sea-20261124", "bundle_path": "/opt/murmur/bundles/sea", "bundle_age_s": 93784.0,
        "uptime_s": 3725.0, "knobs": {"temperature": 0.3, "hold": False}, "cpu_temp_c": 51.2, "throttled": "0x50000",
        "release": "20261124-0901", "venv": "3f2a9c0d1e4b5a67", "updated_unix": time.time(), "pid": 4242, "schedule": "open until Tue 18:00",
        "engine_load": 0.412, "vocoder": "light (auto)",
    }
    status.update(changes)
    return StatusReport.from_dict(status)


def test_write_is_atomic_readable_and_round_trips(tmp_path):
    path = tmp_path / "run" / "status.json"
    health.write_status(path, sample_status())
    assert health.read_status(path) == sample_status(updated_unix=health.read_status(path).updated_unix)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]  # no temporary left behind
    path.write_text("{half")
    assert health.read_status(path) is None


def test_report_says_playing_level_bundle_age_uptime_knobs_temperature():
    now = time.time()
    report = health.format_report(sample_status(updated_unix=now - 0.5), now)
    assert report.startswith("murmur: PLAYING")
    for fragment in ("-23.5 dBFS", "underruns:    2", "sea-20261124", "1 d 02:03:04", "01:02:05",
                     "temperature=0.3", "hold=False", "51.2 °C", "under-voltage has occurred", "throttling has occurred",
                     "release 20261124-0901, venv 3f2a9c0d1e4b5a67", "open until Tue 18:00",
                     "clock:        unknown", "official Raspberry Pi supply", "give the Pi air",
                     "CPU (sound):  41 % of one core, vocoder light (auto)"):
        assert fragment in report, fragment
    calm = health.format_report(sample_status(updated_unix=now, throttled="0x0", clock="unsynchronised"), now)
    assert "advice" not in calm and "clock:        unsynchronised (no network time since boot" in calm


def test_clock_sync_reader_flag_file_then_kernel_then_unknown(tmp_path):
    flag, timesync = tmp_path / "timesync" / "synchronized", tmp_path / "timesync"
    never = lambda: None  # noqa: E731 - adjtimex cannot be called (the unit's ProtectClock)
    assert health.read_clock_sync(flag=flag, timesync_dir=timesync, adjtimex=never) == ClockSync.UNKNOWN
    timesync.mkdir()
    assert health.read_clock_sync(flag=flag, timesync_dir=timesync, adjtimex=never) == ClockSync.UNSYNCHRONISED
    flag.touch()
    assert health.read_clock_sync(flag=flag, timesync_dir=timesync, adjtimex=never) == ClockSync.SYNCHRONISED
    flag.unlink()
    unsync, ok = (lambda: health.ADJTIMEX_TIME_ERROR), (lambda: 0)
    assert health.read_clock_sync(flag=flag, timesync_dir=timesync, adjtimex=unsync) == ClockSync.UNSYNCHRONISED
    assert health.read_clock_sync(flag=flag, timesync_dir=timesync, adjtimex=ok) == ClockSync.SYNCHRONISED


def test_power_advice_names_the_supply_for_under_voltage_and_the_heat_for_throttling():
    assert health.power_problems("0x0") == [] and health.power_problems(None) == []
    assert health.power_problems("0x10000") == [health.POWER_ADVICE]
    assert health.power_problems("0x40000") == [health.HEAT_ADVICE]
    assert health.power_problems("0x50005") == [health.POWER_ADVICE, health.HEAT_ADVICE]


def test_exit_codes_playing_quiet_not_playing_stale_missing():
    now = time.time()
    assert health.evaluate(sample_status(updated_unix=now), now)[0] == health.EXIT_PLAYING
    quiet = sample_status(playing=False, state="quiet-hours", updated_unix=now)
    assert health.evaluate(quiet, now)[0] == health.EXIT_QUIET_HOURS
    error = sample_status(playing=False, state="error", message="no audio reached the output", updated_unix=now)
    code, problems = health.evaluate(error, now)
    assert code == health.EXIT_NOT_PLAYING and "no audio reached the output" in problems[0]
    code, problems = health.evaluate(sample_status(updated_unix=now - 60), now)
    assert code == health.EXIT_NO_STATUS and "60 s old" in problems[0]
    assert health.evaluate(None, now)[0] == health.EXIT_NO_STATUS
    assert "NO SERVICE" in health.format_report(None, now)


def test_temperature_and_throttle_readers(tmp_path):
    zone = tmp_path / "temp"
    zone.write_text("48312\n")
    assert health.read_cpu_temp_c(zone) == 48.312
    assert health.read_cpu_temp_c(tmp_path / "missing") is None
    word = tmp_path / "get_throttled"
    word.write_text("50005\n")
    assert health.read_throttled(sysfs=word) == "0x50005"
    assert "under-voltage now" in health.describe_throttled("0x50005")
    assert health.describe_throttled("0x0").startswith("ok")
    assert health.read_throttled(sysfs=tmp_path / "missing") is None or os.path.exists("/usr/bin/vcgencmd")


def run_status(*args, status_file: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MURMUR_STATUS_FILE=str(status_file))
    return subprocess.run([sys.executable, "-m", "murmur.device", "status", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_cli_text_and_json_and_exit_codes(tmp_path):
    path = tmp_path / "status.json"
    result = run_status(status_file=path)
    assert result.returncode == health.EXIT_NO_STATUS and "NO SERVICE" in result.stdout
    health.write_status(path, sample_status())
    result = run_status(status_file=path)
    assert result.returncode == 0 and "PLAYING" in result.stdout and "sea-20261124" in result.stdout
    health.write_status(path, sample_status(playing=False, state="starting"))
    result = run_status("--json", status_file=path)
    data = json.loads(result.stdout)
    assert result.returncode == health.EXIT_NOT_PLAYING and data["ok"] is False and data["exit_code"] == 1
    assert data["bundle_id"] == "sea-20261124" and data["age_s"] < 30 and data["status_file"] == str(path)
    assert data["clock"] == "unknown" and data["state"] == "starting"


def test_makefile_status_target_goes_through_the_deploy_tool():
    text = (ROOT / "Makefile").read_text()
    assert "status:" in text
    result = subprocess.run(["make", "-n", "status", "PI=@hall gallery-pi"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert "-m murmur.deploy status @hall gallery-pi" in result.stdout  # inventory names and @groups as for deploy
    missing = subprocess.run(["make", "status"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert missing.returncode != 0 and "PI=" in (missing.stdout + missing.stderr)


def test_the_status_command_finds_the_file_in_the_runtime_directory_like_the_service(tmp_path):
    # systemd gives the service RUNTIME_DIRECTORY; the service writes there, so a reader with the same
    # environment (e.g. ExecStartPost, or `systemd-run -p RuntimeDirectory=murmur`) must read there too
    health.write_status(tmp_path / "status.json", sample_status())
    env = {k: v for k, v in os.environ.items() if k != health.STATUS_ENV}
    env["RUNTIME_DIRECTORY"] = f"{tmp_path}:/elsewhere"
    result = subprocess.run([sys.executable, "-m", "murmur.device", "status"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "PLAYING" in result.stdout


def test_status_path_rule():
    assert health.status_path({}) == Path("/run/murmur/status.json")
    assert health.status_path({"RUNTIME_DIRECTORY": "/run/a:/run/b"}) == Path("/run/a/status.json")
    assert health.status_path({"MURMUR_STATUS_FILE": "/tmp/s.json", "RUNTIME_DIRECTORY": "/run/a"}) == Path("/tmp/s.json")
    assert health.status_path({"MURMUR_STATUS_FILE": "", "RUNTIME_DIRECTORY": "/run/a"}) == Path("/run/a/status.json")
