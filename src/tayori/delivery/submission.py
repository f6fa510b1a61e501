"""A member's message, stored for every recipient before the `250`.

Members' copies are made as for mail from outside (quota, trace headers); remote recipients
share one queued copy. Both are committed in one transaction, so a `250` never means "some
of the recipients".

Members who forward (スーパーメール転送, issue 3) get what they get from the MX: the
`Forwarder` plans their copies (loops, the forwarding reject list, keep a copy or not) and
commits the forwarded copies with the local ones and the remote copy, still one transaction.
Finding out who forwards is one batched read for all local recipients; the envelope sender
is ours, so it is never rewritten with SRS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING

from tayori.core.address import AddressError, parse_address
from tayori.core.reasons import reason
from tayori.delivery.dkim_signing import DkimSigner
from tayori.delivery.local import DeliveryResult, LocalCopies, LocalDelivery, Recipient
from tayori.delivery.summary import header_block, summarise
from tayori.delivery.trace import Arrival, normalise_line_endings, received_header
from tayori.storage.interfaces import BlobStore, MetadataStore, QueueStore
from tayori.storage.records import Account, MessageSummary, NewQueuedMessage

if TYPE_CHECKING:
    from tayori.delivery.forwarding import Forwarder
    from tayori.rules.decide import ForwardPlan

log = logging.getLogger(__name__)

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


def complete_headers(message: bytes, hostname: str, arrival: Arrival) -> bytes:
    """Add Date and Message-ID when the mail program left them out (RFC 6409 8.2, 8.3)."""
    present = {name.lower() for name in _FIELD_NAME.findall(header_block(message))}
    added = b""
    if b"date" not in present:
        added += f"Date: {format_datetime(arrival.time)}\r\n".encode()
    if b"message-id" not in present:
        added += f"Message-ID: <{uuid.uuid4().hex}@{hostname}>\r\n".encode()
    return added + message


async def may_send_as(metadata: MetadataStore, account: Account, address: str) -> bool:
    """The account's own addresses, and aliases that deliver to it, are its to send as: the
    one rule for mail programs (submission) and the webmail."""
    try:
        canonical = parse_address(address).canonical
    except AddressError:
        return False
    lookup = await asyncio.to_thread(metadata.lookup_recipient, canonical)
    return any(member.id == account.id for member in lookup.accounts)


class SubmissionDelivery:
    def __init__(
        self,
        local: LocalDelivery,
        blobs: BlobStore,
        queue: QueueStore,
        signer: DkimSigner,
        hostname: str,
        lifetime: timedelta,
        queued: Callable[[], None] = lambda: None,
        forwarder: Forwarder | None = None,
    ) -> None:
        """`queued` is called after a message for remote recipients is committed (wakes the
        queue runner). `forwarder`: local recipients who forward (none: no forwarding)."""
        self._queued = queued
        self._forwarder = forwarder
        self._local = local
        self._blobs = blobs
        self._queue = queue
        self._signer = signer
        self._hostname = hostname
        self._lifetime = lifetime

    async def submit(
        self,
        account: Account,
        sender: str,
        local: Sequence[Recipient],
        remote: Sequence[str],
        content: bytes,
        arrival: Arrival,
    ) -> DeliveryResult:
        body = complete_headers(normalise_line_endings(content), self._hostname, arrival)
        domain = sender.rpartition("@")[2]
        body = await asyncio.to_thread(self._signer.sign, body, domain)
        summary = summarise(body)
        if self._forwarder is not None and local:
            try:
                plans = await self._forwarder.member_plans(sender, local, body)
            except Exception as error:
                log.error("submission: reading forwarding failed, answering 451: %s", error)
                return DeliveryResult(reason("store.failed").reply_for(), 0)
            if plans:
                return await self._forward(
                    self._forwarder, account, sender, local, remote, body, summary, arrival, plans
                )
        copies: LocalCopies | None = None
        if local:
            prepared = await self._local.prepare(
                sender, local, body, summary, arrival, others_accepted=bool(remote)
            )
            if isinstance(prepared, DeliveryResult):
                return prepared
            copies = prepared
        remote_ref: str | None = None
        try:
            queued = None
            if remote:
                queued = await self._remote_copy(account, sender, remote, body, summary, arrival)
                remote_ref = queued.blob_ref
            items = copies.items if copies else []
            await asyncio.to_thread(self._queue.enqueue, queued, items)
        except Exception as error:
            if remote_ref is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._blobs.delete, [remote_ref])
            if copies is not None:
                await self._local.store_failed(copies, error)
            return DeliveryResult(reason("store.failed").reply_for(), 0)
        if queued is not None:
            self._queued()
        return await self._accepted(account, local, remote, arrival)

    async def _forward(
        self,
        forwarder: Forwarder,
        account: Account,
        sender: str,
        local: Sequence[Recipient],
        remote: Sequence[str],
        body: bytes,
        summary: MessageSummary,
        arrival: Arrival,
        plans: dict[int, ForwardPlan],
    ) -> DeliveryResult:
        """Some local recipients forward: the `Forwarder` commits their forwarded copies,
        the kept local copies and the remote copy together. The signed message is what is
        forwarded, so our DKIM signature verifies at the destination too."""
        queued: list[NewQueuedMessage] = []
        if remote:
            try:
                queued.append(
                    await self._remote_copy(account, sender, remote, body, summary, arrival)
                )
            except Exception as error:
                log.error("submission: writing the remote copy failed, answering 451: %s", error)
                return DeliveryResult(reason("store.failed").reply_for(), 0)
        result = await forwarder.deliver(
            sender, local, body, body, arrival, None, plans, queued=queued
        )
        if result.reply.is_temporary or result.reply.is_permanent:
            return result
        return await self._accepted(account, local, remote, arrival)

    async def _remote_copy(
        self,
        account: Account,
        sender: str,
        remote: Sequence[str],
        body: bytes,
        summary: MessageSummary,
        arrival: Arrival,
    ) -> NewQueuedMessage:
        """The one queued copy every remote recipient shares, its blob written."""
        single = remote[0] if len(remote) == 1 else None
        copy = received_header(arrival, self._hostname, single).encode() + body
        ref = await asyncio.to_thread(self._blobs.put, [copy])
        return NewQueuedMessage(
            queue_id=arrival.queue_id,
            sender=sender,
            account_id=account.id,
            blob_ref=ref,
            size=len(copy),
            message_id=summary.message_id,
            subject=summary.subject,
            created=arrival.time,
            expires=arrival.time + self._lifetime,
            recipients=tuple(remote),
        )

    async def _accepted(
        self, account: Account, local: Sequence[Recipient], remote: Sequence[str], arrival: Arrival
    ) -> DeliveryResult:
        # Counted after the commit: a failed count must not turn a stored message into a 451.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                self._queue.record_submission, account.id, arrival.time, len(local) + len(remote)
            )
        accepted = reason("delivered").reply_for(queue_id=arrival.queue_id)
        return DeliveryResult(accepted, len(local) + len(remote))
