"""Health of the running service: the status file it writes, the readers for CPU temperature and throttling, and
``python -m device status [--json]`` (also ``make status PI=host`` from the laptop).

The service writes ``/run/murmur/status.json`` (env ``MURMUR_STATUS_FILE`` overrides; tmpfs, never the SD card)
atomically about once a second. Exit codes of ``status``: 0 playing; 3 quiet hours (service alive, silent on
purpose); 1 not playing (starting, error, no sound); 2 no status file or a stale one (service not running or hung).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .atomic import replace_file

STATUS_ENV = "MURMUR_STATUS_FILE"
DEFAULT_STATUS_FILE = Path("/run/murmur/status.json")
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
# Raspberry Pi kernels publish the firmware's throttle word here (readable without /dev/vcio, so from the
# sandboxed service too); vcgencmd is the fallback for the interactive command.
THROTTLED_SYSFS = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
STALE_AFTER_S = 10.0
EXIT_PLAYING, EXIT_NOT_PLAYING, EXIT_NO_STATUS, EXIT_QUIET_HOURS = 0, 1, 2, 3

THROTTLE_BITS = {
    0x1: "under-voltage now",
    0x2: "ARM frequency capped now",
    0x4: "throttled now",
    0x8: "soft temperature limit now",
    0x10000: "under-voltage has occurred",
    0x20000: "frequency capping has occurred",
    0x40000: "throttling has occurred",
    0x80000: "soft temperature limit has occurred",
}


def status_path() -> Path:
    """Where the status file is: ``$MURMUR_STATUS_FILE`` or /run/murmur/status.json."""
    return Path(os.environ.get(STATUS_ENV) or DEFAULT_STATUS_FILE)


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace the status file atomically (temporary sibling + rename), world-readable so any login can run
    ``status``. No fsync: it lives on tmpfs and is rewritten every second."""
    replace_file(path, json.dumps(status, separators=(",", ":"), allow_nan=False).encode(), mode=0o644, durable=False)


