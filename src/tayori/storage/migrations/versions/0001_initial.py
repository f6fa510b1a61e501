"""Initial schema: domains, accounts, addresses, aliases, mailboxes, messages, outcomes,
maildrop locks and database blobs.

Written out in full rather than imported from `schema.py`, so that later changes to the
schema module cannot rewrite history; a test checks both agree.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _stamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _big_id() -> sa.BigInteger:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_domains"),
        sa.UniqueConstraint("name", name="uq_domains_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=False),
        sa.Column("used_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("address", name="uq_accounts_address"),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name="fk_accounts_domain_id_domains",
            ondelete="RESTRICT",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_accounts_domain_id", "accounts", ["domain_id"])
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aliases"),
        sa.UniqueConstraint("address", name="uq_aliases_address"),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name="fk_aliases_domain_id_domains",
            ondelete="RESTRICT",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_aliases_domain_id", "aliases", ["domain_id"])
    op.create_table(
        "addresses",
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("alias_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("address", name="pk_addresses"),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name="fk_addresses_domain_id_domains",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_addresses_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["alias_id"],
            ["aliases.id"],
            name="fk_addresses_alias_id_aliases",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "(account_id IS NULL) <> (alias_id IS NULL)", name="ck_addresses_one_owner"
        ),
    )
    op.create_index("ix_addresses_domain_id", "addresses", ["domain_id"])
    op.create_index("ix_addresses_account_id", "addresses", ["account_id"])
    op.create_index("ix_addresses_alias_id", "addresses", ["alias_id"])
    op.create_table(
        "alias_targets",
        sa.Column("alias_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("alias_id", "account_id", name="pk_alias_targets"),
        sa.ForeignKeyConstraint(
            ["alias_id"],
            ["aliases.id"],
            name="fk_alias_targets_alias_id_aliases",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_alias_targets_account_id_accounts",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_alias_targets_account_id", "alias_targets", ["account_id"])
    op.create_table(
        "mailboxes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("special_use", sa.String(16), nullable=True),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uidnext", sa.BigInteger(), nullable=False),
        sa.Column("highestmodseq", sa.BigInteger(), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mailboxes"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_mailboxes_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("account_id", "name", name="uq_mailboxes_account_id_name"),
        sa.UniqueConstraint(
            "account_id", "special_use", name="uq_mailboxes_account_id_special_use"
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "messages",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column("internal_date", _stamp(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("blob_ref", sa.String(64), nullable=False),
        sa.Column("hdr_from", sa.Text(), nullable=False),
        sa.Column("hdr_to", sa.Text(), nullable=False),
        sa.Column("hdr_subject", sa.Text(), nullable=False),
        sa.Column("hdr_message_id", sa.Text(), nullable=False),
        sa.Column("hdr_date", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name="fk_messages_mailbox_id_mailboxes",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("mailbox_id", "uid", name="uq_messages_mailbox_id_uid"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_messages_blob_ref", "messages", ["blob_ref"])
    op.create_table(
        "outcomes",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("time", _stamp(), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("sender", sa.String(512), nullable=False),
        sa.Column("recipient", sa.String(512), nullable=False),
        sa.Column("message_id", sa.String(512), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("remote_ip", sa.String(64), nullable=False),
        sa.Column("remote_host", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outcomes"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outcomes_sender", "outcomes", ["sender"])
    op.create_index("ix_outcomes_recipient", "outcomes", ["recipient"])
    op.create_index("ix_outcomes_message_id", "outcomes", ["message_id"])
    op.create_index(
        "ix_outcomes_account_time",
        "outcomes",
        ["account_id", sa.text('"time" DESC'), sa.text("id DESC")],
    )
    op.create_index("ix_outcomes_time", "outcomes", [sa.text('"time" DESC'), sa.text("id DESC")])
    op.create_table(
        "maildrop_locks",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("until", _stamp(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_maildrop_locks"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_maildrop_locks_account_id_accounts",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "blobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_blobs"),
    )
    op.create_table(
        "blob_chunks",
        sa.Column("blob_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("blob_id", "seq", name="pk_blob_chunks"),
        sa.ForeignKeyConstraint(
            ["blob_id"],
            ["blobs.id"],
            name="fk_blob_chunks_blob_id_blobs",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    for table in (
        "blob_chunks",
        "blobs",
        "maildrop_locks",
        "outcomes",
        "messages",
        "mailboxes",
        "alias_targets",
        "addresses",
        "aliases",
        "accounts",
        "domains",
    ):
        op.drop_table(table)
