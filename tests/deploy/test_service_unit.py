"""deploy/murmur.service: systemd accepts it (verify, empty stderr), it scores <= 2.0 exposure, and it keeps the
directives the appliance depends on (notify + watchdog, restart, devices, writes)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from murmur import REPO_ROOT as ROOT

UNIT = ROOT / "deploy" / "murmur.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (scripts/setup-apt.sh)")


def make_root(tmp_path: Path, unit_text: str) -> Path:
    """A throw-away root for `systemd-analyze verify --root`: the unit unchanged at its install path, the stock
    unit directory (for sysinit.target & co.), and the two binaries it runs at the paths it names — so verify
    checks the real file, including that ExecStart/ExecReload point at executables, without touching /opt."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/murmur.service").write_text(unit_text)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for line in re.findall(r"^Exec(?:Start|Reload)=(\S+)", unit_text, re.M):
        target = root / line.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("#!/bin/sh\n")
        target.chmod(0o755)
    return root


def verify(tmp_path: Path, unit_text: str) -> subprocess.CompletedProcess:
    root = make_root(tmp_path, unit_text)
    return subprocess.run(
        [ANALYZE, "verify", f"--root={root}", "--man=no", "/etc/systemd/system/murmur.service"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )


@needs_analyze
def test_unit_verifies_with_empty_stderr(tmp_path):
    result = verify(tmp_path, UNIT.read_text())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@needs_analyze
def test_verify_setup_catches_a_broken_unit(tmp_path):
    """The same harness reports a typo'd key and a missing binary, so the test above can fail."""
    broken = UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs=")
    result = verify(tmp_path / "a", broken)
    assert "WatchdogSecs" in result.stderr
    no_binary = UNIT.read_text().replace("ExecReload=/bin/kill", "ExecReload=/bin/kil")
    root = make_root(tmp_path / "b", UNIT.read_text())
    (root / "etc/systemd/system/murmur.service").write_text(no_binary)
    result = subprocess.run(
        [ANALYZE, "verify", f"--root={root}", "--man=no", "/etc/systemd/system/murmur.service"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode != 0 and "/bin/kil" in result.stderr


def exposure(path: Path) -> tuple[float, subprocess.CompletedProcess]:
    # systemd 252 takes --threshold in tenths (exposure 2.0 -> 20).
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--threshold=20", str(path)],
        capture_output=True, text=True, timeout=60, cwd=path.parent,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    return float(match.group(1)), result


@needs_analyze
def test_exposure_at_most_2(tmp_path):
    score, result = exposure(UNIT)
    assert score <= 2.0 and result.returncode == 0, result.stdout[-3000:]


@needs_analyze
def test_threshold_rejects_a_weaker_unit(tmp_path):
    """Dropping the system-call filter and the namespace/device restrictions pushes the score over 2.0."""
    weak = "\n".join(
        line for line in UNIT.read_text().splitlines()
        if not line.startswith(("SystemCallFilter", "DevicePolicy", "DeviceAllow", "PrivateNetwork", "RestrictAddressFamilies",
                                "CapabilityBoundingSet", "ProtectSystem", "ProtectHome", "IPAddressDeny", "User=", "RestrictNamespaces"))
    )
    path = tmp_path / "murmur.service"
    path.write_text(weak)
    score, result = exposure(path)
    assert score > 2.0 and result.returncode != 0


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_keeps_what_the_appliance_needs():
    d = directives(UNIT.read_text())
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"] and d["WatchdogSec"]
    assert d["Restart"] == ["always"] and d["StartLimitBurst"] and d["StartLimitIntervalSec"]
    assert d["User"] == ["murmur"] and set(d["SupplementaryGroups"][0].split()) == {"audio", "gpio", "spi"}
    assert d["ExecStart"] == ["/opt/murmur/current/venv/bin/python -m murmur.device serve --config /etc/murmur/murmur.toml"]
    assert d["WorkingDirectory"] == ["/opt/murmur/current"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["CPUSchedulingPolicy"] == ["fifo"]
    assert d["DevicePolicy"] == ["closed"]
    allowed = " ".join(d["DeviceAllow"])
    for device in ("char-alsa", "char-gpiochip", "char-spi"):
        assert device in allowed
    assert d["ProtectSystem"] == ["strict"] and d["StateDirectory"] == ["murmur"] and d["RuntimeDirectory"] == ["murmur"]
    assert d["PrivateNetwork"] == ["yes"] and d["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert "MURMUR_STATUS_FILE=/run/murmur/status.json" in d["Environment"][0]
    # lgpio's notification pipes go to $LG_WD, else the working directory (read-only under ProtectSystem=strict)
    assert "LG_WD=/run/murmur" in " ".join(d["Environment"]) and "/opt/murmur" in " ".join(d["ReadOnlyPaths"])


MDWE_PROBE = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    print("NO-MDWE"); sys.exit(0)
try:  # the control: writable+executable memory is now refused
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("W+X ALLOWED"); sys.exit(1)
except PermissionError:
    pass
import numpy as np
from murmur.device.bundle import load_bundle
from murmur.device.playback.engine import render
audio = render(load_bundle(sys.argv[1]), 0.5, seed=1)
assert audio.shape[0] > 0 and np.isfinite(audio).all() and float(np.abs(audio).max()) > 0
import pyaudio
pyaudio.PyAudio().terminate()
import systemd.journal, gpiozero
from gpiozero.pins.mock import MockFactory
gpiozero.Button(17, pin_factory=MockFactory()).close()
print("OK")
"""


def test_device_stack_runs_with_memory_deny_write_execute(tiny_bundle):
    """MemoryDenyWriteExecute=yes stays in the unit only because numpy, the TFLite runtime (XNNPACK), PyAudio,
    gpiozero and systemd-python all run without writable+executable memory: checked here with the kernel's own
    MDWE switch (PR_SET_MDWE, Linux >= 6.3), the same restriction systemd applies."""
    result = subprocess.run([sys.executable, "-c", MDWE_PROBE, str(tiny_bundle)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    if result.stdout.strip() == "NO-MDWE":
        pytest.skip("kernel without PR_SET_MDWE (< 6.3)")
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stdout + result.stderr[-2000:]
    assert "MemoryDenyWriteExecute=yes" in UNIT.read_text()
