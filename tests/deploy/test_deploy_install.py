"""deploy/install.sh against a temporary root (MURMUR_ROOT) with apt-get, useradd, usermod, groupadd, pip, uname,
getent and systemctl replaced by recorders on PATH (murmur.deploy.testing.loopback.make_recorders); the venv is made for real
(by pi_release.py venv, in venvs/<key>; the recorded pip links the checkout's device venv into it)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from murmur import REPO_ROOT as REPO
from murmur.deploy.testing.loopback import make_recorders

INSTALL = REPO / "deploy/install.sh"
KNOBS_WITH_POT = """
[playback]
bundle = "/opt/murmur/current/bundle"

[knobs]
enabled = true

[knobs.noise]
type = "pot"
channel = 0
control = "temperature"
"""


@pytest.fixture
def pi_root(tmp_path):
    root = tmp_path / "root"
    make_recorders(tmp_path / "bin", root)
    return root


def install(root: Path, *args: str, uname: str | None = None, archive: str = "raspberry-pi-os",
            allow_arch: str | None = None) -> subprocess.CompletedProcess:
    """install.sh against ``root``; ``archive`` is what apt can install: "raspberry-pi-os" (every package) or
    "debian" (no python3-lgpio, as in Debian 12's archive)."""
    bin_dir = root.parent / "bin"
    if uname is not None:
        (bin_dir / "uname").write_text(f"#!/bin/sh\necho {uname}\n")
    missing = "python3-lgpio" if archive == "debian" else "none-at-all"
    apt_cache = bin_dir / "apt-cache"
    apt_cache.write_text(f'#!/bin/sh\n[ "$1" = show ] && [ "$2" = {missing} ] && '
                         f'{{ echo "E: No packages found" >&2; exit 100; }}\necho "Package: $2"\n')
    apt_cache.chmod(0o755)
    env = dict(os.environ, MURMUR_ROOT=str(root), MURMUR_PIP=str(bin_dir / "pip"),
               PATH=f"{bin_dir}:{os.environ['PATH']}")
    env.pop("MURMUR_ALLOW_OS", None)
    env.pop("MURMUR_ALLOW_ARCH", None)
    if allow_arch is not None:
        env["MURMUR_ALLOW_ARCH"] = allow_arch
    return subprocess.run(["sh", str(INSTALL), *args], env=env, capture_output=True, text=True, timeout=120)


def recorded(root: Path) -> list[str]:
    path = root / "var/log/recorded.calls"
    return path.read_text().splitlines() if path.is_file() else []


@pytest.mark.slow
def test_fresh_install_does_everything_once_and_keeps_the_technicians_config(pi_root):
    proc = install(pi_root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = recorded(pi_root)
    apt = [c for c in calls if c.startswith("apt-get install")]
    assert len(apt) == 1 and all(p in apt[0] for p in ("python3-venv", "python3-gpiozero", "python3-lgpio",
                                                        "python3-spidev", "python3-pyaudio", "python3-systemd"))
    assert any(c.startswith("useradd --system") and c.endswith(" murmur") for c in calls)
    assert "usermod -a -G audio,gpio,spi murmur" in calls
    pip = [c for c in calls if c.startswith("pip install")]
    assert len(pip) == 1 and re.search(r" -r \S+deploy/requirements-pi\.txt( |$)", pip[0])
    # anything after the requirements file is a PyPI stand-in for an apt package this machine's python3 lacks
    extra = pip[0].split("requirements-pi.txt", 1)[1].split()
    assert set(extra) <= {"gpiozero==2.0.1.post3", "colorzero==2.0", "lgpio==0.2.2.0"}
    assert "60-murmur-gpio.rules" in proc.stdout
    rule = (pi_root / "etc/udev/rules.d/60-murmur-gpio.rules").read_text()
    assert 'KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' in rule and 'GROUP="spi"' in rule
    # the ALSA core loads at boot, so DeviceAllow=char-alsa (resolved at the service's start) covers late cards
    assert (pi_root / "etc/modules-load.d/murmur-alsa.conf").read_text().splitlines()[-1] == "snd"
    key = hashlib.sha256((REPO / "deploy/requirements-pi.txt").read_bytes()).hexdigest()[:16]
    venv = pi_root / "opt/murmur/venvs" / key
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert (venv / ".murmur-complete").is_file()
    assert subprocess.run([venv / "bin/python", "-c", "import numpy"]).returncode == 0  # a venv that runs the code
    assert not (pi_root / "opt/murmur/venv").exists()  # no shared venv any more
    unit = pi_root / "etc/systemd/system/murmur.service"
    assert unit.read_bytes() == (REPO / "deploy/murmur.service").read_bytes()
    stamp = (pi_root / "opt/murmur/.deploy/installed.sha256").read_text().strip()
    assert stamp == hashlib.sha256(INSTALL.read_bytes()).hexdigest()  # what `make deploy` compares to re-run it
    governor = (pi_root / "etc/systemd/system/murmur-cpu-performance.service").read_text()
    assert "performance" in governor
    # skipped, not failed, where there is no CPU frequency scaling (virtual machines)
    assert "ConditionPathExistsGlob=/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor" in governor
    config = pi_root / "etc/murmur/murmur.toml"
    assert config.read_bytes() == (REPO / "deploy/murmur.toml").read_bytes()
    systemctl = (pi_root / "var/log/systemctl.calls").read_text().splitlines()
    assert "daemon-reload" in systemctl
    assert "enable murmur.service murmur-cpu-performance.service murmur-recover.service" in systemctl
    recover = (pi_root / "etc/systemd/system/murmur-recover.service").read_text()
    assert recover == (REPO / "deploy/murmur-recover.service").read_text()

    config.write_text(config.read_text() + "\n# the technician's edit\n")
    unit.write_text(unit.read_text() + "\n# the live release's unit\n")  # releases own the unit after the first
    boot = pi_root / "boot/firmware/config.txt"
    boot.parent.mkdir(parents=True)
    boot.write_text("dtparam=audio=on\n")
    for _ in range(2):
        again = install(pi_root, "--hat", "hifiberry-dac")
        assert again.returncode == 0, again.stdout + again.stderr
    assert config.read_text().endswith("# the technician's edit\n")
    assert "keeping" in again.stdout
    assert unit.read_text().endswith("# the live release's unit\n")
    assert len([c for c in recorded(pi_root) if c.startswith("pip install")]) == 1  # requirements unchanged
    assert boot.read_text().count("dtoverlay=hifiberry-dac") == 1


@pytest.mark.skipif(not Path("/usr/bin/systemd-analyze").exists() and not Path("/bin/systemd-analyze").exists(),
                    reason="systemd-analyze missing (apt systemd)")
@pytest.mark.parametrize("name", ["murmur-cpu-performance.service", "murmur-recover.service"])
def test_the_helper_units_install_writes_pass_systemd_analyze(pi_root, tmp_path, name):
    """As installed; the /opt path the recovery unit runs is mapped into a throw-away directory (verify checks
    that ExecStart's program exists)."""
    assert install(pi_root).returncode == 0
    text = (pi_root / "etc/systemd/system" / name).read_text()
    for path in set(re.findall(r"/opt/\S+", text)):
        stand_in = tmp_path / path.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("")
        text = text.replace(path, str(stand_in))
    checked = tmp_path / name
    checked.write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(checked)], capture_output=True, text=True,
                          env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


@pytest.mark.parametrize("machine", ["armv7l", "x86_64"])
def test_refuses_anything_but_64_bit_arm(pi_root, machine):
    proc = install(pi_root, uname=machine)
    assert proc.returncode == 1
    assert machine in proc.stderr and "64-bit" in proc.stderr
    assert not [c for c in recorded(pi_root) if c.startswith(("apt-get", "useradd", "usermod", "pip"))]
    assert not (pi_root / "opt/murmur/venvs").exists()


def test_another_64_bit_machine_is_let_through_only_by_name(pi_root):
    """The booted system test's x86_64 guest: MURMUR_ALLOW_ARCH must name the machine's own architecture."""
    wrong = install(pi_root, uname="x86_64", allow_arch="riscv64")
    assert wrong.returncode == 1 and "MURMUR_ALLOW_ARCH=x86_64" in wrong.stderr
    proc = install(pi_root, uname="x86_64", allow_arch="x86_64")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not a Raspberry Pi's; going on because MURMUR_ALLOW_ARCH=x86_64" in proc.stdout
    assert (pi_root / "etc/systemd/system/murmur.service").is_file()


def test_plain_debian_installs_without_python3_lgpio_which_only_raspberry_pi_os_has(pi_root):
    proc = install(pi_root, archive="debian")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    apt = [c for c in recorded(pi_root) if c.startswith("apt-get install")]
    assert len(apt) == 1 and "python3-gpiozero" in apt[0] and "python3-lgpio" not in apt[0]
    assert "python3-lgpio: not in this OS's apt archive" in proc.stdout and "from PyPI" in proc.stdout
    assert (pi_root / "opt/murmur/.deploy/installed.sha256").is_file()


def test_system_fallbacks_add_pypi_pins_only_for_what_this_python_lacks(tmp_path):
    """requirements-pi.txt's "#if-system-lacks" lines: pins added where the OS lacks (or has too old) a package."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("pi_release_for_test", REPO / "deploy/pi_release.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pi_release_for_test"] = module
    spec.loader.exec_module(module)
    requirements = tmp_path / "requirements-pi.txt"
    requirements.write_text("numpy==2.4.6\n#if-system-lacks pytest: pytest==0.0.1\n"
                            "#if-system-lacks pytest>=999.0: newer-pytest==1\n"
                            "#if-system-lacks murmur-surely-missing-dist: stand-in==2.0 its-helper==1.0\n"
                            "# if-system-lacks lgpio: a comment, not a fallback line\n")
    extra = module.system_fallbacks(requirements)
    assert sorted(p for pins in extra.values() for p in pins) == ["its-helper==1.0", "newer-pytest==1", "stand-in==2.0"]
    assert any(k.startswith("pytest>=999.0 (found ") for k in extra)
    shipped = module.system_fallbacks(REPO / "deploy/requirements-pi.txt")
    assert set(p for pins in shipped.values() for p in pins) <= {"gpiozero==2.0.1.post3", "colorzero==2.0", "lgpio==0.2.2.0"}


def test_refuses_an_os_other_than_bookworm(pi_root):
    (pi_root / "etc/os-release").write_text("VERSION_CODENAME=bullseye\n")
    proc = install(pi_root)
    assert proc.returncode == 1
    assert "bullseye" in proc.stderr and "Bookworm" in proc.stderr and "MURMUR_ALLOW_OS" in proc.stderr


@pytest.mark.parametrize("config", [KNOBS_WITH_POT, KNOBS_WITH_POT.replace("enabled = true\n", "")],
                         ids=["enabled", "enabled-by-default"])
def test_pot_knobs_need_spi_enabled(pi_root, config):
    (pi_root / "etc/murmur").mkdir(parents=True)
    (pi_root / "etc/murmur/murmur.toml").write_text(config)
    proc = install(pi_root, "--check")
    assert proc.returncode == 1
    assert "SPI is off" in proc.stderr and "raspi-config nonint do_spi 0" in proc.stderr
    boot = pi_root / "boot/firmware/config.txt"
    boot.parent.mkdir(parents=True)
    boot.write_text("#dtparam=spi=on\n")
    assert install(pi_root, "--check").returncode == 1  # commented out is off
    boot.write_text("dtparam=spi=on\n")
    proc = install(pi_root, "--check")
    assert proc.returncode == 0, proc.stderr
    assert "SPI yes (needed: yes)" in proc.stdout


def test_the_shipped_example_config_needs_no_spi(pi_root):
    (pi_root / "etc/murmur").mkdir(parents=True)
    (pi_root / "etc/murmur/murmur.toml").write_bytes((REPO / "deploy/murmur.toml").read_bytes())
    proc = install(pi_root, "--check")
    assert proc.returncode == 0, proc.stderr
    assert "(needed: no)" in proc.stdout


def test_inventory_example_parses_into_eight_rooms():
    from murmur.deploy.inventory import load_inventory

    inventory = load_inventory(REPO / "deploy/inventory.example.toml")
    assert len(inventory.hosts) == 8
    assert len({h.bundle for h in inventory.hosts.values()}) > 1  # rooms play different bundles
    hall = inventory.resolve(["@hall"])
    assert hall and all("hall" in h.groups for h in hall)


def test_ssh_and_rsync_only_ship_device_code(tmp_path):
    from murmur.deploy.tool import code_files

    files = code_files(REPO)
    assert "device/cli/verify.py" in files and "deploy/install.sh" in files and "deploy/murmur.service" in files
    assert "deploy/pi_release.py" in files and "deploy/murmur-recover.service" in files  # what the recovery unit runs
    assert not [f for f in files if f.startswith(("trainer/", "tests/", "tests/arm64/")) or "loopback" in f
                or f.endswith(".pyc")]


def test_inventory_errors_name_the_host_key_and_value(tmp_path):
    from murmur.deploy.inventory import load_inventory
    from murmur.device.errors import ConfigError

    bad = tmp_path / "inventory.toml"
    bad.write_text('[hosts.hall-1]\naddress = "a"\nbundel = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'bundel' for host 'hall-1'.*bundle"):
        load_inventory(bad)
    bad.write_text('[hosts.hall-1]\nport = "22"\n')
    with pytest.raises(ConfigError, match=r"'hall-1' key 'port' = '22'"):
        load_inventory(bad)
    with pytest.raises(ConfigError, match="no host in the inventory has groups"):
        load_inventory(REPO / "deploy/inventory.example.toml").resolve(["@attic"])


def test_a_failed_venv_build_stops_the_install_and_leaves_no_half_venv(pi_root):
    pip = pi_root.parent / "bin/pip"
    pip.write_text("#!/bin/sh\necho 'ERROR: No matching distribution found for ai-edge-litert==2.3.0' >&2\nexit 1\n")
    proc = install(pi_root)
    assert proc.returncode == 1
    assert "No matching distribution found for ai-edge-litert" in proc.stdout + proc.stderr
    assert "building the venv" in proc.stderr and "run this again" in proc.stderr
    venvs = pi_root / "opt/murmur/venvs"
    assert [p.name for p in venvs.iterdir()] == []  # removed, not left half-built under its key
    assert not (pi_root / "opt/murmur/.deploy/installed.sha256").exists()  # the next deploy runs install.sh again


def test_journald_is_capped_by_default_volatile_on_request_and_kept_when_rerun(pi_root):
    conf = pi_root / "etc/systemd/journald.conf.d/murmur.conf"
    proc = install(pi_root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = conf.read_text()
    assert "Storage=persistent" in text and "SystemMaxUse=32M" in text
    assert "SyncIntervalSec=10s" in text  # a power cut loses at most the last 10 s of the log
    proc = install(pi_root, "--journal", "volatile")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Storage=volatile" in conf.read_text() and "journal: volatile" in proc.stdout
    assert "restart systemd-journald" in (pi_root / "var/log/systemctl.calls").read_text()
    proc = install(pi_root)  # a later run (e.g. a deploy of new code) keeps the technician's choice
    assert proc.returncode == 0 and "Storage=volatile" in conf.read_text()
    bad = install(pi_root, "--journal", "tape")
    assert bad.returncode == 2 and "use persistent or volatile" in bad.stderr
