"""OSC: a real UDP client on loopback (python-osc's SimpleUDPClient) steers the controls; garbage, unknown
addresses, strangers and floods are counted and never stop the listener; the ``[osc]`` table is checked."""

from __future__ import annotations

import random
import socket
import struct

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from murmur.device.config_schema import OSC
from murmur.device.controls.osc import (
    PRIVATE_NETWORKS,
    OscSettings,
    Refused,
    interpret,
    parse_datagram,
    parse_osc,
    start_osc,
)
from murmur.device.controls.values import CONTROL_RANGES, ControlStore
from murmur.device.errors import ConfigError
from murmur.device.testing.mcp3008 import RecordingStore


@pytest.fixture
def listener():
    """An OSC listener on 127.0.0.1 at a free port, fast enough that the rate limit stays out of the way."""
    store = RecordingStore()
    knobs = start_osc(OscSettings(enabled=True, listen="127.0.0.1", port=0, max_messages_per_s=10000.0), store)
    assert knobs.bound is not None, knobs.values()["problems"]
    try:
        yield knobs, store, SimpleUDPClient("127.0.0.1", knobs.bound[1])
    finally:
        knobs.close()


def message(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def test_a_real_client_sets_controls_holds_and_reseeds(listener):
    knobs, store, client = listener
    client.send_message("/murmur/temperature", 0.7)
    client.send_message("/murmur/gain_db", -12)  # an OSC int is a number too
    client.send_message("/murmur/position/unit", 0.25)
    client.send_message("/murmur/hold", 1)
    client.send_message("/murmur/reseed", [])
    assert knobs.wait_packets(5)
    controls = store.snapshot()
    assert controls.temperature == pytest.approx(0.7) and controls.gain_db == -12.0
    assert controls.position == pytest.approx(0.25) and controls.hold is True
    assert store.triggered == ["reseed"]
    client.send_message("/murmur/hold", "off")
    client.send_message("/murmur/reseed", 0.0)  # a push button's release: nothing fires
    assert knobs.wait_packets(7)
    assert store.snapshot().hold is False and store.triggered == ["reseed"]
    report = knobs.reports()["osc"]
    assert report["listening"] == f"127.0.0.1:{knobs.bound[1]}" and report["applied"] == 7
    assert report["last_sender"] == "127.0.0.1" and report["malformed"] == 0


def test_values_stop_at_the_ends_of_their_range_and_unit_spans_the_range(listener):
    knobs, store, client = listener
    client.send_message("/murmur/jump", 99.0)
    client.send_message("/murmur/fidelity", -5.0)
    client.send_message("/murmur/gain_db/unit", 1.0)
    assert knobs.wait_packets(3)
    controls = store.snapshot()
    assert controls.jump == CONTROL_RANGES["jump"][1] and controls.fidelity == 0.0
    assert controls.gain_db == CONTROL_RANGES["gain_db"][1]


def test_a_bundle_applies_all_its_messages_at_once(listener):
    knobs, store, client = listener
    bundle = OscBundleBuilder(IMMEDIATELY)
    bundle.add_content(OscMessageBuilder("/murmur/spread").build())  # no argument: malformed, the rest still counts
    for address, value in (("/murmur/fidelity", 0.9), ("/murmur/spread", 0.4)):
        builder = OscMessageBuilder(address)
        builder.add_arg(value)
        bundle.add_content(builder.build())
    client.send(bundle.build())
    assert knobs.wait_packets(1)
    assert store.snapshot().fidelity == pytest.approx(0.9) and store.snapshot().spread == pytest.approx(0.4)
    assert store.version == 1  # one store update for the whole bundle
    assert knobs.counters.messages == 3 and knobs.counters.applied == 2 and knobs.counters.bad_messages == 1


@pytest.mark.parametrize("address, args, kind", [
    ("/other/temperature", [0.5], "unknown"),
    ("/murmur/volume", [0.5], "unknown"),
    ("/murmur/hold/unit", [1.0], "unknown"),
    ("/murmur/temperature", [], "malformed"),
    ("/murmur/temperature", ["warm"], "malformed"),
    ("/murmur/temperature", [float("nan")], "malformed"),
    ("/murmur/temperature", [0.1, 0.2], "malformed"),
    ("/murmur/hold", ["maybe"], "malformed"),
])
def test_what_is_not_a_murmur_message_is_refused_with_its_kind(address, args, kind):
    with pytest.raises(Refused) as refused:
        interpret(address, args)
    assert refused.value.kind == kind and str(refused.value)


def test_a_message_cut_short_is_malformed_not_a_padded_value():
    whole = message("/murmur/temperature", 0.4)
    assert parse_datagram(whole) == [("/murmur/temperature", [pytest.approx(0.4)])]
    for cut in (1, 2, 3):
        with pytest.raises(Refused) as refused:
            parse_datagram(whole[:-cut])
        assert refused.value.kind == "malformed" and "4-byte words" in str(refused.value)
    with pytest.raises(Refused) as refused:  # a whole word short: the type tag says f, no number follows
        parse_datagram(whole[:-4])
    assert refused.value.kind == "malformed" and "ends before its number" in str(refused.value)
    bundle = b"#bundle\x00" + struct.pack(">Q", 1) + struct.pack(">i", len(whole) - 4) + whole[:-4]
    with pytest.raises(Refused, match="ends before its number"):  # inside a bundle too
        parse_datagram(bundle)
    assert parse_datagram(message("/murmur/reseed")) == [("/murmur/reseed", [])]  # no argument: nothing missing


def test_garbage_and_bad_arguments_are_counted_and_the_listener_goes_on(listener):
    knobs, store, client = listener
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = knobs.bound[1]
    for data in (b"", b"\x00" * 3, b"hello", b"/murmur/temperature\x00", b"#bundle\x00" + b"\xff" * 40,
                 message("/murmur/temperature", "hot"), message("/nowhere", 1.0)):
        raw.sendto(data, ("127.0.0.1", port))
    client.send_message("/murmur/temperature", 1.5)
    assert knobs.wait_packets(8)
    raw.close()
    c = knobs.counters
    assert store.snapshot().temperature == pytest.approx(1.5)
    # "/murmur/temperature" with no type tags parses as a message without an argument: a bad message
    assert c.packets == 8 and c.malformed == 4 and c.bad_messages == 2 and c.unknown == 1 and c.applied == 1


def test_fuzz_a_few_thousand_random_and_mangled_packets_are_each_counted(listener, caplog):
    """Random bytes, valid messages with bytes flipped or cut, nested bundles, wrong type tags: every datagram lands
    in exactly one counter, nothing escapes the thread, and a good message afterwards still works."""
    knobs, store, client = listener
    rng = random.Random(26)
    good = [message("/murmur/temperature", 0.4), message("/murmur/hold", 1), message("/murmur/reseed"),
            message("/murmur/jump/unit", 0.5)]
    nested = b"".join([b"#bundle\x00" + struct.pack(">Q", 1) + struct.pack(">i", 2**20)] * 50)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port, sent = knobs.bound[1], 0
    for _batch in range(30):
        for _ in range(100):
            kind = rng.random()
            if kind < 0.3:
                data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
            elif kind < 0.6:
                data = bytearray(rng.choice(good))
                for _ in range(rng.randrange(1, 4)):
                    data[rng.randrange(len(data))] = rng.getrandbits(8)
                data = bytes(data)
            elif kind < 0.8:
                source = rng.choice(good)
                data = source[: rng.randrange(len(source))]
            elif kind < 0.9:
                data = nested[: rng.randrange(16, len(nested))]
            else:
                data = b"/murmur/fidelity\x00\x00\x00\x00," + bytes(rng.choice(b"ifsbTFNIhdtcrm[]") for _ in range(6)) \
                    + b"\x00\x00" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 24)))
            raw.sendto(data, ("127.0.0.1", port))
            sent += 1
        # wait for each batch, so the kernel's receive buffer never overflows and drops (that would be uncounted)
        assert knobs.wait_packets(sent, timeout=10.0), (sent, knobs.counters)
    raw.close()
    c = knobs.counters
    assert c.packets == sent == 3000
    assert c.refused + c.dropped + c.malformed + c.parsed == c.packets
    assert c.applied + c.merged + c.actions_dropped + c.unknown + c.bad_messages == c.messages
    assert c.malformed > 1000 and c.parsed > 0 and c.applied > 0
    assert knobs.values()["problems"] == []  # nothing fell through to the "a datagram failed" guard
    assert not [r for r in caplog.records if r.levelno >= 30]  # and nothing a sender sends reaches the journal
    client.send_message("/murmur/temperature", 1.25)
    assert knobs.wait_until(lambda: store.snapshot().temperature == pytest.approx(1.25))


