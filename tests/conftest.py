"""Fixtures shared by every test layer.

PostgreSQL: tests marked `postgres` get a fresh database created for the test session on the
server at TAYORI_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test). Without a
server they skip with a clear message, except under CI=true, where a missing server fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("TAYORI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _pg_unavailable_reason() -> str | None:
    try:
        import psycopg
    except ImportError as error:
        return f"psycopg is not installed: {error}"
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as error:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {error}"


@contextlib.contextmanager
def temporary_pg_database(prefix: str) -> Iterator[str]:
    """A new empty database on the test server (libpq URL), dropped afterwards; skips (or,
    under CI=true, fails) when the server is not reachable."""
    reason = _pg_unavailable_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {reason}")
        pytest.skip(reason)
    import psycopg

    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """SQLAlchemy URL of a database created for this test session, dropped afterwards."""
    with temporary_pg_database("tayori_test") as url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """../shared/corpus; skips clearly when absent (outside CI it may be missing)."""
    if not CORPUS.is_dir():
        if IN_CI:
            pytest.fail(f"CI=true requires the shared corpus at {CORPUS}")
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS
