"""A small authoritative DNS server on loopback, answering from a zone a test edits live.

End-to-end tests need real DNS (MX pointing at 127.0.0.x, null MX, NXDOMAIN senders, DNSBL
listings, SPF/DKIM/DMARC TXT) without touching the Internet, and unit tests of the resolver
need the awkward cases real servers produce: NXDOMAIN versus NODATA (told apart by an SOA in
the authority section), SERVFAIL, silence, truncated UDP answers. `DnsServer` runs in its own
thread and event loop, so synchronous tests, asyncio tests and a `tayori serve` subprocess
(`[dns] nameservers = ["127.0.0.1:PORT"]`) can all use it.

It answers every name it is asked as if it were authoritative for it (CNAME chains inside the
zone are followed, as a recursive resolver would), and listens on 127.0.0.1 or ::1 only.

    with DnsServer() as server:
        server.zone.add("example.test", "MX", "10 mx.example.test")
        server.zone.add("mx.example.test", "A", "127.0.0.2")
        settings = server.settings()  # DnsSettings for DnsPythonResolver

Standalone: `python -m tayori.testing.dns_server --zone FILE.json [--port N]` prints the port
and serves until interrupted; see `Zone.from_json` for the file format.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.TXT import TXT

from tayori.config.settings import DnsSettings, HostPort

FailMode = Literal["servfail", "refused", "drop"]
"""`servfail`/`refused`: answer with that rcode. `drop`: read the query and never answer,
so the client times out."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})
MAX_CHAIN = 8
"""CNAME hops followed before giving up (a loop in a test zone ends here)."""
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
TCP_IDLE_TIMEOUT = 10.0
"""Seconds a TCP connection may sit without a query before the server closes it."""
QUERY_LOG_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Query:
    """A query the server received, for tests that count lookups (caching, fallbacks)."""

    name: str
    """Lower case, without the final dot."""
    rdtype: str
    transport: Literal["udp", "tcp"]


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text.strip(), origin=dns.name.root)


def _rdtype(text: str) -> dns.rdatatype.RdataType:
    return dns.rdatatype.RdataType.make(text.upper())


def _txt_chunks(value: str | bytes | Sequence[str | bytes]) -> tuple[bytes, ...]:
    """A logical TXT string split into 255-byte character-strings, as publishers must for
    long SPF or DKIM records; a sequence is taken as the character-strings themselves."""
    if isinstance(value, str | bytes):
        data = value.encode() if isinstance(value, str) else value
        return tuple(data[i : i + 255] for i in range(0, len(data), 255)) or (b"",)
    chunks = tuple(part.encode() if isinstance(part, str) else part for part in value)
    if not chunks or any(len(chunk) > 255 for chunk in chunks):
        raise ValueError("TXT character-strings must be 1 to 255 bytes each, at least one")
    return chunks


RecordValue = str | bytes | Sequence[str | bytes]


@dataclass(frozen=True, slots=True)
class _RecordSet:
    """One name's records of one type. Immutable, so the server thread can render one while a
    test replaces it."""

    ttl: int
    rdatas: tuple[dns.rdata.Rdata, ...]

    def rrset(self, owner: dns.name.Name) -> dns.rrset.RRset:
        return dns.rrset.from_rdata_list(owner, self.ttl, self.rdatas)


