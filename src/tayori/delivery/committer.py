"""Group commit: appends from many SMTP sessions share one transaction and one fsync.

A `250` may only be sent once the message is durable, and a durable metadata commit costs an
fsync. One writer thread takes every append that is waiting when it becomes free and
commits them together, so throughput grows with concurrency instead of being capped by the
disk's fsync rate, while no session is answered before its own data is committed.

With several MX processes (`[server] smtp_processes`) on one SQLite database, the write
lock is shared, and a commit often waits for another process's: the appends that arrive
during that wait join the commit once it has the lock (`late`), rather than waiting for
the lock again in the next round.

A job may also bring its blob writes (`append_after`): they run here, in this thread, just
before the batch's transaction. With message files that saves every message a second thread
hop (a worker thread for the write and fsync, then this one), which under load cost more CPU
than the write itself: the wake-up of each thread and the GIL passed between three threads
(A/B, 2 MX processes at 10 sessions: −22 % CPU per message, +15 % messages per second;
bench/RESULTS.md "Run 22"). The files of a batch are then fsynced back to back, which these
disks do no slower than in parallel (the peers' fsync test: ~1,800 file+fsync per second from
one thread, ~1,100 from ten).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tayori.storage.interfaces import MetadataStore
from tayori.storage.records import AppendResult, NewMessage


@dataclass(slots=True)
class _Job:
    items: Sequence[NewMessage]
    future: asyncio.Future[list[AppendResult]]
    loop: asyncio.AbstractEventLoop
    write: Callable[[], Sequence[NewMessage]] | None = None
    """Still to run (in the committer's thread) before `items` can be committed."""
    size: int = 0
    """Appends this job brings, for the batch limit (known before `write` runs)."""


class DeliveryCommitter:
    def __init__(self, metadata: MetadataStore, max_batch: int = 500) -> None:
        self._metadata = metadata
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.committed = 0
        self._stopping = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tayori-committer", daemon=True)
        self._thread.start()

    async def append(self, items: Sequence[NewMessage]) -> list[AppendResult]:
        """Commit these appends (with their outcomes); returns when durable or raises."""
        return await self._submit(items, None, len(items))

    async def append_after(
        self, write: Callable[[], Sequence[NewMessage]], size: int
    ) -> list[AppendResult]:
        """Run `write` in the committer's thread (it writes the blobs durably and returns the
        `size` appends referring to them), then commit its appends with the batch; returns
        when durable, or raises what `write` or the commit raised. `write` runs outside any
        transaction, except for a job that joins a batch late (then inside its SQLite write
        lock, which is still sooner than waiting for the next batch)."""
        return await self._submit((), write, size)

    async def _submit(
        self,
        items: Sequence[NewMessage],
        write: Callable[[], Sequence[NewMessage]] | None,
        size: int,
    ) -> list[AppendResult]:
        if self._thread is None:
            raise RuntimeError("committer not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[AppendResult]] = loop.create_future()
        self._jobs.put(_Job(items, future, loop, write, size))
        return await future

    def stop(self) -> None:
        """Finish every job already submitted, then end the thread."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        self._stopping = False
        while not self._stopping:
            first = self._jobs.get()
            if first is None:
                break
            batch = _written([first])
            batch.extend(self._take_waiting(batch))
            if batch:
                self._commit(batch)

    def _take_waiting(self, batch: list[_Job]) -> list[_Job]:
        """The jobs waiting now, up to `max_batch` appends with `batch`, their blobs written
        (a job whose write failed is answered with the error and left out). The stop signal
        ends the thread once this batch is committed."""
        taken: list[_Job] = []
        count = sum(job.size for job in batch)
        while count < self._max_batch and not self._stopping:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._stopping = True
                break
            taken.append(job)
            count += job.size
        return _written(taken)

    def _commit(self, batch: list[_Job], *, take_late: bool = True) -> None:
        def late() -> list[NewMessage]:
            taken = self._take_waiting(batch)
            batch.extend(taken)
            return [item for job in taken for item in job.items]

        items = [item for job in batch for item in job.items]
        try:
            results = self._metadata.append_messages(items, late if take_late else None)
        except Exception as error:  # one bad job must not fail the others: retry alone
            if len(batch) == 1:
                _settle(batch[0], error=error)
                return
            for job in list(batch):
                self._commit([job], take_late=False)
            return
        self.batches += 1
        self.committed += len(results)
        start = 0
        for job in batch:
            _settle(job, results=results[start : start + len(job.items)])
            start += len(job.items)


def _written(jobs: list[_Job]) -> list[_Job]:
    """The jobs whose appends are ready: each pending `write` run (in the committer's
    thread); a job whose write raised is answered with its error and left out."""
    ready: list[_Job] = []
    for job in jobs:
        write = job.write
        if write is not None:
            try:
                job.items = write()
            except Exception as error:
                _settle(job, error=error)
                continue
            finally:
                job.write = None
        ready.append(job)
    return ready


def _settle(
    job: _Job, *, results: list[AppendResult] | None = None, error: Exception | None = None
) -> None:
    def apply() -> None:
        if job.future.done():  # the session went away (cancelled); the data is committed
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(results or [])

    with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
        job.loop.call_soon_threadsafe(apply)
