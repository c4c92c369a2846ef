"""Health of the running service: the status file it writes, the readers for CPU temperature, throttling and
clock synchronisation, and ``python -m murmur.device status [--json]`` (also ``make status PI=host`` from the laptop).

The service writes the status file (``status_path``: ``$MURMUR_STATUS_FILE``, else ``$RUNTIME_DIRECTORY/status.json``,
else ``/run/murmur/status.json``; tmpfs, never the SD card) atomically about once a second; readers find it by the
same rule. Exit codes of ``status``: 0 playing; 3 quiet hours (service alive, silent on
purpose); 1 not playing (starting, error, no sound); 2 no status file or a stale one (service not running or hung).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from murmur.device.appliance.status import ClockSync, State, StatusReport
from murmur.device.files import replace_file

STATUS_ENV = "MURMUR_STATUS_FILE"
RUNTIME_DIRECTORY_ENV = "RUNTIME_DIRECTORY"  # set by systemd for a unit with RuntimeDirectory=
STATUS_FILE_NAME = "status.json"
DEFAULT_STATUS_FILE = Path("/run/murmur") / STATUS_FILE_NAME
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
# Raspberry Pi kernels publish the firmware's throttle word here (readable without /dev/vcio, so from the
# sandboxed service too); vcgencmd is the fallback for the interactive command.
THROTTLED_SYSFS = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
# systemd-timesyncd creates this file at its first synchronisation after boot (it lives on tmpfs: gone at boot).
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
TIMESYNC_DIR = TIMESYNC_FLAG.parent  # exists while timesyncd runs, synchronised or not
ADJTIMEX_TIME_ERROR = 5  # adjtimex(2)'s return value when the kernel's clock is not synchronised (STA_UNSYNC)
STALE_AFTER_S = 10.0
SILENT_DBFS = -100.0  # RMS over 10 s below this counts as digital silence
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


UNDER_VOLTAGE_BITS = 0x1 | 0x10000
HEAT_BITS = 0x2 | 0x4 | 0x8 | 0x20000 | 0x40000 | 0x80000
POWER_ADVICE = ("under-voltage: the power supply sags under load, which corrupts SD cards and makes the sound "
                "drop out; use the official Raspberry Pi supply (5.1 V 3 A for a Pi 4, 5.1 V 5 A for a Pi 5) and a "
                "short, thick cable, not a USB port or a phone charger")
HEAT_ADVICE = ("the CPU was slowed down (heat or supply): give the Pi air, a heatsink or a case with a fan, and check "
               "the supply; a slowed CPU can make the sound drop out")


def status_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the status file is, for the service that writes it and every reader: ``$MURMUR_STATUS_FILE``, else
    ``status.json`` in the first entry of ``$RUNTIME_DIRECTORY`` (systemd's RuntimeDirectory=), else
    /run/murmur/status.json. ``deploy/pi_release.py`` (standard library only) mirrors this rule."""
    env = os.environ if environ is None else environ
    if env.get(STATUS_ENV):
        return Path(env[STATUS_ENV])
    if env.get(RUNTIME_DIRECTORY_ENV):
        return Path(env[RUNTIME_DIRECTORY_ENV].split(":")[0]) / STATUS_FILE_NAME
    return DEFAULT_STATUS_FILE


def write_status(path: Path, status: StatusReport) -> None:
    """Replace the status file atomically (temporary sibling + rename), world-readable so any login can run
    ``status``. No fsync: it lives on tmpfs and is rewritten every second."""
    replace_file(path, json.dumps(status.to_dict(), separators=(",", ":"), allow_nan=False).encode(), mode=0o644,
                 durable=False)


