"""Group commit: many waiting appends become one store call; failures stay with their job."""

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import pytest

from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.delivery.committer import DeliveryCommitter
from tayori.storage.records import AppendResult, MessageSummary, NewMessage, SpecialUse


class RecordingStore:
    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.fail_account: int | None = None
        self.take_late = False
        self.entered = threading.Event()

    def append_messages(
        self,
        items: Sequence[NewMessage],
        late: Callable[[], Sequence[NewMessage]] | None = None,
    ) -> list[AppendResult]:
        self.entered.set()
        self.gate.wait(5)  # as a commit waits for the write lock
        if late is not None and self.take_late:
            items = [*items, *late()]
        self.calls.append(len(items))
        if any(item.account_id == self.fail_account for item in items):
            raise OSError("disk full")
        return [AppendResult(True, 1, n + 1) for n, _ in enumerate(items)]


def item(account_id: int) -> NewMessage:
    outcome = Outcome(Direction.INBOUND, "s@x.test", "r@y.test", OutcomeKind.DELIVERED, "delivered")
    return NewMessage(
        account_id,
        SpecialUse.INBOX,
        "ref",
        10,
        datetime.now(UTC),
        MessageSummary(),
        outcome,
        outcome,
    )


async def one_then_ten(
    committer: DeliveryCommitter,
    store: RecordingStore,
    until_first_taken: Callable[[], Awaitable[None]],
) -> list[list[AppendResult]]:
    """One job of one item, then (once `until_first_taken`) ten of two items; then the
    store's gate opens."""
    first = asyncio.ensure_future(committer.append([item(1)]))
    await until_first_taken()
    rest = [asyncio.ensure_future(committer.append([item(2), item(3)])) for _ in range(10)]
    await asyncio.sleep(0)
    store.gate.set()
    return await asyncio.gather(first, *rest)


def test_waiting_jobs_share_one_commit() -> None:
    store = RecordingStore()
    committer = DeliveryCommitter(store)  # type: ignore[arg-type]
    committer.start()

    async def first_job_taken() -> None:
        await asyncio.sleep(0)  # the thread takes the first job and waits at the gate

    results = asyncio.run(one_then_ten(committer, store, first_job_taken))
    committer.stop()
    assert sum(store.calls) == 21
    assert len(store.calls) <= 3  # the first alone, then the others batched
    assert all(len(r) == 2 for r in results[1:])


def test_jobs_that_arrive_while_a_commit_waits_for_the_lock_join_it() -> None:
    store = RecordingStore()
    store.take_late = True
    committer = DeliveryCommitter(store)  # type: ignore[arg-type]
    committer.start()

    async def first_job_waiting() -> None:
        await asyncio.to_thread(store.entered.wait, 5)  # the first job alone, at the gate

    results = asyncio.run(one_then_ten(committer, store, first_job_waiting))
    committer.stop()
    assert store.calls == [21]  # one commit, not the first alone and then the rest
    assert committer.batches == 1
    assert [len(r) for r in results] == [1] + [2] * 10
    assert [r.uid for r in results[2]] == [4, 5]  # each job gets its own slice, in order


def test_a_failing_late_job_does_not_fail_the_commit_it_joined() -> None:
    store = RecordingStore()
    store.take_late = True
    store.fail_account = 7
    committer = DeliveryCommitter(store)  # type: ignore[arg-type]
    committer.start()

    async def main() -> tuple[object, ...]:
        first = asyncio.ensure_future(committer.append([item(1)]))
        await asyncio.to_thread(store.entered.wait, 5)
        bad = asyncio.ensure_future(committer.append([item(7)]))
        good = asyncio.ensure_future(committer.append([item(2)]))
        await asyncio.sleep(0)
        store.gate.set()
        return tuple(await asyncio.gather(first, bad, good, return_exceptions=True))

    first, bad, good = asyncio.run(main())
    committer.stop()
    assert isinstance(bad, OSError)
    assert isinstance(first, list) and first[0].appended
    assert isinstance(good, list) and good[0].appended


