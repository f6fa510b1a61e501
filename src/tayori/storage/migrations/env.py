"""Alembic environment: the caller hands over an open connection inside its transaction.

`tayori.storage.factory` builds the Config in code and puts the connection in
`config.attributes["connection"]`; running migrations inside the caller's write transaction
makes a whole upgrade atomic and serialises concurrent `tayori migrate` runs.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from tayori.storage.schema import include_schema_name, metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_schema_name,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("Tayori migrations run online only: use `tayori migrate`")
connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through tayori.storage.factory.migrate")
_run(connection)
