"""Forwarding carried out (`delivery.forwarding`): plans from the member's filters, one commit
for local and forwarded copies, SRS rewriting only for other domains, relabelled queue
results, failure counting and flagging, SRS bounce decoding; and the per-transaction memo of
filters (`MemberRules.filters`) that keeps members without forwarding at one read."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tayori.core.outcome import Outcome, OutcomeKind
from tayori.delivery.attempts import AttemptResult, Kind
from tayori.delivery.committer import DeliveryCommitter
from tayori.delivery.forwarding import FORWARD_PREFIX, Forwarder, is_forwarded
from tayori.delivery.local import Filing, LocalDelivery, Recipient
from tayori.delivery.trace import Arrival
from tayori.pipeline.member_rules import MemberRules
from tayori.pipeline.steps import Client
from tayori.rules.decide import ForwardPlan
from tayori.rules.model import (
    AccountFilters,
    ForwardSettings,
    Rule,
    RuleAction,
    RuleField,
    RuleList,
    RuleOwner,
)
from tayori.rules.srs import Srs
from tayori.storage.records import (
    AppendResult,
    NewMessage,
    NewQueuedMessage,
    QueuedRecipient,
    QueueEntry,
    RecipientLookup,
    RecipientState,
    SpecialUse,
)
from tests.fakes import FakeBlobStore, FakeMetadataStore

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
KEY = b"k" * 32
RAW = (
    b"DKIM-Signature: v=1; a=rsa-sha256; d=remote.test; s=sel; b=abc\r\n"
    b"From: Sender <s@remote.test>\r\nTo: alice@example.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@remote.test>\r\n\r\nBody.\r\n"
)


class Metadata(FakeMetadataStore):
    """The fake store plus what forwarding asks: is a sender's domain ours, outcomes."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.outcomes: list[Outcome] = []

    def lookup_recipient(self, address: str) -> RecipientLookup:
        return RecipientLookup(hosted=address.endswith("@example.test"), accounts=())

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        self.outcomes.extend(outcomes)


@dataclass
class Queue:
    """Records what one `enqueue_many` commit would store."""

    commits: list[tuple[list[NewQueuedMessage], list[NewMessage], list[Outcome]]] = field(
        default_factory=list
    )
    fail: bool = False

    def enqueue_many(
        self,
        messages: Sequence[NewQueuedMessage],
        appends: Sequence[NewMessage] = (),
        outcomes: Sequence[Outcome] = (),
    ) -> list[AppendResult]:
        if self.fail:
            raise OSError("database went away")
        self.commits.append((list(messages), list(appends), list(outcomes)))
        return [AppendResult(True, 1, 1) for _ in appends]


@dataclass
class Rules:
    """Filters per account, counting reads; forwarding results counted per target."""

    filters: dict[int, AccountFilters] = field(default_factory=dict)
    reads: int = 0
    failures: dict[tuple[int, str], int] = field(default_factory=dict)

    def filters_for(self, account_id: int) -> AccountFilters:
        self.reads += 1
        return self.filters.get(account_id, AccountFilters())

    def record_forward_result(self, account_id: int, address: str, *, bounced: bool) -> int:
        key = (account_id, address)
        self.failures[key] = self.failures.get(key, 0) + 1 if bounced else 0
        return self.failures[key]


@dataclass
class Setup:
    metadata: Metadata
    blobs: FakeBlobStore
    queue: Queue
    rules: Rules
    forwarder: Forwarder
    alice: Recipient
    woken: list[bool]


def setup() -> Setup:
    metadata, blobs, queue, rules = Metadata(), FakeBlobStore(), Queue(), Rules()
    account = metadata.add_account("alice@example.test", "")
    local = LocalDelivery(metadata, blobs, DeliveryCommitter(metadata), "mx.example.test")  # type: ignore[arg-type]
    woken: list[bool] = []
    forwarder = Forwarder(
        metadata,  # type: ignore[arg-type]
        local,
        blobs,
        queue,  # type: ignore[arg-type]
        rules,  # type: ignore[arg-type]
        KEY,
        "mx.example.test",
        timedelta(days=5),
        lambda: woken.append(True),
        clock=lambda: NOW,
    )
    return Setup(
        metadata, blobs, queue, rules, forwarder, Recipient(account.address, account), woken
    )


def arrival() -> Arrival:
    return Arrival(
        "mx.remote.test", "192.0.2.1", "mx.remote.test", None, None, False, False, True, "Q1", NOW
    )


def forwarding(*targets: str, keep: bool = True, skip_spam: bool = True) -> AccountFilters:
    return AccountFilters(forwarding=ForwardSettings(tuple(targets), keep, skip_spam))


def deliver(
    s: Setup, plan: ForwardPlan, sender: str = "s@remote.test", filing: Filing | None = None
) -> str:
    filed = {s.alice.account.id: filing or Filing()}
    result = asyncio.run(
        s.forwarder.deliver(
            sender, [s.alice], RAW, RAW, arrival(), filed, {s.alice.account.id: plan}
        )
    )
    return str(result.reply)


