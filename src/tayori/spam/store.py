"""Where the classifier's counts live: in memory (tests, benchmarks) or in the SQL store.

Two scopes: the global counts every member's mail is scored with, and each account's own,
added on top when that account's mail is scored, so a member's "this is spam" teaches the
filter for them first. Learning is recorded in a ledger keyed by the SHA-256 of the message
bytes: learning the same message again changes nothing, and learning it as the other kind
(a member correcting the filter) moves its counts rather than adding them twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from tayori.core.outcome import utcnow
from tayori.spam.classifier import TokenCounts
from tayori.storage.counters import SPAM, counter_value, raise_counter
from tayori.storage.engine import read_connection, sqlite_driver_connection, write_transaction
from tayori.storage.schema import (
    spam_account_tokens,
    spam_account_trained,
    spam_tokens,
    spam_trained,
)

__all__ = [
    "TOTALS_TOKEN",
    "MemoryTokenStore",
    "SqlTokenStore",
    "TokenStore",
    "Training",
    "message_digest",
]

TOTALS_TOKEN = ""
"""The token whose counts are the numbers of spam and ham messages learnt (the tokeniser
never makes an empty token)."""

_CHUNK = 500  # bind parameters per IN list / rows per multi-row INSERT


def message_digest(raw: bytes) -> str:
    """The ledger key of a message: its exact bytes, so a re-sent copy with a new
    Received line is a new message (its tokens differ too)."""
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class Training:
    """One message to learn: its digest, its kind and its tokens (at most 64 characters
    each, the SQL column's size; the tokeniser cuts them to 60)."""

    digest: str
    is_spam: bool
    tokens: frozenset[str]


class TokenStore(Protocol):
    """Token counts by scope; `account_id=None` is the global scope."""

    def lookup(
        self, tokens: Collection[str], account_id: int | None
    ) -> tuple[TokenCounts, dict[str, TokenCounts]]:
        """(message totals, counts of the known tokens among `tokens`): global counts plus,
        with an account, that account's own."""
        ...

    def learn(self, items: Sequence[Training], account_id: int | None) -> int:
        """Learn messages in one transaction; returns how many changed the counts (new, or
        relearnt as the other kind). Already-learnt messages of the same kind are skipped."""
        ...


def _plan(
    items: Sequence[Training], known: dict[str, bool]
) -> tuple[Counter[str], Counter[str], dict[str, bool], int]:
    """Count deltas (spam, ham per token) for `items` given the ledger's `known` kinds, and
    the ledger entries to write. Updates `known`, so duplicates inside `items` count once."""
    spam: Counter[str] = Counter()
    ham: Counter[str] = Counter()
    ledger: dict[str, bool] = {}
    changed = 0
    for item in items:
        before = known.get(item.digest)
        if before is item.is_spam:
            continue
        tokens = [*item.tokens, TOTALS_TOKEN]
        if before is not None:  # relearnt as the other kind: take it out of that one
            (spam if before else ham).subtract(tokens)
        (spam if item.is_spam else ham).update(tokens)
        known[item.digest] = item.is_spam
        ledger[item.digest] = item.is_spam
        changed += 1
    return spam, ham, ledger, changed


class MemoryTokenStore:
    """A TokenStore in dictionaries: for tests, benchmarks and trying things out."""

    def __init__(self) -> None:
        self._counts: dict[int | None, dict[str, list[int]]] = {}
        self._ledger: dict[int | None, dict[str, bool]] = {}

    def lookup(
        self, tokens: Collection[str], account_id: int | None
    ) -> tuple[TokenCounts, dict[str, TokenCounts]]:
        scopes = [None] if account_id is None else [None, account_id]
        found: dict[str, TokenCounts] = {}
        totals = TokenCounts()
        for scope in scopes:
            counts = self._counts.get(scope, {})
            total = counts.get(TOTALS_TOKEN)
            if total is not None:
                totals += TokenCounts(total[0], total[1])
            for token in tokens:
                pair = counts.get(token)
                if pair is not None and token != TOTALS_TOKEN:
                    found[token] = found.get(token, TokenCounts()) + TokenCounts(*pair)
        return totals, found

    def learn(self, items: Sequence[Training], account_id: int | None) -> int:
        known = self._ledger.setdefault(account_id, {})
        spam, ham, _, changed = _plan(items, known)
        counts = self._counts.setdefault(account_id, {})
        for token in spam.keys() | ham.keys():
            pair = counts.setdefault(token, [0, 0])
            pair[0] += spam[token]
            pair[1] += ham[token]
            if pair == [0, 0]:
                del counts[token]
        return changed


def _token_reads(tokens: Any) -> tuple[Any, Any]:
    """(global, per-account) look-ups of the tokens in `tokens` (an IN condition)."""
    return (
        select(spam_tokens.c.token, spam_tokens.c.spam, spam_tokens.c.ham).where(
            spam_tokens.c.token.in_(tokens)
        ),
        select(
            spam_account_tokens.c.token, spam_account_tokens.c.spam, spam_account_tokens.c.ham
        ).where(
            spam_account_tokens.c.token.in_(tokens),
            spam_account_tokens.c.account_id == bindparam("scope"),
        ),
    )


_READ_GLOBAL, _READ_ACCOUNT = _token_reads(bindparam("tokens", expanding=True))
# SQLite: the tokens as one JSON array, unpacked by json_each. An expanding IN list is SQL
# of another length for every count of tokens, which SQLAlchemy renders anew and SQLite
# prepares anew each time; one statement text stays prepared (a look-up of three new
# tokens: 108 -> 63 us, of 300: 637 -> 473 us). Run through the driver
# (`sqlite_driver_connection`): SQLAlchemy's execution costs more than the look-up.
_READ_GLOBAL_SQLITE = (
    "SELECT token, spam, ham FROM spam_tokens WHERE token IN (SELECT value FROM json_each(?))"
)
_READ_ACCOUNT_SQLITE = (
    "SELECT token, spam, ham FROM spam_account_tokens "
    "WHERE token IN (SELECT value FROM json_each(?)) AND account_id = ?"
)
# Built once: every message looks tokens up, and building and cache-keying a statement
# cost more than SQLite running it (a look-up of three new tokens: 453 -> 277 us of CPU).


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (both dialects spell it the same)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


GLOBAL_TOKENS_CACHED = 500_000
"""Global token counts one process keeps (known and known-absent tokens); beyond it the cache
starts again."""
ACCOUNTS_CACHED = 100_000
"""Accounts whose learnt-message totals one process keeps."""

_ABSENT = TokenCounts()
"""Cached answer for a token the store does not have (compared by identity)."""


@dataclass(slots=True)
class _GlobalCounts:
    counter: int | None
    counts: dict[str, TokenCounts]


class SqlTokenStore:
    """A TokenStore in the SQL database (SQLite or PostgreSQL), shared by every node."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._engine = engine
        self._clock = clock
        self._global = _GlobalCounts(None, {})
        self._account_totals: dict[int, tuple[int, TokenCounts]] = {}

    @staticmethod
    def _tables(account_id: int | None) -> tuple[Table, Table, dict[str, int]]:
        if account_id is None:
            return spam_tokens, spam_trained, {}
        return spam_account_tokens, spam_account_trained, {"account_id": account_id}

    def lookup(
        self, tokens: Collection[str], account_id: int | None
    ) -> tuple[TokenCounts, dict[str, TokenCounts]]:
        """Global counts come from a per-process cache while the "spam" change counter stays
        the same (every `learn`, on any node, raises it): after warming up, a message costs
        one small read plus the look-up of the tokens never seen before. An account's own
        counts are read each time, and skipped for the many accounts that never learnt."""
        with read_connection(self._engine) as conn:
            counter = counter_value(conn, SPAM)
            found, totals = self._global_counts(conn, counter, tokens)
            if account_id is not None:
                own_totals = self._own_totals(conn, counter, account_id)
                if own_totals.spam or own_totals.ham or counter is None:
                    own = self._read(conn, account_id, sorted({*tokens, TOTALS_TOKEN}))
                    totals += own.pop(TOTALS_TOKEN, TokenCounts())
                    for token, counts in own.items():
                        found[token] = found.get(token, TokenCounts()) + counts
        return totals, found

    def _global_counts(
        self, conn: Connection, counter: int | None, tokens: Collection[str]
    ) -> tuple[dict[str, TokenCounts], TokenCounts]:
        cache = self._global
        if counter is None or cache.counter != counter:
            # A new dict, not a cleared one: a thread still filling the old one (read before
            # the change) cannot put stale counts into this one.
            cache = _GlobalCounts(counter, {})
            if counter is not None:
                self._global = cache
        counts = cache.counts
        missing = [t for t in {*tokens, TOTALS_TOKEN} if t not in counts]
        if missing:
            read = self._read(conn, None, sorted(missing))
            if len(counts) + len(missing) > GLOBAL_TOKENS_CACHED:
                counts.clear()  # bounded: spam brings endless one-off tokens
            for token in missing:
                counts[token] = read.get(token, _ABSENT)
        found = {t: c for t in tokens if (c := counts.get(t, _ABSENT)) is not _ABSENT}
        found.pop(TOTALS_TOKEN, None)
        totals = counts.get(TOTALS_TOKEN, _ABSENT)
        return found, TokenCounts() if totals is _ABSENT else totals

    def _own_totals(self, conn: Connection, counter: int | None, account_id: int) -> TokenCounts:
        """How many messages the account itself learnt (cached like the global counts)."""
        cached = self._account_totals.get(account_id)
        if counter is not None and cached is not None and cached[0] == counter:
            return cached[1]
        totals = self._read(conn, account_id, [TOTALS_TOKEN]).get(TOTALS_TOKEN, TokenCounts())
        if counter is not None:
            if len(self._account_totals) >= ACCOUNTS_CACHED:
                self._account_totals.clear()
            self._account_totals[account_id] = (counter, totals)
        return totals

    def _read(
        self, conn: Connection, scope: int | None, wanted: Sequence[str]
    ) -> dict[str, TokenCounts]:
        found: dict[str, TokenCounts] = {}
        raw = sqlite_driver_connection(conn)
        if raw is not None:
            sql = _READ_GLOBAL_SQLITE if scope is None else _READ_ACCOUNT_SQLITE
            for chunk in _chunks(wanted):
                tokens = json.dumps(list(chunk))
                params = (tokens,) if scope is None else (tokens, scope)
                for token, spam, ham in raw.execute(sql, params):
                    found[token] = TokenCounts(spam, ham)
            return found
        query = _READ_GLOBAL if scope is None else _READ_ACCOUNT
        for chunk in _chunks(wanted):
            for token, spam, ham in conn.execute(query, {"tokens": list(chunk), "scope": scope}):
                found[token] = TokenCounts(spam, ham)
        return found

    def learn(self, items: Sequence[Training], account_id: int | None) -> int:
        if not items:
            return 0
        tokens_table, ledger_table, key = self._tables(account_id)
        now = self._clock()
        with write_transaction(self._engine) as conn:
            known, inserted = self._claim(conn, ledger_table, key, items, now)
            spam, ham, ledger, changed = _plan(items, known)
            for digest, kind in ledger.items():
                if inserted.get(digest) is kind:
                    continue  # written as it is by _claim
                conn.execute(
                    update(ledger_table)
                    .where(
                        ledger_table.c.digest == digest,
                        *(ledger_table.c[name] == value for name, value in key.items()),
                    )
                    .values(is_spam=kind, trained=now)
                )
            rows = [
                {**key, "token": token, "spam": spam[token], "ham": ham[token]}
                for token in sorted(spam.keys() | ham.keys())
                if spam[token] or ham[token]
            ]
            for chunk in _chunks(rows):
                statement = _insert(conn, tokens_table).values(list(chunk))
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=[*key, "token"],
                        set_={
                            "spam": tokens_table.c.spam + statement.excluded.spam,
                            "ham": tokens_table.c.ham + statement.excluded.ham,
                        },
                    )
                )
            if changed:
                raise_counter(conn, SPAM)  # every process's cached counts are now stale
        return changed

    @staticmethod
    def _claim(
        conn: Connection,
        ledger_table: Table,
        key: dict[str, int],
        items: Sequence[Training],
        now: datetime,
    ) -> tuple[dict[str, bool], dict[str, bool]]:
        """(kinds already in the ledger, kinds of the entries inserted now) for the items.

        New digests are inserted first (ON CONFLICT DO NOTHING): the insert is the claim, so
        two nodes learning the same message at once cannot both count it. Existing entries
        are read with a row lock on PostgreSQL for the same reason.
        """
        first: dict[str, bool] = {}
        for item in items:
            first.setdefault(item.digest, item.is_spam)
        inserted: dict[str, bool] = {}
        entries = [
            {**key, "digest": digest, "is_spam": kind, "trained": now}
            for digest, kind in first.items()
        ]
        for chunk in _chunks(entries):
            statement = _insert(conn, ledger_table).values(list(chunk))
            result = conn.execute(
                statement.on_conflict_do_nothing().returning(ledger_table.c.digest)
            )
            inserted.update((digest, first[digest]) for digest in result.scalars())
        existing = [digest for digest in first if digest not in inserted]
        known: dict[str, bool] = {}
        query = select(ledger_table.c.digest, ledger_table.c.is_spam).where(
            ledger_table.c.digest.in_(bindparam("digests", expanding=True)),
            *(ledger_table.c[name] == value for name, value in key.items()),
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        for chunk in _chunks(existing):
            for digest, kind in conn.execute(query, {"digests": list(chunk)}):
                known[digest] = bool(kind)
        return known, inserted
