"""OSC back-end: Open Sound Control over UDP turns the same controls as the knobs (TouchOSC, Pure Data, Max,
TouchDesigner, QLab, a sensor patch).

Messages (``/murmur/`` then a control or an action, one argument):

- ``/murmur/<control> <number>``: a continuous control in its own units (``temperature 0.7``, ``gain_db -12``);
  ``/murmur/<control>/unit <0..1>``: the same control across its whole range (a fader's 0..1), linear. Values
  outside the range stop at its ends, as a knob does.
- ``/murmur/hold <0|1>`` (also true/false, "on"/"off"): freeze the sound or let it go.
- ``/murmur/reseed`` (also ``next_bundle``, ``previous_bundle``): the action; with an argument only a non-zero one
  fires it, so a push button that sends 1 on press and 0 on release fires once. The same action again within
  ``ACTION_GAP_S`` (0.1 s for reseed, 2 s for a playlist step) is dropped and counted.

Bundles are taken apart and their messages applied at once (time tags are not waited for). Every datagram is
counted once: refused (sender not allowed), dropped (more than ``PACKET_BUDGET`` times the message rate arrived:
read and thrown away unparsed, so a flood costs the Pi little), malformed (not OSC, or a bad argument),
or parsed. The messages of parsed datagrams are applied, unknown (an address that is not Murmur's), bad (a
Murmur address with a wrong argument), merged (a value over the rate limit: the latest value of each control is
kept and applied as soon as the rate allows) or dropped actions (over the limit, or too soon after the same one).

The receiving thread (``murmur-osc``) only writes into the ``ControlStore``, as the GPIO poll thread does: one
short lock per datagram, never anything the audio thread waits on. Nothing a sender does can raise out of it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from murmur.device.config_schema import OSC, read_table
from murmur.device.controls.base import Knobs
from murmur.device.controls.values import (
    ACTION_GAP_S,
    BOOL_CONTROLS,
    CONTROL_RANGES,
    EVENTS,
    ControlStore,
    coerce_control,
)

log = logging.getLogger("murmur.knobs")

PREFIX = "/murmur/"
UNIT_SUFFIX = "/unit"
# Who may send when [osc] allowed_senders is empty: this Pi and the private networks a gallery's router hands out.
# deploy/pi_release.py (standard library only) mirrors it for the systemd drop-in's IPAddressAllow=; a test checks.
PRIVATE_NETWORKS = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                    "::1/128", "fc00::/7", "fe80::/10")
PACKET_BUDGET = 4.0  # datagrams per second accepted for parsing, as a multiple of max_messages_per_s
MAX_DATAGRAM = 65536
RECEIVE_BUFFER = 1 << 20  # bytes of datagrams the kernel may hold while the thread is busy (a burst of messages)
IDLE_WAKE_S = 0.5  # the thread checks for close() this often when nothing arrives
SENDER_CACHE = 256  # sender addresses whose verdict is remembered (cleared when full)
ErrorCallback = Callable[[str], None]


class _QuietPythonOsc(logging.Filter):
    """python-osc logs a warning on the root logger for some malformed datagrams ("Unhandled parameter type");
    a sender could fill the journal with them. The counters already count each one, so these records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pythonosc" not in record.pathname


_QUIET = _QuietPythonOsc()


class Refused(Exception):
    """One message not applied: ``kind`` is the counter it goes to ("malformed", "unknown"), the text says why."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class OscSettings:
    """The validated ``[osc]`` table: listen on ``listen``:``port`` (UDP); ``allowed_senders`` are networks
    (a single address is a /32 or /128); empty = ``PRIVATE_NETWORKS``; at most ``max_messages_per_s`` messages a
    second from all senders together."""

    enabled: bool = OSC.keys["enabled"].default
    listen: str = OSC.keys["listen"].default
    port: int = OSC.keys["port"].default
    allowed_senders: tuple[str, ...] = ()
    max_messages_per_s: float = OSC.keys["max_messages_per_s"].default

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n) for n in (self.allowed_senders or PRIVATE_NETWORKS))


def parse_osc(table: dict | None, where: str) -> OscSettings:
    """The ``[osc]`` table (as tomllib gives it) -> OscSettings; the schema refuses unknown keys and bad values."""
    values = read_table(OSC, dict(table or {}), where)
    return OscSettings(enabled=values["enabled"], listen=values["listen"], port=values["port"],
                       allowed_senders=tuple(values["allowed_senders"]),
                       max_messages_per_s=values["max_messages_per_s"])


def _number(args: Sequence[Any], address: str) -> float:
    if len(args) != 1:
        raise Refused("malformed", f"{address} takes one number, got {len(args)} arguments")
    value = args[0]
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise Refused("malformed", f"{address} takes one finite number, got {value!r}")
    return float(value)


def _switch(args: Sequence[Any], address: str) -> bool:
    if len(args) == 1 and isinstance(args[0], str):
        try:
            return bool(coerce_control("hold", args[0]))
        except ValueError:
            raise Refused("malformed", f"{address} takes 0/1, true/false or \"on\"/\"off\", got {args[0]!r}") from None
    return _number(args, address) != 0.0


def interpret(address: str, args: Sequence[Any]) -> tuple[dict[str, float | bool], str | None]:
    """One OSC message -> (control changes, action or None). Pure; raises Refused for anything else."""
    if not address.startswith(PREFIX):
        raise Refused("unknown", f"{address!r} is not a Murmur address (they start with {PREFIX})")
    name = address[len(PREFIX):]
    unit = name.endswith(UNIT_SUFFIX)
    if unit:
        name = name[: -len(UNIT_SUFFIX)]
    if name in CONTROL_RANGES:
        value = _number(args, address)
        if unit:
            low, high = CONTROL_RANGES[name]
            value = low + (high - low) * min(max(value, 0.0), 1.0)
        return {name: coerce_control(name, value)}, None
    if unit:
        raise Refused("unknown", f"{address!r}: /unit goes with a continuous control ({', '.join(CONTROL_RANGES)})")
    if name in BOOL_CONTROLS:
        return {name: _switch(args, address)}, None
    if name in EVENTS:
        if args and not _switch(args, address):
            return {}, None  # a push button's release
        return {}, name
    raise Refused("unknown", f"{address!r}: no such control or action; known: "
                  f"{', '.join((*CONTROL_RANGES, *BOOL_CONTROLS, *EVENTS))}")


def parse_datagram(data: bytes) -> list[tuple[str, list[Any]]]:
    """A UDP datagram -> its messages (address, arguments), bundles flattened. Raises Refused("malformed")."""
    from pythonosc.osc_packet import OscPacket

    if len(data) % 4:  # OSC is 4-byte words; python-osc would pad a number cut short with zeros and apply it
        raise Refused("malformed", f"{len(data)} bytes: an OSC packet is a whole number of 4-byte words (cut short?)")
    try:
        messages = [timed.message for timed in OscPacket(data).messages]
        short = next((m.address for m in messages if not _numbers_whole(m.dgram)), None)
    except Exception as exc:  # python-osc raises ParseError, and a hostile datagram can reach IndexError,
        # struct.error, UnicodeDecodeError or RecursionError (nested bundles) inside it: all of them are "not OSC"
        raise Refused("malformed", f"not an OSC packet ({type(exc).__name__})") from None
    if short is not None:
        raise Refused("malformed", f"{short}: the message ends before its number (cut short?)")
    return [(m.address, list(m.params)) for m in messages]


def _numbers_whole(dgram: bytes) -> bool:
    """False if a message of int/float/true/false/nil arguments is shorter than they need: python-osc reads a float
    with its bytes missing as zero (for senders that leave them out); Murmur does not take a value nobody sent."""
    from pythonosc.parsing import osc_types

    _, index = osc_types.get_string(dgram, 0)
    if index >= len(dgram):
        return True  # no type tags: a message without arguments
    tags, index = osc_types.get_string(dgram, index)
    if set(tags[1:]) - set("ifTFN"):
        return True  # other types: python-osc refuses them short itself
    return len(dgram) >= index + 4 * (tags.count("i") + tags.count("f"))


@dataclass(slots=True)
class OscCounters:
    """What arrived since start. ``packets`` = refused + dropped + malformed + parsed (datagrams); ``messages``
    (in the parsed datagrams) = applied + merged (a value over the rate, applied later or overtaken) +
    actions_dropped (an action over the rate or too soon after the same one) + unknown + bad_messages (a Murmur
    address with a bad argument)."""

    packets: int = 0
    refused: int = 0
    dropped: int = 0
    malformed: int = 0
    parsed: int = 0
    messages: int = 0
    applied: int = 0
    merged: int = 0
    unknown: int = 0
    bad_messages: int = 0
    actions_dropped: int = 0


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``rate_per_s`` saved up (one second's burst). Pure: takes the time."""

    def __init__(self, rate_per_s: float, now: float) -> None:
        self.rate, self.capacity = rate_per_s, max(rate_per_s, 1.0)
        self.tokens, self.stamp = self.capacity, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until the next token (0 when one is there)."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


