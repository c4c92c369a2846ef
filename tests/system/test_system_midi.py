"""MIDI with a real USB device, booted: the x86_64 guest on Debian's stock kernel, whose dummy_hcd + a configfs
f_midi gadget is a USB MIDI controller that snd-usb-audio enumerates (tests/system/midi_gadget.py runs the
gadget inside the guest), and the murmur service installed by the real `make deploy` with `[midi]` on
(tests/system/guest-murmur-midi.toml).

The main scenario (test_system.py) boots the kernel built for gpio-sim, which has no USB gadget or USB audio; this
one boots the same image on Debian's own kernel (its modules are in the image; build-image.sh puts its vmlinuz
and initrd beside the disk), after test_system.py's guest has shut down. In order, each step needing the ones
before it:
 1. the gadget plugged in, then the first install: the service finds the controller by name (logged once) and
    opens the ALSA sequencer under its shipped hardening (plus the network drop-in that [osc] brings)
 2. a CC and a note sent from the controller's side reach the service: the status shows the control at the
    CC's value and the reseed counted
 2b. OSC from this machine (``[osc]`` is on in the same config): the deploy's network drop-in in force under
    real systemd (RestrictAddressFamilies= with AF_INET, PrivateNetwork=no, IPAddressAllow=), the service
    listening on port 9000, and a real UDP client on 127.0.0.1 (QEMU's user network forwards it to the guest)
    turning two controls, hold on and off, and a reseed, each seen in the status
 2c. an OSC flood from this machine while the capture records: SYSTEM_OSC_FLOOD (default 3000) garbage datagrams
    (random bytes, messages cut short, wrong arguments, unknown addresses; a fixed seed): the same process plays
    on, the datagrams counted (malformed among them, at most as many as sent: UDP may lose some), none refused,
    a good message after them applied, no silent run of SILENCE_S
 2d. control -> sound latency: a MIDI CC and an OSC message turning the level from -60 to 0 dB, from the send
    on this machine to the first loud block in the capture (SYSTEM_LATENCY_REPEATS each, default 5; emulated)
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
import random
import select
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from guest import SSH_ALIAS, Guest, GuestError, free_port  # noqa: E402
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
OSC_PORT = 9000  # [osc] port in tests/system/guest-murmur-midi.toml
FLOOD_DATAGRAMS = int(os.environ.get("SYSTEM_OSC_FLOOD", "3000"))
FLOOD_SEED = 26
FLOOD_BATCH, FLOOD_RATE = 25, 500.0  # sent in batches, about FLOOD_RATE datagrams/s: within the listener's budget
# (4 x max_messages_per_s = 800/s), so that it parses them rather than counting them dropped unread
LATENCY_REPEATS = int(os.environ.get("SYSTEM_LATENCY_REPEATS", "5"))
LATENCY_BLOCK = 256  # samples (5.8 ms at 44.1 kHz): the level is judged per block
LOUD_DBFS = -50.0  # the sound at 0 dB is ~-27 dBFS, at -60 dB ~-87 dBFS; underrun gaps are exact zeros
LEVEL_CC = 7  # [midi.level] in tests/system/guest-murmur-midi.toml: gain_db -60 … 0


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
    guest.udp_forwards = {OSC_PORT: free_port(socket.SOCK_DGRAM)}  # the OSC client's way in (127.0.0.1 only)
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


# ---------------------------------------------------------------------------------------------------------- OSC
def osc_datagram(address: str, *args) -> bytes:
    from pythonosc.osc_message_builder import OscMessageBuilder

    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


class OscClient:
    """A real UDP client on this machine: datagrams to 127.0.0.1:<port>, which QEMU's user network forwards to
    port 9000 of the guest (they arrive from its gateway, 10.0.2.2)."""

    def __init__(self, life: Life) -> None:
        self.address = ("127.0.0.1", life.guest.udp_forwards[OSC_PORT])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent = 0

    def send(self, data: bytes) -> float:
        t = time.monotonic()
        self.sock.sendto(data, self.address)
        self.sent += 1
        return t

    def close(self) -> None:
        self.sock.close()


def osc_status(life: Life) -> dict:
    return (life.status() or {}).get("osc") or {}


def knob(life: Life, name: str, value: float, what: str, deadline_s: float = 30) -> float:
    """Poll the status until the control ``name`` is at ``value``; seconds it took."""
    t0 = time.monotonic()
    life.guest.poll(what, lambda: abs(float((life.status() or {}).get("knobs", {}).get(name, -99)) - value) < 1e-3,
                    deadline_s, 0.2)
    return round(time.monotonic() - t0, 2)


def unit_show(life: Life, *props: str) -> dict:
    out = life.guest.ssh("systemctl show murmur " + " ".join(f"-p {p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_midi_2b_osc_from_the_laptop_reaches_the_service(midi_life):
    """[osc] on in the deployed config: the deploy's network drop-in in force under real systemd, the service
    listening, and a real UDP client on this machine turning controls, holding and reseeding."""
    life = midi_life
    life.need()
    unit = unit_show(life, "RestrictAddressFamilies", "PrivateNetwork", "IPAddressAllow", "IPAddressDeny",
                     "DropInPaths")
    life.figures["osc_unit"] = unit
    problems = []
    if "AF_INET" not in unit.get("RestrictAddressFamilies", "").split():
        problems.append(f"RestrictAddressFamilies={unit.get('RestrictAddressFamilies')!r} has no AF_INET")
    if unit.get("PrivateNetwork") != "no":
        problems.append(f"PrivateNetwork={unit.get('PrivateNetwork')!r}")
    if "10.0.0.0/8" not in unit.get("IPAddressAllow", ""):
        problems.append(f"IPAddressAllow={unit.get('IPAddressAllow')!r} lacks the private network 10/8")
    if "murmur.service.d/network.conf" not in unit.get("DropInPaths", ""):
        problems.append(f"DropInPaths={unit.get('DropInPaths')!r}: not the deploy's network.conf")
    if problems:
        life.fail("osc drop-in", "; ".join(problems), "deploy/pi_release.py install_network_dropin writes "
                  "/etc/systemd/system/murmur.service.d/network.conf when [osc] is on, then daemon-reload + restart")
    try:
        osc = life.guest.poll("the status says OSC listens", lambda: (lambda o: o if o.get("listening") else None)(
            osc_status(life)), 30)
    except GuestError as exc:
        life.fail("osc listening", f"{exc}; status osc: {osc_status(life)}", "the journal's 'osc:' line says why")
    if osc["listening"] != f"0.0.0.0:{OSC_PORT}" or osc.get("problems"):
        life.fail("osc listening", f"status osc: {osc}", "[osc] in tests/system/guest-murmur-midi.toml")
    client = OscClient(life)
    knobs = (life.status() or {}).get("knobs", {})
    # values exact in float32 (OSC's 'f'), each away from where the control is now
    temperature = 1.25 if abs(knobs.get("temperature", 0) - 1.25) > 0.01 else 0.75
    position = 0.25 if abs(knobs.get("position", 0) - 0.25) > 0.01 else 0.75
    times = {}
    try:
        for name, value in (("temperature", temperature), ("position", position)):
            client.send(osc_datagram(f"/murmur/{name}", value))
            times[f"{name}_to_status_s"] = knob(life, name, value, f"/murmur/{name} {value}: in the status")
        client.send(osc_datagram("/murmur/hold", 1))
        times["hold_on_to_status_s"] = knob(life, "hold", 1, "/murmur/hold 1: hold on in the status")
        client.send(osc_datagram("/murmur/hold", 0))
        times["hold_off_to_status_s"] = knob(life, "hold", 0, "/murmur/hold 0: hold off in the status")
        reseeds = (life.status() or {}).get("reseeds", 0)
        t0 = time.monotonic()
        client.send(osc_datagram("/murmur/reseed"))
        after = life.guest.poll("/murmur/reseed: the reseed counted in the status", lambda: (
            lambda n: n if n > reseeds else None)((life.status() or {}).get("reseeds", 0)), 30, 0.2)
        times["reseed_to_status_s"] = round(time.monotonic() - t0, 2)
    except GuestError as exc:
        life.fail("osc", f"{exc}; status osc: {osc_status(life)}", "the status's osc counters say whether the "
                  "datagram arrived (packets) and what became of it")
    finally:
        client.close()
    osc = osc_status(life)
    life.figures["osc"] = {**times, "reseeds": [reseeds, after], "sent": client.sent,
                           **{k: osc.get(k) for k in ("listening", "last_sender", "packets", "applied", "malformed",
                                                      "refused", "dropped", "unknown")}}
    if osc.get("applied") != client.sent or osc.get("last_sender") != "10.0.2.2" or osc.get("refused"):
        life.fail("osc", f"{client.sent} messages sent, status osc: {osc}", "every message sent should be applied, "
                  "from QEMU's gateway 10.0.2.2", blocking=False)


def garbage(rng: random.Random) -> tuple[str, bytes]:
    """One datagram of the flood: random bytes, a valid message cut short, a Murmur address with a wrong argument,
    or an address that is not Murmur's (never a reseed, which an argument-less one would be). None of them is
    applied: a message cut short is no whole number of 4-byte words (malformed), or ends before its argument."""
    kind = rng.choice(("random", "truncated", "wrong type", "unknown"))
    if kind == "random":
        return kind, rng.randbytes(rng.randint(1, 300))
    if kind == "truncated":
        whole = osc_datagram(rng.choice(("/murmur/temperature", "/murmur/position", "/murmur/gain_db")),
                             rng.random())
        return kind, whole[: rng.randrange(1, len(whole))]
    if kind == "wrong type":
        address, args = rng.choice((("/murmur/temperature", ("warm",)), ("/murmur/position", (0.5, 0.5)),
                                    ("/murmur/gain_db", (float("nan"),)), ("/murmur/hold", ("maybe",)),
                                    ("/murmur/temperature", ()), ("/murmur/spread/unit", (b"\x00\x01",)),
                                    ("/murmur/reseed", ("x",))))
        return kind, osc_datagram(address, *args)
    address = rng.choice(("/murmur/volume", "/murmur", "/other/thing", "/murmur/temperature/unit/x",
                          "/murmur/reseed/unit"))
    return kind, osc_datagram(address, rng.random())


def test_midi_2c_an_osc_flood_from_the_laptop_while_playing(midi_life):
    """FLOOD_DATAGRAMS of garbage (seed FLOOD_SEED) at the service while the capture records: the same process
    plays on without a silent run of SILENCE_S, the datagrams are counted (UDP may lose some on the way: at most as
    many as sent, malformed among them), none refused (the sender is allowed), and a good message after them is
    still applied."""
    life = midi_life
    life.need()
    rng = random.Random(FLOOD_SEED)
    show = lambda: unit_show(life, "MainPID", "NRestarts")  # noqa: E731
    unit_before, before = show(), osc_status(life)
    rec = Recorder(life, "osc flood", max_s=600)
    rec.wait(BASELINE_S, 120)
    client = OscClient(life)
    kinds: dict[str, int] = {}
    t_start = time.monotonic()
    for i in range(FLOOD_DATAGRAMS):
        kind, data = garbage(rng)
        kinds[kind] = kinds.get(kind, 0) + 1
        client.send(data)
        if i % FLOOD_BATCH == FLOOD_BATCH - 1:
            time.sleep(FLOOD_BATCH / FLOOD_RATE)  # pacing the sender at about FLOOD_RATE datagrams/s
    t_sent = time.monotonic()
    # the listener works through what the kernel holds: until the status's count stops moving
    counts: list[int] = []

    def settled():
        counts.append(osc_status(life).get("packets", -1))
        return len(counts) >= 3 and counts[-1] == counts[-2] == counts[-3] and counts[-1] > before.get("packets", 0)

    try:
        life.guest.poll("osc flood: the status's datagram count settles", settled, 120, 1.0)
    except GuestError as exc:
        rec.stop()
        life.fail("osc flood", f"{exc}; status osc: {osc_status(life)}", "the service's journal says whether the "
                  "listener failed")
    t_settled = time.monotonic()
    after = osc_status(life)
    value = 0.5 if abs((life.status() or {}).get("knobs", {}).get("temperature", 0) - 0.5) > 0.01 else 1.5
    client.send(osc_datagram("/murmur/temperature", value))
    client.close()
    try:
        good_s = knob(life, "temperature", value, f"after the flood, /murmur/temperature {value} in the status")
    except GuestError as exc:
        good_s = None
        life.fail("osc flood", f"{exc}; status osc: {osc_status(life)}", "the listener must go on after a flood",
                  blocking=False)
    rec.wait(rec.seconds() + 2, 60)
    mono = rec.stop()
    np.save(OUT / "capture-osc-flood.npy", mono.astype(np.float32))
    unit_after, last = show(), osc_status(life)
    silent = silent_blocks(mono)
    i_start, i_end = rec.sample_at(t_start), rec.sample_at(t_settled)
    during, base = silent[i_start // FRAME: i_end // FRAME + 1], silent[: i_start // FRAME]
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("packets", "malformed", "parsed", "dropped", "refused",
                                                              "messages", "applied", "unknown", "bad_messages")}
    rate = rec.rate
    figures = {
        "seed": FLOOD_SEED, "sent": FLOOD_DATAGRAMS, "kinds": kinds, "send_s": round(t_sent - t_start, 1),
        "settled_s": round(t_settled - t_start, 1), "counted": delta, "good_message_after_to_status_s": good_s,
        "unit_before": unit_before, "unit_after": unit_after,
        "silent_run_longest_s_during": round(longest_run(during) * FRAME / rate, 2),
        "silent_run_longest_s_before": round(longest_run(base) * FRAME / rate, 2),
        "silent_fraction_during": round(float(np.mean(during)), 3) if during.size else None,
        "silent_fraction_before": round(float(np.mean(base)), 3) if base.size else None,
        "problems": last.get("problems"),
    }
    life.figures["osc_flood"] = figures
    problems = []
    if unit_after != unit_before:
        problems.append(f"the service process changed (crash or restart): {unit_before} -> {unit_after}")
    if not 0 < delta["malformed"] <= FLOOD_DATAGRAMS or not 0 < delta["packets"] <= FLOOD_DATAGRAMS:
        problems.append(f"counted {delta} for {FLOOD_DATAGRAMS} sent: expected more than none and at most as many")
    if delta["applied"]:
        problems.append(f"{delta['applied']} of the garbage datagrams were applied as controls: {delta}")
    if delta["refused"]:
        problems.append(f"datagrams from an allowed sender refused: {delta}")
    if last.get("problems"):
        problems.append(f"the listener reported problems: {last['problems']}")
    if longest_run(during) * FRAME / rate >= SILENCE_S:
        problems.append(f"a silent run of {figures['silent_run_longest_s_during']} s in the capture during the "
                        f"flood (before: {figures['silent_run_longest_s_before']} s)")
    if problems:
        life.fail("osc flood", "; ".join(problems), "device/controls/osc.py counts every datagram and must never "
                  "stop; the capture is saved in out/system-midi/capture-osc-flood.npy")


class RawMidi:
    """MIDI bytes from the controller's side through one ssh session kept open: a line of octal escapes in,
    written by the guest's shell (printf) to the gadget's rawmidi device (f_midi's card "padside"), "sent" back.
    So a CC's moment is known on this machine to within that session's round trip (not an ssh login and a
    Python start in the emulated guest, as `murmur-midi-gadget send` costs)."""

    def __init__(self, life: Life) -> None:
        script = ('n=$(readlink /proc/asound/padside) && dev=/dev/snd/midiC${n#card}D0 && echo ready && '
                  'while read -r line; do printf "$line" > "$dev" && echo sent || echo failed; done')
        self.proc = subprocess.Popen([*life.guest.ssh_argv(), f"sudo sh -c {shlex.quote(script)}"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.answer("ready")

    def answer(self, expected: str, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode(errors="replace").strip() if ready else "(nothing)"
        if line != expected:
            raise GuestError(f"latency: the guest's rawmidi writer said {line!r}, not {expected!r}")

    def send(self, *data: int) -> tuple[float, float]:
        """Write ``data``; (this machine's time before the line went out, after the guest said it was written)."""
        assert self.proc.stdin is not None
        t0 = time.monotonic()
        self.proc.stdin.write(("".join(f"\\{b:03o}" for b in data) + "\n").encode())
        self.proc.stdin.flush()
        self.answer("sent")
        return t0, time.monotonic()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def block_dbfs(mono: np.ndarray) -> np.ndarray:
    """Level of each LATENCY_BLOCK-sample block, dBFS (exact zeros, the emulated guest's underrun gaps: -inf)."""
    n = mono.size // LATENCY_BLOCK
    rms = np.sqrt(np.mean(mono[: n * LATENCY_BLOCK].reshape(n, LATENCY_BLOCK) ** 2, axis=1))
    with np.errstate(divide="ignore"):
        return 20 * np.log10(rms)


def test_midi_2d_control_to_sound_latency(midi_life):
    """A MIDI CC and an OSC message, each LATENCY_REPEATS times, turning the level from -60 dB up to 0 dB: from
    the moment it was sent on this machine to the first block of LOUD_DBFS or more in the loopback's capture
    (placed on this machine's clock by ``Recorder.played_at``). Before each, the same channel turns the level down
    and the capture must show only quiet sound (and some of it) for a second. Emulated: the guest's engine runs
    far slower than real time, so these are upper bounds of behaviour, not the Pi's figure (BENCHMARKS.md)."""
    life = midi_life
    life.need()
    midi, client = RawMidi(life), OscClient(life)
    rec = Recorder(life, "latency", max_s=900)
    rate = rec.rate

    def send(channel: str, loud: bool) -> tuple[float, float]:
        if channel == "midi":
            return midi.send(0xB0, LEVEL_CC, 127 if loud else 0)
        t = client.send(osc_datagram("/murmur/gain_db", 0.0 if loud else -60.0))
        return t, t

    def quiet_for_a_second():
        levels = block_dbfs(rec.mono()[-int(1.5 * rate):])
        sounding = levels[np.isfinite(levels) & (levels > -120)]
        return sounding.size >= 10 and bool(np.all(sounding < LOUD_DBFS))

    found = {"midi": [], "osc": []}
    try:
        rec.wait(4, 120)
        for _ in range(LATENCY_REPEATS):
            for channel in ("midi", "osc"):
                send(channel, loud=False)
                knob(life, "gain_db", -60.0, f"latency: {channel} level down in the status")
                life.guest.poll(f"latency: {channel}: the capture quiet for a second", quiet_for_a_second, 120, 0.5)
                t_sent, t_acked = send(channel, loud=True)
                status_s = knob(life, "gain_db", 0.0, f"latency: {channel} level up in the status")
                first = rec.sample_at(t_sent) // LATENCY_BLOCK

                def loud_block(first=first):
                    levels = block_dbfs(rec.mono())[first:]
                    hits = np.nonzero(levels >= LOUD_DBFS)[0]
                    return int(first + hits[0]) + 1 if hits.size else None  # +1: never 0 (poll wants truthy)

                block = life.guest.poll(f"latency: {channel}: the capture loud again", loud_block, 120, 0.2) - 1
                rec.wait(rec.sample_at(time.monotonic()) / rate + 2, 60)  # chunks after it, for played_at
                heard = rec.played_at(block * LATENCY_BLOCK, t_sent - 1, time.monotonic())
                found[channel].append({"to_sound_s": round(heard - t_sent, 3), "to_status_s": status_s,
                                       "send_bracket_s": round(t_acked - t_sent, 3)})
    except GuestError as exc:
        life.fail("latency", f"{exc}; measured so far: {found}", "the capture is saved in "
                  "out/system-midi/capture-latency.npy; [midi.level] maps CC 7 to gain_db", blocking=False)
    finally:
        midi.close()
        client.close()
        pace = rec.pace()
        mono = rec.stop()
        np.save(OUT / "capture-latency.npy", mono.astype(np.float32))
    status = life.status() or {}
    life.figures["latency"] = {
        "method": f"sent on this machine -> first block of {LATENCY_BLOCK} samples at >= {LOUD_DBFS:g} dBFS in the "
                  "loopback's capture (level -60 -> 0 dB), the capture placed on this machine's clock by its "
                  "earliest chunk arrival (an upper bound); emulated guest",
        **{f"{channel}_to_sound_s": {"median": round(float(np.median([m["to_sound_s"] for m in runs])), 3),
                                     "max": max(m["to_sound_s"] for m in runs), "runs": runs}
           for channel, runs in found.items() if runs},
        "capture_pace": round(pace, 4),
        "underruns_at_end": status.get("underruns"), "uptime_s": status.get("uptime_s"),
    }


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
