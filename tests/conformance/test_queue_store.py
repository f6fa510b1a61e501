"""QueueStore conformance: the outbound queue, submission counts and DKIM keys behave the
same on every back end."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tayori.core.address import AddressError
from tayori.core.errors import ConflictError, NotFoundError
from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.storage.engine import create_store_engine
from tayori.storage.factory import Stores
from tayori.storage.interfaces import MetadataStore, QueueStore
from tayori.storage.records import (
    Account,
    MessageSummary,
    NewMessage,
    NewQueuedMessage,
    QueueEntry,
    RecipientState,
    RecipientUpdate,
    SpecialUse,
)
from tayori.storage.sql_queue import SUBMISSION_RETENTION, SqlQueueStore

from .conftest import FakeClock, prepare_backend

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
LEASE = T0 + timedelta(minutes=10)


@pytest.fixture
def queue(stores: Stores) -> QueueStore:
    return stores.queue


@pytest.fixture
def meta(stores: Stores) -> MetadataStore:
    return stores.metadata


@pytest.fixture
def alice(meta: MetadataStore) -> Account:
    meta.add_domain("example.test")
    return meta.add_account("alice@example.test", "hash", 0)


def out(recipient: str, reason: str = "remote.delivered", **fields: Any) -> Outcome:
    values: dict[str, Any] = {
        "direction": Direction.OUTBOUND,
        "sender": "alice@example.test",
        "recipient": recipient,
        "outcome": OutcomeKind.DELIVERED,
        "reason": reason,
        "time": T0,
    }
    values.update(fields)
    return Outcome(**values)


def queued(
    queue_id: str = "Q1",
    *recipients: str,
    ref: str = "blob-q",
    created: datetime = T0,
    sender: str = "alice@example.test",
) -> NewQueuedMessage:
    return NewQueuedMessage(
        queue_id=queue_id,
        sender=sender,
        account_id=None,
        blob_ref=ref,
        size=1234,
        message_id=f"<{queue_id}@example.test>",
        subject=f"subject {queue_id}",
        created=created,
        expires=created + timedelta(days=5),
        recipients=recipients or ("bob@remote.test",),
    )


def local_copy(account: Account, ref: str = "blob-local", size: int = 10) -> NewMessage:
    return NewMessage(
        account_id=account.id,
        mailbox=SpecialUse.INBOX,
        blob_ref=ref,
        size=size,
        internal_date=T0,
        summary=MessageSummary(subject="local"),
        on_delivered=out(account.address, "delivered", direction=Direction.INBOUND),
        on_over_quota=out(
            account.address, "over_quota", outcome=OutcomeKind.BOUNCED, direction=Direction.INBOUND
        ),
    )


def reasons(meta: MetadataStore) -> list[str]:
    return sorted(stored.outcome.reason for stored in meta.list_outcomes(limit=1000))


def entry(queue: QueueStore, queue_id: str = "Q1") -> QueueEntry:
    found = queue.get_queue_entry(queue_id)
    assert found is not None
    return found


def ids(entries: list[QueueEntry]) -> list[str]:
    return [e.queue_id for e in entries]


def update(
    entry_: QueueEntry,
    index: int,
    state: RecipientState,
    *,
    next_attempt: datetime = LATER,
    reply: str = "250 2.0.0 ok",
) -> RecipientUpdate:
    return RecipientUpdate(
        recipient_id=entry_.recipients[index].id,
        state=state,
        next_attempt=next_attempt,
        reply=reply,
        remote_mta="mx.remote.test",
    )


# --- enqueue -------------------------------------------------------------------------------


def test_enqueue_remote_only(queue: QueueStore, meta: MetadataStore) -> None:
    results = queue.enqueue(
        queued("Q1", "Bob@Remote.TEST", "carol@other.test", "Bob@Remote.TEST"),
        outcomes=[out("x@remote.test", "queued.note")],
    )
    assert results == []
    found = entry(queue)
    assert (found.queue_id, found.sender, found.size, found.blob_ref) == (
        "Q1",
        "alice@example.test",
        1234,
        "blob-q",
    )
    assert (found.created, found.expires, found.delay_warned) == (T0, T0 + timedelta(days=5), False)
    # The address kept as given (the local part may be case-sensitive), never twice.
    assert [(r.recipient, r.domain) for r in found.recipients] == [
        ("Bob@Remote.TEST", "remote.test"),
        ("carol@other.test", "other.test"),
    ]
    for r in found.recipients:
        assert r.state is RecipientState.QUEUED
        assert (r.attempts, r.next_attempt, r.last_attempt) == (0, T0, None)
        assert (r.last_reply, r.remote_mta, r.bounce_requested) == ("", "", False)
    assert reasons(meta) == ["queued.note"]


def test_enqueue_with_local_copies_in_one_go(
    queue: QueueStore, meta: MetadataStore, alice: Account
) -> None:
    meta.set_quota(alice.address, 15)
    results = queue.enqueue(
        queued("Q1"),
        [local_copy(alice, "l1", 10), local_copy(alice, "l2", 10)],
        [out("bob@remote.test", "submitted")],
    )
    # The same quota rule as append_messages: the second copy would exceed it.
    assert [(r.appended, r.uid) for r in results] == [(True, 1), (False, 0)]
    inbox = meta.get_mailbox(alice.id, SpecialUse.INBOX)
    assert [m.blob_ref for m in meta.list_messages(inbox.id)] == ["l1"]
    assert reasons(meta) == ["delivered", "over_quota", "submitted"]
    delivered = meta.list_outcomes(recipient=alice.address)
    assert any("mailbox=INBOX uid=1" in stored.outcome.detail for stored in delivered)
    assert queue.get_queue_entry("Q1") is not None


def test_enqueue_local_only(queue: QueueStore, meta: MetadataStore, alice: Account) -> None:
    results = queue.enqueue(None, [local_copy(alice)])
    assert [r.appended for r in results] == [True]
    assert queue.list_queue() == []
    assert queue.enqueue(None) == []


def test_a_failing_append_stores_nothing(
    queue: QueueStore, meta: MetadataStore, alice: Account
) -> None:
    gone = meta.add_account("gone@example.test", "hash", 0)
    meta.remove_account(gone.address)
    with pytest.raises(NotFoundError):
        queue.enqueue(queued("Q1"), [local_copy(alice), local_copy(gone)], [out("bob@remote.test")])
    assert queue.list_queue() == []
    assert meta.list_messages(meta.get_mailbox(alice.id, SpecialUse.INBOX).id) == []
    assert reasons(meta) == []


def test_a_queue_id_in_use_stores_nothing(
    queue: QueueStore, meta: MetadataStore, alice: Account
) -> None:
    queue.enqueue(queued("Q1"))
    with pytest.raises(ConflictError):
        queue.enqueue(queued("Q1"), [local_copy(alice)], [out("bob@remote.test")])
    assert meta.list_messages(meta.get_mailbox(alice.id, SpecialUse.INBOX).id) == []
    assert reasons(meta) == []
    assert ids(queue.list_queue()) == ["Q1"]


def test_enqueue_refuses_what_could_never_be_delivered(queue: QueueStore) -> None:
    no_recipients = dataclasses.replace(queued(), recipients=())
    with pytest.raises(ValueError, match="no recipients"):
        queue.enqueue(no_recipients)
    with pytest.raises(ValueError, match="queue id"):
        queue.enqueue(queued(""))
    with pytest.raises(ValueError, match="time zone"):
        queue.enqueue(queued(created=datetime(2025, 3, 1, 12, 0)))
    assert queue.list_queue() == []


def test_a_domain_literal_recipient_is_kept(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1", "postmaster@[192.0.2.1]"))
    assert entry(queue).recipients[0].domain == "[192.0.2.1]"


# --- claims and leases ---------------------------------------------------------------------


def test_claim_takes_due_messages_oldest_first(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1"))
    queue.enqueue(queued("Q2", created=LATER))
    queue.enqueue(queued("Q3"))
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)
    assert ids(claimed) == ["Q1", "Q3"]
    assert ids(queue.claim_due(LATER, "node-b", LEASE, 10)) == ["Q2"]


def test_claim_limit(queue: QueueStore) -> None:
    for n in range(5):
        queue.enqueue(queued(f"Q{n}"))
    assert ids(queue.claim_due(T0, "a", LEASE, 2)) == ["Q0", "Q1"]
    assert ids(queue.claim_due(T0, "a", LEASE, 2)) == ["Q2", "Q3"]
    assert queue.claim_due(T0, "a", LEASE, 0) == []


def test_a_lease_keeps_everyone_else_out_until_it_expires(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1"))
    assert ids(queue.claim_due(T0, "node-a", LEASE, 10)) == ["Q1"]
    assert queue.claim_due(T0, "node-b", LEASE, 10) == []
    # The holder itself does not get it twice while it is still delivering it.
    assert queue.claim_due(LATER, "node-a", LEASE, 10) == []
    # node-a died: at the end of its lease, the message is free again.
    assert ids(queue.claim_due(LEASE, "node-b", LEASE + timedelta(minutes=10), 10)) == ["Q1"]


def test_release_ends_the_lease(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1"))
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)
    queue.release(claimed[0].id, "node-b")  # not b's: left alone
    assert queue.claim_due(T0, "node-b", LEASE, 10) == []
    queue.release(claimed[0].id, "node-a")
    assert ids(queue.claim_due(T0, "node-b", LEASE, 10)) == ["Q1"]


def test_claim_includes_only_queued_recipients(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1", "a@remote.test", "b@remote.test", "c@remote.test"))
    first = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    queue.record_attempts(
        first.id,
        "node-a",
        [
            update(first, 0, RecipientState.DELIVERED),
            update(first, 1, RecipientState.QUEUED, next_attempt=LATER + timedelta(hours=1)),
            update(first, 2, RecipientState.QUEUED, next_attempt=LATER),
        ],
        [],
    )
    again = queue.claim_due(LATER, "node-a", LEASE, 10)[0]
    # All queued recipients, also the one not due yet: the worker reads next_attempt.
    assert [(r.recipient, r.next_attempt) for r in again.recipients] == [
        ("b@remote.test", LATER + timedelta(hours=1)),
        ("c@remote.test", LATER),
    ]
    assert len(entry(queue).recipients) == 3


def test_concurrent_claimers_never_share_a_message(queue: QueueStore) -> None:
    for n in range(40):
        queue.enqueue(queued(f"Q{n:02}"))
    start = threading.Barrier(4)
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def claimer(holder: str) -> None:
        try:
            start.wait(timeout=10)
            mine: list[str] = []
            for _ in range(40):  # bounded: a claim that ignored leases would never run dry
                batch = queue.claim_due(T0, holder, LEASE, 3)
                if not batch:
                    break
                mine.extend(ids(batch))
            claimed[holder] = mine
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=claimer, args=(f"node-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    every = [queue_id for mine in claimed.values() for queue_id in mine]
    assert sorted(every) == [f"Q{n:02}" for n in range(40)]  # each exactly once


@pytest.mark.postgres
def test_postgresql_claimers_skip_rows_another_claim_has_locked(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    """Two nodes (two engines): while node A's claim holds its rows locked, node B's claim
    returns the other rows at once instead of waiting (FOR UPDATE SKIP LOCKED)."""
    url = prepare_backend("postgresql", request, tmp_path)
    engine_a, engine_b = create_store_engine(url), create_store_engine(url)
    node_a = SqlQueueStore(engine_a, clock=clock)
    node_b = SqlQueueStore(engine_b, clock=clock)
    try:
        for n in range(6):
            node_a.enqueue(queued(f"Q{n}"))
        a_locked, b_done = threading.Event(), threading.Event()

        @event.listens_for(engine_a, "after_cursor_execute")
        def pause(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "SKIP LOCKED" in statement:
                a_locked.set()
                b_done.wait(timeout=10)

        got_a: list[QueueEntry] = []
        thread = threading.Thread(target=lambda: got_a.extend(node_a.claim_due(T0, "a", LEASE, 3)))
        thread.start()
        try:
            assert a_locked.wait(timeout=10)
            got_b = node_b.claim_due(T0, "b", LEASE, 10)
            b_finished_while_a_held_its_rows = not b_done.is_set()
        finally:
            b_done.set()
            thread.join(timeout=10)
        assert b_finished_while_a_held_its_rows
        assert ids(got_a) == ["Q0", "Q1", "Q2"]
        assert ids(got_b) == ["Q3", "Q4", "Q5"]
    finally:
        engine_a.dispose()
        engine_b.dispose()


def test_a_bounce_request_makes_it_due(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1"))
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    far = T0 + timedelta(hours=4)
    queue.record_attempts(
        claimed.id, "node-a", [update(claimed, 0, RecipientState.QUEUED, next_attempt=far)], []
    )
    assert queue.claim_due(LATER, "node-a", LEASE, 10) == []
    assert queue.request_bounce("Q1", LATER) == 1
    bounced = queue.claim_due(LATER, "node-a", LEASE, 10)
    assert ids(bounced) == ["Q1"]
    assert [r.bounce_requested for r in bounced[0].recipients] == [True]


# --- recording attempts --------------------------------------------------------------------


def test_a_deferral_is_recorded_and_ends_the_lease(
    queue: QueueStore, meta: MetadataStore, clock: FakeClock
) -> None:
    queue.enqueue(queued("Q1"))
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    refs = queue.record_attempts(
        claimed.id,
        "node-a",
        [update(claimed, 0, RecipientState.QUEUED, reply="451 4.7.1 try later")],
        [out("bob@remote.test", "remote.deferred", outcome=OutcomeKind.DEFERRED)],
        delay_warned=True,
    )
    assert refs == []
    found = entry(queue)
    r = found.recipients[0]
    assert (r.state, r.attempts, r.next_attempt) == (RecipientState.QUEUED, 1, LATER)
    assert (r.last_attempt, r.last_reply, r.remote_mta) == (
        clock.now,
        "451 4.7.1 try later",
        "mx.remote.test",
    )
    assert found.delay_warned
    assert reasons(meta) == ["remote.deferred"]
    assert queue.claim_due(T0, "node-b", LEASE, 10) == []  # not due yet, though free
    assert ids(queue.claim_due(LATER, "node-b", LEASE, 10)) == ["Q1"]


def test_the_last_final_state_removes_the_message(queue: QueueStore, meta: MetadataStore) -> None:
    queue.enqueue(queued("Q1", "a@remote.test", "b@remote.test"))
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    refs = queue.record_attempts(
        claimed.id,
        "node-a",
        [
            update(claimed, 0, RecipientState.DELIVERED),
            update(claimed, 1, RecipientState.BOUNCED, reply="550 5.1.1 no such user"),
        ],
        [out("a@remote.test"), out("b@remote.test", "remote.rejected")],
    )
    assert refs == ["blob-q"]
    assert queue.get_queue_entry("Q1") is None
    assert reasons(meta) == ["remote.delivered", "remote.rejected"]


def test_a_blob_shared_with_a_mailbox_copy_is_kept(
    queue: QueueStore, meta: MetadataStore, alice: Account
) -> None:
    queue.enqueue(queued("Q1", ref="shared"), [local_copy(alice, "shared")])
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    assert (
        queue.record_attempts(
            claimed.id, "node-a", [update(claimed, 0, RecipientState.DELIVERED)], []
        )
        == []
    )
    inbox = meta.get_mailbox(alice.id, SpecialUse.INBOX)
    [message] = meta.list_messages(inbox.id)
    assert meta.expunge(inbox.id, [message.id]) == ["shared"]


def test_an_expunge_keeps_a_blob_the_queue_still_needs(
    queue: QueueStore, meta: MetadataStore, alice: Account
) -> None:
    queue.enqueue(queued("Q1", ref="shared"), [local_copy(alice, "shared")])
    inbox = meta.get_mailbox(alice.id, SpecialUse.INBOX)
    [message] = meta.list_messages(inbox.id)
    assert meta.expunge(inbox.id, [message.id]) == []
    assert queue.delete_queued("Q1") == ["shared"]


def test_attempts_by_a_holder_whose_lease_passed_on_are_refused(
    queue: QueueStore, meta: MetadataStore
) -> None:
    queue.enqueue(queued("Q1"))
    old = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    new = queue.claim_due(LEASE, "node-b", LEASE + timedelta(minutes=10), 10)[0]
    with pytest.raises(ConflictError, match="node-b"):
        queue.record_attempts(
            old.id, "node-a", [update(old, 0, RecipientState.DELIVERED)], [out("bob@remote.test")]
        )
    assert reasons(meta) == []
    assert entry(queue).recipients[0].attempts == 0
    assert queue.record_attempts(
        new.id, "node-b", [update(new, 0, RecipientState.DELIVERED)], []
    ) == ["blob-q"]


def test_a_lease_that_ran_out_unclaimed_still_counts(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1"))
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    # Nobody else claimed it: recording is better than delivering it a second time.
    assert queue.record_attempts(
        claimed.id, "node-a", [update(claimed, 0, RecipientState.DELIVERED)], []
    ) == ["blob-q"]


def test_attempts_on_a_deleted_message(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1"))
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    queue.delete_queued("Q1")
    with pytest.raises(NotFoundError, match="gone"):
        queue.record_attempts(
            claimed.id, "node-a", [update(claimed, 0, RecipientState.DELIVERED)], []
        )


def test_a_bad_update_records_nothing(queue: QueueStore, meta: MetadataStore) -> None:
    queue.enqueue(queued("Q1"))
    queue.enqueue(queued("Q2"))
    one, two = queue.claim_due(T0, "node-a", LEASE, 10)
    with pytest.raises(ValueError, match="not a queued recipient"):
        queue.record_attempts(
            one.id,
            "node-a",
            [update(one, 0, RecipientState.DELIVERED), update(two, 0, RecipientState.DELIVERED)],
            [out("bob@remote.test")],
        )
    with pytest.raises(ValueError, match="repeat"):
        queue.record_attempts(
            one.id,
            "node-a",
            [update(one, 0, RecipientState.DELIVERED), update(one, 0, RecipientState.DELIVERED)],
            [],
        )
    assert reasons(meta) == []
    assert entry(queue, "Q1").recipients[0].state is RecipientState.QUEUED
    # Still leased: nothing was recorded, the lease included.
    assert queue.claim_due(T0, "node-b", LEASE, 10) == []


def test_a_final_recipient_is_not_updated_again(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1", "a@remote.test", "b@remote.test"))
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    queue.record_attempts(claimed.id, "node-a", [update(claimed, 0, RecipientState.BOUNCED)], [])
    again = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    with pytest.raises(ValueError, match="not a queued recipient"):
        queue.record_attempts(again.id, "node-a", [update(claimed, 0, RecipientState.QUEUED)], [])


def test_a_delivery_report_is_stored_with_the_final_state(
    queue: QueueStore, meta: MetadataStore, alice: Account
) -> None:
    """The bounce to a remote sender is queued, the one to a member appended, in the same
    transaction as the failure; a report the quota refused comes back for deletion."""
    queue.enqueue(queued("Q1", sender="someone@remote.test"))
    queue.enqueue(queued("Q2", ref="blob-q2"))
    one, two = queue.claim_due(T0, "node-a", LEASE, 10)
    dsn = queued("D1", "someone@remote.test", ref="dsn-1", sender="")
    refs = queue.record_attempts(
        one.id,
        "node-a",
        [update(one, 0, RecipientState.BOUNCED)],
        [out("bob@remote.test", "remote.rejected")],
        enqueue=dsn,
    )
    assert refs == ["blob-q"]
    assert ids(queue.list_queue()) == ["Q2", "D1"]
    assert entry(queue, "D1").sender == ""

    meta.set_quota(alice.address, 5)
    refs = queue.record_attempts(
        two.id,
        "node-a",
        [update(two, 0, RecipientState.EXPIRED)],
        [],
        appends=[local_copy(alice, "dsn-2", 10)],
    )
    assert refs == ["dsn-2", "blob-q2"]
    assert reasons(meta) == ["over_quota", "remote.rejected"]


def test_a_failing_report_undoes_the_attempt(queue: QueueStore, meta: MetadataStore) -> None:
    queue.enqueue(queued("Q1"))
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    with pytest.raises(ConflictError):
        queue.record_attempts(
            claimed.id,
            "node-a",
            [update(claimed, 0, RecipientState.BOUNCED)],
            [out("bob@remote.test", "remote.rejected")],
            enqueue=queued("Q1"),  # queue id in use
        )
    assert entry(queue).recipients[0].state is RecipientState.QUEUED
    assert reasons(meta) == []


# --- administration ------------------------------------------------------------------------


def test_list_queue_and_deferred_only(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1", "a@remote.test", "b@remote.test"))
    queue.enqueue(queued("Q2"))
    one = queue.claim_due(T0, "node-a", LEASE, 1)[0]
    queue.record_attempts(
        one.id,
        "node-a",
        [update(one, 0, RecipientState.DELIVERED), update(one, 1, RecipientState.QUEUED)],
        [],
    )
    listed = queue.list_queue()
    assert ids(listed) == ["Q1", "Q2"]
    assert [r.state for r in listed[0].recipients] == [
        RecipientState.DELIVERED,
        RecipientState.QUEUED,
    ]
    assert ids(queue.list_queue(deferred_only=True)) == ["Q1"]
    assert queue.get_queue_entry("nope") is None


def test_retry_now(queue: QueueStore) -> None:
    far = T0 + timedelta(hours=4)
    for queue_id in ("Q1", "Q2"):
        queue.enqueue(queued(queue_id, "a@remote.test", "b@remote.test"))
    for claimed in queue.claim_due(T0, "node-a", LEASE, 10):
        queue.record_attempts(
            claimed.id,
            "node-a",
            [
                update(claimed, 0, RecipientState.QUEUED, next_attempt=far),
                update(claimed, 1, RecipientState.QUEUED, next_attempt=far),
            ],
            [],
        )
    assert queue.claim_due(LATER, "node-a", LEASE, 10) == []
    assert queue.retry_now("Q2", LATER) == 2
    assert ids(queue.claim_due(LATER, "node-a", LEASE, 10)) == ["Q2"]
    assert queue.retry_now(None, LATER) == 4
    assert ids(queue.claim_due(LATER, "node-b", LEASE, 10)) == ["Q1"]
    with pytest.raises(NotFoundError, match="queue list"):
        queue.retry_now("nope", LATER)


def test_request_bounce_counts_only_queued_recipients(queue: QueueStore) -> None:
    queue.enqueue(queued("Q1", "a@remote.test", "b@remote.test"))
    claimed = queue.claim_due(T0, "node-a", LEASE, 10)[0]
    queue.record_attempts(claimed.id, "node-a", [update(claimed, 0, RecipientState.DELIVERED)], [])
    assert queue.request_bounce("Q1", LATER) == 1
    assert [r.bounce_requested for r in entry(queue).recipients] == [False, True]
    with pytest.raises(NotFoundError):
        queue.request_bounce("nope", LATER)


def test_delete_queued(queue: QueueStore, meta: MetadataStore) -> None:
    queue.enqueue(queued("Q1"))
    queue.enqueue(queued("Q2", ref="blob-q"))  # the same bytes queued twice
    assert queue.delete_queued("Q1") == []
    assert queue.delete_queued("Q2", outcomes=[out("bob@remote.test", "queue.deleted")]) == [
        "blob-q"
    ]
    assert queue.list_queue() == []
    assert reasons(meta) == ["queue.deleted"]
    with pytest.raises(NotFoundError):
        queue.delete_queued("Q1")


def test_queued_mail_outlives_its_sender_account(
    queue: QueueStore, meta: MetadataStore, alice: Account
) -> None:
    queue.enqueue(
        dataclasses.replace(queued(ref="shared"), account_id=alice.id),
        [local_copy(alice, "shared")],
    )
    assert meta.remove_account(alice.address) == []  # the queue still needs the bytes
    assert entry(queue).account_id == alice.id


# --- submissions ---------------------------------------------------------------------------


def test_submission_counts_by_window(
    queue: QueueStore, meta: MetadataStore, alice: Account
) -> None:
    bob = meta.add_account("bob@example.test", "hash", 0)
    for minutes, recipients in ((0, 1), (30, 5), (90, 2)):
        queue.record_submission(alice.id, T0 + timedelta(minutes=minutes), recipients)
    queue.record_submission(bob.id, T0, 100)
    now = T0 + timedelta(minutes=90)
    assert queue.count_submissions(alice.id, now - timedelta(hours=1)) == (2, 7)
    assert queue.count_submissions(alice.id, T0) == (3, 8)  # inclusive
    assert queue.count_submissions(alice.id, T0 + timedelta(seconds=1)) == (2, 7)
    assert queue.count_submissions(alice.id, now + timedelta(seconds=1)) == (0, 0)
    assert queue.count_submissions(bob.id, T0) == (1, 100)
    assert queue.count_submissions(9999, T0) == (0, 0)


def test_old_submissions_are_pruned(queue: QueueStore, alice: Account) -> None:
    queue.record_submission(alice.id, T0, 1)
    later = T0 + SUBMISSION_RETENTION + timedelta(seconds=1)
    queue.record_submission(alice.id, later, 1)
    assert queue.count_submissions(alice.id, T0) == (1, 1)


def test_submission_errors(queue: QueueStore, meta: MetadataStore, alice: Account) -> None:
    with pytest.raises(NotFoundError):
        queue.record_submission(9999, T0, 1)
    with pytest.raises(ValueError, match="negative"):
        queue.record_submission(alice.id, T0, -1)
    queue.record_submission(alice.id, T0, 1)
    meta.remove_account(alice.address)
    assert queue.count_submissions(alice.id, T0) == (0, 0)


# --- DKIM keys -----------------------------------------------------------------------------


def test_dkim_keys_replace_and_get(
    queue: QueueStore, meta: MetadataStore, clock: FakeClock
) -> None:
    meta.add_domain("example.test")
    assert queue.get_dkim_key("example.test") is None
    first = queue.add_dkim_key("Example.TEST", "Tayori202501", "PEM-1")
    assert (first.domain, first.selector, first.private_key_pem, first.created) == (
        "example.test",
        "tayori202501",
        "PEM-1",
        clock.now,
    )
    assert queue.get_dkim_key("example.test") == first
    clock.advance(60)
    second = queue.add_dkim_key("example.test", "tayori202502", "PEM-2")
    assert queue.get_dkim_key("EXAMPLE.test") == second
    # The same selector again replaces that key: DNS publishes one record per name.
    third = queue.add_dkim_key("example.test", "tayori202501", "PEM-3")
    assert queue.get_dkim_key("example.test") == third


def test_dkim_keys_errors(queue: QueueStore, meta: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="domain add"):
        queue.add_dkim_key("unknown.test", "s1", "PEM")
    assert queue.get_dkim_key("unknown.test") is None
    meta.add_domain("example.test")
    for bad in ("", "a_b", "-a", "a..b", "x" * 64):
        with pytest.raises(AddressError, match="selector"):
            queue.add_dkim_key("example.test", bad, "PEM")
    with pytest.raises(ValueError, match="empty"):
        queue.add_dkim_key("example.test", "s1", " ")
    assert queue.add_dkim_key("example.test", "s1.rotating", "PEM").selector == "s1.rotating"


def test_dkim_keys_go_with_their_domain(queue: QueueStore, meta: MetadataStore) -> None:
    meta.add_domain("example.test")
    queue.add_dkim_key("example.test", "s1", "PEM")
    meta.remove_domain("example.test")
    meta.add_domain("example.test")
    assert queue.get_dkim_key("example.test") is None
