"""`MetadataStore` on SQL, with one code path for SQLite and PostgreSQL.

Writers lock what they change in a fixed order (accounts by id, then mailboxes by id) with
`SELECT … FOR UPDATE` on PostgreSQL; on SQLite the same statements run inside BEGIN IMMEDIATE,
which serialises writers for the whole transaction, and FOR UPDATE renders as nothing.

The public helpers at the bottom (`append_in`, `insert_outcomes`, `unreferenced_blobs`, …)
work inside a caller's transaction; the queue store (`sql_queue`) uses them, so that queueing
a submission appends its local copies exactly as `append_messages` does.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    Row,
    Table,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from tayori.core.address import canonical, normalise_domain
from tayori.core.errors import ConflictError, NotFoundError, TayoriError
from tayori.core.outcome import Direction, Outcome, OutcomeKind, utcnow
from tayori.storage.engine import (
    dispose_engine,
    read_connection,
    sqlite_driver_connection,
    write_transaction,
)
from tayori.storage.interfaces import MessageRef
from tayori.storage.prepared import PreparedSelect
from tayori.storage.records import (
    Account,
    AccountStatus,
    Alias,
    AppendResult,
    Domain,
    Mailbox,
    MessageSummary,
    NewMessage,
    RecipientLookup,
    SpecialUse,
    StoredMessage,
    StoredOutcome,
)
from tayori.storage.schema import (
    INDEXED_TEXT_LEN,
    UtcDateTime,
    accounts,
    addresses,
    alias_targets,
    aliases,
    domains,
    mailboxes,
    maildrop_locks,
    message_search,
    messages,
    queue_messages,
)
from tayori.storage.schema import outcomes as outcome_table
from tayori.storage.search_terms import normalise, sort_subject
from tayori.storage.sql_mailbox import SEEN, MailboxOperations, canonical_flag

Clock = Callable[[], datetime]
_T = TypeVar("_T")
# Well under SQLite's and PostgreSQL's bound-parameter limits.
_IN_BATCH = 500


class SqlMetadataStore(MailboxOperations):
    """Domains, accounts, mailboxes, messages, outcomes and maildrop locks in SQL.

    `clock` is the time used for creation stamps, UIDVALIDITY and lock expiry, so tests with
    a fake clock see the same time as the code that computed a lock's `until`.
    """

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def _write(self) -> AbstractContextManager[Connection]:
        return write_transaction(self._engine)

    def _read(self) -> AbstractContextManager[Connection]:
        return read_connection(self._engine)

    # --- domains -------------------------------------------------------------
    def add_domain(self, name: str) -> Domain:
        domain = normalise_domain(name)
        with self._write() as conn:
            if _domain_id(conn, domain) is not None:
                raise ConflictError(f"domain {domain} is hosted here already")
            result = conn.execute(insert(domains).values(name=domain, created=self._clock()))
            return Domain(id=new_id(result.inserted_primary_key), name=domain)

    def list_domains(self) -> list[Domain]:
        with self._read() as conn:
            rows = conn.execute(select(domains.c.id, domains.c.name).order_by(domains.c.name))
            return [Domain(id=row.id, name=row.name) for row in rows]

    def remove_domain(self, name: str) -> None:
        domain = normalise_domain(name)
        with self._write() as conn:
            domain_id = require_domain(conn, domain)
            in_use = conn.execute(
                select(
                    select(func.count())
                    .where(addresses.c.domain_id == domain_id, addresses.c.account_id.is_not(None))
                    .scalar_subquery(),
                    select(func.count()).where(aliases.c.domain_id == domain_id).scalar_subquery(),
                )
            ).one()
            n_accounts, n_aliases = int(in_use[0]), int(in_use[1])
            if n_accounts or n_aliases:
                raise ConflictError(
                    f"domain {domain} still has {_count(n_accounts, 'account address')} and "
                    f"{_count(n_aliases, 'alias')}; remove them first (see "
                    f"`tayori user list --domain {domain}` and "
                    f"`tayori alias list --domain {domain}`)"
                )
            conn.execute(delete(domains).where(domains.c.id == domain_id))

    # --- accounts ------------------------------------------------------------
    def add_account(self, address: str, password_hash: str, quota_bytes: int) -> Account:
        addr = canonical(address)
        _check_quota(quota_bytes)
        now = self._clock()
        with self._write() as conn:
            domain_id = require_domain(conn, _domain_of(addr))
            _require_unused(conn, addr)
            result = conn.execute(
                insert(accounts).values(
                    address=addr,
                    domain_id=domain_id,
                    password_hash=password_hash,
                    quota_bytes=quota_bytes,
                    used_bytes=0,
                    status=AccountStatus.ACTIVE.value,
                    created=now,
                )
            )
            account_id = new_id(result.inserted_primary_key)
            conn.execute(
                insert(addresses).values(address=addr, domain_id=domain_id, account_id=account_id)
            )
            # Distinct per mailbox and growing with time, as IMAP wants of UIDVALIDITY.
            base = int(now.timestamp())
            conn.execute(
                insert(mailboxes),
                [
                    {
                        "account_id": account_id,
                        "name": use.value,
                        "special_use": use.value,
                        "uidvalidity": base + offset,
                        "uidnext": 1,
                        "highestmodseq": 1,
                        "created": now,
                    }
                    for offset, use in enumerate(SpecialUse)
                ],
            )
            return _one_account(conn, accounts.c.id == account_id)

    def get_account(self, address: str) -> Account | None:
        addr = canonical(address)
        with self._read() as conn:
            return _find_account(conn, accounts.c.id == _account_id_of(addr))

    def get_account_by_id(self, account_id: int) -> Account | None:
        with self._read() as conn:
            row = _ACCOUNT_BY_ID.one_or_none(conn, {"wanted_id": account_id})
            return None if row is None else _account(row)

    def list_accounts(self, domain: str | None = None) -> list[Account]:
        query = select(accounts).order_by(accounts.c.address)
        if domain is not None:
            query = query.join(domains, domains.c.id == accounts.c.domain_id).where(
                domains.c.name == normalise_domain(domain)
            )
        with self._read() as conn:
            return [_account(row) for row in conn.execute(query)]

    def set_password(self, address: str, password_hash: str) -> None:
        self._update_account(address, password_hash=password_hash)

    def set_quota(self, address: str, quota_bytes: int) -> None:
        _check_quota(quota_bytes)
        self._update_account(address, quota_bytes=quota_bytes)

    def _update_account(self, address: str, **values: Any) -> None:
        addr = canonical(address)
        with self._write() as conn:
            result = conn.execute(
                update(accounts).where(accounts.c.id == _account_id_of(addr)).values(**values)
            )
            if result.rowcount == 0:
                raise NotFoundError(_no_account(addr))

    def remove_account(self, address: str) -> list[str]:
        """Also removes aliases left without any target, as they deliver nowhere. Returns only
        blob refs no other account's message shares."""
        addr = canonical(address)
        with self._write() as conn:
            account_id = conn.scalar(select(_account_id_of(addr)))
            if account_id is None:
                raise NotFoundError(_no_account(addr))
            refs = list(
                conn.scalars(
                    select(messages.c.blob_ref)
                    .join(mailboxes, mailboxes.c.id == messages.c.mailbox_id)
                    .where(mailboxes.c.account_id == account_id)
                )
            )
            alias_ids = list(
                conn.scalars(
                    select(alias_targets.c.alias_id).where(alias_targets.c.account_id == account_id)
                )
            )
            # Cascades remove addresses, mailboxes, messages, alias memberships and locks.
            conn.execute(delete(accounts).where(accounts.c.id == account_id))
            if alias_ids:
                _delete_empty_aliases(conn, alias_ids)
            return unreferenced_blobs(conn, refs)

    # --- aliases -------------------------------------------------------------
    def add_alias(self, address: str, targets: Sequence[str]) -> Alias:
        addr = canonical(address)
        wanted = list(dict.fromkeys(canonical(target) for target in targets))
        if not wanted:
            raise TayoriError(f"alias {addr} needs at least one target account")
        with self._write() as conn:
            domain_id = require_domain(conn, _domain_of(addr))
            owner = _address_owner(conn, addr)
            if owner is not None and owner.account_id is not None:
                raise ConflictError(
                    f"{addr} is an account address; an address is an account or an alias, "
                    "never both"
                )
            target_ids = [_alias_target_id(conn, target) for target in wanted]
            if owner is not None and owner.alias_id is not None:
                alias_id = owner.alias_id
            else:
                result = conn.execute(
                    insert(aliases).values(address=addr, domain_id=domain_id, created=self._clock())
                )
                alias_id = new_id(result.inserted_primary_key)
                conn.execute(
                    insert(addresses).values(address=addr, domain_id=domain_id, alias_id=alias_id)
                )
            present = set(
                conn.scalars(
                    select(alias_targets.c.account_id).where(alias_targets.c.alias_id == alias_id)
                )
            )
            new = [tid for tid in dict.fromkeys(target_ids) if tid not in present]
            if new:
                conn.execute(
                    insert(alias_targets),
                    [{"alias_id": alias_id, "account_id": tid} for tid in new],
                )
            return _aliases_where(conn, aliases.c.id == alias_id)[0]

    def list_aliases(self, domain: str | None = None, *, target: str | None = None) -> list[Alias]:
        condition: ColumnElement[bool] = true()
        if domain is not None:
            condition = aliases.c.domain_id == (
                select(domains.c.id)
                .where(domains.c.name == normalise_domain(domain))
                .scalar_subquery()
            )
        if target is not None:
            condition = condition & aliases.c.id.in_(
                select(alias_targets.c.alias_id).where(
                    alias_targets.c.account_id == _account_id_of(canonical(target))
                )
            )
        with self._read() as conn:
            return _aliases_where(conn, condition)

    def remove_alias(self, address: str, targets: Sequence[str] = ()) -> None:
        """Removing the last target removes the alias: an alias that delivers nowhere would
        make the address look like an unknown user."""
        addr = canonical(address)
        drop = list(dict.fromkeys(canonical(target) for target in targets))
        with self._write() as conn:
            alias_id = conn.scalar(select(aliases.c.id).where(aliases.c.address == addr))
            if alias_id is None:
                raise NotFoundError(f"there is no alias {addr}")
            if not drop:
                conn.execute(delete(aliases).where(aliases.c.id == alias_id))
                return
            members = {
                row.address: row.id
                for row in conn.execute(
                    select(accounts.c.address, accounts.c.id)
                    .join(alias_targets, alias_targets.c.account_id == accounts.c.id)
                    .where(alias_targets.c.alias_id == alias_id)
                )
            }
            by_any_address = {
                target: conn.scalar(select(_account_id_of(target))) for target in drop
            }
            missing = [t for t, tid in by_any_address.items() if tid not in members.values()]
            if missing:
                raise NotFoundError(
                    f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                    f"a target of alias {addr}; its targets are {', '.join(sorted(members))}"
                )
            conn.execute(
                delete(alias_targets).where(
                    alias_targets.c.alias_id == alias_id,
                    alias_targets.c.account_id.in_(list(by_any_address.values())),
                )
            )
            _delete_empty_aliases(conn, [alias_id])

    # --- recipients ------------------------------------------------------------
    def lookup_recipient(self, address: str) -> RecipientLookup:
        addr = canonical(address)
        with self._read() as conn:
            # The address with its account in one statement: every RCPT of every message.
            row = _RECIPIENT.one_or_none(conn, {"wanted_address": addr})
            if row is None:
                return RecipientLookup(
                    hosted=_domain_id(conn, _domain_of(addr)) is not None, accounts=()
                )
            if row.alias_id is None:
                return RecipientLookup(
                    hosted=True, accounts=() if row.id is None else (_account(row),)
                )
            found = conn.execute(
                select(accounts)
                .where(
                    accounts.c.id.in_(
                        select(alias_targets.c.account_id).where(
                            alias_targets.c.alias_id == row.alias_id
                        )
                    )
                )
                .order_by(accounts.c.address)
            )
            return RecipientLookup(hosted=True, accounts=tuple(_account(row) for row in found))

    # --- mailboxes and messages -----------------------------------------------
    def get_mailbox(self, account_id: int, special_use: SpecialUse) -> Mailbox:
        with self._read() as conn:
            row = conn.execute(
                select(mailboxes).where(
                    mailboxes.c.account_id == account_id,
                    mailboxes.c.special_use == SpecialUse(special_use).value,
                )
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"account {account_id} has no {special_use} mailbox")
        return _mailbox(row)

    def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        with self._read() as conn:
            rows = conn.execute(
                select(mailboxes)
                .where(mailboxes.c.account_id == account_id)
                .order_by(mailboxes.c.id)
            )
            return [_mailbox(row) for row in rows]

    def append_messages(
        self,
        items: Sequence[NewMessage],
        late: Callable[[], Sequence[NewMessage]] | None = None,
    ) -> list[AppendResult]:
        """Raises NotFoundError, appending nothing, when an item's account is gone."""
        if not items:
            return []
        with self._write() as conn:
            # SQLite: the write lock is ours since BEGIN IMMEDIATE (PostgreSQL locks rows
            # as it goes, so `late` finds little there, and that is fine).
            if late is not None:
                items = [*items, *late()]
            return append_in(conn, items)

    def list_messages(self, mailbox_id: int) -> list[StoredMessage]:
        with self._read() as conn:
            rows = conn.execute(
                select(messages).where(messages.c.mailbox_id == mailbox_id).order_by(messages.c.uid)
            )
            return [_message(row) for row in rows]

    def list_message_refs(self, mailbox_id: int) -> list[MessageRef]:
        """Four columns straight from the driver's rows (the ids, UIDs and sizes are
        integers on both back ends): no `StoredMessage` is built."""
        with self._read() as conn:
            rows = conn.execute(
                select(messages.c.id, messages.c.uid, messages.c.size, messages.c.blob_ref)
                .where(messages.c.mailbox_id == mailbox_id)
                .order_by(messages.c.uid)
            )
            return list(map(MessageRef._make, rows))

    def expunge(self, mailbox_id: int, message_ids: Sequence[int]) -> list[str]:
        """An unknown mailbox is ignored like unknown message ids: there is nothing to delete.
        Returns only blob refs no remaining message shares."""
        if not message_ids:
            return []
        with self._write() as conn:
            account_id = conn.scalar(
                select(mailboxes.c.account_id).where(mailboxes.c.id == mailbox_id)
            )
            if account_id is None:
                return []
            # Same lock order as append_messages: account, then mailbox.
            _lock_accounts(conn, {account_id})
            conn.execute(
                select(mailboxes.c.id).where(mailboxes.c.id == mailbox_id).with_for_update()
            )
            found: list[tuple[int, int, str]] = []
            for batch in in_batches(sorted(set(message_ids))):
                found.extend(
                    conn.execute(
                        select(messages.c.id, messages.c.size, messages.c.blob_ref).where(
                            messages.c.mailbox_id == mailbox_id, messages.c.id.in_(batch)
                        )
                    )
                )
            if not found:
                return []
            for batch in in_batches([row[0] for row in found]):
                conn.execute(delete(messages).where(messages.c.id.in_(batch)))
            freed = sum(row[1] for row in found)
            conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(used_bytes=accounts.c.used_bytes - freed)
            )
            conn.execute(
                update(mailboxes)
                .where(mailboxes.c.id == mailbox_id)
                .values(highestmodseq=mailboxes.c.highestmodseq + 1)
            )
            return unreferenced_blobs(conn, [row[2] for row in found])

    # --- outcomes --------------------------------------------------------------
    def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        with self._write() as conn:
            insert_outcomes(conn, outcomes)

    def list_outcomes(
        self,
        *,
        account_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        sender: str | None = None,
        recipient: str | None = None,
        message_id: str | None = None,
        subject_contains: str | None = None,
        remote_ip: str | None = None,
        limit: int = 100,
    ) -> list[StoredOutcome]:
        """`since` is inclusive and `until` exclusive; sender, recipient, message_id and the
        client's address match exactly as recorded; the subject match ignores case.

        The subject is a plain LIKE scan over the other filters' rows: fine for an admin
        search, to be replaced by the full-text index when that lands."""
        c = outcome_table.c
        conditions: list[ColumnElement[bool]] = []
        if account_id is not None:
            conditions.append(c.account_id == account_id)
        if since is not None:
            conditions.append(c.time >= since)
        if until is not None:
            conditions.append(c.time < until)
        if sender is not None:
            conditions.append(c.sender == sender)
        if recipient is not None:
            conditions.append(c.recipient == recipient)
        if message_id is not None:
            conditions.append(c.message_id == message_id)
        if subject_contains:
            conditions.append(c.subject.icontains(subject_contains, autoescape=True))
        if remote_ip is not None:
            # Not indexed: an admin search, within the other filters' rows (a date range).
            conditions.append(c.remote_ip == remote_ip)
        query = select(outcome_table).where(*conditions).order_by(c.time.desc(), c.id.desc())
        with self._read() as conn:
            rows = conn.execute(query.limit(max(limit, 0)))
            return [StoredOutcome(id=row.id, outcome=_outcome(row)) for row in rows]

    # --- history retention (issue 7, diagnostics) ----------------------------------------------
    _PURGE_BATCH = 5000

    def purge_outcomes(self, before: datetime) -> int:
        """Oldest first in batches of ids (one short transaction each), so writers delivering
        mail meanwhile never wait long on the outcomes table."""
        c = outcome_table.c
        total = 0
        while True:
            with self._write() as conn:
                ids = list(
                    conn.scalars(
                        select(c.id).where(c.time < before).order_by(c.id).limit(self._PURGE_BATCH)
                    )
                )
                if ids:
                    conn.execute(delete(outcome_table).where(c.id.in_(ids)))
            total += len(ids)
            if len(ids) < self._PURGE_BATCH:
                return total

    # --- end of issue 7 block --------------------------------------------------------------------

    # --- maildrop locks --------------------------------------------------------
    def try_lock_maildrop(self, account_id: int, holder: str, until: datetime) -> bool:
        """One conditional upsert, so two nodes racing for the lock cannot both win."""
        now = self._clock()
        with self._write() as conn:
            if conn.scalar(select(accounts.c.id).where(accounts.c.id == account_id)) is None:
                raise NotFoundError(f"there is no account {account_id}")
            values = {"account_id": account_id, "holder": holder, "until": until}
            takeable = or_(maildrop_locks.c.until <= now, maildrop_locks.c.holder == holder)
            if conn.dialect.name == "postgresql":
                pg = postgresql.insert(maildrop_locks).values(values)
                statement: Any = pg.on_conflict_do_update(
                    index_elements=[maildrop_locks.c.account_id],
                    set_={"holder": holder, "until": until},
                    where=takeable,
                ).returning(maildrop_locks.c.holder)
            else:
                lite = sqlite.insert(maildrop_locks).values(values)
                statement = lite.on_conflict_do_update(
                    index_elements=[maildrop_locks.c.account_id],
                    set_={"holder": holder, "until": until},
                    where=takeable,
                ).returning(maildrop_locks.c.holder)
            # RETURNING yields the row only when it was inserted or taken over (rowcount
            # of an upsert is not reported reliably by every driver).
            return conn.execute(statement).first() is not None

    def refresh_maildrop_lock(self, account_id: int, holder: str, until: datetime) -> None:
        """Raises ConflictError when the lock is no longer ours (it expired and someone else
        took it, or it was released): the session must stop changing the maildrop."""
        with self._write() as conn:
            result = conn.execute(
                update(maildrop_locks)
                .where(maildrop_locks.c.account_id == account_id, maildrop_locks.c.holder == holder)
                .values(until=until)
            )
            if result.rowcount == 0:
                raise ConflictError(
                    f"the maildrop lock of account {account_id} is no longer held by {holder}"
                )

    def release_maildrop_lock(self, account_id: int, holder: str) -> None:
        with self._write() as conn:
            conn.execute(
                delete(maildrop_locks).where(
                    maildrop_locks.c.account_id == account_id, maildrop_locks.c.holder == holder
                )
            )

    # --- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        dispose_engine(self._engine)


