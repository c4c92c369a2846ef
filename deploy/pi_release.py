"""The Pi side of a deploy: finalise a staged release, verify it, switch, gate on health, roll back on failure.

Runs on the Pi with the system ``python3`` (standard library only); the laptop pipes this file over ssh
(``ssh pi python3 - COMMAND …``), so the Pi always runs the laptop's version of the procedure.

Layout under ``ROOT`` (empty on a real Pi; a temporary directory in the tests)::

    /opt/murmur/releases/<id>/        code (device/, deploy/, README.md), release.json, bundle -> ../../bundles/<name>,
                                      venv -> ../../venvs/<key>
    /opt/murmur/current -> releases/<id>      the ONE pointer: code, venv, bundle, unit and managed config switch together
    /opt/murmur/bundles/<name>/       bundles, named <bundle_id>-<sha of bundle.json> (content-addressed)
    /opt/murmur/venvs/<key>/          one venv per deploy/requirements-pi.txt (key: its sha256, 16 hex digits), shared
                                      by the releases that pin the same packages; ``.murmur-complete`` marks it whole
    /opt/murmur/.deploy/              lock, activation journal, per-release logs and results
    /etc/murmur/murmur.toml           its [playback] bundle = "/opt/murmur/current/bundle"

Crash safety: everything is built under a dot-name (``.staging-*``), fsynced, then renamed into place; the live
state changes only by renaming a new ``current`` symlink over the old one. An activation journal written before
the switch lets the next run undo a switch whose health gate never finished (kill, lost laptop), and after a power
cut ``murmur-recover.service`` (``boot``) undoes it before the service starts: what was live before plays again.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path

# The service's status report, mirrored from device/appliance/status.py (this file may import only the standard library);
# tests/device/appliance/test_status_schema.py fails when the two drift apart or when this file reads a key not listed here.
STATUS_FIELDS = ("playing", "ready", "state", "message", "level_dbfs_10s", "peak_dbfs_10s", "underruns",
                 "frames_produced", "reseeds", "engine_load", "vocoder", "bundle_id", "bundle_path", "bundle_age_s", "playlist_index", "playlist_length",
                 "uptime_s", "schedule", "knobs", "osc", "room", "midi", "restarts", "reloads", "rejected_reloads", "watchdog_pings",
                 "last_problem", "cpu_temp_c", "throttled", "clock", "release", "venv", "updated_unix", "pid")
STATUS_STATES = ("starting", "playing", "quiet-hours", "error", "stopped")

UNIT_NAME = "murmur.service"
NETWORK_DROPIN = "network.conf"  # in /etc/systemd/system/murmur.service.d/, only while [osc] or [room] is on
# Who may send when [osc] allowed_senders is empty: mirrored from murmur.device.controls.osc.PRIVATE_NETWORKS
# (this file may import only the standard library); tests/deploy/test_network_dropin.py checks the two agree.
PRIVATE_NETWORKS = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                    "::1/128", "fc00::/7", "fe80::/10")
LOCALHOST = ("127.0.0.0/8", "::1/128")
SERVICE = "murmur"
KEEP_RELEASES = 5
STAGING = ".staging-"
TRASH = ".trash-"


class DeployFailed(Exception):
    """A step failed; the message says which and why (printed as the host's summary)."""


# ---------------------------------------------------------------------------------------------------- layout
def status_file(root: Path, environ: Mapping[str, str]) -> Path:
    """The service's status file: ``$MURMUR_STATUS_FILE``, else ``status.json`` in the first entry of
    ``$RUNTIME_DIRECTORY``, else ``run/murmur/status.json`` under ``root``."""
    # The rule of murmur.device.appliance.health.status_path, which the service and every other reader use; this
    # script runs with the standard library only and cannot import murmur, so it mirrors it
    # (tests/device/appliance/test_status_schema.py checks that the two agree).
    if environ.get("MURMUR_STATUS_FILE"):
        return Path(environ["MURMUR_STATUS_FILE"])
    if environ.get("RUNTIME_DIRECTORY"):
        return Path(environ["RUNTIME_DIRECTORY"].split(":")[0]) / "status.json"
    return root / "run/murmur/status.json"


class Layout:
    """Paths on the Pi, all under ``root`` (the empty string on a real Pi)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root or "/")
        self.base = self.root / "opt/murmur"
        self.releases = self.base / "releases"
        self.bundles = self.base / "bundles"
        self.current = self.base / "current"
        self.state = self.base / ".deploy"
        self.journal = self.state / "activation.json"
        self.lock = self.state / "lock"
        self.venvs = self.base / "venvs"
        self.installed = self.state / "installed.sha256"  # sha256 of the install.sh that last ran to the end
        self.unit = self.root / "etc/systemd/system" / UNIT_NAME
        self.dropin = self.root / "etc/systemd/system" / f"{UNIT_NAME}.d" / NETWORK_DROPIN
        self.config = self.root / "etc/murmur/murmur.toml"
        self.status_file = status_file(self.root, os.environ)

    def current_id(self) -> str | None:
        """The release ``current`` points at, or None (first deploy, or a dangling link)."""
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        release = self.releases / Path(target).name
        return release.name if release.is_dir() else None

    def release_ids(self) -> list[str]:
        """Finished releases, oldest first (ids start with a UTC timestamp, so names sort by age)."""
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if p.is_dir() and not p.name.startswith("."))

    def release_meta(self, release_id: str) -> dict:
        try:
            return json.loads((self.releases / release_id / "release.json").read_text())
        except (OSError, ValueError):
            return {}


# ------------------------------------------------------------------------------------------- the network
def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return False
    return True


def _peer_host(peer: str) -> str:
    """"192.168.1.12:9001" -> "192.168.1.12"; "[fe80::1]:9001" -> "fe80::1"; a host name stays a host name."""
    peer = peer.strip()
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    return peer.rpartition(":")[0] if peer.count(":") == 1 else peer


def network_dropin(config_text: str | None) -> str | None:
    """The unit's network drop-in for a config file's text, or None: the unit as shipped (no network at all:
    ``PrivateNetwork=yes``, ``RestrictAddressFamilies=AF_UNIX``, ``IPAddressDeny=any``) unless ``[osc]`` or
    ``[room]`` is on. Then the service gets the host's network and IPv4/IPv6 sockets, and the kernel lets through
    only packets from and to the allowed senders, the room's peers and localhost (``IPAddressAllow=``); private
    networks (``PRIVATE_NETWORKS``) where a list is empty or a peer is a host name (the address it resolves to
    is not known here). A config that is not valid TOML gets none: the service refuses it anyway."""
    try:
        data = tomllib.loads(config_text or "")
    except tomllib.TOMLDecodeError:
        return None
    tables = {name: data.get(name) for name in ("osc", "room")}
    on = {name: t for name, t in tables.items() if isinstance(t, dict) and t.get("enabled") is True}
    if not on:
        return None
    allow: list[str] = list(LOCALHOST)
    if "osc" in on:
        senders = [str(x) for x in on["osc"].get("allowed_senders") or [] if isinstance(x, str)]
        allow += senders if senders and all(map(_is_ip, senders)) else list(PRIVATE_NETWORKS)
    if "room" in on:
        peers = [_peer_host(str(x)) for x in on["room"].get("peers") or [] if isinstance(x, str)]
        allow += peers if all(map(_is_ip, peers)) else list(PRIVATE_NETWORKS)
    allow = list(dict.fromkeys(allow))
    why = " and ".join(f"[{name}] enabled = true" for name in on)
    return (f"# Written by deploy/pi_release.py because /etc/murmur/murmur.toml has {why}: the service may use the\n"
            "# network (UDP), only with these addresses. Rewritten or removed at every deploy and by\n"
            "# `sudo python3 /opt/murmur/current/deploy/pi_release.py network`; do not edit (deploy/README.md).\n"
            "[Service]\n"
            "PrivateNetwork=no\n"
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"
            "IPAddressDeny=any\n"
            f"IPAddressAllow={' '.join(allow)}\n")


def install_network_dropin(layout: Layout) -> bool:
    """Write, replace or remove the unit's network drop-in to match the config now at /etc/murmur/murmur.toml;
    True if it changed (systemd must re-read the unit and the service restart to get it)."""
    try:
        text: str | None = layout.config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    wanted = network_dropin(text)
    present = layout.dropin.read_text() if layout.dropin.is_file() else None
    if wanted == present:
        return False
    if wanted is None:
        layout.dropin.unlink()
        fsync_path(layout.dropin.parent)
    else:
        layout.dropin.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(layout.dropin, wanted.encode())
    return True


# ---------------------------------------------------------------------------------------------- durability
def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory fsync makes the renames and links in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(top: Path) -> None:
    """fsync every regular file and directory below ``top`` (before it is renamed into place)."""
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                fsync_path(path)
        fsync_path(Path(dirpath))


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: temporary sibling, fsync, rename, fsync the directory."""
    # murmur.device.files.replace_file is the one implementation everywhere else; this script runs on the Pi
    # with the standard library only and cannot import murmur, so it keeps its own.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_path(path.parent)


def point_symlink(link: Path, target: str) -> None:
    """Make ``link`` point at ``target`` atomically (``ln -s`` to a temporary name, then rename over)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_path(link.parent)


def remove_tree(path: Path, trash_dir: Path) -> None:
    """Delete a directory so that no half-deleted copy keeps a valid name: rename to .trash-*, then delete."""
    if not (path.exists() or path.is_symlink()):
        return
    trash = trash_dir / f"{TRASH}{path.name}-{os.getpid()}-{time.monotonic_ns()}"
    os.replace(path, trash)
    fsync_path(trash_dir)
    shutil.rmtree(trash, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- venvs
VENV_COMPLETE = ".murmur-complete"
REQUIREMENTS = "deploy/requirements-pi.txt"


def venv_key(requirements: Path) -> str:
    """The venv a requirements file needs: the first 16 hex digits of its sha256."""
    return sha256_file(requirements)[:16]


def complete_venvs(layout: Layout) -> list[str]:
    """Keys of the venvs that finished building (a power cut mid-build leaves one without its marker)."""
    if not layout.venvs.is_dir():
        return []
    return sorted(p.name for p in layout.venvs.iterdir() if (p / VENV_COMPLETE).is_file())


FALLBACK_LINE = re.compile(r"^#if-system-lacks\s+([A-Za-z0-9_.-]+)\s*(?:>=\s*([0-9][0-9.]*))?\s*:\s*(.+)$")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def system_fallbacks(requirements: Path) -> dict[str, list[str]]:
    """The PyPI pins to add because this OS's Python lacks a package Raspberry Pi OS's apt gives: the
    ``#if-system-lacks NAME[>=VERSION]: PINS`` lines of ``requirements`` whose NAME is missing (or older) here.

    Plain Debian 12 has no python3-lgpio and ships gpiozero 1.6 (no lgpio pin factory); Raspberry Pi OS has both,
    so there nothing is added and apt's packages are used through --system-site-packages."""
    import importlib.metadata
    import importlib.util

    extra: dict[str, list[str]] = {}
    for line in requirements.read_text().splitlines():
        match = FALLBACK_LINE.match(line.strip())
        if not match:
            continue
        name, minimum, pins = match.group(1), match.group(2), match.group(3).split()
        try:
            version: str | None = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = None if importlib.util.find_spec(name.replace("-", "_")) is None else ""
        if version is None or (minimum and version and _version_tuple(version) < _version_tuple(minimum)):
            extra[f"{name}{'>=' + minimum if minimum else ''} (found {version or 'none'})"] = pins
    return extra


def build_venv(layout: Layout, requirements: Path) -> tuple[str, bool]:
    """Make ``venvs/<key>`` for ``requirements`` unless it is complete already; returns (key, built).

    A new venv never touches the one the live release runs: that is what lets a deploy with new packages fail and
    leave the old code on its old packages. ``--system-site-packages`` lets apt's gpiozero, lgpio, spidev, PyAudio
    and systemd bindings through (PyAudio and systemd-python have no aarch64 wheels; lgpio is the only pin factory
    on a Pi 5). $MURMUR_PIP replaces ``python -m pip`` (tests; the venv's path is in $VIRTUAL_ENV for it).
    """
    if not requirements.is_file():
        raise DeployFailed(f"{requirements}: not found; the release must hold {REQUIREMENTS}")
    key = venv_key(requirements)
    venv = layout.venvs / key
    if (venv / VENV_COMPLETE).is_file():
        return key, False
    layout.venvs.mkdir(parents=True, exist_ok=True)
    remove_tree(venv, layout.venvs)  # an unfinished build (power cut, kill): start over
    step("venv", f"building venvs/{key} (pip install -r {REQUIREMENTS}; minutes on a Pi)")
    pip = os.environ.get("MURMUR_PIP")
    make = [sys.executable, "-m", "venv", "--system-site-packages", *(["--without-pip"] if pip else []), str(venv)]
    extra = system_fallbacks(requirements)
    if extra:
        print(f"venv: this OS lacks {', '.join(sorted(extra))} from apt (Raspberry Pi OS has them): "
              f"pip adds {' '.join(p for pins in extra.values() for p in pins)}", flush=True)
    install = ([pip] if pip else [str(venv / "bin/python"), "-m", "pip"]) + [
        "install", "--disable-pip-version-check", "--no-input", "-q", "-r", str(requirements),
        *[p for pins in extra.values() for p in pins]]
    env = dict(os.environ, VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '')}")
    for argv in (make, install):
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:])
            remove_tree(venv, layout.venvs)
            raise DeployFailed(f"building venvs/{key} failed at `{' '.join(argv[:4])} …` ({proc.returncode}): {tail}. "
                               "Check the Pi's network (pip needs PyPI) and "
                               f"{REQUIREMENTS}, then deploy again")
    shutil.copy2(requirements, venv / "requirements-pi.txt")
    step("venv-installed")
    os.sync()  # thousands of files: one sync instead of an fsync each, then the marker that says it is whole
    write_atomic(venv / VENV_COMPLETE, f"{sha256_file(requirements)}\n".encode())
    step("venv-ready", key)
    return key, True


