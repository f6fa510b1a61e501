"""A remote mail server for tests: an SMTP sink on loopback that records what it is sent and
answers what the test tells it to.

    async with SmtpSink() as sink:             # 127.0.0.1, a free port
        sink.rcpt_replies["gone@remote.test"] = "550 5.1.1 <gone@remote.test>: unknown"
        sink.data_reply = "554 5.7.1 blocked due to poor reputation"
        ...deliver to 127.0.0.1:{sink.port}...
        assert sink.transactions[0].rcpt_tos == ["ok@remote.test"]

It runs in the test's own event loop (aiosmtpd's protocol on `loop.create_server`), so no
thread and no sleep is involved: `await sink.wait_for(lambda: len(sink.transactions) == 3)`
waits for the condition. What it can be told:

- `mail_reply`, `rcpt_replies` (per address, case-insensitive), `rcpt_default`,
  `data_reply`: the exact reply line to give (`450 4.2.1 try later`); default `250`s.
- `drop_at`: close the connection without replying at `"connect"` (before the greeting),
  `"ehlo"`, `"mail"`, `"rcpt"` or `"data"` (after the message was read): the ways remote
  servers fail.
- `greeting`: a different greeting, e.g. `421 4.3.2 Service shutting down`.
- `hold`: an event the sink waits for before answering the end of DATA, to keep deliveries
  in flight (concurrency tests).
- Constructor: `starttls=True` offers STARTTLS with a throw-away self-signed certificate;
  `eight_bit_mime=False` leaves 8BITMIME out of the EHLO reply, `pipelining=False`
  PIPELINING; `host="::1"` for IPv6.

It records every read from a client as it arrived (`reads`: connection number and bytes,
after TLS decryption): commands that share one read were sent before the sink answered the
first of them, which is how tests see that a client pipelines.

It counts `connections` (accepted), `active` (open now) and `max_active` (most open at once).
Only loopback addresses are accepted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["DropPoint", "SinkTransaction", "SmtpSink", "self_signed_context"]

DropPoint = Literal["connect", "ehlo", "mail", "rcpt", "data"]


@dataclass(frozen=True, slots=True)
class SinkTransaction:
    """One message the sink accepted (its DATA got a 2xx)."""

    connection: int
    """1 for the first connection the sink accepted, 2 for the next..."""
    mail_from: str
    mail_options: tuple[str, ...]
    rcpt_tos: tuple[str, ...]
    """Only the recipients whose RCPT got a 2xx."""
    data: bytes
    tls: bool
    helo: str


def self_signed_context(hostname: str = "sink.test") -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate (the files live only as long as
    it takes to load them)."""
    from tayori.servers.tls import write_self_signed

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        write_self_signed(hostname, cert, key)
        context.load_cert_chain(cert, key)
    return context


@dataclass
class _Counters:
    connections: int = 0
    active: int = 0
    max_active: int = 0


