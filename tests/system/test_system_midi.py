"""MIDI with a real USB device, booted: the x86_64 guest on Debian's stock kernel, whose dummy_hcd + a configfs
f_midi gadget is a USB MIDI controller that snd-usb-audio enumerates (tests/system/midi_gadget.py runs the
gadget inside the guest), and the murmur service installed by the real `make deploy` with `[midi]` on
(tests/system/guest-murmur-midi.toml).

The main scenario (test_system.py) boots the kernel built for gpio-sim, which has no USB gadget or USB audio; this
one boots the same image on Debian's own kernel (its modules are in the image; build-image.sh puts its vmlinuz
and initrd beside the disk), after test_system.py's guest has shut down. In order, each step needing the ones
before it:
 1. the gadget plugged in, then the first install: the service finds the controller by name (logged once) and
    opens the ALSA sequencer under its shipped hardening
 2. a CC and a note sent from the controller's side reach the service: the status shows the control at the
    CC's value and the reseed counted
 3. hot-plug while playing, with the loopback's capture running: SYSTEM_MIDI_CYCLES (default 4) cycles, slow
    (unplugged until the service says so) and quick (unplugged and plugged in again between two of its looks)
    in turn, each followed by a CC that must reach the status; the same process plays throughout, every plug
    is logged once (and nothing else about MIDI: no "sequencer cannot be opened"), and the capture shows no
    silence (no silent run of 3 s or more: the emulated guest's own underrun gaps reach ~1 s, SILENCE_S)
Figures go to out/system-midi/result.json (BENCHMARKS.md "System"). `SYSTEM_MIDI_CYCLES=100` is the bench run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from guest import SSH_ALIAS, Guest, GuestError  # noqa: E402
from sound import FRAME, judge, longest_run, silent_blocks  # noqa: E402
from test_system import Life, Recorder, assert_sound, wait_playing  # noqa: E402

from murmur import REPO_ROOT as REPO  # noqa: E402

pytestmark = pytest.mark.system

ARCH = os.environ.get("SYSTEM_ARCH", "x86_64")
OUT = REPO / "out" / "system-midi"
CYCLES = int(os.environ.get("SYSTEM_MIDI_CYCLES", "4"))
GADGET = "sudo /usr/local/sbin/murmur-midi-gadget"
PORT = "Murmur Test Knobs:Murmur Test Knobs MIDI 1"  # rtmidi's name of snd-usb-audio's port, before " 24:0"
# A silent run this long in the capture is the sound stopping. Not shorter: the emulated guest's own underrun
# gaps reach about 1 s when the host is busy (1.01 s in a 4-cycle run with 82 % of the frames silent before the
# cycles as during them; 1.15 s in the main scenario's update), while a crash, a restart or a stalled producer
# is silent for several seconds (RestartSec=5s; the watchdog's 20 s).
SILENCE_S = 3.0
BASELINE_S = 8


class MidiLife(Life):
    """``Life`` for the MIDI guest: its deploys ship this module's own code snapshot."""

    def __init__(self, *args, code: Path, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.code = code

    def make_argv(self, target: str, *args: str) -> tuple[list[str], dict[str, str]]:
        argv, env = super().make_argv(target, *args)
        return [a if not a.startswith("ARGS=--repo ") else f"ARGS=--repo {self.code}" for a in argv], env


def gadget(life: Life, command: str, step: str, timeout: float = 180) -> dict:
    proc = life.guest.ssh(f"{GADGET} {command}", check=False, timeout=timeout)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {"error": (proc.stdout + proc.stderr).strip()[-800:]}
    if proc.returncode != 0 or "error" in result:
        life.fail(step, f"`murmur-midi-gadget {command}` on the guest: {result.get('error')}",
                  "tests/system/midi_gadget.py says what each command waits for; the journal above says what the "
                  "service saw")
    return result


def midi_status(life: Life) -> dict:
    return (life.status() or {}).get("midi") or {}


def journal(life: Life) -> str:
    return life.guest.ssh("sudo journalctl -u murmur -b --no-pager -o cat", check=False).stdout


@pytest.fixture(scope="module")
def midi_life():
    if ARCH != "x86_64":
        pytest.skip("the MIDI test runs on the x86_64 guest (Debian's stock amd64 kernel); the arm64 guest's "
                    "kernel has the same modules, left out there for time")
    image = Path(os.environ["SYSTEM_IMAGE"])
    if not (image / "vmlinuz").is_file():
        pytest.skip(f"{image} has no Debian stock kernel beside its disk (an image built before build-image.sh put "
                    "it there): rebuild it (delete the directory)")
    from murmur.deploy.testing.loopback import snapshot_code

    OUT.mkdir(parents=True, exist_ok=True)
    code = OUT / "code"
    shutil.rmtree(code, ignore_errors=True)
    snapshot_code(code)
    guest = Guest(image, image, OUT)
    guest.fresh_disk()
    bundle, source = Path(os.environ["SYSTEM_BUNDLE"]), Path(os.environ["SYSTEM_SOURCE"])
    (guest.work / "inventory.toml").write_text(
        "# written by tests/system/test_system_midi.py: the MIDI guest as one Pi of an inventory\n"
        f'ssh_config = "{guest.ssh_config}"\n\n[hosts.{SSH_ALIAS}]\naddress = "{SSH_ALIAS}"\nuser = "pi"\n'
        f'bundle = "{bundle}"\nconfig = "{HERE / "guest-murmur-midi.toml"}"\n'
        "# an emulated CPU: the health gate's first sound takes longer than on a Pi\ngate_timeout_s = 300\n"
        "# not a Raspberry Pi: install.sh's documented override for its aarch64 check\n"
        'env = { MURMUR_ALLOW_ARCH = "x86_64" }\n')
    life = MidiLife(guest, bundle, source, bundle, source, code=code)
    t0 = guest.power_on()
    try:
        life.figures["kernel"] = (image / "release").read_text().strip() + " (Debian's stock amd64 kernel)"
        life.figures["first_boot_to_ssh_s"] = round(guest.wait_ssh(300, since=t0), 1)
        yield life
    finally:
        guest.finish(life.figures)


def test_midi_1_the_controller_is_found_after_the_first_install(midi_life):
    life, g = midi_life, midi_life.guest
    script = base64.b64encode((HERE / "midi_gadget.py").read_bytes()).decode()
    g.ssh(f"echo {script} | base64 -d | sudo tee /usr/local/sbin/murmur-midi-gadget >/dev/null && "
          "sudo chmod 755 /usr/local/sbin/murmur-midi-gadget")
    life.figures["gadget"] = gadget(life, "setup", "gadget")
    cards = g.ssh("cat /proc/asound/cards", check=False).stdout
    if "USB-Audio - Murmur Test Knobs" not in cards:
        life.fail("gadget", f"snd-usb-audio did not take the gadget: /proc/asound/cards:\n{cards}",
                  "dmesg on the guest: dummy_hcd's enumeration and snd-usb-audio's probe")
    code, out, seconds = life.make("deploy", f"BUNDLE={life.bundle}")
    life.figures["first_install_s"] = round(seconds, 1)
    if code != 0 or f"{SSH_ALIAS}: OK" not in out:
        life.fail("first install", f"make deploy exited {code}:\n{out[-3000:]}",
                  "the deploy's own message above names the step; install.sh's lines are prefixed 'install:'")
    wait_playing(life, 120, "first install")
    try:
        midi = g.poll("the service has the controller", lambda: (lambda m: m if m.get("port") else None)(
            midi_status(life)), 60)
    except GuestError as exc:
        life.fail("found", f"{exc}; status midi: {midi_status(life)}",
                  "the journal's 'MIDI:' lines say what the service saw (device name, the sequencer)")
    life.figures["port"] = midi["port"]
    if not midi["port"].startswith(PORT) or midi["state"] != "connected" or midi["problems"]:
        life.fail("found", f"status midi: {midi}", "[midi] device names the controller; see the journal")
    lines = [line for line in journal(life).splitlines() if "MIDI:" in line]
    life.figures["journal_midi_lines"] = lines
    found = [line for line in lines if "found" in line]
    if len(found) != 1 or "again" in found[0]:
        life.fail("found", f"the controller should be logged found once: {lines}", "MidiKnobs._say")
    # the sequencer opened in the service's sandbox (DevicePolicy=closed, DeviceAllow=char-alsa): its client's
    # subscription to the controller is in the kernel's table
    seq = g.ssh("cat /proc/asound/seq/clients", check=False).stdout
    life.figures["seq_subscribed"] = "Connecting To:" in seq.split('"Murmur Test Knobs MIDI 1"', 1)[-1].split("Client", 1)[0]
    if not life.figures["seq_subscribed"]:
        life.fail("found", f"no subscription to the controller's port in /proc/asound/seq/clients:\n{seq}",
                  "the unit's DeviceAllow must let the service open /dev/snd/seq")


def test_midi_2_a_cc_and_a_pad_from_the_controller_reach_the_service(midi_life):
    life, g = midi_life, midi_life.guest
    life.need()
    before = life.status() or {}
    start = before.get("knobs", {}).get("temperature")
    value = 100 if start is None or abs(start - 200 / 127) > 0.05 else 20
    t0 = time.monotonic()
    gadget(life, f"send B0 10 {value:02X}", "cc")
    try:
        g.poll(f"CC 16 = {value}: temperature {2 * value / 127:.3f} in the status", lambda: abs(
            (life.status() or {}).get("knobs", {}).get("temperature", -9) - 2 * value / 127) < 1e-3, 30, 0.2)
    except GuestError as exc:
        life.fail("cc", f"{exc}; status midi: {midi_status(life)}", "the journal's 'MIDI:' lines; [midi.wild] in "
                  "tests/system/guest-murmur-midi.toml maps CC 16 to temperature 0 … 2", blocking=False)
    life.figures["cc_to_status_s"] = round(time.monotonic() - t0, 2)  # includes ssh and the 1-s status period
    reseeds = before.get("reseeds", 0)
    gadget(life, "send 90 24 64 80 24 00", "pad")
    try:
        after = g.poll("note 36 (a pad): the reseed counted", lambda: (lambda n: n if n > reseeds else None)(
            (life.status() or {}).get("reseeds", 0)), 30, 0.2)
    except GuestError as exc:
        life.fail("pad", str(exc), "[midi.again] maps note 36 to reseed", blocking=False)
    life.figures["pad_reseeds"] = {"before": reseeds, "after": after}
    midi = midi_status(life)
    life.figures["after_cc_and_pad"] = {k: midi.get(k) for k in ("messages", "applied", "unmapped")}


def test_midi_3_hot_plug_while_playing(midi_life):
    life, g = midi_life, midi_life.guest
    life.need()
    show = lambda: dict(line.split("=", 1) for line in g.ssh(  # noqa: E731
        "systemctl show murmur -p MainPID -p NRestarts").stdout.split())
    unit_before, status_before = show(), life.status() or {}
    found_lines_before = journal(life).count("found again")
    rec = Recorder(life, "hot-plug", max_s=CYCLES * 60 + 300)
    rec.wait(BASELINE_S, 120)
    t_start = time.monotonic()
    cycles = []
    for k in range(CYCLES):
        temperature = (life.status() or {}).get("knobs", {}).get("temperature", 0.0)
        value = 10 + (37 * k) % 110
        if abs(2 * value / 127 - temperature) < 0.05:
            value = (value + 40) % 128
        cycles.append(gadget(life, f"cycle {k + 1} {value} {'slow' if k % 2 == 0 else 'quick'} 90", f"hot-plug {k + 1}"))
    t_end = time.monotonic()
    rec.wait(rec.seconds() + 4, 120)
    mono = rec.stop()
    np.save(OUT / "capture-hot-plug.npy", mono.astype(np.float32))
    unit_after, status_after = show(), life.status() or {}
    lines = journal(life)
    rate = rec.rate
    i_start, i_end = rec.sample_at(t_start), rec.sample_at(t_end)
    silent = silent_blocks(mono)
    during, before = silent[i_start // FRAME: i_end // FRAME], silent[: i_start // FRAME]
    import soundfile

    source, source_rate = soundfile.read(life.source, dtype="float32", always_2d=True)
    sound = judge(mono[i_start:i_end], rate, source.mean(axis=1), source_rate)
    per = lambda key: [c[key] for c in cycles if key in c]  # noqa: E731
    figures = {
        "cycles": CYCLES, "slow": sum(c["kind"] == "slow" for c in cycles),
        "quick": sum(c["kind"] == "quick" for c in cycles),
        "seconds": round(t_end - t_start, 1),
        "found_again_s": {"median": float(np.median(per("found_again_s"))), "max": max(per("found_again_s"))},
        "gone_seen_s": {"median": float(np.median(per("gone_seen_s"))), "max": max(per("gone_seen_s"))}
        if per("gone_seen_s") else None,
        "cc_after_replug_to_status_s": {"median": float(np.median(per("cc_to_status_s"))),
                                        "max": max(per("cc_to_status_s"))},
        "playing_every_cycle": all(c["playing"] for c in cycles) and all(per("playing_while_gone")),
        "unit_before": unit_before, "unit_after": unit_after,
        "connects": [status_before.get("midi", {}).get("connects"), status_after.get("midi", {}).get("connects")],
        "found_again_logged": lines.count("found again") - found_lines_before,
        "midi_warnings_other_than_gone": [line for line in lines.splitlines()
                                          if "MIDI:" in line and "is gone" not in line and "found" not in line
                                          and "waiting for a port" not in line],
        "underruns_during": status_after.get("underruns", 0) - status_before.get("underruns", 0),
        "generator_restarts": [status_before.get("restarts"), status_after.get("restarts")],
        "captured_s": round(mono.size / rate, 1),
        "silent_run_longest_frames_during": longest_run(during), "silent_run_longest_frames_before": longest_run(before),
        "silent_fraction_during": round(float(np.mean(during)), 3) if during.size else None,
        "silent_fraction_before": round(float(np.mean(before)), 3) if before.size else None,
        "frame": FRAME, "sound_during": sound,
        "per_cycle": [{k: c.get(k) for k in ("kind", "gone_seen_s", "found_again_s", "cc_to_status_s", "cycle_s")}
                      for c in cycles],
    }
    life.figures["hot_plug"] = figures
    problems = []
    if unit_after != unit_before:
        problems.append(f"the service process changed (crash or restart): {unit_before} -> {unit_after}")
    if not figures["playing_every_cycle"]:
        problems.append(f"the status said not playing in a cycle: {cycles}")
    if status_after.get("restarts") != status_before.get("restarts"):
        problems.append(f"the generator was restarted: {figures['generator_restarts']}")
    if figures["found_again_logged"] != CYCLES:
        problems.append(f"'found again' logged {figures['found_again_logged']} times for {CYCLES} plugs")
    if figures["midi_warnings_other_than_gone"]:
        problems.append(f"MIDI lines other than gone / waiting / found: {figures['midi_warnings_other_than_gone'][:5]}")
    if longest_run(during) * FRAME / rate >= SILENCE_S:
        problems.append(f"a silent run of {longest_run(during)} frames ({longest_run(during) * FRAME / rate:.2f} s) "
                        f"in the capture while plugging (before: {longest_run(before)} frames)")
    if problems:
        life.fail("hot-plug", "; ".join(problems), "the journal's 'MIDI:' lines; the capture is saved in "
                  "out/system-midi/capture-hot-plug.npy")
    if sound["seconds"] >= 10:  # the bundle's sound, not noise, went on (judged like the main scenario's)
        assert_sound(life, "hot-plug", sound)