class Zone:
    """Records by name and type, changeable from any thread while the server runs.

    Values are written as in a zone file (`"10 mx.example.test"`, `"0 ."` for a null MX),
    names absolute whether or not they end in a dot. TXT values are the logical string
    (split into 255-byte pieces here) or a list of the exact character-strings. An RRset has
    one TTL: adding to an existing RRset sets it to the new record's `ttl`.

    Negative answers carry the SOA of the closest enclosing name that has one, or else a
    built-in SOA at the root whose minimum (the negative TTL) is `negative_ttl`.
    """

    def __init__(self, *, negative_ttl: int = 60) -> None:
        self.negative_ttl = negative_ttl
        self._nodes: dict[dns.name.Name, dict[dns.rdatatype.RdataType, _RecordSet]] = {}
        self._failures: dict[tuple[dns.name.Name, dns.rdatatype.RdataType | None], FailMode] = {}
        self._lock = threading.Lock()

    def add(self, name: str, rdtype: str, value: RecordValue, ttl: int = 300) -> None:
        """Add one record. Raises ValueError for a value that does not parse, or for a CNAME
        beside other data (RFC 1034 §3.6.2 forbids it, and answers would be ambiguous)."""
        owner = _name(name)
        kind = _rdtype(rdtype)
        rdata = self._rdata(kind, value)
        with self._lock:
            node = self._nodes.setdefault(owner, {})
            others = set(node) - {kind}
            if others and (kind == dns.rdatatype.CNAME or dns.rdatatype.CNAME in others):
                raise ValueError(f"{name}: a CNAME cannot share its name with other records")
            old = node.get(kind, _RecordSet(ttl, ()))
            if rdata not in old.rdatas:
                node[kind] = _RecordSet(ttl, (*old.rdatas, rdata))
            else:
                node[kind] = _RecordSet(ttl, old.rdatas)

    def remove(
        self, name: str, rdtype: str | None = None, value: RecordValue | None = None
    ) -> None:
        """Remove one record (`value` given), one RRset (`rdtype` given) or the whole name.
        Removing what is not there is not an error."""
        owner = _name(name)
        kind = _rdtype(rdtype) if rdtype else None
        rdata = self._rdata(kind, value) if kind is not None and value is not None else None
        with self._lock:
            node = self._nodes.get(owner)
            if node is None:
                return
            if kind is None:
                del self._nodes[owner]
                return
            old = node.pop(kind, None)
            if old is not None and rdata is not None:
                rest = tuple(existing for existing in old.rdatas if existing != rdata)
                if rest:
                    node[kind] = _RecordSet(old.ttl, rest)
            if not node:
                del self._nodes[owner]

    def fail(self, name: str, mode: FailMode = "servfail", rdtype: str | None = None) -> None:
        """Make queries for `name` (of `rdtype`, or of any type) fail as `mode` says, until
        `heal`. Only the name asked is checked, not the targets of its CNAMEs."""
        key = (_name(name), _rdtype(rdtype) if rdtype else None)
        with self._lock:
            self._failures[key] = mode

    def heal(self, name: str, rdtype: str | None = None) -> None:
        """Undo `fail` for the same `name` and `rdtype`."""
        key = (_name(name), _rdtype(rdtype) if rdtype else None)
        with self._lock:
            self._failures.pop(key, None)

    def clear(self) -> None:
        """Remove every record and failure."""
        with self._lock:
            self._nodes.clear()
            self._failures.clear()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Zone:
        """A zone from parsed JSON of this shape (every key but `records[].name/type/value`
        optional):

            {"negative_ttl": 60,
             "records": [{"name": "example.test", "type": "MX", "value": "10 mx.example.test",
                          "ttl": 300},
                         {"name": "example.test", "type": "TXT", "value": ["v=spf1 ", "-all"]}],
             "failures": [{"name": "broken.test", "mode": "servfail", "type": "A"}]}
        """
        zone = cls(negative_ttl=int(data.get("negative_ttl", 60)))
        for record in data.get("records", []):
            zone.add(record["name"], record["type"], record["value"], int(record.get("ttl", 300)))
        for failure in data.get("failures", []):
            zone.fail(failure["name"], failure.get("mode", "servfail"), failure.get("type"))
        return zone

    @classmethod
    def load(cls, path: Path) -> Zone:
        """`from_json` of a file."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    @staticmethod
    def _rdata(kind: dns.rdatatype.RdataType, value: RecordValue) -> dns.rdata.Rdata:
        if kind == dns.rdatatype.TXT:
            return TXT(dns.rdataclass.IN, kind, _txt_chunks(value))
        if not isinstance(value, str):
            raise ValueError(f"a {kind.name} value is written as text, not {value!r}")
        try:
            return dns.rdata.from_text(
                dns.rdataclass.IN, kind, value, origin=dns.name.root, relativize=False
            )
        except dns.exception.DNSException as error:
            raise ValueError(f"{kind.name} {value!r}: {error}") from None

    # Answering (called from the server thread).

    def answer(
        self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType
    ) -> tuple[int, list[dns.rrset.RRset], list[dns.rrset.RRset]] | FailMode:
        """(rcode, answer section, authority section) for one question, or how to fail."""
        with self._lock:
            failure = self._failures.get((qname, qtype)) or self._failures.get((qname, None))
            if failure is not None:
                return failure
            answer: list[dns.rrset.RRset] = []
            name = qname
            seen = {name}
            for _ in range(MAX_CHAIN):
                node = self._nodes.get(name, {})
                if qtype == dns.rdatatype.ANY and node:
                    answer.extend(records.rrset(name) for records in node.values())
                    return dns.rcode.NOERROR, answer, []
                if qtype in node:
                    answer.append(node[qtype].rrset(name))
                    return dns.rcode.NOERROR, answer, []
                cname = node.get(dns.rdatatype.CNAME)
                if cname is None:
                    break
                answer.append(cname.rrset(name))
                name = cast(CNAME, cname.rdatas[0]).target
                if name in seen:
                    return dns.rcode.NOERROR, answer, []
                seen.add(name)
            # RFC 6604: the rcode describes the last name of the chain. RFC 8020: a name
            # with records only below it (an empty non-terminal) exists.
            exists = any(owner.is_subdomain(name) for owner in self._nodes)
            rcode = dns.rcode.NOERROR if exists else dns.rcode.NXDOMAIN
            return rcode, answer, [self._soa(name)]

    def _soa(self, name: dns.name.Name) -> dns.rrset.RRset:
        owner = name
        while True:
            soa = self._nodes.get(owner, {}).get(dns.rdatatype.SOA)
            if soa is not None:
                return soa.rrset(owner)
            try:
                owner = owner.parent()
            except dns.name.NoParent:
                break
        default = dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.SOA,
            f"ns.tayori.test. hostmaster.tayori.test. 1 3600 600 86400 {self.negative_ttl}",
        )
        return dns.rrset.from_rdata_list(dns.name.root, self.negative_ttl, [default])


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        wire = self._server.respond(data, "udp")
        if wire is not None and self.transport is not None:
            self.transport.sendto(wire, addr)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _TcpProtocol(asyncio.Protocol):
    """One TCP client: length-prefixed queries (RFC 1035 §4.2.2), several per connection,
    closed after `TCP_IDLE_TIMEOUT` seconds without one. Registered with the server as soon
    as it is accepted, so `stop` can close it."""

    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server._tcp_connections.add(self)
        if self._server._closing:
            self._transport.close()
        else:
            self._touch()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._touch()
        while len(self._buffer) >= 2:
            size = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + size:
                break
            query = bytes(self._buffer[2 : 2 + size])
            del self._buffer[: 2 + size]
            wire = self._server.respond(query, "tcp")
            if wire is not None and self._transport is not None:
                self._transport.write(len(wire).to_bytes(2, "big") + wire)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._server._tcp_connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT, self.close)


class DnsServer:
    """The zone served over UDP and TCP on one loopback port, from a background thread.

    `port=0` picks a free port (the same number for UDP and TCP). UDP answers larger than
    the client's EDNS payload (512 bytes without EDNS), or than `max_udp_payload`, are
    truncated with TC set, so clients retry over TCP as they must.
    """

    def __init__(
        self,
        zone: Zone | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_udp_payload: int = 1232,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the test DNS server listens on loopback only, not {host!r}")
        self.zone = zone if zone is not None else Zone()
        self.host = host
        self.port = port
        self.max_udp_payload = max_udp_payload
        self.queries: collections.deque[Query] = collections.deque(maxlen=QUERY_LOG_SIZE)
        """Queries received, oldest first; tests may `clear()` it."""
        self.faults: list[Exception] = []
        """Errors inside the server while answering; `stop` raises the first."""
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tcp_connections: set[_TcpProtocol] = set()
        self._adopting: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def nameserver(self) -> HostPort:
        """Where the server listens, as `[dns] nameservers` takes it."""
        return HostPort(self.host, self.port)

    def settings(self, timeout: float = 2.0) -> DnsSettings:
        """DnsSettings that send every lookup here."""
        return DnsSettings(nameservers=[self.nameserver], timeout=timeout)

    def start(self) -> DnsServer:
        """Bind and start answering; returns once both sockets are listening. A stopped
        server may be started again: it takes the same port, as a restarted server would."""
        if self._thread is not None:
            raise RuntimeError("DnsServer already started")
        self._ready.clear()
        self._error = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="tayori-test-dns", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the test DNS server did not start in time")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Close every socket and end the thread. Safe to call twice."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("the test DNS server did not stop in time")
        self._thread = None
        if self.faults:
            raise RuntimeError("the test DNS server failed while answering") from self.faults[0]

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def respond(self, data: bytes, transport: Literal["udp", "tcp"]) -> bytes | None:
        """The wire answer to one wire query, or None for no answer at all.

        A fault in the server itself answers SERVFAIL and is raised again by `stop`, so a
        test never passes because the kit broke."""
        try:
            query = dns.message.from_wire(data)
        except Exception:  # garbage from the network is dropped, as servers do
            return None
        try:
            return self._respond(query, transport)
        except Exception as error:
            self.faults.append(error)
        try:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        except Exception:  # a query so odd that no answer can be built: stay silent
            return None

    def _respond(
        self, query: dns.message.Message, transport: Literal["udp", "tcp"]
    ) -> bytes | None:
        if query.flags & dns.flags.QR:
            return None
        response = dns.message.make_response(
            query, recursion_available=True, our_payload=self.max_udp_payload
        )
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        else:
            question = query.question[0]
            self.queries.append(
                Query(
                    question.name.to_text(omit_final_dot=True).lower(),
                    dns.rdatatype.to_text(question.rdtype),
                    transport,
                )
            )
            if question.rdclass != dns.rdataclass.IN:
                response.set_rcode(dns.rcode.REFUSED)
            else:
                result = self.zone.answer(question.name, question.rdtype)
                if result == "drop":
                    return None
                if result == "servfail":
                    response.set_rcode(dns.rcode.SERVFAIL)
                elif result == "refused":
                    response.set_rcode(dns.rcode.REFUSED)
                else:
                    rcode, answer, authority = result
                    response.set_rcode(dns.rcode.Rcode.make(rcode))
                    response.answer = answer
                    response.authority = authority
        if transport == "tcp":
            return response.to_wire(max_size=65535, prefer_truncation=True)
        limit = 512
        if query.edns >= 0:
            limit = max(512, min(query.payload, self.max_udp_payload))
        return response.to_wire(max_size=limit, prefer_truncation=True)

    # The server thread.

    def _run(self) -> None:
        # asyncio.Runner cancels whatever is left (an accept in progress at stop) and closes
        # the loop, so nothing outlives the thread to warn later.
        try:
            with asyncio.Runner() as runner:
                runner.run(self._serve())
        except BaseException as error:  # handed to start(), in the test's thread
            self._error = error
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        loop = self._loop
        (udp_transport, udp_protocol), listener = await self._bind()
        loop.add_reader(listener.fileno(), self._accept, listener)
        try:
            self._ready.set()
            await self._stop.wait()
        finally:
            self._closing = True
            loop.remove_reader(listener.fileno())
            listener.close()
            await asyncio.gather(*self._adopting)
            udp_transport.close()
            for connection in list(self._tcp_connections):
                connection.close()
            await asyncio.gather(
                udp_protocol.closed, *(c.closed for c in list(self._tcp_connections))
            )

    async def _bind(self) -> tuple[tuple[asyncio.DatagramTransport, _UdpProtocol], socket.socket]:
        """UDP first on the requested (or a free) port, then TCP on the same number; with a
        free port, another process may hold its TCP side, so try again with a new one."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        attempts = 1 if self.port else 20
        for attempt in range(attempts):
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
            )
            port = transport.get_extra_info("sockname")[1]
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((self.host, port))
                listener.listen(64)
                listener.setblocking(False)
            except OSError:
                listener.close()
                transport.close()
                await protocol.closed
                if attempt == attempts - 1:
                    raise
                continue
            self.port = port
            return (transport, protocol), listener
        raise AssertionError("unreachable")

    def _accept(self, listener: socket.socket) -> None:
        """Accept a TCP client. Done by hand, because both `loop.create_server` (Python 3.11)
        and a cancelled `sock_accept` can lose a socket accepted just as the server stops;
        here every accepted socket is owned by an `_adopt` task that `_serve` waits for."""
        try:
            connection, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        connection.setblocking(False)
        task = asyncio.get_running_loop().create_task(self._adopt(connection))
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def _adopt(self, connection: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: _TcpProtocol(self), connection
            )
        except Exception:  # the client went away at once; nothing to serve
            connection.close()


def main(argv: Iterable[str] | None = None) -> int:
    """`python -m tayori.testing.dns_server`: serve a JSON zone until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m tayori.testing.dns_server",
        description="Serve a test DNS zone on loopback (UDP and TCP). Prints the port.",
    )
    parser.add_argument("--zone", type=Path, help="JSON zone file (see Zone.from_json)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 (default) picks a free one")
    parser.add_argument("--host", default="127.0.0.1", choices=sorted(LOOPBACK_HOSTS))
    args = parser.parse_args(None if argv is None else list(argv))
    zone = Zone.load(args.zone) if args.zone else Zone()
    done = threading.Event()

    def finish(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, finish)
    signal.signal(signal.SIGTERM, finish)
    with DnsServer(zone, host=args.host, port=args.port) as server:
        print(server.port, flush=True)
        print(f"serving DNS on {server.nameserver} (udp, tcp)", file=sys.stderr, flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
