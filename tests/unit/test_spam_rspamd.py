"""The rspamd engine against a fake rspamd on loopback that speaks the documented HTTP API:
/checkv2 answers score, required_score, action and symbols; /learnspam and /learnham learn
(HTTP 208 when already learnt). When it is down or broken, the built-in engine answers."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tayori.spam import MemoryTokenStore, Sensitivity, SpamEngine
from tayori.spam.rspamd import RspamdClient, RspamdSpamEngine, RspamdUnavailable
from tests.ports import free_port

SPAM = [
    b"From: x@pills.example\r\nSubject: cheap pills %d\r\n\r\nbuy cheap pills viagra now\r\n" % i
    for i in range(10)
]
HAM = [
    b"From: boss@work.example\r\nSubject: agenda %d\r\n\r\nthe project meeting agenda\r\n" % i
    for i in range(10)
]


@dataclass
class FakeRspamd:
    """What the fake answers, and what it was sent."""

    answer: dict[str, Any] = field(
        default_factory=lambda: {
            "is_skipped": False,
            "score": 7.5,
            "required_score": 15.0,
            "action": "add header",
            "symbols": {
                "BAYES_SPAM": {"name": "BAYES_SPAM", "score": 5.1, "metric_score": 5.1},
                "MIME_GOOD": {"name": "MIME_GOOD", "score": -0.1, "metric_score": -0.1},
                "R_SPF_FAIL": {"name": "R_SPF_FAIL", "score": 2.5, "metric_score": 2.5},
            },
            "messages": {},
        }
    )
    status: int = 200
    body: bytes | None = None
    delay: threading.Event | None = None
    learnt: dict[str, set[bytes]] = field(
        default_factory=lambda: {"/learnspam": set(), "/learnham": set()}
    )
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def fake() -> Iterator[tuple[FakeRspamd, str]]:
    state = FakeRspamd()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.requests.append((self.path, dict(self.headers.items()), body))
            if state.delay is not None:
                state.delay.wait(5)
            if self.path == "/checkv2":
                status = state.status
                payload = state.body if state.body is not None else json.dumps(state.answer)
            elif self.path in state.learnt:
                seen = state.learnt[self.path]
                already = body in seen
                status = 208 if already else 200
                payload = b'{"error": "already learned"}' if already else b'{"success": true}'
                seen.add(body)
            else:
                status, payload = 404, b'{"error": "not found"}'
            data = payload.encode() if isinstance(payload, str) else payload
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        if state.delay is not None:
            state.delay.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port_url() -> str:
    """A loopback URL nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


def trained(engine: SpamEngine) -> SpamEngine:
    SpamEngine.learn_many(engine, [(raw, True) for raw in SPAM] + [(raw, False) for raw in HAM])
    return engine


def test_client_reads_checkv2(fake: tuple[FakeRspamd, str]) -> None:
    state, url = fake
    result = RspamdClient(url).check(SPAM[0])
    assert (result.score, result.required_score, result.action) == (7.5, 15.0, "add header")
    assert result.symbols == (("BAYES_SPAM", 5.1), ("R_SPF_FAIL", 2.5), ("MIME_GOOD", -0.1))
    path, _, body = state.requests[0]
    assert (path, body) == ("/checkv2", SPAM[0])


def test_rspamd_verdict_by_sensitivity(fake: tuple[FakeRspamd, str]) -> None:
    state, url = fake
    engine = RspamdSpamEngine(MemoryTokenStore(), url=url)
    result = engine.score(HAM[0], 7)
    assert result.is_spam
    assert result.score == pytest.approx(0.5)
    assert result.top_reasons == (
        "rspamd action=add header score=7.50",
        "rspamd:BAYES_SPAM (5.10)",
        "rspamd:R_SPF_FAIL (2.50)",
    )
    assert not engine.score(HAM[0], sensitivity=Sensitivity.LOW).is_spam
    state.answer["action"] = "greylist"
    assert not engine.score(HAM[0]).is_spam
    assert engine.score(HAM[0], sensitivity=Sensitivity.HIGH).is_spam
    state.answer.update(action="no action", score=-2.0)
    result = engine.score(HAM[0], sensitivity=Sensitivity.HIGH)
    assert (result.is_spam, result.score) == (False, 0.0)


