"""BlobStore conformance: files, and chunk rows in each SQL database."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from tayori.core.errors import NotFoundError, StoreUnavailableError
from tayori.storage.blobs import CHUNK_SIZE, FileBlobStore, SqlBlobStore
from tayori.storage.engine import create_store_engine
from tayori.storage.interfaces import BlobStore

from .conftest import prepare_backend

KIB = 1024
MIB = 1024 * KIB
BIG = 50 * MIB


@pytest.fixture
def sql_engine(backend_url: str) -> Iterator[Engine]:
    engine = create_store_engine(backend_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(
    params=["file", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    ids=["file", "sql-on-sqlite", "sql-on-postgresql"],
)
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "file":
        yield FileBlobStore(tmp_path / "messages")
        return
    engine = create_store_engine(prepare_backend(request.param, request, tmp_path))
    try:
        yield SqlBlobStore(engine)
    finally:
        engine.dispose()


def read_all(store: BlobStore, ref: str) -> bytes:
    with store.open(ref) as stream:
        return stream.read()


def pattern(size: int, piece: int) -> Iterator[bytes]:
    """Deterministic bytes covering all 256 values, produced lazily in `piece`-sized parts."""
    block = bytes(range(256)) * (piece // 256 + 1)
    sent = 0
    while sent < size:
        part = block[: min(piece, size - sent)]
        sent += len(part)
        yield part


def test_round_trip_is_byte_exact(blobs: BlobStore) -> None:
    data = b"From: a\r\n\r\n\x00\xff\x1b$B$3$s\x1b(B\r\n.\r\n" + bytes(range(256)) * 3000
    # Odd piece sizes cross the store's chunk boundaries at awkward places.
    pieces = [data[:1], data[1:7777], b"", data[7777:300001], data[300001:]]
    ref = blobs.put(pieces)
    assert read_all(blobs, ref) == data


@pytest.mark.parametrize("chunks", [[], [b""]], ids=["no-chunks", "empty-chunk"])
def test_empty_blob(blobs: BlobStore, chunks: list[bytes]) -> None:
    ref = blobs.put(chunks)
    assert read_all(blobs, ref) == b""


def test_refs_are_distinct(blobs: BlobStore) -> None:
    first, second = blobs.put([b"one"]), blobs.put([b"one"])
    assert first != second
    assert (read_all(blobs, first), read_all(blobs, second)) == (b"one", b"one")


def test_delete_is_idempotent_and_ignores_unknown(blobs: BlobStore) -> None:
    keep, gone = blobs.put([b"keep"]), blobs.put([b"gone"])
    blobs.delete([gone, gone, "0" * 32, "../../etc/passwd", ""])
    blobs.delete([gone])
    blobs.delete([])
    with pytest.raises(NotFoundError):
        blobs.open(gone)
    assert read_all(blobs, keep) == b"keep"


def test_open_unknown_is_not_found(blobs: BlobStore) -> None:
    for ref in ("0" * 32, "not-a-ref", "../x"):
        with pytest.raises(NotFoundError):
            blobs.open(ref)


def test_50_megabytes_stream_in_pieces(blobs: BlobStore) -> None:
    expected = hashlib.sha256()
    for part in pattern(BIG, MIB):
        expected.update(part)
    ref = blobs.put(pattern(BIG, MIB))
    got = hashlib.sha256()
    total = 0
    tracemalloc.start()
    try:
        with blobs.open(ref) as stream:
            while piece := stream.read(64 * KIB):
                assert len(piece) <= 64 * KIB
                got.update(piece)
                total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == BIG
    assert got.digest() == expected.digest()
    assert peak < 8 * MIB, f"reading held {peak} bytes at once"


def test_sql_reader_fetches_chunks_lazily(sql_engine: Engine) -> None:
    store = SqlBlobStore(sql_engine)
    ref = store.put(pattern(10 * CHUNK_SIZE + 5, 100_000))
    fetches: list[str] = []

    @event.listens_for(sql_engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "blob_chunks" in statement:
            fetches.append(statement)

    with store.open(ref) as stream:
        assert fetches == []
        assert len(stream.read(64 * KIB)) == 64 * KIB
        assert len(fetches) == 1
        stream.read(CHUNK_SIZE)
        assert len(fetches) == 2
        rest = stream.read()
    assert len(fetches) == 11
    assert len(rest) == 10 * CHUNK_SIZE + 5 - 64 * KIB - CHUNK_SIZE


def test_sql_put_is_committed_and_one_transaction(sql_engine: Engine, backend_url: str) -> None:
    store = SqlBlobStore(sql_engine)

    def failing() -> Iterator[bytes]:
        yield b"x" * (3 * CHUNK_SIZE)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put(failing())
    ref = store.put([b"durable"])
    other = create_store_engine(backend_url)
    try:
        assert read_all(SqlBlobStore(other), ref) == b"durable"
        with other.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM blobs").scalar() == 1
            assert conn.exec_driver_sql("SELECT count(*) FROM blob_chunks").scalar() == 1
    finally:
        other.dispose()


# --- files ----------------------------------------------------------------------------


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_file_layout_and_no_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "messages"
    store = FileBlobStore(root)
    ref = store.put(pattern(100_000, 4096))
    assert _files(root) == [root / ref[:2] / ref[2:4] / ref]
    with store.open(ref) as stream:
        assert isinstance(stream, io.BufferedReader)


def test_file_blobs_are_readable_by_the_service_only(tmp_path: Path) -> None:
    """Members' mail must not become readable by other local users through a lax umask."""
    old_umask = os.umask(0)
    try:
        ref = FileBlobStore(tmp_path / "messages").put([b"private"])
    finally:
        os.umask(old_umask)
    path = tmp_path / "messages" / ref[:2] / ref[2:4] / ref
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_open_takes_only_exact_refs(tmp_path: Path) -> None:
    """Only what `put` returns is opened, even where a file exists at the path another
    string would name (a trailing newline, upper case, a longer name)."""
    root = tmp_path / "messages"
    store = FileBlobStore(root)
    ref = store.put([b"mine"])
    leaf = root / ref[:2] / ref[2:4]
    for name in (ref + "\n", ref.upper(), ref + "0"):
        (leaf / name).write_bytes(b"not a blob")
        with pytest.raises(NotFoundError):
            store.open(name)
    assert read_all(store, ref) == b"mine"


def test_file_failed_put_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "messages"
    store = FileBlobStore(root)

    def failing() -> Iterator[bytes]:
        yield b"partial"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put(failing())
    assert _files(root) == []


def test_file_unwritable_root_is_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "messages"
    root.write_bytes(b"a file where the directory should be")
    with pytest.raises(StoreUnavailableError, match="cannot write"):
        FileBlobStore(root).put([b"x"])
