"""Spam filter: global and per-account token counts, and the ledgers of learnt messages.

Written out in full, like 0001, so that later changes to `schema.py` cannot rewrite it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "spam_tokens",
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("spam", sa.Integer(), nullable=False),
        sa.Column("ham", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("token", name="pk_spam_tokens"),
    )
    op.create_table(
        "spam_account_tokens",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("spam", sa.Integer(), nullable=False),
        sa.Column("ham", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "token", name="pk_spam_account_tokens"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_spam_account_tokens_account_id_accounts",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "spam_trained",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("is_spam", sa.Boolean(), nullable=False),
        sa.Column("trained", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_spam_trained"),
    )
    op.create_table(
        "spam_account_trained",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("is_spam", sa.Boolean(), nullable=False),
        sa.Column("trained", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "digest", name="pk_spam_account_trained"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_spam_account_trained_account_id_accounts",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    for table in ("spam_account_trained", "spam_trained", "spam_account_tokens", "spam_tokens"):
        op.drop_table(table)
