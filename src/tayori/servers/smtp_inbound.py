"""Inbound SMTP (the MX role): mail from the Internet to our members.

Recipients are decided at RCPT time with reason codes (no backscatter), every refusal is an
outcome, and the message is delivered at end of DATA. The listener around it is shared
with submission (`smtp_session`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from tayori.config.settings import LimitsSettings
from tayori.core.address import AddressError, parse_address
from tayori.core.offload import Offload, in_thread
from tayori.core.outcome import Direction, Outcome, OutcomeKind, utcnow
from tayori.delivery.forwarding import Forwarder
from tayori.delivery.local import Filing, LocalDelivery, Recipient
from tayori.delivery.summary import summarise
from tayori.delivery.trace import Arrival, new_queue_id
from tayori.mailauth.results import authentication_results, remove_our_headers, spam_headers
from tayori.pipeline.inbound import InboundPipeline, MessageChecks
from tayori.pipeline.member_rules import MemberRules
from tayori.pipeline.recipients import decide_recipient
from tayori.pipeline.runner import Decision, merge
from tayori.pipeline.steps import Client
from tayori.pipeline.verdicts import Action, Verdict
from tayori.rules.decide import ForwardPlan
from tayori.rules.model import AccountFilters
from tayori.rules.srs import is_srs
from tayori.servers.smtp_session import LOCAL_ERROR, SessionEnvelope
from tayori.storage.interfaces import MetadataStore
from tayori.storage.records import Account, MessageSummary, RecipientLookup, SpecialUse

log = logging.getLogger(__name__)

_REFUSING = (Action.REJECT, Action.TEMPFAIL)


@dataclass(slots=True)
class _Checked:
    """What the pipeline found so far on one connection."""

    client: Client
    connect: Decision | None = None
    transaction: Decision = field(default_factory=Decision)


class InboundHandler:
    """aiosmtpd handler hooks: checks, RCPT decisions and delivery at end of DATA."""

    def __init__(
        self,
        metadata: MetadataStore,
        delivery: LocalDelivery,
        limits: LimitsSettings,
        pipeline: InboundPipeline | None = None,
        authserv_id: str = "",
        member_rules: MemberRules | None = None,
        forwarder: Forwarder | None = None,
        reads: Offload = in_thread,
    ) -> None:
        """`reads`: where the RCPT look-up runs (`tayori.core.offload`)."""
        self._reads = reads
        self._member_rules = member_rules
        self._forwarder = forwarder  # forwarding and SRS bounces (issue 3)
        self._metadata = metadata
        self._delivery = delivery
        self._limits = limits
        self._pipeline = pipeline
        self._authserv_id = authserv_id or "localhost"
        self._checked: weakref.WeakKeyDictionary[Session, _Checked] = weakref.WeakKeyDictionary()

    def _state(self, session: Session) -> _Checked:
        state = self._checked.get(session)
        if state is None:
            state = self._checked[session] = _Checked(Client(peer_ip(session)))
        return state

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> list[str]:
        session.host_name = hostname
        *head, last = responses
        # The MX takes no logins: aiosmtpd would still list an empty AUTH after STARTTLS.
        head = [line for line in head if not line.startswith("250-AUTH")]
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
        envelope: SessionEnvelope,
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
        if self._pipeline is not None:
            state = self._state(session)
            state.client.helo = session.host_name or ""
            state.client.sender = sender
            if state.connect is None:
                state.connect = await self._pipeline.connect(state.client)
            state.transaction = await self._pipeline.transaction(state.client)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: SessionEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self._limits.max_recipients:
            return "452 4.5.3 Error: too many recipients"
        try:
            canonical = parse_address(address).canonical
        except AddressError:
            return "501 5.1.3 Bad recipient address syntax"
        refusal = self._session_refusal(session)
        if refusal is not None:
            outcome = self._refusal_outcome(session, envelope, address, refusal, None)
            await asyncio.to_thread(self._metadata.record_outcomes, [outcome])
            return str(refusal.reply)
        client = self._state(session).client if self._pipeline is not None else None
        rules = self._member_rules if client is not None else None
        read = rules.known(client) if rules is not None and client is not None else None
        lookup, filters = await self._reads(self._rcpt_reads, canonical, read)
        if rules is not None and client is not None and filters:
            rules.remember(client, filters)
        decision = decide_recipient(address, lookup, declared_size=envelope.declared_size)
        if self._forwarder and lookup.hosted and not lookup.accounts and is_srs(canonical):
            return await self._srs_rcpt(session, envelope, address, canonical, rcpt_options)
        refused = [
            self._refusal_outcome(session, envelope, address, verdict, account_id, told)
            for account_id, verdict, told in _refusals(decision.refusal, decision.full, address)
        ]
        if refused:
            await asyncio.to_thread(self._metadata.record_outcomes, refused)
        if decision.refusal is not None:
            return str(decision.refusal.reply)
        accounts = await self._member_refusals(session, envelope, address, decision.accounts)
        if isinstance(accounts, Verdict):
            return str(accounts.reply)
        known = {r.account.id for r in envelope.recipients}
        for account in accounts:
            if account.id not in known:
                envelope.recipients.append(Recipient(address, account))
                known.add(account.id)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SessionEnvelope) -> str:
        if not envelope.recipients and not envelope.remote:  # only full alias members
            return "554 5.5.1 Error: no valid recipients"
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        content = remove_our_headers(envelope.original_content or b"", self._authserv_id)
        filing: dict[int, Filing] | None = None
        client_host = "unknown"
        if self._pipeline is not None:
            state = self._state(session)
            client_host = state.client.verified_host or "unknown"
            checks = await self._pipeline.message(state.client, envelope.original_content or b"")
            decision = merge(state.connect or Decision(), state.transaction, checks.decision)
            filing = {}
            refused: list[Outcome] = []
            keep: list[Recipient] = []
            # Parsed once, and only when something is refused (the outcome names the message).
            received = functools.cache(lambda: (summarise(content), len(content)))
            for recipient in envelope.recipients:
                mine = decision
                for step in self._pipeline.recipient_steps:
                    mine = mine.plus(
                        (await step.decide(recipient.account, content, state.client, mine)).verdicts
                    )
                mine_refusal = mine.decisive
                if mine_refusal is not None and mine_refusal.action in _REFUSING:
                    refused.append(
                        self._refusal_outcome(
                            session,
                            envelope,
                            recipient.address,
                            mine_refusal,
                            recipient.account.id,
                            detail=mine.detail(),
                            received=received(),
                        )
                    )
                    continue
                keep.append(recipient)
                filing[recipient.account.id] = self._filing(mine, checks)
            if refused:
                await asyncio.to_thread(self._metadata.record_outcomes, refused)
            message_refusal = decision.decisive
            if message_refusal is not None and message_refusal.action in _REFUSING:
                # SRS bounce relays (issue 3) follow the message's own checks.
                relays_refused = [
                    self._refusal_outcome(
                        session, envelope, to, message_refusal, None, received=received()
                    )
                    for to in envelope.remote
                ]
                await asyncio.to_thread(self._metadata.record_outcomes, relays_refused)
                envelope.remote.clear()
            if not keep and not envelope.remote:
                # Refused for every recipient: the sender's server is told (no bounce from us).
                if self._member_rules is not None:
                    self._member_rules.forget(state.client)
                return refused[0].reply if refused else _refusal_reply(message_refusal)
            # Refused for some members only (their own reject lists): the others get it, and
            # the refusals stay recorded; one DATA reply cannot refuse some recipients.
            recipients = keep
        else:
            recipients = list(envelope.recipients)
        arrival = Arrival(
            helo=session.host_name or "",
            client_ip=peer_ip(session),
            client_host=client_host,
            tls_version=ssl_object.version() if ssl_object else None,
            tls_cipher=ssl_object.cipher()[0] if ssl_object else None,
            authenticated=False,
            smtputf8=bool(envelope.smtp_utf8),
            extended=bool(session.extended_smtp),
            queue_id=new_queue_id(),
            time=utcnow(),
        )
        plans: dict[int, ForwardPlan] = {}  # forwarding (issue 3)
        if self._member_rules is not None and self._pipeline is not None and filing is not None:
            state = self._state(session)
            if self._forwarder is not None:
                raw = envelope.original_content or b""
                plans = await self._forwarder.plans(
                    self._member_rules, state.client, recipients, filing, raw
                )
            self._member_rules.forget(state.client)
        if self._forwarder is not None and (plans or envelope.remote):
            result = await self._forwarder.deliver(
                envelope.sender,
                recipients,
                content,
                envelope.original_content or b"",
                arrival,
                filing,
                plans,
                envelope.remote,
            )
        else:
            result = await self._delivery.deliver(
                envelope.sender, recipients, content, arrival, filing
            )
        return str(result.reply)

    def _rcpt_reads(
        self, canonical: str, known: frozenset[int] | None
    ) -> tuple[RecipientLookup, dict[int, AccountFilters]]:
        """Blocking (run through `reads`): the recipient and, when member filters apply
        (`known`: the accounts whose filters the transaction has already), their filters, in
        one call rather than two (each thread hop waits its turn under load)."""
        lookup = self._metadata.lookup_recipient(canonical)
        if known is None or self._member_rules is None:
            return lookup, {}
        wanted = [account.id for account in lookup.accounts if account.id not in known]
        return lookup, self._member_rules.read_filters(wanted)

    async def _srs_rcpt(
        self,
        session: Session,
        envelope: SessionEnvelope,
        address: str,
        canonical: str,
        rcpt_options: list[str],
    ) -> str:
        """A bounce to a forwarded copy's rewritten sender (SRS, issue 3): relayed to the
        original sender at DATA when the address is ours and fresh, else refused as such."""
        assert self._forwarder is not None
        relay = self._forwarder.srs_recipient(canonical)
        if isinstance(relay, Verdict):
            outcome = self._refusal_outcome(session, envelope, address, relay, None)
            await asyncio.to_thread(self._metadata.record_outcomes, [outcome])
            return str(relay.reply)
        envelope.remote.append(relay)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def _member_refusals(
        self,
        session: Session,
        envelope: SessionEnvelope,
        address: str,
        accounts: tuple[Account, ...],
    ) -> tuple[Account, ...] | Verdict:
        """Members whose reject list refuses this envelope sender are left out (an outcome
        each); the refusal itself when that leaves nobody."""
        if self._member_rules is None or not envelope.sender:
            return accounts
        kept: list[Account] = []
        refusal: Verdict | None = None
        outcomes: list[Outcome] = []
        for account in accounts:
            # The client carries the transaction's memo of filters (read once, issue 3).
            client = self._state(session).client if self._pipeline is not None else None
            verdict = await self._member_rules.at_rcpt(account, envelope.sender, client)
            if verdict is None:
                kept.append(account)
                continue
            refusal = verdict
            outcomes.append(self._refusal_outcome(session, envelope, address, verdict, account.id))
        if outcomes:
            await asyncio.to_thread(self._metadata.record_outcomes, outcomes)
        if not kept and refusal is not None:
            return refusal
        return tuple(kept)

    def _session_refusal(self, session: Session) -> Verdict | None:
        """A refusal decided before RCPT (connecting host, HELO, sender), given per RCPT."""
        state = self._checked.get(session)
        if state is None:
            return None
        decisive = merge(state.connect or Decision(), state.transaction).decisive
        if decisive is not None and decisive.action in _REFUSING:
            return decisive
        return None

    def _filing(self, decision: Decision, checks: MessageChecks) -> Filing:
        junk = decision.action is Action.JUNK
        headers = authentication_results(self._authserv_id, checks.auth) + spam_headers(
            decision.score, junk, decision.reasons
        )
        decisive = decision.decisive
        if junk and decisive is not None:
            return Filing(SpecialUse.JUNK, decisive.reason, decision.detail(), headers)
        return Filing(SpecialUse.INBOX, "delivered", decision.detail(), headers)

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session error", exc_info=error)
        return LOCAL_ERROR

    async def record_size_exceeded(
        self, session: Session, envelope: SessionEnvelope, size: int
    ) -> None:
        """The size limit is enforced inside aiosmtpd; the outcome is still ours to record."""
        verdict = Verdict.reject("size.exceeded", f"size {size} > {self._limits.max_message_size}")
        recipients = envelope.rcpt_tos or [""]
        outcomes = [self._refusal_outcome(session, envelope, r, verdict, None) for r in recipients]
        await asyncio.to_thread(self._metadata.record_outcomes, outcomes)

    def _refusal_outcome(
        self,
        session: Session,
        envelope: SessionEnvelope,
        recipient: str,
        verdict: Verdict,
        account_id: int | None,
        told: bool = True,
        detail: str = "",
        received: tuple[MessageSummary, int] | None = None,
    ) -> Outcome:
        """`received`: the message's summary and size, for a refusal at the end of DATA:
        its subject and Message-ID then go into the outcome, so the member's history and
        the doctor can show which message it was."""
        summary, size = received if received is not None else (None, envelope.declared_size)
        state = self._checked.get(session)
        return Outcome(
            direction=Direction.INBOUND,
            sender=envelope.sender,
            recipient=recipient,
            outcome=OutcomeKind.REJECTED,
            reason=verdict.reason,
            reply=str(verdict.reply) if told else "",
            detail=(detail or verdict.detail)[:1000],
            account_id=account_id,
            size=size,
            message_id=summary.message_id if summary else "",
            subject=summary.subject if summary else "",
            remote_ip=peer_ip(session),
            remote_host=(state.client.verified_host if state else "") or "unknown",
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


def _refusal_reply(verdict: Verdict | None) -> str:
    return str(verdict.reply) if verdict is not None else "554 5.5.1 Error: no valid recipients"


def peer_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