def test_unreachable_rspamd_falls_back_to_builtin_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = trained(RspamdSpamEngine(MemoryTokenStore(), url=closed_port_url(), timeout=1.0))
    with caplog.at_level(logging.INFO, logger="tayori.spam.rspamd"):
        spam = engine.score(SPAM[3])
        ham = engine.score(HAM[3])
    assert spam.is_spam and not ham.is_spam
    assert spam.top_reasons[0].startswith("engine=builtin (rspamd unreachable: ")
    assert ham.top_reasons[0].startswith("engine=builtin (rspamd unreachable: ")
    builtin = SpamEngine(engine.store).score(SPAM[3])
    assert spam.score == builtin.score and spam.top_reasons[1:] == builtin.top_reasons
    events = [getattr(record, "event", None) for record in caplog.records]
    assert events == ["spam.rspamd_unreachable"]  # once per outage, not once per message


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, None), (200, b"<html>not json</html>"), (200, b'{"score": 1}')],
    ids=["http-500", "not-json", "missing-fields"],
)
def test_broken_answers_fall_back(
    fake: tuple[FakeRspamd, str], status: int, body: bytes | None
) -> None:
    state, url = fake
    state.status, state.body = status, body
    engine = trained(RspamdSpamEngine(MemoryTokenStore(), url=url))
    result = engine.score(SPAM[1])
    assert result.is_spam
    assert result.top_reasons[0].startswith("engine=builtin")


def test_timeout_falls_back_then_rspamd_is_retried_after_a_pause(
    fake: tuple[FakeRspamd, str], caplog: pytest.LogCaptureFixture
) -> None:
    state, url = fake
    state.delay = threading.Event()
    now = [1000.0]
    engine = trained(
        RspamdSpamEngine(
            MemoryTokenStore(), url=url, timeout=0.2, retry_after=30.0, clock=lambda: now[0]
        )
    )
    with caplog.at_level(logging.INFO, logger="tayori.spam.rspamd"):
        first = engine.score(SPAM[2])
        assert "TimeoutError" in first.top_reasons[0] or "timed out" in first.top_reasons[0]
        asked = len(state.requests)
        second = engine.score(SPAM[2])  # within retry_after: rspamd is not asked
        assert len(state.requests) == asked
        assert "left alone after a failure" in second.top_reasons[0]
        state.delay.set()
        state.delay = None
        now[0] += 31.0
        third = engine.score(SPAM[2])
    assert third.top_reasons[0] == "rspamd action=add header score=7.50"
    events = [getattr(record, "event", None) for record in caplog.records]
    assert events == ["spam.rspamd_unreachable", "spam.rspamd_recovered"]


def test_learning_goes_to_builtin_and_rspamd(fake: tuple[FakeRspamd, str]) -> None:
    state, url = fake
    engine = RspamdSpamEngine(MemoryTokenStore(), url=url, password="s3cret")
    assert engine.learn(SPAM[0], True)
    assert not engine.learn(SPAM[0], True)  # the built-in ledger: no double counting
    assert engine.learn(HAM[0], False, 5)
    assert state.learnt["/learnspam"] == {SPAM[0]}
    assert state.learnt["/learnham"] == {HAM[0]}
    learn_requests = [(path, headers) for path, headers, _ in state.requests]
    assert all(headers.get("Password") == "s3cret" for _, headers in learn_requests)
    totals, _ = engine.store.lookup([], None)
    assert (totals.spam, totals.ham) == (1, 0)
    assert RspamdClient(url).learn(SPAM[0], True) is False  # rspamd's 208: already learnt