# --- helpers: lookups ----------------------------------------------------------------


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def _domain_id(conn: Connection, domain: str) -> int | None:
    return conn.scalar(select(domains.c.id).where(domains.c.name == domain))


def require_domain(conn: Connection, domain: str) -> int:
    domain_id = _domain_id(conn, domain)
    if domain_id is None:
        raise NotFoundError(
            f"domain {domain} is not hosted here; add it with `tayori domain add {domain}`"
        )
    return domain_id


class _Owner(NamedTuple):
    account_id: int | None
    alias_id: int | None


# Built once: the recipient look-ups run for every RCPT of every message.
_ACCOUNT_BY_ID = PreparedSelect(select(accounts).where(accounts.c.id == bindparam("wanted_id")))
_RECIPIENT = PreparedSelect(
    select(addresses.c.alias_id, *accounts.c)
    .select_from(addresses.outerjoin(accounts, accounts.c.id == addresses.c.account_id))
    .where(addresses.c.address == bindparam("wanted_address"))
)
_ADDRESS_OWNER = select(addresses.c.account_id, addresses.c.alias_id).where(
    addresses.c.address == bindparam("wanted_address")
)


def _address_owner(conn: Connection, address: str) -> _Owner | None:
    row = conn.execute(_ADDRESS_OWNER, {"wanted_address": address}).one_or_none()
    return None if row is None else _Owner(row.account_id, row.alias_id)


