"""Migration 0005 on a database with mail in it: \\Seen becomes `seen`, every old message
waits for `tayori mailbox reindex`, which makes it searchable; and downgrading works."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from tayori.delivery.reindex import reindex
from tayori.storage import factory
from tayori.storage.engine import create_store_engine, write_transaction
from tayori.storage.factory import migrate, open_stores
from tayori.storage.records import MessageQuery, SpecialUse
from tests.conftest import temporary_pg_database

RAW = (
    "From: =?UTF-8?B?5L2Q6Jek?= <sato@remote.test>\r\nSubject: 稟議のお願い\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n来週の会議室を予約しました。\r\n"
).encode()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tayori.db'}"
        return
    with temporary_pg_database("tayori_mbx") as pg:
        yield pg.replace("postgresql://", "postgresql+psycopg://", 1)


def upgrade_to(url: str, revision: str) -> None:
    engine = create_store_engine(url)
    try:
        with write_transaction(engine) as conn:
            command.upgrade(factory._alembic_config(conn), revision)
    finally:
        engine.dispose()


def test_upgrade_with_old_mail_then_reindex(url: str, tmp_path: Path) -> None:
    upgrade_to(url, "0004")
    # Blobs: files for SQLite, the blobs table for PostgreSQL; both exist at 0004.
    engine = create_store_engine(url)
    now = datetime(2025, 1, 1, tzinfo=UTC)
    if url.startswith("sqlite"):
        from tayori.storage.blobs import FileBlobStore

        ref = FileBlobStore(tmp_path / "messages").put([RAW])
    else:
        from tayori.storage.blobs import SqlBlobStore

        ref = SqlBlobStore(engine).put([RAW])
    with write_transaction(engine) as conn:
        conn.execute(
            text("INSERT INTO domains (name, created) VALUES ('example.test', :now)"), {"now": now}
        )
        conn.execute(
            text(
                "INSERT INTO accounts (address, domain_id, password_hash, quota_bytes,"
                " used_bytes, status, created) SELECT 'a@example.test', id, 'h', 0, :size,"
                " 'active', :now FROM domains"
            ),
            {"size": 2 * len(RAW), "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO addresses (address, domain_id, account_id)"
                " SELECT address, domain_id, id FROM accounts"
            )
        )
        conn.execute(
            text(
                "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, uidnext,"
                " highestmodseq, created) SELECT id, 'INBOX', 'INBOX', 1, 3, 3, :now"
                " FROM accounts"
            ),
            {"now": now},
        )
        for uid, flags in ((1, "\\Answered \\Seen"), (2, "$Seeing")):
            conn.execute(
                text(
                    "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size,"
                    " blob_ref, hdr_from, hdr_to, hdr_subject, hdr_message_id, hdr_date)"
                    " SELECT id, :uid, :uid, :flags, :now, :size, :ref, 'Sato', '',"
                    " 'Re: 稟議のお願い', '', '' FROM mailboxes"
                ),
                {"uid": uid, "flags": flags, "now": now, "size": len(RAW), "ref": ref},
            )
    engine.dispose()
    migrate(url, tmp_path)
    stores = open_stores(url, tmp_path)
    try:
        meta = stores.metadata
        account = meta.get_account("a@example.test")
        assert account is not None
        inbox = meta.get_mailbox(account.id, SpecialUse.INBOX)
        status = meta.mailbox_statuses(account.id)[0]
        assert (status.total, status.unread) == (2, 1)  # "$Seeing" is not \Seen
        assert meta.query_messages(account.id, inbox.id, MessageQuery(text="稟議")).total == 0
        assert reindex(meta, stores.blobs) == 2
        found = meta.query_messages(account.id, inbox.id, MessageQuery(text="会議"))
        assert found.total == 2
        assert meta.query_messages(account.id, None, MessageQuery(sender="佐藤")).total == 2
        created = meta.create_mailbox(account.id, "Archive")
        assert created.uidvalidity > inbox.uidvalidity
    finally:
        stores.close()
    upgrade_engine = create_store_engine(url)
    try:
        with write_transaction(upgrade_engine) as conn:
            command.downgrade(factory._alembic_config(conn), "0004")
        with upgrade_engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 2
    finally:
        upgrade_engine.dispose()
