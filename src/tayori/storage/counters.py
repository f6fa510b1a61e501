"""Change counters (migration 0008): a number raised in the same transaction as every change
of one kind of data, so that a process may cache that data and revalidate it with one small
read. Several `tayori serve` processes and nodes share a database, so an in-process "I
changed it" signal would not do: the counter is in the database every process reads.

A missing row (a database migrated before the row was added) reads as None, which callers
take as "do not cache": slower, never wrong.
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select, update

from tayori.storage.prepared import PreparedSelect
from tayori.storage.schema import change_counters

__all__ = ["FILTERS", "SPAM", "counter_value", "raise_counter"]

FILTERS = "filters"
"""Reject lists, safe senders, spam and forwarding settings (the rules store)."""
SPAM = "spam"
"""The spam classifier's learnt counts, global and per account (the token store)."""


# Through the SQLite driver (`PreparedSelect`): read twice per message (filters, spam counts).
_READ = PreparedSelect(
    select(change_counters.c.counter).where(change_counters.c.name == bindparam("counter_name"))
)
_RAISE = (
    update(change_counters)
    .where(change_counters.c.name == bindparam("counter_name"))
    .values(counter=change_counters.c.counter + 1)
)
# Built once: these run for every message, and building a statement costs more than
# running it.


def counter_value(conn: Connection, name: str) -> int | None:
    row = _READ.one_or_none(conn, {"counter_name": name})
    return None if row is None or row.counter is None else int(row.counter)


def raise_counter(conn: Connection, name: str) -> None:
    conn.execute(_RAISE, {"counter_name": name})
