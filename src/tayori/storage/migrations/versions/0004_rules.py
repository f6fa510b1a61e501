"""Reject lists (受信拒否設定), safe senders, members' spam settings, forwarding targets.

Written out in full, like 0001, so that later changes to `schema.py` cannot rewrite it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def _stamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "filter_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("domain_id", sa.Integer(), nullable=True),
        sa.Column("list", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("pattern", sa.String(512), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_filter_rules"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_filter_rules_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name="fk_filter_rules_domain_id_domains",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "owner", "list", "field", "pattern", name="uq_filter_rules_owner_list_field_pattern"
        ),
        sa.CheckConstraint(
            "account_id IS NULL OR domain_id IS NULL", name="ck_filter_rules_one_owner"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_filter_rules_account_id", "filter_rules", ["account_id"])
    op.create_index("ix_filter_rules_domain_id", "filter_rules", ["domain_id"])
    op.create_table(
        "filter_settings",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("spam_enabled", sa.Boolean(), nullable=False),
        sa.Column("spam_sensitivity", sa.String(16), nullable=False),
        sa.Column("forward_keep_copy", sa.Boolean(), nullable=False),
        sa.Column("forward_skip_spam", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_filter_settings"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_filter_settings_account_id_accounts",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "forward_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.Column("permanent_failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_forward_targets"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_forward_targets_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("account_id", "address", name="uq_forward_targets_account_id_address"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in ("forward_targets", "filter_settings", "filter_rules"):
        op.drop_table(table)
