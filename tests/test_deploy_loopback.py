"""`make deploy` against real sshd daemons on 127.0.0.1 (deploy/loopback.py): each "Pi" is a temporary directory
reached over ssh with a throw-away key; only `systemctl` is replaced, by a stub that runs the real
`python -m device serve` (null sink, real-time pacing) and waits for its READY=1.

The tests run in file order on two shared Pis (a deploy is stateful: each step builds on the one before).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.loopback import LoopbackPi, make_user_key, sshd_available
from deploy.pi_release import code_id_of
from device.bundle import load_bundle, write_bundle

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available()))


def variant_bundle(src: Path, dst: Path, bundle_id: str, *, break_model: bool = False) -> Path:
    """A copy of ``src`` with another bundle_id (a new sound as far as the service can tell); with
    ``break_model`` the model file is cut short: checksums and the TFLite magic still pass, the runtime fails."""
    meta = json.loads((src / "bundle.json").read_text())
    meta["bundle_id"] = bundle_id
    files: dict[str, bytes | Path] = {name: src / name for name in meta["files"]}
    if break_model:
        files["model.tflite"] = (src / "model.tflite").read_bytes()[:4096]
    return write_bundle(dst, meta, files)


class Fleet:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.key = make_user_key(workdir / "client")
        self.pis = {name: LoopbackPi(name, workdir / name).start(self.key) for name in ("pi1", "pi2")}
        self.ssh_config = workdir / "ssh_config"
        self.ssh_config.write_text("".join(p.ssh_config_block(self.key, workdir / "client/known_hosts")
                                           for p in self.pis.values()))
        self.rooms = {name: p.write_room_config(workdir / f"room-{name}.toml") for name, p in self.pis.items()}
        self.inventory = workdir / "inventory.toml"

    def write_inventory(self, bundles: dict[str, Path], env: dict[str, dict[str, str]] | None = None) -> None:
        parts = []
        for name, bundle in bundles.items():
            pi = self.pis[name]
            pi.extra_env = (env or {}).get(name, {})
            parts.append(pi.inventory_entry(bundle=bundle, config=self.rooms[name]))
        self.inventory.write_text("\n".join(parts))

    def run(self, command: str, *hosts: str, args: list[str] = (), repo: Path = REPO) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "deploy", command, *hosts, "--inventory", str(self.inventory),
                "--ssh-config", str(self.ssh_config), *args]
        if command == "deploy":
            argv += ["--repo", str(repo)]
        return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)

    def stop(self) -> None:
        for pi in self.pis.values():
            pi.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("loopback"))
    yield fleet
    fleet.stop()


@pytest.fixture(scope="module")
def bundles(tiny_bundle, tmp_path_factory):
    work = tmp_path_factory.mktemp("bundles")
    made = {name: variant_bundle(tiny_bundle, work / name, f"room-sound-{name}") for name in ("a", "b", "c")}
    made["broken"] = variant_bundle(tiny_bundle, work / "broken", "room-sound-broken", break_model=True)
    return made


def status(pi: LoopbackPi) -> dict:
    return json.loads((pi.root / "run/murmur/status.json").read_text())


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


def summary_line(output: str, host: str) -> str:
    lines = [line for line in output.splitlines() if line.strip().startswith(f"{host}: ")]
    assert lines, f"no summary line for {host} in:\n{output}"
    return lines[-1]


@pytest.mark.slow
def test_first_deploy_installs_and_plays(fleet, bundles):
    pi = fleet.pis["pi1"]
    fleet.write_inventory({"pi1": bundles["a"]})
    proc = fleet.run("deploy", "pi1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in summary_line(proc.stdout, "pi1")
    recorded = (pi.root / "var/log/recorded.calls").read_text()
    assert re.search(r"^apt-get install .*python3-gpiozero.*python3-pyaudio", recorded, re.M)
    assert re.search(r"^useradd --system .* murmur$", recorded, re.M)
    assert "usermod -a -G audio,gpio,spi murmur" in recorded
    assert (pi.root / "opt/murmur/venv/bin/python").exists()
    assert (pi.root / "etc/systemd/system/murmur.service").read_bytes() == (REPO / "deploy/murmur.service").read_bytes()
    assert "restart murmur" in pi.systemctl_calls()
    assert live_problem(pi) is None
    report = wait_playing(pi, "room-sound-a")
    assert report["release"] == pi.current()


@pytest.mark.slow
def test_bundle_only_update_hot_reloads_without_copying_code(fleet, bundles):
    pi = fleet.pis["pi1"]
    before = pi.current()
    calls_before = len(pi.systemctl_calls())
    fleet.write_inventory({"pi1": bundles["b"]})
    proc = fleet.run("deploy", "pi1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bundle only, hot reload" in summary_line(proc.stdout, "pi1")
    assert "copying code" not in proc.stdout
    assert pi.systemctl_calls()[calls_before:] == ["is-active --quiet murmur", "reload murmur"]
    after = pi.current()
    assert after != before
    old, new = pi.root / "opt/murmur/releases" / before, pi.root / "opt/murmur/releases" / after
    assert (new / "device/engine.py").stat().st_ino == (old / "device/engine.py").stat().st_ino  # hard-linked
    assert live_problem(pi) is None
    report = wait_playing(pi, "room-sound-b")
    assert report["reloads"] >= 1


@pytest.mark.slow
def test_code_that_fails_its_health_gate_is_rolled_back(fleet, bundles, tmp_path):
    pi = fleet.pis["pi1"]
    before = pi.current()
    broken_repo = tmp_path / "repo"
    for part in ("device", "deploy"):
        shutil.copytree(REPO / part, broken_repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    with open(broken_repo / "device/service.py", "a") as f:  # imports fine for verify; the service dies at start
        f.write("\nraise SystemExit('deliberately broken release (test)')\n")
    proc = fleet.run("deploy", "pi1", repo=broken_repo)
    assert proc.returncode == 1, proc.stdout
    line = summary_line(proc.stdout, "pi1")
    assert "FAILED" in line and "health gate" in line and "switched back to " + before in line and "plays again" in line
    assert pi.current() == before
    assert live_problem(pi) is None
    wait_playing(pi, "room-sound-b")
    failed = [r for r in os.listdir(pi.root / "opt/murmur/releases") if r > before]
    assert failed and not (pi.root / "opt/murmur/releases" / failed[0] / "HEALTHY").exists()


@pytest.mark.slow
def test_bad_bundle_never_goes_live(fleet, bundles):
    pi = fleet.pis["pi1"]
    before = pi.current()
    calls_before = len(pi.systemctl_calls())
    fleet.write_inventory({"pi1": bundles["broken"]})
    proc = fleet.run("deploy", "pi1")
    assert proc.returncode == 1
    line = summary_line(proc.stdout, "pi1")
    assert "verify on the Pi failed, nothing switched" in line, line
    assert pi.current() == before
    assert pi.systemctl_calls()[calls_before:] == []  # the service was never touched
    assert not any("broken" in b for b in os.listdir(pi.root / "opt/murmur/bundles"))
    assert status(pi)["bundle_id"] == "room-sound-b"


@pytest.mark.slow
def test_rollback_command_returns_to_the_previous_healthy_release(fleet, bundles):
    pi = fleet.pis["pi1"]
    releases = sorted(r for r in os.listdir(pi.root / "opt/murmur/releases") if not r.startswith("."))
    healthy = [r for r in releases if (pi.root / "opt/murmur/releases" / r / "HEALTHY").exists()]
    assert pi.current() == healthy[-1]
    proc = fleet.run("rollback", "pi1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pi.current() == healthy[-2]
    wait_playing(pi, "room-sound-a")
    proc = fleet.run("status", "pi1")
    assert proc.returncode == 0 and "room-sound-a" in summary_line(proc.stdout, "pi1")


KILL_STEPS = ["bundle-ready", "release-ready", "verified", "journal", "switched", "reloaded", "healthy"]


@pytest.mark.slow
def test_a_deploy_killed_at_each_step_leaves_old_or_new_never_a_mix(fleet, bundles, tmp_path, tiny_bundle):
    """SIGKILL the Pi side at every step of a bundle-only update (a power cut as far as the disk can tell: every
    rename and file before it was fsynced), then check the disk, "reboot" the service, and deploy again."""
    pi = fleet.pis["pi1"]
    inconsistent = []
    for i, kill_at in enumerate(KILL_STEPS):
        old = status(pi)["bundle_id"]
        new_bundle = variant_bundle(tiny_bundle, tmp_path / f"k{i}", f"kill-{kill_at}")
        fleet.write_inventory({"pi1": new_bundle}, env={"pi1": {"MURMUR_DEPLOY_KILL_AT": kill_at}})
        proc = fleet.run("deploy", "pi1")
        assert f"step {kill_at}" in proc.stdout and proc.returncode == 1, proc.stdout
        problem = live_problem(pi)
        playing = status(pi).get("bundle_id")
        if problem or playing not in (old, f"kill-{kill_at}"):
            inconsistent.append(f"{kill_at}: {problem or 'plays ' + str(playing)}")
        # power cut: the service comes back with whatever is on disk
        stub = [sys.executable, str(REPO / "deploy/loopback_systemctl.py"), str(pi.root), "restart", "murmur"]
        assert subprocess.run(stub, capture_output=True).returncode == 0
        on_disk = bundle_id(pi.root / "opt/murmur/current/bundle")
        assert on_disk in (old, f"kill-{kill_at}")
        wait_playing(pi, on_disk)
    assert inconsistent == []
    # the next deploy undoes an unfinished activation and goes through
    fleet.write_inventory({"pi1": bundles["c"]})
    proc = fleet.run("deploy", "pi1")
    assert proc.returncode == 0, proc.stdout
    assert live_problem(pi) is None
    wait_playing(pi, "room-sound-c")
    releases = [r for r in os.listdir(pi.root / "opt/murmur/releases") if not r.startswith(".")]
    assert len(releases) <= 5  # pruned to the last five


@pytest.mark.slow
def test_killing_the_laptop_mid_activation_still_finishes_on_the_pi(fleet, bundles):
    pi = fleet.pis["pi1"]
    fleet.write_inventory({"pi1": bundles["a"]})
    argv = [sys.executable, "-m", "deploy", "deploy", "pi1", "--inventory", str(fleet.inventory), "--ssh-config",
            str(fleet.ssh_config)]
    laptop = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True)
    for line in laptop.stdout:
        if "step switched" in line:
            os.killpg(laptop.pid, signal.SIGKILL)  # the laptop and its ssh die right after the switch
            break
    laptop.wait(timeout=30)
    wait_playing(pi, "room-sound-a")
    deadline = time.monotonic() + 30
    while not (pi.root / "opt/murmur/releases" / pi.current() / "HEALTHY").exists():
        assert time.monotonic() < deadline, "the Pi-side activation did not finish its health gate"
        time.sleep(0.2)
    assert live_problem(pi) is None


@pytest.mark.slow
def test_two_hosts_in_parallel_one_failing_does_not_stop_the_other(fleet, bundles):
    pi1, pi2 = fleet.pis["pi1"], fleet.pis["pi2"]
    fleet.write_inventory({"pi1": bundles["b"], "pi2": bundles["b"]})
    pi2.write_room_config(fleet.rooms["pi2"], volume_cap_db=99.0)  # a bad room config on pi2 only
    try:
        proc = fleet.run("deploy", "pi1", "pi2")
    finally:
        fleet.pis["pi2"].write_room_config(fleet.rooms["pi2"])
    assert proc.returncode == 1
    assert "OK" in summary_line(proc.stdout, "pi1")
    assert "FAILED" in summary_line(proc.stdout, "pi2")
    assert "1 of 2 hosts OK; failed: pi2" in proc.stdout
    wait_playing(pi1, "room-sound-b")
    assert pi2.current() is None  # nothing went live on pi2
    lines = proc.stdout.splitlines()
    first_pi2 = next(i for i, line in enumerate(lines) if line.startswith("[pi2]"))
    last_pi1 = max(i for i, line in enumerate(lines) if line.startswith("[pi1]"))
    assert first_pi2 < last_pi1, "hosts ran one after the other"
    proc = fleet.run("deploy", "pi2")
    assert proc.returncode == 0, proc.stdout
    wait_playing(pi2, "room-sound-b")
