"""Sending from the webmail through the same checks and the same delivery as mail programs.

The submission server (`tayori.servers.smtp_submission`) checks, per SMTP command: the
sender is the member's own address, its domain exists, the hourly/daily message limits,
recipients per message and per day, and each local recipient (unknown user, full mailbox).
The webmail has the whole message at once, so it runs the same checks in one go, records a
refusal as an outcome with the same reason code, and then hands the message to the same
`SubmissionDelivery` (DKIM signing, local copies and the queue in one transaction, submission
counting). What differs, on purpose:

- Remote recipient domains are looked up before sending, so that a typo (example.con) is
  shown on the page at once ("The domain example.con does not exist") instead of coming back
  as a bounce hours later; refused as `recipient.domain_unknown`.
- The client-network blocklist check is skipped: the webmail is the remedy that check's
  reply text offers to a member on a listed network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, cast

from tayori.config.settings import LimitsSettings, Settings, SubmissionSettings
from tayori.core.address import AddressError, parse_address
from tayori.core.outcome import Direction, Outcome, OutcomeKind, utcnow
from tayori.core.reasons import reason
from tayori.delivery.local import Recipient
from tayori.delivery.sending_limits import SendingLimits
from tayori.delivery.submission import SubmissionDelivery, may_send_as
from tayori.delivery.trace import Arrival, new_queue_id
from tayori.dns.resolver import DomainExistence, Resolver
from tayori.pipeline.member_rules import MemberRules
from tayori.pipeline.recipients import RecipientDecision, decide_recipient
from tayori.storage.interfaces import MetadataStore, QueueStore
from tayori.storage.records import Account
from tayori.web.services.errors import UserError

if TYPE_CHECKING:
    from tayori.servers.smtp_submission import SubmissionHandler

log = logging.getLogger(__name__)

WEBMAIL_HELO = "webmail"


@dataclass(frozen=True, slots=True)
class Sent:
    """A message stored for every recipient (local copies committed, remote ones queued)."""

    queue_id: str
    local: tuple[str, ...]
    remote: tuple[str, ...]


@dataclass(slots=True)
class _Plan:
    local: list[Recipient] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)


class WebSubmission:
    """The webmail's door into the submission path."""

    def __init__(
        self,
        metadata: MetadataStore,
        queue: QueueStore,
        resolver: Resolver,
        delivery: SubmissionDelivery | None,
        settings: SubmissionSettings,
        limits: LimitsSettings,
        sending_limits: SendingLimits | None = None,
        member_rules: MemberRules | None = None,
    ) -> None:
        """`delivery` None: a web app that cannot send (tests without a submission path)."""
        self._metadata = metadata
        self._queue = queue
        self._resolver = resolver
        self._delivery = delivery
        self._settings = settings
        self._limits = limits
        self._sending_limits = sending_limits or SendingLimits(settings, metadata, queue)
        self._member_rules = member_rules

    @classmethod
    def from_handler(cls, handler: SubmissionHandler) -> WebSubmission:
        """The collaborators of the submission server mail programs use, so that webmail
        and mail programs share resolver, delivery (DKIM, queue wake-up) and limits."""
        # The handler keeps them private because SMTP sessions are its only users; reading
        # them here is the one place that needs them, rather than a second copy in app.py.
        return cls(
            handler._metadata,
            handler._queue,
            handler._resolver,
            handler._delivery,
            handler._settings,
            handler._limits,
            handler.sending_limits,
            handler.member_rules,
        )

    @classmethod
    def unavailable(
        cls, settings: Settings, metadata: MetadataStore, queue: QueueStore
    ) -> WebSubmission:
        resolver = cast(Resolver, _NoResolver())  # never asked: send() refuses first
        return cls(metadata, queue, resolver, None, settings.submission, settings.limits)

    @property
    def max_message_size(self) -> int:
        return self._limits.max_message_size

    async def send(
        self,
        account: Account,
        sender: str,
        recipients: Sequence[str],
        content: bytes,
        client_ip: str,
    ) -> Sent:
        """Check and store the message for every recipient, or raise UserError (recorded as
        an outcome with its reason code, like a refusal at the submission server)."""
        if self._delivery is None:
            raise UserError("Sending is not available on this server.")
        if not await may_send_as(self._metadata, account, sender):
            await self._refuse(account, client_ip, sender, "", "sender.not_owned", account.address)
            raise UserError(
                "You cannot send as {address}: it is not an address of your account.",
                code="sender.not_owned",
                address=sender,
            )
        domain = sender.rpartition("@")[2].lower()
        existence = await self._resolver.domain_exists(domain)
        if existence == "tempfail":
            raise UserError(
                "The domain {domain} could not be checked just now (DNS did not answer). "
                "Please try again in a few minutes.",
                domain=domain,
            )
        if existence != "exists":
            await self._refuse(
                account, client_ip, sender, "", "sender.domain_unknown", f"{domain}: {existence}"
            )
            raise UserError(
                "The domain {domain} of your sender address does not exist.",
                code="sender.domain_unknown",
                domain=domain,
            )
        await self._check_limits(account, sender, client_ip, len(recipients))
        if len(content) > self._limits.max_message_size:
            await self._refuse(
                account,
                client_ip,
                sender,
                "",
                "size.exceeded",
                f"size {len(content)} > {self._limits.max_message_size}",
            )
            raise UserError(
                "The message is too large to send ({size}); the limit is {limit}. "
                "Remove some attachments.",
                code="size.exceeded",
                size=_mb(len(content)),
                limit=_mb(self._limits.max_message_size),
            )
        plan = await self._plan(account, sender, recipients, client_ip, len(content))
        arrival = Arrival(
            helo=WEBMAIL_HELO,
            client_ip=client_ip or "127.0.0.1",
            client_host="webmail",
            tls_version=None,
            tls_cipher=None,
            authenticated=True,
            smtputf8=False,
            extended=True,
            queue_id=new_queue_id(),
            time=utcnow(),
        )
        result = await self._delivery.submit(
            account, sender, plan.local, plan.remote, content, arrival
        )
        if result.reply.code >= 400:
            log.info(
                "webmail send refused by delivery: %s",
                result.reply,
                extra={"event": "web.send_refused", "account_id": account.id},
            )
            if result.reply.code == 552:
                raise UserError(
                    "The recipient's mailbox is full, so the message was not sent.",
                    code="rcpt.over_quota",
                )
            raise UserError(
                "The message could not be stored just now. Please try again in a few minutes.",
                code="store.failed",
            )
        return Sent(
            arrival.queue_id,
            tuple(r.address for r in plan.local),
            tuple(plan.remote),
        )

    async def _check_limits(
        self, account: Account, sender: str, client_ip: str, recipients: int
    ) -> None:
        """The submission server's limits (tayori.delivery.sending_limits), in plain words."""
        limits = self._sending_limits
        hit = (
            await limits.message_limit(account.id)
            or limits.recipients_in_message(recipients)
            or await limits.recipients_today(account.id, recipients)
        )
        if hit is None:
            return
        await self._refuse(account, client_ip, sender, "", "rate.limited", hit.detail)
        await limits.flag_if_repeated(account.id)
        if hit.kind == "messages per hour":
            raise UserError(
                "You have sent {count} messages in the last hour, the most "
                "allowed. Please wait before sending more.",
                code="rate.limited",
                count=hit.used,
            )
        if hit.kind == "messages per day":
            raise UserError(
                "You have sent {count} messages in the last day, the most allowed. "
                "Please wait before sending more.",
                code="rate.limited",
                count=hit.used,
            )
        if hit.kind == "recipients per message":
            raise UserError(
                "A message can have at most {limit} recipients (To, Cc and Bcc together).",
                code="rate.limited",
                limit=hit.limit,
            )
        raise UserError(
            "You can send to at most {limit} recipients a day; {count} are used. "
            "Please send the rest tomorrow.",
            code="rate.limited",
            limit=hit.limit,
            count=hit.used,
        )

    async def _plan(
        self,
        account: Account,
        sender: str,
        recipients: Sequence[str],
        client_ip: str,
        size: int,
    ) -> _Plan:
        plan = _Plan()
        checked: dict[str, str] = {}
        for address in recipients:
            try:
                canonical = parse_address(address).canonical
            except AddressError:
                raise UserError(
                    "{address} is not an e-mail address. An address looks like name@example.jp.",
                    address=address,
                ) from None
            lookup = await asyncio.to_thread(self._metadata.lookup_recipient, canonical)
            if lookup.hosted:
                decision = decide_recipient(address, lookup, declared_size=size)
                if decision.refusal is not None:
                    code = decision.refusal.reason
                    await self._refuse(
                        account, client_ip, sender, address, code, decision.refusal.detail
                    )
                    if code == "rcpt.over_quota":
                        raise UserError(
                            "The mailbox of {address} is full, so the message was not sent.",
                            code=code,
                            address=address,
                        )
                    raise UserError(
                        "The address {address} does not exist. Check its spelling.",
                        code=code,
                        address=address,
                    )
                accepting = await self._accepting(account, client_ip, sender, address, decision)
                known = {r.account.id for r in plan.local}
                for member in accepting:
                    if member.id not in known:
                        plan.local.append(Recipient(address, member))
            elif canonical not in plan.remote:
                domain = canonical.rpartition("@")[2]
                if domain not in checked:
                    checked[domain] = await self._resolver.domain_exists(domain)
                existence = checked[domain]
                if existence not in ("exists", "tempfail"):
                    await self._refuse(
                        account,
                        client_ip,
                        sender,
                        address,
                        "recipient.domain_unknown",
                        f"{domain}: {existence}",
                    )
                    raise UserError(
                        "The domain {domain} does not exist. Check the address {address} "
                        "for typos.",
                        code="recipient.domain_unknown",
                        domain=domain,
                        address=address,
                    )
                plan.remote.append(canonical)
            plan.addresses.append(address)
        if not plan.local and not plan.remote:
            raise UserError("Add at least one recipient (To, Cc or Bcc).")
        return plan

    async def _accepting(
        self,
        account: Account,
        client_ip: str,
        sender: str,
        address: str,
        decision: RecipientDecision,
    ) -> tuple[Account, ...]:
        """The accounts behind `address` whose reject list (受信拒否) lets the sender through,
        as at the submission server; UserError when none does."""
        if self._member_rules is None:
            return decision.accounts
        kept: list[Account] = []
        for member in decision.accounts:
            verdict = await self._member_rules.at_rcpt(member, sender)
            if verdict is None:
                kept.append(member)
                continue
            await self._refuse(
                account,
                client_ip,
                sender,
                address,
                verdict.reason,
                verdict.detail,
                recipient_account=member.id,
            )
        if not kept:
            raise UserError(
                "{address} does not accept mail from your address (the recipient's reject "
                "list), so the message was not sent.",
                code="rule.reject",
                address=address,
            )
        return tuple(kept)

    async def _refuse(
        self,
        account: Account,
        client_ip: str,
        sender: str,
        recipient: str,
        code: str,
        detail: str,
        recipient_account: int | None = None,
    ) -> None:
        entry = reason(code)
        reply = ""
        if entry.reply is not None:
            reply = str(entry.reply_for(address=recipient, domain=_domain(recipient or sender)))
        outcome = Outcome(
            direction=Direction.OUTBOUND,
            sender=sender,
            recipient=recipient,
            outcome=OutcomeKind.REJECTED,
            reason=code,
            reply=reply,
            detail=f"webmail: {detail}",
            account_id=account.id,
            remote_ip=client_ip,
            remote_host="webmail",
        )
        outcomes = [outcome]
        if recipient_account is not None:  # the member's own rule: in their history too
            outcomes.append(
                replace(outcome, direction=Direction.INBOUND, account_id=recipient_account)
            )
        try:
            await asyncio.to_thread(self._metadata.record_outcomes, outcomes)
        except Exception:  # the refusal stands even when it cannot be recorded
            log.exception("could not record a %s outcome", code)


class _NoResolver:
    """For a web app without a submission path: nothing is ever looked up."""

    async def domain_exists(self, domain: str) -> DomainExistence:
        return "tempfail"


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
