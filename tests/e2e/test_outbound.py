"""Outbound delivery end to end on loopback: the real queue store (SQLite and PostgreSQL), the
real resolver asking a real DNS server whose MX records point at 127.0.0.x, real SMTP sinks
listening there (ours, and Postfix's `smtp-sink` where installed), and a fake clock that
drives retries, the delay warning and expiry without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tayori.config.settings import OutboundSettings
from tayori.core.outcome import Outcome
from tayori.delivery.queue_runner import QueueRunner
from tayori.dns.resolver import DnsPythonResolver
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.records import NewQueuedMessage, RecipientState
from tayori.testing.dns_server import DnsServer
from tayori.testing.smtp_sink import SmtpSink
from tests.conftest import temporary_pg_database
from tests.fakes_queue import FakeClock, RecordingBounceSender
from tests.ports import free_port

pytestmark = pytest.mark.e2e

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: many\r\nSubject: Quarterly report\r\n"
    b"Message-ID: <report-1@example.test>\r\n\r\nPlease find the figures below.\r\n"
)
UNKNOWN = "550 5.1.1 <carol@beta.test>: Recipient address rejected: User unknown"
LATER = "450 4.2.1 <dave@beta.test>: mailbox busy, try later"
BLOCKED = "554 5.7.1 Service unavailable; client [127.0.0.1] blocked due to poor reputation"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stores(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Stores]:
    with (
        temporary_pg_database("tayori_outbound")
        if request.param == "postgres"
        else contextlib.nullcontext("")
    ) as url:
        migrate(url, tmp_path)
        opened = open_stores(url, tmp_path, clock=clock)
        try:
            yield opened
        finally:
            opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with DnsServer() as server:
        zone = server.zone
        zone.add("alpha.test", "MX", "10 mx.alpha.test")
        zone.add("mx.alpha.test", "A", "127.0.0.2")
        zone.add("beta.test", "MX", "10 mx.beta.test")
        zone.add("beta.test", "MX", "20 backup.beta.test")
        zone.add("mx.beta.test", "A", "127.0.0.3")
        zone.add("backup.beta.test", "A", "127.0.0.3")
        zone.add("implicit.test", "A", "127.0.0.2")
        zone.add("nomail.test", "MX", "0 .")
        zone.add("nomail.test", "A", "127.0.0.2")
        yield server


class Setting:
    """Stores, DNS and the runner's other collaborators for one test."""

    def __init__(self, stores: Stores, dns: DnsServer, clock: FakeClock) -> None:
        self.stores = stores
        self.dns = dns
        self.clock = clock
        self.bounces = RecordingBounceSender()
        self.count = 0

    def enqueue(self, *recipients: str, sender: str = "alice@example.test", **extra: Any) -> str:
        self.count += 1
        queue_id = f"E2E{self.count:04d}"
        ref = self.stores.blobs.put([MESSAGE])
        created = extra.pop("created", self.clock.now())
        lifetime = extra.pop("lifetime", timedelta(days=5))
        self.stores.queue.enqueue(
            NewQueuedMessage(
                queue_id=queue_id,
                sender=sender,
                account_id=None,
                blob_ref=ref,
                size=len(MESSAGE),
                message_id=f"<report-{self.count}@example.test>",
                subject="Quarterly report",
                created=created,
                expires=created + lifetime,
                recipients=recipients,
            )
        )
        return queue_id

    def runner(self, port: int, **settings: Any) -> QueueRunner:
        return QueueRunner(
            self.stores.queue,
            self.stores.blobs,
            DnsPythonResolver(self.dns.settings(timeout=2.0), cache_size=0),
            OutboundSettings(port=port, **settings),
            "mail.example.test",
            self.bounces,
            self.clock,
        )

    def outcomes(self, queue_number: int = 1) -> list[Outcome]:
        stored = self.stores.metadata.list_outcomes(
            message_id=f"<report-{queue_number}@example.test>", limit=1000
        )
        return [item.outcome for item in reversed(stored)]

    def reports(self) -> list[Message]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)
            for _, raw in self.bounces.sent
        ]


@pytest.fixture
def setting(stores: Stores, dns: DnsServer, clock: FakeClock) -> Setting:
    return Setting(stores, dns, clock)


def blocks(report: Message) -> list[Message]:
    payload = report.get_payload()
    assert isinstance(payload, list)
    found = payload[1].get_payload()
    assert isinstance(found, list)
    return found