def read_status(path: Path) -> StatusReport | None:
    """The status report, or None when the file is missing or unreadable (the service is not running)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StatusReport.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


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


def read_clock_sync(*, flag: Path = TIMESYNC_FLAG, timesync_dir: Path = TIMESYNC_DIR,
                    adjtimex=None) -> ClockSync:
    """Was the wall clock set from network time since boot? systemd-timesyncd's flag file first (readable in the
    service's sandbox); then the kernel's own flag via adjtimex(2) in read-only mode (chrony, ntpd; the unit's
    ProtectClock may forbid the call); UNKNOWN when neither can tell. ``adjtimex()`` -> int is injectable."""
    if flag.exists():
        return ClockSync.SYNCHRONISED
    state = (adjtimex or _adjtimex_state)()
    if state is not None:
        return ClockSync.UNSYNCHRONISED if state == ADJTIMEX_TIME_ERROR else ClockSync.SYNCHRONISED
    if timesync_dir.is_dir():  # timesyncd runs but has not synchronised yet
        return ClockSync.UNSYNCHRONISED
    return ClockSync.UNKNOWN


def _adjtimex_state() -> int | None:
    """adjtimex(2) with modes = 0 (reads, changes nothing): the clock state, or None when it cannot be called."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex is 208 bytes on 64-bit Linux; modes (offset 0) = 0
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else int(state)


def power_problems(word: str | None) -> list[str]:
    """What to do about the throttle word: the under-voltage and heat advice where their bits are set."""
    try:
        value = int(word, 16) if word is not None else 0
    except ValueError:
        return []
    return ([POWER_ADVICE] if value & UNDER_VOLTAGE_BITS else []) + ([HEAT_ADVICE] if value & HEAT_BITS else [])


class PowerWatch:
    """The firmware's throttle word, read once a second by the service: ``poll()`` returns the advice for each
    under-voltage or heat problem the first time it shows since boot (to log once); ``warning`` stays True after
    that (the status LED shows it); ``word`` is the last reading for the status report (None: not a Pi)."""

    def __init__(self, read: Callable[[], str | None] | None = None) -> None:
        self._read = read
        self.word: str | None = None
        self._seen = 0  # problem bits already reported

    @property
    def warning(self) -> bool:
        return self._seen != 0

    def poll(self) -> list[str]:
        self.word = (self._read or read_throttled)()
        try:
            value = int(self.word, 16) if self.word else 0
        except ValueError:
            return []
        new = value & (UNDER_VOLTAGE_BITS | HEAT_BITS) & ~self._seen
        self._seen |= new
        return [f"{advice} ({describe_throttled(self.word)})" for advice in power_problems(hex(new))] if new else []


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


def evaluate(status: StatusReport | None, now_unix: float, *,
             stale_after_s: float = STALE_AFTER_S) -> tuple[int, list[str]]:
    """Exit code and the problems found: no file, stale file, not playing."""
    if status is None:
        return EXIT_NO_STATUS, ["no status file: the service is not running (systemctl status murmur)"]
    age = now_unix - status.updated_unix
    if age > stale_after_s:
        return EXIT_NO_STATUS, [f"status is {age:.0f} s old: the service is stopped or hung (journalctl -u murmur)"]
    if status.playing:
        return EXIT_PLAYING, []
    if status.state == State.QUIET_HOURS and status.ready:
        return EXIT_QUIET_HOURS, []
    return EXIT_NOT_PLAYING, [f"not playing: {status.message or status.state}"]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days} d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


CLOCK_TEXT = {
    ClockSync.SYNCHRONISED: "synchronised (network time)",
    ClockSync.UNSYNCHRONISED: "unsynchronised (no network time since boot: the opening hours follow "
                              "[schedule] unsynchronised_clock)",
    ClockSync.UNKNOWN: "unknown (no time service to ask)",
}


