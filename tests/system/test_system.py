"""The appliance, booted: one Debian 12 guest (QEMU, emulated x86_64) through a gallery's life, driven by the
project's own laptop commands, with real systemd, sshd, ALSA (snd-aloop) and GPIO (gpio-sim).

In order, on one guest (each step needs the ones before it; a failed step makes the later ones skip):
 1. first install: `make deploy PI=murmur-guest` onto the fresh "card" (install.sh, apt, the venv from PyPI)
 2. the service READY under its shipped hardening, and sound out of the card: >= 10 s recorded from the
    loopback's capture side, judged against the bundle's source (tests/system/sound.py); the sound path as the
    card sees it (hw_params); `make status` shows it playing; no failed unit; a journal without PortAudio's probe noise
 3. the knob panel: gpio-sim lines pulled down as a technician presses the buttons; seen in the status and journal
 4. the hardening in force on the running unit, and a write outside its paths refused in its own namespace
 5. the watchdog: the service SIGSTOPped is killed and restarted by systemd
 6. `systemctl reboot` → sound again (boot → sound)
 7. a late sound card: booted without snd-aloop, the service waits (no restarts, status says what is missing);
    `modprobe snd-aloop` minutes later → sound within 10 s, nobody logging in
MIDI with a real USB device (a dummy_hcd + f_midi gadget) is test_system_midi.py's: it boots the same image on
Debian's stock kernel after this guest has shut down.
Figures go to out/system/result.json (BENCHMARKS.md "System"). Emulated: the guest runs ~15x slower than this
machine, so it does not keep real time; underruns are counted and reported, not failed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from guest import SSH_ALIAS, Guest, GuestError  # noqa: E402
from sound import (  # noqa: E402
    FRAME,
    band_spectrum,
    distance,
    judge,
    longest_run,
    shape,
    silent_blocks,
    which_sound,
    whole_frames,
)

from murmur import REPO_ROOT as REPO  # noqa: E402

pytestmark = pytest.mark.system

ARCH = os.environ.get("SYSTEM_ARCH", "x86_64")  # tests/system/run.sh runs the scenario once per guest
OUT = REPO / "out" / ("system" if ARCH == "x86_64" else f"system-{ARCH}")
# The arm64 guest's scenario is first install + sound + hardening + reboot + one power cut: it runs on Debian's
# stock arm64 kernel under full emulation, slower than the x86_64 guest (BENCHMARKS.md, System, gives its time);
# the steps below run on the x86_64 guest only, each for the reason given (written to result.json too).
ARM64_LEFT_OUT = {
    "gpio": "Debian's arm64 kernel is built without GPIO_SIM (no simulated GPIO lines); the x86_64 guest's kernel, "
            "built for it, runs the knob panel on gpio-sim",
    "watchdog": "the x86_64 guest runs it (the same unit and systemd); left out of the arm64 scenario for time",
    "update": "the x86_64 guest runs it (the same deploy code); left out of the arm64 scenario for time",
    "late card": "the x86_64 guest runs it (two more boots); left out of the arm64 scenario for time",
    **{f"power cut at {step}": "one power cut on arm64 (at 'switched', where murmur-recover.service must run); "
       "the x86_64 guest cuts at every step" for step in ("bundle-ready", "release-ready", "verified", "journal",
                                                          "reloaded", "healthy")},
}
CAPTURE_S = 12
MAX_CAPTURES = 5
MIN_FRAMES = 200  # whole 512-sample frames between gaps (about 1.2 s of sound) for the spectral figures
LATE_CARD_WAIT_S = float(os.environ.get("SYSTEM_LATE_CARD_WAIT_S", "120"))
BOOT_TO_SOUND_LIMIT_S = 240 if ARCH == "x86_64" else 480  # a deadline for the test, not the target (BENCHMARKS.md)
STATUS = "sudo cat /run/murmur/status.json"
CODE = OUT / "code"  # the checkout's shipped code as the run found it: what every deploy of the run ships
BASELINE_S = 8  # recorded before an update or rollback starts
AFTER_S = 15  # recorded after it ended and the crossfade is over
CROSSFADE_S = 3.0  # [playback] crossfade_s (default), counted in frames (258 at 44.1 kHz / 512)
CHANGE_DEADLINE_S = 900  # a deadline for the test, not the target (update -> new sound <= 30 s: BENCHMARKS.md)


# --------------------------------------------------------------------------------------------------- fixtures
class Life:
    """The guest and what the steps found (figures for result.json; the first failed step)."""

    def __init__(self, guest: Guest, bundle: Path, source: Path, update_bundle: Path, update_source: Path) -> None:
        self.guest, self.bundle, self.source = guest, bundle, source
        self.update_bundle, self.update_source = update_bundle, update_source
        self.figures: dict = {}
        self.failed: str | None = None
        self.kept_disk = False

    def need(self, step: str = "") -> None:
        if ARCH == "arm64" and step in ARM64_LEFT_OUT:
            self.figures.setdefault("left_out_on_arm64", {})[step] = ARM64_LEFT_OUT[step]
            pytest.skip(f"arm64 guest: {ARM64_LEFT_OUT[step]}")
        if self.failed:
            pytest.skip(f"an earlier step failed ({self.failed})")

    def fail(self, step: str, what: str, fix: str, *, blocking: bool = True) -> None:
        """Fail this step; a ``blocking`` failure also skips the later steps (they need its state)."""
        if blocking:
            self.failed = step
        self.figures.setdefault("failed_steps", []).append(step)
        journal = self.guest.journal_tail(40) if self.guest.alive() else self.guest.console_tail()
        pytest.fail(f"step '{step}': {what}\n--- guest journal (last 40 lines) ---\n{journal}\n--- fix: {fix}",
                    pytrace=False)

    def status(self) -> dict | None:
        proc = self.guest.ssh(STATUS, check=False, timeout=30)
        try:
            return json.loads(proc.stdout) if proc.returncode == 0 else None
        except ValueError:
            return None

    def make_argv(self, target: str, *args: str) -> tuple[list[str], dict[str, str]]:
        """`make <target> PI=murmur-guest …` as a technician types it; a deploy ships the scenario's code snapshot
        (``CODE``, taken when the run started), so that every deploy of the run ships the same code and an update
        is bundle-only whatever is edited in the checkout meanwhile."""
        env = {k: v for k, v in os.environ.items() if k not in ("ARGS", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        env["MURMUR_INVENTORY"] = str(self.guest.work / "inventory.toml")
        extra = [f"ARGS=--repo {CODE}"] if target == "deploy" else []
        return ["make", "--no-print-directory", target, f"PI={SSH_ALIAS}", *args, *extra], env

    def make(self, target: str, *args: str, timeout: float = 3600) -> tuple[int, str, float]:
        argv, env = self.make_argv(target, *args)
        t0 = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
        (self.guest.work / f"make-{target}.log").write_text(out)
        return proc.returncode, out, time.monotonic() - t0


@pytest.fixture(scope="module")
def life():
    kernel, image = Path(os.environ["SYSTEM_KERNEL"]), Path(os.environ["SYSTEM_IMAGE"])
    bundle, source = Path(os.environ["SYSTEM_BUNDLE"]), Path(os.environ["SYSTEM_SOURCE"])
    guest = Guest(kernel, image, OUT, arch=ARCH)
    if not (os.environ.get("SYSTEM_KEEP_DISK") == "1" and CODE.is_dir()):
        import shutil

        from murmur.deploy.testing.loopback import snapshot_code

        shutil.rmtree(CODE, ignore_errors=True)
        snapshot_code(CODE)
    keep = os.environ.get("SYSTEM_KEEP_DISK") == "1" and guest.overlay.is_file()
    if not keep:
        guest.fresh_disk()
    (guest.work / "inventory.toml").write_text(
        "# written by tests/system/test_system.py: the booted guest as one Pi of an inventory\n"
        f'ssh_config = "{guest.ssh_config}"\n\n[hosts.{SSH_ALIAS}]\naddress = "{SSH_ALIAS}"\nuser = "pi"\n'
        f'bundle = "{bundle}"\nconfig = "{HERE / ("guest-murmur.toml" if ARCH == "x86_64" else "guest-murmur-arm64.toml")}"\n'
        "# an emulated CPU: the health gate's first sound takes longer than on a Pi\n"
        f"gate_timeout_s = {300 if ARCH == 'x86_64' else 600}\n"
        + ('# not a Raspberry Pi: install.sh\'s documented override for its aarch64 check\n'
           'env = { MURMUR_ALLOW_ARCH = "x86_64" }\n' if ARCH == "x86_64" else ""))
    state = Life(guest, bundle, source, Path(os.environ["SYSTEM_UPDATE_BUNDLE"]), Path(os.environ["SYSTEM_UPDATE_SOURCE"]))
    state.kept_disk = keep
    t0 = guest.power_on()
    try:
        state.figures["arch"] = ARCH
        state.figures["first_boot_to_ssh_s"] = round(guest.wait_ssh(300 if ARCH == "x86_64" else 900, since=t0), 1)
        yield state
    finally:
        guest.finish(state.figures)


# ------------------------------------------------------------------------------------------------ helpers
def wait_playing(life: Life, deadline_s: float, step: str) -> dict:
    try:
        return life.guest.poll(f"{step}: service playing",
                               lambda: (lambda s: s if s and s.get("playing") else None)(life.status()), deadline_s)
    except GuestError as exc:
        life.fail(step, f"{exc}; last status: {life.status()}",
                  "read the journal above: the service's own lines say why it does not play")
        raise


def hw_params(life: Life) -> dict:
    """The playback side of the loopback card as the kernel sees it (what alsa-lib/PortAudio really opened)."""
    out = life.guest.ssh("cat /proc/asound/Loopback/pcm0p/sub0/hw_params", check=False).stdout
    params = dict(re.findall(r"^(\w+): (.+?)(?: \(.*\))?$", out, re.M))
    return params


def capture(life: Life, step: str, seconds: int = CAPTURE_S) -> dict:
    """Record from the loopback's capture side (the format the service opened) and judge it: ``seconds`` at a
    time, again (up to ``MAX_CAPTURES`` times) while the sound between underrun gaps is under ``MIN_FRAMES``
    whole frames (the emulated guest does not keep real time)."""
    params = hw_params(life)
    if not params or "closed" in params:
        life.fail(step, f"the loopback's playback side is not open: {params!r}",
                  "the service must hold hw:Loopback,0 open; see its journal lines above")
    fmt, rate, channels = params["format"], int(params["rate"]), int(params["channels"])
    dtype = {"FLOAT_LE": np.float32, "S16_LE": np.int16, "S32_LE": np.int32}.get(fmt)
    if dtype is None:
        life.fail(step, f"unexpected sample format {fmt}", "extend tests/system/test_system.py capture()")
    import soundfile

    source, source_rate = soundfile.read(life.source, dtype="float32", always_2d=True)
    parts: list[np.ndarray] = []
    for _ in range(MAX_CAPTURES):
        raw = life.guest.ssh(f"arecord -q -D hw:Loopback,1,0 -f {fmt} -r {rate} -c {channels} -d {seconds} -t raw",
                             binary=True, timeout=seconds + 120, check=False)
        if raw.returncode != 0:
            life.fail(step, f"arecord failed ({raw.returncode}): {raw.stderr.decode(errors='replace')[-400:]}",
                      "the capture side must match the playback side's hw_params")
        data = np.frombuffer(raw.stdout, dtype=dtype).reshape(-1, channels)
        mono = data[:, 0].astype(np.float64)
        if dtype is not np.float32:
            mono /= float(np.iinfo(dtype).max)
        parts.append(mono)
        figures = judge(np.concatenate(parts), rate, source.mean(axis=1), source_rate)
        if figures["whole_frames"] >= MIN_FRAMES:
            break
    np.save(OUT / f"capture-{step.replace(' ', '-')}.npy", np.concatenate(parts).astype(np.float32))
    figures["hw_params"] = params
    return figures


def assert_sound(life: Life, step: str, figures: dict) -> None:
    """Sound comes out and it is the bundle's: >= 10 s captured, >= 1 s sounding, audible, timbre far closer to
    the source than to noise or a tone, and changing over time (not static, not a frozen frame)."""
    noise = min(figures.get("distance_to_white_noise_db", 0), figures.get("distance_to_pink_noise_db", 0),
                figures.get("distance_to_440Hz_tone_db", 0))
    problems = []
    if figures["seconds"] < 10:
        problems.append(f"only {figures['seconds']} s captured")
    if figures["whole_frames"] < MIN_FRAMES // 2:
        problems.append(f"only {figures['whole_frames']} whole frames of sound in {figures['seconds']} s "
                        f"(gaps {figures['gap_fraction']:.0%})")
    elif figures["level_dbfs"] < -50:
        problems.append(f"level {figures['level_dbfs']} dBFS: too quiet to be heard")
    elif not figures["distance_to_source_db"] < 0.5 * noise:
        problems.append(f"timbre {figures['distance_to_source_db']} dB from the source, not well under half of "
                        f"its distance to noise/tone ({noise} dB)")
    elif figures["variation_db"] < 0.8:  # steady noise: ~0.3 dB; the source: several dB
        problems.append(f"the sound does not change over time (variation {figures['variation_db']} dB): static")
    if problems:
        life.fail(step, "; ".join(problems) + f"; figures {figures}",
                  "listen to the capture saved in out/system (numpy, mono float); check the sound path (hw_params)")


# --------------------------------------------------------------------------------------------------- steps
def test_1_first_install_with_make_deploy(life):
    if life.kept_disk:
        pytest.skip("SYSTEM_KEEP_DISK=1: the guest's disk from the last run already holds an install")
    code, out, seconds = life.make("deploy", f"BUNDLE={life.bundle}")
    life.figures["first_install_s"] = round(seconds, 1)
    if code != 0 or f"{SSH_ALIAS}: OK" not in out:
        life.fail("first install", f"make deploy exited {code}:\n{out[-3000:]}",
                  "the deploy's own message above names the step; install.sh's lines are prefixed 'install:'")
    life.figures["lgpio_from"] = "PyPI (plain Debian)" if "pip adds" in out and "lgpio" in out else "apt"


def test_2_service_plays_and_sound_comes_out(life):
    life.need()
    g = life.guest
    show = g.ssh("systemctl show murmur -p ActiveState -p SubState -p NRestarts -p MainPID").stdout
    if "ActiveState=active" not in show:
        life.fail("sound", f"murmur.service is not active: {show}", "see the journal")
    status = wait_playing(life, 120, "sound")
    figures = capture(life, "sound")
    life.figures["sound"] = figures
    assert_sound(life, "sound", figures)
    # the card by name: its own device at the bundle's rate and the engine's float, no resampler in between
    rate = json.loads((life.bundle / "bundle.json").read_text())["audio"]["sample_rate_hz"]
    params = figures["hw_params"]
    if int(params["rate"]) != rate or params["format"] != "FLOAT_LE":
        life.fail("sound path", f"the card runs at {params['rate']} Hz {params['format']}, the bundle at {rate} Hz "
                  "float: something resamples or converts in between", "output_device names the card; see sinks.py")
    status = life.status() or status
    life.figures["underruns_after_install"] = status.get("underruns")
    code, out, _ = life.make("status")
    if code != 0 or "murmur: PLAYING" not in out:
        life.fail("make status", f"make status exited {code}:\n{out[-2000:]}", "the report above says what is wrong")


def test_2b_no_failed_unit_and_a_journal_a_technician_can_read(life):
    life.need()
    g = life.guest
    failed = g.ssh("systemctl list-units --state=failed --no-legend --plain", check=False).stdout.strip()
    if failed:
        life.fail("no failed units", f"failed units after the first install: {failed}",
                  "a unit that does not apply to this hardware must be conditional, not failing", blocking=False)
    journal = g.ssh("sudo journalctl -u murmur -b --no-pager -o cat", check=False).stdout
    noise = [line for line in journal.splitlines()
             if line.startswith(("ALSA lib", "Expression '", "Cannot connect to server", "jack server", "JackShm",
                                 "Cannot create thread"))]
    life.figures["service_journal_lines_this_boot"] = len(journal.splitlines())
    if noise:
        life.fail("journal", f"{len(noise)} lines of native probing noise in the service's journal: {noise[:5]}",
                  "device/playback/sinks.py quiet_native_probing must run before PortAudio initialises",
                  blocking=False)


def test_3_gpio_buttons_reach_the_service(life):
    life.need("gpio")
    g = life.guest
    pull = "/sys/devices/platform/gpio-sim.0/gpiochip0/sim_gpio{}/pull"
    base = g.ssh("ls -d /sys/devices/platform/gpio-sim.*/gpiochip*/ | head -1").stdout.strip()
    if not base:
        life.fail("gpio", "no gpio-sim chip in the guest", "murmur-guest-devices.service (tests/system/guest) made none", blocking=False)
    pull = base + "sim_gpio{}/pull"
    status = life.status() or {}
    inputs = (status.get("knobs", {}).get("inputs") or {})
    if inputs.get("backend") in (None, "mock") and not inputs.get("inputs"):
        life.fail("gpio", f"the service runs without its knobs: {status.get('knobs')}",
                  "the journal's 'knobs:' line says why (pin factory, /dev/gpiochip0 permissions, board revision)", blocking=False)
    reseeds = status.get("reseeds")
    if reseeds is None:
        life.fail("gpio", f"the status report has no reseed count: {sorted(status)}",
                  "device/appliance/service.py status() reports the engine's reseeds", blocking=False)
    t0 = time.monotonic()
    g.ssh(f"echo pull-down | sudo tee {pull.format(23)} >/dev/null")
    try:
        seen = g.poll("gpio: button 'again' (GPIO23) seen pressed in the status",
                      lambda: (life.status() or {}).get("knobs", {}).get("inputs", {}).get("inputs", {})
                      .get("again", {}).get("pressed"), 30, interval_s=0.3)
    except GuestError as exc:
        life.fail("gpio", str(exc), "check the journal's knobs lines and /dev/gpiochip0's group (gpio)", blocking=False)
    finally:
        g.ssh(f"echo pull-up | sudo tee {pull.format(23)} >/dev/null")
    life.figures["button_to_status_s"] = round(time.monotonic() - t0, 2)
    assert seen
    try:  # the press reached the generator: the status counts the reseed it took
        after = g.poll("gpio: the reseed counted in the status after pressing 'again'",
                       lambda: (lambda n: n if n is not None and n > reseeds else None)(
                           (life.status() or {}).get("reseeds")), 30, interval_s=0.3)
    except GuestError as exc:
        life.fail("gpio", str(exc), "the engine's producer takes the 'reseed' event (ControlStore.take_events)",
                  blocking=False)
    life.figures["reseeds_after_press"] = {"before": reseeds, "after": after}
    g.ssh(f"echo pull-down | sudo tee {pull.format(22)} >/dev/null")
    try:
        g.poll("gpio: button 'next' (GPIO22) handled by the service (journal)",
               lambda: "knob action next_bundle" in g.ssh("sudo journalctl -u murmur -b --no-pager -o cat",
                                                          check=False).stdout, 30)
    except GuestError as exc:
        life.fail("gpio", str(exc), "the service's main loop takes knob actions from the ControlStore", blocking=False)
    finally:
        g.ssh(f"echo pull-up | sudo tee {pull.format(22)} >/dev/null")


def test_4_hardening_in_force(life):
    life.need()
    g = life.guest
    props = ["ProtectSystem", "DevicePolicy", "MemoryDenyWriteExecute", "RestrictAddressFamilies", "NoNewPrivileges",
             "PrivateNetwork", "SystemCallFilter", "User", "WatchdogUSec", "CapabilityBoundingSet", "DropInPaths"]
    show = g.ssh("systemctl show murmur " + " ".join(f"-p {p}" for p in props)).stdout
    values = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    expected = {"ProtectSystem": "strict", "DevicePolicy": "closed", "MemoryDenyWriteExecute": "yes",
                "RestrictAddressFamilies": "AF_UNIX", "NoNewPrivileges": "yes", "PrivateNetwork": "yes",
                "User": "murmur", "WatchdogUSec": "20s", "CapabilityBoundingSet": ""}
    wrong = {k: (values.get(k), v) for k, v in expected.items() if values.get(k) != v}
    if "network.conf" in values.get("DropInPaths", ""):  # no [osc] or [room] here: no network drop-in (the MIDI
        wrong["DropInPaths"] = (values["DropInPaths"], "no network.conf")  # guest has [osc] on: test_system_midi)
    if wrong or not values.get("SystemCallFilter"):
        life.fail("hardening", f"unit properties (found, expected): {wrong}", "deploy/murmur.service as shipped", blocking=False)
    pid = g.ssh("systemctl show murmur -p MainPID --value").stdout.strip()
    probe = g.ssh(f"sudo nsenter --target {pid} --mount --setuid $(id -u murmur) --setgid $(id -g murmur) "
                  "sh -c 'touch /opt/murmur/probe 2>&1; touch /etc/murmur/probe 2>&1; touch /var/lib/murmur/probe && "
                  "echo state-ok; rm -f /var/lib/murmur/probe'", check=False)
    text = probe.stdout + probe.stderr
    life.figures["write_probe"] = text.strip()
    if text.count("Read-only file system") < 2 or "state-ok" not in text:
        life.fail("hardening", f"writes from the service's namespace: {text!r}",
                  "ProtectSystem=strict + ReadOnlyPaths must refuse /opt/murmur and /etc/murmur, StateDirectory allow /var/lib/murmur", blocking=False)


def test_5_watchdog_restarts_a_stopped_service(life):
    life.need("watchdog")
    g = life.guest
    before = g.ssh("systemctl show murmur -p MainPID --value").stdout.strip()
    t0 = time.monotonic()
    g.ssh(f"sudo kill -STOP {before}")
    try:
        g.poll("watchdog: a new service process", lambda: (lambda p: p not in ("", "0", before) and p)(
            g.ssh("systemctl show murmur -p MainPID --value", check=False).stdout.strip()), 120)
    except GuestError as exc:
        life.fail("watchdog", str(exc), "WatchdogSec= in deploy/murmur.service; the service must not ping while stopped")
    life.figures["watchdog_restart_s"] = round(time.monotonic() - t0, 1)
    journal = g.ssh("sudo journalctl -u murmur -b --no-pager -o cat", check=False).stdout
    if "Watchdog timeout" not in journal:
        life.fail("watchdog", "no 'Watchdog timeout' from systemd in the journal", "see the journal")
    wait_playing(life, 180, "watchdog")


class Recorder:
    """The loopback's capture side recorded over ssh for as long as it runs, every chunk stamped with this
    machine's clock as it arrives, so that a moment seen on the laptop (a deploy started, the status changed) can
    be found in the sound (``sample_at``) to within the capture's buffering (~0.1-0.5 s)."""

    def __init__(self, life: Life, step: str, max_s: int = 900) -> None:
        params = hw_params(life)
        if not params or "closed" in params:
            life.fail(step, f"the loopback's playback side is not open: {params!r}", "see the service's journal")
        self.life, self.step = life, step
        self.fmt, self.rate, self.channels = params["format"], int(params["rate"]), int(params["channels"])
        self.dtype = {"FLOAT_LE": np.float32, "S16_LE": np.int16, "S32_LE": np.int32}[self.fmt]
        self.frame_bytes = np.dtype(self.dtype).itemsize * self.channels
        self.chunks: list[bytes] = []
        self.marks: list[tuple[float, int]] = []  # (time.monotonic() on arrival, bytes received up to then)
        self.received = 0
        self.proc = subprocess.Popen(
            [*life.guest.ssh_argv(), f"exec arecord -q -D hw:Loopback,1,0 -f {self.fmt} -r {self.rate} "
             f"-c {self.channels} -d {max_s} -t raw"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        import threading

        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                return
            self.chunks.append(chunk)
            self.received += len(chunk)
            self.marks.append((time.monotonic(), self.received))

    def seconds(self) -> float:
        return self.received / self.frame_bytes / self.rate

    def wait(self, seconds: float, deadline_s: float) -> None:
        """Until ``seconds`` of sound have arrived (the guest's loopback runs at its own pace)."""
        try:
            self.life.guest.poll(f"{self.step}: {seconds:.0f} s recorded", lambda: self.seconds() >= seconds or
                                 self.proc.poll() is not None, deadline_s, interval_s=0.5)
        except GuestError as exc:
            self.life.fail(self.step, str(exc), "is arecord running on the guest? see its error below")
        if self.proc.poll() is not None and self.seconds() < seconds:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            self.life.fail(self.step, f"arecord stopped after {self.seconds():.1f} s: {err[-400:]}",
                           "the capture side must match the playback side's hw_params")

    def sample_at(self, monotonic: float) -> int:
        """The capture's sample index at a moment of this machine's clock."""
        times = np.array([t for t, _ in self.marks])
        frames = np.array([b for _, b in self.marks]) / self.frame_bytes
        return int(np.interp(monotonic, times, frames))

    def played_at(self, sample: int, since: float, until: float) -> float:
        """This machine's time (monotonic) at which the card played ``sample``: the capture's sample count runs at
        the card's rate, and each chunk arrives some delivery time after its last sample was played, so the
        earliest arrival relative to the count, over the chunks that arrived between ``since`` and ``until``
        (a short stretch around the sample: a capture overrun elsewhere, or a drift of the guest's clock, does not
        shift it), places the count on this machine's clock. Late by at most the shortest delivery in that
        stretch (arecord's read, ssh, this reader): an upper bound."""
        marks = [(t, b) for t, b in list(self.marks) if since <= t <= until] or list(self.marks)
        offset = min(t - b / self.frame_bytes / self.rate for t, b in marks)
        return offset + sample / self.rate

    def pace(self) -> float:
        """Seconds of sound captured per second of this machine's clock since the first chunk (1.0: the card's
        clock keeps this machine's time and no capture overrun lost samples)."""
        if len(self.marks) < 2:
            return float("nan")
        (t0, b0), (t1, b1) = self.marks[0], self.marks[-1]
        return (b1 - b0) / self.frame_bytes / self.rate / max(t1 - t0, 1e-9)

    def stop(self) -> np.ndarray:
        """Stop recording (the ssh client gone, arecord's next write fails); mono float."""
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.thread.join(timeout=30)
        g = self.life.guest
        g.poll(f"{self.step}: the loopback's capture side closed again",
               lambda: "closed" in g.ssh("cat /proc/asound/Loopback/pcm1c/sub0/status", check=False).stdout, 60)
        return self.mono()

    def mono(self) -> np.ndarray:
        """What has arrived so far, mono float (the recording goes on unless stopped)."""
        data = b"".join(list(self.chunks))  # a copy of the list: the reading thread may append meanwhile
        data = data[: len(data) // self.frame_bytes * self.frame_bytes]
        mono = np.frombuffer(data, dtype=self.dtype).reshape(-1, self.channels)[:, 0].astype(np.float64)
        if self.dtype is not np.float32:
            mono /= float(np.iinfo(self.dtype).max)
        return mono


def guest_clock_offset(life: Life) -> float:
    """The guest's wall clock minus this machine's (the status report's times are the guest's)."""
    before = time.time()
    out = life.guest.ssh("date +%s.%N").stdout.strip()
    after = time.time()
    return float(out) - (before + after) / 2


def change_with_the_capture_running(life: Life, step: str, argv: list[str], old: tuple[str, Path, Path],
                                    new: tuple[str, Path, Path]) -> dict:
    """Run ``make <argv>`` (an update or a rollback) while the loopback's capture records, from a stretch before
    it to a stretch after the new bundle plays; what it found (times from the command's start, the gap in frames
    the service skipped, the sound before and after by its spectrum). ``old``/``new``: (bundle id, bundle dir,
    its source); each bundle's own sound is a render of it on this machine (``murmur.device render``)."""
    import soundfile

    g = life.guest
    spectra = {}
    for label, (bundle_id, bundle, _) in (("old", old), ("new", new)):
        wav = OUT / f"render-{bundle_id}.wav"
        if not wav.is_file():
            subprocess.run([sys.executable, "-m", "murmur.device", "render", "--bundle", str(bundle), "--seconds",
                            "20", "--seed", "1", "--out", str(wav)], check=True, capture_output=True, timeout=600)
        audio, rate = soundfile.read(wav, dtype="float32", always_2d=True)
        spectra[label] = band_spectrum(whole_frames(audio.mean(axis=1)), rate)
    offset = guest_clock_offset(life)
    before = life.status() or {}
    if before.get("bundle_id") != old[0] or not before.get("playing"):
        life.fail(step, f"before it, the service should play {old[0]}: {before}", "see the journal")
    rec = Recorder(life, step)
    rec.wait(BASELINE_S, 120)
    t_start = time.monotonic()
    before = life.status() or before
    make_argv, env = life.make_argv(*argv)
    proc = subprocess.Popen(make_argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict = {}

    since = int(time.time() + offset) - 5  # the guest's clock

    def alone_since() -> float | None:
        """When (the guest's unix time) the engine ended its crossfade to the new bundle: its journal line. The
        crossfade is counted in frames, and the emulated guest makes them far slower than real time."""
        out = g.ssh(f"sudo journalctl -u murmur --since @{since} --no-pager -o short-unix | "
                    f"grep -F {shlex.quote('engine: now playing bundle ' + new[0])} | head -1", check=False).stdout
        try:
            return float(out.split()[0]) if out.strip() else None
        except ValueError:
            return None

    def new_playing():
        status = life.status() or {}
        if status.get("bundle_id") == new[0] and status.get("playing"):
            seen.setdefault("first", (time.monotonic(), status))
            if status.get("pid") != before.get("pid"):  # restarted: it started on the new bundle, no crossfade
                seen["alone"] = status["updated_unix"] - status["bundle_age_s"]
                return status
            alone = alone_since()
            if alone is not None:
                seen["alone"] = alone
                return status
        return None

    try:
        after = g.poll(f"{step}: the service plays {new[0]}", new_playing, CHANGE_DEADLINE_S)
    except GuestError as exc:
        proc.kill()
        out = proc.communicate(timeout=60)[0]
        rec.stop()
        life.fail(step, f"{exc}\n`make {' '.join(argv)}` said:\n{out[-3000:]}", "the deploy's summary line says why")
    t_playing, first = seen["first"]
    out = proc.communicate(timeout=CHANGE_DEADLINE_S)[0]
    t_done = time.monotonic()
    (g.work / f"make-{step.replace(' ', '-')}.log").write_text(out)
    # when the service loaded the new bundle, by its own clock (updated_unix - bundle_age_s), on this machine's
    to_host = offset + (time.time() - time.monotonic())  # the guest's unix time -> this machine's monotonic
    loaded = after["updated_unix"] - after["bundle_age_s"] - to_host
    alone = seen["alone"] - to_host
    rec.wait(rec.sample_at(max(t_done, alone)) / rec.rate + AFTER_S, 120)
    mono = rec.stop()
    np.save(OUT / f"capture-{step.replace(' ', '-')}.npy", mono.astype(np.float32))
    rate = rec.rate
    i_start, i_loaded, i_alone = rec.sample_at(t_start), rec.sample_at(loaded), rec.sample_at(alone)
    windows = which_sound(mono, rate, spectra)
    # the new sound steady: the first window from which every window with sound is the new bundle's
    labels = [(t, name) for t, name, _ in windows if name is not None]
    steady = next((t for i, (t, name) in enumerate(labels) if all(n == "new" for _, n in labels[i:])), None)
    silent = silent_blocks(mono)
    blocks = lambda a, b: silent[max(0, a // FRAME): max(0, b // FRAME)]  # noqa: E731
    # the switch: from the command's start until the crossfade is over (a restart's gap begins at the stop,
    # before the new process loads the bundle)
    switch = blocks(i_start, max(i_alone, i_loaded) + 2 * rate)
    base = blocks(0, i_start)
    found = {
        "command": f"make {' '.join(argv)}", "exit": proc.returncode, "summary": next(
            (line.strip() for line in out.splitlines() if f"{SSH_ALIAS}:" in line and ("OK" in line or "FAILED" in line)), ""),
        "mode": found_mode(out),
        "command_s": round(t_done - t_start, 1),
        "to_new_bundle_loaded_s": round(loaded - t_start, 1),
        "to_status_new_playing_s": round(t_playing - t_start, 1),
        "to_new_bundle_alone_s": round(alone - t_start, 1),
        "crossfade_s": CROSSFADE_S if found_mode(out) == "reloaded" else 0.0,
        "realtime_fraction_during": (round((after.get("frames_produced", 0) - before.get("frames_produced", 0))
                                           * FRAME / rate / max(1.0, after["uptime_s"] - before["uptime_s"]), 3)
                                     if after.get("pid") == before.get("pid") else None),
        "to_new_sound_steady_s": round(steady - i_start / rate, 1) if steady is not None else None,
        "underruns_during": (after.get("underruns", 0) - before.get("underruns", 0)
                             if after.get("pid") == before.get("pid") else None),
        "underruns_per_s_before": round(before.get("underruns", 0) / max(1.0, before.get("uptime_s", 1.0)), 2),
        "seconds_during": round(after.get("uptime_s", 0) - before.get("uptime_s", 0), 1),
        "gap_frames_at_switch": longest_run(switch), "gap_frames_longest_before": longest_run(base),
        "gap_fraction_at_switch": round(float(np.mean(switch)), 3) if switch.size else None,
        "gap_fraction_before": round(float(np.mean(base)), 3) if base.size else None,
        "frame": FRAME, "captured_s": round(mono.size / rate, 1),
        "windows": [(round(t, 1), name) for t, name, _ in windows],
    }
    tail = mono[max(i_alone + rate, i_loaded + rate, mono.size - 20 * rate):]
    head = mono[:i_start]
    for label, part in (("before", head), ("after", tail)):
        source = old[2] if label == "before" else new[2]
        audio, source_rate = soundfile.read(source, dtype="float32", always_2d=True)
        figures = judge(part, rate, audio.mean(axis=1), source_rate)
        frames = whole_frames(part)
        if frames.shape[0] >= 20:
            captured = shape(band_spectrum(frames, rate))
            figures["shape_distance_to_old_bundle_db"] = round(distance(captured, shape(spectra["old"])), 2)
            figures["shape_distance_to_new_bundle_db"] = round(distance(captured, shape(spectra["new"])), 2)
        found[f"sound_{label}"] = figures
    return found


def found_mode(deploy_output: str) -> str:
    return ("restarted" if "step restarted" in deploy_output else "reloaded" if "step reloaded" in deploy_output
            else "?")


def check_change(life: Life, step: str, found: dict) -> None:
    problems = []
    if found["exit"] != 0:
        problems.append(f"`{found['command']}` exited {found['exit']}: {found['summary']}")
    for label, nearer in (("before", "old"), ("after", "new")):
        figures = found[f"sound_{label}"]
        d_old, d_new = figures.get("shape_distance_to_old_bundle_db"), figures.get("shape_distance_to_new_bundle_db")
        if d_old is None or d_new is None:
            problems.append(f"too little sound {label} it to tell which bundle plays: {figures}")
        elif (d_new < d_old) != (nearer == "new"):
            problems.append(f"the sound {label} it is not the {nearer} bundle's: its shape is {d_old} dB from the "
                            f"old bundle's render, {d_new} dB from the new one's")
    if found["to_new_sound_steady_s"] is None:
        problems.append(f"the capture never settled on the new bundle's sound: windows {found['windows']}")
    if problems:
        life.fail(step, "; ".join(problems), "listen to the capture in out/system; the service's journal says "
                  "what it loaded and when (engine: now playing bundle …)")


def test_5b_bundle_update_and_rollback_with_the_capture_running(life):
    """`make deploy` of another bundle (same code: a bundle-only update, hot reload with a crossfade) and then
    `make rollback`, each while the loopback's capture records: the time from the command to the new sound, the
    gap at the switch in frames the service skipped, and by its spectrum that the sound after is the new bundle's
    (the update bundle is trained on a low-passed copy of the first one's recording: tests/system/update_bundle.py)."""
    life.need("update")
    old_id = json.loads((life.bundle / "bundle.json").read_text())["bundle_id"]
    new_id = json.loads((life.update_bundle / "bundle.json").read_text())["bundle_id"]
    old, new = (old_id, life.bundle, life.source), (new_id, life.update_bundle, life.update_source)
    found = change_with_the_capture_running(life, "update", ["deploy", f"BUNDLE={life.update_bundle}"], old, new)
    life.figures["update"] = found
    check_change(life, "update", found)
    found = change_with_the_capture_running(life, "rollback", ["rollback"], new, old)
    life.figures["rollback"] = found
    check_change(life, "rollback", found)


def reboot(life: Life, step: str) -> float:
    g = life.guest
    g.ssh("sudo systemctl reboot", check=False, timeout=30)
    t0 = time.monotonic()
    g.poll(f"{step}: the guest went down", lambda: g.ssh("true", check=False, timeout=15).returncode != 0, 120)
    g.wait_ssh(300 if ARCH == "x86_64" else 900, since=t0)
    return t0


def test_6_reboot_then_sound_again(life):
    life.need()
    t0 = reboot(life, "reboot")
    wait_playing(life, BOOT_TO_SOUND_LIMIT_S, "reboot")
    life.figures["reboot_to_playing_s"] = round(time.monotonic() - t0, 1)
    analyze = life.guest.ssh("systemd-analyze", check=False).stdout.strip().splitlines()
    life.figures["systemd_analyze"] = analyze[0] if analyze else ""
    figures = capture(life, "after reboot")
    life.figures["sound_after_reboot"] = figures
    assert_sound(life, "after reboot", figures)


def test_7_late_sound_card(life):
    life.need("late card")
    g = life.guest
    g.ssh("sudo rm /etc/modules-load.d/murmur-test-card.conf && sync")
    reboot(life, "late card")
    try:
        waiting = g.poll("late card: status says it waits for the sound card",
                         lambda: (lambda s: s if s and "waiting for the sound card" in (s.get("message") or "") else None)(
                             life.status()), 180)
    except GuestError as exc:
        life.fail("late card", str(exc), "device/appliance/service.py _wait_for_output")
    if g.ssh("test -e /proc/asound/Loopback", check=False).returncode == 0:
        life.fail("late card", "the loopback card is present although it was not loaded", "tests/system/guest")
    waited_from = time.monotonic()
    # the amplifier (and its USB card) is switched on minutes later: meanwhile the service stays up, waiting
    while time.monotonic() - waited_from < LATE_CARD_WAIT_S:
        show = g.ssh("systemctl show murmur -p ActiveState -p NRestarts").stdout
        still = life.status() or {}
        if "ActiveState=active" not in show or "NRestarts=0" not in show or still.get("state") != "error":
            break
        time.sleep(10)  # the interval between two looks at a state that must not change
    show = g.ssh("systemctl show murmur -p ActiveState -p NRestarts").stdout
    life.figures["late_card_wait"] = {"waited_s": round(time.monotonic() - waited_from, 1),
                                      "unit": show.split(), "message": waiting.get("message")}
    if "ActiveState=active" not in show or "NRestarts=0" not in show:
        life.fail("late card", f"while waiting for the card: {show.split()}",
                  "no exit and restart loop while no card is present")
    t0 = time.monotonic()
    g.ssh("sudo modprobe snd-aloop")
    wait_playing(life, 120, "late card")
    life.figures["late_card_to_playing_s"] = round(time.monotonic() - t0, 1)
    figures = capture(life, "late card")
    life.figures["sound_after_late_card"] = figures
    assert_sound(life, "late card", figures)
    g.ssh("echo snd-aloop | sudo tee /etc/modules-load.d/murmur-test-card.conf >/dev/null")


# the Pi side's steps of a bundle-only deploy (benchmarks/bench_deploy.py and the loopback tests cut at the same)
CUT_STEPS = ["bundle-ready", "release-ready", "verified", "journal", "switched", "reloaded", "healthy"]


@pytest.mark.parametrize("step", CUT_STEPS)
def test_8_power_cut_at_each_step_of_a_deploy(life, step):
    """A bundle-only update whose power is cut (QEMU killed) the moment the laptop sees the Pi reach ``step``: the
    guest boots into one whole release that plays, the one from before unless the new one had passed its health
    gate ("healthy"; then either is whole), with murmur-recover.service undoing a switch the gate never confirmed,
    and the journal kept the cut boot's lines."""
    life.need(f"power cut at {step}")
    import shutil

    from murmur.deploy.testing.loopback import variant_bundle

    g = life.guest
    before = (life.status() or {}).get("bundle_id")
    name = f"system-test-cut-{step}"
    shutil.rmtree(OUT / name, ignore_errors=True)
    new_bundle = variant_bundle(life.bundle, OUT / name, name)
    make_argv, env = life.make_argv("deploy", f"BUNDLE={new_bundle}")
    deploy = subprocess.Popen(make_argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    cut = False
    assert deploy.stdout is not None
    for line in deploy.stdout:
        lines.append(line)
        # same code: "reloaded" (hot reload); new code (the checkout moved on since the install): "restarted"
        if f"step {step}" in line or (step == "reloaded" and "step restarted" in line):
            g.power_cut()  # the plug pulled the moment the Pi reported this step
            cut = True
            break
    deploy.kill()
    deploy.wait(timeout=60)
    (g.work / f"make-deploy-cut-{step}.log").write_text("".join(lines))
    if not cut:
        life.fail(f"power cut at {step}", "the deploy never reached the step:\n" + "".join(lines[-30:]),
                  "see the deploy's lines above")
    t0 = g.power_on()
    g.wait_ssh(300 if ARCH == "x86_64" else 900, since=t0)
    status = wait_playing(life, BOOT_TO_SOUND_LIMIT_S, f"power cut at {step}")
    after = status.get("bundle_id")
    recover = g.ssh("systemctl show murmur-recover -p ConditionResult --value", check=False).stdout.strip()
    kept = g.ssh("sudo journalctl -b -1 --no-pager -o cat -u murmur | tail -3", check=False).stdout.strip()
    whole = g.ssh("sudo python3 -c \"import json,os; r=os.path.realpath('/opt/murmur/current'); "
                  "print(json.load(open(r+'/release.json')).get('bundle'), os.path.realpath(r+'/bundle'))\"",
                  check=False).stdout.strip()
    life.figures.setdefault("power_cuts", {})[step] = {
        "power_on_to_playing_s": round(time.monotonic() - t0, 1), "plays": "before" if after == before else
        ("new" if after == name else after), "recover_ran": recover == "yes", "journal_kept": bool(kept),
        "current": whole}
    allowed = {before, name} if step == "healthy" else {before}
    if after not in allowed:
        life.fail(f"power cut at {step}", f"after the cut it plays {after!r}, expected {sorted(map(str, allowed))}",
                  "murmur-recover.service (pi_release.py boot) must put the previous release back", blocking=False)
    if step == (CUT_STEPS[-1] if ARCH == "x86_64" else "switched"):  # the sound after the run's last cut
        figures = capture(life, "power cut")
        life.figures["sound_after_power_cuts"] = figures
        assert_sound(life, "power cut", figures)
    if not kept:  # last, so that every other check of this step has run
        pytest.xfail(f"power cut at {step}: the boot before the cut left no service lines in the journal — a known "
                     "defect, not yet fixed: install.sh's persistent journal with SyncIntervalSec=10s kept them in 4 "
                     "of 7 cuts (deploy/README.md, 'The appliance, booted'); journal_kept is in result.json")
