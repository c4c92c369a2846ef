"""The room of Pis on loopback: three links (each with its own ControlStore, as three services have) on
127.0.0.1 at their own ports. A change on one reaches the others, a reseed fires once on each, a Pi that restarts
or was cut off catches up with the room, simultaneous changes end the same everywhere, and strangers and garbage
are counted. The ``[room]`` table is read through the schema."""

from __future__ import annotations

import socket

import pytest

from murmur.device.appliance.room import CONTROLS, RoomLink, RoomSettings, RoomState, join_room, parse_room
from murmur.device.controls.values import Controls
from murmur.device.errors import ConfigError
from murmur.device.testing.mcp3008 import RecordingStore

HEARTBEAT_S = 0.2  # short, so the tests that wait for a heartbeat finish soon; nothing asserts a duration


def free_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def link(name: str, port: int, ports: list[int], store: RecordingStore | None = None) -> tuple[RoomLink, RecordingStore]:
    store = store or RecordingStore()
    settings = RoomSettings(enabled=True, name="hall", listen="127.0.0.1", port=port, heartbeat_s=HEARTBEAT_S,
                            peers=tuple(("127.0.0.1", p) for p in ports if p != port))
    room = join_room(settings, store, me=name)
    assert room.bound == ("127.0.0.1", port), room.values()["problems"]
    return room, store


@pytest.fixture
def room3():
    """Three Pis on loopback; on loopback the peers' IP is the same, so a peer is told apart by its id."""
    ports = free_ports(3)
    links = [link(name, port, ports) for name, port in zip(("a", "b", "c"), ports, strict=True)]
    try:
        yield links, ports
    finally:
        for room, _store in links:
            room.close()


def same_everywhere(links, name: str, value: float) -> bool:
    return all(getattr(store.snapshot(), name) == value for _room, store in links)


def test_a_change_on_one_reaches_the_others_and_is_not_echoed_back(room3):
    links, _ports = room3
    (a, store_a), (b, store_b), (c, store_c) = links
    store_a.update(temperature=1.5)  # what a knob, OSC or a key does
    assert store_b.wait_for(lambda ctl: ctl.temperature == 1.5) and store_c.wait_for(lambda ctl: ctl.temperature == 1.5)
    store_c.update(hold=True, position=0.25)
    assert store_a.wait_for(lambda ctl: ctl.hold and ctl.position == 0.25)
    assert store_b.wait_for(lambda ctl: ctl.hold and ctl.position == 0.25)
    # after a few heartbeats every Pi reports the others in step, and nothing came back to be applied twice
    assert all(room.wait_until(room.in_step, 5.0) for room, _ in links)
    assert a.counters.applied == 2 and b.counters.applied == 3 and c.counters.applied == 1
    report = a.reports()["room"]
    assert report["name"] == "hall" and len(report["peers"]) == 2 and report["refused"] == report["malformed"] == 0


def test_a_reseed_fires_once_on_every_pi(room3):
    links, _ports = room3
    (_a, store_a), (_b, store_b), (c, store_c) = links
    store_a.trigger("reseed")
    assert store_b.wait_triggered(1) and store_c.wait_triggered(1)
    assert c.wait_until(lambda: c.counters.received >= 6, 5.0)  # heartbeats came and went: no replay
    assert store_b.triggered == ["reseed"] and store_c.triggered == ["reseed"] and store_a.triggered == ["reseed"]
    store_a.trigger("next_bundle")  # a playlist step stays on its own Pi
    assert c.wait_until(lambda: c.counters.received >= 10, 5.0)
    assert store_b.triggered == store_c.triggered == ["reseed"]


