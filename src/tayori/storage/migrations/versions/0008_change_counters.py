"""Change counters: a number the store raises with every change to some kind of data, so
that a process may cache that data and revalidate it with one small read (members' filters
are read for every recipient of every message, and change rarely).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    counters = op.create_table(
        "change_counters",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_change_counters"),
    )
    op.bulk_insert(counters, [{"name": "filters", "counter": 0}, {"name": "spam", "counter": 0}])


def downgrade() -> None:
    op.drop_table("change_counters")