class OscKnobs(Knobs):
    """The listening socket and its thread. Build with :func:`start_osc`; ``close()`` stops both."""

    backend = "osc"

    def __init__(self, settings: OscSettings, store: ControlStore, on_error: ErrorCallback | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.settings, self.store, self._on_error, self._clock = settings, store, on_error, clock
        self.counters = OscCounters()
        self.last_sender: str | None = None
        self.last_message: str | None = None
        self.bound: tuple[str, int] | None = None
        self._networks = settings.networks
        self._senders: dict[str, bool] = {}
        now = clock()
        self._messages = TokenBucket(settings.max_messages_per_s, now)
        self._packets = TokenBucket(settings.max_messages_per_s * PACKET_BUDGET, now)
        self._pending: dict[str, float | bool] = {}
        self._last_action: dict[str, float] = {}
        self._problems: list[str] = []
        self._reported: set[str] = set()
        self._stop = threading.Event()
        self._handled = threading.Condition()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # ── start ──────────────────────────────────────────────────────────────────────────────────────────────────
    def open(self) -> None:
        """Bind the socket and start the thread; a failure is reported (status, log) and leaves OSC off."""
        logging.getLogger().addFilter(_QUIET)  # once: a filter already there is not added again
        s = self.settings
        family = socket.AF_INET6 if ":" in s.listen else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:  # EAFNOSUPPORT: the unit's RestrictAddressFamilies= has no AF_INET(6)
            self._report("socket", f"OSC is on but this service may not open network sockets ({exc}); the deploy "
                         "writes the unit's network drop-in from the config: run `sudo python3 "
                         "/opt/murmur/current/deploy/pi_release.py network`, then `sudo systemctl restart murmur`")
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)  # the kernel caps it (rmem_max)
            sock.bind((s.listen, s.port))
        except OSError as exc:
            sock.close()
            self._report("bind", f"OSC cannot listen on {s.listen}:{s.port} ({exc}); set [osc] listen to an address "
                         "of this Pi (or \"0.0.0.0\") and a free port")
            return
        self._sock = sock
        self.bound = sock.getsockname()[:2]
        self._thread = threading.Thread(target=self._run, name="murmur-osc", daemon=True)
        self._thread.start()
        senders = ", ".join(s.allowed_senders) if s.allowed_senders else "private networks"
        log.info("osc: listening on %s:%d (UDP) for %s…, senders: %s, at most %g messages/s", self.bound[0],
                 self.bound[1], PREFIX, senders, s.max_messages_per_s)

    # ── the thread ─────────────────────────────────────────────────────────────────────────────────────────────
    def _run(self) -> None:
        sock = self._sock
        if sock is None:
            return
        buffer = bytearray(MAX_DATAGRAM)
        view = memoryview(buffer)
        while not self._stop.is_set():
            # never 0: settimeout(0) would make the socket non-blocking (BlockingIOError, not a timeout)
            sock.settimeout(max(self._messages.wait_s(), 0.001) if self._pending else IDLE_WAKE_S)
            try:
                size, sender = sock.recvfrom_into(buffer)
            except TimeoutError:
                self._flush(self._clock())
                continue
            except OSError as exc:
                if self._stop.is_set():
                    break
                self._report("recv", f"OSC: receiving failed ({exc}); still listening")
                self._stop.wait(IDLE_WAKE_S)
                continue
            try:
                self.handle(view[:size], sender[0], self._clock())
            except Exception as exc:  # a bug here must not end the listening; it is logged once
                self._report(f"bug {type(exc).__name__}", f"OSC: a datagram failed: {type(exc).__name__}: {exc}")

    def handle(self, data: bytes | memoryview, sender: str, now: float) -> None:
        """One datagram from ``sender`` (an IP address) at ``now`` (monotonic seconds): count it and apply what it
        asks within the rate limit. The thread calls it; tests may call it directly."""
        c = self.counters
        c.packets += 1
        try:
            if not self._allowed(sender):
                c.refused += 1
                return
            if not self._packets.take(now):
                c.dropped += 1
                return
            try:
                messages = parse_datagram(bytes(data))
            except Refused:
                c.malformed += 1
                return
            c.parsed += 1
            self.last_sender = sender
            changes: dict[str, float | bool] = {}
            actions: list[str] = []
            for address, args in messages:
                c.messages += 1
                try:
                    change, action = interpret(address, args)
                except Refused as refused:
                    if refused.kind == "malformed":
                        c.bad_messages += 1
                    else:
                        c.unknown += 1
                    continue
                if action is not None and now - self._last_action.get(action, -math.inf) < ACTION_GAP_S[action]:
                    c.actions_dropped += 1  # the same action again too soon
                elif self._messages.take(now):
                    self._pending.update(change)
                    changes.update(self._pending)
                    self._pending.clear()
                    if action is not None:
                        actions.append(action)
                        self._last_action[action] = now
                    c.applied += 1
                    self.last_message = address
                elif action is not None:
                    c.actions_dropped += 1  # over the rate: an action is dropped, never delayed
                else:
                    self._pending.update(change)
                    c.merged += 1
            if changes:
                self.store.update(**changes)
            for action in actions:
                self.store.trigger(action)
        finally:
            with self._handled:
                self._handled.notify_all()

    def _flush(self, now: float) -> None:
        """Apply the merged values once the rate allows."""
        if self._pending and self._messages.take(now):
            changes, self._pending = self._pending, {}
            self.store.update(**changes)
            with self._handled:
                self._handled.notify_all()

    def _allowed(self, sender: str) -> bool:
        verdict = self._senders.get(sender)
        if verdict is None:
            try:
                ip = ipaddress.ip_address(sender.split("%")[0])
            except ValueError:
                return False
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped  # an IPv4 sender on a dual-stack "::" socket
            verdict = any(ip.version == net.version and ip in net for net in self._networks)
            if len(self._senders) >= SENDER_CACHE:
                self._senders.clear()
            self._senders[sender] = verdict
        return verdict

    # ── for tests and the status ───────────────────────────────────────────────────────────────────────────────
    def wait_packets(self, total: int, timeout: float = 3.0) -> bool:
        """Block until ``total`` datagrams have been counted since start (True) or ``timeout`` s passed."""
        with self._handled:
            return self._handled.wait_for(lambda: self.counters.packets >= total, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
        """Block until ``predicate()`` holds after a datagram or a flush, or ``timeout`` s passed."""
        with self._handled:
            return self._handled.wait_for(predicate, timeout)

    def _report(self, key: str, message: str) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        self._problems.append(message)
        log.warning("osc: %s", message)
        if self._on_error is not None:
            self._on_error(message)

    def values(self) -> dict:
        return {"backend": self.backend, "inputs": {}, "led": None, "problems": list(self._problems)}

    def reports(self) -> dict[str, dict]:
        """The status report's ``osc`` field: where it listens (None: not listening), who may send, the counters."""
        s = self.settings
        return {"osc": {
            "listening": None if self.bound is None else f"{self.bound[0]}:{self.bound[1]}",
            "allowed_senders": list(s.allowed_senders) or ["private networks"],
            "max_messages_per_s": s.max_messages_per_s,
            "last_sender": self.last_sender, "last_message": self.last_message,
            **{name: getattr(self.counters, name) for name in OscCounters.__slots__},  # type: ignore[attr-defined]
            "problems": list(self._problems),
        }}

    def __enter__(self) -> OscKnobs:
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def start_osc(settings: OscSettings, store: ControlStore, *, on_error: ErrorCallback | None = None) -> OscKnobs:
    """Listen for OSC as ``settings`` say and write into ``store``; the handle reports and closes. A socket that
    cannot open is reported (``values()['problems']``, the log) and the sound goes on without OSC."""
    knobs = OscKnobs(settings, store, on_error)
    knobs.open()
    return knobs
