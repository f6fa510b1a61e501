"""Blob stores: message bytes as files (SQLite mode) or as chunk rows (PostgreSQL mode).

Both are written durably before the metadata that refers to them is committed, so a crash
can leave an orphan blob but never a message without its bytes; `tayori.storage.sweep`
removes such orphans once they are a day old.
"""

from __future__ import annotations

import io
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine, delete, insert, select, update

from tayori.core.errors import NotFoundError, StoreUnavailableError
from tayori.core.outcome import utcnow
from tayori.storage.engine import read_connection, write_transaction
from tayori.storage.schema import blob_chunks, blobs

CHUNK_SIZE = 256 * 1024
"""Bytes per database row: big enough to keep row overhead small, small enough that a
reader holds only one at a time."""

_REF = re.compile(r"^[0-9a-f]{32}$")
_LEVEL = re.compile(r"^[0-9a-f]{2}$")
_TEMP_PREFIX = ".tmp-"
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_DELETE_BATCH = 500
_LIST_PAGE = 1000


def _new_ref() -> str:
    return uuid.uuid4().hex


def _new_file_ref() -> str:
    """A random ref whose first four hex digits (its directories, `ab/cd`) change every 64
    seconds: consecutive messages share a directory, so creating directories (two extra
    fsyncs each) happens once a minute instead of for almost every message of a new store.
    A leaf directory holds about a minute of mail; after 48 days the names come round again
    and the existing directories are reused."""
    slot = (int(time.time()) >> 6) & 0xFFFF
    return f"{slot:04x}{uuid.uuid4().hex[4:]}"


