"""`make deploy` against real sshd daemons on 127.0.0.1 (deploy/testing/loopback.py): each "Pi" is a temporary directory
reached over ssh with a throw-away key; only `systemctl` is replaced, by a stub that runs the real
`python -m murmur.device serve` (null sink, real-time pacing) and waits for its READY=1.

The tests run in file order on two shared Pis (a deploy is stateful: each step builds on the one before).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from murmur import REPO_ROOT as REPO
from murmur.deploy.testing.loopback import (
    Fleet,
    break_service_start,
    bundle_id,
    live_problem,
    release_bundle_ids,
    requirements_key,
    sshd_available,
    status,
    variant_bundle,
    venv_of,
    wait_playing,
    with_new_requirements,
)

OLD_VENV = requirements_key(REPO / "deploy/requirements-pi.txt")
pytestmark = [pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())), pytest.mark.slow]


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
    assert venv_of(pi) == OLD_VENV and (pi.root / "opt/murmur/venvs" / OLD_VENV / ".murmur-complete").is_file()
    assert not (pi.root / "opt/murmur/venv").exists()  # no shared venv: each release links its own
    assert (pi.root / "etc/systemd/system/murmur.service").read_bytes() == (REPO / "deploy/murmur.service").read_bytes()
    assert "restart murmur" in pi.systemctl_calls()
    assert live_problem(pi) is None
    report = wait_playing(pi, "room-sound-a")
    assert report["release"] == pi.current() and report["venv"] == OLD_VENV  # the unit's current/venv/bin/python


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
    assert (new / "device/playback/engine.py").stat().st_ino == (old / "device/playback/engine.py").stat().st_ino  # hard-linked
    assert live_problem(pi) is None
    report = wait_playing(pi, "room-sound-b")
    assert report["reloads"] >= 1


@pytest.mark.slow
def test_a_lost_install_is_redone_from_the_live_release_without_copying_code(fleet, bundles):
    pi = fleet.pis["pi1"]
    before = pi.current()
    (pi.root / "opt/murmur/.deploy/installed.sha256").unlink()  # e.g. a half-restored SD card
    proc = fleet.run("deploy", "pi1")  # same code, same bundle
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "running deploy/install.sh" in proc.stdout and "copying code" not in proc.stdout
    assert "already live" in summary_line(proc.stdout, "pi1")
    assert (pi.root / "opt/murmur/.deploy/installed.sha256").is_file() and pi.current() == before


@pytest.mark.slow
def test_code_that_fails_its_health_gate_is_rolled_back(fleet, bundles, tmp_path):
    pi = fleet.pis["pi1"]
    before = pi.current()
    broken_repo = break_service_start(shutil.copytree(fleet.repo, tmp_path / "repo"))
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
def test_new_requirements_get_their_own_venv_and_a_failed_gate_leaves_the_old_code_on_the_old_one(fleet, tmp_path):
    """Changed pins + code that fails its gate: the new venv is built beside the live one, the switch-back puts the
    old code on its old venv (never old code on new packages), and the live venv was not touched at all."""
    pi = fleet.pis["pi1"]
    before = pi.current()
    live_venv = pi.root / "opt/murmur/venvs" / OLD_VENV
    marker_before = (live_venv / ".murmur-complete").stat()
    pth_before = sorted(p.name for p in live_venv.rglob("*.pth"))
    new_repo, new_venv = with_new_requirements(fleet.repo, tmp_path / "repo", "test: a new pin")
    break_service_start(new_repo)
    proc = fleet.run("deploy", "pi1", repo=new_repo)
    assert proc.returncode == 1, proc.stdout
    assert f"building venvs/{new_venv} beside the live one" in proc.stdout
    line = summary_line(proc.stdout, "pi1")
    assert "health gate" in line and "switched back to " + before in line and "plays again" in line, line
    assert pi.current() == before and venv_of(pi) == OLD_VENV
    assert (pi.root / "opt/murmur/venvs" / new_venv / ".murmur-complete").is_file()  # kept for a retry until pruned
    after = (live_venv / ".murmur-complete").stat()
    assert (after.st_ino, after.st_mtime_ns) == (marker_before.st_ino, marker_before.st_mtime_ns)
    assert sorted(p.name for p in live_venv.rglob("*.pth")) == pth_before
    assert wait_playing(pi, "room-sound-b")["venv"] == OLD_VENV  # the restarted old release runs on the old venv
    assert live_problem(pi) is None


@pytest.mark.slow
def test_a_venv_that_cannot_run_the_code_never_goes_live(fleet, bundles, tmp_path):
    pi = fleet.pis["pi1"]
    before = pi.current()
    calls_before = len(pi.systemctl_calls())
    new_repo, new_venv = with_new_requirements(fleet.repo, tmp_path / "repo", "test: packages that break imports")
    fleet.write_inventory({"pi1": bundles["b"]}, env={"pi1": {"MURMUR_LOOPBACK_PIP": "empty"}})
    try:
        proc = fleet.run("deploy", "pi1", repo=new_repo)
    finally:
        fleet.write_inventory({"pi1": bundles["b"]})
    assert proc.returncode == 1, proc.stdout
    line = summary_line(proc.stdout, "pi1")
    assert "verify on the Pi failed, nothing switched" in line and "No module named" in line, line
    assert pi.current() == before and venv_of(pi) == OLD_VENV
    assert pi.systemctl_calls()[calls_before:] == []  # the service was never touched
    assert status(pi)["venv"] == OLD_VENV


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
    assert "murmur: PLAYING" in proc.stdout and "bundle:       room-sound-a" in proc.stdout  # the full report too
    # the healthy activation pruned the failed releases and the venvs only they used
    assert sorted(os.listdir(pi.root / "opt/murmur/venvs")) == [OLD_VENV]


KILL_STEPS = ["bundle-ready", "release-ready", "verified", "journal", "switched", "reloaded", "healthy"]


@pytest.mark.slow
def test_a_deploy_killed_at_each_step_leaves_old_or_new_never_a_mix(fleet, bundles, tmp_path, tiny_bundle):
    """SIGKILL the Pi side at every step of a bundle-only update (a power cut as far as the disk can tell: every
    rename and file before it was fsynced), then check the disk, reboot (murmur-recover.service, then the
    service): since no killed deploy passed its gate, the Pi plays the release it played before."""
    pi = fleet.pis["pi1"]
    inconsistent = []
    before = pi.current()
    before_sound = bundle_id(pi.root / "opt/murmur/current/bundle")
    for i, kill_at in enumerate(KILL_STEPS):
        new_bundle = variant_bundle(tiny_bundle, tmp_path / f"k{i}", f"kill-{kill_at}")
        fleet.write_inventory({"pi1": new_bundle}, env={"pi1": {"MURMUR_DEPLOY_KILL_AT": kill_at}})
        proc = fleet.run("deploy", "pi1")
        assert f"step {kill_at}" in proc.stdout and proc.returncode == 1, proc.stdout
        problem = live_problem(pi)
        playing = status(pi).get("bundle_id")
        if problem or playing not in release_bundle_ids(pi):  # the service plays one whole release's bundle
            inconsistent.append(f"{kill_at}: {problem or 'plays ' + str(playing)}")
        recovery = pi.reboot()  # the power comes back
        journal_left = KILL_STEPS.index(kill_at) >= KILL_STEPS.index("journal")
        assert (recovery is not None) == journal_left, kill_at
        if recovery is not None:
            assert recovery.returncode == 0 and "deploy of " in recovery.stdout, recovery.stdout + recovery.stderr
        assert pi.current() == before, f"after a kill at {kill_at} and a reboot"
        wait_playing(pi, before_sound)
        assert live_problem(pi) is None
    assert inconsistent == []
    # a power cut while new pins are installed: the live release keeps its venv; the unfinished one has no marker,
    # so nothing links it, and the next deploy builds it again
    new_repo, new_venv = with_new_requirements(fleet.repo, tmp_path / "repo-venv", "test: killed venv build")
    fleet.write_inventory({"pi1": bundles["c"]}, env={"pi1": {"MURMUR_DEPLOY_KILL_AT": "venv-installed"}})
    proc = fleet.run("deploy", "pi1", repo=new_repo)
    assert "step venv-installed" in proc.stdout and proc.returncode == 1, proc.stdout
    half = pi.root / "opt/murmur/venvs" / new_venv
    assert (half / "pyvenv.cfg").is_file() and not (half / ".murmur-complete").exists()
    assert live_problem(pi) is None and venv_of(pi) == OLD_VENV
    fleet.write_inventory({"pi1": bundles["c"]})
    proc = fleet.run("deploy", "pi1", repo=new_repo)
    assert proc.returncode == 0, proc.stdout
    assert f"building venvs/{new_venv}" in proc.stdout and venv_of(pi) == new_venv
    assert wait_playing(pi, "room-sound-c")["venv"] == new_venv
    # and back to the shipped code and its venv
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
    argv = [sys.executable, "-m", "murmur.deploy", "deploy", "pi1", "--inventory", str(fleet.inventory), "--ssh-config",
            str(fleet.ssh_config), "--repo", str(fleet.repo)]
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
    with open(fleet.ssh_config, "a") as f:  # and a Pi that is switched off
        f.write("Host gone\n  HostName 127.0.0.1\n  Port 1\n  ConnectTimeout 5\n")
    try:
        proc = fleet.run("deploy", "pi1", "pi2", "gone", args=("--bundle", str(bundles["b"])))
    finally:
        fleet.pis["pi2"].write_room_config(fleet.rooms["pi2"])
    assert proc.returncode == 1
    assert "OK" in summary_line(proc.stdout, "pi1")
    assert "FAILED verify on the Pi failed" in summary_line(proc.stdout, "pi2")
    assert "volume_cap_db" in summary_line(proc.stdout, "pi2")
    assert "FAILED at connect: no answer from the Pi" in summary_line(proc.stdout, "gone")
    assert "1 of 3 hosts OK; failed: pi2 gone" in proc.stdout
    wait_playing(pi1, "room-sound-b")
    assert pi2.current() is None  # nothing went live on pi2
    lines = proc.stdout.splitlines()
    first_pi2 = next(i for i, line in enumerate(lines) if line.startswith("[pi2]"))
    last_pi1 = max(i for i, line in enumerate(lines) if line.startswith("[pi1]"))
    assert first_pi2 < last_pi1, "hosts ran one after the other"
    proc = fleet.run("deploy", "pi2")
    assert proc.returncode == 0, proc.stdout
    wait_playing(pi2, "room-sound-b")


@pytest.mark.slow
def test_config_on_the_command_line_replaces_the_inventorys_and_a_bad_one_switches_nothing(fleet, bundles, tmp_path):
    """`make deploy PI=… CONFIG=<murmur.toml>` (--config-override): that file is the managed config of every host
    named, inventory or not; one the Pi's reader refuses fails verify and the Pi keeps its release."""
    pi = fleet.pis["pi1"]
    good = pi.write_room_config(tmp_path / "studio-murmur.toml", volume_cap_db=-9.0)
    proc = fleet.run("deploy", "pi1", args=("--config-override", str(good)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in summary_line(proc.stdout, "pi1")
    shipped = pi.root / "opt/murmur/current/site/murmur.toml"
    assert shipped.read_text() == good.read_text() and "volume_cap_db = -9.0" in shipped.read_text()
    assert live_problem(pi) is None
    wait_playing(pi, "room-sound-b")
    before = pi.current()
    bad = pi.write_room_config(tmp_path / "bad-murmur.toml", volume_cap_db=99.0)
    proc = fleet.run("deploy", "pi1", args=("--config-override", str(bad)))
    assert proc.returncode == 1
    line = summary_line(proc.stdout, "pi1")
    assert "verify on the Pi failed" in line and "volume_cap_db" in line, line
    assert pi.current() == before and shipped.read_text() == good.read_text()
    missing = tmp_path / "nowhere.toml"
    proc = fleet.run("deploy", "pi1", args=("--config-override", str(missing)))
    assert proc.returncode == 1 and "nowhere.toml" in proc.stdout + proc.stderr and "file not found" in proc.stdout + proc.stderr
    assert pi.current() == before