class _SinkSmtp(SMTP):
    """aiosmtpd's protocol, numbered per connection, counted while open, with the greeting
    the test asked for."""

    def __init__(self, sink: SmtpSink, number: int, **kwargs: Any) -> None:
        super().__init__(sink._handler, **kwargs)
        self.sink_connection = number
        self._sink = sink
        self._open = True
        self._greeted = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def push(self, status: Any) -> None:
        greeting = self._sink.greeting
        if not self._greeted:
            self._greeted = True
            if greeting is not None:
                await super().push(greeting)
                if not greeting.startswith("2") and self.transport is not None:
                    self.transport.close()
                return
        await super().push(status)

    def connection_lost(self, error: Exception | None) -> None:
        if self._open:
            self._open = False
            self._sink._closed_one(self)
        super().connection_lost(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._sink.reads.append((self.sink_connection, data))
        super().data_received(data)


class _Dropper(asyncio.Protocol):
    """Accepts and closes at once: a server that dies before its greeting."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink._closed_one(None)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    def _drop(self, server: SMTP, point: DropPoint) -> bool:
        if self._sink.drop_at != point:
            return False
        if server.transport is not None:
            server.transport.close()
        return True

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> list[str]:
        session.host_name = hostname
        if self._drop(server, "ehlo"):
            return []
        *head, last = responses
        if not self._sink.eight_bit_mime:
            head = [line for line in head if line.upper() != "250-8BITMIME"]
        pipelining = ["250-PIPELINING"] if self._sink.pipelining else []
        return [*head, *pipelining, "250-ENHANCEDSTATUSCODES", last]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._drop(server, "mail"):
            return ""
        reply = self._sink.mail_reply
        if reply.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        return reply

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self._drop(server, "rcpt"):
            return ""
        reply = self._sink.rcpt_reply(address)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sink = self._sink
        if sink.hold is not None:
            sink._waiting_in_data += 1
            sink._changed()
            try:
                await sink.hold.wait()
            finally:
                sink._waiting_in_data -= 1
        if self._drop(server, "data"):
            return ""
        reply = sink.data_reply
        if reply.startswith("2"):
            content = envelope.original_content or b""
            sink.transactions.append(
                SinkTransaction(
                    connection=getattr(server, "sink_connection", 0),
                    mail_from=envelope.mail_from or "",
                    mail_options=tuple(envelope.mail_options),
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=content if isinstance(content, bytes) else content.encode(),
                    tls=session.ssl is not None,
                    helo=session.host_name or "",
                )
            )
            sink._changed()
        return reply


class SmtpSink:
    """See the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hostname: str = "sink.test",
        starttls: bool = False,
        eight_bit_mime: bool = True,
        pipelining: bool = True,
        smtputf8: bool = False,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the SMTP sink listens on loopback only, not {host!r}")
        self.host = host
        self.port = port
        self.hostname = hostname
        self.eight_bit_mime = eight_bit_mime
        self.pipelining = pipelining
        self.smtputf8 = smtputf8
        self.tls_context = tls_context or (self_signed_context(hostname) if starttls else None)
        self.greeting: str | None = None
        self.mail_reply = "250 2.1.0 Ok"
        self.rcpt_default = "250 2.1.5 Ok"
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply = "250 2.0.0 Ok: queued"
        self.drop_at: DropPoint | None = None
        self.hold: asyncio.Event | None = None
        self.transactions: list[SinkTransaction] = []
        self.reads: list[tuple[int, bytes]] = []
        self._counters = _Counters()
        self._waiting_in_data = 0
        self._handler = _Handler(self)
        self._server: asyncio.Server | None = None
        self._live: set[_SinkSmtp] = set()
        self._waiters: set[asyncio.Event] = set()

    # --- what the test reads ---------------------------------------------------------

    @property
    def connections(self) -> int:
        return self._counters.connections

    @property
    def active(self) -> int:
        return self._counters.active

    @property
    def max_active(self) -> int:
        return self._counters.max_active

    @property
    def waiting_in_data(self) -> int:
        """Transactions held at the end of DATA by `hold`."""
        return self._waiting_in_data

    @property
    def recipients(self) -> list[str]:
        """Every accepted recipient of every accepted message, in order."""
        return [rcpt for t in self.transactions for rcpt in t.rcpt_tos]

    def rcpt_reply(self, address: str) -> str:
        return self.rcpt_replies.get(address.lower(), self.rcpt_default)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds (checked whenever the sink's state changes)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                event = asyncio.Event()
                self._waiters.add(event)
                try:
                    await event.wait()
                finally:
                    self._waiters.discard(event)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self.rcpt_replies = {k.lower(): v for k, v in self.rcpt_replies.items()}
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is None:
            return
        self._server.close()
        if self.hold is not None:
            self.hold.set()
        live = list(self._live)
        for protocol in live:
            if protocol.transport is not None:
                protocol.transport.close()
        await asyncio.gather(*(p.closed for p in live))
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> SmtpSink:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- internals -------------------------------------------------------------------

    def _protocol(self) -> asyncio.BaseProtocol:
        counters = self._counters
        counters.connections += 1
        counters.active += 1
        counters.max_active = max(counters.max_active, counters.active)
        self._changed()
        if self.drop_at == "connect":
            return _Dropper(self)
        protocol = _SinkSmtp(
            self,
            counters.connections,
            hostname=self.hostname,
            ident="ESMTP Tayori test sink",
            decode_data=False,
            enable_SMTPUTF8=self.smtputf8,
            tls_context=self.tls_context,
            timeout=30,
        )
        self._live.add(protocol)
        return protocol

    def _closed_one(self, protocol: _SinkSmtp | None) -> None:
        self._counters.active -= 1
        if protocol is not None:
            self._live.discard(protocol)
        self._changed()

    def _changed(self) -> None:
        for event in self._waiters:
            event.set()
