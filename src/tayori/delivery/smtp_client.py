"""One SMTP client connection to a remote mail server, on asyncio.

`open_connection` tries a route's hops in order until one greets; the connection then says
EHLO, upgrades with STARTTLS whenever offered (opportunistic: certificates are not checked,
since an unverified encrypted session is still better than plain text and MTA-to-MTA
verification needs MTA-STS or DANE; whether TLS was used is recorded in each outcome), and
carries one transaction after another (`send`) until closed, so several messages for one
destination share a connection. A transaction that ends without a reply to the message
(refused sender, no recipient accepted, DATA refused) is followed by RSET.

Replies are kept exactly as the remote server wrote them (`550 5.1.1 <x@y>: unknown`),
per recipient: RCPT refusals are per recipient, the DATA reply applies to all recipients
accepted at RCPT, a refused MAIL applies to every recipient. A dropped connection, a
timeout, or a `421` raise `ConnectionLost`, whose reply (our words, or the 421) defers the
recipients still open.

PIPELINING (RFC 2920): to a server that announces it, MAIL FROM, every RCPT TO and DATA go
in one write, and the replies are then read in order (`ReplyParser` in
`tayori.protocols.smtp_client` splits however many arrive in one read); a transaction costs
two round trips (the group, then the message) whatever the number of recipients. A server
without it gets one command at a time. Once every recipient has its answer (MAIL refused,
or every RCPT refused), trouble reading the rest of the group only closes the connection;
a DATA that got `354` anyway gets an empty message, as RFC 2920 section 3.1 asks.
aiosmtplib is not used: it waits for each reply and drops replies that arrive before it
asks for them, so it cannot pipeline.

8BITMIME: a message with 8-bit bytes goes with `BODY=8BITMIME` to servers that announce it.
To a server that does not, it is bounced (`554 5.6.3`) rather than downgraded: converting
MIME parts to quoted-printable would break DKIM signatures made at submission, and servers
without 8BITMIME are very rare now. Non-ASCII addresses need the server's SMTPUTF8 likewise
(`553 5.6.7` otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from tayori.delivery.routes import Hop
from tayori.protocols.smtp_client import (
    ProtocolError,
    Reply,
    ReplyParser,
    data_payload,
    ehlo_keywords,
    mail_command,
    rcpt_command,
)

__all__ = [
    "ConnectFailure",
    "ConnectionLost",
    "MalformedReply",
    "RefusedError",
    "ServerDisconnected",
    "SmtpClient",
    "SmtpConnection",
    "client_tls_context",
    "needs_8bit",
    "needs_smtputf8",
    "open_connection",
]

CLOSE_TIMEOUT = 5.0
"""Seconds given to QUIT and to closing the socket (and TLS) politely."""


def client_tls_context() -> ssl.SSLContext:
    """Opportunistic STARTTLS: encrypt, do not verify (see the module docstring)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def needs_8bit(body: bytes) -> bool:
    return not body.isascii()


def needs_smtputf8(sender: str, recipients: Sequence[str]) -> bool:
    return not all(address.isascii() for address in (sender, *recipients))


class ServerDisconnected(ConnectionError):
    """The server closed the connection (or it was closed) while a reply was due."""


class MalformedReply(ConnectionError):
    """The server sent something that is not an SMTP reply."""