def _account_id_of(address: str) -> Any:
    """Scalar subquery: the account an address (primary or other) belongs to."""
    return select(addresses.c.account_id).where(addresses.c.address == address).scalar_subquery()


def _require_unused(conn: Connection, address: str) -> None:
    owner = _address_owner(conn, address)
    if owner is None:
        return
    if owner.account_id is not None:
        raise ConflictError(f"{address} is an account already")
    raise ConflictError(
        f"{address} is an alias; remove it first with `tayori alias remove {address}`"
    )


def _alias_target_id(conn: Connection, target: str) -> int:
    owner = _address_owner(conn, target)
    if owner is None:
        raise NotFoundError(
            f"alias target {target} is not an account here; create the account first"
        )
    if owner.account_id is None:
        raise ConflictError(f"alias target {target} is an alias itself; aliases point to accounts")
    return int(owner.account_id)


def unreferenced_blobs(conn: Connection, refs: list[str]) -> list[str]:
    """The refs no remaining message uses, in a mailbox or in the outbound queue. Delivery
    may store one blob for all recipients of a message, local and remote; deleting it when
    one of them expunges, or when the queue is done, would lose the others'."""
    unique = list(dict.fromkeys(refs))
    still_used: set[str] = set()
    for batch in in_batches(unique):
        for table in (messages, queue_messages):
            still_used.update(
                conn.scalars(select(table.c.blob_ref).where(table.c.blob_ref.in_(batch)))
            )
    return [ref for ref in unique if ref not in still_used]


