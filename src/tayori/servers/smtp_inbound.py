"""Inbound SMTP (the MX role) on aiosmtpd: mail from the Internet to our members.

aiosmtpd does the wire protocol (and ends DATA only on <CRLF>.<CRLF>, so the smuggling
sequences <LF>.<LF> and <CR>.<CR> stay data). This module adds what a public MX needs
around it: recipient decisions at RCPT time with reason codes, the outcomes, enhanced
status codes, connection limits, a DATA timeout of its own, and a graceful shutdown that
finishes messages in flight and tempfails idle sessions.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from tayori.config.settings import LimitsSettings
from tayori.core.address import AddressError, parse_address
from tayori.core.outcome import Direction, Outcome, OutcomeKind, utcnow
from tayori.delivery.local import LocalDelivery, Recipient
from tayori.delivery.trace import Arrival, new_queue_id
from tayori.pipeline.recipients import decide_recipient
from tayori.pipeline.verdicts import Verdict
from tayori.servers.limits import ConnectionLimiter
from tayori.servers.smtp_replies import is_size_exceeded, with_enhanced_code
from tayori.storage.interfaces import MetadataStore
from tayori.storage.records import Account

log = logging.getLogger(__name__)

SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
TOO_MANY = "421 4.7.0 Too many connections, try again later"
LOCAL_ERROR = "451 4.3.0 Temporary local problem, try again later"


class InboundEnvelope(Envelope):
    """aiosmtpd's envelope plus what our decisions found out on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.sender = ""
        self.declared_size = 0
        self.recipients: list[Recipient] = []


@dataclass
class _Connections:
    """The live sessions, so shutdown can tell idle ones apart from ones mid-message."""

    live: set[InboundSmtp] = field(default_factory=set)
    shutting_down: bool = False


class InboundHandler:
    """aiosmtpd handler hooks: RCPT decisions and delivery at end of DATA."""

    def __init__(
        self,
        metadata: MetadataStore,
        delivery: LocalDelivery,
        limits: LimitsSettings,
    ) -> None:
        self._metadata = metadata
        self._delivery = delivery
        self._limits = limits

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> list[str]:
        session.host_name = hostname
        *head, last = responses
        return [*head, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", last]

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: InboundEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        sender = "" if address in ("<>", "") else address
        if sender:
            try:
                parse_address(sender)
            except AddressError:
                return "553 5.1.7 Bad sender address syntax"
        size = next((o[5:] for o in mail_options if o.upper().startswith("SIZE=")), "0")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.sender = sender
        envelope.declared_size = int(size) if size.isdigit() else 0
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: InboundEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self._limits.max_recipients:
            return "452 4.5.3 Error: too many recipients"
        try:
            canonical = parse_address(address).canonical
        except AddressError:
            return "501 5.1.3 Bad recipient address syntax"
        lookup = await asyncio.to_thread(self._metadata.lookup_recipient, canonical)
        decision = decide_recipient(address, lookup, declared_size=envelope.declared_size)
        refused = [
            self._refusal_outcome(session, envelope, address, verdict, account_id, told)
            for account_id, verdict, told in _refusals(decision.refusal, decision.full, address)
        ]
        if refused:
            await asyncio.to_thread(self._metadata.record_outcomes, refused)
        if decision.refusal is not None:
            return str(decision.refusal.reply)
        known = {r.account.id for r in envelope.recipients}
        for account in decision.accounts:
            if account.id not in known:
                envelope.recipients.append(Recipient(address, account))
                known.add(account.id)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: InboundEnvelope) -> str:
        if not envelope.recipients:  # every RCPT reached only an alias member already full
            return "554 5.5.1 Error: no valid recipients"
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        arrival = Arrival(
            helo=session.host_name or "",
            client_ip=_peer_ip(session),
            client_host="unknown",
            tls_version=ssl_object.version() if ssl_object else None,
            tls_cipher=ssl_object.cipher()[0] if ssl_object else None,
            authenticated=False,
            smtputf8=bool(envelope.smtp_utf8),
            extended=bool(session.extended_smtp),
            queue_id=new_queue_id(),
            time=utcnow(),
        )
        result = await self._delivery.deliver(
            envelope.sender, envelope.recipients, envelope.original_content or b"", arrival
        )
        return str(result.reply)

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session error", exc_info=error)
        return LOCAL_ERROR

    async def record_size_exceeded(
        self, session: Session, envelope: InboundEnvelope, size: int
    ) -> None:
        """The size limit is enforced inside aiosmtpd; the outcome is still ours to record."""
        verdict = Verdict.reject("size.exceeded", f"size {size} > {self._limits.max_message_size}")
        recipients = envelope.rcpt_tos or [""]
        outcomes = [self._refusal_outcome(session, envelope, r, verdict, None) for r in recipients]
        await asyncio.to_thread(self._metadata.record_outcomes, outcomes)

    def _refusal_outcome(
        self,
        session: Session,
        envelope: InboundEnvelope,
        recipient: str,
        verdict: Verdict,
        account_id: int | None,
        told: bool = True,
    ) -> Outcome:
        return Outcome(
            direction=Direction.INBOUND,
            sender=envelope.sender,
            recipient=recipient,
            outcome=OutcomeKind.REJECTED,
            reason=verdict.reason,
            reply=str(verdict.reply) if told else "",
            detail=verdict.detail,
            account_id=account_id,
            size=envelope.declared_size,
            remote_ip=_peer_ip(session),
            remote_host="unknown",
        )