def test_a_sender_outside_the_allowed_networks_is_refused_and_counted():
    store = ControlStore()
    knobs = start_osc(OscSettings(enabled=True, listen="127.0.0.1", port=0, allowed_senders=("127.0.0.2/32",)), store)
    try:
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.3", 0))
        friend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        friend.bind(("127.0.0.2", 0))
        stranger.sendto(message("/murmur/temperature", 1.9), ("127.0.0.1", knobs.bound[1]))
        friend.sendto(message("/murmur/temperature", 0.9), ("127.0.0.1", knobs.bound[1]))
        assert knobs.wait_packets(2)
        stranger.close()
        friend.close()
        assert store.snapshot().temperature == pytest.approx(0.9)
        assert knobs.counters.refused == 1 and knobs.reports()["osc"]["last_sender"] == "127.0.0.2"
    finally:
        knobs.close()


def test_over_the_rate_values_are_merged_and_the_last_one_wins():
    """A fader sweep faster than max_messages_per_s: the excess is merged, and the sweep's last value arrives."""
    store = RecordingStore()
    knobs = start_osc(OscSettings(enabled=True, listen="127.0.0.1", port=0, max_messages_per_s=5.0), store)
    try:
        client = SimpleUDPClient("127.0.0.1", knobs.bound[1])
        for i in range(1, 16):
            client.send_message("/murmur/position", i / 20.0)
        client.send_message("/murmur/reseed", [])
        client.send_message("/murmur/reseed", [])  # over the rate: an action is dropped, not delayed
        assert knobs.wait_packets(17)
        assert knobs.wait_until(lambda: store.snapshot().position == pytest.approx(15 / 20.0), timeout=5.0)
        c = knobs.counters
        assert c.merged >= 10 and c.actions_dropped >= 1 and c.applied + c.merged + c.actions_dropped == 17
    finally:
        knobs.close()


