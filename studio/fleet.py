"""Send to the gallery: the existing deploy tool (`python -m murmur.deploy`) in a child process, its lines kept for the page.

The studio adds nothing to the deploy itself: install if needed, verify, switch, health gate and rollback are
the tool's (deploy/README.md), and so are the per-host summary lines the page shows.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from .errors import StudioError

HOST_WORD = re.compile(r"^(@?[A-Za-z0-9_.:@\-\[\]]+)$")  # inventory names, @groups, all, user@host, host:port
STATUS_TIMEOUT_S = 120
# "  pi1: OK     playing release r1 bundle b level -20.1 dBFS underruns 0 uptime 3 s temp 45.0 C clock … (0.4 s)"
SUMMARY = re.compile(r"^\s+(?P<host>\S+): (?P<ok>OK|FAILED)\s+(?P<text>.*?)(?: \((?P<seconds>[0-9.]+) s\))?$")
STATUS_FIELDS = re.compile(
    r"^(?P<state>\S+) release (?P<release>\S+) bundle (?P<bundle>\S+) level (?P<level>\S+) dBFS underruns (?P<underruns>\S+) "
    r"uptime (?P<uptime>\S+) s temp (?P<temp>\S+) C clock (?P<clock>\S+) throttled (?P<throttled>.+)$")


def parse_hosts(text: str) -> list[str]:
    """The page's host field -> words for the deploy tool; StudioError for anything that is not a host name."""
    words = text.replace(",", " ").split()
    if not words:
        raise StudioError("no Pi chosen: type host names, inventory names or @group (e.g. gallery-pi.local @room1)")
    for word in words:
        if word.startswith("-") or not HOST_WORD.match(word):
            raise StudioError(f"{word!r} is not a host name, inventory name or @group")
    return words


def parse_summary(lines: list[str]) -> list[dict]:
    """The tool's summary block -> one dict per host (host, ok, text, and for status the report's fields)."""
    rows: list[dict] = []
    in_summary = False
    for line in lines:
        if line.strip() == "summary:":
            in_summary, rows = True, []
            continue
        match = SUMMARY.match(line) if in_summary else None
        if match:
            row = {"host": match["host"], "ok": match["ok"] == "OK", "text": match["text"].strip()}
            fields = STATUS_FIELDS.match(match["text"].strip())
            if fields:
                row.update(fields.groupdict())
            rows.append(row)
    return rows


class ToolJob:
    """``python -m murmur.deploy COMMAND HOSTS …`` with every output line kept (the page polls ``state()``)."""

    def __init__(self, command: str, hosts: list[str], *, extra: list[str], tool_args: list[str],
                 cwd: Path, python: str = sys.executable):
        self.command = command
        self.hosts = hosts
        self.argv = [python, "-m", "murmur.deploy", command, *hosts, *tool_args, *extra]
        self.cwd = cwd
        self.lines: list[str] = []
        self.code: int | None = None
        self.started = time.time()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def start(self) -> ToolJob:
        from .training import child_env

        env = child_env()
        self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, text=True, env=env, cwd=self.cwd, bufsize=1)
        self._reader = threading.Thread(target=self._read, name=f"studio-{self.command}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
        self.code = self._proc.wait()

    def wait(self, timeout: float) -> bool:
        assert self._proc is not None
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return False
        self._reader.join(timeout=5)  # it drains the last lines after the exit
        return True

    def state(self) -> dict:
        with self._lock:
            lines = list(self.lines)
        return {"command": self.command, "hosts": self.hosts, "lines": lines, "running": self.code is None,
                "code": self.code, "ok": self.code == 0, "summary": parse_summary(lines),
                "elapsed_s": round(time.time() - self.started, 1)}
