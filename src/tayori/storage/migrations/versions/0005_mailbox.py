"""Mailbox operations for webmail and IMAP: list/sort columns on messages, the search index.

`accounts` gains `last_uidvalidity` (so a folder created again gets a greater UIDVALIDITY).
`messages` gains what lists sort and filter by without opening blobs: `seen` (unread counts
and the unread filter, kept equal to the \\Seen flag), `has_attachment`, and normalised
`sort_from` / `sort_subject`. `message_search` holds each message's search terms (CJK text
as bigrams, see `tayori.storage.search_text`); `indexed_version` 0 means "not indexed yet",
which is what every message stored before this migration has until `tayori mailbox reindex`
fills it in (the migration cannot read message bytes: they may be files).

The full-text index over the terms is the only dialect-specific part of the schema: an
external-content FTS5 table kept in step by triggers on SQLite, a generated column
`terms_tsv = to_tsvector('simple', terms)` with a GIN index on PostgreSQL. Their names are in
`schema.DIALECT_SEARCH_OBJECTS` so that schema comparison leaves them alone.

Written out in full, like 0001, so that later changes to `schema.py` cannot rewrite it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE message_fts USING fts5("
    "terms, content='message_search', content_rowid='message_id', tokenize='ascii')",
    "CREATE TRIGGER message_search_ai AFTER INSERT ON message_search BEGIN "
    "INSERT INTO message_fts(rowid, terms) VALUES (new.message_id, new.terms); END",
    "CREATE TRIGGER message_search_ad AFTER DELETE ON message_search BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, terms) "
    "VALUES ('delete', old.message_id, old.terms); END",
    "CREATE TRIGGER message_search_au AFTER UPDATE ON message_search BEGIN "
    "INSERT INTO message_fts(message_fts, rowid, terms) "
    "VALUES ('delete', old.message_id, old.terms); "
    "INSERT INTO message_fts(rowid, terms) VALUES (new.message_id, new.terms); END",
)
# The tsvector is stored (a generated column), not only indexed: a GIN match is rechecked
# against the row, and recomputing to_tsvector for thousands of hits took seconds.
_PG_SEARCH = (
    "ALTER TABLE message_search ADD COLUMN terms_tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, terms)) STORED",
    "CREATE INDEX ix_message_search_tsv ON message_search USING gin (terms_tsv)",
)


def upgrade() -> None:
    # Plain ADD COLUMN (no batch): SQLite supports it, and a rebuilt table would lose
    # AUTOINCREMENT, which keeps message ids from being reused.
    op.add_column(
        "messages", sa.Column("seen", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "messages",
        sa.Column("has_attachment", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "messages", sa.Column("sort_from", sa.String(512), nullable=False, server_default="")
    )
    op.add_column(
        "messages", sa.Column("sort_subject", sa.String(512), nullable=False, server_default="")
    )
    op.add_column(
        "messages",
        sa.Column("indexed_version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "accounts",
        sa.Column("last_uidvalidity", sa.BigInteger(), nullable=False, server_default="0"),
    )
    # An explicit ESCAPE: PostgreSQL's LIKE would otherwise read the backslash as one.
    op.execute(
        sa.text(
            "UPDATE messages SET seen = :yes WHERE (' ' || flags || ' ') LIKE :pattern ESCAPE '!'"
        ).bindparams(yes=True, pattern="% \\Seen %")
    )
    op.create_index(
        "ix_messages_mailbox_id_internal_date", "messages", ["mailbox_id", "internal_date", "id"]
    )
    op.create_index(
        "ix_messages_mailbox_id_sort_from", "messages", ["mailbox_id", "sort_from", "id"]
    )
    op.create_index(
        "ix_messages_mailbox_id_sort_subject", "messages", ["mailbox_id", "sort_subject", "id"]
    )
    op.create_index("ix_messages_mailbox_id_size", "messages", ["mailbox_id", "size", "id"])
    op.create_index("ix_messages_mailbox_id_seen_size", "messages", ["mailbox_id", "seen", "size"])
    op.create_index("ix_messages_indexed_version", "messages", ["indexed_version"])
    op.create_table(
        "message_search",
        sa.Column("message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_message_search"),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_message_search_message_id_messages",
            ondelete="CASCADE",
        ),
    )
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_SEARCH if dialect == "sqlite" else _PG_SEARCH:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("message_search_ai", "message_search_ad", "message_search_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS message_fts")
    op.drop_table("message_search")
    for name in (
        "ix_messages_indexed_version",
        "ix_messages_mailbox_id_seen_size",
        "ix_messages_mailbox_id_size",
        "ix_messages_mailbox_id_sort_subject",
        "ix_messages_mailbox_id_sort_from",
        "ix_messages_mailbox_id_internal_date",
    ):
        op.drop_index(name, table_name="messages")
    # Plain DROP COLUMN (SQLite >= 3.35), not a batch rebuild: rebuilding `accounts` drops
    # the old table, and with foreign keys on that deletes every mailbox and message.
    for column in ("indexed_version", "sort_subject", "sort_from", "has_attachment", "seen"):
        op.drop_column("messages", column)
    op.drop_column("accounts", "last_uidvalidity")