# --- plans -----------------------------------------------------------------------------


def test_plan_forwards_keeps_or_stops_for_loops_and_spam() -> None:
    s = setup()
    account = s.alice.account
    plan = s.forwarder.plan(account, forwarding("f@remote.test"), Filing(), "s@remote.test", RAW)
    assert plan == ForwardPlan(("f@remote.test",), keep_copy=True)
    looped = b"Delivered-To: alice@example.test\r\n" + RAW
    plan = s.forwarder.plan(account, forwarding("f@remote.test"), Filing(), "", looped)
    assert (plan.targets, plan.skipped) == ((), "loop")
    junk = Filing(SpecialUse.JUNK, "spam.junk")
    plan = s.forwarder.plan(account, forwarding("f@remote.test"), junk, "s@remote.test", RAW)
    assert (plan.targets, plan.skipped) == ((), "spam")
    plan = s.forwarder.plan(
        account, forwarding("f@remote.test", skip_spam=False), junk, "s@remote.test", RAW
    )
    assert plan.targets == ("f@remote.test",)
    rule = Rule(
        9,
        RuleOwner.account(account.id),
        RuleList.FORWARD,
        "remote.test",
        RuleAction.SKIP_FORWARD,
        RuleField.ANY,
        NOW,
    )
    filters = AccountFilters(rules=(rule,), forwarding=ForwardSettings(("f@remote.test",)))
    plan = s.forwarder.plan(account, filters, Filing(), "s@remote.test", RAW)
    assert (plan.targets, plan.skipped) == ((), "rule:9")


# --- delivering --------------------------------------------------------------------------


def test_forwarded_and_kept_copies_commit_together_with_srs_sender() -> None:
    s = setup()
    assert deliver(s, ForwardPlan(("f@remote.test", "g@other.test"), keep_copy=True)).startswith(
        "250"
    )
    [(messages, appends, outcomes)] = s.queue.commits
    [queued] = messages
    assert queued.queue_id.startswith(FORWARD_PREFIX)
    assert queued.recipients == ("f@remote.test", "g@other.test")
    assert queued.account_id == s.alice.account.id
    assert Srs(KEY, "example.test").decode(queued.sender, NOW) == "s@remote.test"
    assert queued.sender.endswith("@example.test")
    copy = s.blobs.blobs[queued.blob_ref]
    assert copy.startswith(b"Delivered-To: alice@example.test\r\nReceived: ")
    assert copy.endswith(RAW)  # nothing of the message itself rewritten
    [append] = appends
    assert append.mailbox is SpecialUse.INBOX
    assert "forwarded to f@remote.test, g@other.test as queue_id=fwd-" in (
        append.on_delivered.detail
    )
    assert outcomes == []  # the kept copy's outcome travels with its append
    assert s.woken == [True]


def test_keep_copy_off_stores_no_copy_but_records_the_forwarding() -> None:
    s = setup()
    deliver(s, ForwardPlan(("f@remote.test",), keep_copy=False))
    [(messages, appends, outcomes)] = s.queue.commits
    assert len(messages) == 1
    assert appends == []
    [outcome] = outcomes
    assert (outcome.outcome, outcome.reason) == (OutcomeKind.FORWARDED, "forward.queued")
    assert outcome.account_id == s.alice.account.id


def test_local_and_null_senders_are_not_rewritten() -> None:
    s = setup()
    deliver(s, ForwardPlan(("f@remote.test",), keep_copy=True), sender="bob@example.test")
    deliver(s, ForwardPlan(("f@remote.test",), keep_copy=True), sender="")
    senders = [commit[0][0].sender for commit in s.queue.commits]
    assert senders == ["bob@example.test", ""]


def test_loop_keeps_the_copy_with_the_loop_reason() -> None:
    s = setup()
    deliver(s, ForwardPlan((), keep_copy=True, skipped="loop"))
    [(messages, appends, _)] = s.queue.commits
    assert messages == []
    assert appends[0].on_delivered.reason == "forward.loop"
    assert "not forwarded: forwarding loop" in appends[0].on_delivered.detail
    junk = Filing(SpecialUse.JUNK, "spam.junk", "score=0.99")
    deliver(s, ForwardPlan((), keep_copy=True, skipped="loop"), filing=junk)
    kept = s.queue.commits[1][1][0].on_delivered
    assert (kept.reason, kept.outcome) == ("spam.junk", OutcomeKind.JUNKED)


def test_a_failed_commit_answers_451_and_removes_the_copies() -> None:
    s = setup()
    s.queue.fail = True
    assert deliver(s, ForwardPlan(("f@remote.test",), keep_copy=True)).startswith("451")
    assert s.blobs.blobs == {}
    assert s.woken == []


# --- the filters memo ----------------------------------------------------------------------