def _refusals(
    refusal: Verdict | None, full: tuple[Account, ...], address: str
) -> list[tuple[int | None, Verdict, bool]]:
    """Outcomes to record for one RCPT, each with whether the client was told: the refusal
    (per full account when quota refused it), and alias members skipped as full while
    others still get the message (the sender's server is not told about those)."""
    if refusal is not None:
        if full:
            return [(account.id, refusal, True) for account in full]
        return [(None, refusal, True)]
    skipped = Verdict.reject("rcpt.over_quota", "alias member full", address=address)
    return [(account.id, skipped, False) for account in full]


def _write_line(transport: asyncio.BaseTransport, line: str) -> None:
    """uvloop's transports write but do not subclass asyncio.WriteTransport."""
    cast(asyncio.WriteTransport, transport).write(f"{line}\r\n".encode())


def _peer_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


class InboundSmtp(SMTP):
    """One connection. Overrides only the seams aiosmtpd offers for them."""

    def __init__(
        self,
        handler: InboundHandler,
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
        self.busy = False

    def _create_envelope(self) -> InboundEnvelope:
        return InboundEnvelope()

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
        if self._refused:
            return
        if self._counted_ip is not None:
            self._limiter.release(self._counted_ip)
            self._counted_ip = None
            self._connections.live.discard(self)
        super().connection_lost(error)

    async def push(self, status: str) -> None:  # type: ignore[override]
        if not self._verbatim:
            envelope = self.envelope
            if is_size_exceeded(status) and isinstance(envelope, InboundEnvelope):
                await self.event_handler.record_size_exceeded(
                    self.session, envelope, envelope.declared_size
                )
            status = with_enhanced_code(status)
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._verbatim = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._verbatim = False

    async def smtp_DATA(self, arg: str) -> None:
        self.busy = True
        self._reset_timeout(self._data_timeout)
        try:
            await super().smtp_DATA(arg)
        finally:
            self.busy = False
            self._reset_timeout()
        if self._connections.shutting_down and self.transport is not None:
            await super().push(SHUTTING_DOWN)
            self.transport.close()


class InboundSmtpServer:
    """Listener for the smtp role; `close` is the graceful part of `tayori serve` stopping."""

    def __init__(
        self,
        handler: InboundHandler,
        *,
        hostname: str,
        limits: LimitsSettings,
        ssl_context: ssl.SSLContext | None,
        limiter: ConnectionLimiter,
    ) -> None:
        self._handler = handler
        self._hostname = hostname
        self._limits = limits
        self._ssl_context = ssl_context
        self._limiter = limiter
        self._connections = _Connections()
        self._servers: list[asyncio.Server] = []

    def _protocol(self) -> InboundSmtp:
        return InboundSmtp(
            self._handler,
            connections=self._connections,
            limiter=self._limiter,
            data_timeout=self._limits.smtp_data_timeout,
            data_size_limit=self._limits.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self._hostname,
            ident="ESMTP Tayori",
            tls_context=self._ssl_context,
            timeout=self._limits.smtp_command_timeout,
            auth_require_tls=True,
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
        )

    async def start(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, host, port)
        self._servers.append(server)
        return server

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
