"""`PreparedSelect` gives what SQLAlchemy gives, on the driver (SQLite) and through
SQLAlchemy (PostgreSQL): same rows, same attribute names, the types' own processing of
bound and returned values (aware UTC timestamps), None kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, insert, select

from tayori.storage.engine import create_store_engine, read_connection, write_transaction
from tayori.storage.prepared import PreparedSelect
from tayori.storage.schema import outcomes

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _outcome_row(recipient: str, when: datetime, account_id: int | None) -> dict[str, object]:
    return {
        "time": when,
        "direction": "in",
        "account_id": account_id,
        "sender": "s@remote.test",
        "recipient": recipient,
        "message_id": "<m@x>",
        "subject": "件名",
        "size": 10,
        "remote_ip": "192.0.2.1",
        "remote_host": "",
        "outcome": "delivered",
        "reason": "delivered",
        "reply": "250",
        "detail": "",
    }


def test_prepared_select_reads_like_sqlalchemy(backend_url: str) -> None:
    engine = create_store_engine(backend_url)
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                insert(outcomes),
                [
                    _outcome_row("a@example.test", T0, 7),
                    _outcome_row("b@example.test", T0 + timedelta(seconds=1, microseconds=5), None),
                    _outcome_row("c@example.test", T0 + timedelta(minutes=5), 7),
                ],
            )
        statement = (
            select(outcomes.c.recipient, outcomes.c.time, outcomes.c.account_id, outcomes.c.subject)
            .where(outcomes.c.time >= bindparam("since"), outcomes.c.time < bindparam("until"))
            .order_by(outcomes.c.time)
        )
        prepared = PreparedSelect(statement)
        # A bound timestamp in another zone is converted like SQLAlchemy converts it.
        since = T0.astimezone(timezone(timedelta(hours=9)))
        params = {"since": since, "until": T0 + timedelta(minutes=1)}
        with read_connection(engine) as conn:
            expected = [tuple(row) for row in conn.execute(statement, params)]
            rows = prepared.all(conn, params)
            missing = prepared.one_or_none(conn, {"since": T0, "until": T0})
            one = prepared.one_or_none(conn, {"since": T0, "until": T0 + timedelta(seconds=1)})
        assert [tuple(row) for row in rows] == expected
        assert [row.recipient for row in rows] == ["a@example.test", "b@example.test"]
        assert rows[1].account_id is None
        assert rows[1].time == T0 + timedelta(seconds=1, microseconds=5)
        assert all(row.time.utcoffset() == timedelta(0) for row in rows)
        assert rows[0].subject == "件名"
        assert missing is None
        assert one is not None and one.recipient == "a@example.test"
        with read_connection(engine) as conn, pytest.raises(ValueError, match="more than one"):
            prepared.one_or_none(conn, params)
    finally:
        engine.dispose()
