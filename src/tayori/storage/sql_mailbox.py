"""Mailbox operations of `SqlMetadataStore`: what webmail (and IMAP) do to a member's mail.

Mixed into `SqlMetadataStore` (see `MetadataStore` for each method's contract). Locking
follows the store's order — account, then mailboxes by id — and every writer to a mailbox's
messages locks that mailbox first, so a message read before the lock is read again under it
(it may have moved meanwhile) and concurrent moves, flag changes and expunges serialise
instead of deadlocking.

Ownership is part of every query (`mailbox.account_id = :account`), never checked after the
fact: another account's message id finds nothing.

Search runs on the database's full-text index over `message_search.terms` (see
`search_terms`): FTS5 on SQLite, a GIN index over the stored `to_tsvector('simple', terms)`
(column `terms_tsv`) on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    bindparam,
    case,
    column,
    delete,
    false,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)

from tayori.core.errors import ConflictError, NotFoundError, QuotaExceededError
from tayori.storage.records import (
    Mailbox,
    MailboxStatus,
    MessageIndex,
    MessagePage,
    MessageQuery,
    PlacedMessage,
    SortKey,
    SpecialUse,
    StoredMessage,
)
from tayori.storage.schema import INDEXED_TEXT_LEN, accounts, mailboxes, message_search, messages
from tayori.storage.search_terms import FIELDS, fts5_query, tsquery

SEEN = "\\Seen"
_SYSTEM_FLAGS = {
    flag.lower(): flag for flag in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
}
_MAX_FLAG = 128
_MAX_NAME = 255
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/]")
_SPECIAL_NAMES = frozenset(use.value.casefold() for use in SpecialUse)
_SPECIAL_ORDER = {use: index for index, use in enumerate(SpecialUse)}
_MAX_PAGE = 500
_SORT_HITS_UP_TO = 1000
_ALL_FIELDS = tuple(FIELDS.values())
_PG_CONFIG: ColumnElement[Any] = literal_column("'simple'::regconfig")
# PostgreSQL only, created by migration 0005 outside the shared metadata (see schema.py).
_PG_VECTOR: ColumnElement[Any] = literal_column("message_search.terms_tsv")


def canonical_flag(flag: str) -> str:
    """System flags in their RFC 3501 spelling whatever the case given; keywords as given.
    ValueError for an empty flag, white space, or an absurd length."""
    if not flag or len(flag) > _MAX_FLAG or any(ch.isspace() for ch in flag):
        raise ValueError(f"flag {flag[:_MAX_FLAG]!r} is empty, too long or contains white space")
    return _SYSTEM_FLAGS.get(flag.lower(), flag)


def mailbox_name(name: str) -> str:
    """A member folder name, trimmed, or ValueError saying what is wrong with it."""
    cleaned = name.strip()
    if not cleaned:
        raise ValueError("a folder needs a name")
    if len(cleaned) > _MAX_NAME:
        raise ValueError(f"a folder name has at most {_MAX_NAME} characters")
    if _BAD_NAME.search(cleaned):
        raise ValueError('a folder name cannot contain "/" or control characters')
    if cleaned.casefold() in _SPECIAL_NAMES:
        raise ValueError(f'"{cleaned}" is the name of a standard folder')
    return cleaned


class MailboxOperations:
    """The methods; `SqlMetadataStore` provides the engine, clock and transactions."""

    _clock: Callable[[], datetime]

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    # --- mailboxes ----------------------------------------------------------------------
    def get_mailbox_by_id(self, account_id: int, mailbox_id: int) -> Mailbox | None:
        with self._read() as conn:
            row = conn.execute(_owned_box(account_id, mailbox_id)).one_or_none()
        return None if row is None else core._mailbox(row)

    def mailbox_statuses(self, account_id: int) -> list[MailboxStatus]:
        m = messages.c
        counts = (
            select(
                m.mailbox_id,
                func.count().label("total"),
                func.sum(case((m.seen == false(), 1), else_=0)).label("unread"),
                func.sum(m.size).label("bytes"),
            )
            .where(m.mailbox_id.in_(_account_boxes(account_id)))
            .group_by(m.mailbox_id)
            .subquery()
        )
        query = (
            select(mailboxes, counts.c.total, counts.c.unread, counts.c.bytes)
            .outerjoin(counts, counts.c.mailbox_id == mailboxes.c.id)
            .where(mailboxes.c.account_id == account_id)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        found = [
            MailboxStatus(
                mailbox=core._mailbox(row),
                total=int(row.total or 0),
                unread=int(row.unread or 0),
                size=int(row.bytes or 0),
            )
            for row in rows
        ]

        def order(status: MailboxStatus) -> tuple[int, str, int]:
            use = status.mailbox.special_use
            rank = _SPECIAL_ORDER[use] if use is not None else len(_SPECIAL_ORDER)
            return rank, status.mailbox.name.casefold(), status.mailbox.id

        return sorted(found, key=order)

    def create_mailbox(self, account_id: int, name: str) -> Mailbox:
        cleaned = mailbox_name(name)
        now = self._clock()
        with self._write() as conn:
            core._lock_accounts(conn, {account_id})
            _refuse_taken_name(conn, account_id, cleaned, except_id=None)
            newest = conn.execute(
                select(
                    accounts.c.last_uidvalidity,
                    select(func.max(mailboxes.c.uidvalidity))
                    .where(mailboxes.c.account_id == account_id)
                    .scalar_subquery(),
                ).where(accounts.c.id == account_id)
            ).one()
            # Growing per account, deleted folders included, so that a folder deleted and
            # created again under the same name gets a new UIDVALIDITY and mail programs
            # drop the UIDs they cached.
            uidvalidity = max(int(now.timestamp()), int(newest[0]) + 1, int(newest[1] or 0) + 1)
            conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(last_uidvalidity=uidvalidity)
            )
            result = conn.execute(
                insert(mailboxes).values(
                    account_id=account_id,
                    name=cleaned,
                    special_use=None,
                    uidvalidity=uidvalidity,
                    uidnext=1,
                    highestmodseq=1,
                    created=now,
                )
            )
            new = core.new_id(result.inserted_primary_key)
            return core._mailbox(conn.execute(select(mailboxes).where(mailboxes.c.id == new)).one())

    def rename_mailbox(self, account_id: int, mailbox_id: int, new_name: str) -> Mailbox:
        cleaned = mailbox_name(new_name)
        with self._write() as conn:
            core._lock_accounts(conn, {account_id})
            box = _member_box(conn, account_id, mailbox_id, "renamed")
            _refuse_taken_name(conn, account_id, cleaned, except_id=box.id)
            conn.execute(update(mailboxes).where(mailboxes.c.id == box.id).values(name=cleaned))
            return core._mailbox(conn.execute(_owned_box(account_id, mailbox_id)).one())

    def delete_mailbox(
        self, account_id: int, mailbox_id: int, *, move_to: SpecialUse | None = SpecialUse.TRASH
    ) -> list[str]:
        with self._write() as conn:
            core._lock_accounts(conn, {account_id})
            box = _member_box(conn, account_id, mailbox_id, "deleted")
            ids = list(conn.scalars(select(messages.c.id).where(messages.c.mailbox_id == box.id)))
            refs: list[str] = []
            if ids and move_to is not None:
                target = conn.scalar(
                    select(mailboxes.c.id).where(
                        mailboxes.c.account_id == account_id,
                        mailboxes.c.special_use == SpecialUse(move_to).value,
                    )
                )
                if target is None:
                    raise NotFoundError(f"account {account_id} has no {move_to} mailbox")
                _move_in(conn, account_id, ids, int(target))
            elif ids:
                refs = _delete_in(conn, account_id, ids)
            conn.execute(delete(mailboxes).where(mailboxes.c.id == box.id))
            return refs

    # --- messages -----------------------------------------------------------------------
    def get_message(self, account_id: int, message_id: int) -> StoredMessage | None:
        with self._read() as conn:
            row = conn.execute(
                select(messages).where(
                    messages.c.id == message_id,
                    messages.c.mailbox_id.in_(_account_boxes(account_id)),
                )
            ).one_or_none()
        return None if row is None else core._message(row)

    def get_message_by_uid(self, mailbox_id: int, uid: int) -> StoredMessage | None:
        with self._read() as conn:
            row = conn.execute(
                select(messages).where(messages.c.mailbox_id == mailbox_id, messages.c.uid == uid)
            ).one_or_none()
        return None if row is None else core._message(row)

    def query_messages(
        self,
        account_id: int,
        mailbox_id: int | None,
        query: MessageQuery | None = None,
        *,
        sort: SortKey = SortKey.DATE,
        descending: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> MessagePage:
        query = query or MessageQuery()
        offset = max(offset, 0)
        limit = min(max(limit, 0), _MAX_PAGE)
        with self._read() as conn:
            if mailbox_id is not None:
                if conn.execute(_owned_box(account_id, mailbox_id)).first() is None:
                    raise NotFoundError(f"account {account_id} has no mailbox {mailbox_id}")
                wanted: Any = mailbox_id
            else:
                wanted = _account_boxes(account_id)
            built = _filters(conn.dialect.name, query)
            if built is None:
                return MessagePage(messages=(), total=0)
            filters, text_match = built
            if text_match is not None:
                filters.append(text_match)
            where = [_in_boxes(messages.c.mailbox_id, wanted), *filters]
            counted = where
            if text_match is not None and conn.dialect.name == "sqlite":
                # `mailbox_id + 0` hides the mailbox indexes from SQLite's planner, so the
                # full-text hits drive the query (cost grows with the hits, not with the
                # mailbox); otherwise it walks a whole mailbox in date order for a rare word.
                # Counting always goes this way. (PostgreSQL plans from its statistics, and
                # the same trick makes it misjudge the mailbox: not used there.)
                counted = [_in_boxes(messages.c.mailbox_id + 0, wanted), *filters]
            total = int(
                conn.scalar(select(func.count()).select_from(messages).where(*counted)) or 0
            )
            if total == 0 or limit == 0 or offset >= total:
                return MessagePage(messages=(), total=total)
            # A page of few hits: sort the hits. Of many in one mailbox: walk the sort order's
            # index and stop at the page's end, which meets a hit every mailbox-size / hits
            # rows. (Across mailboxes no index gives the order: always sort the hits.)
            walk = total > _SORT_HITS_UP_TO and mailbox_id is not None
            paged = where if walk else counted
            if not walk and text_match is not None and conn.dialect.name == "postgresql":
                rows = conn.execute(_sorted_hits(paged, SortKey(sort), descending, offset, limit))
            else:
                key = _SORT_COLUMNS[SortKey(sort)]
                order = [key.desc(), messages.c.id.desc()] if descending else [key, messages.c.id]
                rows = conn.execute(
                    select(messages).where(*paged).order_by(*order).offset(offset).limit(limit)
                )
            return MessagePage(messages=tuple(core._message(row) for row in rows), total=total)

    def move_messages(
        self, account_id: int, message_ids: Sequence[int], target_mailbox_id: int
    ) -> list[PlacedMessage]:
        if not message_ids:
            return []
        with self._write() as conn:
            core._lock_accounts(conn, {account_id})
            return _move_in(conn, account_id, message_ids, target_mailbox_id)

    def copy_messages(
        self, account_id: int, message_ids: Sequence[int], target_mailbox_id: int
    ) -> list[PlacedMessage]:
        if not message_ids:
            return []
        with self._write() as conn:
            quota, used = core._lock_accounts(conn, {account_id})[account_id]
            rows, boxes = _locked_messages(conn, account_id, message_ids, {target_mailbox_id})
            target = boxes.get(target_mailbox_id)
            if target is None:
                raise NotFoundError(f"account {account_id} has no mailbox {target_mailbox_id}")
            if not rows:
                return []
            grow = sum(int(row.size) for row in rows)
            if quota > 0 and used + grow > quota:
                raise QuotaExceededError(
                    f"copying {len(rows)} message(s) of {grow} bytes would take the account "
                    f"over its quota ({used} of {quota} bytes used)"
                )
            new_rows: list[dict[str, Any]] = []
            for row in rows:
                values = {name: row._mapping[name] for name in _COPIED_COLUMNS}
                uid = target.take_uid()
                values.update(mailbox_id=target.id, uid=uid, modseq=target.highestmodseq)
                new_rows.append(values)
            new_ids = list(
                conn.scalars(
                    insert(messages).returning(messages.c.id, sort_by_parameter_order=True),
                    new_rows,
                )
            )
            _copy_search_rows(conn, {row.id: new for row, new in zip(rows, new_ids, strict=True)})
            _save_boxes(conn, boxes)
            conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(used_bytes=accounts.c.used_bytes + grow)
            )
            return [
                PlacedMessage(row.id, new, target.id, int(values["uid"]))
                for row, new, values in zip(rows, new_ids, new_rows, strict=True)
            ]

    def set_flags(
        self,
        account_id: int,
        message_ids: Sequence[int],
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
    ) -> int:
        adding = {canonical_flag(flag) for flag in add}
        removing = {canonical_flag(flag) for flag in remove} - adding
        if not message_ids or not (adding or removing):
            return 0
        with self._write() as conn:
            rows, boxes = _locked_messages(conn, account_id, message_ids)
            params: list[dict[str, Any]] = []
            for row in rows:
                before = frozenset(row.flags.split())
                after = (before | adding) - removing
                if after == before:
                    continue
                box = boxes[row.mailbox_id]
                box.highestmodseq += 1
                box.changed = True
                params.append(
                    {
                        "mid": row.id,
                        "new_flags": " ".join(sorted(after)),
                        "new_seen": SEEN in after,
                        "new_modseq": box.highestmodseq,
                    }
                )
            if params:
                conn.execute(
                    update(messages)
                    .where(messages.c.id == bindparam("mid"))
                    .values(
                        flags=bindparam("new_flags"),
                        seen=bindparam("new_seen"),
                        modseq=bindparam("new_modseq"),
                    ),
                    params,
                )
                _save_boxes(conn, boxes)
            return len(params)

    def delete_messages(self, account_id: int, message_ids: Sequence[int]) -> list[str]:
        if not message_ids:
            return []
        with self._write() as conn:
            core._lock_accounts(conn, {account_id})
            return _delete_in(conn, account_id, message_ids)

    def empty_mailbox(self, account_id: int, mailbox_id: int) -> list[str]:
        with self._write() as conn:
            core._lock_accounts(conn, {account_id})
            if conn.execute(_owned_box(account_id, mailbox_id)).first() is None:
                raise NotFoundError(f"account {account_id} has no mailbox {mailbox_id}")
            ids = list(
                conn.scalars(select(messages.c.id).where(messages.c.mailbox_id == mailbox_id))
            )
            return _delete_in(conn, account_id, ids) if ids else []

    # --- search index -------------------------------------------------------------------
    def messages_to_index(self, version: int, limit: int = 500) -> list[StoredMessage]:
        with self._read() as conn:
            rows = conn.execute(
                select(messages)
                .where(messages.c.indexed_version < version)
                .order_by(messages.c.id)
                .limit(max(limit, 0))
            )
            return [core._message(row) for row in rows]

    def store_index(self, entries: Sequence[tuple[int, MessageIndex]]) -> int:
        if not entries:
            return 0
        latest = dict(entries)
        with self._write() as conn:
            present: set[int] = set()
            for batch in core.in_batches(sorted(latest)):
                present.update(conn.scalars(select(messages.c.id).where(messages.c.id.in_(batch))))
            if not present:
                return 0
            ids = sorted(present)
            for batch in core.in_batches(ids):
                conn.execute(delete(message_search).where(message_search.c.message_id.in_(batch)))
            conn.execute(
                insert(message_search),
                [{"message_id": mid, "terms": latest[mid].terms} for mid in ids],
            )
            conn.execute(
                update(messages)
                .where(messages.c.id == bindparam("mid"))
                .values(
                    sort_from=bindparam("new_from"),
                    sort_subject=bindparam("new_subject"),
                    has_attachment=bindparam("new_attachment"),
                    indexed_version=bindparam("new_version"),
                ),
                [
                    {
                        "mid": mid,
                        "new_from": latest[mid].sort_from[:INDEXED_TEXT_LEN],
                        "new_subject": latest[mid].sort_subject[:INDEXED_TEXT_LEN],
                        "new_attachment": latest[mid].has_attachment,
                        "new_version": latest[mid].version,
                    }
                    for mid in ids
                ],
            )
            return len(ids)


# --- helpers ------------------------------------------------------------------------


_SORT_COLUMNS = {
    SortKey.DATE: messages.c.internal_date,
    SortKey.FROM: messages.c.sort_from,
    SortKey.SUBJECT: messages.c.sort_subject,
    SortKey.SIZE: messages.c.size,
}
# Everything a copy keeps; id, mailbox, UID and MODSEQ are the copy's own.
_COPIED_COLUMNS = tuple(
    c.name for c in messages.columns if c.name not in {"id", "mailbox_id", "uid", "modseq"}
)


def _sorted_hits(
    where: Sequence[ColumnElement[bool]],
    sort: SortKey,
    descending: bool,
    offset: int,
    limit: int,
) -> Select[Any]:
    """PostgreSQL, a page of few full-text hits: sort the hits themselves.

    Left to itself the planner, which guesses a rare word's hits 10-20x too many, walks the
    mailbox's date index and probes every message for the word: 250-400 ms for 95 hits in a
    100,000-message INBOX. The MATERIALIZED CTE is a fence it cannot see through: the hits
    are found first (as the count found them, from the GIN index), then at most
    `_SORT_HITS_UP_TO` rows are sorted."""
    hits = select(messages).where(*where).cte("hits").prefix_with("MATERIALIZED")
    key = hits.c[_SORT_COLUMNS[sort].name]
    order = [key.desc(), hits.c.id.desc()] if descending else [key, hits.c.id]
    return select(hits).order_by(*order).offset(offset).limit(limit)


def _account_boxes(account_id: int) -> Any:
    return select(mailboxes.c.id).where(mailboxes.c.account_id == account_id)


def _owned_box(account_id: int, mailbox_id: int) -> Select[Any]:
    return select(mailboxes).where(
        mailboxes.c.id == mailbox_id, mailboxes.c.account_id == account_id
    )


def _member_box(conn: Connection, account_id: int, mailbox_id: int, verb: str) -> Mailbox:
    row = conn.execute(_owned_box(account_id, mailbox_id).with_for_update()).one_or_none()
    if row is None:
        raise NotFoundError(f"account {account_id} has no mailbox {mailbox_id}")
    box = core._mailbox(row)
    if box.special_use is not None:
        raise ConflictError(
            f"the standard folder {box.name} cannot be {verb}; mail programs rely on it"
        )
    return box


def _refuse_taken_name(conn: Connection, account_id: int, name: str, except_id: int | None) -> None:
    """Names differing only in case are refused too: two folders "Work" and "work" look
    alike in every list. Compared in Python, as SQLite's lower() knows only ASCII."""
    folded = name.casefold()
    for row in conn.execute(
        select(mailboxes.c.id, mailboxes.c.name).where(mailboxes.c.account_id == account_id)
    ):
        if row.id != except_id and row.name.casefold() == folded:
            raise ConflictError(f'there is a folder named "{row.name}" already')


