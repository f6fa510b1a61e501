"""SELECTs built once that run on SQLite through the driver itself.

Per message the MX reads a few rows (the recipient and its account at RCPT, the account's
usage before writing the copies). Through SQLAlchemy such a read cost 120-150 us of Python
on a slow host (execution context, cache key, result object), through the driver 45-75 us
with the connection handling and the record built; with several MX sessions sharing one
event loop, that difference is latency for all of them.

A `PreparedSelect` is compiled by SQLAlchemy for the connection's dialect (so the SQL is the
same text SQLAlchemy would run), and its values go through the column types' own bind and
result processing (timestamps come back as aware UTC datetimes either way). On any other
dialect it simply executes through SQLAlchemy. The conformance suite runs both.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Dialect, Select

from tayori.storage.engine import sqlite_driver_connection

__all__ = ["PreparedSelect"]

_Processor = Callable[[Any], Any] | None


class _Compiled:
    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name} does not take positional parameters")
        self.sql = str(compiled)
        self.bind_names = tuple(compiled.positiontup)
        self.bind_processors: tuple[_Processor, ...] = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self.bind_names
        )
        columns = list(statement.selected_columns)
        self.row_type: Any = namedtuple("Row", [column.key for column in columns])  # type: ignore[misc]
        processors = (
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        )
        # Only the columns whose type processes values (timestamps, on SQLite).
        self.processed = tuple(
            (index, process) for index, process in enumerate(processors) if process is not None
        )


class PreparedSelect:
    """One SELECT with named bind parameters; rows have the selected columns' keys as
    attributes, like SQLAlchemy's `Row`."""

    def __init__(self, statement: Select[Any]) -> None:
        self._statement = statement
        # By dialect class and parameter style (what the SQL and the processors depend
        # on), not by dialect object: every engine has its own, and tests make many.
        self._compiled: dict[tuple[type[Dialect], str], _Compiled] = {}
        self._lock = threading.Lock()

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        raw = sqlite_driver_connection(conn)
        if raw is None:
            return list(conn.execute(self._statement, dict(params)))
        compiled = self._for(conn.dialect)
        values = [
            params[name] if process is None else process(params[name])
            for name, process in zip(compiled.bind_names, compiled.bind_processors, strict=True)
        ]
        make = compiled.row_type._make
        rows = raw.execute(compiled.sql, values).fetchall()
        if not compiled.processed:
            return [make(row) for row in rows]
        made = []
        for row in rows:
            fields = list(row)
            for index, process in compiled.processed:
                if fields[index] is not None:
                    fields[index] = process(fields[index])
            made.append(make(fields))
        return made

    def one_or_none(self, conn: Connection, params: Mapping[str, Any]) -> Any | None:
        rows = self.all(conn, params)
        if len(rows) > 1:
            raise ValueError(f"more than one row for {self._statement}")
        return rows[0] if rows else None

    def _for(self, dialect: Dialect) -> _Compiled:
        key = (type(dialect), dialect.paramstyle)
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.setdefault(key, _Compiled(self._statement, dialect))
        return compiled
