"""One SMTP client connection to a remote mail server (aiosmtplib underneath).

`open_connection` tries a route's hops in order until one greets; the connection then says
EHLO, upgrades with STARTTLS whenever offered (opportunistic: certificates are not checked,
since an unverified encrypted session is still better than plain text and MTA-to-MTA
verification needs MTA-STS or DANE; whether TLS was used is recorded in each outcome), and
carries one transaction after another (`send`) until closed, so several messages for one
destination share a connection.

Replies are kept exactly as the remote server wrote them (`550 5.1.1 <x@y>: unknown`),
per recipient: RCPT refusals are per recipient, the DATA reply applies to all recipients
accepted at RCPT. A dropped connection, a timeout, or a `421` raise `ConnectionLost`, whose
reply (our words) defers the recipients still open.

PIPELINING: aiosmtplib (3.x to 5.x) sends each command and waits for its reply; it does not
pipeline even when the server offers it. Reusing one connection for many messages removes
the connection and TLS set-up cost, which dominates; MAIL/RCPT round trips remain.

8BITMIME: a message with 8-bit bytes goes with `BODY=8BITMIME` to servers that announce it.
To a server that does not, it is bounced (`554 5.6.3`) rather than downgraded: converting
MIME parts to quoted-printable would break DKIM signatures made at submission, and servers
without 8BITMIME are very rare now. Non-ASCII addresses need the server's SMTPUTF8 likewise
(`553 5.6.7` otherwise).
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import (
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPTimeoutError,
)

from tayori.delivery.routes import Hop

__all__ = [
    "ConnectFailure",
    "ConnectionLost",
    "SmtpConnection",
    "client_tls_context",
    "needs_8bit",
    "needs_smtputf8",
    "open_connection",
]


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


def _reply(code: int, message: str) -> str:
    """The reply on one line as the server wrote it (multi-line replies joined by spaces)."""
    return f"{code} {' '.join(message.split())}".strip()


class ConnectionLost(Exception):
    """The connection cannot carry on; `reply` says why, as a temporary SMTP reply."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


@dataclass(slots=True)
class SmtpConnection:
    """An open, greeted (and, when offered, encrypted) connection to one hop."""

    hop: Hop
    client: aiosmtplib.SMTP
    tls_version: str | None
    messages: int = 0

    @property
    def usable(self) -> bool:
        return self.client.is_connected

    @property
    def eight_bit_mime(self) -> bool:
        return self.client.supports_extension("8bitmime")

    @property
    def smtputf8(self) -> bool:
        return self.client.supports_extension("smtputf8")

    async def send(self, sender: str, recipients: Sequence[str], body: bytes) -> dict[str, str]:
        """One transaction. Returns each recipient's reply (the RCPT refusal, or the reply to
        the end of DATA). Raises ConnectionLost when the connection broke or was closed by
        the server (`421`), naming the stage; recipients then have no reply of the server."""
        client = self.client
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
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        stage = "MAIL FROM"
        try:
            try:
                await client.mail(sender, options=options, encoding=encoding)
            except SMTPSenderRefused as refused:
                self._lost_if_closed(refused.code, refused.message, stage)
                await self._reset()
                return dict.fromkeys(recipients, _reply(refused.code, refused.message))
            stage = "RCPT TO"
            replies: dict[str, str] = {}
            accepted: list[str] = []
            for recipient in recipients:
                try:
                    await client.rcpt(recipient, encoding=encoding)
                    accepted.append(recipient)
                except SMTPRecipientRefused as refused:
                    self._lost_if_closed(refused.code, refused.message, stage)
                    replies[recipient] = _reply(refused.code, refused.message)
            if not accepted:
                await self._reset()
                return replies
            stage = "DATA"
            try:
                response = await client.data(body)
                answer = _reply(response.code, response.message)
            except SMTPDataError as failed:
                self._lost_if_closed(failed.code, failed.message, stage)
                answer = _reply(failed.code, failed.message)
            replies.update(dict.fromkeys(accepted, answer))
            return replies
        except (SMTPException, OSError) as error:
            self.client.close()
            raise ConnectionLost(self._lost(stage, error)) from error

    def _lost_if_closed(self, code: int, message: str, stage: str) -> None:
        """A `421` (or any reply after which the server hung up) ends the connection: every
        recipient not answered yet is deferred with the server's words."""
        if code == 421:  # RFC 5321 3.8: the server is closing the channel
            self.client.close()
            raise ConnectionLost(_reply(code, message))
        if not self.client.is_connected:
            raise ConnectionLost(self._stage(stage))

    def _stage(self, stage: str) -> str:
        return f"451 4.4.2 Lost connection with {self.hop} while sending {stage}"

    def _lost(self, stage: str, error: BaseException) -> str:
        if isinstance(error, SMTPResponseException) and error.code == 421:
            return _reply(error.code, error.message)
        if isinstance(error, SMTPTimeoutError):
            return f"451 4.4.2 Timed out waiting for {self.hop} after {stage}"
        return f"{self._stage(stage)}: {type(error).__name__}"

    async def _reset(self) -> None:
        with contextlib.suppress(SMTPException, OSError):
            await self.client.rset()

    async def close(self) -> None:
        """QUIT politely when possible; always release the socket."""
        if self.client.is_connected:
            with contextlib.suppress(SMTPException, OSError, TimeoutError):
                await self.client.quit(timeout=5)
        self.client.close()


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
    client = aiosmtplib.SMTP(
        hostname=hop.address,
        port=hop.port,
        local_hostname=local_hostname,
        timeout=command_timeout,
        start_tls=False,
    )
    try:
        await client.connect(timeout=connect_timeout)
        await _ehlo(client)
        version: str | None = None
        if tls is not None and client.supports_extension("starttls"):
            server_name = None if hop.host == hop.address else hop.host
            try:
                await client.starttls(server_hostname=server_name, tls_context=tls)
                ssl_object = client.get_transport_info("ssl_object")
                version = ssl_object.version() if ssl_object is not None else "TLS"
                await _ehlo(client)
            except (ssl.SSLError, SMTPException, OSError) as error:
                raise _TlsFailedError(f"STARTTLS failed: {error}") from error
    except BaseException:
        client.close()
        raise
    return SmtpConnection(hop, client, version)


async def _ehlo(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()


def _connect_failure(hop: Hop, error: BaseException) -> str:
    if isinstance(error, SMTPResponseException):
        return _reply(error.code, error.message)
    if isinstance(error, SMTPTimeoutError | TimeoutError):
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
            except (ssl.SSLError, SMTPException, OSError) as error:
                last = ConnectFailure(hop, _connect_failure(hop, error))
                break
    return last
