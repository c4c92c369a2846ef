"""Deploy figures on a loopback Pi (deploy/testing/loopback.py: a real sshd on 127.0.0.1, a temporary directory as the Pi's
filesystem, the real service on a null sink): bundle-only update to new sound, rollback, new pins with code that
fails its gate (the live venv must stay untouched), the kill-at-each-step count, and the last `make test-arm64`
result (out/arm64/result.json)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from murmur import REPO_ROOT as REPO
from murmur.deploy.testing.loopback import (
    Fleet,
    break_service_start,
    live_problem,
    release_bundle_ids,
    sshd_available,
    status,
    variant_bundle,
    venv_of,
    wait_playing,
    with_new_requirements,
)

FULL_SIZE_BUNDLE = REPO / "out/bench/sound/piece/bundle"
KILL_STEPS = ["bundle-ready", "release-ready", "verified", "journal", "switched", "reloaded", "healthy"]


def tiny_bundle(out: Path) -> Path:
    """A tiny real bundle (the test suite's tiny_bundle recipe), trained once and cached under out/."""
    if (out / "bundle.json").is_file():
        return out
    from tests.conftest import train_tiny

    return train_tiny(out, name="bench")


def timed_until_playing(fleet: Fleet, pi, command: str, wanted: str) -> tuple[float, float, int]:
    """(seconds to the new sound in the status report, seconds until the command returned, its exit code)."""
    argv = [sys.executable, "-m", "murmur.deploy", command, pi.name, "--inventory", str(fleet.inventory), "--ssh-config",
            str(fleet.ssh_config)] + (["--repo", str(fleet.repo)] if command == "deploy" else [])
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_playing(pi, wanted, timeout_s=120)
    sound_s = time.monotonic() - started
    proc.communicate(timeout=120)
    return sound_s, time.monotonic() - started, proc.returncode


def tree_state(top: Path) -> set[tuple[str, int, int]]:
    """(relative path, size, mtime ns) of every file below ``top``: any write shows up as a difference."""
    return {(str(p.relative_to(top)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in top.rglob("*")}


def arm64_row() -> tuple[str, str]:
    path = REPO / "out/arm64/result.json"
    if not path.is_file():  # not run on this machine: keep the last recorded figure, saying so
        previous = REPO / "BENCHMARKS.md"
        text = previous.read_text() if previous.is_file() else ""
        match = re.search(r"^\| make test-arm64 [^|]*\| (?:\(last recorded\) )?([^|]+) \| pass \| (\S+) \|$", text, re.M)
        if match:
            return f"(last recorded) {match.group(1).strip()}", "PASS" if match.group(2) == "✅" else match.group(2)
        return "not run here (`make test-arm64` as root)", "—"
    result = json.loads(path.read_text())
    tests = next((line for line in result["lines"] if " passed" in line), "no test summary")
    venv = next((line.removeprefix("arm64: ") for line in result["lines"] if "venv venvs/" in line), "")
    what = (f"{result['date']}: the Pi's venv build (`pi_release.py venv` from aarch64 wheels{': ' + venv if venv else ''}), imports, `device verify` + 5 s `device render`, device "
            f"tests: {tests}; wall {result['wall_s']} s, of which building the arm64 root {result['root_build_s']} s "
            f"(0 = reused from out/arm64)")
    return what, "PASS" if result["passed"] else "FAIL"


def run(quick: bool) -> str:
    why_not = sshd_available()
    arm_what, arm_pass = arm64_row()
    if why_not:
        return f"## Deploy\n\nSkipped: {why_not}.\n\n| make test-arm64 | {arm_what} | {arm_pass} |\n"
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    base = tiny_bundle(REPO / "out/bench-deploy/bundle")
    bundles = {name: variant_bundle(base, work / f"bundle-{name}", f"bench-{name}") for name in ("a", "b")}
    fleet = Fleet(work / "fleet", names=("pi1",))
    pi = fleet.pis["pi1"]
    try:
        fleet.write_inventory({"pi1": bundles["a"]})
        first_sound, first_done, code = timed_until_playing(fleet, pi, "deploy", "bench-a")
        assert code == 0, "first deploy failed"
        fleet.write_inventory({"pi1": bundles["b"]})
        update_sound, update_done, code = timed_until_playing(fleet, pi, "deploy", "bench-b")
        assert code == 0, "bundle-only update failed"
        rollback_sound, rollback_done, code = timed_until_playing(fleet, pi, "rollback", "bench-a")
        assert code == 0, "rollback failed"
        big = None  # a full-size bundle (3-min frame bank) from the Sound section, when it has been run
        if (FULL_SIZE_BUNDLE / "bundle.json").is_file():
            big_bundle = variant_bundle(FULL_SIZE_BUNDLE, work / "bundle-big", "bench-big")
            big_bytes = sum(f.stat().st_size for f in big_bundle.iterdir())
            fleet.write_inventory({"pi1": big_bundle})
            big_sound, big_done, code = timed_until_playing(fleet, pi, "deploy", "bench-big")
            assert code == 0, "full-size bundle-only update failed"
            big = (big_bytes, big_sound, big_done)
            fleet.write_inventory({"pi1": bundles["a"]})
            timed_until_playing(fleet, pi, "deploy", "bench-a")

        live_venv = pi.root / "opt/murmur/venvs" / venv_of(pi)
        live_files = tree_state(live_venv)
        pins_repo, _ = with_new_requirements(fleet.repo, work / "repo-pins", "bench: new pins")
        break_service_start(pins_repo)
        started = time.monotonic()
        pins_code = fleet.run("deploy", "pi1", repo=pins_repo).returncode
        report = wait_playing(pi, "bench-a")
        pins_s = time.monotonic() - started
        pins_back = pins_code == 1 and venv_of(pi) == live_venv.name and report.get("venv") == live_venv.name
        pins_changed = len(live_files ^ tree_state(live_venv))

        steps = KILL_STEPS[::3] if quick else KILL_STEPS
        before_kills = pi.current()
        inconsistent = 0
        for i, kill_at in enumerate(steps):
            new = variant_bundle(base, work / f"kill-{i}", f"kill-{i}")
            fleet.write_inventory({"pi1": new}, env={"pi1": {"MURMUR_DEPLOY_KILL_AT": kill_at}})
            fleet.run("deploy", "pi1")
            playing = status(pi).get("bundle_id")
            if live_problem(pi) or playing not in release_bundle_ids(pi):
                inconsistent += 1
            pi.reboot()  # the power comes back: murmur-recover.service, then the service
            if live_problem(pi) or pi.current() != before_kills:  # no killed deploy passed its gate: the old plays
                inconsistent += 1
        steps = [*steps, "venv-installed"]  # and a power cut while new pins are installed
        kill_repo, _ = with_new_requirements(fleet.repo, work / "repo-kill", "bench: killed venv build")
        fleet.write_inventory({"pi1": bundles["b"]}, env={"pi1": {"MURMUR_DEPLOY_KILL_AT": "venv-installed"}})
        fleet.run("deploy", "pi1", repo=kill_repo)
        if live_problem(pi) or venv_of(pi) != live_venv.name or status(pi).get("venv") != live_venv.name:
            inconsistent += 1
    finally:
        fleet.stop()

    def verdict(value: float, target: float) -> str:
        return "✅" if value <= target else "❌"

    rows = [
        ("first deploy incl. install.sh (loopback, recorders for apt/pip)", f"{first_sound:.1f} s to sound, "
         f"{first_done:.1f} s total", "—", ""),
        ("bundle-only update → new sound (hot reload)", f"{update_sound:.1f} s ({update_done:.1f} s incl. gate)",
         "≤ 30 s", verdict(update_sound, 30)),
        ("bundle-only update with a full-size bundle (the Sound section's 200-s `piece`: every frame in the bank)",
         f"{big[0] / 1e6:.1f} MB: {big[1]:.1f} s to sound ({big[2]:.1f} s incl. gate); over a real network add the "
         f"copy: {big[0] / 1e6:.0f} MB at the Pi's link speed (~{big[0] / 2.5e6:.0f} s at 20 Mbit/s Wi-Fi)"
         if big else "not measured: run `make bench ARGS=\"--only sound\"` first (it trains the full-size bundle)",
         "≤ 30 s", verdict(big[1], 30) if big else "—"),
        ("`make rollback` → old sound again", f"{rollback_sound:.1f} s ({rollback_done:.1f} s incl. gate)", "≤ 10 s",
         verdict(rollback_sound, 10)),
        ("new pins + code that fails its gate: switched back onto the old venv, which the new one never touched",
         f"{'yes' if pins_back else 'NO'}, old sound again {pins_s:.1f} s after the deploy started; "
         f"{pins_changed} files changed in the live venv", "yes; 0 files",
         "✅" if pins_back and pins_changed == 0 else "❌"),
        (f"kill at each step ({len(steps)} steps: {', '.join(steps)})", f"{inconsistent} inconsistent states",
         "0", verdict(inconsistent, 0)),
        ("make test-arm64 (qemu-aarch64, cortex-a72)", arm_what, "pass", "✅" if arm_pass == "PASS" else arm_pass),
    ]
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    return f"""## Deploy

`make bench ARGS="--only deploy"` (root: it starts sshd on 127.0.0.1). One loopback Pi: a real sshd with a
throw-away key, a temporary directory as the Pi's filesystem, `systemctl` replaced by a stub that runs the real
`python -m murmur.device serve` (null sink at real-time pace) and waits for READY=1. Times run from starting
`python -m murmur.deploy …` on the laptop side until the service's status file reports the wanted bundle playing ("to
sound") and until the command returned after its health gate ("incl. gate"). Kill test: the Pi side is SIGKILLed at
each step of a bundle-only update (every rename before it fsynced), then the disk is checked (current is one whole
release: code matches its id, bundle loads, config is that release's) and the service restarted as after a power
cut (`murmur-recover.service` first, then the service), which must bring back the release that played before the
killed deploy; one more kill lands while a venv for new pins is being installed. On loopback pip is a stand-in that links
the device venv into the venv being built (the real pip build is timed under qemu by `make test-arm64`). The bundle
is the test suite's tiny one (3 × 32 units).

| what | measured | target | |
|---|---|---|---|
{table}
"""
