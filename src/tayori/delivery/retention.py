"""Junk retention: messages in a member's Junk folder longer than `[spam] junk_retention_days`
are deleted, each with a `junk.expired` outcome, so that "where did that mail go?" still has
an answer after the message itself is gone.

Run every hour by `tayori serve` (`run_periodically`) and on demand by `tayori junk expire`.
The age is the message's arrival (internal date), not its Date: header, which senders set.
Each account is expunged in its own transaction, then the outcomes are recorded and the blobs
deleted: a crash in between leaves at most unreferenced blob files (never a message without
its file) and, rarely, a purge without its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tayori.core.outcome import Direction, Outcome, OutcomeKind, utcnow
from tayori.storage.interfaces import BlobStore, MetadataStore
from tayori.storage.records import SpecialUse, StoredMessage

__all__ = ["PURGE_INTERVAL", "JunkPurge", "purge_junk", "run_periodically"]

log = logging.getLogger(__name__)

PURGE_INTERVAL = 3600.0
"""Seconds between purges in `tayori serve`: Junk is kept for days, an hour late is nothing."""


@dataclass(slots=True)
class JunkPurge:
    """What one purge did."""

    messages: int = 0
    bytes: int = 0
    accounts: set[int] = field(default_factory=set)


def purge_junk(
    metadata: MetadataStore, blobs: BlobStore, now: datetime, retention_days: int
) -> JunkPurge:
    """Delete Junk messages that arrived before `now - retention_days`; 0 days keeps all."""
    done = JunkPurge()
    if retention_days <= 0:
        return done
    cutoff = now - timedelta(days=retention_days)
    for account in metadata.list_accounts():
        mailbox = metadata.get_mailbox(account.id, SpecialUse.JUNK)
        old = [m for m in metadata.list_messages(mailbox.id) if m.internal_date < cutoff]
        if not old:
            continue
        refs = metadata.expunge(mailbox.id, [m.id for m in old])
        metadata.record_outcomes(
            [_outcome(account.id, account.address, m, now, retention_days) for m in old]
        )
        with contextlib.suppress(Exception):  # an orphan file is only wasted space
            blobs.delete(refs)
        done.messages += len(old)
        done.bytes += sum(m.size for m in old)
        done.accounts.add(account.id)
    return done


def _outcome(
    account_id: int, address: str, message: StoredMessage, now: datetime, days: int
) -> Outcome:
    return Outcome(
        direction=Direction.INBOUND,
        sender=message.summary.from_[:500],
        recipient=address,
        outcome=OutcomeKind.DISCARDED,
        reason="junk.expired",
        detail=(
            f"Junk UID {message.uid}, arrived {message.internal_date.isoformat()}, kept {days} days"
        ),
        account_id=account_id,
        message_id=message.summary.message_id,
        subject=message.summary.subject,
        size=message.size,
        time=now,
    )


async def run_periodically(
    metadata: MetadataStore,
    blobs: BlobStore,
    retention_days: int,
    *,
    clock: Callable[[], datetime] = utcnow,
    interval: float = PURGE_INTERVAL,
) -> None:
    """Purge now and then every `interval` seconds until cancelled; a failed purge is
    logged and tried again at the next round."""
    while True:
        try:
            done = await asyncio.to_thread(purge_junk, metadata, blobs, clock(), retention_days)
            if done.messages:
                log.info(
                    "junk retention: deleted %d messages (%d bytes) of %d accounts",
                    done.messages,
                    done.bytes,
                    len(done.accounts),
                )
        except Exception:
            log.exception("junk retention: the purge failed; trying again later")
        await asyncio.sleep(interval)
