"""What an attempt means, once its transactions are done: recipient states, one outcome per
recipient, and the reports (DSN) to the sender.

Per recipient: `2xx` delivered, `5xx` (or our own permanent verdict: null MX, NXDOMAIN, no
8BITMIME) bounced, anything else deferred until `retry_initial × 2^attempts` later (at most
`retry_max`, never past the expiry, when the last try happens). Still deferred at expiry:
expired, and bounced. The sender gets one failure report per attempt that had failures,
and one delay warning, once, after `delay_warning`; an empty sender never gets a report.

Reports are handed to the `BounceSender` before the attempt is stored, so a crash in
between may send one twice but never loses it; a report that cannot be handed over keeps
its recipients queued, and the next attempt finds the failure (and reports it) again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Protocol

from tayori.config.settings import OutboundSettings
from tayori.core.errors import ConflictError, NotFoundError
from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.delivery.dsn import BounceSender, DsnAction, DsnRecipient, DsnReport, build_dsn
from tayori.delivery.summary import header_block
from tayori.storage.interfaces import BlobStore, QueueStore
from tayori.storage.records import QueuedRecipient, QueueEntry, RecipientState, RecipientUpdate

__all__ = [
    "ABANDONED_REPLY",
    "AttemptRecorder",
    "AttemptResult",
    "Clock",
    "Kind",
    "SystemClock",
    "abandoned",
    "retry_delay",
]

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
ABANDONED_REPLY = "554 5.0.0 Delivery abandoned by the postmaster"
EXPIRED_STATUS = "4.4.7"


class Clock(Protocol):
    """Wall-clock time for schedules (retries, expiry, leases); tests pass a fake one."""

    def now(self) -> datetime:
        """An aware datetime (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def retry_delay(settings: OutboundSettings, attempts: int) -> timedelta:
    """Wait before the next try of a recipient that has failed `attempts` times before
    this failure: retry_initial, doubling, at most retry_max."""
    seconds = settings.retry_initial * 2 ** min(attempts, 62)
    return timedelta(seconds=min(seconds, settings.retry_max))


class Kind(Enum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One recipient's attempt."""

    kind: Kind
    reason: str
    reply: str
    remote_host: str = ""
    remote_ip: str = ""
    tls: str | None = None
    local: bool = False
    """The reply is our own words (DNS, 8BITMIME, connection), not the remote server's."""
    status: str = ""
    """RFC 3463 status for the report; empty: from the reply."""
    note: str = ""
    """Extra words for the outcome's detail."""


class AttemptRecorder:
    """Stores attempt results for the queue runner (see the module docstring)."""

    def __init__(
        self,
        queue: QueueStore,
        blobs: BlobStore,
        settings: OutboundSettings,
        hostname: str,
        bounce: BounceSender,
        clock: Clock,
    ) -> None:
        self._queue = queue
        self._blobs = blobs
        self._settings = settings
        self._hostname = hostname
        self._bounce = bounce
        self._clock = clock

    async def record(
        self,
        entry: QueueEntry,
        holder: str,
        results: dict[int, AttemptResult],
        skipped: set[int],
    ) -> None:
        """Turn one claim's attempt results into states, outcomes and reports, and store
        them (which ends the lease). `skipped`: due recipients left untouched."""
        now = self._clock.now()
        expires = entry.expires
        expired = now >= expires
        failures: list[tuple[QueuedRecipient, AttemptResult]] = []
        deferred: list[tuple[QueuedRecipient, AttemptResult]] = []
        delivered: list[tuple[QueuedRecipient, AttemptResult]] = []
        for recipient in entry.recipients:
            if recipient.state is not RecipientState.QUEUED or recipient.id in skipped:
                continue
            result = results.get(recipient.id)
            if result is None:  # not due now
                if not expired:
                    continue
                result = AttemptResult(
                    Kind.DEFERRED,
                    "remote.deferred",
                    recipient.last_reply,
                    recipient.remote_mta,
                    local=not recipient.remote_mta,
                )
            if result.kind is Kind.DEFERRED and expired:
                result = replace(
                    result, kind=Kind.FAILED, reason="queue.expired", status=EXPIRED_STATUS
                )
            group = {
                Kind.DELIVERED: delivered,
                Kind.DEFERRED: deferred,
                Kind.FAILED: failures,
            }[result.kind]
            group.append((recipient, result))
        if not (failures or deferred or delivered):
            await asyncio.to_thread(self._queue.release, entry.id, holder)
            return

        outcomes: list[Outcome] = []
        updates: list[RecipientUpdate] = []
        report_stored = True
        if failures:
            report_stored = await self._report(entry, failures, DsnAction.FAILED, now, outcomes)
        warned = False
        if (
            deferred
            and not entry.delay_warned
            and self._settings.delay_warning > 0
            and now - entry.created >= timedelta(seconds=self._settings.delay_warning)
            and entry.sender
        ):
            warned = await self._report(entry, deferred, DsnAction.DELAYED, now, outcomes)

        for recipient, result in delivered:
            updates.append(self._update(recipient, RecipientState.DELIVERED, now, result, expires))
            outcomes.append(self._outcome(entry, recipient, result, OutcomeKind.DELIVERED, now))
        for recipient, result in deferred:
            updates.append(self._update(recipient, RecipientState.QUEUED, now, result, expires))
            outcomes.append(self._outcome(entry, recipient, result, OutcomeKind.DEFERRED, now))
        for recipient, result in failures:
            if not report_stored:
                # The report could not be stored: keep the recipient queued, so that the
                # failure (and its report) is found again at the next attempt.
                retry = replace(result, kind=Kind.DEFERRED)
                updates.append(
                    self._update(recipient, RecipientState.QUEUED, now, retry, entry.expires)
                )
                outcomes.append(
                    self._outcome(
                        entry,
                        recipient,
                        result,
                        OutcomeKind.DEFERRED,
                        now,
                        "the delivery report could not be stored; trying again",
                    )
                )
                continue
            state = (
                RecipientState.EXPIRED
                if result.reason == "queue.expired"
                else RecipientState.BOUNCED
            )
            updates.append(self._update(recipient, state, now, result, expires))
            note = "" if entry.sender else "no report: the sender is empty (a report itself)"
            outcomes.append(self._outcome(entry, recipient, result, OutcomeKind.BOUNCED, now, note))
        try:
            refs = await asyncio.to_thread(
                self._queue.record_attempts,
                entry.id,
                holder,
                updates,
                outcomes,
                delay_warned=warned,
            )
        except (ConflictError, NotFoundError) as error:
            # The lease went to another node, or an admin deleted the message: their
            # record stands; ours (which may repeat a delivery) is only logged.
            log.warning("queue %s: attempt not recorded: %s", entry.queue_id, error)
            return
        if refs:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._blobs.delete, refs)

    def _update(
        self,
        recipient: QueuedRecipient,
        state: RecipientState,
        now: datetime,
        result: AttemptResult,
        expires: datetime,
    ) -> RecipientUpdate:
        next_attempt = now
        if state is RecipientState.QUEUED:
            # Never past the expiry: the last try happens at the expiry itself.
            next_attempt = min(now + retry_delay(self._settings, recipient.attempts), expires)
        return RecipientUpdate(
            recipient_id=recipient.id,
            state=state,
            next_attempt=next_attempt,
            reply=result.reply,
            remote_mta=result.remote_host,
        )

    def _outcome(
        self,
        entry: QueueEntry,
        recipient: QueuedRecipient,
        result: AttemptResult,
        kind: OutcomeKind,
        now: datetime,
        note: str = "",
    ) -> Outcome:
        parts = [f"queue_id={entry.queue_id}", f"attempt={recipient.attempts + 1}"]
        if result.remote_host:
            parts.append(f"tls={result.tls or 'none'}")
        if result.local:
            parts.append("reply generated here")
        if result.note:
            parts.append(result.note)
        if kind is OutcomeKind.DEFERRED and note == "":
            parts.append(f"next attempt in {retry_delay(self._settings, recipient.attempts)}")
        if note:
            parts.append(note)
        return Outcome(
            direction=Direction.OUTBOUND,
            sender=entry.sender,
            recipient=recipient.recipient,
            outcome=kind,
            reason=result.reason,
            reply=result.reply,
            detail="; ".join(parts),
            account_id=entry.account_id,
            message_id=entry.message_id,
            subject=entry.subject,
            size=entry.size,
            remote_ip=result.remote_ip,
            remote_host=result.remote_host,
            time=now,
        )

    async def _report(
        self,
        entry: QueueEntry,
        pairs: Sequence[tuple[QueuedRecipient, AttemptResult]],
        action: DsnAction,
        now: datetime,
        outcomes: list[Outcome],
    ) -> bool:
        """Send a failure report (or delay warning) to the sender; adds its `dsn.sent`
        outcome. False when it could not be handed over (it is then tried again). True
        with nothing sent for an empty sender: reports never answer reports."""
        if not entry.sender:
            return True
        claim_body = b""
        with contextlib.suppress(Exception):
            claim_body = await asyncio.to_thread(_read_head, self._blobs, entry.blob_ref)
        recipients = tuple(
            DsnRecipient(
                address=recipient.recipient,
                action=action,
                reason=result.reason,
                reply=result.reply,
                remote_mta="" if result.local and not result.remote_host else result.remote_host,
                last_attempt=now,
                status=result.status,
                will_retry_until=entry.expires if action is DsnAction.DELAYED else None,
                local=result.local,
            )
            for recipient, result in pairs
        )
        report = DsnReport(
            reporting_mta=self._hostname,
            sender=entry.sender,
            queue_id=entry.queue_id,
            arrival_date=entry.created,
            recipients=recipients,
            original_headers=header_block(claim_body),
            subject=entry.subject,
            original_message_id=entry.message_id,
        )
        try:
            await self._bounce.send_bounce(entry.sender, build_dsn(report, now=now))
        except Exception as error:
            log.error(
                "queue %s: the %s report could not be sent: %s", entry.queue_id, action, error
            )
            return False
        kind = OutcomeKind.BOUNCED if action is DsnAction.FAILED else OutcomeKind.DEFERRED
        label = "failure report" if action is DsnAction.FAILED else "delay warning"
        outcomes.append(
            Outcome(
                direction=Direction.OUTBOUND,
                sender="",
                recipient=entry.sender,
                outcome=kind,
                reason="dsn.sent",
                reply="",
                detail=(
                    f"{label} for {', '.join(r.address for r in recipients)}; "
                    f"queue_id={entry.queue_id}"
                ),
                account_id=entry.account_id,
                message_id=entry.message_id,
                subject=entry.subject,
                size=entry.size,
                time=now,
            )
        )
        return True


def abandoned(recipient: QueuedRecipient) -> AttemptResult:
    """An admin gave up on the recipient (`tayori queue bounce`): the report quotes the
    last reply there was, else says so in our words."""
    return AttemptResult(
        Kind.FAILED,
        "queue.expired",
        recipient.last_reply or ABANDONED_REPLY,
        recipient.remote_mta,
        local=not recipient.remote_mta or not recipient.last_reply,
        status="5.0.0",
        note="bounced by an administrator (tayori queue bounce)",
    )


def _read_head(blobs: BlobStore, ref: str) -> bytes:
    """Enough of the message for its header block (a DSN carries headers only)."""
    with blobs.open(ref) as stream:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 16 * READ_CHUNK:
            chunk = stream.read(READ_CHUNK)
            if not chunk:
                break
            head += chunk
        return head