class RefusedError(Exception):
    """The greeting, EHLO/HELO or STARTTLS got a reply that does not let us carry on."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.one_line())
        self.reply = reply


class ConnectionLost(Exception):
    """The connection cannot carry on; `reply` says why, as a temporary SMTP reply."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class _Wire(asyncio.Protocol):
    """The socket side: received bytes go to a ReplyParser; `reply` waits for the next."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.parser = ReplyParser()
        self.transport: asyncio.Transport | None = None
        self.error: MalformedReply | None = None
        self.eof = False
        self.closed: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._wakeup: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.error is None:
            try:
                self.parser.feed(data)
            except ProtocolError as error:
                self.error = MalformedReply(str(error))
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def reply(self) -> Reply:
        while True:
            reply = self.parser.next_reply()
            if reply is not None:
                return reply
            if self.error is not None:
                raise self.error
            if self.eof:
                raise ServerDisconnected("connection closed by the server")
            self._wakeup = self._loop.create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None


class SmtpClient:
    """Commands and replies on one connection, each read bounded by `timeout` seconds.
    Network trouble raises OSError: ServerDisconnected, MalformedReply, TimeoutError, or
    the socket's own errors."""

    def __init__(self, wire: _Wire, timeout: float) -> None:
        self._wire = wire
        self.timeout = timeout
        self.extensions: dict[str, str] = {}

    @property
    def is_connected(self) -> bool:
        """Open, and the server has not spoken out of turn (a `421` before closing)."""
        wire = self._wire
        transport = wire.transport
        return (
            transport is not None
            and not transport.is_closing()
            and not wire.eof
            and wire.error is None
            and not wire.parser.pending
        )

    def supports(self, keyword: str) -> bool:
        return keyword.upper() in self.extensions

    def write(self, data: bytes) -> None:
        transport = self._wire.transport
        if transport is None or transport.is_closing():
            raise ServerDisconnected("connection closed")
        transport.write(data)

    async def read(self) -> Reply:
        async with asyncio.timeout(self.timeout):
            return await self._wire.reply()

    async def command(self, line: bytes) -> Reply:
        self.write(line)
        return await self.read()

    async def hello(self, name: str) -> None:
        """EHLO, or HELO when the server does not know EHLO. RefusedError when neither
        works (or the server closes with `421`)."""
        reply = await self.command(f"EHLO {name}\r\n".encode())
        if reply.code == 250:
            self.extensions = ehlo_keywords(reply)
            return
        self.extensions = {}
        if reply.code == 421:
            raise RefusedError(reply)
        reply = await self.command(f"HELO {name}\r\n".encode())
        if reply.code != 250:
            raise RefusedError(reply)

    async def starttls(self, context: ssl.SSLContext, server_name: str | None) -> str:
        """STARTTLS and the handshake; returns the TLS version. The caller says EHLO again."""
        reply = await self.command(b"STARTTLS\r\n")
        if reply.code != 220:
            raise RefusedError(reply)
        wire = self._wire
        wire.parser.clear()  # RFC 3207 4.2: nothing the server sent before TLS counts
        if wire.transport is None or wire.eof:
            raise ServerDisconnected("connection closed before the TLS handshake")
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            transport = await loop.start_tls(
                wire.transport,
                wire,
                context,
                server_hostname=server_name,
                ssl_handshake_timeout=self.timeout,
            )
        if transport is None:
            raise ServerDisconnected("connection closed during the TLS handshake")
        wire.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        version = ssl_object.version() if ssl_object is not None else None
        return str(version or "TLS")

    def close(self) -> None:
        """Drop the connection now."""
        if self._wire.transport is not None:
            self._wire.transport.abort()

    async def aclose(self) -> None:
        """Close the socket (and TLS) politely, and wait until it is closed."""
        wire = self._wire
        if wire.transport is None:
            return
        wire.transport.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(wire.closed)
        except TimeoutError:
            wire.transport.abort()