# ------------------------------------------------------------------------------------------------ the steps
KILL_AT = os.environ.get("MURMUR_DEPLOY_KILL_AT", "")  # tests: SIGKILL this process at the named step


def step(name: str, message: str = "") -> None:
    """Report progress (the laptop prints it) and, in the kill-at-each-step test, die here like a power cut."""
    print(f"step {name}{': ' + message if message else ''}", flush=True)
    if KILL_AT == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Pi:
    """One Pi's deploy operations; ``python``/``systemctl`` are injectable (tests, odd installs)."""

    def __init__(self, layout: Layout, *, python: str, systemctl: str, gate_timeout_s: float, min_level_dbfs: float,
                 allow_quiet_hours: bool) -> None:
        self.layout = layout
        self.python_override = python
        self.systemctl = systemctl.split()
        self.gate_timeout_s = gate_timeout_s
        self.min_level_dbfs = min_level_dbfs
        self.allow_quiet_hours = allow_quiet_hours

    def python(self, release_dir: Path) -> str:
        """The python that runs ``release_dir``'s code: its own venv (as the unit runs current/venv/bin/python)."""
        return self.python_override or str(release_dir / "venv/bin/python")

    # -- service manager -------------------------------------------------------------------------------------
    def systemd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.systemctl, *args], capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise DeployFailed(f"systemctl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
        return proc

    def service_active(self) -> bool:
        return self.systemd("is-active", "--quiet", SERVICE, check=False).returncode == 0

    # -- health ------------------------------------------------------------------------------------------------
    def read_status(self, release_dir: Path) -> dict | None:
        """The service's health report via ``python -m murmur.device status --json`` (the file itself if that fails)."""
        env = dict(os.environ, MURMUR_STATUS_FILE=str(self.layout.status_file), PYTHONDONTWRITEBYTECODE="1")
        try:
            proc = subprocess.run([self.python(release_dir), "-m", "murmur.device", "status", "--json"], cwd=release_dir, env=env,
                                  capture_output=True, text=True, timeout=30)
            report = json.loads(proc.stdout)
            if isinstance(report, dict) and "ready" in report:
                return report
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        try:
            return json.loads(self.layout.status_file.read_text())
        except (OSError, ValueError):
            return None

    def health_problem(self, report: dict | None, *, release_id: str, bundle_id: str, since_unix: float,
                       old_pid: int | None, restarted: bool) -> str | None:
        """None if ``report`` shows the wanted release and bundle playing; otherwise what is wrong."""
        if report is None:
            return "no health report (status.json missing or unreadable)"
        if float(report.get("updated_unix", 0)) < since_unix:
            return "health report not updated since the switch"
        if restarted and old_pid is not None and report.get("pid") == old_pid:
            return f"service not restarted yet (pid {old_pid})"
        if restarted and report.get("release") not in (None, release_id):  # a reload keeps the process (same code)
            return f"running release {report.get('release')!r}, wanted {release_id!r}"
        if report.get("bundle_id") != bundle_id:
            return f"playing bundle {report.get('bundle_id')!r}, wanted {bundle_id!r}"
        age = report.get("bundle_age_s")
        if isinstance(age, (int, float)) and age > time.time() - since_unix + 1.0:
            return f"bundle {bundle_id!r} was loaded {age:.0f} s ago, before the switch (reload refused?)"
        state = report.get("state")
        if state == "quiet-hours" and self.allow_quiet_hours and report.get("ready"):
            return None
        if not report.get("ready"):
            return f"not READY (state {state!r})"
        if state != "playing" or not report.get("playing"):
            return f"not playing (state {state!r})"
        level = report.get("level_dbfs_10s")
        if not isinstance(level, (int, float)) or level < self.min_level_dbfs:
            return f"no audio flowing: level {level} dBFS over 10 s is below {self.min_level_dbfs} dBFS"
        return None

    def gate(self, release_id: str, *, since_unix: float, old_pid: int | None, restarted: bool) -> str | None:
        """Wait until the service plays ``release_id`` (None) or the bound passes (the last problem seen)."""
        release_dir = self.layout.releases / release_id
        bundle_id = bundle_id_of(release_dir / "bundle")
        deadline = time.monotonic() + self.gate_timeout_s
        problem: str | None = "no check ran"
        while True:
            report = self.read_status(release_dir)
            problem = self.health_problem(report, release_id=release_id, bundle_id=bundle_id, since_unix=since_unix,
                                          old_pid=old_pid, restarted=restarted)
            if problem is None:
                return None
            if report and report.get("state") == "error" and float(report.get("updated_unix", 0)) >= since_unix:
                return f"service reports state 'error' ({report.get('message') or 'no reason given; see make logs'})"
            if time.monotonic() >= deadline:
                return f"{problem} (after {self.gate_timeout_s:.0f} s)"
            time.sleep(0.25)

    # -- activation --------------------------------------------------------------------------------------------
    def install_release_files(self, release_id: str) -> bool:
        """Install the unit (and a managed config) of ``release_id`` if they differ; True if the unit changed."""
        release = self.layout.releases / release_id
        unit_changed = False
        unit_src = release / "deploy" / UNIT_NAME
        if unit_src.is_file():
            data = unit_src.read_bytes()
            if not self.layout.unit.is_file() or self.layout.unit.read_bytes() != data:
                write_atomic(self.layout.unit, data)
                unit_changed = True
        managed = release / "site" / "murmur.toml"
        if managed.is_file():
            data = managed.read_bytes()
            if not self.layout.config.is_file() or self.layout.config.read_bytes() != data:
                write_atomic(self.layout.config, data)
        if unit_src.is_file() and install_network_dropin(self.layout):  # the drop-in follows the config in force
            unit_changed = True
        return unit_changed

    def switch_files(self, release_id: str | None) -> bool:
        """Point ``current`` at ``release_id`` (None: remove it) and install that release's unit and managed config;
        True if the unit changed (systemd must re-read it)."""
        if release_id is None:
            if self.layout.current.is_symlink():
                self.layout.current.unlink()
                fsync_path(self.layout.base)
            return False
        point_symlink(self.layout.current, f"releases/{release_id}")
        step("switched", f"current -> releases/{release_id}")
        return self.install_release_files(release_id)

    def switch_to(self, release_id: str | None, *, reload_ok: bool) -> bool:
        """Point ``current`` at ``release_id`` and make the service pick it up; True if it was restarted."""
        unit_changed = self.switch_files(release_id)
        if release_id is None:
            self.systemd("stop", SERVICE, check=False)
            return False
        if unit_changed:
            self.systemd("daemon-reload")
        if reload_ok and not unit_changed and self.service_active():
            self.systemd("reload", SERVICE)
            step("reloaded")
            return False
        self.systemd("restart", SERVICE)
        step("restarted")
        return True

    def activate(self, to_id: str, *, reload_ok: bool) -> dict:
        """Switch to ``to_id``, gate, and switch back on failure. Returns the result record."""
        from_id = self.layout.current_id()
        started = time.monotonic()
        write_atomic(self.layout.journal, json.dumps({"from": from_id, "to": to_id, "reload_ok": reload_ok,
                                                      "started_unix": time.time()}).encode())
        step("journal")
        old_pid = (self.read_status(self.layout.releases / to_id) or {}).get("pid")
        since = time.time()
        try:
            restarted = self.switch_to(to_id, reload_ok=reload_ok)
            problem = self.gate(to_id, since_unix=since, old_pid=old_pid, restarted=restarted)
        except DeployFailed as exc:  # e.g. the new code dies before READY, so `systemctl restart` fails
            restarted, problem = True, str(exc)
        if problem is None:
            state = (self.read_status(self.layout.releases / to_id) or {}).get("state")
            quiet = " (quiet hours: READY, silent on schedule)" if state == "quiet-hours" else ""
            step("healthy", f"{to_id} plays{quiet}, after {time.monotonic() - started:.1f} s")
            write_atomic(self.layout.releases / to_id / "HEALTHY", f"{time.time():.0f}\n".encode())
            self.layout.journal.unlink(missing_ok=True)
            fsync_path(self.layout.state)
            self.prune()
            return {"ok": True, "release": to_id, "seconds": round(time.monotonic() - started, 2),
                    "mode": "restart" if restarted else "reload"}
        step("unhealthy", problem)
        back = self.roll_back_to(from_id, reload_ok=reload_ok and not restarted)
        return {"ok": False, "release": from_id, "failed_release": to_id, "reason": f"health gate: {problem}",
                "rollback": back, "seconds": round(time.monotonic() - started, 2)}

    def roll_back_to(self, from_id: str | None, *, reload_ok: bool) -> str:
        """Switch back to ``from_id`` after a failed gate; says how that went."""
        started = time.monotonic()
        since = time.time()
        old_pid = (self.read_status(self.layout.releases / from_id) or {}).get("pid") if from_id else None
        try:
            restarted = self.switch_to(from_id, reload_ok=reload_ok)
        except DeployFailed as exc:
            restarted = True
            step("rollback-restart-failed", str(exc))
        if from_id is None:
            self.layout.journal.unlink(missing_ok=True)
            return "nothing was live before: current removed and the service stopped"
        problem = self.gate(from_id, since_unix=since, old_pid=old_pid if restarted else None, restarted=restarted)
        self.layout.journal.unlink(missing_ok=True)
        fsync_path(self.layout.state)
        took = time.monotonic() - started
        step("rolled-back", f"to {from_id} in {took:.1f} s" + (f", but it is not healthy: {problem}" if problem else ""))
        if problem:
            return f"switched back to {from_id} in {took:.1f} s, but it is NOT healthy either: {problem}"
        return f"switched back to {from_id} in {took:.1f} s; it plays again"

    def recover(self, *, at_boot: bool = False) -> str | None:
        """Undo an activation whose gate never finished (journal left behind by a power cut or a kill).

        ``at_boot``: run by murmur-recover.service before the service starts, so only the files switch back (and
        systemd re-reads a changed unit); the service then starts on the old release by itself.
        """
        try:
            journal = json.loads(self.layout.journal.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            self.layout.journal.unlink()
            return "removed an unreadable activation journal"
        to_id, from_id = journal.get("to"), journal.get("from")
        current = self.layout.current_id()
        if current == to_id and not (self.layout.releases / str(to_id) / "HEALTHY").exists():
            if at_boot:
                if self.switch_files(from_id):
                    self.systemd("daemon-reload", check=False)
            else:
                self.switch_to(from_id, reload_ok=False)
            message = f"an interrupted deploy of {to_id} was undone: back on {from_id}"
        elif current == to_id:
            message = f"an interrupted deploy of {to_id} had passed its health gate; it stays"
        else:
            message = f"an interrupted deploy of {to_id} had not switched; {current} stays"
        self.layout.journal.unlink(missing_ok=True)
        fsync_path(self.layout.state)
        return message

    # -- housekeeping ------------------------------------------------------------------------------------------
    def clean_staging(self) -> None:
        """Remove what killed runs left: staging and trash directories, temporary symlinks."""
        if self.layout.base.is_dir():
            for p in self.layout.base.iterdir():
                if p.name.startswith(".current.tmp-"):
                    p.unlink()
        for parent in (self.layout.releases, self.layout.bundles, self.layout.venvs, self.layout.state):
            if parent.is_dir():
                for p in parent.iterdir():
                    if p.name.startswith((STAGING, TRASH)):
                        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink()

    def prune(self, keep: int = KEEP_RELEASES) -> None:
        """Delete releases that never passed their gate, keep the newest ``keep`` (always current), then delete the
        bundles and venvs no release refers to."""
        current = self.layout.current_id()
        for release_id in self.layout.release_ids():  # failed or interrupted ones first (their logs stay in .deploy)
            if release_id != current and not (self.layout.releases / release_id / "HEALTHY").exists():
                remove_tree(self.layout.releases / release_id, self.layout.releases)
        ids = self.layout.release_ids()
        for release_id in ids[:-keep] if len(ids) > keep else []:
            if release_id != current:
                remove_tree(self.layout.releases / release_id, self.layout.releases)
        for link, parent in (("bundle", self.layout.bundles), ("venv", self.layout.venvs)):
            used = set()
            for release_id in self.layout.release_ids():
                target = self.layout.releases / release_id / link
                if target.is_symlink():
                    used.add(Path(os.readlink(target)).name)
            if parent.is_dir():
                for entry in parent.iterdir():
                    if not entry.name.startswith(".") and entry.name not in used:
                        remove_tree(entry, parent)


def bundle_id_of(bundle_dir: Path) -> str:
    try:
        return str(json.loads((bundle_dir / "bundle.json").read_text()).get("bundle_id", "unknown"))
    except (OSError, ValueError):
        return "unreadable"


def lock(layout: Layout):
    """Exclusive per-Pi deploy lock (inherited by the detached activation; freed when it exits)."""
    layout.state.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        raise DeployFailed(f"another deploy is running on this Pi (pid {holder or '?'}); wait for it and retry") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


RELEASE_OWN = {"release.json", "HEALTHY", "bundle", "venv"}  # per-release files, not part of the code id


def code_id_of(tree: Path) -> str:
    """The code id of a release tree: sha256 over (relative path, file sha256) of every file, as the laptop makes it."""
    files = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            rel = (Path(dirpath) / name).relative_to(tree)
            if str(rel) not in RELEASE_OWN:
                files.append(str(rel))
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + sha256_file(tree / name).encode() + b"\n")
    return digest.hexdigest()[:16]


def sha256_file(path: Path) -> str:
    # The laptop's one sha256_file is murmur.device.files'; this script runs on the Pi with the standard library
    # only (before the release's code or venv is in place), so it cannot import murmur and keeps this copy.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ commands
def cmd_prepare(pi: Pi, args: argparse.Namespace) -> dict:
    """State the laptop needs to plan: installed?, current release, its code id and bundle, bundles present."""
    layout = pi.layout
    recovered = pi.recover()
    pi.clean_staging()
    for d in (layout.releases, layout.bundles):
        d.mkdir(parents=True, exist_ok=True)
    current = layout.current_id()
    meta = layout.release_meta(current) if current else {}
    install_sha = layout.installed.read_text().strip() if layout.installed.is_file() else None
    return {
        "ok": True,
        "installed": install_sha is not None and layout.unit.is_file(),
        "install_sha256": install_sha,
        "venvs": complete_venvs(layout),
        "current": current,
        "code_id": meta.get("code_id"),
        "bundle": meta.get("bundle"),
        "bundles": sorted(p.name for p in layout.bundles.iterdir() if not p.name.startswith(".")),
        "releases": layout.release_ids(),
        "recovered": recovered,
    }


def copy_release_code(src: Path, dst: Path) -> None:
    """Hard-link the code of an existing release into a new one (bundle-only update: no code crosses the wire).

    Files are never modified in place (rsync and write_atomic replace them), so sharing inodes is safe; the
    per-release files (release.json, HEALTHY, bundle link, managed config) are not carried over.
    """
    skip = RELEASE_OWN

    def ignore(directory: str, names: list[str]) -> set[str]:
        return skip.intersection(names) if Path(directory) == src else {n for n in names if n == "__pycache__"}

    shutil.copytree(src, dst, symlinks=True, ignore=ignore, copy_function=os.link, dirs_exist_ok=True)


def cmd_commit(pi: Pi, args: argparse.Namespace) -> dict:
    """Finalise the staged bundle and release, verify on this Pi, then activate (detached) and follow it."""
    layout = pi.layout
    release_id, bundle_name = args.release, args.bundle
    if (layout.releases / release_id).exists():
        raise DeployFailed(f"release {release_id} already exists on this Pi; deploy again (a new id is made)")
    staged_bundle = layout.bundles / f"{STAGING}{bundle_name}"
    final_bundle = layout.bundles / bundle_name
    new_bundle = False
    if staged_bundle.is_dir():
        if final_bundle.is_dir():
            shutil.rmtree(staged_bundle)
        else:
            fsync_tree(staged_bundle)
            os.replace(staged_bundle, final_bundle)
            fsync_path(layout.bundles)
            new_bundle = True
    if not final_bundle.is_dir():
        raise DeployFailed(f"bundle {bundle_name} is neither on the Pi nor staged; the copy did not finish")
    step("bundle-ready", bundle_name)

    staging = layout.releases / f"{STAGING}{release_id}"
    current = layout.current_id()
    if args.from_current:
        if current is None:
            raise DeployFailed("a bundle-only update needs a live release; deploy the code first")
        copy_release_code(layout.releases / current, staging)
    elif not (staging / "device").is_dir():
        raise DeployFailed(f"staged code {staging} is missing; the copy did not finish")
    found = code_id_of(staging)
    if found != args.code_id:
        raise DeployFailed(f"staged code {staging.name} hashes to {found}, the laptop sent {args.code_id}: the copy is "
                           "incomplete or was changed; deploy again")
    site = staging / "site" / "murmur.toml"
    if site.is_file():  # a managed config gets its own inode: never shared with another release
        write_atomic(site, site.read_bytes())
    key = venv_key(staging / REQUIREMENTS)
    if not (layout.venvs / key / VENV_COMPLETE).is_file():
        raise DeployFailed(f"venvs/{key} (for this release's {REQUIREMENTS}) is not built on this Pi; nothing "
                           "switched. Deploy again: it builds the venv first")
    for link, target in (("bundle", f"../../bundles/{bundle_name}"), ("venv", f"../../venvs/{key}")):
        if (staging / link).is_symlink() or (staging / link).exists():
            (staging / link).unlink()
        os.symlink(target, staging / link)
    meta = {"id": release_id, "code_id": args.code_id, "bundle": bundle_name, "venv": key, "git": args.git,
            "created_unix": time.time(), "from": current}
    (staging / "release.json").write_text(json.dumps(meta, indent=2) + "\n")
    fsync_tree(staging)
    os.replace(staging, layout.releases / release_id)
    fsync_path(layout.releases)
    step("release-ready", release_id)

    problem = verify_release(pi, release_id)
    if problem:
        remove_tree(layout.releases / release_id, layout.releases)
        if new_bundle:
            remove_tree(final_bundle, layout.bundles)
        raise DeployFailed(f"verify on the Pi failed, nothing switched ({current or 'no release'} stays live): {problem}")
    step("verified")
    return run_detached(pi, lambda: pi.activate(release_id, reload_ok=args.reload_ok), layout.state / f"{release_id}.log")


def verify_release(pi: Pi, release_id: str) -> str | None:
    """``python -m murmur.device verify`` from the new release: imports, bundle loads and steps, a second renders."""
    release = pi.layout.releases / release_id
    # `-m device`, not `-m murmur.device`: releases made before the murmur package have no murmur/ folder
    command = [pi.python(release), "-m", "murmur.device", "verify", "--bundle", str(release / "bundle")]
    managed = release / "site" / "murmur.toml"
    if managed.is_file():  # check it as it will read after the switch: current/ is this release
        live = f"{pi.layout.base}/current/"
        as_after = managed.read_text().replace(live, f"{release}/").replace("/opt/murmur/current/", f"{release}/")
        check = pi.layout.state / f"verify-{release_id}.toml"
        check.write_text(as_after)
        command += ["--config", str(check)]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        proc = subprocess.run(command, cwd=release, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "device verify took longer than 600 s"
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()
        return " | ".join(lines[-3:])
    return None


def cmd_rollback(pi: Pi, args: argparse.Namespace) -> dict:
    """Go back to the newest release before the current one that passed its health gate (or --to ID)."""
    layout = pi.layout
    pi.recover()
    current = layout.current_id()
    if args.to:
        target = args.to
        if not (layout.releases / target).is_dir():
            raise DeployFailed(f"release {target} is not on this Pi; present: {', '.join(layout.release_ids())}")
    else:
        older = [r for r in layout.release_ids() if current is None or r < current]
        healthy = [r for r in older if (layout.releases / r / "HEALTHY").exists()]
        if not healthy:
            raise DeployFailed(f"no earlier healthy release to roll back to (releases: {', '.join(layout.release_ids())})")
        target = healthy[-1]
    same_code = layout.release_meta(target).get("code_id") == layout.release_meta(current).get("code_id") if current else False
    return run_detached(pi, lambda: pi.activate(target, reload_ok=same_code), layout.state / f"rollback-{target}.log")


def cmd_boot(pi: Pi, args: argparse.Namespace) -> dict:
    """At boot, before the service starts (deploy/murmur-recover.service, only when a journal exists): a deploy that
    a power cut stopped before its health gate passed is undone, so the Pi plays the release it played before."""
    message = pi.recover(at_boot=True)
    pi.clean_staging()
    if message:
        print(message, flush=True)
    return {"ok": True, "recovered": message}


def cmd_status(pi: Pi, args: argparse.Namespace) -> dict:
    current = pi.layout.current_id()
    report = pi.read_status(pi.layout.releases / current) if current else None
    ok = report is not None and bool(report.get("ok", report.get("playing")))  # playing, or quiet hours by schedule
    return {"ok": ok, "current": current,
            "releases": pi.layout.release_ids(), "status": report}


def run_detached(pi: Pi, work, log_path: Path) -> dict:
    """Run ``work`` in a child in its own session, so a dropped ssh or a killed laptop cannot stop it halfway.

    The child writes its progress to ``log_path`` and its result next to it; this process relays both.
    """
    result_path = log_path.with_suffix(".result.json")
    result_path.unlink(missing_ok=True)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # child: new session, no terminal, output to the log
        try:
            os.setsid()
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            try:
                result = work()
            except DeployFailed as exc:
                result = {"ok": False, "reason": str(exc)}
            except Exception as exc:
                result = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
            write_atomic(result_path, json.dumps(result).encode())
        finally:
            os._exit(0)
    # parent: relay the child's log until it exits
    offset = 0
    while True:
        done = os.waitpid(pid, os.WNOHANG)[0] == pid
        try:
            with open(log_path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
        except FileNotFoundError:
            pass
        if done:
            break
        time.sleep(0.1)
    try:
        return json.loads(result_path.read_text())
    except (OSError, ValueError):
        return {"ok": False, "reason": f"the activation ended without a result; see {log_path}"}


def cmd_venv(pi: Pi, args: argparse.Namespace) -> dict:
    """Build the venv a staged release's requirements need (before ``commit``; install.sh calls this too)."""
    if not args.requirements:
        raise DeployFailed("venv needs --requirements FILE (a release's deploy/requirements-pi.txt)")
    key, built = build_venv(pi.layout, Path(args.requirements))
    return {"ok": True, "venv": key, "built": built}


def cmd_network(pi: Pi, args: argparse.Namespace) -> dict:
    """``sudo python3 /opt/murmur/current/deploy/pi_release.py network``: after [osc] or [room] was switched on or
    off in a config edited on the Pi, write (or remove) the unit's network drop-in and restart the service with it."""
    if not install_network_dropin(pi.layout):
        return {"ok": True, "changed": False, "dropin": str(pi.layout.dropin) if pi.layout.dropin.is_file() else None}
    pi.systemd("daemon-reload")
    pi.systemd("try-restart", SERVICE)
    step("network", f"{pi.layout.dropin} {'written' if pi.layout.dropin.is_file() else 'removed'}; service restarted")
    return {"ok": True, "changed": True, "dropin": str(pi.layout.dropin) if pi.layout.dropin.is_file() else None}


COMMANDS = {"network": cmd_network, "prepare": cmd_prepare, "commit": cmd_commit, "rollback": cmd_rollback, "status": cmd_status,
            "venv": cmd_venv, "boot": cmd_boot}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pi_release.py")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--root", default="", help="filesystem prefix (tests); empty on a real Pi")
    parser.add_argument("--python", default="", help="python with the device code's dependencies (default: the release's venv)")
    parser.add_argument("--systemctl", default="systemctl")
    parser.add_argument("--gate-timeout", type=float, default=60.0, help="seconds to reach READY and play")
    parser.add_argument("--min-level-dbfs", type=float, default=-90.0, help="level over 10 s below which the output counts as silent")
    parser.add_argument("--allow-quiet-hours", action="store_true", help="healthy when ready but in quiet hours")
    parser.add_argument("--release", default="")
    parser.add_argument("--bundle", default="")
    parser.add_argument("--code-id", default="")
    parser.add_argument("--git", default="")
    parser.add_argument("--from-current", action="store_true", help="bundle-only: hard-link the live release's code")
    parser.add_argument("--reload-ok", action="store_true", help="same code: hot reload instead of a restart")
    parser.add_argument("--to", default="", help="rollback: this release instead of the previous healthy one")
    parser.add_argument("--requirements", default="", help="venv: the requirements file to build a venv for")
    args = parser.parse_args(argv)
    layout = Layout(args.root)
    pi = Pi(layout, python=args.python, systemctl=args.systemctl,
            gate_timeout_s=args.gate_timeout, min_level_dbfs=args.min_level_dbfs,
            allow_quiet_hours=args.allow_quiet_hours)
    try:
        lock_fd = lock(layout)
        result = COMMANDS[args.command](pi, args)
        os.close(lock_fd)
    except DeployFailed as exc:
        result = {"ok": False, "reason": str(exc)}
    print("RESULT " + json.dumps(result), flush=True)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