def _lock_boxes(conn: Connection, account_id: int, box_ids: set[int]) -> dict[int, Any]:
    rows = conn.execute(
        select(mailboxes)
        .where(mailboxes.c.id.in_(sorted(box_ids)), mailboxes.c.account_id == account_id)
        .order_by(mailboxes.c.id)
        .with_for_update()
    )
    return {
        row.id: core._LockedBox(
            id=row.id,
            name=row.name,
            uidnext=int(row.uidnext),
            highestmodseq=int(row.highestmodseq),
        )
        for row in rows
    }


def _locked_messages(
    conn: Connection,
    account_id: int,
    message_ids: Sequence[int],
    extra_boxes: Iterable[int] = (),
) -> tuple[list[Row[Any]], dict[int, Any]]:
    """The account's messages among `message_ids` (in mailbox, UID order) and their
    mailboxes (plus `extra_boxes` that are the account's), locked."""
    unique = sorted(set(message_ids))
    box_ids: set[int] = set(extra_boxes)
    for batch in core.in_batches(unique):
        box_ids.update(
            conn.scalars(
                select(messages.c.mailbox_id)
                .where(
                    messages.c.id.in_(batch),
                    messages.c.mailbox_id.in_(_account_boxes(account_id)),
                )
                .distinct()
            )
        )
    if not box_ids:
        return [], {}
    boxes = _lock_boxes(conn, account_id, box_ids)
    rows: list[Row[Any]] = []
    for batch in core.in_batches(unique):
        rows.extend(
            conn.execute(
                select(messages).where(
                    messages.c.id.in_(batch), messages.c.mailbox_id.in_(sorted(boxes))
                )
            )
        )
    rows.sort(key=lambda row: (row.mailbox_id, row.uid))
    return rows, boxes