def _delete_empty_aliases(conn: Connection, alias_ids: list[int]) -> None:
    conn.execute(
        delete(aliases).where(
            aliases.c.id.in_(alias_ids),
            ~exists().where(alias_targets.c.alias_id == aliases.c.id),
        )
    )


def _find_account(conn: Connection, condition: ColumnElement[bool]) -> Account | None:
    row = conn.execute(select(accounts).where(condition)).one_or_none()
    return None if row is None else _account(row)


def _one_account(conn: Connection, condition: ColumnElement[bool]) -> Account:
    return _account(conn.execute(select(accounts).where(condition)).one())


def _aliases_where(conn: Connection, condition: ColumnElement[bool]) -> list[Alias]:
    rows = conn.execute(
        select(aliases.c.address, accounts.c.address.label("target"))
        .select_from(aliases)
        .join(alias_targets, alias_targets.c.alias_id == aliases.c.id, isouter=True)
        .join(accounts, accounts.c.id == alias_targets.c.account_id, isouter=True)
        .where(condition)
        .order_by(aliases.c.address, accounts.c.address)
    )
    grouped: dict[str, list[str]] = {}
    for row in rows:
        targets = grouped.setdefault(row.address, [])
        if row.target is not None:
            targets.append(row.target)
    return [Alias(address=address, targets=tuple(t)) for address, t in grouped.items()]