def test_learning_while_rspamd_is_down_still_learns_builtin() -> None:
    engine = RspamdSpamEngine(MemoryTokenStore(), url=closed_port_url(), timeout=1.0)
    assert engine.learn_many([(SPAM[0], True), (HAM[0], False)]) == 2
    assert engine.rspamd_down


def test_client_refuses_bad_urls_and_reports_http_errors(fake: tuple[FakeRspamd, str]) -> None:
    with pytest.raises(ValueError, match="rspamd url"):
        RspamdClient("ftp://127.0.0.1:11333")
    _, url = fake
    with pytest.raises(RspamdUnavailable, match="HTTP 404"):
        RspamdClient(url + "/nothing-here").learn(SPAM[0], True)


def test_service_wiring_picks_the_configured_engine(tmp_path: Any) -> None:
    """`[spam] engine = "rspamd"` in tayori.toml gives the rspamd engine with its url and
    timeout; the default is the built-in one."""
    from types import SimpleNamespace

    from tayori.app import spam_engine
    from tayori.config.loader import load_settings

    config = tmp_path / "tayori.toml"
    config.write_text(
        '[spam]\nengine = "rspamd"\nrspamd_url = "http://127.0.0.1:11999"\nrspamd_timeout = 0.5\n',
        encoding="utf-8",
    )
    settings = load_settings(config)
    stores: Any = SimpleNamespace(spam=MemoryTokenStore())
    engine = spam_engine(settings, stores)
    assert isinstance(engine, RspamdSpamEngine)
    assert (engine.client.url, engine.client.timeout) == ("http://127.0.0.1:11999", 0.5)
    config.write_text("[spam]\n", encoding="utf-8")
    default = spam_engine(load_settings(config), stores)
    assert type(default) is SpamEngine


def test_spam_block_files_rspamd_spam_and_records_the_fallback(
    fake: tuple[FakeRspamd, str],
) -> None:
    """Through the pipeline's spam step: rspamd's verdict files the message in Junk with
    rspamd's symbols in the outcome detail; with rspamd gone, the built-in engine decides and
    the detail says so."""
    import asyncio
    from datetime import UTC, datetime

    from tayori.pipeline.runner import Decision
    from tayori.pipeline.spam_block import SpamBlock
    from tayori.pipeline.steps import Client
    from tayori.pipeline.verdicts import Action
    from tayori.rules.model import SpamSettings
    from tayori.storage.records import Account, AccountStatus

    class Rules:
        def get_spam_settings(self, account_id: int) -> SpamSettings:
            return SpamSettings()

    member = Account(
        id=7,
        address="alice@example.test",
        domain_id=1,
        password_hash="",
        quota_bytes=0,
        used_bytes=0,
        status=AccountStatus.ACTIVE,
        created=datetime(2026, 1, 1, tzinfo=UTC),
    )

    def decide(engine: SpamEngine, message: bytes) -> Decision:
        block = SpamBlock(engine, Rules())  # type: ignore[arg-type]
        return asyncio.run(block.decide(member, message, Client("192.0.2.1"), Decision()))

    _, url = fake
    decision = decide(RspamdSpamEngine(MemoryTokenStore(), url=url), HAM[0])
    assert decision.action is Action.JUNK and decision.reasons == ("spam.junk",)
    assert decision.decisive is not None
    assert "rspamd action=add header" in decision.decisive.detail
    assert "rspamd:BAYES_SPAM (5.10)" in decision.decisive.detail

    down = trained(RspamdSpamEngine(MemoryTokenStore(), url=closed_port_url(), timeout=1.0))
    decision = decide(down, SPAM[4])
    assert decision.action is Action.JUNK and decision.decisive is not None
    assert "engine=builtin (rspamd unreachable: " in decision.decisive.detail
    assert decide(down, HAM[4]).verdicts == ()
