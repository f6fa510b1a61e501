"""Member preferences (display name, signature, language, time zone, always-show-images
senders), the TOTP second factor, app passwords and recent correspondents.

Written out in full, like 0001, so that later changes to `schema.py` cannot rewrite it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def _stamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"],
        ["accounts.id"],
        name=f"fk_{table}_account_id_accounts",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "member_settings",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("totp_enabled", sa.Boolean(), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_member_settings"),
        _account_fk("member_settings"),
    )
    op.create_table(
        "member_image_senders",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "address", name="pk_member_image_senders"),
        _account_fk("member_image_senders"),
    )
    op.create_table(
        "app_passwords",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created", _stamp(), nullable=False),
        sa.Column("last_used", _stamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_app_passwords"),
        _account_fk("app_passwords"),
        sa.UniqueConstraint("account_id", "name", name="uq_app_passwords_account_id_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "member_correspondents",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("last_used", _stamp(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "address", name="pk_member_correspondents"),
        _account_fk("member_correspondents"),
    )


def downgrade() -> None:
    for table in (
        "member_correspondents",
        "app_passwords",
        "member_image_senders",
        "member_settings",
    ):
        op.drop_table(table)