def test_mx_routing_results_and_report(setting: Setting) -> None:
    """One message for five domains: MX, implicit MX, null MX, NXDOMAIN, and per-recipient
    replies (accepted, unknown, busy); then the busy one succeeds on retry."""

    async def scenario() -> None:
        port = free_port("127.0.0.2")
        async with SmtpSink("127.0.0.2", port) as alpha, SmtpSink("127.0.0.3", port) as beta:
            beta.rcpt_replies["carol@beta.test"] = UNKNOWN
            beta.rcpt_replies["dave@beta.test"] = LATER
            queue_id = setting.enqueue(
                "bob@alpha.test",
                "eve@implicit.test",
                "carol@beta.test",
                "dave@beta.test",
                "frank@beta.test",
                "x@nomail.test",
                "y@gone.test",
            )
            runner = setting.runner(port, retry_initial=300)
            assert await runner.run_once() == 1

            assert sorted(alpha.recipients) == ["bob@alpha.test", "eve@implicit.test"]
            assert beta.recipients == ["frank@beta.test"]
            assert all(t.data == MESSAGE for t in alpha.transactions + beta.transactions)
            final = {o.recipient: (o.outcome.value, o.reason) for o in setting.outcomes()}
            assert final == {
                "bob@alpha.test": ("delivered", "remote.delivered"),
                "eve@implicit.test": ("delivered", "remote.delivered"),
                "frank@beta.test": ("delivered", "remote.delivered"),
                "carol@beta.test": ("bounced", "remote.rejected"),
                "dave@beta.test": ("deferred", "remote.deferred"),
                "x@nomail.test": ("bounced", "remote.null_mx"),
                "y@gone.test": ("bounced", "remote.rejected"),
                "alice@example.test": ("bounced", "dsn.sent"),
            }
            replies = {o.recipient: o.reply for o in setting.outcomes()}
            assert replies["carol@beta.test"] == UNKNOWN
            assert replies["dave@beta.test"] == LATER

            entry = setting.stores.queue.get_queue_entry(queue_id)
            assert entry is not None
            states = {r.recipient: r.state for r in entry.recipients}
            assert states["dave@beta.test"] is RecipientState.QUEUED
            assert states["carol@beta.test"] is RecipientState.BOUNCED
            dave = next(r for r in entry.recipients if r.recipient == "dave@beta.test")
            assert dave.attempts == 1
            assert dave.last_reply == LATER
            assert dave.remote_mta == "mx.beta.test"
            assert dave.next_attempt == setting.clock.now() + timedelta(seconds=300)

            [report] = setting.reports()
            assert report["To"].addresses[0].addr_spec == "alice@example.test"
            assert report["Auto-Submitted"] == "auto-replied"
            per_message, *per_recipient = blocks(report)
            assert per_message["Reporting-MTA"] == "dns; mail.example.test"
            by_address = {b["Final-Recipient"]: b for b in per_recipient}
            assert set(by_address) == {
                "rfc822; carol@beta.test",
                "rfc822; x@nomail.test",
                "rfc822; y@gone.test",
            }
            carol = by_address["rfc822; carol@beta.test"]
            assert carol["Action"] == "failed"
            assert carol["Status"] == "5.1.1"
            assert carol["Remote-MTA"] == "dns; mx.beta.test"
            assert " ".join(carol["Diagnostic-Code"].split()) == f"smtp; {UNKNOWN}"
            assert by_address["rfc822; x@nomail.test"]["Status"] == "5.1.10"
            assert by_address["rfc822; y@gone.test"]["Status"] == "5.1.2"

            beta.rcpt_replies.clear()
            setting.clock.advance(seconds=300)
            assert await runner.run_once() == 1
            assert beta.recipients == ["frank@beta.test", "dave@beta.test"]
            assert setting.stores.queue.get_queue_entry(queue_id) is None
            assert setting.outcomes()[-1].reason == "remote.delivered"

    asyncio.run(scenario())


def test_delay_warning_once_then_expiry_bounce(setting: Setting) -> None:
    async def scenario() -> None:
        async with SmtpSink("127.0.0.2") as sink:
            sink.rcpt_default = "451 4.3.0 temporary trouble"
            queue_id = setting.enqueue("bob@alpha.test", lifetime=timedelta(hours=2))
            runner = setting.runner(
                sink.port, retry_initial=600, retry_max=1800, delay_warning=1800
            )
            for _ in range(13):  # every 10 minutes from 0 to 2 hours
                await runner.run_once()
                setting.clock.advance(seconds=600)
            assert setting.stores.queue.get_queue_entry(queue_id) is None

        reasons = [o.reason for o in setting.outcomes()]
        assert reasons.count("dsn.sent") == 2, reasons
        assert reasons[-2:] == ["dsn.sent", "queue.expired"] or reasons[-2:] == [
            "queue.expired",
            "dsn.sent",
        ]
        delay, failure = setting.reports()
        assert blocks(delay)[1]["Action"] == "delayed"
        assert blocks(failure)[1]["Action"] == "failed"
        assert blocks(failure)[1]["Status"] == "4.4.7"
        diagnostic = " ".join(blocks(failure)[1]["Diagnostic-Code"].split())
        assert diagnostic == "smtp; 451 4.3.0 temporary trouble"
        # Attempts at 0, 10 min, 30 min, 60 min, 90 min and the last at the expiry (2 h).
        assert sink.connections == 6

    asyncio.run(scenario())