def read_status(path: Path) -> dict[str, Any] | None:
    """The status dict, or None when the file is missing or unreadable (the service is not running)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_cpu_temp_c(path: Path = THERMAL_ZONE) -> float | None:
    """CPU temperature in °C from the thermal zone (millidegrees), None when not readable."""
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def read_throttled(*, sysfs: Path = THROTTLED_SYSFS, use_vcgencmd: bool = False) -> str | None:
    """The firmware throttle word as hex ('0x0' = all well), None when not readable (not a Pi)."""
    try:
        return hex(int(sysfs.read_text().strip(), 16))
    except (OSError, ValueError):
        pass
    if use_vcgencmd and shutil.which("vcgencmd"):
        try:
            out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
            return hex(int(out.strip().partition("=")[2], 16))
        except (OSError, ValueError, subprocess.SubprocessError):
            return None
    return None


def describe_throttled(word: str | None) -> str:
    """'0x50005' -> 'under-voltage now, throttled now, …'; 'ok' for 0; 'unknown' when None."""
    if word is None:
        return "unknown (not a Raspberry Pi, or not readable)"
    try:
        value = int(word, 16)
    except ValueError:
        return f"unreadable ({word!r})"
    if value == 0:
        return "ok (never throttled since boot)"
    return ", ".join(text for bit, text in THROTTLE_BITS.items() if value & bit) + f" ({word})"


def evaluate(status: dict[str, Any] | None, now_unix: float, *, stale_after_s: float = STALE_AFTER_S) -> tuple[int, list[str]]:
    """Exit code and the problems found: no file, stale file, not playing."""
    if status is None:
        return EXIT_NO_STATUS, ["no status file: the service is not running (systemctl status murmur)"]
    age = now_unix - float(status.get("updated_unix", 0.0))
    if age > stale_after_s:
        return EXIT_NO_STATUS, [f"status is {age:.0f} s old: the service is stopped or hung (journalctl -u murmur)"]
    if status.get("playing"):
        return EXIT_PLAYING, []
    if status.get("state") == "quiet-hours" and status.get("ready"):
        return EXIT_QUIET_HOURS, []
    reason = status.get("message") or status.get("state") or "unknown"
    return EXIT_NOT_PLAYING, [f"not playing: {reason}"]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days} d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def format_report(status: dict[str, Any] | None, now_unix: float, *, stale_after_s: float = STALE_AFTER_S) -> str:
    """A human report of the status (what a technician reads over ssh)."""
    code, problems = evaluate(status, now_unix, stale_after_s=stale_after_s)
    verdict = {EXIT_PLAYING: "PLAYING", EXIT_QUIET_HOURS: "QUIET HOURS (silent by schedule)",
               EXIT_NOT_PLAYING: "NOT PLAYING", EXIT_NO_STATUS: "NO SERVICE"}[code]
    lines = [f"murmur: {verdict}"]
    lines += [f"  problem: {p}" for p in problems]
    if status is None:
        return "\n".join(lines)
    level = status.get("level_dbfs_10s")
    level_text = f"{level:.1f} dBFS" if isinstance(level, int | float) else "?"
    lines += [
        f"  state:        {status.get('state', '?')}" + (f" ({status['message']})" if status.get("message") else ""),
        f"  level (10 s): {level_text}",
        f"  underruns:    {status.get('underruns', '?')}",
        f"  bundle:       {status.get('bundle_id', '?')}  ({status.get('bundle_path', '?')}), "
        f"age {_duration(status.get('bundle_age_s'))}",
        f"  uptime:       {_duration(status.get('uptime_s'))}  (pid {status.get('pid', '?')}, "
        f"release {status.get('release') or '?'}, venv {status.get('venv') or '?'})",
    ]
    if status.get("schedule"):
        lines.append(f"  schedule:     {status['schedule']}")
    knobs = status.get("knobs") or {}
    if knobs:
        lines.append("  knobs:        " + ", ".join(f"{k}={_knob(v)}" for k, v in knobs.items()))
    temp = status.get("cpu_temp_c")
    lines.append(f"  CPU temp:     {temp:.1f} °C" if isinstance(temp, int | float) else "  CPU temp:     unknown")
    lines.append(f"  throttling:   {describe_throttled(status.get('throttled'))}")
    lines.append(f"  updated:      {now_unix - float(status.get('updated_unix', now_unix)):.1f} s ago")
    return "\n".join(lines)


def _knob(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def cli(argv: list[str]) -> int:
    """``python -m device status [--json] [--file PATH]``: print the service's health; exit code as above."""
    parser = argparse.ArgumentParser(prog=f"python -m device {argv[0] if argv else 'status'}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the status as JSON (plus ok/problems/age_s)")
    parser.add_argument("--file", type=Path, default=None, help=f"status file (default ${STATUS_ENV} or {DEFAULT_STATUS_FILE})")
    parser.add_argument("--stale-after", type=float, default=STALE_AFTER_S, help="seconds after which the file counts as stale")
    args = parser.parse_args(argv[1:])
    path = args.file or status_path()
    status = read_status(path)
    now = time.time()
    if status is not None:  # fresh readings where this login can see more than the sandboxed service
        temp = read_cpu_temp_c()
        if temp is not None:
            status["cpu_temp_c"] = temp
        throttled = read_throttled(use_vcgencmd=True)
        if throttled is not None:
            status["throttled"] = throttled
    code, problems = evaluate(status, now, stale_after_s=args.stale_after)
    if args.json:
        out = dict(status or {})
        out.update(ok=code in (EXIT_PLAYING, EXIT_QUIET_HOURS), exit_code=code, problems=problems, status_file=str(path),
                   age_s=None if status is None else round(now - float(status.get("updated_unix", now)), 3))
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(format_report(status, now, stale_after_s=args.stale_after))
    return code


if __name__ == "__main__":
    sys.exit(cli(["status", *sys.argv[1:]]))