def _save_boxes(conn: Connection, boxes: dict[int, Any]) -> None:
    for box in boxes.values():
        if box.changed:
            conn.execute(
                update(mailboxes)
                .where(mailboxes.c.id == box.id)
                .values(uidnext=box.uidnext, highestmodseq=box.highestmodseq)
            )


def _move_in(
    conn: Connection, account_id: int, message_ids: Sequence[int], target_id: int
) -> list[PlacedMessage]:
    """Inside the caller's transaction, with the account locked."""
    rows, boxes = _locked_messages(conn, account_id, message_ids, {target_id})
    target = boxes.get(target_id)
    if target is None:
        raise NotFoundError(f"account {account_id} has no mailbox {target_id}")
    placed: list[PlacedMessage] = []
    params: list[dict[str, Any]] = []
    for row in rows:
        if row.mailbox_id == target_id:
            continue
        source = boxes[row.mailbox_id]
        source.highestmodseq += 1  # the message vanished from it (an expunge to IMAP)
        source.changed = True
        uid = target.take_uid()
        params.append({"mid": row.id, "new_uid": uid, "new_modseq": target.highestmodseq})
        placed.append(PlacedMessage(row.id, row.id, target_id, uid))
    if params:
        conn.execute(
            update(messages)
            .where(messages.c.id == bindparam("mid"))
            .values(mailbox_id=target_id, uid=bindparam("new_uid"), modseq=bindparam("new_modseq")),
            params,
        )
        _save_boxes(conn, boxes)
    return placed


