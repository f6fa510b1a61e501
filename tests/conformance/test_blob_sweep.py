"""The orphan sweep on each back end: files (SQLite mode) and `blobs` rows (PostgreSQL mode).

Blobs are aged by hand (a file's modification time, a row's `created`), so each test has old
and young ones side by side, referenced and not, as a store that crashed would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, String, update

from tayori.core.errors import NotFoundError
from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.storage import blobs as blob_module
from tayori.storage import sweep
from tayori.storage.blobs import FileBlobStore, SqlBlobStore
from tayori.storage.engine import create_store_engine
from tayori.storage.factory import Stores
from tayori.storage.records import MessageSummary, NewMessage, NewQueuedMessage, SpecialUse
from tayori.storage.schema import blobs as blobs_table
from tayori.storage.schema import metadata
from tayori.storage.sweep import referencing_columns, sweep_orphans

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=2)
"""Past the one-day age: a candidate."""
YOUNG = NOW - timedelta(hours=20)
"""Within the day: may belong to a delivery that has not committed yet."""


@pytest.fixture
def engine(backend_url: str) -> Iterator[Engine]:
    made = create_store_engine(backend_url)
    try:
        yield made
    finally:
        made.dispose()


def age(stores: Stores, engine: Engine, ref: str, when: datetime) -> None:
    """Make a blob look written at `when`."""
    blobs = stores.blobs
    if isinstance(blobs, FileBlobStore):
        path = blob_path(stores, ref)
        os.utime(path, (when.timestamp(), when.timestamp()))
    else:
        with engine.begin() as conn:
            conn.execute(update(blobs_table).where(blobs_table.c.id == ref).values(created=when))


def blob_path(stores: Stores, ref: str) -> Path:
    assert isinstance(stores.blobs, FileBlobStore)
    root = stores.blobs._root  # the layout is the store's; the test only ages files
    return root / ref[:2] / ref[2:4] / ref


def put(stores: Stores, engine: Engine, body: bytes, when: datetime = OLD) -> str:
    ref = stores.blobs.put([body])
    age(stores, engine, ref, when)
    return ref


def exists(stores: Stores, ref: str) -> bool:
    try:
        stores.blobs.open(ref).close()
    except NotFoundError:
        return False
    return True


def in_mailbox(stores: Stores, ref: str, size: int) -> None:
    meta = stores.metadata
    if not meta.list_domains():
        meta.add_domain("example.test")
    account = meta.get_account("alice@example.test") or meta.add_account(
        "alice@example.test", "hash", 0
    )
    outcome = Outcome(
        Direction.INBOUND, "a@sender.test", account.address, OutcomeKind.DELIVERED, "delivered"
    )
    meta.append_messages(
        [
            NewMessage(
                account_id=account.id,
                mailbox=SpecialUse.INBOX,
                blob_ref=ref,
                size=size,
                internal_date=OLD - timedelta(days=300),  # arrival age does not matter
                summary=MessageSummary(subject="kept"),
                on_delivered=outcome,
                on_over_quota=outcome,
            )
        ]
    )


def in_queue(stores: Stores, ref: str, queue_id: str = "Q1") -> None:
    stores.queue.enqueue(
        NewQueuedMessage(
            queue_id=queue_id,
            sender="alice@example.test",
            account_id=None,
            blob_ref=ref,
            size=10,
            message_id=f"<{queue_id}@example.test>",
            subject="queued",
            created=OLD,
            expires=OLD + timedelta(days=5),
            recipients=("bob@remote.test",),
        )
    )


def test_old_unreferenced_blobs_go_and_everything_else_stays(
    stores: Stores, engine: Engine
) -> None:
    orphan = put(stores, engine, b"orphan of a crash")
    young = put(stores, engine, b"being delivered", YOUNG)
    mailed = put(stores, engine, b"in a mailbox")
    in_mailbox(stores, mailed, 12)
    queued = put(stores, engine, b"in the queue")
    in_queue(stores, queued)
    shared = put(stores, engine, b"a local copy and a queued one")
    in_mailbox(stores, shared, 29)
    in_queue(stores, shared, "Q2")

    report = sweep_orphans(engine, stores.blobs, NOW)
    assert (report.examined, report.orphans, report.orphan_bytes) == (4, 1, 17)
    assert report.files is isinstance(stores.blobs, FileBlobStore)
    assert not exists(stores, orphan)
    assert all(exists(stores, ref) for ref in (young, mailed, queued, shared))

    # Once the day is over, the young one is an orphan too; the rest are still named.
    later = sweep_orphans(engine, stores.blobs, NOW + timedelta(days=1))
    assert (later.examined, later.orphans) == (4, 1)
    assert not exists(stores, young)
    assert all(exists(stores, ref) for ref in (mailed, queued, shared))


def test_a_blob_freed_by_an_expunge_that_crashed_is_swept(stores: Stores, engine: Engine) -> None:
    """The other way orphans are made: rows deleted and committed, bytes not (yet) deleted."""
    ref = put(stores, engine, b"expunged")
    in_mailbox(stores, ref, 8)
    assert sweep_orphans(engine, stores.blobs, NOW).orphans == 0
    account = stores.metadata.get_account("alice@example.test")
    assert account is not None
    inbox = stores.metadata.get_mailbox(account.id, SpecialUse.INBOX)
    [message] = stores.metadata.list_messages(inbox.id)
    assert stores.metadata.expunge(inbox.id, [message.id]) == [ref]  # ... and then a crash
    assert sweep_orphans(engine, stores.blobs, NOW).orphans == 1
    assert not exists(stores, ref)


def test_dry_run_counts_and_deletes_nothing(stores: Stores, engine: Engine) -> None:
    refs = [put(stores, engine, b"x" * n) for n in (1, 2, 3)]
    in_mailbox(stores, refs[0], 1)
    report = sweep_orphans(engine, stores.blobs, NOW, dry_run=True)
    assert (report.dry_run, report.examined, report.orphans, report.orphan_bytes) == (
        True,
        3,
        2,
        5,
    )
    assert all(exists(stores, ref) for ref in refs)
    assert "would be deleted" in report.lines()[0]
    assert "deleted" in sweep_orphans(engine, stores.blobs, NOW).lines()[0]
    assert [exists(stores, ref) for ref in refs] == [True, False, False]


def test_many_candidates_in_batches_and_a_stop_between_them(
    stores: Stores, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "BATCH", 3)
    monkeypatch.setattr(blob_module, "_LIST_PAGE", 2)  # PostgreSQL mode lists in pages
    refs = [put(stores, engine, f"message {n}".encode()) for n in range(10)]
    kept = refs[::3]
    for n, ref in enumerate(kept):
        in_queue(stores, ref, f"Q{n}")
    asked: list[int] = []

    def stop_after_two() -> bool:
        asked.append(1)
        return len(asked) > 2

    stopped = sweep_orphans(engine, stores.blobs, NOW, stopping=stop_after_two)
    assert stopped.examined == 6  # two batches of three, then the stop
    report = sweep_orphans(engine, stores.blobs, NOW)
    assert stopped.orphans + report.orphans == 10 - len(kept)
    assert [exists(stores, ref) for ref in refs] == [ref in kept for ref in refs]


def test_an_age_below_the_temp_age_is_refused(stores: Stores, engine: Engine) -> None:
    with pytest.raises(ValueError, match="at least 1 hour"):
        sweep_orphans(engine, stores.blobs, NOW, blob_age=timedelta(minutes=5))


# --- files only ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)  # the file store's own
def test_abandoned_temp_files_go_after_an_hour_and_strangers_stay(
    stores: Stores, engine: Engine
) -> None:
    assert isinstance(stores.blobs, FileBlobStore)
    ref = put(stores, engine, b"a message", YOUNG)
    in_mailbox(stores, ref, 9)
    leaf = blob_path(stores, ref).parent
    root = leaf.parent.parent

    def made(path: Path, when: datetime, data: bytes = b"partial") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (when.timestamp(), when.timestamp()))
        return path

    dead = made(leaf / ".tmp-abc123", NOW - timedelta(hours=2), b"x" * 100)
    busy = made(leaf / ".tmp-def456", NOW - timedelta(minutes=10))
    # Not where `put` puts things, or not named as it names them: not the sweep's to judge.
    misplaced_ref = "ab" + "cd" * 15
    strangers = [
        made(leaf / "notes.txt", OLD),
        made(root / "ff" / "ee" / misplaced_ref, OLD),
        made(root / ".tmp-at-the-top", OLD),
        made(root / "lost+found" / "12" / "0123456789abcdef0123456789abcdef", OLD),
    ]
    report = sweep_orphans(engine, stores.blobs, NOW)
    assert (report.temp_files, report.temp_bytes) == (1, 100)
    assert (report.examined, report.orphans) == (0, 0)
    assert not dead.exists()
    assert busy.exists()
    assert all(path.exists() for path in strangers)
    assert exists(stores, ref)
    lines = report.lines()
    assert lines[1] == "temporary files older than 1 hour: 1 deleted (100 B)"


def test_only_the_file_store_reports_temporary_files(stores: Stores, engine: Engine) -> None:
    lines = sweep_orphans(engine, stores.blobs, NOW).lines()
    assert (
        lines[0]
        == "message blobs older than 1 day: 0 checked, 0 referenced by nothing: deleted (0 B)"
    )
    files = isinstance(stores.blobs, FileBlobStore)
    assert files or isinstance(stores.blobs, SqlBlobStore)
    assert lines[1:] == (["temporary files older than 1 hour: 0 deleted (0 B)"] if files else [])


# --- what counts as a reference ---------------------------------------------------------------


def test_every_column_naming_a_blob_is_checked() -> None:
    """A table added later that names blobs must name its column `blob_ref`, or the sweep
    would take its blobs for orphans: this test fails first."""
    checked = {(column.table.name, column.name) for column in referencing_columns()}
    assert {("messages", "blob_ref"), ("queue_messages", "blob_ref")} <= checked
    for table in metadata.sorted_tables:
        if table.name in ("blobs", "blob_chunks"):  # the bytes themselves
            continue
        for column in table.columns:
            if "blob" in column.name or column.name.endswith("_ref"):
                where = (table.name, column.name)
                assert where in checked, f"{where} names blobs but the sweep does not check it"
                assert isinstance(column.type, String)