class FileBlobStore:
    """One file per blob under `root/ab/cd/<ref>`; the two levels keep directories small."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._root_str = os.fspath(root)
        self._made: set[str] = set()
        """Directories known to exist (and be durable): no stat per message."""

    def _path(self, ref: str) -> Path | None:
        # Refs are ours (hex); anything else must not become a path outside the root.
        if not _REF.fullmatch(ref):
            return None
        return self._root / ref[:2] / ref[2:4] / ref

    def put(self, chunks: Iterable[bytes]) -> str:
        # Written under its final name, with no temporary file and rename: a blob is only
        # ever read through a committed row, and the row is committed after `put` returns,
        # so a file cut short by a crash is an orphan nobody opens (the sweep removes it).
        # The rename cost more than the rest of `put` together: under load the create and
        # the two fsyncs took twice as long with it (5.3 -> 2.5 ms per put, 2 MX processes
        # at 10 sessions; bench/RESULTS.md). Plain `os` calls on string paths: pathlib,
        # `tempfile.mkstemp` and a buffered file object cost ~60 us of CPU per message.
        # O_EXCL refuses to reuse a name (refs are random).
        ref = _new_file_ref()
        directory = f"{self._root_str}/{ref[:2]}/{ref[2:4]}"
        path = f"{directory}/{ref}"
        with _io_errors(directory):
            fd = self._create(directory, path)
        try:
            try:
                # The chunks may come from a client: its errors are not the disk's.
                for chunk in chunks:
                    with _io_errors(path):
                        _write_all(fd, chunk)
                with _io_errors(path):
                    os.fsync(fd)
            finally:
                os.close(fd)
            with _io_errors(path):
                # The new directory entry is durable only once the directory is on disk.
                _fsync_dir(directory)
        except BaseException:
            with suppress(FileNotFoundError):
                Path(path).unlink()
            raise
        return ref

    def _create(self, directory: str, path: str) -> int:
        if directory not in self._made:
            _make_dirs(Path(directory))
            self._made.add(directory)
        try:
            return os.open(path, _CREATE_FLAGS, 0o600)
        except FileNotFoundError:  # removed behind our back (an admin's cleanup): remake it
            _make_dirs(Path(directory))
            return os.open(path, _CREATE_FLAGS, 0o600)

    def open(self, ref: str) -> BinaryIO:
        # A plain string path, not `_path`: POP3 opens one blob per message downloaded, and
        # building and opening a pathlib path costs about twice the open itself (~5 us).
        # Only exact refs become paths (fullmatch: `$` alone lets a trailing newline in).
        if _REF.fullmatch(ref):
            path = f"{os.fspath(self._root)}/{ref[:2]}/{ref[2:4]}/{ref}"
            try:
                return open(path, "rb")  # noqa: PTH123 - see above
            except FileNotFoundError:
                pass
        raise NotFoundError(f"message blob {ref} does not exist")

    def delete(self, refs: Iterable[str]) -> None:
        for ref in refs:
            path = self._path(ref)
            if path is not None:
                path.unlink(missing_ok=True)

    # --- listing, for the orphan sweep (tayori.storage.sweep) ----------------------------

    def stored_before(self, cutoff: datetime) -> Iterator[tuple[str, int]]:
        """(ref, size) of every blob file last written before `cutoff`. Only files where
        `put` puts them are listed: anything else under the root is not ours to judge."""
        limit = cutoff.timestamp()
        for leaf, name, stat in self._leaf_files():
            if _REF.match(name) and leaf == (name[:2], name[2:4]) and stat.st_mtime < limit:
                yield name, stat.st_size

    def temp_files_before(self, cutoff: datetime) -> Iterator[tuple[Path, int]]:
        """(path, size) of the temporary files of earlier versions' `put` (it wrote to a
        `.tmp-*` file and renamed it) last written before `cutoff`: one interrupted by a
        crash left it behind. Today's `put` writes no temporary file."""
        limit = cutoff.timestamp()
        for (top, sub), name, stat in self._leaf_files():
            if name.startswith(_TEMP_PREFIX) and stat.st_mtime < limit:
                yield self._root / top / sub / name, stat.st_size

    def _leaf_files(self) -> Iterator[tuple[tuple[str, str], str, os.stat_result]]:
        """Regular files of the `ab/cd` directories, one directory read at a time (read
        whole before yielding, so a caller may delete while walking). Entries that vanish
        meanwhile (a concurrent delete) are skipped."""
        for top in _subdirectories(self._root):
            for sub in _subdirectories(self._root / top):
                leaf = self._root / top / sub
                try:
                    with os.scandir(leaf) as scan:
                        entries = list(scan)
                except FileNotFoundError:
                    continue
                for entry in entries:
                    try:
                        if entry.is_file(follow_symlinks=False):
                            yield (top, sub), entry.name, entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _subdirectories(directory: Path) -> list[str]:
    """The two-hex-digit directories `put` makes, sorted."""
    try:
        with os.scandir(directory) as scan:
            return sorted(
                entry.name
                for entry in scan
                if _LEVEL.match(entry.name) and entry.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:
        return []


def _make_dirs(directory: Path) -> None:
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    # New directory entries need their parents fsynced to survive a crash.
    _fsync_dir(directory.parent)
    _fsync_dir(directory.parent.parent)


def _fsync_dir(directory: Path | str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _io_errors(path: Path | str) -> Iterator[None]:
    """A failing disk (full, read-only, gone) is a temporary failure, answered with 4xx."""
    try:
        yield
    except OSError as error:
        raise StoreUnavailableError(
            f"cannot write message file under {path}: {error.strerror or error}"
        ) from error


class SqlBlobStore:
    """Blobs as rows of `blob_chunks`, so that every node sharing the database sees them.

    The engine belongs to the caller (it is shared with the metadata store).
    """

    def __init__(self, engine: Engine, *, chunk_size: int = CHUNK_SIZE) -> None:
        self._engine = engine
        self._chunk_size = chunk_size

    def put(self, chunks: Iterable[bytes]) -> str:
        ref = _new_ref()
        with write_transaction(self._engine) as conn:
            conn.execute(insert(blobs).values(id=ref, size=0, chunks=0, created=utcnow()))
            count = size = 0
            for piece in _rechunk(chunks, self._chunk_size):
                conn.execute(insert(blob_chunks).values(blob_id=ref, seq=count, data=piece))
                count += 1
                size += len(piece)
            conn.execute(update(blobs).where(blobs.c.id == ref).values(size=size, chunks=count))
        return ref

    def open(self, ref: str) -> BinaryIO:
        with read_connection(self._engine) as conn:
            count = conn.scalar(select(blobs.c.chunks).where(blobs.c.id == ref))
        if count is None:
            raise NotFoundError(f"message blob {ref} does not exist")
        raw = _ChunkReader(self._engine, ref, int(count))
        return io.BufferedReader(raw, buffer_size=self._chunk_size)

    def stored_before(self, cutoff: datetime) -> Iterator[tuple[str, int]]:
        """(ref, size) of every blob committed with a `created` before `cutoff`, for the
        orphan sweep (tayori.storage.sweep); read a page at a time in ref order, each page
        its own short read, so that deleting while listing is fine and no connection is
        held between pages."""
        after = ""
        while True:
            with read_connection(self._engine) as conn:
                page = conn.execute(
                    select(blobs.c.id, blobs.c.size)
                    .where(blobs.c.created < cutoff, blobs.c.id > after)
                    .order_by(blobs.c.id)
                    .limit(_LIST_PAGE)
                ).all()
            for row in page:
                yield row.id, int(row.size)
            if len(page) < _LIST_PAGE:
                return
            after = page[-1].id

    def delete(self, refs: Iterable[str]) -> None:
        pending = list(dict.fromkeys(refs))
        for start in range(0, len(pending), _DELETE_BATCH):
            batch = pending[start : start + _DELETE_BATCH]
            with write_transaction(self._engine) as conn:
                conn.execute(delete(blobs).where(blobs.c.id.in_(batch)))


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Equal pieces of `size` bytes (the last may be shorter), whatever the input pieces."""
    pending = bytearray()
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            take = size - len(pending)
            pending += view[:take]
            view = view[take:]
            if len(pending) == size:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)


class _ChunkReader(io.RawIOBase):
    """Fetches one chunk row at a time, each with a short read, so that memory stays flat
    and no connection is held between reads."""

    def __init__(self, engine: Engine, ref: str, count: int) -> None:
        super().__init__()
        self._engine = engine
        self._ref = ref
        self._count = count
        self._next = 0
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._current:
            if self._next >= self._count:
                return 0
            self._current = memoryview(self._fetch(self._next))
            self._next += 1
        target = memoryview(buffer).cast("B")
        n = min(len(target), len(self._current))
        target[:n] = self._current[:n]
        self._current = self._current[n:]
        return n

    def _fetch(self, seq: int) -> bytes:
        with read_connection(self._engine) as conn:
            data = conn.scalar(
                select(blob_chunks.c.data).where(
                    blob_chunks.c.blob_id == self._ref, blob_chunks.c.seq == seq
                )
            )
        if data is None:
            raise NotFoundError(f"message blob {self._ref} was deleted while being read")
        return bytes(data)
