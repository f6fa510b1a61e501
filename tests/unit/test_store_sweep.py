"""`tayori store sweep` and the daily sweep of `tayori serve`, on a SQLite instance (files).

The sweep itself is tested on both back ends in tests/conformance/test_blob_sweep.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tayori.config.loader import load_settings
from tayori.storage.blobs import FileBlobStore
from tayori.storage.factory import Stores
from tayori.storage.sweep import run_periodically
from tests.unit import test_cli
from tests.unit.test_cli import DOMAIN, Tayori, add_user, deliver

_no_config_from_env = test_cli._no_config_from_env
run = test_cli.run
template = test_cli.template
config = test_cli.config
tayori = test_cli.tayori
stores = test_cli.stores

ALICE = f"alice@{DOMAIN}"
DAYS = timedelta(days=3)
HOUR = timedelta(hours=1)


def blob_file(config: Path, ref: str) -> Path:
    return config.parent / "messages" / ref[:2] / ref[2:4] / ref


def aged(path: Path, ago: timedelta) -> Path:
    when = (datetime.now(UTC) - ago).timestamp()
    os.utime(path, (when, when))
    return path


def crashed_store(tayori: Tayori, stores: Stores, config: Path) -> tuple[Path, Path, Path, Path]:
    """A message in alice's INBOX, bytes whose delivery crashed before its commit, the
    temporary file of a `put` cut short, and one of a `put` still running; all but the last
    are old."""
    add_user(tayori, ALICE)
    kept = aged(blob_file(config, deliver(stores, ALICE, b"Subject: hi\r\n\r\nkept\r\n")), DAYS)
    orphan = aged(blob_file(config, stores.blobs.put([b"x" * 1500])), DAYS)
    temp = orphan.parent / ".tmp-k2j3h4"
    temp.write_bytes(b"half a message")
    running = orphan.parent / ".tmp-running"
    running.write_bytes(b"being written")
    return kept, orphan, aged(temp, 2 * HOUR), running


def test_store_sweep_dry_run_then_for_real(tayori: Tayori, stores: Stores, config: Path) -> None:
    kept, orphan, temp, running = crashed_store(tayori, stores, config)

    dry = tayori("store", "sweep", "--dry-run")
    assert (dry.status, dry.err) == (0, "")
    assert dry.out.splitlines() == [
        "message blobs older than 1 day: 2 checked, 1 referenced by nothing: would be deleted "
        "(1.5 KB)",
        "temporary files older than 1 hour: 1 would be deleted (14 B)",
    ]
    assert all(path.exists() for path in (kept, orphan, temp, running))

    done = tayori("store", "sweep")
    assert done.status == 0
    assert done.out.splitlines() == [
        "message blobs older than 1 day: 2 checked, 1 referenced by nothing: deleted (1.5 KB)",
        "temporary files older than 1 hour: 1 deleted (14 B)",
    ]
    assert kept.exists() and running.exists()
    assert not orphan.exists() and not temp.exists()
    assert "0 referenced by nothing" in tayori("store", "sweep").out


def test_store_sweep_is_in_the_help(tayori: Tayori) -> None:
    assert "delete nothing" in tayori("store", "sweep", "--help").out


def test_serve_sweeps_after_the_first_delay_and_stops_when_cancelled(
    tayori: Tayori, stores: Stores, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept, orphan, temp, running = crashed_store(tayori, stores, config)
    url = load_settings(config).storage.url

    reported = "deleted 1 unreferenced blobs (1500 bytes) and 1 temporary files (14 bytes)"

    async def serve_briefly() -> None:
        task = asyncio.create_task(run_periodically(url, stores.blobs, delay=0.05, interval=60))
        # Wait for the report, not for the orphan to go: the sweep deletes before it logs,
        # and cancelling in between (a loaded machine) would lose the log line.
        for _ in range(500):
            await asyncio.sleep(0.02)
            if reported in caplog.text:
                break
        assert not task.done()  # sleeping until the next day's round
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.INFO, logger="tayori.storage.sweep"):
        asyncio.run(serve_briefly())
    assert not orphan.exists() and not temp.exists()
    assert kept.exists() and running.exists()
    assert reported in caplog.text


def test_a_failed_sweep_is_logged_and_tried_again(
    config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = load_settings(config).storage.url
    not_a_directory = tmp_path / "messages-gone"
    not_a_directory.write_bytes(b"a file where the blob directory should be")
    broken = FileBlobStore(not_a_directory)
    rounds = 0

    def clock() -> datetime:
        nonlocal rounds
        rounds += 1
        return datetime.now(UTC)

    async def two_rounds() -> None:
        task = asyncio.create_task(
            run_periodically(url, broken, clock=clock, delay=0, interval=0.01)
        )
        while rounds < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.ERROR, logger="tayori.storage.sweep"):
        asyncio.run(two_rounds())
    failures = [r for r in caplog.records if r.message == "orphan sweep failed; trying again later"]
    assert len(failures) >= 1
    assert failures[0].exc_info is not None
