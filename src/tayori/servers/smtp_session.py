"""What every SMTP listener of ours shares, around aiosmtpd's protocol class.

aiosmtpd does the wire protocol. Around it: enhanced status codes on its own replies,
replies to pipelined commands sent together, DATA read in pieces rather than lines (ending
only on <CRLF>.<CRLF>, as aiosmtpd does, so the smuggling sequences <LF>.<LF> and <CR>.<CR>
stay data), connection limits, long lines, a DATA timeout of its own, and a graceful
shutdown that finishes messages in flight and tempfails idle sessions. The roles (MX,
submission) differ only in their handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

from tayori.config.settings import LimitsSettings
from tayori.delivery.local import Recipient
from tayori.protocols.dotstuff import TERMINATOR, DataCollector
from tayori.servers.limits import ConnectionLimiter
from tayori.servers.smtp_replies import is_size_exceeded, with_enhanced_code

log = logging.getLogger(__name__)
_Method = TypeVar("_Method", bound=Callable[..., Any])

SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
TOO_MANY = "421 4.7.0 Too many connections, try again later"
LOCAL_ERROR = "451 4.3.0 Temporary local problem, try again later"


class SessionEnvelope(Envelope):
    """aiosmtpd's envelope plus what our decisions found out on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.sender = ""
        self.declared_size = 0
        self.recipients: list[Recipient] = []
        """Our members the message goes to."""
        self.remote: list[str] = []
        """Addresses elsewhere (submission only): queued for delivery."""


class SizeRecorder(Protocol):
    """The handler hook called when aiosmtpd refuses a message for its size."""

    async def record_size_exceeded(
        self, session: Session, envelope: SessionEnvelope, size: int
    ) -> None: ...


@dataclass
class _Connections:
    """The live sessions, so shutdown can tell idle ones apart from ones mid-message."""

    live: set[TayoriSmtp] = field(default_factory=set)
    shutting_down: bool = False
    on_closed: Callable[[], None] | None = None
    """Told when a session ends (an MX worker tells the main process, which balances)."""


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(
    rf"<(({_ATEXT}(?:\.{_ATEXT})*)@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?: ([^\s(].*))?\Z", re.ASCII
)
"""`<local@domain>` then nothing or ` PARAMS` (not a comment, which the full parser would
skip): (address, local part, the rest)."""


def _write_line(transport: asyncio.BaseTransport, line: str) -> None:
    """uvloop's transports write but do not subclass asyncio.WriteTransport."""
    cast(asyncio.WriteTransport, transport).write(f"{line}\r\n".encode())


def _same_help(overridden: Callable[..., Any]) -> Callable[[_Method], _Method]:
    """aiosmtpd's HELP text for a command comes from its method's @syntax: an override
    keeps the text of the method it overrides."""
    return cast(
        Callable[[_Method], _Method],
        syntax(
            str(getattr(overridden, "__smtp_syntax__", "")),
            getattr(overridden, "__smtp_syntax_extended__", None),
            getattr(overridden, "__smtp_syntax_when__", None),
        ),
    )


def _rebound(method: Any, template: object, twin: object) -> Any:
    """`method` bound to `twin` when it was bound to `template`; others (the handler's) as
    they are."""
    if getattr(method, "__self__", None) is template:
        return method.__func__.__get__(twin)
    return method


def _peer_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


class TayoriSmtp(SMTP):
    """One connection. Overrides only the seams aiosmtpd offers for them."""

    def __init__(
        self,
        handler: Any,
        *,
        connections: _Connections,
        limiter: ConnectionLimiter,
        data_timeout: float,
        **kwargs: Any,
    ) -> None:
        # A line may be as long as the largest message: DATA is buffered up to that size
        # anyway, and real mail (and the corpus) has lines of megabytes.
        self.line_length_limit = kwargs["data_size_limit"] + 2
        super().__init__(handler, **kwargs)
        self._connections = connections
        self._limiter = limiter
        self._data_timeout = data_timeout
        self._counted_ip: str | None = None
        self._refused = False
        self._verbatim = False
        self._holding = False
        self._gathering = False
        self._held: list[bytes] = []
        self.busy = False

    def twin(self) -> TayoriSmtp:
        """A new connection's protocol, made like this one (a template that never serves).

        aiosmtpd's `__init__` looks up the `smtp_*`, `auth_*` and `handle_*` methods of the
        protocol and the handler by reflection (`inspect.getmembers`, `dir`): ~200 us of
        Python for every connection, the largest part of accepting one (an MX mostly gets
        one message per connection). Those tables do not change between connections, so
        they are copied from the template, their methods bound to the new protocol; the
        stream protocol's own state is made new, and so is every container a session
        changes. `tests/protocol/test_smtp_twin.py` checks a twin against a protocol made
        by `__init__`, so a new aiosmtpd that adds state is noticed."""
        twin = TayoriSmtp.__new__(TayoriSmtp)
        twin.__dict__.update(self.__dict__)
        asyncio.StreamReaderProtocol.__init__(
            twin,
            asyncio.StreamReader(loop=self.loop, limit=self.line_length_limit),
            client_connected_cb=twin._cb_client_connected,
            loop=self.loop,
        )
        twin._smtp_methods = {
            name: _rebound(method, self, twin) for name, method in self._smtp_methods.items()
        }
        twin._auth_methods = {
            name: type(entry)(_rebound(entry.method, self, twin), entry.is_builtin)
            for name, entry in self._auth_methods.items()
        }
        twin._handle_hooks = dict(self._handle_hooks)
        twin._held = []
        return twin

    def _create_envelope(self) -> SessionEnvelope:
        return SessionEnvelope()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd parses every MAIL and RCPT address with the email package's full
        RFC 5322 parser, a large share of a session's CPU. The everyday form `<a.b@c.d>`
        (dot-atom local part, plain domain) is read here with one pattern, to exactly the
        same result; anything else goes to aiosmtpd's parser."""
        simple = _SIMPLE_PATH.match(arg)
        if simple is None or (
            self.local_part_limit and len(simple.group(2)) > self.local_part_limit
        ):
            return super()._getaddr(arg)
        return simple.group(1), simple.group(3) or ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._counted_ip is None and not self._refused:  # first call (not after STARTTLS)
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if peer else ""
            if self._connections.shutting_down or not self._limiter.acquire(ip):
                self._refused = True
                message = SHUTTING_DOWN if self._connections.shutting_down else TOO_MANY
                _write_line(transport, message)
                transport.close()
                return
            self._counted_ip = ip
            self._connections.live.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        try:
            if self._refused:
                return
            if self._counted_ip is not None:
                self._limiter.release(self._counted_ip)
                self._counted_ip = None
                self._connections.live.discard(self)
            super().connection_lost(error)
        finally:
            if self._connections.on_closed is not None:
                self._connections.on_closed()

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, bytes):  # AUTH challenges (334): never an enhanced code
            await self._send(status)
            return
        if not self._verbatim:
            envelope = self.envelope
            if is_size_exceeded(status) and isinstance(envelope, SessionEnvelope):
                await self.event_handler.record_size_exceeded(
                    self.session, envelope, envelope.declared_size
                )
            status = with_enhanced_code(status)
        await self._send(status.encode("utf-8"))

    async def _send(self, reply: bytes) -> None:
        """One reply line out, or held back: a pipelining client (RFC 2920) sends MAIL,
        RCPT... and DATA in one go, and their replies may then leave together, one write
        (a system call and a wake-up of the client) instead of one per command. Only MAIL
        and RCPT replies are held, and only while the client's next command has already
        arrived; any other reply (354 after DATA, an error, QUIT) takes them along. The
        lines of the EHLO reply are gathered the same way (`smtp_EHLO`)."""
        self._held.append(reply + b"\r\n")
        if self._gathering or (self._holding and b"\n" in getattr(self._reader, "_buffer", b"")):
            return
        await self._flush()

    async def _flush(self) -> None:
        if not self._held:
            return
        data = b"".join(self._held)
        self._held.clear()
        self._writer.write(data)
        await self._writer.drain()

    @contextlib.contextmanager
    def _holding_replies(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    @_same_help(SMTP.smtp_MAIL)
    async def smtp_MAIL(self, arg: str) -> None:
        with self._holding_replies():
            await super().smtp_MAIL(arg)

    @_same_help(SMTP.smtp_RCPT)
    async def smtp_RCPT(self, arg: str) -> None:
        with self._holding_replies():
            await super().smtp_RCPT(arg)

    async def _data(self, arg: str) -> None:
        """aiosmtpd's DATA, with the message read in pieces up to each ".\\r\\n" instead of
        line by line (see DataCollector): the same replies, the same end of data."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        collector = DataCollector(self.data_size_limit)
        while True:
            try:
                piece = await self._reader.readuntil(TERMINATOR)
            except asyncio.LimitOverrunError as error:
                collector.drop(await self._reader.read(error.consumed))
                continue
            except asyncio.IncompleteReadError:
                return  # the client went away mid-message
            except asyncio.CancelledError:
                self._writer.close()  # connection lost during DATA
                raise
            if collector.feed(piece):
                break
        if collector.overflowed:
            await self.push("552 Error: Too much mail data")
            self.envelope = self._create_envelope()  # the post-DATA state
            return
        content = collector.content()
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self.envelope = self._create_envelope()  # the post-DATA state
        await self.push("250 OK" if status is MISSING else status)

    async def smtp_EHLO(self, hostname: str) -> None:
        # aiosmtpd pushes the EHLO reply a line at a time: gathered, it leaves in one write
        # (a system call and a wake-up of the client) instead of ten, on every connection.
        self._verbatim = True
        self._gathering = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._verbatim = False
            self._gathering = False
            await self._flush()

    @_same_help(SMTP.smtp_DATA)
    async def smtp_DATA(self, arg: str) -> None:
        self.busy = True
        self._reset_timeout(self._data_timeout)
        try:
            await self._data(arg)
        finally:
            self.busy = False
            self._reset_timeout()
        if self._connections.shutting_down and self.transport is not None:
            await super().push(SHUTTING_DOWN)
            self.transport.close()


class SmtpListener:
    """One listening role (MX or submission); `close` is the graceful part of `tayori serve`
    stopping."""

    def __init__(
        self,
        handler: Any,
        *,
        hostname: str,
        limits: LimitsSettings,
        ssl_context: ssl.SSLContext | None,
        limiter: ConnectionLimiter,
        login: bool = False,
        implicit_tls: bool = False,
    ) -> None:
        """`login`: the submission role. Login is then required before MAIL, and the
        handler's `auth_PLAIN`/`auth_LOGIN` decide (they also enforce TLS, because aiosmtpd
        cannot tell an implicit-TLS connection from a plain one). `implicit_tls`: the
        whole connection is TLS (port 465); STARTTLS is then not offered."""
        self._handler = handler
        self._hostname = hostname
        self._limits = limits
        self._ssl_context = ssl_context
        self._limiter = limiter
        self._login = login
        self._implicit_tls = implicit_tls
        self._connections = _Connections()
        self._servers: list[asyncio.Server] = []
        self._template: TayoriSmtp | None = None

    def _protocol(self) -> TayoriSmtp:
        template = self._template
        if template is None or template.loop is not asyncio.get_running_loop():
            # Made on first use, in the loop that serves (aiosmtpd keeps the loop).
            template = self._template = self._new_protocol()
        return template.twin()

    def _new_protocol(self) -> TayoriSmtp:
        return TayoriSmtp(
            self._handler,
            connections=self._connections,
            limiter=self._limiter,
            data_timeout=self._limits.smtp_data_timeout,
            data_size_limit=self._limits.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self._hostname,
            ident="ESMTP Tayori",
            tls_context=None if self._implicit_tls else self._ssl_context,
            timeout=self._limits.smtp_command_timeout,
            auth_required=self._login,
            auth_require_tls=not self._login,
            auth_exclude_mechanism=[] if self._login else ["LOGIN", "PLAIN"],
        )

    async def start(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        context = self._ssl_context if self._implicit_tls else None
        server = await loop.create_server(self._protocol, host, port, ssl=context)
        self._servers.append(server)
        return server

    async def take_connection(self, sock: socket.socket) -> None:
        """Serve a connection accepted elsewhere: the main process accepts MX connections
        and shares them out among its worker processes (`tayori.servers.mx_workers`)."""
        if self._connections.shutting_down:
            with contextlib.suppress(OSError):
                sock.sendall(f"{SHUTTING_DOWN}\r\n".encode())
            sock.close()
            return
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # As asyncio's own servers do: a reply must not wait for Nagle's algorithm
            # (with the client's delayed ACK that costs 40 ms per exchange).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        context = self._ssl_context if self._implicit_tls else None
        await loop.connect_accepted_socket(self._protocol, sock, ssl=context)

    @property
    def shutting_down(self) -> bool:
        return self._connections.shutting_down

    def notify_closed(self, callback: Callable[[], None]) -> None:
        """`callback()` after every session of this listener ends."""
        self._connections.on_closed = callback

    @property
    def live_sessions(self) -> int:
        return len(self._connections.live)

    async def close(self, grace: float = 30.0) -> None:
        """Stop accepting; idle sessions get 421 now, sessions mid-message finish first
        (up to `grace` seconds) and get 421 after their reply."""
        self._connections.shutting_down = True
        for server in self._servers:
            server.close()
        for session in list(self._connections.live):
            transport = session.transport
            if not session.busy and transport is not None:
                _write_line(transport, SHUTTING_DOWN)
                transport.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(s.busy for s in self._connections.live) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self._connections.live):
            if session.transport is not None:
                session.transport.close()
        for server in self._servers:
            await server.wait_closed()
