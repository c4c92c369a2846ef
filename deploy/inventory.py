"""The fleet inventory: which Pis exist, how to reach them, and what each plays (one TOML file, see
``deploy/inventory.example.toml``). Names given to ``make deploy PI=…`` that the inventory does not know are used
as ssh destinations with the defaults, so a single Pi needs no inventory at all.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from murmur.device.errors import ConfigError

HOST_KEYS: dict[str, type | tuple[type, ...]] = {
    "address": str, "user": str, "port": int, "identity": str, "root": str, "python": str, "systemctl": str,
    "sudo": bool, "env": dict, "bundle": str, "config": str, "gate_timeout_s": (int, float),
    "allow_quiet_hours": bool, "groups": list, "room": str,
}


@dataclass(frozen=True)
class Host:
    """One Pi: where it is (ssh), its filesystem prefix (tests only), and what to put on it."""

    name: str
    address: str
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    root: str = ""  # filesystem prefix on the Pi; "" on a real Pi, a temp dir in the tests
    python: str | None = None  # remote python with the device dependencies (default: each release's own venv)
    systemctl: str = "systemctl"
    sudo: bool = True  # run the Pi-side steps through `sudo -n` (the Pi's login user is not root)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the Pi-side steps
    bundle: Path | None = None
    config: Path | None = None  # a managed /etc/murmur/murmur.toml (per room: knob map, schedule, …)
    gate_timeout_s: float = 60.0
    allow_quiet_hours: bool = True  # outside opening hours "ready, silent on schedule" passes the health gate
    groups: tuple[str, ...] = ()
    room: str | None = None  # a room of Pis: the others' addresses go into this Pi's managed config ([room] peers)
    room_peers: tuple[str, ...] = ()  # the addresses of the room's other Pis (every one in the inventory)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.address}" if self.user else self.address


@dataclass(frozen=True)
class Inventory:
    hosts: dict[str, Host]
    ssh_config: str | None = None

    def resolve(self, names: list[str], defaults: dict[str, Any] | None = None) -> list[Host]:
        """Hosts for ``PI=…``: inventory names, group names (``@hall``), ``all``, or plain ssh destinations."""
        chosen: list[Host] = []
        for name in names:
            if name == "all":
                chosen.extend(self.hosts.values())
            elif name.startswith("@"):
                members = [h for h in self.hosts.values() if name[1:] in h.groups]
                if not members:
                    raise ConfigError(f"PI={name}: no host in the inventory has groups = [\"{name[1:]}\"]")
                chosen.extend(members)
            elif name in self.hosts:
                chosen.append(self.hosts[name])
            else:
                chosen.append(_host(name, dict(defaults or {}), Path.cwd(), "command line"))
        unique: dict[str, Host] = {}
        for host in chosen:
            unique.setdefault(host.name, host)
        return list(unique.values())


def _host(name: str, table: dict[str, Any], base: Path, where: str) -> Host:
    for key, value in table.items():
        kind = HOST_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"{where}: unknown key {key!r} for host {name!r}; known keys: {', '.join(sorted(HOST_KEYS))}")
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(f"{where}: host {name!r} key {key!r} = {value!r} has the wrong type (expected {kind})")
    values = dict(table)
    for key in ("bundle", "config"):
        if key in values:
            values[key] = (base / values[key]).resolve()
    values["env"] = {str(k): str(v) for k, v in values.get("env", {}).items()}
    values["groups"] = tuple(values.get("groups", ()))
    values.setdefault("address", name)
    values["gate_timeout_s"] = float(values.get("gate_timeout_s", 60.0))
    return Host(name=name, **values)


def _rooms(hosts: dict[str, Host], where: str) -> dict[str, Host]:
    """Each host with ``room = "…"`` learns the addresses of the room's other hosts (its ``[room] peers``); a room
    needs a managed config (the peers are written into it) and at least two Pis."""
    members: dict[str, list[Host]] = {}
    for host in hosts.values():
        if host.room is None:
            continue
        if not host.room.strip():
            raise ConfigError(f'{where}: host {host.name!r} room = "": give the room a name, e.g. room = "hall"')
        if host.config is None:
            raise ConfigError(f'{where}: host {host.name!r} room = "{host.room}" needs config = "<a murmur.toml>": '
                              "the deploy writes the room's other Pis into the config it ships to each Pi")
        members.setdefault(host.room, []).append(host)
    for room, group in members.items():
        if len(group) < 2:
            raise ConfigError(f'{where}: room = "{room}" has one Pi ({group[0].name}); a room needs two or more, '
                              "or leave the room key out")
        for host in group:
            peers = tuple(other.address for other in group if other is not host)
            hosts[host.name] = replace(host, room_peers=peers)
    return hosts


def room_table(host: Host) -> str:
    """The ``[room]`` table the deploy adds to a room member's managed config ("" for a host in no room)."""
    if host.room is None:
        return ""
    peers = ", ".join(f'"{peer}"' for peer in host.room_peers)
    return (f"\n# Written by the deploy from the inventory (room = \"{host.room}\"): the room's other Pis.\n"
            f"[room]\nenabled = true\nname = \"{host.room}\"\npeers = [{peers}]\n")


def load_inventory(path: str | Path | None) -> Inventory:
    """Read an inventory file; None or a missing default file gives an empty inventory."""
    if path is None:
        return Inventory(hosts={})
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: inventory file not found; copy deploy/inventory.example.toml and edit it") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    unknown = set(data) - {"defaults", "hosts", "ssh_config"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}; expected [defaults], [hosts.NAME], ssh_config")
    defaults = data.get("defaults", {})
    base = path.parent
    hosts = {name: _host(name, dict(defaults, **table), base, str(path)) for name, table in data.get("hosts", {}).items()}
    hosts = _rooms(hosts, str(path))
    ssh_config = data.get("ssh_config")
    return Inventory(hosts=hosts, ssh_config=str((base / ssh_config).resolve()) if ssh_config else None)