# --- helpers: appends ---------------------------------------------------------------


def append_in(conn: Connection, items: Sequence[NewMessage]) -> list[AppendResult]:
    """`append_messages` inside the caller's write transaction, so that the queue's enqueue
    appends local copies with exactly the same quota, UID and outcome rules."""
    if not items:
        return []
    for item in items:
        if item.size < 0:
            raise ValueError(f"message size {item.size} is negative")
    usage = _lock_accounts(conn, {item.account_id for item in items})
    boxes = _lock_mailboxes(conn, {(item.account_id, item.mailbox) for item in items})
    message_rows: list[dict[str, Any]] = []
    outcome_rows: list[dict[str, Any]] = []
    results: list[AppendResult] = []
    grown: dict[int, int] = dict.fromkeys(usage, 0)
    for item in items:
        quota, used = usage[item.account_id]
        box = boxes[(item.account_id, item.mailbox)]
        if item.enforce_quota and quota > 0 and used + item.size > quota:
            outcome_rows.append(_outcome_row(item.on_over_quota))
            results.append(AppendResult(appended=False, mailbox_id=box.id, uid=0))
            continue
        uid = box.take_uid()
        usage[item.account_id] = (quota, used + item.size)
        grown[item.account_id] += item.size
        message_rows.append(_message_row(item, box.id, uid, box.highestmodseq))
        delivered = item.on_delivered
        detail = f"{delivered.detail} mailbox={box.name} uid={uid}".strip()
        outcome_rows.append(_outcome_row(dataclasses.replace(delivered, detail=detail)))
        results.append(AppendResult(appended=True, mailbox_id=box.id, uid=uid))
    # One executemany each: a batch of the group commit touches many members' mailboxes.
    # Rows in the order of the SQLite statements' parameters.
    advanced = [(box.uidnext, box.highestmodseq, box.id) for box in boxes.values() if box.changed]
    growth = [(size, account_id) for account_id, size in grown.items() if size]
    raw = sqlite_driver_connection(conn)
    if raw is not None:
        _append_rows_sqlite(raw, conn.dialect, message_rows, outcome_rows)
        if advanced:
            raw.executemany(_ADVANCE_MAILBOX_SQLITE, advanced)
        if growth:
            raw.executemany(_GROW_USAGE_SQLITE, growth)
        return results
    if message_rows:
        _insert_messages(conn, message_rows)
    if advanced:
        conn.execute(
            _ADVANCE_MAILBOX,
            [{"new_uidnext": n, "new_modseq": m, "box_id": b} for n, m, b in advanced],
        )
    if growth:
        conn.execute(_GROW_USAGE, [{"grown": g, "account": a} for g, a in growth])
    conn.execute(_INSERT_OUTCOMES, outcome_rows)
    return results


