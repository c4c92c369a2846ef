"""The OSC examples a technician copies (deploy/examples/): every address they send is one the Pi takes, with the
kind of value they send, and the Pure Data patch is wired as its text says (every connection between objects
that exist, every sender reaching [netsend])."""

from __future__ import annotations

import re

from murmur import REPO_ROOT as ROOT
from murmur.device.controls.osc import interpret

EXAMPLES = ROOT / "deploy" / "examples"


def pd_objects(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """A Pd patch's objects (every #X line but connect, in order: their index is their number) and its connections."""
    objects, connections = [], []
    for record in re.split(r";\n", text):
        if record.startswith("#X connect"):
            src, _, dst, _ = map(int, record.split()[2:6])
            connections.append((src, dst))
        elif record.startswith("#X "):
            objects.append(record[3:])
    return objects, connections


def test_the_pd_patch_sends_murmur_addresses_to_netsend():
    objects, connections = pd_objects((EXAMPLES / "murmur-osc.pd").read_text())
    assert all(0 <= a < len(objects) and 0 <= b < len(objects) for a, b in connections)
    formats = {i: "/" + "/".join(o.split()[4:]) for i, o in enumerate(objects) if o.startswith("obj") and "oscformat" in o}
    assert set(formats.values()) == {"/murmur/temperature", "/murmur/fidelity", "/murmur/position", "/murmur/hold",
                                     "/murmur/reseed"}
    for address in formats.values():
        changes, action = interpret(address, [1.0])  # a slider's, toggle's or message box's float
        assert changes or action == "reseed"
    netsend = next(i for i, o in enumerate(objects) if "netsend -u -b" in o)
    reach: dict[int, set[int]] = {}
    for a, b in connections:
        reach.setdefault(a, set()).add(b)

    def reaches(start: int, goal: int, seen: frozenset = frozenset()) -> bool:
        return start == goal or any(reaches(n, goal, seen | {start}) for n in reach.get(start, ()) if n not in seen)

    assert all(reaches(i, netsend) for i in formats)
    assert any("connect 192.168.1.20 9000" in o for o in objects)


def test_every_address_in_the_touchosc_layout_is_taken():
    text = (EXAMPLES / "touchosc-layout.md").read_text()
    addresses = set(re.findall(r"`(/murmur/[a-z_/]+)`", text))
    assert len(addresses) >= 7
    for address in addresses:
        value = 0.5 if address.endswith("/unit") else (-12.0 if "gain_db" in address else 1.0)
        changes, action = interpret(address, [value])
        assert changes or action
