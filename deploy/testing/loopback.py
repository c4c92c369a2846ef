"""A "Pi" on 127.0.0.1 for the deploy tests and benchmark: a real sshd on its own port with a throw-away host key
and user key, a temporary directory as the Pi's filesystem, and ``systemctl`` replaced by
``deploy/testing/loopback_systemctl.py``, which runs the real ``python -m murmur.device serve`` from the live release (null sink,
paced in real time) and waits for its READY=1 like systemd does for ``Type=notify``.

Laptop-side test tooling only (never shipped to a Pi). Needs root (sshd's privilege separation, login as root).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from murmur.deploy.pi_release import Layout, code_id_of
from murmur.deploy.pi_release import venv_key as requirements_key
from murmur.device.bundle import load_bundle, write_bundle

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SSHD = Path("/usr/sbin/sshd")
STUB = HERE / "loopback_systemctl.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Block until something accepts on 127.0.0.1:port (or sshd died / the bound passed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"sshd did not listen on port {port} within {timeout_s} s")


def root_locked() -> bool:
    """True if root's password is locked with '!': without PAM, sshd then refuses even a key login."""
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            if line.startswith("root:"):
                return line.split(":")[1].startswith("!")
    except OSError:
        pass
    return False


def sshd_available() -> str | None:
    """None if a loopback Pi can run here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "the loopback Pi needs root (sshd privilege separation, login as root)"
    for tool in (str(SSHD), "ssh", "ssh-keygen", "rsync"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install openssh-server openssh-client rsync)"
    return None


@dataclass
class LoopbackPi:
    """One fake Pi. ``root`` is its filesystem; ``inventory_entry()`` says how the deploy tool reaches it."""

    name: str
    workdir: Path
    python: str = ""  # empty: the Pi runs each release in its own venv, as a real one does
    port: int = 0
    proc: subprocess.Popen | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def keys(self) -> Path:
        return self.workdir / "keys"

    def start(self, user_key: Path) -> LoopbackPi:
        self.keys.mkdir(parents=True, exist_ok=True)
        (self.root / "opt/murmur").mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        host_key = self.keys / "host_ed25519"
        if not host_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        (self.keys / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
        self.port = self.port or free_port()
        config = self.keys / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
            f"PidFile {self.keys / 'sshd.pid'}", f"AuthorizedKeysFile {self.keys / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "StrictModes no", f"UsePAM {'yes' if root_locked() else 'no'}",
            "MaxStartups 50:30:100",
            "MaxSessions 50", "LogLevel ERROR", "",
        ]))
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
        wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        subprocess.run([sys.executable, str(STUB), str(self.root), "stop", "murmur"], capture_output=True)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def ssh_config_block(self, user_key: Path, known_hosts: Path) -> str:
        return "\n".join([
            f"Host {self.name}", "  HostName 127.0.0.1", f"  Port {self.port}", "  User root",
            f"  IdentityFile {user_key}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {known_hosts}",
            "  StrictHostKeyChecking accept-new", "  LogLevel ERROR", "",
        ])

    def inventory_entry(self, *, bundle: Path | None = None, config: Path | None = None, gate_timeout_s: float = 30,
                        pip: str | None = None) -> str:
        """TOML for [hosts.NAME]: the root prefix, the stub systemctl, and (for install.sh and the venv build) a PATH
        whose apt-get/useradd/… only record what they were asked and a pip that links the local device venv."""
        recorders = self.workdir / "recorders"
        make_recorders(recorders, self.root)
        env = {"PATH": f"{recorders}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "MURMUR_PIP": f"{recorders / 'pip'}", "MURMUR_ALLOW_OS": "1", **self.extra_env}
        lines = [f"[hosts.{self.name}]", f'root = "{self.root}"',
                 *([f'python = "{self.python}"'] if self.python else []), f'systemctl = "{sys.executable} {STUB} {self.root}"', "sudo = false",
                 f"gate_timeout_s = {gate_timeout_s}",
                 "env = { " + ", ".join(f'{k} = "{v}"' for k, v in env.items()) + " }"]
        if bundle is not None:
            lines.append(f'bundle = "{bundle}"')
        if config is not None:
            lines.append(f'config = "{config}"')
        return "\n".join(lines) + "\n"

    def write_room_config(self, path: Path, **playback: object) -> Path:
        """A managed config for this Pi: its bundle is the live release's, under the root prefix."""
        values = {"bundle": f"{self.root}/opt/murmur/current/bundle", "crossfade_s": 0.5, "volume_cap_db": -6.0,
                  **playback}
        body = "[playback]\n" + "".join(
            f"{k} = {v!r}\n".replace("'", '"') if isinstance(v, str) else f"{k} = {v}\n" for k, v in values.items())
        path.write_text(body)
        return path

    def reboot(self) -> subprocess.CompletedProcess | None:
        """What a power cycle does to the Pi's software: murmur-recover.service (only when a deploy left its
        journal: ConditionPathExists) undoes an unfinished activation, then murmur.service starts. Returns the
        recovery run, or None when its condition was false."""
        recovery = None
        if (self.root / "opt/murmur/.deploy/activation.json").exists():
            recovery = subprocess.run(
                [sys.executable, str(self.root / "opt/murmur/current/deploy/pi_release.py"), "boot", "--root",
                 str(self.root), "--systemctl", f"{sys.executable} {STUB} {self.root}"],
                capture_output=True, text=True, timeout=60)
        subprocess.run([sys.executable, str(STUB), str(self.root), "stop", "murmur"], capture_output=True, check=True)
        subprocess.run([sys.executable, str(STUB), str(self.root), "start", "murmur"], capture_output=True, check=True)
        return recovery

    # -- what tests look at -----------------------------------------------------------------------------------
    def current(self) -> str | None:
        link = self.root / "opt/murmur/current"
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def systemctl_calls(self) -> list[str]:
        log = self.root / "var/log/systemctl.calls"
        return log.read_text().splitlines() if log.is_file() else []