def _append_rows_sqlite(
    raw: sqlite3.Connection,
    dialect: Dialect,
    message_rows: list[dict[str, Any]],
    outcome_rows: list[dict[str, Any]],
) -> None:
    """The commit's inserts through the driver: SQLAlchemy's executemany of them (rows
    processed per parameter, the insert's RETURNING for the search rows' ids) was most of
    the Python a group commit runs while it holds the write lock that every MX process
    waits for. Values go in as SQLAlchemy would bind them (its own timestamp processor), so
    what either path writes reads back the same; the conformance suite runs both."""
    to_text = _sqlite_time_text(dialect)
    if message_rows:
        searches: list[tuple[str, int, int]] = []
        for row in message_rows:
            terms = row.pop("_terms")
            if terms is not None:
                searches.append((terms, row["mailbox_id"], row["uid"]))
            row["internal_date"] = to_text(row["internal_date"])
        raw.executemany(_INSERT_MESSAGES_SQLITE, map(_MESSAGE_VALUES, message_rows))
        if searches:
            # By (mailbox, UID), unique: no ids to carry back from the inserts.
            raw.executemany(_INSERT_SEARCH_SQLITE, searches)
    for row in outcome_rows:
        row["time"] = to_text(row["time"])
    raw.executemany(_INSERT_OUTCOMES_SQLITE, map(_OUTCOME_VALUES, outcome_rows))


@functools.lru_cache(maxsize=8)
def _sqlite_time_text(dialect: Dialect) -> Callable[[datetime], str]:
    """`UtcDateTime`'s bind processing on this dialect: the text SQLAlchemy stores."""
    process = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return process


def _insert_sqlite(table: Table) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]:
    """An INSERT of every column but the id, as SQLite's positional SQL, and the row dict
    -> parameters function (in the compiled statement's order)."""
    values: dict[str, Any] = {column.name: bindparam(column.name) for column in table.columns}
    del values["id"]
    compiled = insert(table).values(values).compile(dialect=sqlite.dialect())
    assert compiled.positiontup is not None
    return str(compiled), operator.itemgetter(*compiled.positiontup)


_INSERT_MESSAGES_SQLITE, _MESSAGE_VALUES = _insert_sqlite(messages)
_INSERT_OUTCOMES_SQLITE, _OUTCOME_VALUES = _insert_sqlite(outcome_table)
_INSERT_SEARCH_SQLITE = (
    "INSERT INTO message_search (message_id, terms) "
    "SELECT id, ? FROM messages WHERE mailbox_id = ? AND uid = ?"
)


