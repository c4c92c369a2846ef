#!/usr/bin/env python3
"""Runs INSIDE the MIDI test's guest, as root (tests/system/test_system_midi.py copies it there): a real USB MIDI
controller made of Debian's kernel modules, plugged in, unplugged and played on.

dummy_hcd is a USB host controller and a device controller wired to each other in software; a configfs gadget
with one f_midi function bound to its device side is a USB MIDI device, which the host side enumerates and
snd-usb-audio takes as a class-compliant controller ("Murmur Test Knobs": ALSA card "Knobs", sequencer port
"Murmur Test Knobs MIDI 1"), exactly as it takes one on a Pi's USB port. f_midi gives the gadget's side its own
ALSA card (id ``padside``): bytes written to its rawmidi device are what the controller sends over the cable.
Unbinding the gadget (an empty UDC) is an unplug, binding it again a plug.

Commands (each prints one JSON line):
  setup            load the modules, make the gadget, plug it in; wait until the sequencer lists it
  unplug | plug    unbind / bind the gadget; wait until the sequencer's list says so
  send HEX…        write raw MIDI bytes from the controller's side (amidi -p hw:padside -S …)
  cycle K VALUE KIND [TIMEOUT]
                   one hot-plug cycle, timed by the service's own status file (/run/murmur/status.json):
                   KIND "slow": unplug, wait until the service says the controller is gone, plug in; KIND "quick":
                   unplug and plug in at once (faster than the service looks); then wait until the service has the
                   controller again (its connects count), send CC 16 = VALUE and wait until the status shows the
                   control it turns at that value. Polls every 50 ms against TIMEOUT s (default 60).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

GADGET = Path("/sys/kernel/config/usb_gadget/murmur-knobs")
UDC = "dummy_udc.0"
PRODUCT = "Murmur Test Knobs"
PORT = f"{PRODUCT} MIDI 1"  # snd-usb-audio's sequencer port of the controller
CARD_ID = "padside"  # the gadget's own ALSA card
STATUS = Path("/run/murmur/status.json")
SEQ = Path("/proc/asound/seq/clients")
CC = 16  # mapped to temperature, range 0 … 2 (tests/system/guest-murmur-midi.toml)


def listed() -> bool:
    try:
        return f'"{PORT}"' in SEQ.read_text()
    except OSError:
        return False


def wait(what: str, predicate, timeout: float) -> float:
    t0 = time.monotonic()
    while True:
        value = predicate()
        if value:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise SystemExit(json.dumps({"error": f"{what}: not within {timeout:g} s"}))
        time.sleep(0.05)  # poll interval: the loop waits for the condition, with a deadline


def status() -> dict:
    try:
        return json.loads(STATUS.read_text())
    except (OSError, ValueError):
        return {}


def setup() -> dict:
    for module in ("dummy_hcd", "libcomposite", "usb_f_midi", "snd-seq-midi"):
        subprocess.run(["modprobe", module], check=True)
    if not Path("/sys/kernel/config/usb_gadget").is_dir():
        subprocess.run(["mount", "-t", "configfs", "configfs", "/sys/kernel/config"], check=True)
    if not GADGET.is_dir():
        GADGET.mkdir()
        (GADGET / "idVendor").write_text("0x1d6b")  # the Linux Foundation's ids, as the kernel's gadget examples
        (GADGET / "idProduct").write_text("0x0104")
        strings = GADGET / "strings/0x409"
        strings.mkdir(parents=True)
        (strings / "manufacturer").write_text("Murmur")
        (strings / "product").write_text(PRODUCT)
        (strings / "serialnumber").write_text("0001")
        (GADGET / "configs/c.1").mkdir(parents=True)
        function = GADGET / "functions/midi.knobs"
        function.mkdir(parents=True)
        (function / "id").write_text(CARD_ID)
        (GADGET / "configs/c.1/midi.knobs").symlink_to(function)
    t0 = time.monotonic()
    plug()
    return {"plugged_to_listed_s": round(time.monotonic() - t0, 2), "modules": "dummy_hcd libcomposite usb_f_midi"}


def unplug() -> float:
    (GADGET / "UDC").write_text("\n")
    return wait("unplug: the port leaves the sequencer", lambda: not listed(), 30)


def plug() -> float:
    (GADGET / "UDC").write_text(UDC)
    return wait("plug: the port in the sequencer", listed, 60)


def send(*hex_bytes: str) -> None:
    subprocess.run(["amidi", "-p", f"hw:{CARD_ID}", "-S", " ".join(hex_bytes)], check=True, timeout=30)


def cycle(index: int, value: int, kind: str, timeout: float = 60.0) -> dict:
    before = status()
    midi = before.get("midi", {})
    gone0, found0 = midi.get("disconnects", 0), midi.get("connects", 0)
    t0 = time.monotonic()
    out: dict = {"cycle": index, "kind": kind, "pid": before.get("pid")}
    if kind == "slow":
        unplug()
        out["gone_seen_s"] = round(wait("the service says the controller is gone",
                                        lambda: status().get("midi", {}).get("disconnects", 0) > gone0, timeout), 2)
        out["playing_while_gone"] = bool(status().get("playing"))
        t1 = time.monotonic()
        plug()
    else:
        (GADGET / "UDC").write_text("\n")
        (GADGET / "UDC").write_text(UDC)
        t1 = time.monotonic()
        wait("quick replug: the port in the sequencer", listed, 60)
    wait("the service has the controller again", lambda: status().get("midi", {}).get("connects", 0) > found0,
         timeout)
    out["found_again_s"] = round(time.monotonic() - t1, 2)  # from the plug
    expected = 2.0 * value / 127
    t2 = time.monotonic()
    send("B0", f"{CC:02X}", f"{value:02X}")
    wait(f"CC {CC} = {value} turns temperature to {expected:.3f}",
         lambda: abs(status().get("knobs", {}).get("temperature", -9.0) - expected) < 1e-3, timeout)
    out["cc_to_status_s"] = round(time.monotonic() - t2, 2)
    after = status()
    out.update(cycle_s=round(time.monotonic() - t0, 2), playing=bool(after.get("playing")), pid_after=after.get("pid"),
               connects=after.get("midi", {}).get("connects"), disconnects=after.get("midi", {}).get("disconnects"),
               underruns=after.get("underruns"), restarts=after.get("restarts"))
    return out


def main(argv: list[str]) -> int:
    command, args = argv[1], argv[2:]
    if command == "setup":
        result: dict = setup()
    elif command == "unplug":
        result = {"unplugged_s": round(unplug(), 2)}
    elif command == "plug":
        result = {"plugged_s": round(plug(), 2)}
    elif command == "send":
        send(*args)
        result = {"sent": args}
    elif command == "cycle":
        result = cycle(int(args[0]), int(args[1]), args[2], *(float(a) for a in args[3:4]))
    else:
        raise SystemExit(f"unknown command {command!r}: {__doc__}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
