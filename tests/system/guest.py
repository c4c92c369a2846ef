"""The booted system test's guest: a Debian 12 machine under QEMU's emulation (TCG), reached over ssh.

``Guest`` boots the cached image (tests/system/build-image.sh) through a copy-on-write overlay, so the image stays
pristine and every run starts from a fresh "SD card": the x86_64 guest (``q35``) on the cached kernel built for
gpio-sim (tests/system/build-kernel.sh) or, given the image directory as its kernel directory, on Debian's stock
amd64 kernel and initrd the image directory holds (the MIDI test: USB gadget and USB audio modules), or the arm64 guest (``virt``, ``-cpu cortex-a72``, ``console=ttyAMA0``)
on Debian's own arm64 kernel and initrd, which the image directory holds beside its disk.
QEMU's user network forwards one port on 127.0.0.1 to the guest's sshd (and, when a test asks, UDP ports on
127.0.0.1 to the guest's, ``udp_forwards``: the OSC test's client); nothing listens elsewhere, and the guest
reaches only what this machine reaches (the package registries). KVM is not used: on this nested virtual machine
QEMU aborts with ``-cpu host``/``max`` under KVM, so the guest runs under TCG with ``-cpu max`` (the lgpio wheel
needs SSE4.2/POPCNT, which TCG's default CPU lacks).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSH_ALIAS = "murmur-guest"


class GuestError(AssertionError):
    """A step of the scenario failed: the message names the step, says what was seen, the guest's journal tail and the fix."""


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 free now (TCP, or UDP with ``socket.SOCK_DGRAM``) for one of QEMU's forwards."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Guest:
    kernel_dir: Path  # bzImage (x86_64); else the image directory (vmlinuz, initrd.img: Debian's stock kernel)
    image_dir: Path  # disk.img (pristine), id_ed25519
    work: Path  # overlay, console log, ssh config (out/system)
    memory_mb: int = 2048
    cpus: int = 2
    arch: str = "x86_64"  # or "arm64"

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.overlay = self.work / "disk.qcow2"
        self.console = self.work / "console.log"
        self.key = self.work / "id_ed25519"
        self.key.write_bytes((self.image_dir / "id_ed25519").read_bytes())
        self.key.chmod(0o600)
        self.ssh_config = self.work / "ssh_config"
        self.ssh_config.write_text(
            f"Host {SSH_ALIAS}\n  HostName 127.0.0.1\n  Port {self.port}\n  User pi\n  IdentityFile {self.key}\n"
            "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
        self.proc: subprocess.Popen | None = None
        self.boots = 0
        self.kernel_append = ""
        self.udp_forwards: dict[int, int] = {}  # guest UDP port -> this machine's port on 127.0.0.1 (set before power_on)

    # -- the machine ------------------------------------------------------------------------------------------
    def fresh_disk(self) -> None:
        """A new overlay over the pristine image: the "SD card" as Raspberry Pi Imager leaves it."""
        self.overlay.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        str(self.image_dir / "disk.img"), str(self.overlay)], check=True)

    def power_on(self) -> float:
        """Start QEMU; returns time.monotonic() at power-on."""
        assert self.proc is None or self.proc.poll() is not None, "the guest is already running"
        if self.arch == "arm64":
            machine = ["qemu-system-aarch64", "-machine", "virt", "-accel", "tcg", "-cpu", "cortex-a72"]
            kernel, initrd, console = self.kernel_dir / "vmlinuz", self.kernel_dir / "initrd.img", "ttyAMA0"
        else:
            machine = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max"]
            kernel, initrd, console = self.kernel_dir / "bzImage", self.kernel_dir / "initrd", "ttyS0"
            if not kernel.is_file():  # the image directory: Debian's stock kernel (the MIDI test)
                kernel, initrd = self.kernel_dir / "vmlinuz", self.kernel_dir / "initrd.img"
        argv = [*machine, "-m", str(self.memory_mb), "-smp", str(self.cpus), "-kernel", str(kernel),
                "-append", f"root=/dev/vda rw console={console} net.ifnames=0 panic=-1 {self.kernel_append}".strip(),
                *(["-initrd", str(initrd)] if initrd.is_file() else []),
                "-drive", f"file={self.overlay},format=qcow2,if=none,id=disk0",
                "-device", "virtio-blk-pci,drive=disk0",
                "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:22"
                + "".join(f",hostfwd=udp:127.0.0.1:{host}-:{port}" for port, host in self.udp_forwards.items()),
                "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci",
                "-display", "none", "-serial", f"file:{self.console}", "-monitor", "none"]
        if self.console.exists():  # keep the previous boots' console for the report
            with open(self.work / "console-previous.log", "ab") as old:
                old.write(self.console.read_bytes())
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.work / "qemu.stderr", "ab"), start_new_session=True)
        self.boots += 1
        return time.monotonic()

    def power_cut(self) -> None:
        """Pull the plug: SIGKILL to QEMU (nothing is flushed that the guest did not flush)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def shutdown(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.ssh("sudo systemctl poweroff", check=False, timeout=20)
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.power_cut()

    def finish(self, figures: dict) -> None:
        """The end of a guest's scenario: the guest's journal tail saved (journal-last-boot.txt), the guest shut
        down, and the figures written to result.json (``passed`` when no step failed, the date) in ``work``."""
        try:
            if self.alive():
                (self.work / "journal-last-boot.txt").write_text(self.journal_tail(400))
        finally:
            self.shutdown()
            figures["passed"] = not figures.get("failed_steps")
            figures["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            (self.work / "result.json").write_text(json.dumps(figures, indent=1) + "\n")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- ssh --------------------------------------------------------------------------------------------------
    def ssh_argv(self) -> list[str]:
        return ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", SSH_ALIAS]

    def ssh(self, command: str, *, check: bool = True, timeout: float = 120, binary: bool = False,
            step: str = "ssh") -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run([*self.ssh_argv(), command], capture_output=True, timeout=timeout, text=not binary)
        except subprocess.TimeoutExpired:
            if check:
                raise GuestError(f"{step}: `{command}` on the guest did not finish within {timeout:.0f} s") from None
            empty = b"" if binary else ""
            return subprocess.CompletedProcess(command, 255, empty, b"timeout" if binary else "timeout")
        if check and proc.returncode != 0:
            err = proc.stderr if not binary else proc.stderr.decode(errors="replace")
            out = proc.stdout if not binary else ""
            raise GuestError(f"{step}: `{command}` on the guest exited {proc.returncode}: {(out + err).strip()[-800:]}")
        return proc

    def wait_ssh(self, deadline_s: float, *, since: float | None = None) -> float:
        """Poll until sshd answers a command; returns seconds since ``since`` (power-on)."""
        since = since if since is not None else time.monotonic()
        end = time.monotonic() + deadline_s
        last = ""
        while time.monotonic() < end:
            if not self.alive():
                raise GuestError(f"boot: QEMU exited ({self.proc.returncode if self.proc else '?'}); "
                                 f"console tail:\n{self.console_tail()}\nqemu: {self.qemu_stderr()}")
            try:
                proc = subprocess.run([*self.ssh_argv(), "true"], capture_output=True, text=True, timeout=20)
                if proc.returncode == 0:
                    return time.monotonic() - since
                last = proc.stderr.strip()
            except subprocess.TimeoutExpired:
                last = "ssh timed out"
            time.sleep(1.0)  # poll interval, not a synchronisation: the loop waits for sshd's answer
        raise GuestError(f"boot: no ssh on 127.0.0.1:{self.port} within {deadline_s:.0f} s ({last}); console tail:\n"
                         f"{self.console_tail()}\nfix: read {self.console} (kernel or systemd stopped early?)")

    def poll(self, what: str, check, deadline_s: float, interval_s: float = 1.0):
        """Call ``check()`` until it returns a truthy value (returned) or the deadline passes (GuestError)."""
        end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < end:
            last = check()
            if last:
                return last
            time.sleep(interval_s)  # poll interval between checks of a condition, with a deadline
        raise GuestError(f"{what}: not reached within {deadline_s:.0f} s (last seen: {last!r})")

    # -- what the report shows --------------------------------------------------------------------------------
    def console_tail(self, lines: int = 30) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    def qemu_stderr(self) -> str:
        try:
            return (self.work / "qemu.stderr").read_text(errors="replace")[-600:]
        except OSError:
            return ""

    def journal_tail(self, lines: int = 40, unit: str | None = None, boot: str = "") -> str:
        if not self.alive():
            return f"(guest not running; console tail:)\n{self.console_tail()}"
        what = f"-u {shlex.quote(unit)}" if unit else ""
        try:
            proc = self.ssh(f"sudo journalctl --no-pager -o short-monotonic -n {lines} {what} {boot}", check=False,
                            timeout=30)
            return proc.stdout.strip() or proc.stderr.strip()
        except (subprocess.TimeoutExpired, OSError) as exc:
            return f"(journal unreadable: {exc})"