_ADVANCE_MAILBOX = (
    update(mailboxes)
    .where(mailboxes.c.id == bindparam("box_id"))
    .values(uidnext=bindparam("new_uidnext"), highestmodseq=bindparam("new_modseq"))
)
_GROW_USAGE = (
    update(accounts)
    .where(accounts.c.id == bindparam("account"))
    .values(used_bytes=accounts.c.used_bytes + bindparam("grown"))
)
# The commit's statements on plain integers, through the driver on SQLite
# (`sqlite_driver_connection`): SQLAlchemy's execution of them (an expanding IN rendered
# anew each time, parameters processed per row) cost ~5x what SQLite does, inside the
# write lock that every MX process waits for (the two locking reads: ~250 -> ~45 us per
# commit). The same statements as the SQLAlchemy ones (FOR UPDATE is nothing on SQLite);
# the conformance suite runs both.
_LOCK_ACCOUNTS_SQLITE = (
    "SELECT id, quota_bytes, used_bytes FROM accounts "
    "WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id"
)
_LOCK_MAILBOXES_SQLITE = (
    "SELECT id, account_id, name, special_use, uidnext, highestmodseq FROM mailboxes "
    "WHERE account_id IN (SELECT value FROM json_each(?)) "
    "AND special_use IN (SELECT value FROM json_each(?)) ORDER BY id"
)
_ADVANCE_MAILBOX_SQLITE = "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?"
_GROW_USAGE_SQLITE = "UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?"


def insert_outcomes(conn: Connection, outcomes: Sequence[Outcome]) -> None:
    """Record outcomes inside the caller's transaction (none is a no-op)."""
    if outcomes:
        conn.execute(_INSERT_OUTCOMES, [_outcome_row(outcome) for outcome in outcomes])


@dataclasses.dataclass
class _LockedBox:
    id: int
    name: str
    uidnext: int
    highestmodseq: int
    changed: bool = False

    def take_uid(self) -> int:
        uid = self.uidnext
        self.uidnext += 1
        self.highestmodseq += 1
        self.changed = True
        return uid


# The group commit's statements, built once: it runs them while holding the write lock
# (SQLite's, which every MX process shares), and building a statement (its IN lists above
# all) and cache-keying it cost more than running it: ~0.3 ms of a 1 ms commit.
_LOCK_ACCOUNTS = (
    select(accounts.c.id, accounts.c.quota_bytes, accounts.c.used_bytes)
    .where(accounts.c.id.in_(bindparam("account_ids", expanding=True)))
    .order_by(accounts.c.id)
    .with_for_update()
)
_LOCK_MAILBOXES = (
    select(
        mailboxes.c.id,
        mailboxes.c.account_id,
        mailboxes.c.name,
        mailboxes.c.special_use,
        mailboxes.c.uidnext,
        mailboxes.c.highestmodseq,
    )
    .where(
        mailboxes.c.account_id.in_(bindparam("account_ids", expanding=True)),
        mailboxes.c.special_use.in_(bindparam("uses", expanding=True)),
    )
    .order_by(mailboxes.c.id)
    .with_for_update()
)
_INSERT_MESSAGES = insert(messages)
_INSERT_MESSAGES_RETURNING_IDS = insert(messages).returning(
    messages.c.id, sort_by_parameter_order=True
)
_INSERT_SEARCH = insert(message_search)
_INSERT_OUTCOMES = insert(outcome_table)


def _lock_accounts(conn: Connection, account_ids: set[int]) -> dict[int, tuple[int, int]]:
    """Locks in id order so that two batches touching the same accounts cannot deadlock."""
    wanted = sorted(account_ids)
    raw = sqlite_driver_connection(conn)
    rows: Any = (
        conn.execute(_LOCK_ACCOUNTS, {"account_ids": wanted})
        if raw is None
        else raw.execute(_LOCK_ACCOUNTS_SQLITE, (json.dumps(wanted),))
    )
    usage = {row[0]: (int(row[1]), int(row[2])) for row in rows}
    missing = sorted(account_ids - usage.keys())
    if missing:
        raise NotFoundError(f"there is no account {', '.join(map(str, missing))} any more")
    return usage


def _lock_mailboxes(
    conn: Connection, wanted: set[tuple[int, SpecialUse]]
) -> dict[tuple[int, SpecialUse], _LockedBox]:
    # Two IN lists (one statement shape for any batch, compiled once) may also lock a
    # wanted account's other wanted-kind box: harmless, its account is locked already.
    account_ids = sorted({account_id for account_id, _ in wanted})
    uses = sorted({use.value for _, use in wanted})
    raw = sqlite_driver_connection(conn)
    rows: Any = (
        conn.execute(_LOCK_MAILBOXES, {"account_ids": account_ids, "uses": uses})
        if raw is None
        else raw.execute(_LOCK_MAILBOXES_SQLITE, (json.dumps(account_ids), json.dumps(uses)))
    )
    boxes = {
        key: _LockedBox(id=box_id, name=name, uidnext=int(uidnext), highestmodseq=int(modseq))
        for box_id, account_id, name, use, uidnext, modseq in rows
        if (key := (account_id, SpecialUse(use))) in wanted
    }
    missing = wanted - boxes.keys()
    if missing:
        account_id, use = sorted(missing)[0]
        raise NotFoundError(f"account {account_id} has no {use} mailbox")
    return boxes


