"""Where blocking calls run (tayori.core.offload), and which call sites the wiring lets run
on the event loop: SQLite reads and the built-in engine's score, never rspamd's."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from tayori.app import inbound_pipeline, store_reads
from tayori.config.loader import settings_from_mapping
from tayori.core.offload import in_thread, inline
from tayori.pipeline.runner import Decision
from tayori.pipeline.spam_block import SpamBlock
from tayori.pipeline.steps import Client
from tayori.rules.model import AccountFilters, SpamSettings
from tayori.spam.engine import SpamEngine, SpamResult
from tayori.spam.rspamd import RspamdSpamEngine
from tayori.spam.store import MemoryTokenStore
from tayori.storage.factory import Stores
from tests.fakes import FakeMetadataStore


def where(value: int, *, plus: int = 0) -> tuple[int, int]:
    return threading.get_ident(), value + plus


def fail() -> None:
    raise ValueError("from the call")


def test_inline_runs_on_the_loop_thread_and_in_thread_elsewhere() -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        assert await inline(where, 1, plus=2) == (loop_thread, 3)
        thread, value = await in_thread(where, 1, plus=2)
        assert value == 3 and thread != loop_thread
        for offload in (inline, in_thread):
            with pytest.raises(ValueError, match="from the call"):
                await offload(fail)

    asyncio.run(main())


class Rules:
    """The rules store the pipeline reads; records the thread of every read."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def filters_for(self, account_id: int) -> AccountFilters:
        self.threads.append(threading.get_ident())
        return AccountFilters()

    def get_spam_settings(self, account_id: int) -> SpamSettings:
        self.threads.append(threading.get_ident())
        return SpamSettings()


def recorded(engine: SpamEngine) -> list[int]:
    """Replace the engine's score by one that records its thread and never leaves the
    process (rspamd's would call out); the wiring still sees the engine's own class."""
    threads: list[int] = []

    def score(raw: bytes, account_id: int | None = None, **options: Any) -> SpamResult:
        threads.append(threading.get_ident())
        return SpamResult(0.0, False, ())

    engine.score = score  # type: ignore[method-assign]
    return threads


def stores(local_reads: bool, rules: Rules) -> Stores:
    nothing: Any = None
    return Stores(
        metadata=nothing,
        blobs=nothing,
        queue=nothing,
        rules=rules,  # type: ignore[arg-type]
        spam=MemoryTokenStore(),
        web_sessions=nothing,
        member=nothing,
        local_reads=local_reads,
    )


MEMBER = FakeMetadataStore().add_account("alice@example.test", "")


@pytest.mark.parametrize(
    ("local_reads", "rspamd", "reads_inline", "score_inline"),
    [
        (True, False, True, True),  # SQLite, built-in engine: no hop at all
        (True, True, True, False),  # rspamd is HTTP: in a thread whatever the store
        (False, False, False, False),  # PostgreSQL: every read is a network round trip
    ],
)
def test_the_pipeline_runs_reads_and_scoring_where_the_wiring_says(
    tmp_path: Path, local_reads: bool, rspamd: bool, reads_inline: bool, score_inline: bool
) -> None:
    rules = Rules()
    engine = (
        RspamdSpamEngine(MemoryTokenStore(), url="http://127.0.0.1:9/")
        if rspamd
        else SpamEngine(MemoryTokenStore())
    )
    scored = recorded(engine)
    settings = settings_from_mapping({"server": {"data_dir": str(tmp_path)}})
    built = stores(local_reads, rules)
    assert (store_reads(built) is inline) is local_reads
    pipeline, _ = inbound_pipeline(settings, built, resolver=None, engine=engine)  # type: ignore[arg-type]
    spam_step = pipeline.recipient_steps[-1]
    assert isinstance(spam_step, SpamBlock)

    async def main() -> int:
        await spam_step.decide(
            MEMBER, b"Subject: hello\r\n\r\nhello\r\n", Client("192.0.2.1"), Decision()
        )
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert rules.threads and scored
    assert all((thread == loop_thread) is reads_inline for thread in rules.threads)
    assert all((thread == loop_thread) is score_inline for thread in scored)