def test_a_busy_port_is_reported_and_nothing_raises():
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    try:
        knobs = start_osc(OscSettings(enabled=True, listen="127.0.0.1", port=blocker.getsockname()[1]), ControlStore())
        problems = knobs.values()["problems"]
        assert knobs.bound is None and "cannot listen" in problems[0] and "[osc] listen" in problems[0]
        assert knobs.reports()["osc"]["listening"] is None
        knobs.close()
    finally:
        blocker.close()


def test_the_osc_table_is_read_through_the_schema():
    assert parse_osc({}, "m.toml") == OscSettings() and OscSettings().enabled is False
    settings = parse_osc({"enabled": True, "listen": "::", "allowed_senders": ["192.168.1.30", "10.0.0.0/24"]}, "m")
    assert settings.allowed_senders == ("192.168.1.30/32", "10.0.0.0/24")
    with pytest.raises(ConfigError, match=r'm.toml: \[osc\] listen = "pi.local": not an IP address'):
        parse_osc({"listen": "pi.local"}, "m.toml")
    with pytest.raises(ConfigError, match=r"\[osc\] allowed_senders = \[\"300.1.1.1\"\]: expected a list"):
        parse_osc({"allowed_senders": ["300.1.1.1"]}, "m.toml")
    with pytest.raises(ConfigError, match=r"\[osc\] port = 80: expected 1024–65535"):
        parse_osc({"port": 80}, "m.toml")
    assert OscSettings().networks[0].compressed == PRIVATE_NETWORKS[0] and OSC.keys["port"].default == 9000


def test_the_same_action_too_soon_is_dropped_so_a_sender_cannot_flip_bundles_all_day(listener):
    knobs, store, client = listener
    for _ in range(5):
        client.send_message("/murmur/next_bundle", 1)
    client.send_message("/murmur/reseed", 1)
    assert knobs.wait_packets(6)
    assert store.triggered == ["next_bundle", "reseed"] and knobs.counters.actions_dropped == 4
