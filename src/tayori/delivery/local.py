"""Local delivery: one durable copy per recipient account, then one outcome each.

Order matters for durability: every recipient's blob is written and fsynced first, then the
metadata (message rows, usage, outcomes) is group-committed, and only then does the caller
answer `250`. A crash before the commit leaves at most unreferenced blob files, never a
message the sender was told we have but we do not.

Where the copies are written is the wiring's choice (`copies_in_committer`): with message
files (SQLite) the group committer's thread writes them just before its transaction, so a
message costs one thread hop instead of two (`tayori.delivery.committer`); with blobs in
PostgreSQL each copy is a write over the network, done in a worker thread while the
committer commits others. Either way the copy is durable before its row is committed.

Quota is enforced before anything is written, against usage read at the end of DATA.
When a message is accepted for some recipients, the others whose quota it would exceed
get it anyway (like Dovecot's quota grace): SMTP has one DATA reply for all recipients,
and refusing them silently would lose mail. A message every recipient is too full for is
refused with 552 5.2.2, which the sender's server turns into an error mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from tayori.core.offload import Offload, in_thread
from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.core.reasons import reason
from tayori.core.reply import SmtpReply
from tayori.delivery.committer import DeliveryCommitter
from tayori.delivery.indexing import message_index
from tayori.delivery.summary import summarise
from tayori.delivery.trace import Arrival, normalise_line_endings, trace_headers
from tayori.pipeline.recipients import over_quota, quota_detail
from tayori.storage.interfaces import BlobStore, MetadataStore
from tayori.storage.records import (
    Account,
    MessageIndex,
    MessageSummary,
    NewMessage,
    SpecialUse,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recipient:
    """An accepted RCPT address and the account it reaches (aliases give several)."""

    address: str
    account: Account


@dataclass(frozen=True, slots=True)
class Filing:
    """Where one account's copy goes and why, with the headers added to that copy only
    (Authentication-Results, X-Spam-*). The default is the inbox, delivered."""

    mailbox: SpecialUse = SpecialUse.INBOX
    reason: str = "delivered"
    detail: str = ""
    headers: bytes = b""


@dataclass(slots=True)
class LocalCopies:
    """Members' copies written durably and the appends that commit them."""

    base: Outcome
    recipients: tuple[Recipient, ...]
    size: int
    reply: SmtpReply
    refs: list[str] = field(default_factory=list)
    """The blobs written so far: what `store_failed` deletes."""
    items: list[NewMessage] = field(default_factory=list)
    unwritten: list[bytes] = field(default_factory=list)
    """Copies `write` has yet to store, one per item (whose `blob_ref` is empty until then)."""

    def write(self, blobs: BlobStore) -> list[NewMessage]:
        """Blocking: store the unwritten copies durably and return the appends that refer
        to them (run by the committer's thread, `DeliveryCommitter.append_after`)."""
        for copy in self.unwritten:
            self.refs.append(blobs.put([copy]))
        self.unwritten = []
        self.items = [
            replace(item, blob_ref=ref) for item, ref in zip(self.items, self.refs, strict=True)
        ]
        return self.items


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    reply: SmtpReply
    delivered: int
    """How many recipient copies were committed."""


