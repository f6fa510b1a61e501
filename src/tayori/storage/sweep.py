"""The orphan sweep: message bytes that no row refers to, left behind by a crash, removed.

Every writer stores a message's bytes durably first (`BlobStore.put`) and then commits the
rows that name them, and every deleter commits first and removes the bytes after; so a crash,
or a failed store or delete, can leave bytes nothing refers to (a file, or a `blobs` row in
PostgreSQL mode), and a `put` cut short by a crash leaves its file half written under its
own ref (earlier versions left a `.tmp-*` file instead). They are only wasted space, but
nothing else ever removes them. `tayori store sweep` removes them on demand,
and `tayori serve` once a day (`run_periodically`).

Why deleting them is safe while mail is being delivered:

- Only blobs older than `BLOB_AGE` (a day) are candidates. A blob becomes referenced within
  the delivery, submission, forwarding, bounce or webmail request that wrote it: the bytes are
  in memory, so the gap between `put` and the commit naming them is milliseconds (seconds
  under load). A blob a day old that nothing names is one whose writer is gone.
- A candidate is deleted only if no row names it *when it is checked*, in every table that
  holds blob refs (`referencing_columns()`: mailbox messages, queued messages; a table added
  later with a `blob_ref` column is included without changing this module). Queued messages,
  whatever their age, keep their blobs that way, as do messages whose arrival is old.
- Refs are random and never reused, so a ref nobody names can only become named again by
  someone already holding it: the writer of the first point (excluded by the age), or a copy
  of a row deleted just before the check (a copy racing the expunge of its source), which the
  expunge itself would already remove the blob under, as it always has. The sweep adds no
  way to lose bytes that a deleter did not have already.
- Candidates are checked and deleted in batches of `BATCH`, each checked right before it is
  deleted, so the time between the check and the delete is a batch, not the whole walk.
- The age comes from the file's modification time (one machine's clock) or, in PostgreSQL
  mode, from `blobs.created`, stamped by the writing node: nodes' clocks must agree to well
  within a day, which NTP gives by orders of magnitude.

`.tmp-*` files, left by earlier versions' `put`, are never named by a row: one older than
`TEMP_AGE` (an hour) belongs to a `put` that died, since a `put` writes bytes already in
memory.

Several nodes sweeping at once is harmless: deleting what another node deleted is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import Column, Engine, select

from tayori.core.outcome import utcnow
from tayori.core.sizes import format_size
from tayori.storage.blobs import FileBlobStore, SqlBlobStore
from tayori.storage.engine import create_store_engine, dispose_engine, read_connection
from tayori.storage.interfaces import BlobStore
from tayori.storage.schema import metadata

__all__ = [
    "BATCH",
    "BLOB_AGE",
    "FIRST_SWEEP_DELAY",
    "SWEEP_INTERVAL",
    "TEMP_AGE",
    "SweepReport",
    "referencing_columns",
    "run_periodically",
    "sweep_orphans",
    "sweep_store",
    "unreferenced",
]

log = logging.getLogger(__name__)

BLOB_AGE = timedelta(days=1)
"""Blobs younger than this are never swept: their writer may not have committed yet."""
TEMP_AGE = timedelta(hours=1)
"""`.tmp-*` files younger than this may belong to a `put` in progress."""
BATCH = 500
"""Candidates checked and deleted together: short reads, a short check-to-delete gap."""
SWEEP_INTERVAL = 86400.0
"""Seconds between sweeps in `tayori serve`: orphans are rare, and a day late is nothing."""
FIRST_SWEEP_DELAY = 600.0
"""Seconds after start-up before the first sweep: starting is busy enough, and a sweep of
a large store reads every directory."""


def referencing_columns() -> tuple[Column[Any], ...]:
    """Every column that names a blob: `blob_ref` in any table of the schema."""
    return tuple(table.c.blob_ref for table in metadata.sorted_tables if "blob_ref" in table.c)


def unreferenced(engine: Engine, refs: list[str]) -> list[str]:
    """The refs no row of any table names, as of this read."""
    if not refs:
        return []
    named: set[str] = set()
    with read_connection(engine) as conn:
        for column in referencing_columns():
            named.update(conn.scalars(select(column).where(column.in_(refs)).distinct()))
    return [ref for ref in refs if ref not in named]


@dataclass(slots=True)
class SweepReport:
    """What one sweep found (and removed, unless `dry_run`)."""

    dry_run: bool = False
    blob_age: timedelta = BLOB_AGE
    temp_age: timedelta = TEMP_AGE
    files: bool = False
    """The store is files (SQLite mode), which have temporary files to sweep too."""
    examined: int = 0
    """Blobs older than the age, checked for references."""
    orphans: int = 0
    """Of those, referenced by nothing: deleted (or, dry run, to be deleted)."""
    orphan_bytes: int = 0
    temp_files: int = 0
    """Abandoned `.tmp-*` files (file store only)."""
    temp_bytes: int = 0

    def lines(self) -> list[str]:
        done = "would be deleted" if self.dry_run else "deleted"
        found = [
            f"message blobs older than {_span(self.blob_age)}: {self.examined} checked, "
            f"{self.orphans} referenced by nothing: {done} ({format_size(self.orphan_bytes)})"
        ]
        if self.files:
            found.append(
                f"temporary files older than {_span(self.temp_age)}: {self.temp_files} {done} "
                f"({format_size(self.temp_bytes)})"
            )
        return found


def _span(age: timedelta) -> str:
    hours = int(age.total_seconds() // 3600)
    if hours % 24 == 0:
        days = hours // 24
        return f"{days} day" + ("s" if days != 1 else "")
    return f"{hours} hour" + ("s" if hours != 1 else "")


def _batches(items: Iterable[tuple[str, int]], size: int) -> Iterator[list[tuple[str, int]]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def sweep_orphans(
    engine: Engine,
    blobs: BlobStore,
    now: datetime,
    *,
    blob_age: timedelta = BLOB_AGE,
    temp_age: timedelta = TEMP_AGE,
    dry_run: bool = False,
    stopping: Callable[[], bool] = lambda: False,
) -> SweepReport:
    """Delete the blobs older than `blob_age` that no row names, and the `.tmp-*` files
    older than `temp_age`; `engine` is the database of the rows (see the module docstring
    for why this is safe while mail is delivered). `stopping` is asked between batches, so
    that `serve` does not wait for a whole sweep to stop."""
    if blob_age < TEMP_AGE:
        raise ValueError(f"blob_age must be at least {_span(TEMP_AGE)}: writers may not be done")
    report = SweepReport(dry_run, blob_age, temp_age, files=isinstance(blobs, FileBlobStore))
    candidates: Iterable[tuple[str, int]]
    if isinstance(blobs, FileBlobStore):
        for path, size in blobs.temp_files_before(now - temp_age):
            if not dry_run:
                path.unlink(missing_ok=True)
            report.temp_files += 1
            report.temp_bytes += size
        candidates = blobs.stored_before(now - blob_age)
    elif isinstance(blobs, SqlBlobStore):
        candidates = blobs.stored_before(now - blob_age)
    else:
        raise TypeError(f"cannot list the blobs of {type(blobs).__name__}")
    for batch in _batches(candidates, BATCH):
        if stopping():
            break
        sizes = dict(batch)
        orphans = unreferenced(engine, list(sizes))
        if orphans and not dry_run:
            blobs.delete(orphans)
        report.examined += len(sizes)
        report.orphans += len(orphans)
        report.orphan_bytes += sum(sizes[ref] for ref in orphans)
    return report


def sweep_store(
    url: str,
    blobs: BlobStore,
    now: datetime,
    *,
    dry_run: bool = False,
    stopping: Callable[[], bool] = lambda: False,
) -> SweepReport:
    """`sweep_orphans` with an engine of its own for the reads (the stores keep theirs
    private), opened for this sweep only."""
    engine = create_store_engine(url)
    try:
        return sweep_orphans(engine, blobs, now, dry_run=dry_run, stopping=stopping)
    finally:
        dispose_engine(engine)


async def run_periodically(
    url: str,
    blobs: BlobStore,
    *,
    clock: Callable[[], datetime] = utcnow,
    interval: float = SWEEP_INTERVAL,
    delay: float = FIRST_SWEEP_DELAY,
) -> None:
    """Sweep `delay` seconds after start, then every `interval` seconds until cancelled;
    a failed sweep is logged and tried again at the next round. Cancelling stops a sweep in
    progress after its current batch (the thread cannot be cancelled, only told)."""
    stop = threading.Event()
    try:
        await asyncio.sleep(delay)
        while True:
            try:
                report = await asyncio.to_thread(
                    sweep_store, url, blobs, clock(), stopping=stop.is_set
                )
                if report.orphans or report.temp_files:
                    log.info(
                        "orphan sweep: deleted %d unreferenced blobs (%d bytes) and %d "
                        "temporary files (%d bytes)",
                        report.orphans,
                        report.orphan_bytes,
                        report.temp_files,
                        report.temp_bytes,
                    )
            except Exception:
                log.exception("orphan sweep failed; trying again later")
            await asyncio.sleep(interval)
    finally:
        stop.set()
