"""The laptop side of ``make deploy``, ``make rollback``, ``make logs`` and ``make status``: ssh + rsync, per host in
parallel, one summary line per host, exit 1 if any host failed.

Per host: ask the Pi for its state (``pi_release.py prepare``); rsync the code (only if it changed; unchanged
files are hard-linked from the live release) and the bundle (only if the Pi lacks it) into dot-named staging
directories; run ``install.sh`` if the Pi lacks it (or it changed); build the venv for the release's
requirements-pi.txt beside the live one if the Pi has none for it; then ``pi_release.py commit`` finalises,
verifies on the Pi and activates (switch, reload or restart, health gate, automatic switch back).
``pi_release.py`` is piped over ssh.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import murmur
from murmur import REPO_ROOT as REPO
from murmur.device.errors import ConfigError
from murmur.device.files import sha256_file

from .inventory import Host, Inventory, load_inventory, room_table

PI_SCRIPT = Path(__file__).resolve().parent / "pi_release.py"
CODE_DIRS = ("device", "deploy")
CODE_FILES = ("README.md", "LICENSE")
SKIP_PARTS = {"__pycache__", "arm64", ".pytest_cache", "testing"}  # harness: never on a Pi
SKIP_NAME = re.compile(r"(\.pyc$|^inventory.*\.toml$|^\.)")  # laptop-only files
BASE = "/opt/murmur"
print_lock = threading.Lock()


def say(host: str, message: str) -> None:
    with print_lock:
        print(f"[{host}] {message}", flush=True)


# ------------------------------------------------------------------------------------------ what is shipped
def code_files(repo: Path = REPO) -> list[str]:
    """Relative paths of the files a release holds: device/, deploy/ (no laptop-only tooling), README, LICENSE."""
    files = [name for name in CODE_FILES if (repo / name).is_file()]
    for top in CODE_DIRS:
        for path in sorted((repo / top).rglob("*")):
            rel = path.relative_to(repo)
            if path.is_file() and not SKIP_PARTS.intersection(rel.parts) and not SKIP_NAME.search(path.name):
                files.append(str(rel))
    return sorted(files)


@dataclass
class Release:
    """A release built on the laptop: its code tree (temp dir), code id, bundle and names."""

    tree: Path
    code_id: str
    venv_key: str  # sha256 of deploy/requirements-pi.txt, 16 hex digits: the venv this release runs in
    install_sha256: str  # sha256 of deploy/install.sh: the Pi re-runs it when it changed
    bundle_dir: Path
    bundle_id: str
    bundle_name: str
    git: str
    files: list[str] = field(default_factory=list)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_name_of(bundle_dir: Path) -> tuple[str, str]:
    """(bundle_id, content-addressed directory name on the Pi) of a local bundle; checks it first."""
    meta_path = bundle_dir / "bundle.json"
    try:
        from murmur.device.bundle import load_bundle  # numpy is in both laptop venvs; the Pi repeats the full check
    except ImportError:  # pragma: no cover - the tool runs from a venv with numpy
        load_bundle = None  # type: ignore[assignment]
    if load_bundle is not None:
        load_bundle(bundle_dir)
    elif not meta_path.is_file():
        raise ConfigError(f"{bundle_dir}: no bundle.json; BUNDLE= must be a directory written by `make train`")
    raw = meta_path.read_bytes()
    bundle_id = str(json.loads(raw).get("bundle_id", "bundle"))
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", bundle_id).strip(".-")[:60] or "bundle"
    return bundle_id, f"{safe}-{sha256_bytes(raw)[:10]}"


def git_describe(repo: Path = REPO) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *CODE_DIRS], cwd=repo, capture_output=True,
                               text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "nogit"


def build_release(bundle_dir: Path, config: Path | None, work: Path, repo: Path = REPO, room: str = "") -> Release:
    """Copy the code (and a managed config as site/murmur.toml, with ``room``, the host's ``[room]`` table from
    the inventory, added) into ``work``; hash it; check the bundle."""
    tree = work / "release"
    files = code_files(repo)
    for rel in files:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, tree / rel)
    # The one import name on the Pi: murmur/ holds its __init__ and links to the two code folders beside it.
    (tree / "murmur").mkdir(parents=True, exist_ok=True)
    shutil.copy2(Path(murmur.__file__), tree / "murmur" / "__init__.py")
    files.append("murmur/__init__.py")
    for top in CODE_DIRS:
        (tree / "murmur" / top).symlink_to(f"../{top}")
    if config is not None:
        if not config.is_file():
            raise ConfigError(f"config {str(config)!r} (the inventory's config = or CONFIG=): file not found; give "
                              "the path of a murmur.toml (deploy/murmur.toml is the annotated example)")
        (tree / "site").mkdir(parents=True, exist_ok=True)
        shutil.copy2(config, tree / "site" / "murmur.toml")
        if room:
            text = config.read_text(encoding="utf-8")
            if re.search(r"^\s*\[room\]", text, re.M):
                raise ConfigError(f"{config}: has a [room] table and the inventory gives this host a room; delete "
                                  "the table, the deploy writes it from the inventory")
            (tree / "site" / "murmur.toml").write_text(text.rstrip("\n") + "\n" + room, encoding="utf-8")
        files.append("site/murmur.toml")
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + sha256_file(tree / rel).encode() + b"\n")
    requirements, install = tree / "deploy" / "requirements-pi.txt", tree / "deploy" / "install.sh"
    for needed in (requirements, install):
        if not needed.is_file():
            raise ConfigError(f"{repo / needed.relative_to(tree)}: missing; a release needs it (run from a full checkout)")
    bundle_id, bundle_name = bundle_name_of(bundle_dir)
    return Release(tree=tree, code_id=digest.hexdigest()[:16],
                   venv_key=sha256_file(requirements)[:16],
                   install_sha256=sha256_file(install),
                   bundle_dir=bundle_dir, bundle_id=bundle_id, bundle_name=bundle_name, git=git_describe(repo),
                   files=sorted(files))


def new_release_id(git: str) -> str:
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z-{git}"


# ----------------------------------------------------------------------------------------------- transport
class Remote:
    """ssh/rsync to one Pi. ``pi(…)`` runs pi_release.py there and returns its RESULT record."""

    def __init__(self, host: Host, ssh_config: str | None) -> None:
        self.host = host
        self.ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
                    "-o", "ServerAliveCountMax=6"]
        if ssh_config:
            self.ssh += ["-F", ssh_config]
        if host.port:
            self.ssh += ["-p", str(host.port)]
        if host.identity:
            self.ssh += ["-i", host.identity]
        self.root = host.root.rstrip("/")

    def path(self, pi_path: str) -> str:
        """A path on the Pi under the host's root prefix."""
        return f"{self.root}{pi_path}"

    def _prefix(self) -> list[str]:
        env = [f"{k}={v}" for k, v in self.host.env.items()]
        return (["sudo", "-n"] if self.host.sudo else []) + (["env", *env] if env else [])

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float = 900,
            on_line=None) -> tuple[int, str]:
        """Run ``argv`` on the Pi (as root through sudo if configured); stream lines to ``on_line``."""
        command = " ".join(shlex.quote(a) for a in self._prefix() + argv)
        proc = subprocess.Popen([*self.ssh, self.host.destination, command], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if stdin is not None:
                proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:  # ssh already gave up (host unreachable): its exit code and output say why
            pass
        lines: list[str] = []
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                if on_line is not None:
                    on_line(line)
            code = proc.wait()
        finally:
            timer.cancel()
        return code, "\n".join(lines)

    def pi(self, command: str, *args: str, on_line=None) -> dict:
        """pi_release.py COMMAND on the Pi; its last line is ``RESULT {json}``."""
        argv = ["python3", "-", command, "--root", self.root, "--systemctl", self.host.systemctl,
                "--gate-timeout", str(self.host.gate_timeout_s)]
        if self.host.python:
            argv += ["--python", self.host.python]
        if self.host.allow_quiet_hours:
            argv.append("--allow-quiet-hours")
        seen: list[str] = []

        def relay(line: str) -> None:
            if line.startswith("RESULT "):
                seen.append(line)
            elif on_line is not None:
                on_line(line)

        code, output = self.run(argv + list(args), stdin=PI_SCRIPT.read_bytes(), on_line=relay)
        if not seen:
            tail = " | ".join(output.strip().splitlines()[-3:]) or f"ssh exit {code}"
            return {"ok": False, "reason": f"no answer from the Pi ({tail})", "unreachable": code == 255}
        return json.loads(seen[-1][len("RESULT "):])

    def rsync(self, source: str, dest_pi_path: str, *extra: str) -> None:
        """rsync ``source`` into ``dest_pi_path`` (under the root prefix) on the Pi; raises on failure."""
        argv = ["rsync", "-a", "--chmod=D755,Fgo+r,Fgo-w", *extra, "-e", " ".join(shlex.quote(a) for a in self.ssh)]
        if self.host.sudo:
            argv.append("--rsync-path=sudo -n rsync")
        argv += [source, f"{self.host.destination}:{self.path(dest_pi_path)}"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise StepFailed("copy", f"rsync to {dest_pi_path} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


# --------------------------------------------------------------------------------------------- operations
@dataclass
class Outcome:
    host: str
    ok: bool
    summary: str
    seconds: float = 0.0
    result: dict = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.host}: {'OK    ' if self.ok else 'FAILED'} {self.summary} ({self.seconds:.1f} s)"


def deploy_host(host: Host, release_for, ssh_config: str | None) -> Outcome:
    """The whole deploy of one Pi; never raises (a failure becomes the host's summary)."""
    started = time.monotonic()
    remote = Remote(host, ssh_config)
    log = lambda line: say(host.name, line)  # noqa: E731
    try:
        release: Release = release_for(host)
        state = remote.pi("prepare")
        if not state.get("ok"):
            raise StepFailed("connect", state.get("reason", "?"))
        if state.get("recovered"):
            log(f"recovered: {state['recovered']}")
        release_id = new_release_id(release.git)
        staging = f"{BASE}/releases/.staging-{release_id}/"
        code_changed = state.get("code_id") != release.code_id or state.get("current") is None
        needs_install = not state.get("installed") or state.get("install_sha256") != release.install_sha256
        needs_venv = release.venv_key not in state.get("venvs", [])
        if code_changed:
            log(f"copying code ({len(release.files)} files) to {staging}")
            link = ["--link-dest", remote.path(f"{BASE}/releases/{state['current']}")] if state.get("current") else []
            remote.rsync(f"{release.tree}/", staging, *link)
        code_on_pi = staging if code_changed else f"{BASE}/current/"  # same code: the live release has these files
        if needs_install:  # it builds the venv too
            log("first install (or a new install.sh): running deploy/install.sh on the Pi")
            code, output = remote.run(["env", f"MURMUR_ROOT={remote.root}", "sh", remote.path(code_on_pi + "deploy/install.sh")],
                                      on_line=lambda line: log(f"  install: {line}"))
            if code != 0:
                last = output.strip().splitlines()[-1] if output.strip() else f"exit {code}"
                raise StepFailed("install", last)
        elif needs_venv:
            log(f"new requirements-pi.txt: building venvs/{release.venv_key} beside the live one")
            built = remote.pi("venv", "--requirements", remote.path(code_on_pi + "deploy/requirements-pi.txt"),
                              on_line=lambda line: log(f"  pi: {line}"))
            if not built.get("ok"):
                raise StepFailed("venv", built.get("reason", "?"))
        if release.bundle_name not in state.get("bundles", []):
            log(f"copying bundle {release.bundle_id} to bundles/{release.bundle_name}")
            remote.rsync(f"{release.bundle_dir}/", f"{BASE}/bundles/.staging-{release.bundle_name}/")
        elif not code_changed and state.get("bundle") == release.bundle_name:
            return Outcome(host.name, True, f"already live: release {state['current']}, bundle {release.bundle_id}",
                           time.monotonic() - started, state)
        mode = "code + bundle, restart" if code_changed else "bundle only, hot reload"
        log(f"activating release {release_id} ({mode})")
        args = ["commit", "--release", release_id, "--bundle", release.bundle_name, "--code-id", release.code_id,
                "--git", release.git]
        if not code_changed:
            args += ["--from-current", "--reload-ok"]
        result = remote.pi(*args, on_line=lambda line: log(f"  pi: {line}"))
        seconds = time.monotonic() - started
        if result.get("ok"):
            return Outcome(host.name, True, f"release {release_id} live ({mode}), bundle {release.bundle_id} plays",
                           seconds, result)
        why = result.get("reason", "?")
        if result.get("rollback"):
            why += f"; {result['rollback']}"
        return Outcome(host.name, False, why, seconds, result)
    except StepFailed as exc:
        return Outcome(host.name, False, f"at {exc.step}: {exc.reason}; nothing was switched", time.monotonic() - started)
    except Exception as exc:
        return Outcome(host.name, False, f"{type(exc).__name__}: {exc}", time.monotonic() - started)


def rollback_host(host: Host, to: str, ssh_config: str | None) -> Outcome:
    started = time.monotonic()
    args = ["rollback"] + (["--to", to] if to else [])
    result = Remote(host, ssh_config).pi(*args, on_line=lambda line: say(host.name, f"  pi: {line}"))
    seconds = time.monotonic() - started
    if result.get("ok"):
        return Outcome(host.name, True, f"rolled back: release {result.get('release')} plays", seconds, result)
    why = result.get("reason", "?") + (f"; {result['rollback']}" if result.get("rollback") else "")
    return Outcome(host.name, False, why, seconds, result)


def health_report(report: dict) -> str:
    """The Pi's status JSON as the human report ``python -m murmur.device status`` prints there (ages by the Pi's clock)."""
    from murmur.device.appliance.health import format_report
    from murmur.device.appliance.status import StatusReport

    status = StatusReport.from_dict(report)
    pi_now = status.updated_unix + float(report.get("age_s") or 0.0)
    return format_report(status, pi_now)


def status_host(host: Host, ssh_config: str | None) -> Outcome:
    started = time.monotonic()
    result = Remote(host, ssh_config).pi("status")
    report = result.get("status") or {}
    if not report:
        return Outcome(host.name, False, result.get("reason") or "no health report: is murmur running?",
                       time.monotonic() - started, result)
    print(f"==== {host.name} ====\n{health_report(report)}", flush=True)
    summary = (f"{report.get('state')} release {result.get('current')} bundle {report.get('bundle_id')} "
               f"level {report.get('level_dbfs_10s')} dBFS underruns {report.get('underruns')} "
               f"uptime {report.get('uptime_s')} s temp {report.get('cpu_temp_c')} C "
               f"clock {report.get('clock', 'unknown')} throttled {report.get('throttled') or 'unknown'}")
    room = report.get("room") or {}
    if room:
        peers = room.get("peers") or []
        heard = sum(1 for p in peers if p.get("heard_s_ago") is not None)
        steady = bool(peers) and all(p.get("in_step") for p in peers)
        summary += f" room {room.get('name') or '?'} {heard}/{len(peers)} heard{' in step' if steady else ' NOT in step'}"
    return Outcome(host.name, bool(result.get("ok")), summary, time.monotonic() - started, result)


def in_parallel(hosts: list[Host], work) -> int:
    """Run ``work(host) -> Outcome`` for every host at once; print the summary; 0 only if all succeeded."""
    if not hosts:
        print("no hosts: set PI=\"host1 host2 …\" (names from the inventory, @group, all, or ssh destinations)",
              file=sys.stderr)
        return 2
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        outcomes = list(pool.map(work, hosts))
    print("\nsummary:")
    for outcome in outcomes:
        print("  " + outcome.line())
    failed = [o.host for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} hosts OK" + (f"; failed: {' '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def default_inventory() -> str | None:
    for candidate in (os.environ.get("MURMUR_INVENTORY"), "deploy/inventory.toml"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m murmur.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["deploy", "rollback", "logs", "status"])
    parser.add_argument("hosts", nargs="*", help="inventory names, @group, all, or ssh destinations (user@host)")
    parser.add_argument("--inventory", default=None, help="inventory TOML (default: $MURMUR_INVENTORY or deploy/inventory.toml)")
    parser.add_argument("--bundle", default=None, help="bundle for hosts whose inventory entry names none")
    parser.add_argument("--bundle-override", default=None, help="bundle for every host, whatever the inventory says")
    parser.add_argument("--config", type=Path, default=None,
                        help="managed murmur.toml for hosts whose inventory entry names none")
    parser.add_argument("--config-override", type=Path, default=None,
                        help="managed murmur.toml for every host, whatever the inventory says (make deploy CONFIG=…)")
    parser.add_argument("--ssh-config", default=os.environ.get("MURMUR_SSH_CONFIG"), help="ssh -F file")
    parser.add_argument("--to", default="", help="rollback: a release id instead of the previous healthy one")
    parser.add_argument("--repo", type=Path, default=REPO, help="deploy: the checkout whose code is shipped")
    parser.add_argument("--lines", type=int, default=200, help="logs: how many journal lines")
    parser.add_argument("--follow", action="store_true", help="logs: keep following (one host)")
    args = parser.parse_args(argv)
    try:
        inventory: Inventory = load_inventory(args.inventory or default_inventory())
        hosts = inventory.resolve([h for arg in args.hosts for h in arg.split()])
    except ConfigError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    ssh_config = args.ssh_config or inventory.ssh_config

    if args.command == "deploy":
        return deploy_command(hosts, args, ssh_config)
    if args.command == "rollback":
        return in_parallel(hosts, lambda h: rollback_host(h, args.to, ssh_config))
    if args.command == "status":
        return in_parallel(hosts, lambda h: status_host(h, ssh_config))
    worst = 0
    for host in hosts:
        print(f"==== {host.name} ====", flush=True)
        argv = ["journalctl", "-u", "murmur", "--no-pager", "-n", str(args.lines)] + (["-f"] if args.follow else [])
        code, _ = Remote(host, ssh_config).run(argv, on_line=print, timeout=10**9 if args.follow else 120)
        worst = max(worst, code)
    return 1 if worst else 0


def deploy_command(hosts: list[Host], args: argparse.Namespace, ssh_config: str | None) -> int:
    cache: dict[tuple, Release] = {}
    cache_lock = threading.Lock()
    work = Path(tempfile.mkdtemp(prefix="murmur-deploy-"))
    try:
        def release_for(host: Host) -> Release:
            bundle = args.bundle_override or host.bundle or args.bundle
            if not bundle:
                raise StepFailed("plan", "no bundle: set BUNDLE=<dir> or bundle = \"…\" for this host in the inventory")
            room = room_table(host)
            config = args.config_override or host.config or args.config
            config = config.resolve() if config is not None else None
            key = (str(Path(bundle).resolve()), str(config), room)
            with cache_lock:
                if key not in cache:
                    cache[key] = build_release(Path(bundle).resolve(), config, work / f"r{len(cache)}", args.repo,
                                               room)
                return cache[key]

        return in_parallel(hosts, lambda h: deploy_host(h, release_for, ssh_config))
    finally:
        shutil.rmtree(work, ignore_errors=True)