RECORDED = ("apt-get", "useradd", "usermod", "groupadd", "pip", "dpkg-query", "getent", "uname")


def device_site_packages() -> Path:
    """site-packages of this checkout's device venv (numpy, ai-edge-litert: what pip would put in a Pi's venv)."""
    found = sorted((REPO / ".venv/device/lib").glob("python3*/site-packages"))
    if not found:
        raise RuntimeError(f"{REPO / '.venv/device'} has no site-packages: run make setup")
    return found[-1]


# pip for the venvs the "Pi" builds (pi_release.py venv sets VIRTUAL_ENV): instead of downloading the pins it adds
# a .pth with this checkout's device venv, so the venv runs the device code for real; with
# MURMUR_LOOPBACK_PIP=empty it adds nothing (a venv whose packages cannot run the code).
PIP_LINKS_DEVICE_VENV = """if [ -n "${{VIRTUAL_ENV:-}}" ] && [ "${{MURMUR_LOOPBACK_PIP:-}}" != empty ]; then
  for d in "$VIRTUAL_ENV"/lib/python3*/site-packages; do echo "{site}" > "$d/murmur-loopback.pth"; done
fi"""


def make_recorders(directory: Path, root: Path) -> None:
    """Stand-ins for install.sh's system-changing commands: each appends its argv to ROOT/var/log/recorded.calls.
    ``uname -m`` answers aarch64 and ``dpkg-query`` says nothing is installed, like a fresh Pi; ``pip`` links the
    device venv into the venv being built (PIP_LINKS_DEVICE_VENV)."""
    directory.mkdir(parents=True, exist_ok=True)
    log = root / "var/log/recorded.calls"
    for name in RECORDED:
        answer = {"uname": 'echo aarch64', "getent": "exit 2", "dpkg-query": "exit 1",
                  "pip": PIP_LINKS_DEVICE_VENV.format(site=device_site_packages())}.get(name, "exit 0")
        script = directory / name
        script.write_text(f'#!/bin/sh\nmkdir -p "{log.parent}"\necho "{name} $*" >> "{log}"\n{answer}\n')
        script.chmod(0o755)
    systemctl = directory / "systemctl"  # install.sh's daemon-reload/enable reach the same stub as the deploy
    systemctl.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STUB}" "{root}" "$@"\n')
    systemctl.chmod(0o755)
    (root / "etc").mkdir(parents=True, exist_ok=True)
    os_release = root / "etc/os-release"
    if not os_release.exists():
        os_release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')


