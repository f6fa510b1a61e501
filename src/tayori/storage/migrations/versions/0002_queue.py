"""Sending: the outbound queue (messages with leases, per-recipient state), submission
counts for the sending limits, and DKIM keys.

Written out in full, like 0001, so that later changes to `schema.py` cannot rewrite it.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _stamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _big_id() -> sa.BigInteger:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "queue_messages",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("queue_id", sa.String(64), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("blob_ref", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.Column("expires", _stamp(), nullable=False),
        sa.Column("delay_warned", sa.Boolean(), nullable=False),
        sa.Column("lease_holder", sa.Text(), nullable=True),
        sa.Column("lease_until", _stamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_queue_messages"),
        sa.UniqueConstraint("queue_id", name="uq_queue_messages_queue_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_queue_messages_blob_ref", "queue_messages", ["blob_ref"])
    op.create_table(
        "queue_recipients",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("queue_message_id", _big_id(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt", _stamp(), nullable=False),
        sa.Column("last_attempt", _stamp(), nullable=True),
        sa.Column("last_reply", sa.Text(), nullable=False),
        sa.Column("remote_mta", sa.Text(), nullable=False),
        sa.Column("bounce_requested", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_queue_recipients"),
        sa.ForeignKeyConstraint(
            ["queue_message_id"],
            ["queue_messages.id"],
            name="fk_queue_recipients_queue_message_id_queue_messages",
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_queue_recipients_queue_message_id", "queue_recipients", ["queue_message_id"]
    )
    op.create_index(
        "ix_queue_recipients_state_next_attempt", "queue_recipients", ["state", "next_attempt"]
    )
    op.create_table(
        "submissions",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("time", _stamp(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_submissions"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_submissions_account_id_accounts",
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_submissions_account_id_time", "submissions", ["account_id", "time"])
    op.create_table(
        "dkim_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("selector", sa.String(253), nullable=False),
        sa.Column("private_key_pem", sa.Text(), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dkim_keys"),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name="fk_dkim_keys_domain_id_domains",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("domain_id", "selector", name="uq_dkim_keys_domain_id_selector"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in ("dkim_keys", "submissions", "queue_recipients", "queue_messages"):
        op.drop_table(table)