def format_report(status: StatusReport | None, now_unix: float, *, stale_after_s: float = STALE_AFTER_S) -> str:
    """A human report of the status (what a technician reads over ssh)."""
    code, problems = evaluate(status, now_unix, stale_after_s=stale_after_s)
    verdict = {EXIT_PLAYING: "PLAYING", EXIT_QUIET_HOURS: "QUIET HOURS (silent by schedule)",
               EXIT_NOT_PLAYING: "NOT PLAYING", EXIT_NO_STATUS: "NO SERVICE"}[code]
    lines = [f"murmur: {verdict}"]
    lines += [f"  problem: {p}" for p in problems]
    if status is None:
        return "\n".join(lines)
    s = status
    lines += [
        f"  state:        {s.state}" + (f" ({s.message})" if s.message else ""),
        f"  level (10 s): {s.level_dbfs_10s:.1f} dBFS",
        f"  underruns:    {s.underruns}",
        f"  CPU (sound):  {100 * s.engine_load:.0f} % of one core" + (f", vocoder {s.vocoder}" if s.vocoder else ""),
        f"  bundle:       {s.bundle_id or '?'}  ({s.bundle_path or '?'}), age {_duration(s.bundle_age_s)}",
        f"  uptime:       {_duration(s.uptime_s)}  (pid {s.pid or '?'}, release {s.release or '?'}, "
        f"venv {s.venv or '?'})",
    ]
    if s.schedule:
        lines.append(f"  schedule:     {s.schedule}")
    lines.append(f"  clock:        {CLOCK_TEXT[s.clock]}")
    if s.knobs:
        lines.append("  knobs:        " + ", ".join(f"{k}={_knob(v)}" for k, v in s.knobs.items()))
    if s.osc:
        lines.append(f"  OSC:          {describe_osc(s.osc)}")
    if s.room:
        lines.append(f"  room:         {describe_room(s.room)}")
    if s.midi:
        lines.append(f"  MIDI:         {describe_midi(s.midi)}")
    lines.append(f"  CPU temp:     {s.cpu_temp_c:.1f} °C" if s.cpu_temp_c is not None else "  CPU temp:     unknown")
    lines.append(f"  throttling:   {describe_throttled(s.throttled)}")
    lines += [f"  advice:       {advice}" for advice in power_problems(s.throttled)]
    lines.append(f"  updated:      {now_unix - s.updated_unix:.1f} s ago")
    return "\n".join(lines)


def describe_osc(osc: Mapping[str, object]) -> str:
    """The OSC listener in one line: where it listens and for whom, what arrived, its problem if it is not
    listening ("listening on 0.0.0.0:9000 (private networks); 120 messages applied, 3 malformed …")."""
    where = osc.get("listening")
    senders = osc.get("allowed_senders")
    head = (f"listening on {where} ({', '.join(map(str, senders)) if isinstance(senders, list) else senders})"
            if where else "NOT listening")
    counts = [f"{osc.get(name, 0)} {label}" for name, label in (
        ("applied", "messages applied"), ("merged", "merged (over the rate)"), ("malformed", "malformed"),
        ("bad_messages", "bad arguments"), ("unknown", "unknown addresses"), ("refused", "refused senders"),
        ("dropped", "dropped (flood)"), ("actions_dropped", "actions dropped")) if osc.get(name) or name == "applied"]
    last = f"; last from {osc['last_sender']}" if osc.get("last_sender") else ""
    problems = osc.get("problems")
    problem = f"; problem: {problems[0]}" if isinstance(problems, list) and problems else ""
    return f"{head}; {', '.join(counts)}{last}{problem}"


def describe_room(room: Mapping[str, Any]) -> str:
    """The room in one line: "hall: 2 of 2 peers heard, in step (hall-2 0.4 s ago, hall-3 NOT heard …)"."""
    peers = room.get("peers") or []
    heard = [p for p in peers if p.get("heard_s_ago") is not None]
    in_step = bool(peers) and all(p.get("in_step") for p in peers)
    parts = []
    for p in peers:
        age = p.get("heard_s_ago")
        state = (f"{age:.1f} s ago" + ("" if p.get("in_step") else ", not in step")) if age is not None \
            else "NOT heard"
        parts.append(f"{p.get('peer')} {state}" + (f" ({p['problem']})" if p.get("problem") else ""))
    where = f"listening on {room['listening']}" if room.get("listening") else "NOT listening"
    problems = room.get("problems") or []
    return (f"{room.get('name') or '(unnamed)'}: {len(heard)} of {len(peers)} peers heard, "
            f"{'in step' if in_step else 'NOT in step'}; {where}; " + "; ".join(parts)
            + (f"; problem: {problems[0]}" if problems else ""))


