"""Accounts that keep hitting their sending limits.

A member who hits a limit once sent a newsletter; one who hits it again and again within a
day usually has a stolen password, the commonest reason an ISP ends up on blocklists. The
flag is derived from the `rate.limited` outcomes already stored, so it needs no state of
its own and clears by itself when the account calms down.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tayori.storage.interfaces import MetadataStore

WINDOW = timedelta(days=1)
_SCAN = 10_000


def sending_limit_hits(metadata: MetadataStore, account_id: int, now: datetime) -> int:
    """How often the account was refused for a sending limit in the last day."""
    recent = metadata.list_outcomes(account_id=account_id, since=now - WINDOW, limit=_SCAN)
    return sum(1 for stored in recent if stored.outcome.reason == "rate.limited")


def is_flagged(hits: int, flag_after: int) -> bool:
    return hits >= flag_after
