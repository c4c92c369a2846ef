"""A room of Pis steered as one: a control change on any of them (knob, OSC, keys) reaches the others over OSC,
and a Pi that was away (restarted, unplugged from the network) catches up with the room's controls.

How the room agrees (last writer wins, without a shared clock):

- Every control carries a *stamp* ``(clock, origin)``: a Lamport clock (an integer each Pi keeps at one more than
  the largest it has seen) and the id of the Pi that set it. Stamps compare as tuples; the config's starting
  values carry ``(0, "")``, below every change.
- A local change (the ``ControlStore`` tells its listeners, under its lock) gets the next stamp and goes to every
  peer at once (``/murmur/room/state``, one control); a reseed goes as ``/murmur/room/event`` (applied once).
- A peer's value is taken when its stamp is newer than the one here, atomically with the store
  (``ControlStore.merge``), so a knob turned at the same moment cannot be overwritten unseen.
- Every ``heartbeat_s`` each Pi sends all its stamped controls to every peer; a Pi that starts says
  ``/murmur/room/hello`` and each peer answers with its state (``/murmur/room/full``) at once. A full state that
  differs from ours is answered with ours at once, so two Pis that disagree are in step within a round trip. So a Pi back from a restart is in step
  within one round trip, one back on the network within one heartbeat. A Pi whose own knob moved while it was
  away loses to the room if the room moved after (its clock is behind); it wins if nothing moved meanwhile.
- Reseeds are not repeated in heartbeats: a Pi that was away does not replay them.

Messages come only from the configured peers' addresses (others are counted and dropped). Three threads: the
receiver (``murmur-room``), the sender (``murmur-room-send``: changes at once, heartbeats) and the name resolver
(``murmur-room-dns``: peers given by host name, every ``RESOLVE_S``, so a slow lookup never holds a change back).
None of them is the audio thread; the listener the store calls only stamps and queues.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from murmur.device.config_schema import ROOM, read_table
from murmur.device.controls.base import Knobs
from murmur.device.controls.osc import MAX_DATAGRAM, Refused, parse_datagram
from murmur.device.controls.values import BOOL_CONTROLS, CONTROL_RANGES, GENERATOR_EVENTS, Controls, ControlStore
from murmur.device.errors import ConfigError

log = logging.getLogger("murmur.room")

# A change (one or a few controls), the full state (heartbeat, answer to hello), "I am (back) here", a reseed.
STATE, FULL, HELLO, EVENT = "/murmur/room/state", "/murmur/room/full", "/murmur/room/hello", "/murmur/room/event"
CONTROLS = tuple(CONTROL_RANGES) + tuple(BOOL_CONTROLS)
RESOLVE_S = 30.0  # peers given by host name are looked up again this often
SEEN_EVENTS = 512  # (clock, origin) of the events already applied, to apply each once
Stamp = tuple[int, str]
Entry = tuple[str, float, int, str]  # control, value, clock, origin


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """The validated ``[room]`` table: peers as (host, port); listen on ``listen``:``port`` (UDP)."""

    enabled: bool = ROOM.keys["enabled"].default
    name: str = ROOM.keys["name"].default
    peers: tuple[tuple[str, int], ...] = ()
    listen: str = ROOM.keys["listen"].default
    port: int = ROOM.keys["port"].default
    heartbeat_s: float = ROOM.keys["heartbeat_s"].default


def split_peer(text: str, default_port: int) -> tuple[str, int]:
    """"192.168.1.12" / "hall-2.local:9001" / "[fe80::2]:9001" / "fe80::2" -> (host, port). Raises ValueError."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{text!r}: no host")
    number = int(port) if port else default_port
    if not 1 <= number <= 65535:
        raise ValueError(f"{text!r}: port {number} is not 1–65535")
    return host, number


def parse_room(table: dict | None, where: str) -> RoomSettings:
    """The ``[room]`` table -> RoomSettings; the schema checks types, this the peers' form. Raises ConfigError."""
    values = read_table(ROOM, dict(table or {}), where)
    peers = []
    for text in values["peers"]:
        try:
            peers.append(split_peer(text, values["port"]))
        except ValueError:
            raise values.error("peers", f"{text!r} is not \"address\" or \"address:port\"; write e.g. "
                               "[\"192.168.1.12\", \"murmur-hall-3.local:9001\"]") from None
    if values["enabled"] and not peers:
        raise values.error("enabled", "a room needs its other Pis: set peers = [\"<address>\", …] (the deploy "
                           "writes them from the inventory's room = \"…\")")
    return RoomSettings(enabled=values["enabled"], name=values["name"], peers=tuple(peers),
                        listen=values["listen"], port=values["port"], heartbeat_s=values["heartbeat_s"])


