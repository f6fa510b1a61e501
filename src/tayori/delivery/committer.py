"""Group commit: appends from many SMTP sessions share one transaction and one fsync.

A `250` may only be sent once the message is durable, and a durable metadata commit costs an
fsync. One writer thread takes every append that is waiting when it becomes free and
commits them together, so throughput grows with concurrency instead of being capped by the
disk's fsync rate, while no session is answered before its own data is committed.

With several MX processes (`[server] smtp_processes`) on one SQLite database, the write
lock is shared, and a commit often waits for another process's: the appends that arrive
during that wait join the commit once it has the lock (`late`), rather than waiting for
the lock again in the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from tayori.storage.interfaces import MetadataStore
from tayori.storage.records import AppendResult, NewMessage


@dataclass(slots=True)
class _Job:
    items: Sequence[NewMessage]
    future: asyncio.Future[list[AppendResult]]
    loop: asyncio.AbstractEventLoop


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
        if self._thread is None:
            raise RuntimeError("committer not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[AppendResult]] = loop.create_future()
        self._jobs.put(_Job(items, future, loop))
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
            batch = [first]
            self._take_waiting(batch)
            self._commit(batch)

    def _take_waiting(self, batch: list[_Job]) -> list[_Job]:
        """Move the jobs waiting now into `batch`, up to `max_batch` items; returns them.
        The stop signal ends the thread once this batch is committed."""
        taken: list[_Job] = []
        count = sum(len(job.items) for job in batch)
        while count < self._max_batch and not self._stopping:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._stopping = True
                break
            batch.append(job)
            taken.append(job)
            count += len(job.items)
        return taken

    def _commit(self, batch: list[_Job], *, take_late: bool = True) -> None:
        def late() -> list[NewMessage]:
            return [item for job in self._take_waiting(batch) for item in job.items]

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