def test_a_pi_that_restarts_takes_up_the_rooms_controls(room3):
    links, ports = room3
    (_a, store_a), (b, _store_b), _ = links
    b.close()
    store_a.update(fidelity=0.9, jump=2.0)
    fresh = RecordingStore()  # the restarted service: the config's starting values
    links[1] = link("b2", ports[1], ports, fresh)
    assert fresh.wait_for(lambda ctl: ctl.fidelity == pytest.approx(0.9) and ctl.jump == 2.0)
    assert links[1][0].wait_until(links[1][0].in_step, 5.0)


def test_a_pi_cut_off_the_network_catches_up_and_its_later_turn_wins(room3):
    links, _ports = room3
    (a, store_a), (b, store_b), (c, store_c) = links
    saved = b.peers[0].address, b.peers[1].address
    b.counters.refused = 0
    for peer in b.peers:  # b hears nobody and reaches nobody, as with its cable out
        peer.address = ("127.0.0.9", peer.port)
    store_a.update(spread=0.5)
    assert store_c.wait_for(lambda ctl: ctl.spread == 0.5)
    assert b.wait_until(lambda: b.counters.refused >= 2, 5.0) and store_b.snapshot().spread == 1.0
    b.peers[0].address, b.peers[1].address = saved  # the cable back in: the next heartbeat brings it in step
    assert store_b.wait_for(lambda ctl: ctl.spread == 0.5, 5.0)
    store_b.update(spread=0.75)  # and a knob on it steers the room again
    assert store_a.wait_for(lambda ctl: ctl.spread == 0.75) and store_c.wait_for(lambda ctl: ctl.spread == 0.75)


def test_changes_at_the_same_moment_end_the_same_on_every_pi(room3):
    links, _ports = room3
    for i, (_room, store) in enumerate(links):
        store.update(gain_db=-float(10 + i))  # three turns at once, before any has arrived elsewhere
    assert all(room.wait_until(room.in_step, 5.0) for room, _ in links)
    values = {store.snapshot().gain_db for _room, store in links}
    assert len(values) == 1 and values.pop() in (-10.0, -11.0, -12.0)


def test_strangers_and_garbage_are_counted_and_the_room_goes_on(room3):
    links, ports = room3
    (a, store_a), (_b, store_b), _ = links
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.5", 0))
    stranger.sendto(b"/murmur/room/state\x00\x00", ("127.0.0.1", ports[0]))
    stranger.close()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    for data in (b"garbage", b"/murmur/room/state\x00\x00,sfis\x00\x00\x00x\x00\x00\x00"):
        peer.sendto(data, ("127.0.0.1", ports[0]))
    peer.close()
    assert a.wait_until(lambda: a.counters.refused >= 1 and a.counters.malformed >= 2, 5.0)
    store_b.update(position=0.75)
    assert store_a.wait_for(lambda ctl: ctl.position == 0.75)


def test_room_state_merges_by_stamp():
    state = RoomState("b", Controls())
    assert state.merge([("temperature", 1.0, 5, "a")]) == {"temperature": 1.0} and state.clock == 5
    assert state.merge([("temperature", 0.5, 5, "a")]) == {}  # the same stamp: already here
    assert state.merge([("temperature", 0.5, 4, "c")]) == {}  # older
    assert state.local({"temperature": 0.25}) == [("temperature", 0.25, 6, "b")]  # past everything seen
    assert state.merge([("hold", 1.0, 6, "c")]) == {"hold": True}  # same clock, other origin: origin decides
    assert state.agrees(state.stamped()) and not state.agrees([])
    assert set(state.entries) == set(CONTROLS)


def test_the_room_table_is_read_through_the_schema():
    assert parse_room({}, "m.toml") == RoomSettings()
    room = parse_room({"enabled": True, "peers": ["192.168.1.12", "hall-3.local:9010", "[fe80::2]:9011"]}, "m")
    assert room.peers == (("192.168.1.12", 9001), ("hall-3.local", 9010), ("fe80::2", 9011))
    with pytest.raises(ConfigError, match=r'm.toml: \[room\] peers = \["hall 2"\]: .* is not "address"'):
        parse_room({"peers": ["hall 2"]}, "m.toml")
    with pytest.raises(ConfigError, match=r"\[room\] enabled = true: a room needs its other Pis"):
        parse_room({"enabled": True}, "m.toml")
    with pytest.raises(ConfigError, match=r"\[room\] heartbeat_s = 0: out of range"):
        parse_room({"heartbeat_s": 0}, "m.toml")


