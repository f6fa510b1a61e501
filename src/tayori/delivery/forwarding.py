"""Forwarding (スーパーメール転送) delivered: copies to members' forwarding addresses go through
the outbound queue, committed in the same transaction as the local copies, before the `250`.

What is forwarded and what stays is decided by `rules.plan_forwarding` (targets, keep a copy,
skip spam, the forwarding reject list, loops); this module carries it out:

- The forwarded copy is the message exactly as received, with only our trace headers
  (`Delivered-To`, `Received`) prepended: no header or body is rewritten, so the sender's
  DKIM signature still verifies at the destination. Our own `Delivered-To` is what
  `srs.forwarding_loop` finds when the copy comes round again.
- The envelope sender is rewritten with SRS0 (so SPF passes at the destination) unless it is
  one of our own domains or the null sender (a bounce stays a bounce).
- One queued message per forwarding member (its own SRS sender and history), all of them and
  the local copies in ONE transaction (`QueueStore.enqueue_many`). Their queue ids start with
  `FORWARD_PREFIX`, which is how the queue runner's results are told apart from submissions.
- Results: the queue runner's outcome for a forwarded copy is `forward.sent` (accepted) or
  `forward.failed` (refused for good) instead of `remote.delivered` / `remote.rejected`, and
  each result counts on the target's `permanent_failures` (a copy that expired in the queue,
  `queue.expired`, counts as a failure); the member is told (`forward.target_failing`) when a
  target reaches `FORWARD_FAILURES_FLAGGED` in a row.
- Bounces to an SRS address: decoded (hash and age checked) and relayed to the original
  sender, from our MX (`srs_recipient`) and from our own queue's reports (`original_sender`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from tayori.core.outcome import Direction, Outcome, OutcomeKind, utcnow
from tayori.core.reasons import reason
from tayori.delivery.attempts import AttemptResult, Kind
from tayori.delivery.local import DeliveryResult, Filing, LocalCopies, LocalDelivery, Recipient
from tayori.delivery.summary import summarise
from tayori.delivery.trace import Arrival, new_queue_id, normalise_line_endings, received_header
from tayori.pipeline.member_rules import MemberRules, from_addresses
from tayori.pipeline.steps import Client
from tayori.pipeline.verdicts import Verdict
from tayori.rules.decide import ForwardPlan, plan_forwarding
from tayori.rules.model import FORWARD_FAILURES_FLAGGED, AccountFilters
from tayori.rules.srs import Srs, SrsError, forwarding_loop, is_srs
from tayori.storage.interfaces import BlobStore, MetadataStore, QueueStore
from tayori.storage.records import Account, NewQueuedMessage, QueueEntry, SpecialUse
from tayori.storage.sql_rules import RulesStore

__all__ = ["FORWARD_PREFIX", "Forwarder", "is_forwarded"]

log = logging.getLogger(__name__)

FORWARD_PREFIX = "fwd-"
"""Queue ids of forwarded copies; `new_queue_id` never makes lowercase letters."""

_SKIPPED = {
    "loop": "not forwarded: forwarding loop (our Delivered-To or too many hops)",
    "spam": "not forwarded: judged spam (the member forwards no spam)",
}


def is_forwarded(entry: QueueEntry) -> bool:
    """Whether a queued message is a member's forwarded copy."""
    return entry.queue_id.startswith(FORWARD_PREFIX) and entry.account_id is not None


@dataclass(frozen=True, slots=True)
class _Copy:
    """One member's forwarded copy, written and ready to be queued."""

    recipient: Recipient
    message: NewQueuedMessage
    note: str