class RoomState:
    """The stamps and the Lamport clock: what to send for a local change, what of a peer's state to take. Pure
    (no sockets, no threads); the caller serialises the calls (the store's lock)."""

    def __init__(self, me: str, controls: Controls) -> None:
        self.me = me
        self.clock = 0
        self.entries: dict[str, Entry] = {name: (name, float(getattr(controls, name)), 0, "") for name in CONTROLS}

    def local(self, values: Mapping[str, float | bool]) -> list[Entry]:
        """A change made here: each control gets the next stamp; the entries to send."""
        out = []
        for name, value in values.items():
            if name in self.entries:
                self.clock += 1
                self.entries[name] = entry = (name, float(value), self.clock, self.me)
                out.append(entry)
        return out

    def merge(self, entries: list[Entry]) -> dict[str, float | bool]:
        """A peer's entries: the clock moves past theirs; the controls whose stamp is newer than ours change."""
        changes: dict[str, float | bool] = {}
        for name, value, clock, origin in entries:
            self.clock = max(self.clock, clock)
            if (clock, origin) > self.entries[name][2:]:
                self.entries[name] = (name, value, clock, origin)
                changes[name] = value >= 0.5 if name in BOOL_CONTROLS else value
        return changes

    def observe(self, clock: int) -> dict[str, float | bool]:
        """A peer's event stamped ``clock``: our clock moves past it (no control changes)."""
        self.clock = max(self.clock, clock)
        return {}

    def agrees(self, entries: list[Entry]) -> bool:
        """True when a peer's full state has the same stamps as ours for every control either side changed."""
        theirs = {name: (clock, origin) for name, _value, clock, origin in entries}
        return all(theirs.get(name, (0, "")) == entry[2:] for name, entry in self.entries.items()
                   if entry[2] or theirs.get(name, (0, ""))[0])

    def stamped(self) -> list[Entry]:
        """Every control some Pi has changed (the heartbeat's content)."""
        return [entry for entry in list(self.entries.values()) if entry[2]]


def _message(address: str, *args: Any) -> bytes:
    from pythonosc.osc_message_builder import OscMessageBuilder

    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg, "d" if isinstance(arg, float) else None)  # doubles: every Pi holds the same value
    return builder.build().dgram


def _entries(args: list[Any]) -> list[Entry]:
    """``name value clock origin`` quads after the sender id -> entries. Raises Refused("malformed")."""
    quads = args[1:]
    if len(quads) % 4:
        raise Refused("malformed", "state entries come in fours: name, value, clock, origin")
    out = []
    for i in range(0, len(quads), 4):
        name, value, clock, origin = quads[i:i + 4]
        if (name not in CONTROLS or not isinstance(value, int | float) or isinstance(value, bool)
                or not isinstance(clock, int) or not isinstance(origin, str) or value != value):
            raise Refused("malformed", f"bad state entry {quads[i:i + 4]!r}")
        if name in CONTROL_RANGES:
            low, high = CONTROL_RANGES[name]
            value = min(max(float(value), low), high)
        out.append((name, float(value), clock, origin))
    return out


@dataclass(slots=True)
class Peer:
    """One configured peer: what it was given as, where it is now, what was last heard from it."""

    host: str
    port: int
    address: tuple[str, int] | None = None  # resolved
    heard_mono: float | None = None
    id: str | None = None
    in_step: bool | None = None  # its last full state had our stamps
    problem: str | None = None


@dataclass(slots=True)
class RoomCounters:
    sent: int = 0
    received: int = 0
    applied: int = 0  # controls or events taken from peers
    refused: int = 0  # datagrams from an address that is no peer's
    malformed: int = 0
    send_errors: int = 0
    resolved: dict[str, str] = field(default_factory=dict)


