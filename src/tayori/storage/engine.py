"""Engines for the two supported databases, and the transaction shapes the stores use.

SQLite: the driver's own transaction handling is switched off so that we emit BEGIN
ourselves: a deferred BEGIN for reads and BEGIN IMMEDIATE for writes. A deferred transaction
that later writes must upgrade its lock and fails at once with "database is locked" when
another writer got there first; IMMEDIATE takes the write lock up front and waits
(busy_timeout) instead, so threads writing at the same time queue up.

The BEGIN comes from our own SQLite dialect (`do_begin`), not from a "begin" event listener
as SQLAlchemy's pysqlite notes suggest: any connection event listener makes SQLAlchemy
dispatch events around every statement, which cost ~15 us per read statement (a third of
SQLAlchemy's own time for it) on every RCPT and message.
"""

from __future__ import annotations

import random
import sqlite3
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool

from tayori.core.errors import ConflictError, StoreUnavailableError

_WRITE_FLAG = "tayori_write"
"""Set in the pool connection's `info` just before a write transaction begins; `do_begin`
takes it off again."""
_SQLITE_DRIVER = "sqlite+tayori"
_PG_READ_ONLY = "25006"  # read_only_sql_transaction; psycopg files it under InternalError
DEFAULT_BUSY_TIMEOUT = 15.0
"""Seconds a SQLite writer waits for the write lock before giving up as unavailable."""
IDLE_CONNECTIONS_KEPT = 4
"""SQLite: connections kept open between transactions, per engine (see `_idle`)."""

_idle: weakref.WeakKeyDictionary[Engine, list[Connection]] = weakref.WeakKeyDictionary()
"""Per SQLite file engine: `Connection`s between two transactions, ready for the next.

Taking a connection from SQLAlchemy's pool and giving it back (a `Connection` built, the
pool's checkout and checkin, the reset) cost ~40 us of Python per transaction; the MX opens
four or five per message (recipient, filters, spam counts, quota, the commit), about 8 % of
its Python time. Kept here, a connection only needs the ROLLBACK that ends its read
transaction (so that no WAL snapshot is held) before the next caller takes it. They stay
checked out of the pool, so only a few are kept, well under the pool's size."""


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


class TayoriSQLiteDialect(SQLiteDialect_pysqlite):
    """pysqlite with our BEGIN: deferred for reads, IMMEDIATE (waiting for the write lock,
    see `_begin_immediate`) when `write_transaction` asked for it."""

    supports_statement_cache = True

    def __init__(self, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.busy_timeout = busy_timeout

    def do_begin(self, dbapi_connection: PoolProxiedConnection) -> None:
        raw = dbapi_connection.dbapi_connection
        assert raw is not None
        if dbapi_connection.info.pop(_WRITE_FLAG, False):
            _begin_immediate(raw, self.busy_timeout)
        else:
            # A deferred BEGIN takes no lock, so it cannot wait; should it fail anyway,
            # SQLAlchemy wraps the error like any other and translate_errors sees it.
            raw.execute("BEGIN")


registry.register(_SQLITE_DRIVER.replace("+", "."), __name__, TayoriSQLiteDialect.__name__)


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    engine = create_engine(
        url.set(drivername=_SQLITE_DRIVER),
        connect_args={"timeout": busy_timeout},
        busy_timeout=busy_timeout,
    )
    if isinstance(engine.pool, QueuePool):  # a file; `:memory:` has one per thread anyway
        _idle[engine] = []

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # A pool event: it runs once per new connection and, unlike connection events,
        # does not make SQLAlchemy dispatch events around every statement.
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

    return engine


_LOCK_POLL = (0.0002, 0.002)
"""Seconds between tries for the write lock: from, up to (doubling)."""


def _begin_immediate(dbapi_connection: DBAPIConnection, timeout: float) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in short steps of our own.

    SQLite's own busy handler sleeps 1, 2, 5, 10 … then 100 ms at a time: fine for threads
    of one process, which queue on Python's side anyway, but several processes writing one
    database (`[server] smtp_processes`) would each wait far longer than the lock is held
    (a group commit holds it for a few milliseconds). So the lock is tried without SQLite's
    handler (busy_timeout 0 while we wait) and retried every 0.2-2 ms until `timeout`; the
    last "database is locked" (or whatever else failed) is raised for SQLAlchemy to wrap,
    and translate_errors turns it into a temporary failure (4xx).
    """
    deadline = time.monotonic() + timeout
    delay = _LOCK_POLL[0]
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise  # not the lock
                if time.monotonic() >= deadline:
                    raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _LOCK_POLL[1])
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
    idle = _idle.get(engine)
    if idle is None:
        with translate_errors(), engine.connect() as connection:
            if isinstance(connection.dialect, TayoriSQLiteDialect):
                connection.connection.info[_WRITE_FLAG] = True  # for do_begin, just below
            with connection.begin():
                yield connection
        return
    with translate_errors():
        connection = _take(engine, idle)
        try:
            connection.connection.info[_WRITE_FLAG] = True  # for do_begin, just below
            with connection.begin():
                yield connection
        except BaseException:
            connection.close()
            raise
        _keep(connection, idle)


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads; its transaction is rolled back on exit."""
    idle = _idle.get(engine)
    if idle is None:
        with translate_errors(), engine.connect() as connection:
            yield connection
        return
    with translate_errors():
        connection = _take(engine, idle)
        try:
            yield connection
        except BaseException:
            connection.close()
            raise
        _keep(connection, idle)


def _take(engine: Engine, idle: list[Connection]) -> Connection:
    try:
        return idle.pop()  # atomic under the GIL: no two threads get the same one
    except IndexError:
        return engine.connect()


def _keep(connection: Connection, idle: list[Connection]) -> None:
    """Ends the connection's transaction (a reader's snapshot) and keeps it for the next
    caller, or gives it back to the pool when enough are kept."""
    try:
        connection.rollback()
    except BaseException:
        connection.close()
        raise
    if connection.invalidated or len(idle) >= IDLE_CONNECTIONS_KEPT:
        connection.close()
    else:
        idle.append(connection)


def sqlite_driver_connection(conn: Connection) -> sqlite3.Connection | None:
    """The driver's own connection under `conn` when it is SQLite, else None.

    For the statements that run for every message or every group commit (the
    `PreparedSelect` reads, spam token counts, the commit's locking reads, inserts and
    UID/usage updates): through SQLAlchemy a read costs ~30 us of Python (execution
    context, result, and the autobegin's BEGIN), through the driver ~3 us. Such a statement
    runs in the transaction `conn` has open, or on its own (autocommit) when there is none;
    errors are the driver's, which `translate_errors` also turns into
    `StoreUnavailableError`."""
    if conn.dialect.name != "sqlite":
        return None
    raw = conn.connection.dbapi_connection
    return raw if isinstance(raw, sqlite3.Connection) else None


def dispose_engine(engine: Engine) -> None:
    """Close every connection of `engine`, the kept ones included (`Engine.dispose` alone
    leaves connections that are checked out of its pool open)."""
    idle = _idle.get(engine, [])
    while idle:
        try:
            idle.pop().close()
        except IndexError:
            break
    engine.dispose()


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
    except sqlite3.OperationalError as error:  # a statement straight through the driver
        raise StoreUnavailableError(f"the mail store cannot be used now: {error}") from error
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