def test_an_osc_message_to_one_pi_steers_the_room_and_status_shows_it(room3):
    from pythonosc.udp_client import SimpleUDPClient

    from murmur.device.appliance.health import describe_room
    from murmur.device.controls.osc import OscSettings, start_osc

    links, _ports = room3
    (a, store_a), (_b, store_b), (_c, store_c) = links
    with start_osc(OscSettings(enabled=True, listen="127.0.0.1", port=0), store_a) as osc:
        assert osc.bound is not None
        SimpleUDPClient("127.0.0.1", osc.bound[1]).send_message("/murmur/jump", 3.0)
        assert store_b.wait_for(lambda ctl: ctl.jump == 3.0) and store_c.wait_for(lambda ctl: ctl.jump == 3.0)
    assert a.wait_until(a.in_step, 5.0)
    line = describe_room(a.reports()["room"])
    assert line.startswith("hall: 2 of 2 peers heard, in step; listening on 127.0.0.1:")
    b_gone = dict(a.reports()["room"], peers=[dict(p, heard_s_ago=None, in_step=None) for p in a.reports()["room"]["peers"]])
    assert "0 of 2 peers heard, NOT in step" in describe_room(b_gone) and "NOT heard" in describe_room(b_gone)


def test_osc_and_the_room_on_one_port_are_refused_with_the_fix(tmp_path):
    from murmur.device.appliance.config import load_config

    (tmp_path / "b").mkdir()
    config = tmp_path / "murmur.toml"
    config.write_text('[playback]\nbundle = "b"\n[osc]\nenabled = true\nport = 9005\n'
                      '[room]\nenabled = true\nport = 9005\npeers = ["192.168.1.12"]\n')
    with pytest.raises(ConfigError, match=r"\[osc\] port = 9005 and \[room\] port = 9005: .* \[room\] port = 9006"):
        load_config(config)


def test_a_port_another_program_holds_is_reported_not_shared():
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    try:
        settings = RoomSettings(enabled=True, listen="127.0.0.1", port=holder.getsockname()[1],
                                peers=(("127.0.0.1", 9),))
        room = join_room(settings, RecordingStore())
        assert room.bound is None and "cannot listen" in room.values()["problems"][0]
        assert room.reports()["room"]["listening"] is None
        room.close()
    finally:
        holder.close()


def test_a_dual_stack_room_talks_to_ipv4_peers():
    """listen = "::" (IPv4 and IPv6): an IPv4 peer is reached as ::ffff:a.b.c.d and recognised when it answers."""
    a_port, b_port = free_ports(2)
    store_a, store_b = RecordingStore(), RecordingStore()
    a = join_room(RoomSettings(enabled=True, listen="::", port=a_port, peers=(("127.0.0.1", b_port),),
                               heartbeat_s=HEARTBEAT_S), store_a, me="a")
    b = join_room(RoomSettings(enabled=True, listen="127.0.0.1", port=b_port, peers=(("127.0.0.1", a_port),),
                               heartbeat_s=HEARTBEAT_S), store_b, me="b")
    try:
        assert a.peers[0].address == ("::ffff:127.0.0.1", b_port)
        store_a.update(spread=0.25)
        assert store_b.wait_for(lambda ctl: ctl.spread == 0.25)
        store_b.update(spread=0.5)
        assert store_a.wait_for(lambda ctl: ctl.spread == 0.5)
        assert a.wait_until(a.in_step, 5.0) and a.counters.refused == 0
    finally:
        a.close()
        b.close()
