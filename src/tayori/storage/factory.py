"""Build the stores from the storage URL, and bring a database's schema up to date."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from tayori.core.errors import ConfigError, TayoriError
from tayori.core.outcome import utcnow
from tayori.spam.store import SqlTokenStore, TokenStore
from tayori.storage.blobs import FileBlobStore, SqlBlobStore
from tayori.storage.engine import (
    create_store_engine,
    dispose_engine,
    engine_url,
    read_connection,
    safe_url,
    write_transaction,
)
from tayori.storage.interfaces import (
    BlobStore,
    MemberStore,
    MetadataStore,
    QueueStore,
    WebSessionStore,
)
from tayori.storage.sql_member import SqlMemberStore
from tayori.storage.sql_queue import SqlQueueStore
from tayori.storage.sql_rules import RulesStore, SqlRulesStore
from tayori.storage.sql_store import Clock, SqlMetadataStore
from tayori.storage.sql_web import SqlWebSessionStore

_SCRIPT_LOCATION = "tayori.storage:migrations"
# Any constant: concurrent `tayori migrate` runs on PostgreSQL queue on this advisory lock.
_PG_MIGRATE_LOCK = 0x7461796F


class SchemaNotReadyError(TayoriError):
    """The database is missing, or its schema is not the one this version of Tayori needs."""


@dataclass
class Stores:
    metadata: MetadataStore
    blobs: BlobStore
    queue: QueueStore
    rules: RulesStore
    spam: TokenStore
    web_sessions: WebSessionStore
    member: MemberStore
    local_reads: bool = False
    """Reads are answered from a local file (SQLite): cheaper on the event loop than a
    thread hop (`tayori.core.offload`). False for a database across the network."""

    def close(self) -> None:
        # The queue store, and the blob store in PostgreSQL mode, share the metadata
        # store's engine; this disposes of it once.
        self.metadata.close()


def storage_url(url: str, data_dir: Path) -> str:
    """The effective URL: empty means SQLite in the data dir; relative SQLite paths are taken
    relative to the data dir, not the working directory, so `serve` and `migrate` agree."""
    if not url:
        return f"sqlite:///{data_dir.absolute() / 'tayori.db'}"
    try:
        parsed = make_url(url)
    except Exception as error:
        raise ConfigError(f"storage.url {url!r} is not a database URL: {error}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError(
                "storage.url must name a SQLite file (sqlite:///PATH); an in-memory "
                "database would lose all mail on restart"
            )
        path = Path(parsed.database)
        if not path.is_absolute():
            parsed = parsed.set(database=str(data_dir.absolute() / path))
        return parsed.render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        return url
    raise ConfigError(
        f"storage.url {safe_url(url)} is not supported; use sqlite:///PATH or "
        "postgresql://USER@HOST/DB"
    )


def open_stores(url: str, data_dir: Path, *, clock: Clock = utcnow) -> Stores:
    """Open the stores for serving. Never changes the schema: that is `tayori migrate`'s job,
    so that an upgrade is a deliberate step and several nodes do not race to migrate."""
    effective = storage_url(url, data_dir)
    _require_sqlite_file(effective)
    engine = create_store_engine(effective)
    try:
        _require_head(engine, effective)
    except BaseException:
        dispose_engine(engine)
        raise
    metadata = SqlMetadataStore(engine, clock=clock)
    # One engine for both: enqueue appends local copies and queues remote ones in one
    # transaction, and the queue's blob refs count when a mailbox expunge frees blobs.
    queue = SqlQueueStore(engine, clock=clock)
    blobs: BlobStore
    if engine.dialect.name == "sqlite":
        blob_dir = data_dir / "messages"
        blob_dir.mkdir(parents=True, exist_ok=True)
        blobs = FileBlobStore(blob_dir)
    else:
        blobs = SqlBlobStore(engine)
    rules = SqlRulesStore(engine, clock=clock)
    spam = SqlTokenStore(engine, clock=clock)
    return Stores(
        metadata=metadata,
        blobs=blobs,
        queue=queue,
        rules=rules,
        spam=spam,
        web_sessions=SqlWebSessionStore(engine),
        member=SqlMemberStore(engine, clock=clock),
        local_reads=engine.dialect.name == "sqlite",
    )


def migrate(url: str, data_dir: Path) -> None:
    """Upgrade the schema to the newest revision, creating the SQLite file if needed.

    The whole upgrade is one transaction (both databases have transactional DDL), so a
    failed migration leaves the previous schema intact.
    """
    effective = storage_url(url, data_dir)
    database = make_url(effective).database
    if engine_url(effective).get_backend_name() == "sqlite" and database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_store_engine(effective)
    try:
        with write_transaction(engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATE_LOCK}
                )
            command.upgrade(_alembic_config(connection), "head")
    finally:
        dispose_engine(engine)


def head_revision() -> str:
    """The schema revision this version of Tayori needs."""
    heads = ScriptDirectory.from_config(_alembic_config(None)).get_heads()
    return ",".join(sorted(heads))


def _alembic_config(connection: Connection | None) -> Config:
    config = Config()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def _require_sqlite_file(url: str) -> None:
    parsed = engine_url(url)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and not Path(database).is_file():
        raise SchemaNotReadyError(
            f"there is no database at {database}; run `tayori migrate` to create it"
        )


def _require_head(engine: Engine, url: str) -> None:
    with read_connection(engine) as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    found = ",".join(sorted(current))
    wanted = head_revision()
    if found != wanted:
        state = f"at schema revision {found}" if found else "empty (no Tayori schema)"
        raise SchemaNotReadyError(
            f"the database {safe_url(url)} is {state}, this version of Tayori needs "
            f"revision {wanted}; run `tayori migrate`"
        )
