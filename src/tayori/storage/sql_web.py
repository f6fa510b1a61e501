"""`WebSessionStore` on SQL: the webmail's server-side sessions.

Only a SHA-256 of the cookie value is stored, so a leaked database (or backup) cannot be used
to take over a session: the cookie itself never touches the disk. Rows are in the shared SQL
store so that every web node of a cluster sees the same sessions, and an admin who removes an
account removes its sessions with it (ON DELETE CASCADE).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, Row, delete, insert, or_, select, update

from tayori.storage.engine import read_connection, write_transaction
from tayori.storage.interfaces import WebSession
from tayori.storage.schema import WEB_AGENT_LEN, WEB_IP_LEN, web_sessions

_s = web_sessions.c


def _session(row: Row[tuple[object, ...]]) -> WebSession:
    m = row._mapping
    return WebSession(
        id_hash=m["id_hash"],
        account_id=m["account_id"],
        csrf_token=m["csrf_token"],
        stage=m["stage"],
        created=m["created"],
        last_seen=m["last_seen"],
        user_agent=m["user_agent"],
        ip=m["ip"],
    )


class SqlWebSessionStore:
    """See `tayori.storage.interfaces.WebSessionStore`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_session(
        self,
        id_hash: str,
        account_id: int,
        csrf_token: str,
        *,
        stage: str,
        now: datetime,
        user_agent: str,
        ip: str,
    ) -> WebSession:
        values = {
            "id_hash": id_hash,
            "account_id": account_id,
            "csrf_token": csrf_token,
            "stage": stage,
            "created": now,
            "last_seen": now,
            "user_agent": user_agent[:WEB_AGENT_LEN],
            "ip": ip[:WEB_IP_LEN],
        }
        with write_transaction(self._engine) as connection:
            connection.execute(insert(web_sessions).values(**values))
        return WebSession(**values)  # type: ignore[arg-type]

    def get_session(self, id_hash: str) -> WebSession | None:
        with read_connection(self._engine) as connection:
            row = connection.execute(select(web_sessions).where(_s.id_hash == id_hash)).first()
        return None if row is None else _session(row)

    def touch_session(self, id_hash: str, now: datetime, ip: str) -> None:
        with write_transaction(self._engine) as connection:
            connection.execute(
                update(web_sessions)
                .where(_s.id_hash == id_hash)
                .values(last_seen=now, ip=ip[:WEB_IP_LEN])
            )

    def set_stage(self, id_hash: str, stage: str) -> None:
        with write_transaction(self._engine) as connection:
            connection.execute(
                update(web_sessions).where(_s.id_hash == id_hash).values(stage=stage)
            )

    def list_sessions(self, account_id: int) -> list[WebSession]:
        with read_connection(self._engine) as connection:
            rows = connection.execute(
                select(web_sessions)
                .where(_s.account_id == account_id)
                .order_by(_s.last_seen.desc(), _s.id_hash)
            ).all()
        return [_session(row) for row in rows]

    def delete_session(self, id_hash: str, account_id: int | None = None) -> bool:
        statement = delete(web_sessions).where(_s.id_hash == id_hash)
        if account_id is not None:
            statement = statement.where(_s.account_id == account_id)
        with write_transaction(self._engine) as connection:
            return connection.execute(statement).rowcount > 0

    def delete_other_sessions(self, account_id: int, keep_id_hash: str) -> int:
        with write_transaction(self._engine) as connection:
            result = connection.execute(
                delete(web_sessions).where(_s.account_id == account_id, _s.id_hash != keep_id_hash)
            )
        return int(result.rowcount)

    def delete_expired(self, idle_before: datetime, created_before: datetime) -> int:
        with write_transaction(self._engine) as connection:
            result = connection.execute(
                delete(web_sessions).where(
                    or_(_s.last_seen < idle_before, _s.created < created_before)
                )
            )
        return int(result.rowcount)
