"""Junk retention (`delivery.retention`), driven by a fake clock: only Junk, only older than
the retention, each deletion a `junk.expired` outcome, blobs deleted; 0 days keeps Junk; the
periodic task purges at once and is cancelled cleanly. (Named with the forwarding helper's
tests: both came with the same part of issue 3.)"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from tayori.core.outcome import Outcome, OutcomeKind
from tayori.delivery.retention import purge_junk, run_periodically
from tayori.storage.records import Account, SpecialUse
from tests.fakes import FakeBlobStore, FakeMetadataStore

START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Metadata(FakeMetadataStore):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.outcomes: list[Outcome] = []

    def list_accounts(self, domain: str | None = None) -> list[Account]:
        return list(self.accounts.values())

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        self.outcomes.extend(outcomes)


def filled() -> tuple[Clock, Metadata, FakeBlobStore, Account]:
    clock = Clock()
    metadata, blobs = Metadata(clock), FakeBlobStore()
    alice = metadata.add_account("alice@example.test", "")
    for day, box in ((0, SpecialUse.JUNK), (0, SpecialUse.INBOX), (5, SpecialUse.JUNK)):
        clock.now = START + timedelta(days=day)
        ref = blobs.put([b"x" * 10])
        metadata.deliver(alice.id, ref, 10, box)
    return clock, metadata, blobs, alice


def test_only_junk_older_than_the_retention_goes() -> None:
    _, metadata, blobs, alice = filled()
    assert purge_junk(metadata, blobs, START + timedelta(days=29), 30).messages == 0
    done = purge_junk(metadata, blobs, START + timedelta(days=31), 30)
    assert (done.messages, done.bytes, done.accounts) == (1, 10, {alice.id})
    junk = metadata.get_mailbox(alice.id, SpecialUse.JUNK)
    inbox = metadata.get_mailbox(alice.id, SpecialUse.INBOX)
    assert [m.internal_date for m in metadata.list_messages(junk.id)] == [START + timedelta(days=5)]
    assert len(metadata.list_messages(inbox.id)) == 1
    assert len(blobs.blobs) == 2
    [outcome] = metadata.outcomes
    assert (outcome.reason, outcome.outcome) == ("junk.expired", OutcomeKind.DISCARDED)
    assert (outcome.account_id, outcome.recipient) == (alice.id, "alice@example.test")
    assert "kept 30 days" in outcome.detail


def test_zero_days_keeps_junk_for_ever() -> None:
    _, metadata, blobs, _ = filled()
    assert purge_junk(metadata, blobs, START + timedelta(days=3650), 0).messages == 0
    assert metadata.outcomes == []


def test_the_periodic_task_purges_at_once_and_stops_when_cancelled() -> None:
    clock, metadata, blobs, _ = filled()
    clock.now = START + timedelta(days=100)

    async def run() -> None:
        task = asyncio.create_task(
            run_periodically(metadata, blobs, 30, clock=clock, interval=3600)
        )
        while len(metadata.outcomes) < 2:
            await asyncio.sleep(0)  # yields to the purge thread's completion, no waiting time
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()

    asyncio.run(run())
    assert {o.reason for o in metadata.outcomes} == {"junk.expired"}