def _insert_messages(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert message rows and, for those carrying one, their search terms (popped from the
    row: `_message_row` puts them there under `_terms`)."""
    terms = [row.pop("_terms") for row in rows]
    if not any(t is not None for t in terms):
        conn.execute(_INSERT_MESSAGES, rows)
        return
    ids = conn.scalars(_INSERT_MESSAGES_RETURNING_IDS, rows).all()
    conn.execute(
        _INSERT_SEARCH,
        [
            {"message_id": mid, "terms": t}
            for mid, t in zip(ids, terms, strict=True)
            if t is not None
        ],
    )


def _message_row(item: NewMessage, mailbox_id: int, uid: int, modseq: int) -> dict[str, Any]:
    # System flags in one spelling (\seen is \Seen), so that `seen` and lists agree.
    flags = {canonical_flag(flag) for flag in item.flags}
    summary = item.summary
    index = item.index
    # Without an index entry (reindex fills it in later) lists still sort sensibly by
    # the stored display strings.
    return {
        "seen": SEEN in flags,
        "has_attachment": index.has_attachment if index else False,
        "sort_from": (index.sort_from if index else normalise(summary.from_))[:INDEXED_TEXT_LEN],
        "sort_subject": (index.sort_subject if index else sort_subject(summary.subject))[
            :INDEXED_TEXT_LEN
        ],
        "indexed_version": index.version if index else 0,
        "_terms": index.terms if index else None,
        "mailbox_id": mailbox_id,
        "uid": uid,
        "modseq": modseq,
        "flags": " ".join(sorted(flags)),
        "internal_date": item.internal_date,
        "size": item.size,
        "blob_ref": item.blob_ref,
        "hdr_from": summary.from_,
        "hdr_to": summary.to,
        "hdr_subject": summary.subject,
        "hdr_message_id": summary.message_id,
        "hdr_date": summary.date,
    }


# --- helpers: rows to records -------------------------------------------------------


def _account(row: Any) -> Account:
    """From a `Row` or a `PreparedSelect` row of the accounts columns."""
    return Account(
        id=row.id,
        address=row.address,
        domain_id=row.domain_id,
        password_hash=row.password_hash,
        quota_bytes=int(row.quota_bytes),
        used_bytes=int(row.used_bytes),
        status=AccountStatus(row.status),
        created=row.created,
    )


def _mailbox(row: Row[Any]) -> Mailbox:
    return Mailbox(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        special_use=None if row.special_use is None else SpecialUse(row.special_use),
        uidvalidity=int(row.uidvalidity),
        uidnext=int(row.uidnext),
        highestmodseq=int(row.highestmodseq),
    )


def _message(row: Row[Any]) -> StoredMessage:
    return StoredMessage(
        id=row.id,
        mailbox_id=row.mailbox_id,
        uid=int(row.uid),
        modseq=int(row.modseq),
        flags=frozenset(row.flags.split()),
        internal_date=row.internal_date,
        size=int(row.size),
        blob_ref=row.blob_ref,
        has_attachment=bool(row.has_attachment),
        summary=MessageSummary(
            from_=row.hdr_from,
            to=row.hdr_to,
            subject=row.hdr_subject,
            message_id=row.hdr_message_id,
            date=row.hdr_date,
        ),
    )


def _outcome_row(outcome: Outcome) -> dict[str, Any]:
    return {
        "time": outcome.time,
        "direction": outcome.direction.value,
        "account_id": outcome.account_id,
        "sender": outcome.sender[:INDEXED_TEXT_LEN],
        "recipient": outcome.recipient[:INDEXED_TEXT_LEN],
        "message_id": outcome.message_id[:INDEXED_TEXT_LEN],
        "subject": outcome.subject,
        "size": outcome.size,
        "remote_ip": outcome.remote_ip[:64],
        "remote_host": outcome.remote_host[:255],
        "outcome": outcome.outcome.value,
        "reason": outcome.reason[:64],
        "reply": outcome.reply,
        "detail": outcome.detail,
    }


def _outcome(row: Row[Any]) -> Outcome:
    return Outcome(
        direction=Direction(row.direction),
        sender=row.sender,
        recipient=row.recipient,
        outcome=OutcomeKind(row.outcome),
        reason=row.reason,
        reply=row.reply,
        detail=row.detail,
        account_id=row.account_id,
        message_id=row.message_id,
        subject=row.subject,
        size=int(row.size),
        remote_ip=row.remote_ip,
        remote_host=row.remote_host,
        time=row.time,
    )


# --- helpers: small -----------------------------------------------------------------


def new_id(primary_key: Any) -> int:
    return int(primary_key[0])


def _check_quota(quota_bytes: int) -> None:
    if quota_bytes < 0:
        raise ValueError(f"quota {quota_bytes} is negative; use 0 for no limit")


def _no_account(address: str) -> str:
    return f"there is no account {address}"


def _count(n: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{n} {noun if n == 1 else plural}"


def in_batches(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), _IN_BATCH):
        yield values[start : start + _IN_BATCH]