def describe_midi(midi: Mapping[str, Any]) -> str:
    """The MIDI controller in one line: "connected to 'nanoKONTROL2 …'; 120 messages, 3 not picked up yet"."""
    port = midi.get("port")
    head = f"connected to {port!r}" if port else f"WAITING for {midi.get('wanted')}"
    counts = f"{midi.get('messages', 0)} messages, {midi.get('applied', 0)} applied"
    for name, label in (("unmapped", "not mapped"), ("waiting_pickup", "before pickup"),
                        ("disconnects", "unplugged")):
        if midi.get(name):
            counts += f", {midi[name]} {label}"
    waiting = midi.get("not_picked_up") or []
    problems = midi.get("problems") or []
    return (f"{head}; {counts}" + (f"; knobs to pick up: {', '.join(waiting)}" if waiting else "")
            + (f"; problem: {problems[0]}" if problems and not port else ""))


def _knob(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def cli(argv: list[str]) -> int:
    """``python -m murmur.device status [--json] [--file PATH]``: print the service's health; exit code as above."""
    parser = argparse.ArgumentParser(prog=f"python -m murmur.device {argv[0] if argv else 'status'}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the status as JSON (plus ok/problems/age_s)")
    parser.add_argument("--file", type=Path, default=None, help=f"status file (default ${STATUS_ENV}, ${RUNTIME_DIRECTORY_ENV}/{STATUS_FILE_NAME} or {DEFAULT_STATUS_FILE})")
    parser.add_argument("--stale-after", type=float, default=STALE_AFTER_S, help="seconds after which the file counts as stale")
    args = parser.parse_args(argv[1:])
    path = args.file or status_path()
    status = read_status(path)
    now = time.time()
    if status is not None:  # fresh readings where this login can see more than the sandboxed service
        temp = read_cpu_temp_c()
        throttled = read_throttled(use_vcgencmd=True)
        status = dataclasses.replace(status, cpu_temp_c=status.cpu_temp_c if temp is None else temp,
                                     throttled=status.throttled if throttled is None else throttled)
    code, problems = evaluate(status, now, stale_after_s=args.stale_after)
    if args.json:
        out = status.to_dict() if status is not None else {}
        out.update(ok=code in (EXIT_PLAYING, EXIT_QUIET_HOURS), exit_code=code, problems=problems, status_file=str(path),
                   age_s=None if status is None else round(now - status.updated_unix, 3))
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(format_report(status, now, stale_after_s=args.stale_after))
    return code




class SilenceDetector:
    """Says when the output has stayed digitally silent or bit-identical for ``restart_after_s`` while it should
    sound. ``update`` is fed once per main-loop tick; ``active`` False (closed, fading, starting) resets it."""

    def __init__(self, restart_after_s: float, silent_dbfs: float = SILENT_DBFS) -> None:
        self.restart_after_s = restart_after_s
        self.silent_dbfs = silent_dbfs
        self._silent_since: float | None = None
        self._stuck_since: float | None = None
        self._last_identical = 0

    def reset(self) -> None:
        self._silent_since = self._stuck_since = None
        self._last_identical = 0

    def update(self, now_s: float, *, active: bool, level_dbfs: float, identical_blocks: int) -> str | None:
        """A reason to restart ('digitally silent …', 'frozen …') or None. ``now_s``: seconds of audio produced
        (the service passes frames × frame duration, the time base of the engine's level window)."""
        growing = identical_blocks > self._last_identical
        self._last_identical = identical_blocks
        if not active or self.restart_after_s <= 0:
            self._silent_since = self._stuck_since = None
            return None
        silent = not level_dbfs > self.silent_dbfs  # -inf and NaN count as silent
        self._silent_since = (self._silent_since if self._silent_since is not None else now_s) if silent else None
        self._stuck_since = (self._stuck_since if self._stuck_since is not None else now_s) if growing else None
        if self._silent_since is not None and now_s - self._silent_since >= self.restart_after_s:
            return (f"output digitally silent (RMS {level_dbfs:.1f} dBFS over 10 s, below {self.silent_dbfs:.0f}) "
                    f"for {now_s - self._silent_since:.0f} s while open")
        if self._stuck_since is not None and now_s - self._stuck_since >= self.restart_after_s:
            return (f"output frozen ({identical_blocks} consecutive bit-identical blocks) for "
                    f"{now_s - self._stuck_since:.0f} s while open")
        return None


if __name__ == "__main__":
    sys.exit(cli(["status", *sys.argv[1:]]))
