"""``systemctl`` for the loopback Pi (deploy tests): ``loopback_systemctl.py ROOT VERB [murmur]``.

Runs the installed unit's ``ExecStart`` (ROOT/etc/systemd/system/murmur.service; its /opt and /etc paths under
ROOT: the release's own venv python, ``-m murmur.device serve``) in its ``WorkingDirectory``, with the null sink paced in
real time, and waits for its READY=1 on a notify socket like systemd does for ``Type=notify`` (``restart`` fails
if the service dies or does not get ready). Every call is appended to ROOT/var/log/systemctl.calls; the service's
output goes to ROOT/var/log/murmur.log (the journal's stand-in).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT_S = 90.0  # TimeoutStartSec of the unit
STOP_TIMEOUT_S = 15.0


def main(argv: list[str]) -> int:
    root = Path(argv[1])
    verb = argv[2] if len(argv) > 2 else ""
    args = [a for a in argv[3:] if not a.startswith("-")]
    log_dir = root / "var/log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "systemctl.calls", "a") as f:
        f.write(" ".join(argv[2:]) + "\n")
    if args and args[0] not in ("murmur", "murmur.service"):
        return 0  # other units (the governor): recorded only
    run_dir = root / "run/loopback-systemd"
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = run_dir / "murmur.pid"
    if verb == "is-active":
        return 0 if running(pid_file) else 3
    if verb == "stop":
        stop(pid_file)
        return 0
    if verb in ("start", "restart"):
        if verb == "start" and running(pid_file):
            return 0
        stop(pid_file)
        return start(root, pid_file, run_dir)
    if verb == "reload":
        pid = running(pid_file)
        if not pid:
            print("murmur.service is not active, cannot reload.", file=sys.stderr)
            return 1
        os.kill(pid, signal.SIGHUP)
        return 0
    return 0  # daemon-reload, enable, …


def running(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:  # a zombie is not running
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            return None
    except (OSError, IndexError):
        return None
    return pid


def stop(pid_file: Path) -> None:
    pid = running(pid_file)
    if not pid:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while running(pid_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    if running(pid_file):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def unit_command(root: Path) -> tuple[list[str], Path]:
    """(ExecStart argv, WorkingDirectory) of the installed unit, with its /opt and /etc paths under ``root``."""
    directives: dict[str, str] = {}
    for line in (root / "etc/systemd/system/murmur.service").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("ExecStart", "WorkingDirectory"):
            directives[key.strip()] = value.strip()

    def under_root(arg: str) -> str:
        return f"{root}{arg}" if arg.startswith(("/opt/", "/etc/")) else arg

    return [under_root(a) for a in shlex.split(directives["ExecStart"])], Path(under_root(directives["WorkingDirectory"]))


def start(root: Path, pid_file: Path, run_dir: Path) -> int:
    try:
        argv, workdir = unit_command(root)
    except (OSError, KeyError) as exc:
        print(f"murmur.service: no usable unit under {root}: {exc}", file=sys.stderr)
        return 1
    if not workdir.is_dir():
        print(f"murmur.service: {workdir} missing (no release)", file=sys.stderr)
        return 1
    if not os.access(argv[0], os.X_OK):
        print(f"murmur.service: failed at step EXEC spawning {argv[0]}: No such file or directory", file=sys.stderr)
        return 1
    notify_path = run_dir / f"notify-{os.getpid()}.sock"
    notify_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path), MURMUR_SINK="null",
               MURMUR_STATUS_FILE=str(root / "run/murmur/status.json"), PYTHONUNBUFFERED="1",
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("MURMUR_RELEASE", None)
    (root / "run/murmur").mkdir(parents=True, exist_ok=True)
    with open(root / "var/log/murmur.log", "ab") as log:
        proc = subprocess.Popen(argv, cwd=str(workdir), env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + START_TIMEOUT_S
    sock.settimeout(0.2)
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                print(f"murmur.service: main process exited, code={proc.returncode}", file=sys.stderr)
                return 1
            try:
                if b"READY=1" in sock.recv(4096).split(b"\n"):
                    return 0
            except TimeoutError:
                continue
        print("murmur.service: start operation timed out", file=sys.stderr)
        return 1
    finally:
        sock.close()
        notify_path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
