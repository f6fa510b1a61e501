"""Engines for the two supported databases, and the transaction shapes the stores use.

SQLite: the driver's own transaction handling is switched off so that we emit BEGIN
ourselves: a deferred BEGIN for reads and BEGIN IMMEDIATE for writes. A deferred transaction
that later writes must upgrade its lock and fails at once with "database is locked" when
another writer got there first; IMMEDIATE takes the write lock up front and waits
(busy_timeout) instead, so threads writing at the same time queue up.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from tayori.core.errors import ConflictError, StoreUnavailableError

_WRITE_OPTION = "tayori_write"
_PG_READ_ONLY = "25006"  # read_only_sql_transaction; psycopg files it under InternalError
DEFAULT_BUSY_TIMEOUT = 15.0
"""Seconds a SQLite writer waits for the write lock before giving up as unavailable."""


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL for a Tayori storage URL: bare postgresql means psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_store_engine(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Engine:
    """An engine for `sqlite:///PATH` or `postgresql://…` set up for Tayori's durability needs."""
    parsed = engine_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout)
    if parsed.get_backend_name() == "postgresql":
        # A server that does not answer must not hang an SMTP session; the URL may override.
        timeout = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
        return create_engine(
            parsed,
            pool_pre_ping=True,  # survive a database restart without failing the next request
            connect_args=timeout,
        )
    raise ValueError(f"unsupported storage URL {safe_url(url)}; use sqlite:/// or postgresql://")


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_timeout})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see module doc
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns, so a 250 reply means fsynced.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_WRITE_OPTION, False):
            _begin_immediate(connection, busy_timeout)
        else:
            _begin_deferred(connection)

    return engine


_LOCK_POLL = (0.0002, 0.002)
"""Seconds between tries for the write lock: from, up to (doubling)."""


def _begin_deferred(connection: Connection) -> None:
    """BEGIN for a read, straight on the driver's connection: through SQLAlchemy's
    statement machinery it cost as much as the read itself (every RCPT and every message
    opens a read or two). A deferred BEGIN takes no lock and so cannot wait; should it fail
    anyway, it is run again through SQLAlchemy so the error reaches translate_errors."""
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    try:
        dbapi_connection.execute("BEGIN")
    except sqlite3.Error:
        connection.exec_driver_sql("BEGIN")


def _begin_immediate(connection: Connection, timeout: float) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in short steps of our own.

    SQLite's own busy handler sleeps 1, 2, 5, 10 … then 100 ms at a time: fine for threads
    of one process, which queue on Python's side anyway, but several processes writing one
    database (`[server] smtp_processes`) would each wait far longer than the lock is held
    (a group commit holds it for a few milliseconds). So the lock is tried without SQLite's
    handler (busy_timeout 0 while we wait) and retried every 0.2-2 ms until `timeout`; the
    caller turns the last "database is locked" into a temporary failure (4xx).
    """
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    deadline = time.monotonic() + timeout
    delay = _LOCK_POLL[0]
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        while time.monotonic() < deadline:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    break  # not the lock: let SQLAlchemy raise it, wrapped as usual
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _LOCK_POLL[1])
        # Once more through SQLAlchemy, so that "database is locked" (or whatever else
        # failed) reaches translate_errors like every other store error.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")


def safe_url(url: str | URL) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<unparseable URL>"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: BEGIN IMMEDIATE on SQLite, committed on exit."""
    with translate_errors(), engine.connect() as connection:
        connection.execution_options(**{_WRITE_OPTION: True})
        with connection.begin():
            yield connection


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads; its transaction is rolled back on exit."""
    with translate_errors(), engine.connect() as connection:
        yield connection


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors into the errors callers handle.

    "Cannot write now" (disk full, server down, lock wait exhausted, deadlock victim) is a
    temporary failure the SMTP layer answers with 4xx; a constraint violation that escaped
    the stores' own checks is a conflict with a concurrent change.
    """
    try:
        yield
    except exc.IntegrityError as error:
        raise ConflictError(
            f"the change conflicts with data written at the same time; try again ({_why(error)})"
        ) from error
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
        raise StoreUnavailableError(f"the mail store cannot be used now: {_why(error)}") from error
    except exc.DBAPIError as error:
        if error.connection_invalidated:
            raise StoreUnavailableError(
                f"the mail store connection was lost: {_why(error)}"
            ) from error
        if getattr(error.orig, "sqlstate", None) == _PG_READ_ONLY:
            # Connected to a standby, e.g. during a failover: writes work again shortly.
            raise StoreUnavailableError(
                f"the mail store is read-only now: {_why(error)}"
            ) from error
        raise
    except exc.StatementError as error:
        # A value refused while binding (e.g. a naive timestamp): the caller's mistake, so
        # raise it as it was raised, not wrapped in SQL.
        if isinstance(error.orig, ValueError | TypeError):
            raise error.orig from None
        raise


def _why(error: exc.SQLAlchemyError) -> str:
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