class Forwarder:
    """Plans and delivers forwarding for the MX (and for mail members submit to each
    other and delivery reports filed here: `member_plans`), relays bounces to SRS addresses,
    and turns the queue's results for forwarded copies into the member's outcomes."""

    def __init__(
        self,
        metadata: MetadataStore,
        local: LocalDelivery,
        blobs: BlobStore,
        queue: QueueStore,
        rules: RulesStore,
        srs_secret: bytes,
        hostname: str,
        lifetime: timedelta,
        queued: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._metadata = metadata
        self._local = local
        self._blobs = blobs
        self._queue = queue
        self._rules = rules
        self._secret = srs_secret
        self._hostname = hostname
        self._lifetime = lifetime
        self._queued = queued
        self._clock = clock

    # --- deciding ------------------------------------------------------------------------

    def plan(
        self, account: Account, filters: AccountFilters, filing: Filing, sender: str, raw: bytes
    ) -> ForwardPlan:
        """Where this member's copy goes (pure: the filters are already read)."""
        settings = filters.forwarding
        if not settings.targets:
            return ForwardPlan((), keep_copy=True)
        return plan_forwarding(
            settings,
            is_spam=filing.mailbox is SpecialUse.JUNK,
            envelope_sender=sender,
            from_addresses=from_addresses(raw),
            rules=filters.rules,
            loop=forwarding_loop(raw, [account.address]),
        )

    async def plans(
        self,
        member_rules: MemberRules,
        client: Client,
        recipients: Sequence[Recipient],
        filing: Mapping[int, Filing],
        raw: bytes,
    ) -> dict[int, ForwardPlan]:
        """Plans of the recipients who forward (none: deliver as usual). The filters come
        from the transaction's memo, read already by the reject-list step."""
        plans: dict[int, ForwardPlan] = {}
        for recipient in recipients:
            account = recipient.account
            filters = await member_rules.filters(account, client)
            if filters.forwarding.targets:
                where = filing.get(account.id, Filing())
                plans[account.id] = self.plan(account, filters, where, client.sender, raw)
        return plans

    async def member_plans(
        self, sender: str, recipients: Sequence[Recipient], raw: bytes
    ) -> dict[int, ForwardPlan]:
        """Plans for members reached outside the MX pipeline (mail members submit to each
        other, delivery reports filed here), where no filters were read yet: ONE batched
        read of who forwards at all, then the full filters of those few only, so a message
        to members without forwarding costs a single query. Such mail is never Junk."""
        ids = {recipient.account.id for recipient in recipients}
        if not ids:
            return {}
        forwarding = await asyncio.to_thread(self._rules.forwarding_accounts, ids)
        plans: dict[int, ForwardPlan] = {}
        for recipient in recipients:
            account = recipient.account
            if account.id in forwarding and account.id not in plans:
                filters = await asyncio.to_thread(self._rules.filters_for, account.id)
                if filters.forwarding.targets:
                    plans[account.id] = self.plan(account, filters, Filing(), sender, raw)
        return plans

    # --- delivering ------------------------------------------------------------------------

    async def deliver(
        self,
        sender: str,
        recipients: Sequence[Recipient],
        content: bytes,
        original: bytes,
        arrival: Arrival,
        filing: Mapping[int, Filing] | None,
        plans: Mapping[int, ForwardPlan],
        relays: Sequence[str] = (),
        *,
        queued: Sequence[NewQueuedMessage] = (),
    ) -> DeliveryResult:
        """Local copies (`content`, with our headers) for members who keep one, forwarded
        copies (`original`, byte for byte) for those who forward, and bounces relayed to the
        original senders of SRS addresses (`relays`): all committed at once, then answered.

        `queued`: messages the caller has written already (a submission's copy for remote
        recipients), committed in the same transaction; their blobs are dropped here when
        nothing is committed."""
        body = normalise_line_endings(content)
        summary = summarise(body)
        raw = normalise_line_endings(original)
        copies: list[_Copy] = []
        refs: list[str] = [message.blob_ref for message in queued]
        try:
            for recipient in recipients:
                plan = plans.get(recipient.account.id)
                if plan is not None and plan.targets:
                    copy = await self._forward_copy(recipient, plan, sender, raw, arrival)
                    refs.append(copy.message.blob_ref)
                    copies.append(copy)
            messages = [*queued, *(copy.message for copy in copies)]
            if relays:
                relayed = await self._relay_copy(sender, relays, raw, arrival)
                refs.append(relayed.blob_ref)
                messages.append(relayed)
        except Exception as error:
            log.error("forwarding: writing the copies failed, answering 451: %s", error)
            await self._drop(refs)
            return DeliveryResult(reason("store.failed").reply_for(), 0)

        notes = {copy.recipient.account.id: copy.note for copy in copies}
        filed = {
            r.account.id: _filed((filing or {}).get(r.account.id, Filing()), plans, notes, r)
            for r in recipients
        }
        kept = [r for r in recipients if plans.get(r.account.id, _KEEP).keep_copy]
        accepted = reason("delivered").reply_for(queue_id=arrival.queue_id)
        outcomes = [self._queued_outcome(c, sender, arrival, str(accepted)) for c in copies]
        outcomes = [o for o, c in zip(outcomes, copies, strict=True) if not _keeps(plans, c)]
        local: LocalCopies | None = None
        if kept:
            prepared = await self._local.prepare(
                sender, kept, body, summary, arrival, others_accepted=bool(messages), filing=filed
            )
            if isinstance(prepared, DeliveryResult):
                await self._drop(refs)
                return prepared
            local = prepared
        try:
            await asyncio.to_thread(
                self._queue.enqueue_many, messages, local.items if local else [], outcomes
            )
        except Exception as error:
            await self._drop(refs)
            if local is not None:
                await self._local.store_failed(local, error)
            else:
                log.error("forwarding: queueing failed, answering 451: %s", error)
            return DeliveryResult(reason("store.failed").reply_for(), 0)
        if messages:
            self._queued()
        return DeliveryResult(accepted, len(local.items if local else []) + len(messages))

    async def _forward_copy(
        self, recipient: Recipient, plan: ForwardPlan, sender: str, raw: bytes, arrival: Arrival
    ) -> _Copy:
        account = recipient.account
        rewritten = await self._rewrite(sender, account)
        trace = f"Delivered-To: {account.address}\r\n" + received_header(
            arrival, self._hostname, account.address
        )
        copy = trace.encode("utf-8", "surrogateescape") + raw
        ref = await asyncio.to_thread(self._blobs.put, [copy])
        summary = summarise(raw)
        queue_id = FORWARD_PREFIX + new_queue_id()
        message = NewQueuedMessage(
            queue_id=queue_id,
            sender=rewritten,
            account_id=account.id,
            blob_ref=ref,
            size=len(copy),
            message_id=summary.message_id,
            subject=summary.subject,
            created=arrival.time,
            expires=arrival.time + self._lifetime,
            recipients=plan.targets,
        )
        note = (
            f"forwarded to {', '.join(plan.targets)} as queue_id={queue_id} "
            f"(envelope sender <{rewritten}>)"
        )
        return _Copy(recipient, message, note)

    async def _relay_copy(
        self, sender: str, relays: Sequence[str], raw: bytes, arrival: Arrival
    ) -> NewQueuedMessage:
        single = relays[0] if len(relays) == 1 else None
        copy = received_header(arrival, self._hostname, single).encode() + raw
        ref = await asyncio.to_thread(self._blobs.put, [copy])
        summary = summarise(raw)
        return NewQueuedMessage(
            queue_id=new_queue_id(),
            sender=sender,
            account_id=None,
            blob_ref=ref,
            size=len(copy),
            message_id=summary.message_id,
            subject=summary.subject,
            created=arrival.time,
            expires=arrival.time + self._lifetime,
            recipients=tuple(relays),
        )

    async def _rewrite(self, sender: str, account: Account) -> str:
        """SRS0 at the member's domain, unless the sender is empty or one of ours (our
        servers are in our own SPF record, and a bounce must keep its null sender)."""
        if not sender:
            return sender
        lookup = await asyncio.to_thread(self._metadata.lookup_recipient, sender.lower())
        if lookup.hosted:
            return sender
        domain = account.address.rpartition("@")[2]
        return Srs(self._secret, domain).encode(sender, self._clock())

    def _queued_outcome(self, copy: _Copy, sender: str, arrival: Arrival, reply: str) -> Outcome:
        """The member's outcome when no copy is kept here: the message went on its way."""
        return Outcome(
            direction=Direction.INBOUND,
            sender=sender,
            recipient=copy.recipient.address,
            outcome=OutcomeKind.FORWARDED,
            reason="forward.queued",
            reply=reply,
            detail=f"queue_id={arrival.queue_id}; {copy.note}"[:1000],
            account_id=copy.recipient.account.id,
            message_id=copy.message.message_id,
            subject=copy.message.subject,
            size=copy.message.size,
            remote_ip=arrival.client_ip,
            remote_host=arrival.client_host,
            time=arrival.time,
        )

    async def _drop(self, refs: list[str]) -> None:
        if refs:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._blobs.delete, refs)

    # --- bounces to SRS addresses ---------------------------------------------------------

    def original_sender(self, address: str) -> str | None:
        """The original sender behind one of our SRS addresses; None when `address` is not
        one, or is forged or expired (logged)."""
        if not is_srs(address):
            return None
        try:
            return Srs(self._secret, "").decode(address, self._clock())
        except SrsError as error:
            log.info("not relaying to an SRS address: %s", error)
            return None

    def srs_recipient(self, address: str) -> str | Verdict:
        """At RCPT, for an address in a hosted domain that no account has: the original
        sender to relay to, or the refusal (`srs.invalid`). Only call for SRS addresses."""
        try:
            return Srs(self._secret, "").decode(address, self._clock())
        except SrsError as error:
            return Verdict.reject("srs.invalid", str(error), address=address)

    # --- the queue's results for forwarded copies -------------------------------------------

    def relabel(self, entry: QueueEntry, results: dict[int, AttemptResult]) -> None:
        """Name a forwarded copy's results as the member reads them (before recording)."""
        if not is_forwarded(entry):
            return
        for recipient_id, result in list(results.items()):
            if result.kind is Kind.DELIVERED:
                results[recipient_id] = replace(result, reason="forward.sent")
            elif result.kind is Kind.FAILED and result.reason == "remote.rejected":
                results[recipient_id] = replace(result, reason="forward.failed")

    async def recorded(self, entry: QueueEntry, results: Mapping[int, AttemptResult]) -> None:
        """Count permanent failures per target (reset on success); flag a target to the
        member when it reaches `FORWARD_FAILURES_FLAGGED` failures in a row."""
        if not is_forwarded(entry) or entry.account_id is None:
            return
        account_id = entry.account_id
        expired = self._clock() >= entry.expires  # the recorder bounced what was deferred
        flagged: list[Outcome] = []
        for recipient in entry.recipients:
            result = results.get(recipient.id)
            if result is None or (result.kind is Kind.DEFERRED and not expired):
                continue
            bounced = result.kind is not Kind.DELIVERED
            try:
                count = await asyncio.to_thread(
                    self._rules.record_forward_result,
                    account_id,
                    recipient.recipient,
                    bounced=bounced,
                )
            except Exception:
                log.exception("forwarding: counting the result for %s failed", entry.queue_id)
                continue
            if bounced and count == FORWARD_FAILURES_FLAGGED:
                flagged.append(
                    Outcome(
                        direction=Direction.OUTBOUND,
                        sender=entry.sender,
                        recipient=recipient.recipient,
                        outcome=OutcomeKind.BOUNCED,
                        reason="forward.target_failing",
                        reply=result.reply,
                        detail=(
                            f"{count} permanent failures in a row; last queue_id="
                            f"{entry.queue_id}; see `tayori forward list`"
                        ),
                        account_id=account_id,
                        message_id=entry.message_id,
                        subject=entry.subject,
                        size=entry.size,
                        remote_ip=result.remote_ip,
                        remote_host=result.remote_host,
                        time=self._clock(),
                    )
                )
        if flagged:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._metadata.record_outcomes, flagged)


_KEEP = ForwardPlan((), keep_copy=True)


def _keeps(plans: Mapping[int, ForwardPlan], copy: _Copy) -> bool:
    return plans.get(copy.recipient.account.id, _KEEP).keep_copy


def _filed(
    filing: Filing, plans: Mapping[int, ForwardPlan], notes: Mapping[int, str], r: Recipient
) -> Filing:
    """The local copy's filing with what forwarding did added to the outcome: a loop is the
    copy's reason when it lands in the inbox (`forward.loop`: kept here, not forwarded)."""
    plan = plans.get(r.account.id)
    if plan is None:
        return filing
    note = notes.get(r.account.id, "")
    if plan.skipped == "loop":
        note = _SKIPPED["loop"]
        if filing.mailbox is SpecialUse.INBOX:
            filing = replace(filing, reason="forward.loop")
    elif plan.skipped is not None:
        rule = plan.skipped.removeprefix("rule:")
        note = _SKIPPED.get(plan.skipped, f"not forwarded: forwarding reject rule {rule}")
    if not note:
        return filing
    return replace(filing, detail=f"{filing.detail}; {note}" if filing.detail else note)
