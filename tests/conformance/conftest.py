"""Fixtures that run every conformance test against each storage back end.

SQLite: a copy of a database migrated once per session, in the test's tmp_path.
PostgreSQL: the session database from `pg_server_url`, migrated once and emptied
(DELETE FROM every table) before each test, which is much faster than re-migrating.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tayori.storage.engine import create_store_engine
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.schema import metadata

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


class FakeClock:
    """The stores' clock, moved by hand: lock expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sqlite-template")
    migrate("", directory)
    return directory / "tayori.db"


@pytest.fixture(scope="session")
def pg_migrated_url(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    migrate(pg_server_url, tmp_path_factory.mktemp("pg"))
    return pg_server_url


def empty_pg(url: str) -> None:
    # DELETE, not TRUNCATE: on tables this small it is ~100 times faster (TRUNCATE creates
    # and syncs new files for every table and index). Ids keep growing, which no test minds.
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    finally:
        engine.dispose()


def prepare_backend(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of `backend` ("sqlite" or "postgresql"), as a storage URL."""
    if backend == "sqlite":
        target = tmp_path / "tayori.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_migrated_url")
    empty_pg(url)
    return url


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return prepare_backend(request.param, request, tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stores(backend_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[Stores]:
    opened = open_stores(backend_url, tmp_path, clock=clock)
    try:
        yield opened
    finally:
        opened.close()