def test_filters_are_read_once_per_transaction() -> None:
    s = setup()
    member_rules = MemberRules(s.rules)  # type: ignore[arg-type]
    client = Client("192.0.2.1", sender="s@remote.test")

    async def run() -> None:
        await member_rules.at_rcpt(s.alice.account, client.sender, client)
        await member_rules.filters(s.alice.account, client)
        await s.forwarder.plans(member_rules, client, [s.alice], {}, RAW)
        assert s.rules.reads == 1
        member_rules.forget(client)  # end of DATA
        await member_rules.filters(s.alice.account, client)
        assert s.rules.reads == 2
        client.sender = "other@remote.test"  # a new transaction on the same connection
        await member_rules.filters(s.alice.account, client)
        assert s.rules.reads == 3
        await member_rules.filters(s.alice.account, Client("192.0.2.2", sender="x@y.test"))
        assert s.rules.reads == 4

    asyncio.run(run())


# --- the queue's results ---------------------------------------------------------------------


def entry(
    queue_id: str, *targets: str, account_id: int | None = 1, expires: datetime = NOW + DAY
) -> QueueEntry:
    recipients = tuple(
        QueuedRecipient(
            n, t, t.rpartition("@")[2], RecipientState.QUEUED, 0, NOW, None, "", "", False
        )
        for n, t in enumerate(targets, 1)
    )
    return QueueEntry(
        1,
        queue_id,
        "SRS0=x",
        account_id,
        "ref",
        10,
        "<m1>",
        "hello",
        NOW,
        expires,
        False,
        recipients,
    )


def test_results_of_forwarded_copies_are_relabelled() -> None:
    s = setup()
    results = {
        1: AttemptResult(Kind.DELIVERED, "remote.delivered", "250 ok"),
        2: AttemptResult(Kind.FAILED, "remote.rejected", "550 no"),
        3: AttemptResult(Kind.DEFERRED, "remote.deferred", "450 later"),
    }
    forwarded = entry("fwd-ABC", "a@r.test", "b@r.test", "c@r.test")
    s.forwarder.relabel(forwarded, results)
    assert [r.reason for r in results.values()] == [
        "forward.sent",
        "forward.failed",
        "remote.deferred",
    ]
    submitted = {1: AttemptResult(Kind.DELIVERED, "remote.delivered", "250 ok")}
    s.forwarder.relabel(entry("ABC", "a@r.test"), submitted)
    assert submitted[1].reason == "remote.delivered"
    assert not is_forwarded(entry("fwd-ABC", "a@r.test", account_id=None))


def test_failures_are_counted_reset_and_flagged_once() -> None:
    s = setup()
    forwarded = entry("fwd-ABC", "gone@r.test")
    failed = {1: AttemptResult(Kind.FAILED, "forward.failed", "550 5.1.1 unknown")}
    for _ in range(2):
        asyncio.run(s.forwarder.recorded(forwarded, failed))
    assert s.metadata.outcomes == []
    asyncio.run(s.forwarder.recorded(forwarded, failed))
    [flag] = s.metadata.outcomes
    assert (flag.reason, flag.recipient, flag.account_id) == (
        "forward.target_failing",
        "gone@r.test",
        1,
    )
    asyncio.run(s.forwarder.recorded(forwarded, failed))  # the 4th: flagged already
    assert len(s.metadata.outcomes) == 1
    sent = {1: AttemptResult(Kind.DELIVERED, "forward.sent", "250 ok")}
    asyncio.run(s.forwarder.recorded(forwarded, sent))
    assert s.rules.failures[(1, "gone@r.test")] == 0


def test_deferrals_count_only_when_the_copy_expired() -> None:
    s = setup()
    later = {1: AttemptResult(Kind.DEFERRED, "remote.deferred", "450 later")}
    asyncio.run(s.forwarder.recorded(entry("fwd-A", "slow@r.test"), later))
    assert s.rules.failures == {}
    asyncio.run(s.forwarder.recorded(entry("fwd-A", "slow@r.test", expires=NOW - DAY), later))
    assert s.rules.failures == {(1, "slow@r.test"): 1}


# --- bounces to SRS addresses ---------------------------------------------------------------


def test_srs_addresses_decode_to_the_original_sender_unless_forged_or_old() -> None:
    s = setup()
    address = Srs(KEY, "example.test").encode("s@remote.test", NOW)
    assert s.forwarder.original_sender(address) == "s@remote.test"
    assert s.forwarder.original_sender(address.lower()) == "s@remote.test"
    assert s.forwarder.srs_recipient(address) == "s@remote.test"
    forged = Srs(b"x" * 32, "example.test").encode("s@remote.test", NOW)
    assert s.forwarder.original_sender(forged) is None
    verdict = s.forwarder.srs_recipient(forged)
    assert not isinstance(verdict, str)
    assert (verdict.reason, verdict.reply.code) == ("srs.invalid", 550)
    old = Srs(KEY, "example.test").encode("s@remote.test", NOW - timedelta(days=30))
    assert s.forwarder.original_sender(old) is None
    assert s.forwarder.original_sender("alice@example.test") is None
