"""Forwarding of mail that does not come in through the MX (issue 3): what members submit to
each other (SMTP submission and the webmail share `SubmissionDelivery`) and delivery reports
filed for members (`BounceRouter`). On real stores, SQLite and PostgreSQL: one batched read
finds who forwards, one commit stores local, forwarded and remote copies, a failed commit
leaves nothing, loops stop, and a report keeps its null sender."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tayori.config.settings import LimitsSettings, SubmissionSettings
from tayori.core.outcome import utcnow
from tayori.delivery.bounces import BounceRouter
from tayori.delivery.committer import DeliveryCommitter
from tayori.delivery.dkim_signing import DkimSigner
from tayori.delivery.forwarding import FORWARD_PREFIX, Forwarder
from tayori.delivery.local import DeliveryResult, LocalDelivery, Recipient
from tayori.delivery.submission import SubmissionDelivery
from tayori.delivery.trace import Arrival, new_queue_id
from tayori.dns.resolver import DomainExistence
from tayori.rules.model import AccountFilters, NewRule, RuleAction, RuleList, RuleOwner
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.records import Account, NewMessage, NewQueuedMessage, SpecialUse
from tayori.web.services.sending import WebSubmission
from tests.conftest import temporary_pg_database

ALICE = "alice@example.test"
BOB = "bob@example.test"
FRIEND = "friend@remote.test"
OTHER = "other@remote.test"
BODY = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


class CountingRules:
    """The real rules store, counting the reads forwarding makes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.batched: list[frozenset[int]] = []
        self.filters: list[int] = []

    def forwarding_accounts(self, account_ids: Collection[int]) -> frozenset[int]:
        self.batched.append(frozenset(account_ids))
        found: frozenset[int] = self._inner.forwarding_accounts(account_ids)
        return found

    def filters_for(self, account_id: int) -> AccountFilters:
        self.filters.append(account_id)
        found: AccountFilters = self._inner.filters_for(account_id)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class CountingQueue:
    """The real queue store, counting commits; `fail` makes the forwarding commit fail."""

    inner: Any
    commits: list[str] = field(default_factory=list)
    fail: bool = False

    def enqueue(
        self,
        message: NewQueuedMessage | None,
        appends: Sequence[NewMessage] = (),
        outcomes: Sequence[Any] = (),
    ) -> Any:
        self.commits.append("enqueue")
        return self.inner.enqueue(message, appends, outcomes)

    def enqueue_many(
        self,
        messages: Sequence[NewQueuedMessage],
        appends: Sequence[NewMessage] = (),
        outcomes: Sequence[Any] = (),
    ) -> Any:
        self.commits.append("enqueue_many")
        if self.fail:
            raise OSError("database went away")
        return self.inner.enqueue_many(messages, appends, outcomes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TrackingBlobs:
    """The real blob store, remembering what was written and deleted."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.written: list[str] = []
        self.deleted: list[str] = []

    def put(self, chunks: Any) -> str:
        ref: str = self._inner.put(chunks)
        self.written.append(ref)
        return ref

    def delete(self, refs: Any) -> None:
        refs = list(refs)
        self.deleted.extend(refs)
        self._inner.delete(refs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Resolver:
    async def domain_exists(self, domain: str) -> DomainExistence:
        return "exists"


@dataclass
class Env:
    stores: Stores
    rules: CountingRules
    queue: CountingQueue
    blobs: TrackingBlobs
    forwarder: Forwarder
    delivery: SubmissionDelivery
    bounces: BounceRouter
    alice: Account
    bob: Account
    woken: list[bool]

    def inbox(self, account: Account, use: SpecialUse = SpecialUse.INBOX) -> list[bytes]:
        box = self.stores.metadata.get_mailbox(account.id, use)
        found = []
        for message in self.stores.metadata.list_messages(box.id):
            with self.stores.blobs.open(message.blob_ref) as stream:
                found.append(stream.read())
        return found

    def reasons(self, account: Account) -> list[tuple[str, str]]:
        outcomes = self.stores.metadata.list_outcomes(account_id=account.id)
        return [(o.outcome.recipient, o.outcome.reason) for o in outcomes]

    def submit(self, *to: str, body: bytes = BODY) -> DeliveryResult:
        local, remote = [], []
        for address in to:
            account = self.stores.metadata.get_account(address)
            if account is None:
                remote.append(address)
            else:
                local.append(Recipient(address, account))
        return asyncio.run(self.delivery.submit(self.alice, ALICE, local, remote, body, arrival()))


def arrival() -> Arrival:
    return Arrival(
        "client.example", "127.0.0.1", "unknown", "TLSv1.3", "x", True, False, True,
        new_queue_id(), utcnow(),
    )  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    if request.param == "sqlite":
        yield from _env("", tmp_path)
    else:
        with temporary_pg_database("tayori_fwd_sub") as url:
            yield from _env(url, tmp_path)


def _env(url: str, tmp_path: Path) -> Iterator[Env]:
    migrate(url, tmp_path)
    stores = open_stores(url, tmp_path)
    stores.metadata.add_domain("example.test")
    alice = stores.metadata.add_account(ALICE, "x", 0)
    bob = stores.metadata.add_account(BOB, "x", 0)
    committer = DeliveryCommitter(stores.metadata)
    committer.start()
    rules = CountingRules(stores.rules)
    queue = CountingQueue(stores.queue)
    blobs = TrackingBlobs(stores.blobs)
    local = LocalDelivery(stores.metadata, blobs, committer, "mx.example.test")  # type: ignore[arg-type]
    woken: list[bool] = []
    lifetime = timedelta(days=5)
    forwarder = Forwarder(
        stores.metadata,
        local,
        blobs,  # type: ignore[arg-type]
        queue,  # type: ignore[arg-type]
        rules,  # type: ignore[arg-type]
        b"k" * 32,
        "mx.example.test",
        lifetime,
        lambda: woken.append(True),
    )
    delivery = SubmissionDelivery(
        local,
        blobs,  # type: ignore[arg-type]
        queue,  # type: ignore[arg-type]
        DkimSigner(stores.queue),
        "mx.example.test",
        lifetime,
        lambda: woken.append(True),
        forwarder=forwarder,
    )
    bounces = BounceRouter(
        stores.metadata,
        local,
        blobs,  # type: ignore[arg-type]
        queue,  # type: ignore[arg-type]
        "mx.example.test",
        lifetime,
        lambda: woken.append(True),
        original_sender=forwarder.original_sender,
        forwarder=forwarder,
    )
    try:
        yield Env(stores, rules, queue, blobs, forwarder, delivery, bounces, alice, bob, woken)
    finally:
        committer.stop()
        stores.close()


def queued(env: Env) -> dict[str, tuple[str, tuple[str, ...], int | None]]:
    """queue id -> (sender, recipients, account id)"""
    return {
        entry.queue_id: (
            entry.sender,
            tuple(r.recipient for r in entry.recipients),
            entry.account_id,
        )
        for entry in env.stores.queue.list_queue()
    }


def test_the_batched_read_of_who_forwards(env: Env) -> None:
    rules = env.stores.rules
    assert rules.forwarding_accounts([]) == frozenset()
    assert rules.forwarding_accounts([env.alice.id, env.bob.id, 999]) == frozenset()
    rules.add_forward_target(env.bob.id, FRIEND)
    rules.add_forward_target(env.bob.id, OTHER)
    assert rules.forwarding_accounts([env.alice.id, env.bob.id]) == {env.bob.id}
    rules.remove_forward_target(env.bob.id, FRIEND)
    rules.remove_forward_target(env.bob.id, OTHER)
    assert rules.forwarding_accounts({env.bob.id}) == frozenset()


def test_members_without_forwarding_cost_one_batched_read(env: Env) -> None:
    result = env.submit(BOB, OTHER)
    assert str(result.reply).startswith("250")
    assert env.rules.batched == [frozenset({env.bob.id})]
    assert env.rules.filters == []
    assert env.queue.commits == ["enqueue"]  # the path without forwarding, unchanged
    assert len(env.inbox(env.bob)) == 1
    assert list(queued(env).values()) == [(ALICE, (OTHER,), env.alice.id)]
    # Only remote recipients: nothing to read at all.
    env.rules.batched.clear()
    assert str(env.submit(OTHER).reply).startswith("250")
    assert env.rules.batched == []


def test_local_forwarded_and_remote_copies_commit_together(env: Env) -> None:
    env.stores.rules.add_forward_target(env.bob.id, FRIEND)
    result = env.submit(BOB, OTHER)
    assert str(result.reply).startswith("250")
    assert result.delivered == 2
    assert env.queue.commits == ["enqueue_many"]
    assert env.rules.filters == [env.bob.id]
    entries = queued(env)
    [forwarded] = [q for q in entries if q.startswith(FORWARD_PREFIX)]
    # Our own member's address: no SRS rewriting.
    assert entries[forwarded] == (ALICE, (FRIEND,), env.bob.id)
    assert (ALICE, (OTHER,), env.alice.id) in entries.values()
    [kept] = env.inbox(env.bob)
    assert b"Subject: hi" in kept
    outcomes = env.stores.metadata.list_outcomes(account_id=env.bob.id)
    detail = {o.outcome.reason: o.outcome.detail for o in outcomes}
    assert f"forwarded to {FRIEND} as queue_id={forwarded}" in detail["delivered"]
    with env.stores.blobs.open(env.stores.queue.list_queue()[0].blob_ref) as stream:
        assert stream.read()
    copy = next(e for e in env.stores.queue.list_queue() if e.queue_id == forwarded)
    with env.stores.blobs.open(copy.blob_ref) as stream:
        assert stream.read().startswith(f"Delivered-To: {BOB}\r\nReceived: ".encode())
    assert env.woken
    # The submission is counted for the sender's limits, as without forwarding.
    assert env.stores.queue.count_submissions(env.alice.id, utcnow() - timedelta(hours=1)) == (
        1,
        2,
    )


def test_keep_copy_off_records_forward_queued(env: Env) -> None:
    env.stores.rules.add_forward_target(env.bob.id, FRIEND)
    env.stores.rules.set_forward_options(env.bob.id, keep_copy=False)
    assert str(env.submit(BOB).reply).startswith("250")
    assert env.inbox(env.bob) == []
    assert (BOB, "forward.queued") in env.reasons(env.bob)
    assert [v[1] for v in queued(env).values()] == [(FRIEND,)]


def test_a_failed_commit_answers_451_and_leaves_nothing(env: Env) -> None:
    env.stores.rules.add_forward_target(env.bob.id, FRIEND)
    env.queue.fail = True
    result = env.submit(BOB, OTHER)
    assert result.reply.code == 451
    assert env.blobs.written  # local, forwarded and remote copies were written...
    assert sorted(env.blobs.deleted) == sorted(env.blobs.written)  # ...and all dropped
    assert queued(env) == {}
    assert env.inbox(env.bob) == []
    assert (BOB, "store.failed") in env.reasons(env.bob)
    since = utcnow() - timedelta(hours=1)
    assert env.stores.queue.count_submissions(env.alice.id, since) == (0, 0)


def test_a_message_that_came_round_is_kept_not_forwarded(env: Env) -> None:
    env.stores.rules.add_forward_target(env.bob.id, FRIEND)
    looped = f"Delivered-To: {BOB}\r\n".encode() + BODY
    assert str(env.submit(BOB, body=looped).reply).startswith("250")
    assert queued(env) == {}
    assert len(env.inbox(env.bob)) == 1
    assert (BOB, "forward.loop") in env.reasons(env.bob)


def test_the_forwarding_reject_list_applies_to_members_too(env: Env) -> None:
    env.stores.rules.add_forward_target(env.bob.id, FRIEND)
    env.stores.rules.add_rule(
        RuleOwner.account(env.bob.id),
        NewRule(RuleList.FORWARD, ALICE, RuleAction.SKIP_FORWARD),
    )
    assert str(env.submit(BOB).reply).startswith("250")
    assert queued(env) == {}
    assert len(env.inbox(env.bob)) == 1


def test_a_report_for_a_forwarding_member_is_forwarded_with_its_null_sender(env: Env) -> None:
    env.stores.rules.add_forward_target(env.alice.id, FRIEND)
    env.stores.rules.set_forward_options(env.alice.id, keep_copy=False)
    report = b"From: MAILER-DAEMON@mx.example.test\r\nSubject: Undelivered\r\n\r\nGone.\r\n"
    asyncio.run(env.bounces.send_bounce(ALICE, report))
    [(sender, recipients, owner)] = queued(env).values()
    assert (sender, recipients, owner) == ("", (FRIEND,), env.alice.id)
    assert env.inbox(env.alice) == []
    assert (ALICE, "forward.queued") in env.reasons(env.alice)
    # A member without forwarding: filed, after the one batched read.
    env.rules.filters.clear()
    asyncio.run(env.bounces.send_bounce(BOB, report))
    assert len(env.inbox(env.bob)) == 1
    assert env.rules.filters == []


def test_the_webmail_sends_through_the_same_forwarding(env: Env) -> None:
    env.stores.rules.add_forward_target(env.bob.id, FRIEND)
    web = WebSubmission(
        env.stores.metadata,
        env.stores.queue,
        Resolver(),  # type: ignore[arg-type]
        env.delivery,
        SubmissionSettings(),
        LimitsSettings(),
    )
    sent = asyncio.run(web.send(env.alice, ALICE, [BOB], BODY, "127.0.0.1"))
    assert sent.local == (BOB,)
    assert [v[1] for v in queued(env).values()] == [(FRIEND,)]
    assert len(env.inbox(env.bob)) == 1
