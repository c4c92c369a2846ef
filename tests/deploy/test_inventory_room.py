"""Rooms in the inventory: the hosts with the same room = "…" get each other's addresses as [room] peers in the
managed config the deploy ships (which the Pi's own config reader accepts, and which gets the network drop-in);
a room without a managed config, with one Pi, or whose config already has [room] is refused with the fix."""

from __future__ import annotations

import pytest

from murmur import REPO_ROOT as REPO
from murmur.deploy import pi_release
from murmur.deploy.inventory import load_inventory, room_table
from murmur.deploy.tool import build_release
from murmur.device.appliance.config import load_config
from murmur.device.errors import ConfigError

ROOM_CONFIG = '[playback]\nbundle = "/opt/murmur/current/bundle"\n[knobs]\nenabled = false\n'


def inventory(tmp_path, hosts: str, config: str = ROOM_CONFIG):
    (tmp_path / "hall.toml").write_text(config)
    (tmp_path / "inventory.toml").write_text(hosts)
    return load_inventory(tmp_path / "inventory.toml")


HALL = """
[hosts.hall-1]
address = "192.168.1.11"
config = "hall.toml"
room = "hall"
[hosts.hall-2]
address = "murmur-hall-2.local"
config = "hall.toml"
room = "hall"
[hosts.hall-3]
address = "192.168.1.13"
config = "hall.toml"
room = "hall"
[hosts.foyer]
address = "192.168.1.20"
"""


def test_each_room_member_gets_the_others_as_peers(tmp_path):
    hosts = inventory(tmp_path, HALL).hosts
    assert hosts["hall-1"].room_peers == ("murmur-hall-2.local", "192.168.1.13")
    assert hosts["hall-2"].room_peers == ("192.168.1.11", "192.168.1.13")
    assert hosts["foyer"].room is None and room_table(hosts["foyer"]) == ""


def test_the_shipped_config_has_the_room_and_the_pi_reads_it(tmp_path, tiny_bundle):
    host = inventory(tmp_path, HALL).hosts["hall-3"]
    release = build_release(tiny_bundle, host.config, tmp_path / "work", REPO, room_table(host))
    site = release.tree / "site" / "murmur.toml"
    text = site.read_text()
    assert text.startswith(ROOM_CONFIG) and '[room]\nenabled = true\nname = "hall"' in text
    (tmp_path / "current").mkdir()
    on_pi = tmp_path / "pi.toml"
    on_pi.write_text(text.replace("/opt/murmur/current/bundle", str(tmp_path / "current")))
    config = load_config(on_pi)
    assert config.room.enabled and config.room.peers == (("192.168.1.11", 9001), ("murmur-hall-2.local", 9001))
    # a peer given by host name: the drop-in cannot name its address, so the private networks are let through
    assert "192.168.0.0/16" in (pi_release.network_dropin(text) or "")


def test_a_room_needs_a_managed_config_two_pis_and_no_room_table_of_its_own(tmp_path, tiny_bundle):
    with pytest.raises(ConfigError, match=r"host 'a' room = \"hall\" needs config ="):
        inventory(tmp_path, '[hosts.a]\nroom = "hall"\n[hosts.b]\nroom = "hall"\nconfig = "hall.toml"\n')
    with pytest.raises(ConfigError, match=r'room = "hall" has one Pi \(a\)'):
        inventory(tmp_path, '[hosts.a]\nroom = "hall"\nconfig = "hall.toml"\n')
    host = inventory(tmp_path, HALL, ROOM_CONFIG + "[room]\nenabled = false\n").hosts["hall-1"]
    with pytest.raises(ConfigError, match=r"has a \[room\] table and the inventory gives this host a room"):
        build_release(tiny_bundle, host.config, tmp_path / "work", REPO, room_table(host))


def test_the_example_inventory_puts_the_hall_in_one_room():
    hosts = load_inventory(REPO / "deploy" / "inventory.example.toml").hosts
    assert [h.name for h in hosts.values() if h.room == "hall"] == ["hall-1", "hall-2", "hall-3"]
    assert hosts["hall-2"].room_peers == ("murmur-hall-1.local", "murmur-hall-3.local")