@dataclass(slots=True)
class SmtpConnection:
    """An open, greeted (and, when offered, encrypted) connection to one hop."""

    hop: Hop
    client: SmtpClient
    tls_version: str | None
    messages: int = 0

    @property
    def usable(self) -> bool:
        return self.client.is_connected

    @property
    def eight_bit_mime(self) -> bool:
        return self.client.supports("8BITMIME")

    @property
    def smtputf8(self) -> bool:
        return self.client.supports("SMTPUTF8")

    @property
    def pipelining(self) -> bool:
        return self.client.supports("PIPELINING")

    async def send(self, sender: str, recipients: Sequence[str], body: bytes) -> dict[str, str]:
        """One transaction. Returns each recipient's reply (the MAIL or RCPT refusal, or the
        reply to DATA or to the end of the message). Raises ConnectionLost when the
        connection broke or was closed by the server (`421`) before every recipient had its
        answer, naming the stage; recipients then have no reply of the server."""
        self.messages += 1
        options: list[str] = []
        if needs_8bit(body):
            if not self.eight_bit_mime:
                reply = (
                    "554 5.6.3 Conversion required but not supported: the message has 8-bit "
                    f"content and {self.hop.host} does not announce 8BITMIME"
                )
                return dict.fromkeys(recipients, reply)
            options.append("BODY=8BITMIME")
        if needs_smtputf8(sender, recipients):
            if not self.smtputf8:
                reply = (
                    "553 5.6.7 Non-ASCII addresses not permitted: "
                    f"{self.hop.host} does not announce SMTPUTF8"
                )
                return dict.fromkeys(recipients, reply)
            options.append("SMTPUTF8")
        try:
            mail = mail_command(sender, options)
        except ValueError:
            return dict.fromkeys(recipients, "553 5.1.7 Bad sender address syntax")
        replies: dict[str, str] = {}
        rcpts: dict[str, bytes] = {}
        for recipient in recipients:
            try:
                rcpts[recipient] = rcpt_command(recipient)
            except ValueError:
                replies[recipient] = "553 5.1.3 Bad recipient address syntax"
        if not rcpts:
            return replies
        if self.pipelining:
            return await self._pipelined(mail, rcpts, body, replies)
        return await self._stepwise(mail, rcpts, body, replies)

    async def _pipelined(
        self, mail: bytes, rcpts: dict[str, bytes], body: bytes, replies: dict[str, str]
    ) -> dict[str, str]:
        self._write("MAIL FROM", b"".join([mail, *rcpts.values(), b"DATA\r\n"]))
        mail_reply = await self._next("MAIL FROM")
        if not mail_reply.positive:
            await self._drain(len(rcpts) + 1)
            await self._reset()
            return replies | dict.fromkeys(rcpts, mail_reply.one_line())
        accepted: list[str] = []
        for recipient in rcpts:
            reply = await self._next("RCPT TO")
            if reply.positive:
                accepted.append(recipient)
            else:
                replies[recipient] = reply.one_line()
        if not accepted:
            await self._drain(1)
            await self._reset()
            return replies
        return await self._data(await self._next("DATA"), accepted, body, replies)

    async def _stepwise(
        self, mail: bytes, rcpts: dict[str, bytes], body: bytes, replies: dict[str, str]
    ) -> dict[str, str]:
        self._write("MAIL FROM", mail)
        mail_reply = await self._next("MAIL FROM")
        if not mail_reply.positive:
            await self._reset()
            return replies | dict.fromkeys(rcpts, mail_reply.one_line())
        accepted: list[str] = []
        for recipient, command in rcpts.items():
            self._write("RCPT TO", command)
            reply = await self._next("RCPT TO")
            if reply.positive:
                accepted.append(recipient)
            else:
                replies[recipient] = reply.one_line()
        if not accepted:
            await self._reset()
            return replies
        self._write("DATA", b"DATA\r\n")
        return await self._data(await self._next("DATA"), accepted, body, replies)

    async def _data(
        self, reply: Reply, accepted: list[str], body: bytes, replies: dict[str, str]
    ) -> dict[str, str]:
        """After DATA's reply: the message and the reply to its end, or DATA's refusal."""
        if reply.code == 354:
            self._write("DATA", data_payload(body))
            reply = await self._next("DATA")
        else:
            await self._reset()
        return replies | dict.fromkeys(accepted, reply.one_line())

    def _write(self, stage: str, data: bytes) -> None:
        try:
            self.client.write(data)
        except OSError as error:
            self.client.close()
            raise ConnectionLost(self._lost(stage, error)) from error

    async def _next(self, stage: str) -> Reply:
        """The next reply; ConnectionLost when there is none, or it is `421` (RFC 5321
        3.8: the server is closing the channel)."""
        try:
            reply = await self.client.read()
        except OSError as error:
            self.client.close()
            raise ConnectionLost(self._lost(stage, error)) from error
        if reply.code == 421:
            self.client.close()
            raise ConnectionLost(reply.one_line())
        return reply

    async def _drain(self, count: int) -> None:
        """Read the rest of a pipelined group whose recipients all have their answer. A DATA
        that got `354` although no recipient was accepted gets an empty message (RFC 2920
        3.1). Any trouble only closes the connection: the answers stand."""
        try:
            last: Reply | None = None
            for _ in range(count):
                last = await self.client.read()
                if last.code == 421:
                    self.client.close()
                    return
            if last is not None and last.code == 354:
                await self.client.command(b".\r\n")
        except OSError:
            self.client.close()

    async def _reset(self) -> None:
        """RSET after a transaction that ended without a reply to the message; a connection
        whose RSET fails is closed (the next message gets a new one)."""
        if not self.client.is_connected:
            self.client.close()
            return
        try:
            reply = await self.client.command(b"RSET\r\n")
        except OSError:
            self.client.close()
            return
        if not reply.positive:
            self.client.close()

    def _stage_lost(self, stage: str) -> str:
        return f"451 4.4.2 Lost connection with {self.hop} while sending {stage}"

    def _lost(self, stage: str, error: BaseException) -> str:
        if isinstance(error, TimeoutError):
            return f"451 4.4.2 Timed out waiting for {self.hop} after {stage}"
        return f"{self._stage_lost(stage)}: {type(error).__name__}"

    async def close(self) -> None:
        """QUIT politely when possible; always release the socket."""
        client = self.client
        if client.is_connected:
            with contextlib.suppress(OSError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await client.command(b"QUIT\r\n")
        await client.aclose()


@dataclass(frozen=True, slots=True)
class ConnectFailure:
    """No hop took a connection; `reply` is the last hop's greeting (exact words) or our
    description of the failure. Always temporary for the recipients (see open_connection)."""

    hop: Hop | None
    reply: str


class _TlsFailedError(Exception):
    """STARTTLS was offered but the upgrade failed (refused, or a broken handshake)."""


async def _greet(
    hop: Hop,
    local_hostname: str,
    connect_timeout: float,
    command_timeout: float,
    tls: ssl.SSLContext | None,
) -> SmtpConnection:
    loop = asyncio.get_running_loop()
    wire = _Wire(loop)
    client = SmtpClient(wire, command_timeout)
    try:
        async with asyncio.timeout(connect_timeout):
            await loop.create_connection(lambda: wire, hop.address, hop.port)
            greeting = await wire.reply()
        if greeting.code != 220:
            raise RefusedError(greeting)
        await client.hello(local_hostname)
        version: str | None = None
        if tls is not None and client.supports("STARTTLS"):
            server_name = None if hop.host == hop.address else hop.host
            try:
                version = await client.starttls(tls, server_name)
                await client.hello(local_hostname)
            except (OSError, RefusedError) as error:
                raise _TlsFailedError(f"STARTTLS failed: {error}") from error
    except BaseException:
        client.close()
        raise
    return SmtpConnection(hop, client, version)


def _connect_failure(hop: Hop, error: BaseException) -> str:
    if isinstance(error, RefusedError):
        return error.reply.one_line()
    if isinstance(error, TimeoutError):
        return f"451 4.4.1 Connection to {hop} timed out"
    cause = error.__cause__ or error
    number = getattr(cause, "errno", None)
    text = os.strerror(number) if number else str(cause) or type(cause).__name__
    return f"451 4.4.1 Connection to {hop} failed: {text}"


async def open_connection(
    hops: Sequence[Hop],
    local_hostname: str,
    *,
    connect_timeout: float,
    command_timeout: float,
    tls: ssl.SSLContext | None,
) -> SmtpConnection | ConnectFailure:
    """The first hop that greets us, or why none did.

    A hop whose STARTTLS fails is tried once more without it (opportunistic TLS must not
    make mail undeliverable). A `5xx` greeting counts as unreachable, as with Postfix's
    default `smtp_skip_5xx_greeting`: the next hop is tried, and if none takes the message
    the recipients are deferred, never bounced for a server's mood at connect time.
    """
    last = ConnectFailure(None, "451 4.4.1 No mail host to connect to")
    for hop in hops:
        context = tls
        while True:
            try:
                return await _greet(hop, local_hostname, connect_timeout, command_timeout, context)
            except _TlsFailedError as error:
                last = ConnectFailure(hop, f"451 4.7.0 {hop}: {error}")
                if context is None:
                    break
                context = None
            except (OSError, RefusedError) as error:
                last = ConnectFailure(hop, _connect_failure(hop, error))
                break
    return last