def make_user_key(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def variant_bundle(src: Path, dst: Path, bundle_id: str, *, break_model: bool = False) -> Path:
    """A copy of ``src`` with another bundle_id (a new sound as far as the service can tell); with
    ``break_model`` the model file is cut short: checksums and the TFLite magic still pass, the runtime fails."""
    meta = json.loads((src / "bundle.json").read_text())
    meta["bundle_id"] = bundle_id
    files: dict[str, bytes | Path] = {name: src / name for name in meta["files"]}
    if break_model:
        files["model.tflite"] = (src / "model.tflite").read_bytes()[:4096]
    return write_bundle(dst, meta, files)


def snapshot_code(dest: Path) -> Path:
    """Copy the shipped code (device/, deploy/, README.md) of this checkout to ``dest``: a deploy's code id then
    stays the same for a whole test run (an update is "bundle only" only if the code did not change)."""
    for part in ("device", "deploy"):
        shutil.copytree(REPO / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    for name in ("README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, dest / name)
    return dest


class Fleet:
    """Loopback Pis with one client key, one ssh_config, a managed room config each, and an inventory file;
    ``run("deploy", "pi1")`` runs ``python -m murmur.deploy`` like ``make deploy`` does."""

    def __init__(self, workdir: Path, names: tuple[str, ...] = ("pi1", "pi2")) -> None:
        self.workdir = workdir
        self.key = make_user_key(workdir / "client")
        self.pis = {name: LoopbackPi(name, workdir / name).start(self.key) for name in names}
        self.ssh_config = workdir / "ssh_config"
        self.ssh_config.write_text("".join(p.ssh_config_block(self.key, workdir / "client/known_hosts")
                                           for p in self.pis.values()))
        self.rooms = {name: p.write_room_config(workdir / f"room-{name}.toml") for name, p in self.pis.items()}
        self.inventory = workdir / "inventory.toml"
        self.repo = snapshot_code(workdir / "repo")  # fixed code for the whole run, whatever happens in the checkout

    def write_inventory(self, bundles: dict[str, Path], env: dict[str, dict[str, str]] | None = None) -> None:
        parts = []
        for name, bundle in bundles.items():
            pi = self.pis[name]
            pi.extra_env = (env or {}).get(name, {})
            parts.append(pi.inventory_entry(bundle=bundle, config=self.rooms[name]))
        self.inventory.write_text("\n".join(parts))

    def run(self, command: str, *hosts: str, args: tuple[str, ...] = (), repo: Path | None = None) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "murmur.deploy", command, *hosts, "--inventory", str(self.inventory),
                "--ssh-config", str(self.ssh_config), *args]
        if command == "deploy":
            argv += ["--repo", str(repo or self.repo)]
        return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)

    def stop(self) -> None:
        for pi in self.pis.values():
            pi.stop()




def status(pi: LoopbackPi) -> dict:
    """The status report of the loopback Pi's service, from where the deploy reads it (the service's rule)."""
    return json.loads(Layout(str(pi.root)).status_file.read_text())


def bundle_id(path: Path) -> str:
    return json.loads((path / "bundle.json").read_text())["bundle_id"]


def live_problem(pi: LoopbackPi) -> str | None:
    """None if the Pi's disk holds one whole release as `current` (code matching its id, a bundle that loads,
    the managed config of that release); otherwise what is inconsistent."""
    base = pi.root / "opt/murmur"
    link = base / "current"
    if not link.is_symlink():
        return "no current symlink"
    release = base / os.readlink(link)
    if not release.is_dir() or release.name.startswith("."):
        return f"current points at {os.readlink(link)}, not a finished release"
    meta = json.loads((release / "release.json").read_text())
    if code_id_of(release) != meta["code_id"]:
        return f"release {release.name}: code does not match its id (partial copy)"
    try:
        bundle = load_bundle(release / "bundle")
    except ValueError as exc:
        return f"release {release.name}: bundle does not load: {exc}"
    if Path(os.readlink(release / "bundle")).name != meta["bundle"]:
        return f"release {release.name}: bundle link differs from release.json"
    site = release / "site/murmur.toml"
    if site.is_file() and site.read_bytes() != (pi.root / "etc/murmur/murmur.toml").read_bytes():
        return f"release {release.name}: /etc/murmur/murmur.toml is not this release's config"
    del bundle
    return None


def release_bundle_ids(pi: LoopbackPi) -> set[str]:
    """bundle_id of every finished release on the Pi (what a whole release could be playing)."""
    releases = pi.root / "opt/murmur/releases"
    return {bundle_id(r / "bundle") for r in releases.iterdir() if not r.name.startswith(".")} if releases.is_dir() else set()


def wait_playing(pi: LoopbackPi, wanted: str, timeout_s: float = 30.0) -> dict:
    """The status file once it reports ``wanted`` playing (the service updates it about once a second)."""
    deadline = time.monotonic() + timeout_s
    report: dict = {}
    while time.monotonic() < deadline:
        try:
            report = status(pi)
        except (OSError, ValueError):
            report = {}
        if report.get("playing") and report.get("bundle_id") == wanted:
            return report
        time.sleep(0.2)
    raise AssertionError(f"{pi.name} does not play {wanted} within {timeout_s} s: {report}")


def venv_of(pi: LoopbackPi, release: str | None = None) -> str:
    """The venv key a release (default: current) runs in: where its ``venv`` link resolves."""
    link = pi.root / "opt/murmur" / (f"releases/{release}" if release else "current") / "venv"
    return Path(os.path.realpath(link)).name


def break_service_start(repo: Path) -> Path:
    """Make the code in ``repo`` die when the service starts; it still imports, so `device verify` passes."""
    with open(repo / "device/appliance/service.py", "a") as f:
        f.write("\nraise SystemExit('deliberately broken release (deploy test)')\n")
    return repo


def with_new_requirements(repo: Path, dest: Path, pin_comment: str) -> tuple[Path, str]:
    """A copy of the shipped code whose requirements-pi.txt differs (so it needs another venv), and that venv's key."""
    copy = shutil.copytree(repo, dest)
    requirements = copy / "deploy/requirements-pi.txt"
    requirements.write_text(requirements.read_text() + f"# {pin_comment}\n")
    return copy, requirements_key(requirements)