def test_null_sender_is_never_reported(setting: Setting) -> None:
    async def scenario() -> None:
        async with SmtpSink("127.0.0.2") as sink:
            sink.data_reply = BLOCKED
            setting.enqueue("bob@alpha.test", sender="")
            await setting.runner(sink.port).run_once()
        assert setting.bounces.sent == []
        [outcome] = setting.outcomes()
        assert (outcome.reason, outcome.reply) == ("remote.rejected", BLOCKED)

    asyncio.run(scenario())


def test_stop_keeps_the_message_and_a_new_runner_resumes(setting: Setting) -> None:
    async def scenario() -> None:
        async with SmtpSink("127.0.0.2") as sink:
            sink.hold = asyncio.Event()
            queue_id = setting.enqueue("bob@alpha.test")
            first = setting.runner(sink.port)
            await first.start()
            await sink.wait_for(lambda: sink.waiting_in_data == 1)
            await first.stop(grace=0)  # cut off before the remote 250: not recorded
            entry = setting.stores.queue.get_queue_entry(queue_id)
            assert entry is not None
            assert entry.recipients[0].state is RecipientState.QUEUED
            sink.hold.set()
            second = setting.runner(sink.port)
            assert await second.run_once() == 1, "the lease was released at stop"
        assert setting.stores.queue.get_queue_entry(queue_id) is None
        assert [o.reason for o in setting.outcomes()] == ["remote.delivered"]

    asyncio.run(scenario())


# --- Postfix's smtp-sink as the remote server ---------------------------------------------


class PostfixSink:
    """`smtp-sink` on 127.0.0.2:port, started and stopped by its PID."""

    def __init__(self, port: int, *options: str) -> None:
        binary = shutil.which("smtp-sink")
        assert binary is not None
        self.process = subprocess.Popen(
            [
                binary,
                "-u",
                "nobody",
                "-h",
                "sink.postfix.test",
                *options,
                f"127.0.0.2:{port}",
                "64",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"smtp-sink exited: {self.process.stderr!r}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.2", port)) == 0:
                    return
            time.sleep(0.02)  # waiting for another process to listen; bounded above
        self.stop()
        raise AssertionError("smtp-sink did not start listening")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def postfix_sink() -> type[PostfixSink]:
    if shutil.which("smtp-sink") is None:
        pytest.skip(
            "Postfix's smtp-sink is not installed (Debian package postfix); the outbound "
            "tests against our own sink cover the same cases"
        )
    return PostfixSink


@pytest.mark.parametrize(
    ("options", "outcome", "reply_start"),
    [
        ((), "remote.delivered", "250 2.0.0 Ok"),
        (("-r", "RCPT", "-b", LATER), "remote.deferred", LATER),
        (("-f", ".", "-B", BLOCKED), "remote.rejected", BLOCKED),
        (("-q", "DATA"), "remote.deferred", "451 4.4.2 Lost connection"),
    ],
    ids=["accept", "rcpt-4xx", "data-5xx", "disconnect"],
)
def test_against_postfix_smtp_sink(
    setting: Setting,
    postfix_sink: type[PostfixSink],
    options: tuple[str, ...],
    outcome: str,
    reply_start: str,
) -> None:
    port = free_port("127.0.0.2")
    sink = postfix_sink(port, *options)
    try:
        setting.enqueue("bob@alpha.test")
        asyncio.run(setting.runner(port).run_once())
    finally:
        sink.stop()
    result = next(o for o in setting.outcomes() if o.recipient == "bob@alpha.test")
    assert result.reason == outcome
    assert result.reply.startswith(reply_start), result.reply
    assert result.remote_host == "mx.alpha.test"
    if outcome == "remote.rejected":
        [report] = setting.reports()
        diagnostic = " ".join(blocks(report)[1]["Diagnostic-Code"].split())
        assert diagnostic == f"smtp; {BLOCKED}"