class RoomLink(Knobs):
    """This Pi's link to its room. Build with :func:`join_room`; ``close()`` leaves (threads and socket)."""

    backend = "room"

    def __init__(self, settings: RoomSettings, store: ControlStore, *, me: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.settings, self.store, self._clock = settings, store, clock
        self.me = me or f"{socket.gethostname()}-{os.getpid():x}-{random.getrandbits(24):06x}"
        self.state = RoomState(self.me, store.snapshot())
        self.peers = [Peer(host, port) for host, port in settings.peers]
        self.counters = RoomCounters()
        self.bound: tuple[str, int] | None = None
        # what the sender thread is to send: a change's entries, an event (name, clock), or None (stop); built
        # into OSC there, so the store's listener (which runs under the store's lock) only appends a tuple
        self._outbox: queue.SimpleQueue[list[Entry] | tuple[str, int] | None] = queue.SimpleQueue()
        self._seen: deque[tuple[int, str]] = deque(maxlen=SEEN_EVENTS)
        self._events_lock = threading.Lock()
        self._heard = threading.Condition()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._problems: list[str] = []

    # ── start and stop ─────────────────────────────────────────────────────────────────────────────────────────
    def open(self) -> None:
        s = self.settings
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in s.listen else socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((s.listen, s.port))
        except OSError as exc:
            message = (f"the room cannot listen on {s.listen}:{s.port} ({exc}); with the unit's network drop-in "
                       "missing run `sudo python3 /opt/murmur/current/deploy/pi_release.py network`, else set "
                       "[room] listen/port to an address of this Pi and a free port")
            self._problems.append(message)
            log.warning("room: %s", message)
            return
        self._sock = sock
        self.bound = sock.getsockname()[:2]
        self._resolve_all(numeric_only=True)
        self.store.add_listener(self._on_change)
        for target, name in ((self._receive, "murmur-room"), (self._send, "murmur-room-send"),
                             (self._resolve_loop, "murmur-room-dns")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._broadcast(_message(HELLO, self.me))
        log.info("room %s: listening on %s:%d, peers %s", s.name or "(unnamed)", self.bound[0], self.bound[1],
                 ", ".join(f"{p.host}:{p.port}" for p in self.peers))

    def __enter__(self) -> RoomLink:
        return self

    def close(self) -> None:
        self.store.remove_listener(self._on_change)
        self._stop.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._threads.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ── local changes: the store's listener (under its lock: stamp and queue, nothing else) ────────────────────
    def _on_change(self, values: Mapping[str, float | bool], event: str | None) -> None:
        if event is not None:
            self.state.clock += 1
            with self._events_lock:
                self._seen.append((self.state.clock, self.me))
            self._outbox.put((event, self.state.clock))
            return
        entries = self.state.local(values)
        if entries:
            self._outbox.put(entries)

    # ── the threads ────────────────────────────────────────────────────────────────────────────────────────────
    def _send(self) -> None:
        next_beat = self._clock() + self.settings.heartbeat_s
        while not self._stop.is_set():
            try:
                item = self._outbox.get(timeout=max(0.0, next_beat - self._clock()))
            except queue.Empty:
                self._broadcast(self._state_message())
                next_beat = self._clock() + self.settings.heartbeat_s
                continue
            if item is None:
                break
            if isinstance(item, tuple):
                self._broadcast(_message(EVENT, self.me, item[0], item[1], self.me))
            else:
                self._broadcast(_message(STATE, self.me, *[x for entry in item for x in entry]))

    def _state_message(self) -> bytes:
        return _message(FULL, self.me, *[x for entry in self.state.stamped() for x in entry])

    def _broadcast(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            return
        for peer in self.peers:
            if peer.address is None:
                continue
            try:
                sock.sendto(data, peer.address)
                self.counters.sent += 1
            except OSError as exc:  # a peer's network gone, unreachable: counted, tried again next time
                self.counters.send_errors += 1
                peer.problem = f"sending failed: {exc}"

    def _receive(self) -> None:
        sock = self._sock
        if sock is None:
            return
        sock.settimeout(0.5)
        buffer = bytearray(MAX_DATAGRAM)
        while not self._stop.is_set():
            try:
                size, sender = sock.recvfrom_into(buffer)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                self._stop.wait(0.5)
                continue
            try:
                self.handle(bytes(buffer[:size]), sender)
            except Exception:  # a bug must not end the room; logged with its traceback
                log.exception("room: a datagram from %s failed", sender)
            with self._heard:
                self._heard.notify_all()

    def handle(self, data: bytes, sender: tuple[str, int]) -> None:
        """One datagram from ``sender`` (address, port): a peer's state, hello or event."""
        self.counters.received += 1
        ip = sender[0].removeprefix("::ffff:")
        known = [(p, p.address[0].removeprefix("::ffff:"), p.address[1]) for p in self.peers if p.address is not None]
        peer = next((p for p, host, port in known if (host, port) == (ip, sender[1])), None)  # its room socket
        if peer is None:
            peer = next((p for p, host, _port in known if host == ip), None)
        if peer is None:
            self.counters.refused += 1
            return
        try:
            messages = parse_datagram(data)
            for address, args in messages:
                if not args or not isinstance(args[0], str):
                    raise Refused("malformed", "a room message starts with its sender's id")
                if args[0] == self.me:
                    continue  # our own, through a peer list that names this Pi
                peer.id, peer.heard_mono = args[0], self._clock()
                if address == HELLO:
                    if self._sock is not None:
                        self._sock.sendto(self._state_message(), sender)
                        self.counters.sent += 1
                elif address in (STATE, FULL):
                    entries = _entries(args)

                    def take(_controls: Controls, e: list[Entry] = entries) -> dict[str, float | bool]:
                        return self.state.merge(e)

                    changes = self.store.merge(take)
                    self.counters.applied += len(changes)
                    if address == FULL:
                        peer.in_step = self.state.agrees(entries)
                        if (changes or not peer.in_step) and self._sock is not None:
                            # it was behind us or we behind it: our state at once, not at the next heartbeat, so
                            # both are in step within a round trip (a peer that agrees gets no answer: no ping-pong)
                            self._sock.sendto(self._state_message(), sender)
                            self.counters.sent += 1
                elif address == EVENT:
                    self._event(args)
                else:
                    raise Refused("malformed", f"{address!r} is not a room message")
        except Refused:
            self.counters.malformed += 1

    def _event(self, args: list[Any]) -> None:
        if len(args) != 4 or args[1] not in GENERATOR_EVENTS or not isinstance(args[2], int):
            raise Refused("malformed", f"bad room event {args!r}")
        key = (args[2], str(args[3]))
        with self._events_lock:
            if key in self._seen:
                return
            self._seen.append(key)
        self.store.merge(lambda _controls: self.state.observe(args[2]))  # the clock, under the store's lock
        self.store.trigger(args[1], notify=False)
        self.counters.applied += 1

    def _resolve_all(self, *, numeric_only: bool) -> None:
        for peer in self.peers:
            flags = socket.AI_NUMERICHOST if numeric_only else 0
            try:
                address = self._lookup(peer.host, peer.port, flags)
            except (OSError, UnicodeError) as exc:
                if not numeric_only:
                    peer.problem = f"cannot find {peer.host}: {exc}"
                continue
            peer.address = (address, peer.port)
            if peer.problem and peer.problem.startswith("cannot find"):
                peer.problem = None
            self.counters.resolved[peer.host] = address

    def _lookup(self, host: str, port: int, flags: int) -> str:
        """One address of ``host`` in the socket's family (one kind of answer, nothing for glibc to sort over
        netlink, which the unit's address families leave out); on a dual-stack "::" socket an IPv4 peer is written
        as ::ffff:a.b.c.d. Raises OSError."""
        family = self._sock.family if self._sock is not None else socket.AF_INET
        try:
            return str(socket.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM, flags=flags)[0][4][0])
        except OSError:
            if family != socket.AF_INET6:
                raise
        ipv4 = socket.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM, flags=flags)
        return "::ffff:" + str(ipv4[0][4][0])

    def _resolve_loop(self) -> None:
        while not self._stop.is_set():
            if any(p.address is None or p.host != p.address[0] for p in self.peers):
                self._resolve_all(numeric_only=False)
            self._stop.wait(RESOLVE_S)

    # ── for tests and the status ───────────────────────────────────────────────────────────────────────────────
    def wait_until(self, predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
        """Block until ``predicate()`` holds after a datagram arrived, or ``timeout`` s passed."""
        with self._heard:
            return self._heard.wait_for(predicate, timeout)

    def in_step(self) -> bool:
        """Every peer heard, and its last full state had our stamps."""
        return all(p.in_step for p in self.peers)

    def values(self) -> dict:
        return {"backend": self.backend, "inputs": {}, "led": None, "problems": list(self._problems)}

    def reports(self) -> dict[str, dict]:
        """The status report's ``room`` field."""
        now = self._clock()
        c = self.counters
        return {"room": {
            "name": self.settings.name, "me": self.me,
            "listening": None if self.bound is None else f"{self.bound[0]}:{self.bound[1]}",
            "peers": [{"peer": f"{p.host}:{p.port}", "address": None if p.address is None else p.address[0],
                       "heard_s_ago": None if p.heard_mono is None else round(now - p.heard_mono, 2),
                       "id": p.id, "in_step": p.in_step, "problem": p.problem} for p in self.peers],
            "sent": c.sent, "received": c.received, "applied": c.applied, "refused": c.refused,
            "malformed": c.malformed, "send_errors": c.send_errors, "problems": list(self._problems),
        }}


def join_room(settings: RoomSettings, store: ControlStore, *, me: str | None = None) -> RoomLink:
    """Join the room ``settings`` describe with ``store``; a socket that cannot open is reported, never raised."""
    if not settings.peers:
        raise ConfigError("[room]: no peers to join")
    link = RoomLink(settings, store, me=me)
    link.open()
    return link
