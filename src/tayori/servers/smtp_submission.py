"""Submission (RFC 6409): members sending from their mail programs, after login.

Every refusal here protects the service's reputation or the member: passwords only over TLS
(loopback allowed by config), sender addresses only the member's own, sender domains that
exist, no sending from a blocklisted network, and limits that stop a stolen password from
getting the whole service blocklisted. Each refusal is an outcome with its reason code.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from email.utils import getaddresses

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Session

from tayori.auth.authenticator import Authenticator, FailureKind, LoginFailure
from tayori.config.settings import AuthSettings, LimitsSettings, SubmissionSettings
from tayori.core.address import AddressError, parse_address
from tayori.core.outcome import Direction, Outcome, OutcomeKind, utcnow
from tayori.core.reasons import reason
from tayori.core.reply import SmtpReply
from tayori.delivery.local import Recipient
from tayori.delivery.sending_limits import SendingLimits
from tayori.delivery.submission import SubmissionDelivery, may_send_as
from tayori.delivery.summary import header_block
from tayori.delivery.trace import Arrival, new_queue_id, normalise_line_endings
from tayori.dns import dnsbl
from tayori.dns.resolver import Resolver
from tayori.pipeline.member_rules import MemberRules
from tayori.pipeline.recipients import decide_recipient
from tayori.protocols.sasl import SaslError, decode_plain
from tayori.servers.limits import is_loopback
from tayori.servers.smtp_inbound import peer_ip
from tayori.servers.smtp_session import LOCAL_ERROR, SessionEnvelope
from tayori.storage.interfaces import MetadataStore, QueueStore
from tayori.storage.records import Account

log = logging.getLogger(__name__)

ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication mechanism"
TEMPORARY_AUTH_FAILURE = "454 4.7.0 Temporary authentication failure, try again later"
TOO_MANY_RECIPIENTS = "452 4.5.3 Error: too many recipients"
DNS_TEMPFAIL = "451 4.4.3 Temporary DNS failure checking the sender domain, try again later"


class SubmissionHandler:
    def __init__(
        self,
        metadata: MetadataStore,
        queue: QueueStore,
        authenticator: Authenticator,
        resolver: Resolver,
        delivery: SubmissionDelivery,
        settings: SubmissionSettings,
        limits: LimitsSettings,
        auth_settings: AuthSettings,
        member_rules: MemberRules | None = None,
    ) -> None:
        self._metadata = metadata
        self._queue = queue
        self._authenticator = authenticator
        self._resolver = resolver
        self._delivery = delivery
        self._settings = settings
        self._limits = limits
        self._auth = auth_settings
        self.sending_limits = SendingLimits(settings, metadata, queue)
        """Shared with the webmail, so both refuse the same message for the same reason."""
        self.member_rules = member_rules
        """Recipients' reject lists (受信拒否) hold for mail from fellow members too."""
        """Shared with the webmail, so both refuse the same message for the same reason."""

    # --- login ------------------------------------------------------------------------------
    def _login_allowed(self, server: SMTP, session: Session) -> bool:
        if server.transport is not None and server.transport.get_extra_info("ssl_object"):
            return True
        if self._auth.allow_plaintext:
            return True
        return self._auth.allow_plaintext_on_loopback and is_loopback(peer_ip(session))

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: SessionEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        *head, last = responses
        if not self._login_allowed(server, session):  # RFC 4954 §4: no AUTH before TLS
            head = [line for line in head if not line.startswith("250-AUTH")]
        return [*head, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", last]

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if server.session is None or not self._login_allowed(server, server.session):
            return AuthResult(success=False, handled=False, message=ENCRYPTION_REQUIRED)
        response = (
            args[1] if len(args) > 1 else await server.challenge_auth("", encode_to_b64=False)
        )
        if response is MISSING:
            return AuthResult(success=False, handled=True)
        text = response if isinstance(response, str) else _b64(response)
        try:
            credentials = decode_plain(text)
        except SaslError as error:
            return AuthResult(success=False, handled=False, message=f"501 5.5.2 {error}")
        return await self._login(server, credentials.authcid, credentials.password)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if server.session is None or not self._login_allowed(server, server.session):
            return AuthResult(success=False, handled=False, message=ENCRYPTION_REQUIRED)
        if len(args) > 1:
            username: object = _unb64(args[1])
        else:
            username = await server.challenge_auth("Username:")
        if username is MISSING:  # aborted or undecodable: aiosmtpd has answered already
            return AuthResult(success=False, handled=True)
        if username is None:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Can't decode base64")
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(username, bytes) and isinstance(password, bytes)
        return await self._login(
            server, username.decode("utf-8", "replace"), password.decode("utf-8", "replace")
        )

    async def _login(self, server: SMTP, username: str, password: str) -> AuthResult:
        session = server.session
        assert session is not None
        result = await self._authenticator.login(username, password, peer_ip(session))
        if not isinstance(result, LoginFailure):
            return AuthResult(success=True, auth_data=result.account)
        await self._record(
            session, username, "", "auth.failed", reply=_auth_reply(result), detail=result.kind
        )
        return AuthResult(success=False, handled=False, message=_auth_reply(result))

    # --- envelope ----------------------------------------------------------------------------
    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: SessionEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        account = _account(session)
        sender = "" if address in ("<>", "") else address
        if not await may_send_as(self._metadata, account, sender):
            return await self._refuse(
                session, sender, "", "sender.not_owned", detail=account.address
            )
        domain = sender.rpartition("@")[2].lower()
        existence = await self._resolver.domain_exists(domain)
        if existence == "tempfail":
            return DNS_TEMPFAIL
        if existence != "exists":
            return await self._refuse(
                session,
                sender,
                "",
                "sender.domain_unknown",
                detail=f"{domain}: {existence}",
                address=sender,
                domain=domain,
            )
        listed = await self._listed_network(session)
        if listed is not None:
            return await self._refuse(
                session, sender, "", "dnsbl.listed", reply=listed[0], detail=listed[1]
            )
        hit = await self.sending_limits.message_limit(account.id)
        if hit is not None:
            reply = await self._refuse(session, sender, "", "rate.limited", detail=hit.detail)
            await self.sending_limits.flag_if_repeated(account.id)
            return reply
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
        envelope: SessionEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        account = _account(session)
        try:
            canonical = parse_address(address).canonical
        except AddressError:
            return "501 5.1.3 Bad recipient address syntax"
        limits = self.sending_limits
        adding = len(envelope.rcpt_tos) + 1
        hit = limits.recipients_in_message(adding) or await limits.recipients_today(
            account.id, adding
        )
        if hit is not None:
            reply = await self._refuse(
                session,
                envelope.sender,
                address,
                "rate.limited",
                reply=TOO_MANY_RECIPIENTS,
                detail=hit.detail,
            )
            if hit.kind == "recipients per day":
                await limits.flag_if_repeated(account.id)
            return reply
        lookup = await asyncio.to_thread(self._metadata.lookup_recipient, canonical)
        if lookup.hosted:
            decision = decide_recipient(address, lookup, declared_size=envelope.declared_size)
            if decision.refusal is not None:
                return await self._refuse(
                    session,
                    envelope.sender,
                    address,
                    decision.refusal.reason,
                    reply=str(decision.refusal.reply),
                    detail=decision.refusal.detail,
                )
            refusal = await self._reject_rule(session, envelope, address, decision.accounts)
            if refusal is not None:
                return refusal
            known = {r.account.id for r in envelope.recipients}
            for member in decision.accounts:
                if member.id not in known:
                    envelope.recipients.append(Recipient(address, member))
        elif canonical not in envelope.remote:
            envelope.remote.append(canonical)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SessionEnvelope) -> str:
        account = _account(session)
        content = normalise_line_endings(envelope.original_content or b"")
        for author in _from_addresses(content):
            if not await may_send_as(self._metadata, account, author):
                return await self._refuse(
                    session, envelope.sender, "", "sender.not_owned", detail=f"From: {author}"
                )
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        arrival = Arrival(
            helo=session.host_name or "",
            client_ip=peer_ip(session),
            client_host="unknown",
            tls_version=ssl_object.version() if ssl_object else None,
            tls_cipher=ssl_object.cipher()[0] if ssl_object else None,
            authenticated=True,
            smtputf8=bool(envelope.smtp_utf8),
            extended=bool(session.extended_smtp),
            queue_id=new_queue_id(),
            time=utcnow(),
        )
        result = await self._delivery.submit(
            account, envelope.sender, envelope.recipients, envelope.remote, content, arrival
        )
        return str(result.reply)

    async def handle_exception(self, error: Exception) -> str:
        log.exception("submission session error", exc_info=error)
        return LOCAL_ERROR

    async def record_size_exceeded(
        self, session: Session, envelope: SessionEnvelope, size: int
    ) -> None:
        await self._record(
            session,
            envelope.sender,
            "",
            "size.exceeded",
            reply=str(reason("size.exceeded").reply_for()),
            detail=f"size {size} > {self._limits.max_message_size}",
        )

    # --- checks ------------------------------------------------------------------------------
    async def _reject_rule(
        self,
        session: Session,
        envelope: SessionEnvelope,
        address: str,
        accounts: tuple[Account, ...],
    ) -> str | None:
        """The refusal when every account behind the address rejects this sender (as the MX
        would say it), recorded for each; None when at least one takes the message (an alias
        member who rejects simply gets no copy)."""
        if self.member_rules is None:
            return None
        kept: list[Account] = []
        refusal: str | None = None
        for account in accounts:
            verdict = await self.member_rules.at_rcpt(account, envelope.sender)
            if verdict is None:
                kept.append(account)
                continue
            refusal = await self._refuse(
                session,
                envelope.sender,
                address,
                verdict.reason,
                reply=str(verdict.reply),
                detail=verdict.detail,
                recipient_account=account.id,
            )
        return refusal if not kept else None

    async def _listed_network(self, session: Session) -> tuple[str, str] | None:
        """(reply, detail) when the client's address is on a configured blocklist."""
        ip = peer_ip(session)
        for zone in self._settings.dnsbl.zones:
            result = await dnsbl.lookup(self._resolver, ip, zone)
            if result.listed:
                text = reason("dnsbl.listed").reply_for(ip=ip, zone=zone)
                remedy = "; send from the webmail or from your network's own mail server"
                reply = SmtpReply(text.code, text.enhanced, text.text + remedy)
                codes = ",".join(str(code) for code in result.codes)
                return str(reply), f"{zone} answered {codes} {result.reason}".strip()
        return None

    async def _refuse(
        self,
        session: Session,
        sender: str,
        recipient: str,
        code: str,
        *,
        reply: str | None = None,
        detail: str = "",
        recipient_account: int | None = None,
        **values: str,
    ) -> str:
        """Refuse and record it for the sender; with `recipient_account` (a member's own rule
        refused it) also in that member's history, as the MX would."""
        text = reply or str(reason(code).reply_for(**values))
        await self._record(
            session,
            sender,
            recipient,
            code,
            reply=text,
            detail=detail,
            recipient_account=recipient_account,
        )
        return text

    async def _record(
        self,
        session: Session,
        sender: str,
        recipient: str,
        code: str,
        *,
        reply: str,
        detail: str,
        recipient_account: int | None = None,
    ) -> None:
        account = session.auth_data if session.authenticated else None
        outcome = Outcome(
            direction=Direction.OUTBOUND,
            sender=sender,
            recipient=recipient,
            outcome=OutcomeKind.REJECTED,
            reason=code,
            reply=reply,
            detail=detail,
            account_id=account.id if account else None,
            remote_ip=peer_ip(session),
            remote_host="unknown",
        )
        outcomes = [outcome]
        if recipient_account is not None:
            outcomes.append(
                replace(outcome, direction=Direction.INBOUND, account_id=recipient_account)
            )
        try:
            await asyncio.to_thread(self._metadata.record_outcomes, outcomes)
        except Exception:  # the refusal stands even when it cannot be recorded
            log.exception("could not record a %s outcome", code)


def _account(session: Session) -> Account:
    """The member logged in on this session (aiosmtpd requires login before MAIL)."""
    account = session.auth_data
    if not isinstance(account, Account):
        raise RuntimeError("submission command without a login")
    return account


def _auth_reply(failure: LoginFailure) -> str:
    if failure.kind is FailureKind.LOCKED_OUT and failure.temporary:
        return TEMPORARY_AUTH_FAILURE
    return str(reason("auth.failed").reply_for())


def _from_addresses(content: bytes) -> list[str]:
    """Addresses in From: (a message may name several authors, RFC 5322 3.6.2)."""
    headers = header_block(content).decode("utf-8", "surrogateescape")
    values = [
        line.split(":", 1)[1]
        for line in _unfold(headers).split("\r\n")
        if line[:5].lower() == "from:"
    ]
    return [address for _, address in getaddresses(values) if address]


def _unfold(headers: str) -> str:
    return headers.replace("\r\n ", " ").replace("\r\n\t", " ")


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes | None:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