def test_a_failing_job_does_not_fail_its_batch_mates() -> None:
    store = RecordingStore()
    store.fail_account = 7
    store.gate.set()
    committer = DeliveryCommitter(store)  # type: ignore[arg-type]
    committer.start()

    async def main() -> tuple[object, object]:
        bad = committer.append([item(7)])
        good = committer.append([item(1)])
        return tuple(await asyncio.gather(bad, good, return_exceptions=True))  # type: ignore[return-value]

    bad, good = asyncio.run(main())
    committer.stop()
    assert isinstance(bad, OSError)
    assert isinstance(good, list) and good[0].appended


def test_append_before_start_is_an_error() -> None:
    committer = DeliveryCommitter(RecordingStore())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        asyncio.run(committer.append([item(1)]))


def test_append_after_writes_in_the_committer_thread_then_commits_with_the_batch() -> None:
    store = RecordingStore()
    committer = DeliveryCommitter(store)  # type: ignore[arg-type]
    committer.start()
    writers: list[str] = []

    def write() -> list[NewMessage]:
        writers.append(threading.current_thread().name)
        return [item(1), item(2)]

    async def main() -> tuple[list[AppendResult], ...]:
        first = asyncio.ensure_future(committer.append([item(3)]))
        await asyncio.to_thread(store.entered.wait, 5)  # the first commit holds the thread
        written = asyncio.ensure_future(committer.append_after(write, 2))
        plain = asyncio.ensure_future(committer.append([item(4)]))
        await asyncio.sleep(0.05)
        assert writers == []  # nothing written while the committer was busy elsewhere
        store.gate.set()
        return tuple(await asyncio.gather(first, written, plain))

    first, written, plain = asyncio.run(main())
    committer.stop()
    assert writers == ["tayori-committer"]
    assert store.calls == [1, 3]  # the written job's two appends batched with the plain one
    assert [r.uid for r in first] == [1]
    assert [r.uid for r in written] == [1, 2] and [r.uid for r in plain] == [3]


def test_a_failing_write_fails_only_its_own_job() -> None:
    store = RecordingStore()
    committer = DeliveryCommitter(store)  # type: ignore[arg-type]
    committer.start()

    def full_disk() -> list[NewMessage]:
        raise OSError(28, "No space left on device")

    async def main() -> tuple[object, ...]:
        first = asyncio.ensure_future(committer.append([item(1)]))
        await asyncio.to_thread(store.entered.wait, 5)
        bad = asyncio.ensure_future(committer.append_after(full_disk, 1))
        good = asyncio.ensure_future(committer.append_after(lambda: [item(2)], 1))
        await asyncio.sleep(0)
        store.gate.set()
        return tuple(await asyncio.gather(first, bad, good, return_exceptions=True))

    first, bad, good = asyncio.run(main())
    committer.stop()
    assert isinstance(bad, OSError) and bad.errno == 28
    assert isinstance(first, list) and isinstance(good, list) and good[0].appended
    assert store.calls == [1, 1]  # the failed job brought nothing to the commit


def test_a_late_job_is_written_before_it_joins_the_commit() -> None:
    store = RecordingStore()
    store.take_late = True
    committer = DeliveryCommitter(store)  # type: ignore[arg-type]
    committer.start()
    order: list[str] = []

    def write() -> list[NewMessage]:
        order.append("written")
        return [item(2)]

    def full_disk() -> list[NewMessage]:
        raise OSError(28, "No space left on device")

    async def main() -> tuple[object, ...]:
        first = asyncio.ensure_future(committer.append([item(1)]))
        await asyncio.to_thread(store.entered.wait, 5)  # waiting for the "lock"
        late = asyncio.ensure_future(committer.append_after(write, 1))
        bad = asyncio.ensure_future(committer.append_after(full_disk, 1))
        await asyncio.sleep(0)
        store.gate.set()
        return tuple(await asyncio.gather(first, late, bad, return_exceptions=True))

    first, late, bad = asyncio.run(main())
    committer.stop()
    assert order == ["written"]
    assert store.calls == [2]  # one commit: the first job and the late one
    assert isinstance(first, list) and first[0].uid == 1
    assert isinstance(late, list) and late[0].uid == 2
    assert isinstance(bad, OSError)
