"""MetadataStore conformance: every back end behaves the same."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

from tayori.core.address import AddressError
from tayori.core.errors import ConflictError, NotFoundError, StoreUnavailableError, TayoriError
from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.storage.counters import FILTERS, counter_value
from tayori.storage.engine import (
    IDLE_CONNECTIONS_KEPT,
    create_store_engine,
    dispose_engine,
    read_connection,
    write_transaction,
)
from tayori.storage.factory import Stores
from tayori.storage.interfaces import MetadataStore
from tayori.storage.records import (
    Account,
    AccountStatus,
    MessageSummary,
    NewMessage,
    SpecialUse,
)
from tayori.storage.sql_store import SqlMetadataStore

from .conftest import FakeClock

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(stores: Stores) -> MetadataStore:
    return stores.metadata


def outcome(recipient: str, kind: OutcomeKind = OutcomeKind.DELIVERED, **fields: Any) -> Outcome:
    values: dict[str, Any] = {
        "direction": Direction.INBOUND,
        "sender": "sender@remote.test",
        "recipient": recipient,
        "outcome": kind,
        "reason": "delivered" if kind is OutcomeKind.DELIVERED else "over_quota",
        "time": T0,
    }
    values.update(fields)
    return Outcome(**values)


def new_message(
    account: Account,
    size: int,
    *,
    ref: str = "ref",
    mailbox: SpecialUse = SpecialUse.INBOX,
    enforce_quota: bool = True,
    flags: frozenset[str] = frozenset(),
) -> NewMessage:
    return NewMessage(
        account_id=account.id,
        mailbox=mailbox,
        blob_ref=ref,
        size=size,
        internal_date=T0,
        summary=MessageSummary(subject=f"message {ref}"),
        on_delivered=outcome(account.address, account_id=account.id, detail="spam=0.1"),
        on_over_quota=outcome(account.address, OutcomeKind.BOUNCED, account_id=account.id),
        flags=flags,
        enforce_quota=enforce_quota,
    )


@pytest.fixture
def alice(store: MetadataStore) -> Account:
    store.add_domain("example.test")
    return store.add_account("Alice@Example.test", "hash-a", 0)


def used(store: MetadataStore, account: Account) -> int:
    found = store.get_account_by_id(account.id)
    assert found is not None
    return found.used_bytes


# --- domains -----------------------------------------------------------------------


def test_domains_are_normalised_listed_and_unique(store: MetadataStore) -> None:
    added = store.add_domain("Example.TEST.")
    store.add_domain("b.example")
    assert added.name == "example.test"
    assert [d.name for d in store.list_domains()] == ["b.example", "example.test"]
    with pytest.raises(ConflictError, match=re.escape("example.test")):
        store.add_domain("EXAMPLE.test")
    with pytest.raises(AddressError):
        store.add_domain("no_dots")


def test_remove_domain(store: MetadataStore) -> None:
    store.add_domain("example.test")
    store.remove_domain("EXAMPLE.TEST")
    assert store.list_domains() == []
    with pytest.raises(NotFoundError):
        store.remove_domain("example.test")


def test_remove_domain_refuses_while_in_use_and_says_why(store: MetadataStore) -> None:
    store.add_domain("example.test")
    store.add_account("a@example.test", "h", 0)
    store.add_account("b@example.test", "h", 0)
    store.add_alias("all@example.test", ["a@example.test"])
    with pytest.raises(ConflictError) as caught:
        store.remove_domain("example.test")
    message = str(caught.value)
    assert "2 account addresses" in message
    assert "1 alias" in message
    assert "tayori user list --domain example.test" in message
    store.remove_alias("all@example.test")
    store.remove_account("a@example.test")
    store.remove_account("b@example.test")
    store.remove_domain("example.test")


# --- accounts -----------------------------------------------------------------------


def test_add_account_creates_mailboxes(store: MetadataStore, clock: FakeClock) -> None:
    store.add_domain("example.test")
    account = store.add_account("Alice@Example.TEST", "hash", 5000)
    assert account.address == "alice@example.test"
    assert (account.quota_bytes, account.used_bytes) == (5000, 0)
    assert account.status is AccountStatus.ACTIVE
    assert account.created == clock.now
    assert account.created.tzinfo is not None
    assert account.created.utcoffset() == timedelta(0)
    boxes = store.list_mailboxes(account.id)
    assert {box.special_use for box in boxes} == set(SpecialUse)
    assert all(box.uidnext == 1 for box in boxes)
    assert len({box.uidvalidity for box in boxes}) == len(boxes)
    assert all(box.uidvalidity >= int(clock.now.timestamp()) for box in boxes)
    inbox = store.get_mailbox(account.id, SpecialUse.INBOX)
    assert inbox.name == "INBOX"
    assert store.get_mailbox(account.id, SpecialUse.JUNK).name == "Junk"


def test_add_account_in_unhosted_domain_says_how_to_fix(store: MetadataStore) -> None:
    with pytest.raises(NotFoundError) as caught:
        store.add_account("bob@unknown.test", "h", 0)
    assert str(caught.value) == (
        "domain unknown.test is not hosted here; add it with `tayori domain add unknown.test`"
    )


def test_add_account_conflicts(store: MetadataStore, alice: Account) -> None:
    with pytest.raises(ConflictError, match=re.escape("alice@example.test")):
        store.add_account("ALICE@example.test", "h", 0)
    store.add_alias("team@example.test", [alice.address])
    with pytest.raises(ConflictError, match="alias"):
        store.add_account("team@example.test", "h", 0)
    with pytest.raises(AddressError):
        store.add_account("not an address", "h", 0)
    with pytest.raises(ValueError, match="negative"):
        store.add_account("c@example.test", "h", -1)


def test_get_and_list_accounts(store: MetadataStore, alice: Account) -> None:
    store.add_domain("other.test")
    bob = store.add_account("bob@other.test", "h", 0)
    assert store.get_account("ALICE@example.test") == alice
    assert store.get_account("nobody@example.test") is None
    assert store.get_account_by_id(bob.id) == bob
    assert store.get_account_by_id(99999) is None
    assert [a.address for a in store.list_accounts()] == ["alice@example.test", "bob@other.test"]
    assert store.list_accounts("OTHER.test") == [bob]
    assert store.list_accounts("unhosted.test") == []


def test_set_password_and_quota(store: MetadataStore, alice: Account) -> None:
    store.set_password("alice@EXAMPLE.test", "new-hash")
    store.set_quota("alice@example.test", 123)
    found = store.get_account_by_id(alice.id)
    assert found is not None
    assert (found.password_hash, found.quota_bytes) == ("new-hash", 123)
    with pytest.raises(NotFoundError):
        store.set_password("nobody@example.test", "x")
    with pytest.raises(NotFoundError):
        store.set_quota("nobody@example.test", 1)


def test_remove_account_returns_blob_refs_and_cleans_up(
    store: MetadataStore, alice: Account
) -> None:
    bob = store.add_account("bob@example.test", "h", 0)
    store.append_messages(
        [
            new_message(alice, 10, ref="r1"),
            new_message(alice, 20, ref="r2", mailbox=SpecialUse.SENT),
            new_message(bob, 30, ref="r3"),
        ]
    )
    store.add_alias("solo@example.test", [alice.address])
    store.add_alias("both@example.test", [alice.address, bob.address])
    assert store.try_lock_maildrop(alice.id, "pop-1", T0 + timedelta(days=3650))

    assert sorted(store.remove_account("Alice@example.test")) == ["r1", "r2"]

    assert store.get_account(alice.address) is None
    assert store.list_mailboxes(alice.id) == []
    assert store.lookup_recipient(alice.address).accounts == ()
    assert store.lookup_recipient(alice.address).hosted
    # An alias left without targets would deliver nowhere: it goes too.
    assert [(a.address, a.targets) for a in store.list_aliases()] == [
        ("both@example.test", ("bob@example.test",))
    ]
    bob_inbox = store.get_mailbox(bob.id, SpecialUse.INBOX)
    assert [m.blob_ref for m in store.list_messages(bob_inbox.id)] == ["r3"]
    with pytest.raises(NotFoundError):
        store.remove_account(alice.address)
    # The address is free again.
    store.add_account(alice.address, "h", 0)


# --- aliases ------------------------------------------------------------------------


def test_aliases(store: MetadataStore, alice: Account) -> None:
    bob = store.add_account("bob@example.test", "h", 0)
    alias = store.add_alias("Team@Example.test", ["BOB@example.test", alice.address])
    assert alias.address == "team@example.test"
    assert alias.targets == ("alice@example.test", "bob@example.test")
    store.remove_alias("team@example.test", ["bob@example.test"])
    again = store.add_alias("team@example.test", [bob.address, alice.address])
    assert again.targets == ("alice@example.test", "bob@example.test")
    store.add_domain("other.test")
    store.add_alias("x@other.test", [bob.address])
    assert [a.address for a in store.list_aliases()] == ["team@example.test", "x@other.test"]
    assert [a.address for a in store.list_aliases("other.test")] == ["x@other.test"]
    assert [(a.address, a.targets) for a in store.list_aliases(target="Alice@example.test")] == [
        ("team@example.test", ("alice@example.test", "bob@example.test"))
    ]
    assert [a.address for a in store.list_aliases(target=bob.address)] == [
        "team@example.test",
        "x@other.test",
    ]
    assert [a.address for a in store.list_aliases("other.test", target=bob.address)] == [
        "x@other.test"
    ]
    assert store.list_aliases(target="nobody@example.test") == []
    store.remove_alias("team@example.test")
    assert [a.address for a in store.list_aliases()] == ["x@other.test"]


def test_alias_errors_are_clear(store: MetadataStore, alice: Account) -> None:
    with pytest.raises(NotFoundError, match=re.escape("nobody@example.test")):
        store.add_alias("team@example.test", ["nobody@example.test"])
    with pytest.raises(ConflictError, match="account address"):
        store.add_alias(alice.address, [alice.address])
    with pytest.raises(NotFoundError, match=re.escape("tayori domain add unknown.test")):
        store.add_alias("x@unknown.test", [alice.address])
    store.add_alias("team@example.test", [alice.address])
    with pytest.raises(ConflictError, match="alias itself"):
        store.add_alias("other@example.test", ["team@example.test"])
    with pytest.raises(TayoriError, match="at least one"):
        store.add_alias("empty@example.test", [])
    with pytest.raises(NotFoundError, match="no alias"):
        store.remove_alias("nothing@example.test")
    store.add_account("bob@example.test", "h", 0)
    with pytest.raises(NotFoundError, match="not a target"):
        store.remove_alias("team@example.test", ["bob@example.test"])
    # A failed alias creation left nothing behind.
    assert [a.address for a in store.list_aliases()] == ["team@example.test"]


def test_removing_last_target_removes_alias(store: MetadataStore, alice: Account) -> None:
    store.add_alias("team@example.test", [alice.address])
    store.remove_alias("team@example.test", [alice.address])
    assert store.list_aliases() == []
    assert store.lookup_recipient("team@example.test").accounts == ()


# --- recipients ----------------------------------------------------------------------


def test_lookup_recipient(store: MetadataStore, alice: Account) -> None:
    bob = store.add_account("bob@example.test", "h", 0)
    store.add_alias("team@example.test", [alice.address, bob.address])

    found = store.lookup_recipient("<ALICE@example.TEST>")
    assert found.hosted
    assert found.accounts == (alice,)
    team = store.lookup_recipient("Team@example.test")
    assert team.hosted
    assert [a.address for a in team.accounts] == [alice.address, bob.address]
    unknown = store.lookup_recipient("nobody@example.test")
    assert (unknown.hosted, unknown.accounts) == (True, ())
    elsewhere = store.lookup_recipient("alice@elsewhere.test")
    assert (elsewhere.hosted, elsewhere.accounts) == (False, ())
    with pytest.raises(AddressError):
        store.lookup_recipient("not-an-address")


# --- messages -------------------------------------------------------------------------


def test_append_assigns_uids_modseqs_and_usage(store: MetadataStore, alice: Account) -> None:
    inbox = store.get_mailbox(alice.id, SpecialUse.INBOX)
    first = store.append_messages(
        [new_message(alice, 100, ref="a"), new_message(alice, 50, ref="b")]
    )
    second = store.append_messages(
        [new_message(alice, 7, ref="c", flags=frozenset({"\\Seen", "$Junk"}))]
    )
    assert [(r.appended, r.mailbox_id, r.uid) for r in first + second] == [
        (True, inbox.id, 1),
        (True, inbox.id, 2),
        (True, inbox.id, 3),
    ]
    listed = store.list_messages(inbox.id)
    assert [m.uid for m in listed] == [1, 2, 3]
    assert [m.blob_ref for m in listed] == ["a", "b", "c"]
    assert listed[0].modseq < listed[1].modseq < listed[2].modseq
    assert listed[2].flags == frozenset({"\\Seen", "$Junk"})
    assert listed[0].internal_date == T0
    assert listed[0].internal_date.tzinfo is not None
    assert listed[0].summary == MessageSummary(subject="message a")
    after = store.get_mailbox(alice.id, SpecialUse.INBOX)
    assert after.uidnext == 4
    assert after.uidvalidity == inbox.uidvalidity
    assert after.highestmodseq == listed[2].modseq
    assert used(store, alice) == 157

    delivered = store.list_outcomes(account_id=alice.id)
    assert len(delivered) == 3
    assert {o.outcome.detail for o in delivered} == {
        "spam=0.1 mailbox=INBOX uid=1",
        "spam=0.1 mailbox=INBOX uid=2",
        "spam=0.1 mailbox=INBOX uid=3",
    }


def test_append_to_other_mailboxes_keeps_separate_uids(
    store: MetadataStore, alice: Account
) -> None:
    results = store.append_messages(
        [
            new_message(alice, 1, mailbox=SpecialUse.JUNK),
            new_message(alice, 1),
            new_message(alice, 1, mailbox=SpecialUse.JUNK),
        ]
    )
    junk = store.get_mailbox(alice.id, SpecialUse.JUNK)
    assert [(r.mailbox_id == junk.id, r.uid) for r in results] == [
        (True, 1),
        (False, 1),
        (True, 2),
    ]
    details = {o.outcome.detail for o in store.list_outcomes()}
    assert "spam=0.1 mailbox=Junk uid=2" in details
    assert "spam=0.1 mailbox=INBOX uid=1" in details


def test_quota_refuses_and_sees_earlier_items_of_the_batch(
    store: MetadataStore, alice: Account
) -> None:
    store.set_quota(alice.address, 100)
    store.append_messages([new_message(alice, 60, ref="old")])
    results = store.append_messages(
        [
            new_message(alice, 30, ref="fits"),
            new_message(alice, 20, ref="too-much"),  # 60 + 30 + 20 > 100
            new_message(alice, 10, ref="exactly"),  # 100 is allowed
            new_message(alice, 500, ref="forced", enforce_quota=False),
        ]
    )
    assert [(r.appended, r.uid) for r in results] == [(True, 2), (False, 0), (True, 3), (True, 4)]
    assert used(store, alice) == 600
    inbox = store.get_mailbox(alice.id, SpecialUse.INBOX)
    assert [m.blob_ref for m in store.list_messages(inbox.id)] == [
        "old",
        "fits",
        "exactly",
        "forced",
    ]
    kinds = [o.outcome.outcome for o in store.list_outcomes(account_id=alice.id)]
    assert sorted(kinds) == sorted([OutcomeKind.DELIVERED] * 4 + [OutcomeKind.BOUNCED])


def test_zero_quota_means_unlimited(store: MetadataStore, alice: Account) -> None:
    results = store.append_messages([new_message(alice, 10**12)])
    assert results[0].appended
    assert used(store, alice) == 10**12


def test_append_for_a_missing_account_appends_nothing(store: MetadataStore, alice: Account) -> None:
    ghost = Account(
        id=alice.id + 1000,
        address="ghost@example.test",
        domain_id=alice.domain_id,
        password_hash="",
        quota_bytes=0,
        used_bytes=0,
        status=AccountStatus.ACTIVE,
        created=T0,
    )
    with pytest.raises(NotFoundError):
        store.append_messages([new_message(alice, 1), new_message(ghost, 1)])
    assert store.list_messages(store.get_mailbox(alice.id, SpecialUse.INBOX).id) == []
    assert store.list_outcomes() == []
    assert store.append_messages([]) == []


def test_expunge_returns_refs_and_lowers_usage(store: MetadataStore, alice: Account) -> None:
    store.append_messages([new_message(alice, n * 10, ref=f"r{n}") for n in range(1, 5)])
    inbox = store.get_mailbox(alice.id, SpecialUse.INBOX)
    sent = store.get_mailbox(alice.id, SpecialUse.SENT)
    store.append_messages([new_message(alice, 1000, ref="sent", mailbox=SpecialUse.SENT)])
    ids = {m.blob_ref: m.id for m in store.list_messages(inbox.id)}
    sent_id = store.list_messages(sent.id)[0].id
    before = store.get_mailbox(alice.id, SpecialUse.INBOX).highestmodseq

    refs = store.expunge(inbox.id, [ids["r2"], ids["r4"], 987654, sent_id])

    assert sorted(refs) == ["r2", "r4"]
    assert used(store, alice) == 10 + 30 + 1000
    assert [m.blob_ref for m in store.list_messages(inbox.id)] == ["r1", "r3"]
    assert [m.blob_ref for m in store.list_messages(sent.id)] == ["sent"]
    after = store.get_mailbox(alice.id, SpecialUse.INBOX)
    assert after.highestmodseq > before
    assert after.uidnext == 5  # UIDs are never reused
    assert store.expunge(inbox.id, [ids["r2"]]) == []
    assert store.expunge(inbox.id, []) == []
    assert store.expunge(987654, [ids["r1"]]) == []
    assert used(store, alice) == 1040


def test_message_refs_are_the_listing_in_uid_order(store: MetadataStore, alice: Account) -> None:
    """POP3's maildrop snapshot: the same messages, numbers and refs as `list_messages`,
    ordered by UID even where that is not the order the rows were made in."""
    bob = store.add_account("bob@example.test", "h", 0)
    inbox = store.get_mailbox(alice.id, SpecialUse.INBOX)
    sent = store.get_mailbox(alice.id, SpecialUse.SENT)
    store.append_messages([new_message(alice, 70, ref="moved", mailbox=SpecialUse.SENT)])
    store.append_messages(
        [new_message(alice, n * 10, ref=f"r{n}") for n in range(1, 4)]
        + [new_message(bob, 5, ref="bobs")]
    )
    moved = store.list_messages(sent.id)[0]
    # Moved in after r1..r3, so it gets the highest UID although its row is the oldest.
    store.move_messages(alice.id, [moved.id], inbox.id)
    r2 = next(m for m in store.list_messages(inbox.id) if m.blob_ref == "r2")
    store.expunge(inbox.id, [r2.id])

    refs = store.list_message_refs(inbox.id)

    assert [r.blob_ref for r in refs] == ["r1", "r3", "moved"]
    assert [r.size for r in refs] == [10, 30, 70]
    assert refs == [(m.id, m.uid, m.size, m.blob_ref) for m in store.list_messages(inbox.id)]
    assert [r.uid for r in refs] == sorted(r.uid for r in refs)
    assert all(type(value) is int for r in refs for value in (r.id, r.uid, r.size))
    assert store.list_message_refs(sent.id) == []
    assert store.list_message_refs(987654) == []


def test_shared_blobs_are_returned_once_unused(store: MetadataStore, alice: Account) -> None:
    bob = store.add_account("bob@example.test", "h", 0)
    store.append_messages(
        [
            new_message(alice, 10, ref="shared"),
            new_message(bob, 10, ref="shared"),
            new_message(bob, 10, ref="shared", mailbox=SpecialUse.TRASH),
        ]
    )
    alice_inbox = store.get_mailbox(alice.id, SpecialUse.INBOX)
    bob_inbox = store.get_mailbox(bob.id, SpecialUse.INBOX)
    assert store.expunge(alice_inbox.id, [m.id for m in store.list_messages(alice_inbox.id)]) == []
    assert used(store, alice) == 0
    assert store.expunge(bob_inbox.id, [m.id for m in store.list_messages(bob_inbox.id)]) == []
    assert store.remove_account(bob.address) == ["shared"]


def test_concurrent_appends_never_duplicate_uids(store: MetadataStore, alice: Account) -> None:
    bob = store.add_account("bob@example.test", "h", 0)
    threads_n, batches, per_batch = 6, 5, 4
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def worker(index: int) -> None:
        try:
            start.wait()
            for _ in range(batches):
                # Opposite account orders in alternate threads: locking must not deadlock.
                pair = [alice, bob] if index % 2 else [bob, alice]
                store.append_messages(
                    [new_message(pair[i % 2], 3 + index) for i in range(per_batch)]
                )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    per_account = threads_n * batches * per_batch // 2
    expected_usage = sum((3 + i) * batches * per_batch // 2 for i in range(threads_n))
    for account in (alice, bob):
        inbox = store.get_mailbox(account.id, SpecialUse.INBOX)
        assert [m.uid for m in store.list_messages(inbox.id)] == list(range(1, per_account + 1))
        assert inbox.uidnext == per_account + 1
        assert used(store, account) == expected_usage


# --- outcomes -----------------------------------------------------------------------


def test_outcomes_newest_first_with_filters(store: MetadataStore) -> None:
    tokyo = timezone(timedelta(hours=9))
    records = [
        outcome("a@example.test", time=T0, account_id=1, message_id="<m1@x>", subject="Hello"),
        outcome(
            "b@example.test",
            time=T0 + timedelta(minutes=1),
            subject="100% off_sale",
            remote_ip="192.0.2.9",
        ),
        outcome(
            "a@example.test",
            time=(T0 + timedelta(minutes=2)).astimezone(tokyo),
            account_id=1,
            sender="other@remote.test",
            subject="請求書",
        ),
        outcome("c@example.test", time=T0 - timedelta(days=1), message_id="<m1@x>"),
    ]
    store.record_outcomes(records)
    store.record_outcomes([])

    everything = store.list_outcomes()
    assert [o.outcome.time for o in everything] == [
        T0 + timedelta(minutes=2),
        T0 + timedelta(minutes=1),
        T0,
        T0 - timedelta(days=1),
    ]
    assert all(o.outcome.time.utcoffset() == timedelta(0) for o in everything)
    assert everything[0].outcome == dataclasses.replace(records[2], time=T0 + timedelta(minutes=2))
    assert len({o.id for o in everything}) == 4

    def recipients(**filters: Any) -> list[str]:
        return [o.outcome.recipient for o in store.list_outcomes(**filters)]

    assert recipients(account_id=1) == ["a@example.test", "a@example.test"]
    assert recipients(since=T0) == ["a@example.test", "b@example.test", "a@example.test"]
    assert recipients(until=T0) == ["c@example.test"]
    assert recipients(since=T0, until=T0 + timedelta(minutes=2)) == [
        "b@example.test",
        "a@example.test",
    ]
    assert recipients(sender="other@remote.test") == ["a@example.test"]
    assert recipients(recipient="c@example.test") == ["c@example.test"]
    assert recipients(message_id="<m1@x>") == ["a@example.test", "c@example.test"]
    assert recipients(subject_contains="hello") == ["a@example.test"]
    assert recipients(subject_contains="0% off_") == ["b@example.test"]
    assert recipients(subject_contains="%") == ["b@example.test"]
    assert recipients(subject_contains="_s") == ["b@example.test"]
    assert recipients(subject_contains="求書") == ["a@example.test"]
    assert recipients(remote_ip="192.0.2.9") == ["b@example.test"]
    assert recipients(remote_ip="192.0.2.9", since=T0 + timedelta(minutes=2)) == []
    assert recipients(remote_ip="2001:db8::9") == []
    assert recipients(limit=1) == ["a@example.test"]
    assert recipients(account_id=1, since=T0 + timedelta(minutes=1)) == ["a@example.test"]


def test_outcome_long_fields_are_cut_not_refused(store: MetadataStore) -> None:
    long_id = "<" + "x" * 5000 + "@example>"
    store.record_outcomes([outcome("a@example.test", message_id=long_id, subject="s" * 20000)])
    stored = store.list_outcomes()[0].outcome
    assert long_id.startswith(stored.message_id)
    assert len(stored.message_id) == 512
    assert len(stored.subject) == 20000


def test_appended_and_recorded_outcomes_read_alike(store: MetadataStore, alice: Account) -> None:
    """An append's outcomes (the group commit's own insert) and `record_outcomes` store
    times and cut fields the same way: filters and order treat them as one history."""
    tokyo = timezone(timedelta(hours=9))
    whole_second = (T0 + timedelta(minutes=1)).astimezone(tokyo)
    long_id = "<" + "y" * 5000 + "@example>"
    delivered = outcome(
        alice.address, account_id=alice.id, time=whole_second, message_id=long_id, detail="d"
    )
    item = dataclasses.replace(new_message(alice, 10), on_delivered=delivered)
    store.append_messages([item])
    store.record_outcomes(
        [
            outcome("before@example.test", time=T0 + timedelta(minutes=1, microseconds=-1)),
            outcome("same@example.test", time=T0 + timedelta(minutes=1)),
            outcome("after@example.test", time=T0 + timedelta(minutes=1, microseconds=1)),
        ]
    )

    def recipients(**filters: Any) -> list[str]:
        return [o.outcome.recipient for o in store.list_outcomes(**filters)]

    assert recipients() == [
        "after@example.test",
        "same@example.test",
        alice.address,
        "before@example.test",
    ]
    assert recipients(until=T0 + timedelta(minutes=1)) == ["before@example.test"]
    assert recipients(since=T0 + timedelta(minutes=1, microseconds=1)) == ["after@example.test"]
    stored = store.list_outcomes(account_id=alice.id)[0].outcome
    assert stored.time == T0 + timedelta(minutes=1)
    assert stored.time.utcoffset() == timedelta(0)
    assert len(stored.message_id) == 512 and long_id.startswith(stored.message_id)
    assert stored.detail.startswith("d mailbox=INBOX uid=1")
    [message] = store.list_messages(store.get_mailbox(alice.id, SpecialUse.INBOX).id)
    assert message.internal_date == T0 and message.internal_date.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(store: MetadataStore) -> None:
    with pytest.raises(ValueError, match="time zone"):
        store.record_outcomes([outcome("a@example.test", time=datetime(2025, 1, 1))])


# --- maildrop locks -------------------------------------------------------------------


def test_maildrop_lock_lifecycle(store: MetadataStore, alice: Account, clock: FakeClock) -> None:
    soon = clock.now + timedelta(minutes=10)
    assert store.try_lock_maildrop(alice.id, "node-a", soon)
    assert store.try_lock_maildrop(alice.id, "node-a", soon)  # re-entrant for its holder
    assert not store.try_lock_maildrop(alice.id, "node-b", soon)
    store.refresh_maildrop_lock(alice.id, "node-a", soon + timedelta(minutes=10))
    with pytest.raises(ConflictError):
        store.refresh_maildrop_lock(alice.id, "node-b", soon)
    clock.advance(15 * 60)
    assert not store.try_lock_maildrop(alice.id, "node-b", clock.now + timedelta(minutes=1))
    clock.advance(5 * 60)  # now exactly at the refreshed expiry: expired
    assert store.try_lock_maildrop(alice.id, "node-b", clock.now + timedelta(minutes=1))
    with pytest.raises(ConflictError, match="no longer held"):
        store.refresh_maildrop_lock(alice.id, "node-a", clock.now + timedelta(minutes=1))
    store.release_maildrop_lock(alice.id, "node-a")  # not ours any more: no effect
    assert not store.try_lock_maildrop(alice.id, "node-a", clock.now + timedelta(minutes=1))
    store.release_maildrop_lock(alice.id, "node-b")
    store.release_maildrop_lock(alice.id, "node-b")
    assert store.try_lock_maildrop(alice.id, "node-a", clock.now + timedelta(minutes=1))
    with pytest.raises(NotFoundError):
        store.try_lock_maildrop(alice.id + 1000, "node-a", soon)


def test_maildrop_lock_race_has_one_winner(
    store: MetadataStore, alice: Account, clock: FakeClock
) -> None:
    contenders = 8
    start = threading.Barrier(contenders)
    wins: list[str] = []
    errors: list[BaseException] = []

    def contend(holder: str) -> None:
        try:
            start.wait()
            if store.try_lock_maildrop(alice.id, holder, clock.now + timedelta(minutes=5)):
                wins.append(holder)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=contend, args=(f"node-{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(wins) == 1


# --- unavailability -----------------------------------------------------------------


def test_unreachable_postgres_is_unavailable() -> None:
    engine = create_store_engine("postgresql://nobody@127.0.0.1:1/none")
    store = SqlMetadataStore(engine)
    with pytest.raises(StoreUnavailableError, match="cannot be used now"):
        store.list_domains()
    with pytest.raises(StoreUnavailableError):
        store.add_domain("example.test")
    store.close()


def _sqlite_store(path: Path, **engine_options: Any) -> SqlMetadataStore:
    return SqlMetadataStore(create_store_engine(f"sqlite:///{path}", **engine_options))


def test_sqlite_locked_too_long_is_unavailable(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "tayori.db"
    shutil.copyfile(sqlite_template, path)
    store = _sqlite_store(path, busy_timeout=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailableError, match="locked"):
            store.add_domain("example.test")
        blocker.execute("ROLLBACK")
        store.add_domain("example.test")
    finally:
        blocker.close()
        store.close()


def test_sqlite_write_transactions_take_the_write_lock_at_begin(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """BEGIN IMMEDIATE for writes (a deferred BEGIN that later writes fails at once when
    another writer got there first), a deferred BEGIN for reads, and no connection event
    listener on the engine: one makes SQLAlchemy dispatch events around every statement."""
    path = tmp_path / "tayori.db"
    shutil.copyfile(sqlite_template, path)
    engine = create_store_engine(f"sqlite:///{path}", busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with write_transaction(engine) as conn:
            assert conn.connection.dbapi_connection.in_transaction  # before any statement
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with read_connection(engine) as conn:
            conn.exec_driver_sql("SELECT 1").all()
            assert conn.connection.dbapi_connection.in_transaction
            other.execute("BEGIN IMMEDIATE")  # a reader holds no write lock
            other.execute("ROLLBACK")
        assert not engine._has_events
    finally:
        other.close()
        engine.dispose()


def test_sqlite_connections_kept_between_transactions_hold_no_snapshot(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """A file database's connections are kept for the next transaction instead of going back
    to the pool each time, but only ended transactions are kept: a kept reader sees what was
    committed after its last use and holds no WAL snapshot (a checkpoint can run to the end),
    a connection whose block raised is not kept, at most IDLE_CONNECTIONS_KEPT are, and
    `dispose_engine` closes them."""
    path = tmp_path / "tayori.db"
    shutil.copyfile(sqlite_template, path)
    engine = create_store_engine(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        with read_connection(engine) as first:
            raw = first.connection.dbapi_connection
            assert first.exec_driver_sql("SELECT count(*) FROM domains").scalar() == 0
        assert raw is not None and not raw.in_transaction
        other.execute("INSERT INTO domains (name, created) VALUES ('a.test', '2026-11-29')")
        # Every page of the WAL can be checkpointed: no reader holds an older snapshot.
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        with read_connection(engine) as conn:
            assert conn is first  # kept
            assert conn.exec_driver_sql("SELECT count(*) FROM domains").scalar() == 1
        with write_transaction(engine) as conn:
            assert conn is first
            conn.exec_driver_sql("INSERT INTO domains (name, created) VALUES ('b.test', 'x')")
        assert other.execute("SELECT count(*) FROM domains").fetchone() == (2,)

        with pytest.raises(ConflictError), write_transaction(engine) as conn:
            conn.exec_driver_sql("INSERT INTO domains (name, created) VALUES ('b.test', 'y')")
        assert other.execute("SELECT count(*) FROM domains").fetchone() == (2,)
        with read_connection(engine) as conn:
            assert conn is not first  # that one was given back to the pool

        with contextlib.ExitStack() as many:
            opened = [
                many.enter_context(read_connection(engine))
                for _ in range(IDLE_CONNECTIONS_KEPT + 3)
            ]
            for conn in opened:
                conn.exec_driver_sql("SELECT 1").all()
        pool = engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedout() == IDLE_CONNECTIONS_KEPT  # the rest went back to the pool
        dispose_engine(engine)
        assert pool.checkedout() == 0
    finally:
        other.close()
        engine.dispose()


def test_sqlite_driver_errors_are_temporary_failures_like_sqlalchemys(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """The statements run through the driver (`sqlite_driver_connection`) fail the way the
    ones through SQLAlchemy do: as StoreUnavailableError, which SMTP answers with 4xx."""
    path = tmp_path / "tayori.db"
    shutil.copyfile(sqlite_template, path)
    with sqlite3.connect(path) as broken:
        broken.execute("DROP TABLE change_counters")
    engine = create_store_engine(f"sqlite:///{path}")
    try:
        with (
            pytest.raises(StoreUnavailableError, match="change_counters"),
            read_connection(engine) as conn,
        ):
            counter_value(conn, FILTERS)  # through the driver
        with (
            pytest.raises(StoreUnavailableError, match="change_counters"),
            read_connection(engine) as conn,
        ):
            conn.exec_driver_sql("SELECT counter FROM change_counters").all()  # SQLAlchemy
    finally:
        dispose_engine(engine)


def test_sqlite_writer_waits_for_a_lock_held_briefly(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "tayori.db"
    shutil.copyfile(sqlite_template, path)
    store = _sqlite_store(path, busy_timeout=5.0)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.2, lambda: blocker.execute("ROLLBACK"))
        release.start()
        store.add_domain("example.test")  # waits for the lock instead of failing
        release.join()
        assert [d.name for d in store.list_domains()] == ["example.test"]
    finally:
        blocker.close()
        store.close()


def test_sqlite_disk_full_is_unavailable(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "tayori.db"
    shutil.copyfile(sqlite_template, path)
    engine = create_store_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _limit(dbapi_connection: Any, _record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count={pages + 2}")

    store = SqlMetadataStore(engine)

    store.add_domain("example.test")
    account = store.add_account("a@example.test", "h", 0)
    big = "x" * 20000
    with pytest.raises(StoreUnavailableError, match="full"):
        for _ in range(50):
            store.record_outcomes([outcome("a@example.test", detail=big) for _ in range(5)])
    # Nothing half-written: the account is still consistent and readable.
    assert store.get_account_by_id(account.id) == account
    store.close()


@pytest.mark.postgres
def test_postgres_read_only_is_unavailable(pg_migrated_url: str) -> None:
    url = make_url(pg_migrated_url).update_query_dict(
        {"options": "-cdefault_transaction_read_only=on"}
    )
    store = SqlMetadataStore(create_store_engine(url.render_as_string(hide_password=False)))
    try:
        assert isinstance(store.list_domains(), list)
        with pytest.raises(StoreUnavailableError, match="read-only"):
            store.add_domain("read-only.example")  # a name no other test leaves behind
    finally:
        store.close()