class LocalDelivery:
    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        committer: DeliveryCommitter,
        hostname: str,
        *,
        copies_in_committer: bool = False,
        reads: Offload = in_thread,
    ) -> None:
        """`copies_in_committer`: `deliver` leaves the copies to the committer's thread
        (message files; see the module docstring). `reads`: where `deliver` then reads the
        quota and works out the summary and search entry (`tayori.core.offload`)."""
        self._metadata = metadata
        self._blobs = blobs
        self._committer = committer
        self._hostname = hostname
        self._copies_in_committer = copies_in_committer
        self._reads = reads

    async def deliver(
        self,
        sender: str,
        recipients: Sequence[Recipient],
        content: bytes,
        arrival: Arrival,
        filing: Mapping[int, Filing] | None = None,
    ) -> DeliveryResult:
        """The MX path: write the copies, group-commit them, answer. `filing` per account
        id: Junk instead of the inbox, and headers for that copy."""
        body = normalise_line_endings(content)
        later = self._copies_in_committer
        prepared = await self.prepare(
            sender, recipients, body, None, arrival, filing=filing, write_later=later
        )
        if isinstance(prepared, DeliveryResult):
            return prepared
        try:
            if later:
                write = functools.partial(prepared.write, self._blobs)
                await self._committer.append_after(write, len(prepared.items))
            else:
                await self._committer.append(prepared.items)
        except Exception as error:
            await self.store_failed(prepared, error)
            return DeliveryResult(reason("store.failed").reply_for(), 0)
        return DeliveryResult(prepared.reply, len(prepared.items))

    async def prepare(
        self,
        sender: str,
        recipients: Sequence[Recipient],
        body: bytes,
        summary: MessageSummary | None,
        arrival: Arrival,
        *,
        others_accepted: bool = False,
        filing: Mapping[int, Filing] | None = None,
        write_later: bool = False,
    ) -> LocalCopies | DeliveryResult:
        """Check quota, write every recipient's copy durably, and build the appends (with
        their outcomes) for the caller to commit — alone (MX) or together with the queued
        remote copy (submission). A result instead means: refused or failed, answer this.

        `others_accepted`: the message goes to other (remote) recipients too, so members
        whose quota it would exceed get it as grace instead of a refusal for everyone.
        `summary` None: parsed from `body` in the worker thread, off the event loop.
        `write_later`: the copies are not written here but left in `unwritten` for
        `LocalCopies.write`, and the rest runs through `reads` instead of a worker thread."""
        filed = {r.account.id: (filing or {}).get(r.account.id, Filing()) for r in recipients}
        copies = [
            trace_headers(arrival, self._hostname, sender, r.account.address)
            + filed[r.account.id].headers
            + body
            for r in recipients
        ]
        # At most one worker-thread hop for the summary, the quota read, every copy's durable
        # write and the search index: under load each hop waits its turn for a thread and the
        # GIL, and the event loop is every session's bottleneck.
        known: MessageSummary
        if write_later:
            examined = await self._reads(
                self._examine, recipients, body, summary, not others_accepted
            )
            accounts, known, index, too_big = examined
            refs = [""] * (0 if too_big else len(copies))
            failure = None
        else:
            written = await asyncio.to_thread(
                self._write_copies, recipients, copies, body, summary, not others_accepted
            )
            accounts, known, refs, index, failure = written
        summary = known
        base = Outcome(
            direction=Direction.INBOUND,
            sender=sender,
            recipient="",
            outcome=OutcomeKind.DELIVERED,
            reason="delivered",
            message_id=summary.message_id,
            subject=summary.subject,
            remote_ip=arrival.client_ip,
            remote_host=arrival.client_host,
        )
        accepted = reason("delivered").reply_for(queue_id=arrival.queue_id)
        prepared = LocalCopies(base, tuple(recipients), len(body), accepted)
        if write_later:
            prepared.unwritten = copies
        else:
            prepared.refs.extend(refs)
        if failure is not None:
            await self.store_failed(prepared, failure)
            return DeliveryResult(reason("store.failed").reply_for(), 0)
        full = {r.account.id for r in recipients if over_quota(accounts[r.account.id], len(body))}
        if len(full) == len(recipients) and not others_accepted:
            return await self._refuse_over_quota(base, recipients, accounts, body)
        refused = reason("rcpt.over_quota")
        for recipient, copy, ref in zip(recipients, copies, refs, strict=True):
            where = filed[recipient.account.id]
            detail = f"queue_id={arrival.queue_id}"
            if where.detail:
                detail += f"; {where.detail}"
            if recipient.account.id in full:
                detail += "; over quota, accepted as grace with other recipients"
            junked = where.mailbox is SpecialUse.JUNK
            outcome = replace(
                base,
                recipient=recipient.address,
                account_id=recipient.account.id,
                size=len(copy),
                reply=str(accepted),
                detail=detail[:1000],
                time=arrival.time,
                outcome=OutcomeKind.JUNKED if junked else OutcomeKind.DELIVERED,
                reason=where.reason,
            )
            prepared.items.append(
                NewMessage(
                    account_id=recipient.account.id,
                    mailbox=where.mailbox,
                    blob_ref=ref,
                    size=len(copy),
                    internal_date=arrival.time,
                    summary=summary,
                    on_delivered=outcome,
                    on_over_quota=replace(
                        outcome,
                        outcome=OutcomeKind.REJECTED,
                        reason=refused.code,
                        reply=str(refused.reply_for(address=recipient.address)),
                    ),
                    enforce_quota=False,
                    index=index,
                )
            )
        return prepared

    def _write_copies(
        self,
        recipients: Sequence[Recipient],
        copies: Sequence[bytes],
        body: bytes,
        summary: MessageSummary | None,
        refusable: bool,
    ) -> tuple[
        dict[int, Account], MessageSummary, list[str], MessageIndex | None, Exception | None
    ]:
        """In a worker thread: `_examine`, then, unless the message is too big for every
        recipient (and `refusable`), each copy written durably. Returns (accounts, summary,
        refs written, index, the failure that stopped writing)."""
        accounts, summary, index, too_big = self._examine(recipients, body, summary, refusable)
        if too_big:
            return accounts, summary, [], None, None
        refs: list[str] = []
        try:
            for copy in copies:
                refs.append(self._blobs.put([copy]))
        except Exception as error:
            return accounts, summary, refs, None, error
        return accounts, summary, refs, index, None

    def _examine(
        self,
        recipients: Sequence[Recipient],
        body: bytes,
        summary: MessageSummary | None,
        refusable: bool,
    ) -> tuple[dict[int, Account], MessageSummary, MessageIndex | None, bool]:
        """Blocking: the summary (unless given), usage as of now (not as of RCPT: other
        messages may have arrived meanwhile) and, unless the message is too big for every
        recipient (and `refusable`), the search index entry. Returns (accounts, summary,
        index, whether it is too big for every recipient)."""
        if summary is None:
            summary = summarise(body)
        accounts: dict[int, Account] = {}
        for recipient in recipients:
            account = self._metadata.get_account_by_id(recipient.account.id)
            accounts[recipient.account.id] = account or recipient.account
        if refusable and all(over_quota(accounts[r.account.id], len(body)) for r in recipients):
            return accounts, summary, None, True
        return accounts, summary, _index_or_none(body), False

    async def _refuse_over_quota(
        self,
        base: Outcome,
        recipients: Sequence[Recipient],
        accounts: dict[int, Account],
        body: bytes,
    ) -> DeliveryResult:
        await self._record_failures(
            base,
            recipients,
            len(body),
            OutcomeKind.REJECTED,
            "rcpt.over_quota",
            lambda r: quota_detail(accounts[r.account.id], len(body)),
        )
        return DeliveryResult(reason("rcpt.over_quota").reply_for(address=recipients[0].address), 0)

    async def store_failed(self, prepared: LocalCopies, error: Exception) -> None:
        """Nothing was committed: drop the blobs, tell the sender to retry, note why."""
        log.error("store failed, answering 451: %s", error)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._blobs.delete, prepared.refs)
        detail = f"{type(error).__name__}: {error}"[:500]
        await self._record_failures(
            prepared.base,
            prepared.recipients,
            prepared.size,
            OutcomeKind.DEFERRED,
            "store.failed",
            lambda _: detail,
        )

    async def _record_failures(
        self,
        base: Outcome,
        recipients: Sequence[Recipient],
        size: int,
        kind: OutcomeKind,
        code: str,
        detail: Callable[[Recipient], str],
    ) -> None:
        """One outcome per recipient for a message that was not stored. Best effort: when
        the store itself is what failed, the sender's retry still brings the message."""
        entry = reason(code)
        outcomes = [
            replace(
                base,
                recipient=r.address,
                account_id=r.account.id,
                size=size,
                outcome=kind,
                reason=code,
                reply=str(entry.reply_for(address=r.address)),
                detail=detail(r),
            )
            for r in recipients
        ]
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._metadata.record_outcomes, outcomes)


def _index_or_none(body: bytes) -> MessageIndex | None:
    """The search index entry, or None (left for `tayori mailbox reindex`) should the MIME
    layer fail on some input after all: a message must never be refused for its index."""
    try:
        return message_index(body)
    except Exception:
        log.exception("could not index a message for search; it is stored without")
        return None
