"""`QueueStore` on SQL: the outbound queue, submission counts and DKIM keys.

A claim is a lease written into the message row (`lease_holder`, `lease_until`), not a lock
held by a connection: a node that dies mid-delivery loses nothing, its lease runs out and
another node claims the message. Claimers select with `FOR UPDATE SKIP LOCKED` on
PostgreSQL, so nodes claiming at the same moment pass over each other's rows instead of
waiting for them or claiming them twice; on SQLite the claim runs inside BEGIN IMMEDIATE,
which serialises claimers outright.

At-least-once window: a recipient the remote server accepted is marked DELIVERED only when
`record_attempts` commits. A crash (or a lease that runs out) between the remote `250` and
that commit leaves it QUEUED, and the next claimer sends it again. Nothing narrower is
possible without the remote server's help; keeping the lease well above the time a delivery
takes keeps the second case away.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)

from tayori.core.address import AddressError, normalise_domain
from tayori.core.errors import ConflictError, NotFoundError
from tayori.core.outcome import Outcome, utcnow
from tayori.storage.engine import read_connection, write_transaction
from tayori.storage.records import (
    AppendResult,
    DkimKey,
    NewMessage,
    NewQueuedMessage,
    QueuedRecipient,
    QueueEntry,
    RecipientState,
    RecipientUpdate,
)
from tayori.storage.schema import (
    DOMAIN_LEN,
    QUEUE_ID_LEN,
    accounts,
    dkim_keys,
    domains,
    queue_messages,
    queue_recipients,
    submissions,
)
from tayori.storage.sql_store import (
    Clock,
    append_in,
    in_batches,
    insert_outcomes,
    new_id,
    require_domain,
    unreferenced_blobs,
)

SUBMISSION_RETENTION = timedelta(days=2)
"""How long submission rows are kept: twice the longest sending-limit window (a day), so a
count never misses a row it needs. Older rows of an account go when it next submits; the
history proper is in the outcomes."""

_QUEUED = RecipientState.QUEUED.value
# A DKIM selector is one or more DNS labels (RFC 6376 3.1), stored lowercase.
_SELECTOR_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

_m = queue_messages.c
_r = queue_recipients.c


class SqlQueueStore:
    """The outbound queue, submission counts and DKIM keys, on the metadata store's engine.

    `clock` stamps attempts (`last_attempt`) and DKIM keys; claims and retries take `now`
    from the caller, who also computed the schedule.
    """

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def _write(self) -> AbstractContextManager[Connection]:
        return write_transaction(self._engine)

    def _read(self) -> AbstractContextManager[Connection]:
        return read_connection(self._engine)

    # --- queueing ------------------------------------------------------------------------
    def enqueue(
        self,
        message: NewQueuedMessage | None,
        appends: Sequence[NewMessage] = (),
        outcomes: Sequence[Outcome] = (),
    ) -> list[AppendResult]:
        """Recipients are due at `message.created`. Raises ConflictError for a queue id in
        use, NotFoundError (nothing stored) when an append's account is gone."""
        if message is not None:
            _check_new(message)
        if message is None and not appends and not outcomes:
            return []
        with self._write() as conn:
            results = append_in(conn, appends)
            if message is not None:
                _insert_queued(conn, message)
            insert_outcomes(conn, outcomes)
        return results

    # --- forwarding (issue 3, helper "forwarding") ------------------------------------------
    def enqueue_many(
        self,
        messages: Sequence[NewQueuedMessage],
        appends: Sequence[NewMessage] = (),
        outcomes: Sequence[Outcome] = (),
    ) -> list[AppendResult]:
        """`enqueue` for several queued messages at once (forwarded copies: one per
        forwarding member, each with its own rewritten sender), all in ONE transaction
        with the local copies and outcomes, so the `250` covers every one of them."""
        for message in messages:
            _check_new(message)
        if not messages and not appends and not outcomes:
            return []
        with self._write() as conn:
            results = append_in(conn, appends)
            for message in messages:
                _insert_queued(conn, message)
            insert_outcomes(conn, outcomes)
        return results

    def claim_due(
        self, now: datetime, holder: str, lease_until: datetime, limit: int
    ) -> list[QueueEntry]:
        """Oldest first. A message under an unexpired lease is skipped whoever holds it, the
        caller included: a node that claims again while its earlier batch is still being
        delivered must not get those messages twice.

        Entries carry every QUEUED recipient, also those not due yet (their `next_attempt`
        says so), because the lease covers the whole message and a delay notice or the
        expiry bounce is about all of them; the worker attempts only the due ones."""
        if not holder:
            raise ValueError("a claim needs a holder name")
        if limit < 1:
            return []
        due = exists().where(
            _r.queue_message_id == _m.id, _r.state == _QUEUED, _r.next_attempt <= now
        )
        free = or_(_m.lease_until.is_(None), _m.lease_until <= now)
        with self._write() as conn:
            ids = list(
                conn.scalars(
                    select(_m.id)
                    .where(due, free)
                    .order_by(_m.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if not ids:
                return []
            conn.execute(
                update(queue_messages)
                .where(_m.id.in_(ids))
                .values(lease_holder=holder, lease_until=lease_until)
            )
            return _entries(conn, _m.id.in_(ids), queued_only=True)

    def release(self, entry_id: int, holder: str) -> None:
        """A lease that is not (or no longer) ours is left alone."""
        with self._write() as conn:
            conn.execute(
                update(queue_messages)
                .where(_m.id == entry_id, _m.lease_holder == holder)
                .values(lease_holder=None, lease_until=None)
            )

    def record_attempts(
        self,
        entry_id: int,
        holder: str,
        updates: Sequence[RecipientUpdate],
        outcomes: Sequence[Outcome],
        *,
        delay_warned: bool = False,
        enqueue: NewQueuedMessage | None = None,
        appends: Sequence[NewMessage] = (),
    ) -> list[str]:
        """`enqueue` and `appends` store the delivery report (DSN) for this attempt in the
        same transaction, remote or local sender alike, so that a crash can neither lose
        it nor, by repeating the attempt, send it twice. A report an append refused for
        quota has its blob ref returned with the others, for deletion.

        Raises NotFoundError when the message is gone (an admin deleted it), ConflictError
        when the lease passed to another holder (ours ran out), ValueError for an update of
        a recipient that is not a QUEUED one of this message; nothing is written then."""
        seen = [u.recipient_id for u in updates]
        if len(set(seen)) != len(seen):
            raise ValueError(f"recipient updates repeat an id: {seen}")
        if enqueue is not None:
            _check_new(enqueue)
        now = self._clock()
        with self._write() as conn:
            row = conn.execute(
                select(_m.blob_ref, _m.lease_holder).where(_m.id == entry_id).with_for_update()
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"queued message {entry_id} is gone (deleted meanwhile)")
            if row.lease_holder != holder:
                raise ConflictError(
                    f"queued message {entry_id} is no longer leased to {holder} (now: "
                    f"{row.lease_holder or 'nobody'}); its attempt results were not recorded"
                )
            for item in updates:
                _apply_update(conn, entry_id, item, now)
            lease_end: dict[str, Any] = {"lease_holder": None, "lease_until": None}
            if delay_warned:
                lease_end["delay_warned"] = True
            conn.execute(update(queue_messages).where(_m.id == entry_id).values(**lease_end))
            insert_outcomes(conn, outcomes)
            results = append_in(conn, appends)
            if enqueue is not None:
                _insert_queued(conn, enqueue)
            candidates = [
                item.blob_ref
                for item, result in zip(appends, results, strict=True)
                if not result.appended
            ]
            pending = conn.scalar(
                select(func.count()).where(_r.queue_message_id == entry_id, _r.state == _QUEUED)
            )
            if not pending:
                conn.execute(delete(queue_messages).where(_m.id == entry_id))
                candidates.append(row.blob_ref)
            return unreferenced_blobs(conn, candidates)

    # --- administration --------------------------------------------------------------------
    def list_queue(self, *, deferred_only: bool = False) -> list[QueueEntry]:
        condition: ColumnElement[bool] = true()
        if deferred_only:
            condition = exists().where(
                _r.queue_message_id == _m.id, _r.state == _QUEUED, _r.attempts > 0
            )
        with self._read() as conn:
            return _entries(conn, condition, queued_only=False)

    def get_queue_entry(self, queue_id: str) -> QueueEntry | None:
        with self._read() as conn:
            found = _entries(conn, _m.queue_id == queue_id, queued_only=False)
        return found[0] if found else None

    def retry_now(self, queue_id: str | None, now: datetime) -> int:
        """Leases are left alone: a message a node is delivering right now is retried by
        that node's own schedule, never by a second node at the same time. Raises
        NotFoundError for an unknown queue id."""
        with self._write() as conn:
            condition = _r.state == _QUEUED
            # Message rows first, as record_attempts locks them, so that the two cannot
            # deadlock over the recipient rows on PostgreSQL.
            if queue_id is not None:
                condition &= _r.queue_message_id == _require_queued(conn, queue_id, lock=True)
            else:
                conn.execute(select(_m.id).order_by(_m.id).with_for_update())
            result = conn.execute(
                update(queue_recipients).where(condition).values(next_attempt=now)
            )
            return int(result.rowcount)

    def request_bounce(self, queue_id: str, now: datetime) -> int:
        """Also makes them due now, which is what puts them in the next claim. Raises
        NotFoundError for an unknown queue id."""
        with self._write() as conn:
            entry_id = _require_queued(conn, queue_id, lock=True)  # lock order: see retry_now
            result = conn.execute(
                update(queue_recipients)
                .where(_r.queue_message_id == entry_id, _r.state == _QUEUED)
                .values(bounce_requested=True, next_attempt=now)
            )
            return int(result.rowcount)

    def delete_queued(self, queue_id: str, *, outcomes: Sequence[Outcome] = ()) -> list[str]:
        """`outcomes` (say, one per recipient still queued) are recorded in the same
        transaction, so that each recipient still ends in a stored outcome. A node that is
        delivering it now learns at `record_attempts` (NotFoundError). Raises NotFoundError
        for an unknown queue id."""
        with self._write() as conn:
            entry_id = _require_queued(conn, queue_id, lock=True)
            ref = conn.scalar(select(_m.blob_ref).where(_m.id == entry_id))
            conn.execute(delete(queue_messages).where(_m.id == entry_id))
            insert_outcomes(conn, outcomes)
            return unreferenced_blobs(conn, [ref] if ref is not None else [])

    # --- submissions -------------------------------------------------------------------------
    def record_submission(self, account_id: int, time: datetime, recipients: int) -> None:
        """Raises NotFoundError for an unknown account. Prunes the account's rows older
        than SUBMISSION_RETENTION before `time`, so the table stays small."""
        if recipients < 0:
            raise ValueError(f"recipient count {recipients} is negative")
        with self._write() as conn:
            if conn.scalar(select(accounts.c.id).where(accounts.c.id == account_id)) is None:
                raise NotFoundError(f"there is no account {account_id}")
            conn.execute(
                delete(submissions).where(
                    submissions.c.account_id == account_id,
                    submissions.c.time < time - SUBMISSION_RETENTION,
                )
            )
            conn.execute(
                insert(submissions).values(account_id=account_id, time=time, recipients=recipients)
            )

    def count_submissions(self, account_id: int, since: datetime) -> tuple[int, int]:
        """`since` is inclusive; it should lie within SUBMISSION_RETENTION of the last
        submission, as every sending-limit window does."""
        with self._read() as conn:
            row = conn.execute(
                select(func.count(), func.coalesce(func.sum(submissions.c.recipients), 0)).where(
                    submissions.c.account_id == account_id, submissions.c.time >= since
                )
            ).one()
        return int(row[0]), int(row[1])

    # --- DKIM keys -------------------------------------------------------------------------
    def add_dkim_key(self, domain: str, selector: str, private_key_pem: str) -> DkimKey:
        """The previous keys stay, inactive (their DNS records may still be published); a
        key with the same selector is replaced, as DNS can publish only one under a name.
        Raises AddressError for a selector that is not DNS labels."""
        name = normalise_domain(domain)
        chosen = check_selector(selector)
        if not private_key_pem.strip():
            raise ValueError("the private key is empty")
        now = self._clock()
        with self._write() as conn:
            domain_id = require_domain(conn, name)
            # Serialises two nodes replacing the same domain's key (PostgreSQL).
            conn.execute(select(domains.c.id).where(domains.c.id == domain_id).with_for_update())
            keys = dkim_keys.c
            conn.execute(
                delete(dkim_keys).where(keys.domain_id == domain_id, keys.selector == chosen)
            )
            conn.execute(update(dkim_keys).where(keys.domain_id == domain_id).values(active=False))
            conn.execute(
                insert(dkim_keys).values(
                    domain_id=domain_id,
                    selector=chosen,
                    private_key_pem=private_key_pem,
                    created=now,
                    active=True,
                )
            )
        return DkimKey(domain=name, selector=chosen, private_key_pem=private_key_pem, created=now)

    def get_dkim_key(self, domain: str) -> DkimKey | None:
        """The active key, or None (also for a domain not hosted)."""
        name = normalise_domain(domain)
        keys = dkim_keys.c
        with self._read() as conn:
            row = conn.execute(
                select(keys.selector, keys.private_key_pem, keys.created)
                .join(domains, domains.c.id == keys.domain_id)
                .where(domains.c.name == name, keys.active.is_(True))
                .order_by(keys.id.desc())
                .limit(1)
            ).one_or_none()
        if row is None:
            return None
        return DkimKey(
            domain=name,
            selector=row.selector,
            private_key_pem=row.private_key_pem,
            created=row.created,
        )


def check_selector(selector: str) -> str:
    """The selector in the form stored and published (lowercase); raises AddressError."""
    chosen = selector.strip().lower()
    if not chosen or len(chosen) > 253 or not all(map(_SELECTOR_LABEL.match, chosen.split("."))):
        raise AddressError(
            f"DKIM selector {selector!r} is not a DNS name (letters, digits, hyphens; "
            "dot-separated labels of at most 63)"
        )
    return chosen


# --- helpers ----------------------------------------------------------------------------


def _check_new(message: NewQueuedMessage) -> None:
    if not message.queue_id or len(message.queue_id) > QUEUE_ID_LEN:
        raise ValueError(f"queue id {message.queue_id!r} is empty or too long")
    if not message.recipients:
        raise ValueError(f"queued message {message.queue_id} has no recipients")
    if message.size < 0:
        raise ValueError(f"message size {message.size} is negative")


def _insert_queued(conn: Connection, message: NewQueuedMessage) -> None:
    result = conn.execute(
        insert(queue_messages).values(
            queue_id=message.queue_id,
            sender=message.sender,
            account_id=message.account_id,
            blob_ref=message.blob_ref,
            size=message.size,
            message_id=message.message_id,
            subject=message.subject,
            created=message.created,
            expires=message.expires,
            delay_warned=False,
            lease_holder=None,
            lease_until=None,
        )
    )
    entry_id = new_id(result.inserted_primary_key)
    # The same address twice would be delivered twice.
    recipients = list(dict.fromkeys(message.recipients))
    conn.execute(
        insert(queue_recipients),
        [
            {
                "queue_message_id": entry_id,
                "recipient": recipient,
                "domain": _domain_of(recipient),
                "state": _QUEUED,
                "attempts": 0,
                "next_attempt": message.created,
                "last_attempt": None,
                "last_reply": "",
                "remote_mta": "",
                "bounce_requested": False,
            }
            for recipient in recipients
        ],
    )


def _domain_of(recipient: str) -> str:
    """Lowercased and not validated: the pipeline decided what it accepts (a domain literal
    such as `[192.0.2.1]` included), and the store must not refuse it after the fact. Cut
    to the column's length only for names no DNS could hold anyway."""
    return recipient.rpartition("@")[2].rstrip(".").lower()[:DOMAIN_LEN]


def _apply_update(conn: Connection, entry_id: int, item: RecipientUpdate, now: datetime) -> None:
    state = RecipientState(item.state)
    values: dict[str, Any] = {
        "state": state.value,
        "attempts": _r.attempts + 1,
        "last_attempt": now,
        "last_reply": item.reply,
        "remote_mta": item.remote_mta,
    }
    if state is RecipientState.QUEUED:
        values["next_attempt"] = item.next_attempt
    result = conn.execute(
        update(queue_recipients)
        .where(
            _r.id == item.recipient_id,
            _r.queue_message_id == entry_id,
            _r.state == _QUEUED,
        )
        .values(**values)
    )
    if result.rowcount != 1:
        raise ValueError(
            f"recipient {item.recipient_id} is not a queued recipient of queued message "
            f"{entry_id}; nothing was recorded"
        )


def _require_queued(conn: Connection, queue_id: str, *, lock: bool = False) -> int:
    query = select(_m.id).where(_m.queue_id == queue_id)
    found = conn.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise NotFoundError(
            f"there is no queued message {queue_id} (delivered, bounced or deleted meanwhile?); "
            "see `tayori queue list`"
        )
    return int(found)


def _entries(
    conn: Connection, condition: ColumnElement[bool], *, queued_only: bool
) -> list[QueueEntry]:
    rows = list(conn.execute(select(queue_messages).where(condition).order_by(_m.id)))
    recipients: dict[int, list[QueuedRecipient]] = {row.id: [] for row in rows}
    for batch in in_batches(list(recipients)):
        query = select(queue_recipients).where(_r.queue_message_id.in_(batch))
        if queued_only:
            query = query.where(_r.state == _QUEUED)
        for found in conn.execute(query.order_by(_r.id)):
            recipients[found.queue_message_id].append(_recipient(found))
    return [_entry(row, recipients[row.id]) for row in rows]


def _recipient(row: Row[Any]) -> QueuedRecipient:
    return QueuedRecipient(
        id=int(row.id),
        recipient=row.recipient,
        domain=row.domain,
        state=RecipientState(row.state),
        attempts=int(row.attempts),
        next_attempt=row.next_attempt,
        last_attempt=row.last_attempt,
        last_reply=row.last_reply,
        remote_mta=row.remote_mta,
        bounce_requested=bool(row.bounce_requested),
    )


def _entry(row: Row[Any], recipients: list[QueuedRecipient]) -> QueueEntry:
    return QueueEntry(
        id=int(row.id),
        queue_id=row.queue_id,
        sender=row.sender,
        account_id=row.account_id,
        blob_ref=row.blob_ref,
        size=int(row.size),
        message_id=row.message_id,
        subject=row.subject,
        created=row.created,
        expires=row.expires,
        delay_warned=bool(row.delay_warned),
        recipients=tuple(recipients),
    )