def _delete_in(conn: Connection, account_id: int, message_ids: Sequence[int]) -> list[str]:
    """Inside the caller's transaction, with the account locked: delete the account's
    messages among `message_ids`, lower usage, bump the mailboxes' HIGHESTMODSEQ."""
    rows, boxes = _locked_messages(conn, account_id, message_ids)
    if not rows:
        return []
    for batch in core.in_batches([row.id for row in rows]):
        conn.execute(delete(messages).where(messages.c.id.in_(batch)))
    freed = sum(int(row.size) for row in rows)
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(used_bytes=accounts.c.used_bytes - freed)
    )
    for box_id in {row.mailbox_id for row in rows}:
        boxes[box_id].highestmodseq += 1
        boxes[box_id].changed = True
    _save_boxes(conn, boxes)
    return core.unreferenced_blobs(conn, [row.blob_ref for row in rows])


def _copy_search_rows(conn: Connection, new_ids: dict[int, int]) -> None:
    found: list[dict[str, Any]] = []
    for batch in core.in_batches(sorted(new_ids)):
        for row in conn.execute(
            select(message_search).where(message_search.c.message_id.in_(batch))
        ):
            found.append({"message_id": new_ids[row.message_id], "terms": row.terms})
    if found:
        conn.execute(insert(message_search), found)


