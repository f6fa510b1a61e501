"""Where the delivery reports the queue runner writes go.

A report to one of our members goes into their INBOX like any mail; a report to someone
elsewhere goes back out through the queue with an empty envelope sender (RFC 5321 6.1), so
that a report about the report is never sent (no bounce loops).

A member who forwards (issue 3) gets the report where they read their mail: the `Forwarder`
plans and commits it as it does for mail from the MX (keep a copy or not, loops), with the
null sender kept (never rewritten with SRS). Who forwards is one batched read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from tayori.core.address import AddressError, parse_address
from tayori.core.outcome import utcnow
from tayori.core.reply import SmtpReply
from tayori.delivery.local import LocalDelivery, Recipient
from tayori.delivery.summary import summarise
from tayori.delivery.trace import Arrival, new_queue_id, normalise_line_endings, received_header
from tayori.storage.interfaces import BlobStore, MetadataStore, QueueStore
from tayori.storage.records import NewQueuedMessage

if TYPE_CHECKING:
    from tayori.delivery.forwarding import Forwarder

log = logging.getLogger(__name__)


class BounceUndeliverableError(Exception):
    """The report could not be stored; the runner keeps the recipient queued and retries."""


class BounceRouter:
    def __init__(
        self,
        metadata: MetadataStore,
        local: LocalDelivery,
        blobs: BlobStore,
        queue: QueueStore,
        hostname: str,
        lifetime: timedelta,
        queued: Callable[[], None] = lambda: None,
        original_sender: Callable[[str], str | None] | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        """`original_sender`: who is behind one of our SRS addresses (forwarding, issue 3),
        so a report about a forwarded copy reaches the one who sent the message.
        `forwarder`: reports to members who forward are forwarded (none: filed only)."""
        self._queued = queued
        self._forwarder = forwarder
        self._original_sender = original_sender
        self._metadata = metadata
        self._local = local
        self._blobs = blobs
        self._queue = queue
        self._hostname = hostname
        self._lifetime = lifetime

    async def send_bounce(self, recipient: str, raw: bytes) -> None:
        try:
            canonical = parse_address(recipient).canonical
        except AddressError:
            log.warning("not sending a delivery report to an unusable address")
            return
        original = self._original_sender(canonical) if self._original_sender else None
        if original is not None:
            recipient = canonical = original
        arrival = Arrival(
            helo=self._hostname,
            client_ip="127.0.0.1",
            client_host="localhost",
            tls_version=None,
            tls_cipher=None,
            authenticated=False,
            smtputf8=False,
            extended=True,
            queue_id=new_queue_id(),
            time=utcnow(),
        )
        lookup = await asyncio.to_thread(self._metadata.lookup_recipient, canonical)
        if lookup.hosted:
            if not lookup.accounts:  # the member has gone since sending: nobody to tell
                log.info("delivery report for a removed member dropped")
                return
            members = [Recipient(recipient, account) for account in lookup.accounts]
            plans = await self._forwarder.member_plans("", members, raw) if self._forwarder else {}
            if self._forwarder is not None and plans:
                result = await self._forwarder.deliver("", members, raw, raw, arrival, None, plans)
            else:
                result = await self._local.deliver("", members, raw, arrival)
            if result.reply.is_temporary:
                raise BounceUndeliverableError(str(result.reply))
            _log_refusal(result.reply)
            return
        body = normalise_line_endings(raw)
        copy = received_header(arrival, self._hostname, canonical).encode() + body
        summary = summarise(body)
        ref = await asyncio.to_thread(self._blobs.put, [copy])
        message = NewQueuedMessage(
            queue_id=arrival.queue_id,
            sender="",
            account_id=None,
            blob_ref=ref,
            size=len(copy),
            message_id=summary.message_id,
            subject=summary.subject,
            created=arrival.time,
            expires=arrival.time + self._lifetime,
            recipients=(canonical,),
        )
        try:
            await asyncio.to_thread(self._queue.enqueue, message)
        except Exception:
            await asyncio.to_thread(self._blobs.delete, [ref])
            raise
        self._queued()


def _log_refusal(reply: SmtpReply) -> None:
    if reply.is_permanent:  # e.g. the member's mailbox is full: recorded as an outcome
        log.info("delivery report refused locally: %s", reply)
