"""Alembic migrations, run from code (`tayori.storage.factory.migrate`); no alembic.ini."""