def _text_match(dialect: str, expression: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        matching = (
            text("SELECT rowid FROM message_fts WHERE message_fts MATCH :fts")
            .bindparams(fts=expression)
            .columns(column("rowid", Integer))
        )
        return messages.c.id.in_(matching)
    return messages.c.id.in_(
        select(message_search.c.message_id).where(
            _PG_VECTOR.op("@@")(func.to_tsquery(_PG_CONFIG, expression))
        )
    )


def _in_boxes(column: ColumnElement[Any], wanted: Any) -> ColumnElement[bool]:
    return column.in_(wanted) if isinstance(wanted, Select) else column == wanted


def _filters(
    dialect: str, query: MessageQuery
) -> tuple[list[ColumnElement[bool]], ColumnElement[bool] | None] | None:
    """SQL conditions for a query, and the full-text one apart (None: no text filter).
    None overall when a text filter can match nothing (only punctuation typed), which is
    an empty result rather than "no filter"."""
    where: list[ColumnElement[bool]] = []
    if query.since is not None:
        where.append(messages.c.internal_date >= query.since)
    if query.before is not None:
        where.append(messages.c.internal_date < query.before)
    if query.has_attachment is not None:
        where.append(messages.c.has_attachment == query.has_attachment)
    if query.unread_only:
        where.append(messages.c.seen == false())
    if query.flagged_only:
        where.append((" " + messages.c.flags + " ").contains(" \\Flagged ", autoescape=True))
    texts = [
        (query.text, _ALL_FIELDS),
        (query.sender, (FIELDS["from"],)),
        (query.recipient, (FIELDS["to"],)),
        (query.subject, (FIELDS["subject"],)),
        (query.body, (FIELDS["body"],)),
    ]
    build = fts5_query if dialect == "sqlite" else tsquery
    parts: list[str] = []
    for wanted, fields in texts:
        if not wanted.strip():
            continue
        built = build(wanted, fields)
        if built is None:
            return None
        parts.append(built)
    if not parts:
        return where, None
    joiner = " AND " if dialect == "sqlite" else " & "
    return where, _text_match(dialect, joiner.join(f"({part})" for part in parts))


# Last, so that importing either module first works: `sql_store` mixes `MailboxOperations`
# into its class, and these helpers are only looked up when a method runs.
from tayori.storage import sql_store as core  # noqa: E402
