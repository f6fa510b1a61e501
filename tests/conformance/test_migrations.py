"""Migrations produce exactly `schema.metadata`; opening refuses a database not at head."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tayori.core.errors import ConfigError, StoreUnavailableError
from tayori.storage import factory
from tayori.storage.blobs import FileBlobStore, SqlBlobStore
from tayori.storage.engine import create_store_engine, write_transaction
from tayori.storage.factory import (
    SchemaNotReadyError,
    head_revision,
    migrate,
    open_stores,
    storage_url,
)
from tayori.storage.schema import include_schema_name, metadata


@pytest.fixture
def pg_schema_url(pg_server_url: str) -> Iterator[str]:
    """An empty PostgreSQL schema of its own, so that migrating from nothing can be tested
    without disturbing the session database the other tests share."""
    schema = f"mig_{secrets.token_hex(4)}"
    admin = create_store_engine(pg_server_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(pg_server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh' / 'tayori.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


def schema_differences(url: str) -> list[object]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": include_schema_name}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_migrated_database_matches_schema(empty_url: str, tmp_path: Path) -> None:
    migrate(empty_url, tmp_path)
    assert schema_differences(empty_url) == []
    migrate(empty_url, tmp_path)  # idempotent
    stores = open_stores(empty_url, tmp_path)
    stores.metadata.add_domain("example.test")
    stores.close()


def test_downgrade_then_upgrade_again(empty_url: str, tmp_path: Path) -> None:
    migrate(empty_url, tmp_path)
    engine = create_store_engine(empty_url)
    try:
        with write_transaction(engine) as conn:
            command.downgrade(factory._alembic_config(conn), "base")
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_heads() == ()
    finally:
        engine.dispose()
    with pytest.raises(SchemaNotReadyError, match="tayori migrate"):
        open_stores(empty_url, tmp_path)
    migrate(empty_url, tmp_path)
    assert schema_differences(empty_url) == []


def test_open_refuses_an_unmigrated_database(empty_url: str, tmp_path: Path) -> None:
    database = make_url(empty_url).database
    if empty_url.startswith("sqlite"):
        assert database is not None
        with pytest.raises(SchemaNotReadyError, match="run `tayori migrate`"):
            open_stores(empty_url, tmp_path)
        assert not Path(database).exists(), "opening must not create the database"
        Path(database).parent.mkdir(parents=True)
        sqlite3.connect(database).close()
    with pytest.raises(SchemaNotReadyError, match=r"empty .*revision 0008; run `tayori migrate`"):
        open_stores(empty_url, tmp_path)


def test_open_picks_the_blob_store_and_read_placement_by_database(
    empty_url: str, tmp_path: Path
) -> None:
    migrate(empty_url, tmp_path)
    stores = open_stores(empty_url, tmp_path)
    try:
        if empty_url.startswith("sqlite"):
            assert isinstance(stores.blobs, FileBlobStore)
            assert (tmp_path / "messages").is_dir()
            assert stores.local_reads  # hot-path reads may run on the event loop
        else:
            assert isinstance(stores.blobs, SqlBlobStore)
            assert not stores.local_reads  # a network round trip: never on the loop
        ref = stores.blobs.put([b"hello"])
        with stores.blobs.open(ref) as stream:
            assert stream.read() == b"hello"
    finally:
        stores.close()


def test_default_sqlite_location_is_created_by_migrate(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "data"
    migrate("", data_dir)
    assert (data_dir / "tayori.db").is_file()
    open_stores("", data_dir).close()


def test_head_revision() -> None:
    assert head_revision() == "0008"


# --- storage_url ------------------------------------------------------------------------


def test_storage_url_defaults_and_relative_paths(tmp_path: Path) -> None:
    assert storage_url("", tmp_path) == f"sqlite:///{tmp_path}/tayori.db"
    assert storage_url("sqlite:///mail/t.db", tmp_path) == f"sqlite:///{tmp_path}/mail/t.db"
    assert storage_url("sqlite:////srv/t.db", tmp_path) == "sqlite:////srv/t.db"
    pg = "postgresql://tayori:secret@db.internal/mail"
    assert storage_url(pg, tmp_path) == pg


@pytest.mark.parametrize("url", ["mysql://x@y/z", "sqlite://", "sqlite:///:memory:", "not a url"])
def test_storage_url_refuses_what_cannot_work(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage\.url"):
        storage_url(url, tmp_path)


def test_messages_hide_passwords(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        storage_url("mysql://user:hunter2@host/db", tmp_path)
    assert "hunter2" not in str(caught.value)


def test_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    with pytest.raises(StoreUnavailableError):
        open_stores(url, tmp_path)
    with pytest.raises(StoreUnavailableError):
        migrate(url, tmp_path)
