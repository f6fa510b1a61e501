"""The outbound worker against a fake queue, a fake resolver and real SMTP sinks on loopback.

Time is a fake clock: retries, expiry and delay warnings happen by moving it, never by
sleeping. Each test runs its own event loop (`asyncio.run`).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.message import Message
from typing import Any

import pytest

from tayori.config.settings import HostPort, OutboundSettings
from tayori.core.outcome import Outcome, OutcomeKind
from tayori.delivery.queue_runner import QueueRunner, SystemClock, retry_delay
from tayori.storage.records import RecipientState
from tayori.testing.smtp_sink import SmtpSink
from tests.fakes import FakeBlobStore
from tests.fakes_queue import FakeClock, FakeQueueStore, FakeResolver, RecordingBounceSender
from tests.ports import free_port

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: Hello\r\n"
    b"Message-ID: <m1@example.test>\r\n\r\nHello Bob.\r\n.leading dot\r\n"
)
BLOCKED = "554 5.7.1 Service unavailable; client [192.0.2.1] blocked due to poor reputation"
UNKNOWN = "550 5.1.1 <carol@remote.test>: Recipient address rejected: User unknown"
LATER = "450 4.2.1 try later"


class World:
    """The runner's collaborators, with helpers to set up the remote side."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.queue = FakeQueueStore(self.clock)
        self.blobs = FakeBlobStore()
        self.resolver = FakeResolver()
        self.bounces = RecordingBounceSender()
        self.blob = ""

    def route(self, domain: str, address: str = "127.0.0.1", mx: str | None = None) -> None:
        host = mx or f"mx.{domain}"
        self.resolver.mx_records[domain] = [(10, host)]
        self.resolver.hosts[host] = [address]

    def add(self, *recipients: str, **options: Any) -> str:
        """Queue a message (its own blob, as every queued message has)."""
        if "blob_ref" not in options:
            options["blob_ref"] = self.blob = self.blobs.put([MESSAGE])
        return self.queue.add(recipients, **options).queue_id

    def runner(self, port: int = 25, **settings: Any) -> QueueRunner:
        return QueueRunner(
            self.queue,
            self.blobs,
            self.resolver,
            OutboundSettings(port=port, **settings),
            "mail.example.test",
            self.bounces,
            self.clock,
        )

    def outcomes(self, reason: str | None = None) -> list[Outcome]:
        return [o for o in self.queue.outcomes if reason is None or o.reason == reason]

    def reports(self) -> list[Message]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)
            for _, raw in self.bounces.sent
        ]


def run(test: Callable[[World], Awaitable[None]]) -> None:
    asyncio.run(test(World()))


def status_block(report: Message, index: int = 1) -> Message:
    payload = report.get_payload()
    assert isinstance(payload, list)
    blocks = payload[1].get_payload()
    assert isinstance(blocks, list)
    return blocks[index]


def closed_port() -> int:
    """A loopback port nobody listens on (see tests/ports.py for why not a port-0 bind)."""
    return free_port()


def test_delivered() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        qid = w.add("bob@remote.test")
        async with SmtpSink() as sink:
            assert await w.runner(sink.port).run_once() == 1
        [transaction] = sink.transactions
        assert transaction.mail_from == "alice@example.test"
        assert transaction.rcpt_tos == ("bob@remote.test",)
        assert transaction.data == MESSAGE
        assert transaction.helo == "mail.example.test"
        assert not transaction.tls
        [outcome] = w.outcomes()
        assert (outcome.outcome, outcome.reason) == (OutcomeKind.DELIVERED, "remote.delivered")
        assert outcome.reply == "250 2.0.0 Ok: queued"
        assert outcome.remote_host == "mx.remote.test"
        assert outcome.remote_ip == "127.0.0.1"
        assert outcome.account_id == 7
        assert outcome.sender == "alice@example.test"
        assert outcome.time == w.clock.now()
        assert "tls=none" in outcome.detail
        assert w.queue.entry(qid).recipients[0].state is RecipientState.DELIVERED
        assert w.queue.rows == {}
        assert w.blobs.deleted == [w.blob]
        assert w.bounces.sent == []

    run(scenario)


def test_deferred_then_delivered_on_retry_with_doubling_waits() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        qid = w.add("bob@remote.test")
        start = w.clock.now()
        async with SmtpSink() as sink:
            sink.rcpt_default = LATER
            runner = w.runner(sink.port, retry_initial=300, retry_max=1000)
            await runner.run_once()
            bob = w.queue.recipient(qid, "bob@remote.test")
            assert bob.state is RecipientState.QUEUED
            assert bob.last_reply == LATER
            assert bob.next_attempt == start + timedelta(seconds=300)
            assert await runner.run_once() == 0, "not due yet"
            w.clock.advance(seconds=300)
            await runner.run_once()
            bob = w.queue.recipient(qid, "bob@remote.test")
            assert bob.next_attempt == w.clock.now() + timedelta(seconds=600)
            w.clock.advance(seconds=600)
            await runner.run_once()
            bob = w.queue.recipient(qid, "bob@remote.test")
            assert bob.next_attempt == w.clock.now() + timedelta(seconds=1000), "capped"
            w.clock.advance(seconds=1000)
            sink.rcpt_default = "250 2.1.5 Ok"
            await runner.run_once()
        assert sink.recipients == ["bob@remote.test"]
        assert [o.reason for o in w.outcomes()] == ["remote.deferred"] * 3 + ["remote.delivered"]
        deferred = w.outcomes("remote.deferred")[0]
        assert deferred.outcome is OutcomeKind.DEFERRED
        assert deferred.reply == LATER
        assert deferred.remote_host == "mx.remote.test"
        assert w.queue.rows == {}
        assert w.bounces.sent == []

    run(scenario)


def test_permanent_rejection_bounces_with_the_remote_words() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        w.add("bob@remote.test")
        async with SmtpSink() as sink:
            sink.data_reply = BLOCKED
            await w.runner(sink.port).run_once()
        assert sink.transactions == []
        assert [(o.outcome, o.reason) for o in w.outcomes()] == [
            (OutcomeKind.BOUNCED, "dsn.sent"),
            (OutcomeKind.BOUNCED, "remote.rejected"),
        ]
        rejected = w.outcomes("remote.rejected")[0]
        assert rejected.reply == BLOCKED
        dsn_sent = w.outcomes("dsn.sent")[0]
        assert dsn_sent.recipient == "alice@example.test"
        assert dsn_sent.message_id == "<m1@example.test>"
        [(to, _raw)] = w.bounces.sent
        assert to == "alice@example.test"
        [report] = w.reports()
        block = status_block(report)
        assert block["Final-Recipient"] == "rfc822; bob@remote.test"
        assert block["Action"] == "failed"
        assert block["Status"] == "5.7.1"
        assert block["Remote-MTA"] == "dns; mx.remote.test"
        assert " ".join(block["Diagnostic-Code"].split()) == f"smtp; {BLOCKED}"
        assert w.queue.finished["Q1"].recipients[0].state is RecipientState.BOUNCED

    run(scenario)


def test_mixed_recipients_get_their_own_results() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        w.add("bob@remote.test", "carol@remote.test")
        async with SmtpSink() as sink:
            sink.rcpt_replies["carol@remote.test"] = UNKNOWN
            await w.runner(sink.port).run_once()
        [transaction] = sink.transactions
        assert transaction.rcpt_tos == ("bob@remote.test",)
        results = {o.recipient: (o.reason, o.reply) for o in w.outcomes() if o.reason != "dsn.sent"}
        assert results == {
            "bob@remote.test": ("remote.delivered", "250 2.0.0 Ok: queued"),
            "carol@remote.test": ("remote.rejected", UNKNOWN),
        }
        [report] = w.reports()
        assert status_block(report)["Final-Recipient"] == "rfc822; carol@remote.test"
        payload = report.get_payload()
        assert isinstance(payload, list)
        assert len(payload[1].get_payload()) == 2, "only carol is reported"

    run(scenario)


def test_null_mx_bounces_at_once_without_connecting() -> None:
    async def scenario(w: World) -> None:
        w.resolver.mx_records["nomail.test"] = [(0, ".")]
        w.resolver.hosts["nomail.test"] = ["127.0.0.1"]
        w.add("x@nomail.test")
        async with SmtpSink() as sink:
            await w.runner(sink.port).run_once()
        assert sink.connections == 0
        [outcome] = w.outcomes("remote.null_mx")
        assert outcome.outcome is OutcomeKind.BOUNCED
        assert outcome.reply == "556 5.1.10 Recipient address has null MX"
        [report] = w.reports()
        block = status_block(report)
        assert block["Status"] == "5.1.10"
        assert block["Diagnostic-Code"].startswith("x-tayori; 556 5.1.10")

    run(scenario)


def test_no_mx_falls_back_to_the_address_records() -> None:
    async def scenario(w: World) -> None:
        w.resolver.mx_records["plain.test"] = "nodata"
        w.resolver.hosts["plain.test"] = ["127.0.0.1"]
        w.add("x@plain.test")
        async with SmtpSink() as sink:
            await w.runner(sink.port).run_once()
        assert sink.recipients == ["x@plain.test"]
        [outcome] = w.outcomes()
        assert outcome.reason == "remote.delivered"
        assert outcome.remote_host == "plain.test"

    run(scenario)


def test_nxdomain_bounces_but_a_dns_failure_defers() -> None:
    async def scenario(w: World) -> None:
        w.resolver.mx_records["broken.test"] = "tempfail"
        w.add("x@nowhere.test", "y@broken.test")
        await w.runner().run_once()
        results = {o.recipient: o for o in w.outcomes() if o.reason != "dsn.sent"}
        nowhere, broken = results["x@nowhere.test"], results["y@broken.test"]
        assert (nowhere.outcome, nowhere.reason) == (OutcomeKind.BOUNCED, "remote.rejected")
        assert nowhere.reply.startswith("550 5.1.2 ")
        assert "nowhere.test" in nowhere.reply
        assert (broken.outcome, broken.reason) == (OutcomeKind.DEFERRED, "remote.deferred")
        assert broken.reply.startswith("451 4.4.3 ")
        [report] = w.reports()
        assert status_block(report)["Final-Recipient"] == "rfc822; x@nowhere.test"
        assert w.queue.recipient("Q1", "y@broken.test").state is RecipientState.QUEUED

    run(scenario)


def test_mail_hosts_without_addresses_bounce() -> None:
    async def scenario(w: World) -> None:
        w.resolver.mx_records["dangling.test"] = [(10, "mx.gone.test")]
        w.add("x@dangling.test")
        await w.runner().run_once()
        [outcome] = w.outcomes("remote.rejected")
        assert outcome.reply.startswith("550 5.4.4 ")

    run(scenario)


def test_expiry_gets_a_last_try_then_bounces() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        qid = w.add("bob@remote.test", lifetime=timedelta(seconds=600))
        start = w.clock.now()
        async with SmtpSink() as sink:
            sink.rcpt_default = LATER
            runner = w.runner(sink.port, retry_initial=300, delay_warning=0)
            await runner.run_once()
            w.clock.advance(seconds=300)
            await runner.run_once()
            bob = w.queue.recipient(qid, "bob@remote.test")
            assert bob.next_attempt == start + timedelta(seconds=600), "clamped to the expiry"
            w.clock.advance(seconds=300)
            await runner.run_once()
        assert sink.connections == 3
        assert [o.reason for o in w.outcomes()] == [
            "remote.deferred",
            "remote.deferred",
            "dsn.sent",
            "queue.expired",
        ]
        expired = w.outcomes("queue.expired")[0]
        assert expired.outcome is OutcomeKind.BOUNCED
        assert expired.reply == LATER
        assert w.queue.finished[qid].recipients[0].state is RecipientState.EXPIRED
        [report] = w.reports()
        block = status_block(report)
        assert block["Action"] == "failed"
        assert block["Status"] == "4.4.7"
        assert " ".join(block["Diagnostic-Code"].split()) == f"smtp; {LATER}"
        payload = report.get_payload()
        assert isinstance(payload, list)
        assert "長期間届けられなかった" in payload[0].get_content()

    run(scenario)


def test_delay_warning_is_sent_exactly_once() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        qid = w.add("bob@remote.test")
        async with SmtpSink() as sink:
            sink.rcpt_default = LATER
            runner = w.runner(sink.port, retry_initial=300, retry_max=300, delay_warning=600)
            for _ in range(5):
                await runner.run_once()
                w.clock.advance(seconds=300)
        assert sink.connections == 5
        assert len(w.bounces.sent) == 1
        [report] = w.reports()
        block = status_block(report)
        assert block["Action"] == "delayed"
        assert block["Status"] == "4.2.1"
        assert block["Will-Retry-Until"] is not None
        assert "Delayed Mail" in str(report["Subject"])
        assert len(w.outcomes("dsn.sent")) == 1
        assert w.outcomes("dsn.sent")[0].outcome is OutcomeKind.DEFERRED
        assert w.queue.entry(qid).delay_warned

    run(scenario)


def test_no_report_for_a_null_sender() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        w.add("bob@remote.test", sender="")
        async with SmtpSink() as sink:
            sink.rcpt_default = UNKNOWN
            await w.runner(sink.port, delay_warning=1).run_once()
        assert w.bounces.sent == []
        [outcome] = w.outcomes()
        assert (outcome.outcome, outcome.reason) == (OutcomeKind.BOUNCED, "remote.rejected")
        assert "no report" in outcome.detail
        assert w.queue.rows == {}

    run(scenario)


def test_null_sender_goes_out_as_an_empty_reverse_path() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        w.add("bob@remote.test", sender="")
        async with SmtpSink() as sink:
            await w.runner(sink.port).run_once()
        assert sink.transactions[0].mail_from == "<>"

    run(scenario)


def test_one_connection_carries_several_messages() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        for i in range(4):
            w.add(f"user{i}@remote.test")
        async with SmtpSink() as sink:
            assert await w.runner(sink.port).run_once() == 4
        assert sink.connections == 1
        assert {t.connection for t in sink.transactions} == {1}
        assert sorted(sink.recipients) == [f"user{i}@remote.test" for i in range(4)]

    run(scenario)


def test_a_connection_the_server_closed_is_replaced() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        w.add("a@remote.test")
        w.add("b@remote.test")
        async with SmtpSink() as sink:
            sink.data_reply = "421 4.3.2 Shutting down"
            runner = w.runner(sink.port)
            await runner.run_once()
        assert [o.reason for o in w.outcomes()] == ["remote.deferred", "remote.deferred"]
        assert all(o.reply.startswith("4") for o in w.outcomes())
        assert sink.connections == 2, "a new connection after the 421"

    run(scenario)


def test_transport_map_and_wildcard() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")  # MX ignored: the transport map wins
        async with SmtpSink() as special, SmtpSink() as smarthost:
            transport = {
                "remote.test": HostPort("127.0.0.1", special.port),
                "*": HostPort("127.0.0.1", smarthost.port),
            }
            w.add("a@remote.test", "b@other.test", "c@REMOTE.test")
            await w.runner(closed_port(), transport=transport).run_once()
        assert sorted(special.recipients) == ["a@remote.test", "c@REMOTE.test"]
        assert smarthost.recipients == ["b@other.test"]
        assert ("MX", "remote.test") not in w.resolver.lookups
        assert {o.remote_host for o in w.outcomes()} == {"127.0.0.1"}

    run(scenario)


def test_transport_map_by_name_resolves_addresses_only() -> None:
    async def scenario(w: World) -> None:
        w.resolver.hosts["relay.example.test"] = ["127.0.0.1"]
        async with SmtpSink() as relay:
            transport = {"*": HostPort("relay.example.test", relay.port)}
            w.add("a@anywhere.test")
            await w.runner(transport=transport).run_once()
        assert relay.recipients == ["a@anywhere.test"]
        assert w.resolver.lookups == [("A/AAAA", "relay.example.test")]
        assert w.outcomes()[0].remote_host == "relay.example.test"

    run(scenario)


def test_concurrency_per_destination_is_respected() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        for i in range(30):
            w.add(f"user{i}@remote.test")
        async with SmtpSink() as sink:
            sink.hold = asyncio.Event()
            runner = w.runner(sink.port, concurrency_per_destination=3)
            task = asyncio.create_task(runner.run_once())
            await sink.wait_for(lambda: sink.waiting_in_data == 3)
            assert sink.active == 3
            sink.hold.set()
            assert await task == 30
        assert sink.max_active == 3
        assert sink.connections == 3
        assert len(sink.transactions) == 30

    run(scenario)


def test_unreachable_destination_defers_with_our_words() -> None:
    async def scenario(w: World) -> None:
        port = closed_port()
        w.route("remote.test")
        w.add("a@remote.test")
        w.add("b@remote.test")
        await w.runner(port).run_once()
        assert [o.reason for o in w.outcomes()] == ["remote.deferred", "remote.deferred"]
        reply = w.outcomes()[0].reply
        assert reply.startswith("451 4.4.1 Connection to mx.remote.test[127.0.0.1]")
        assert "refused" in reply.lower()

    run(scenario)


def test_dropped_connection_defers() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        w.add("a@remote.test")
        async with SmtpSink() as sink:
            sink.drop_at = "rcpt"
            await w.runner(sink.port).run_once()
        [outcome] = w.outcomes()
        assert outcome.outcome is OutcomeKind.DEFERRED
        assert outcome.reply.startswith("451 4.4.2 Lost connection with mx.remote.test")
        assert "RCPT TO" in outcome.reply

    run(scenario)


def test_ipv6_then_ipv4_and_mx_by_preference() -> None:
    async def scenario(w: World) -> None:
        async with SmtpSink() as sink:
            w.resolver.mx_records["remote.test"] = [(20, "mx2.remote.test"), (5, "mx1.remote.test")]
            w.resolver.hosts["mx1.remote.test"] = ["::1", "127.0.0.9"]
            w.resolver.hosts["mx2.remote.test"] = ["127.0.0.1"]
            w.add("a@remote.test")
            # mx1's addresses are tried first (::1, then 127.0.0.9) and refuse: nothing
            # listens on this port there. mx2 answers.
            await w.runner(sink.port).run_once()
        assert sink.recipients == ["a@remote.test"]
        assert w.outcomes()[0].remote_host == "mx2.remote.test"

    run(scenario)


def test_opportunistic_starttls_is_used_and_recorded() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        w.add("a@remote.test")
        async with SmtpSink(starttls=True) as sink:
            await w.runner(sink.port).run_once()
        assert sink.transactions[0].tls
        assert "tls=TLSv1." in w.outcomes()[0].detail

    run(scenario)


def test_eight_bit_message_uses_8bitmime_or_bounces_without_it() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        eight_bit = "Subject: 日本語\r\n\r\n本文\r\n".encode()
        w.add("a@remote.test", blob_ref=w.blobs.put([eight_bit]))
        async with SmtpSink() as sink:
            await w.runner(sink.port).run_once()
        assert "BODY=8BITMIME" in sink.transactions[0].mail_options
        assert sink.transactions[0].data == eight_bit

        w.add("b@remote.test", blob_ref=w.blobs.put([eight_bit]))
        async with SmtpSink(eight_bit_mime=False) as old:
            await w.runner(old.port).run_once()
        assert old.transactions == []
        outcome = w.outcomes("remote.rejected")[0]
        assert outcome.reply.startswith("554 5.6.3 ")
        assert "8BITMIME" in outcome.reply
        block = status_block(w.reports()[0])
        assert block["Status"] == "5.6.3"
        assert block["Diagnostic-Code"].startswith("x-tayori; 554 5.6.3")

    run(scenario)


def test_admin_bounce_request() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        qid = w.add("a@remote.test")
        async with SmtpSink() as sink:
            sink.rcpt_default = LATER
            runner = w.runner(sink.port)
            await runner.run_once()
            assert w.queue.request_bounce(qid, w.clock.now()) == 1
            await runner.run_once()
        assert sink.connections == 1, "no delivery attempt after the request"
        bounced = w.outcomes("queue.expired")[0]
        assert bounced.outcome is OutcomeKind.BOUNCED
        assert bounced.reply == LATER
        assert "administrator" in bounced.detail
        assert len(w.bounces.sent) == 1

    run(scenario)


def test_a_report_that_cannot_be_stored_keeps_the_recipient_queued() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        qid = w.add("a@remote.test")
        async with SmtpSink() as sink:
            sink.rcpt_default = UNKNOWN
            runner = w.runner(sink.port, retry_initial=60)
            w.bounces.fail = True
            await runner.run_once()
            assert w.queue.recipient(qid, "a@remote.test").state is RecipientState.QUEUED
            assert w.outcomes()[0].outcome is OutcomeKind.DEFERRED
            assert "could not be stored" in w.outcomes()[0].detail
            w.bounces.fail = False
            w.clock.advance(seconds=60)
            await runner.run_once()
        assert len(w.bounces.sent) == 1
        assert w.queue.finished[qid].recipients[0].state is RecipientState.BOUNCED

    run(scenario)


def test_recipients_not_due_wait_while_due_ones_go() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        w.route("slow.test")
        qid = w.add("a@remote.test", "b@slow.test")
        async with SmtpSink() as sink:
            sink.rcpt_replies["b@slow.test"] = LATER
            runner = w.runner(sink.port, retry_initial=300)
            await runner.run_once()
            w.clock.advance(seconds=100)
            assert await runner.run_once() == 0
            sink.rcpt_replies.clear()
            w.clock.advance(seconds=200)
            await runner.run_once()
        assert sink.recipients == ["a@remote.test", "b@slow.test"]
        assert qid in w.queue.finished

    run(scenario)


def test_background_runner_delivers_and_stops_gracefully() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        w.add("a@remote.test")
        async with SmtpSink() as sink:
            sink.hold = asyncio.Event()
            runner = w.runner(sink.port)
            await runner.start()
            await sink.wait_for(lambda: sink.waiting_in_data == 1)
            w.add("b@remote.test")  # claimed by nobody: the runner is stopping
            stopping = asyncio.create_task(runner.stop(grace=10))
            await asyncio.sleep(0)
            sink.hold.set()
            await stopping
        assert sink.recipients == ["a@remote.test"]
        assert [o.reason for o in w.outcomes()] == ["remote.delivered"]
        assert all(row.lease_holder is None for row in w.queue.rows.values())

    run(scenario)


def test_stop_after_grace_leaves_the_message_queued_and_claimable() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        qid = w.add("a@remote.test")
        async with SmtpSink() as sink:
            sink.hold = asyncio.Event()
            runner = w.runner(sink.port)
            await runner.start()
            await sink.wait_for(lambda: sink.waiting_in_data == 1)
            await runner.stop(grace=0)
            assert w.outcomes() == []
            bob = w.queue.recipient(qid, "a@remote.test")
            assert bob.state is RecipientState.QUEUED and bob.attempts == 0
            assert w.queue.row(qid).lease_holder is None, "released, not left to expire"
            sink.hold.set()
            await w.runner(sink.port).run_once()
        assert w.outcomes()[-1].reason == "remote.delivered"

    run(scenario)


def test_wake_starts_delivery_without_waiting_for_the_poll() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        async with SmtpSink() as sink:
            runner = QueueRunner(
                w.queue,
                w.blobs,
                w.resolver,
                OutboundSettings(port=sink.port),
                "mail.example.test",
                w.bounces,
                w.clock,
                poll_interval=3600,
            )
            await runner.start()
            w.add("a@remote.test")
            runner.wake()
            await sink.wait_for(lambda: len(sink.transactions) == 1)
            await runner.stop()
        assert w.outcomes()[0].reason == "remote.delivered"

    run(scenario)


def test_a_lease_lost_to_another_node_is_not_overwritten() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        qid = w.add("a@remote.test")
        async with SmtpSink() as sink:
            sink.hold = asyncio.Event()
            runner = w.runner(sink.port)
            task = asyncio.create_task(runner.run_once())
            await sink.wait_for(lambda: sink.waiting_in_data == 1)
            w.queue.row(qid).lease_holder = "another-node"
            sink.hold.set()
            await task
        assert w.outcomes() == []
        assert w.queue.row(qid).lease_holder == "another-node"

    run(scenario)


@pytest.mark.parametrize(("attempts", "seconds"), [(0, 300), (1, 600), (2, 1200), (6, 14400)])
def test_retry_delay(attempts: int, seconds: int) -> None:
    settings = OutboundSettings(retry_initial=300, retry_max=14400)
    assert retry_delay(settings, attempts) == timedelta(seconds=seconds)
    assert retry_delay(settings, 10_000) == timedelta(seconds=14400)


def test_system_clock_is_aware() -> None:
    assert SystemClock().now().tzinfo is not None


def test_no_transaction_starts_that_could_outlast_the_lease() -> None:
    async def scenario(w: World) -> None:
        w.route("remote.test")
        first = w.add("a@remote.test")
        second = w.add("b@remote.test")
        async with SmtpSink() as sink:
            sink.hold = asyncio.Event()
            runner = w.runner(sink.port, concurrency_per_destination=1)
            task = asyncio.create_task(runner.run_once())
            await sink.wait_for(lambda: sink.waiting_in_data == 1)
            w.clock.advance(minutes=50)  # the lease (61 min) is too short for another one
            sink.hold.set()
            await task
            assert first in w.queue.finished
            assert w.queue.recipient(second, "b@remote.test").attempts == 0
            assert w.queue.row(second).lease_holder is None, "released for the next claim"
            await runner.run_once()
        assert second in w.queue.finished
        assert sink.recipients == ["a@remote.test", "b@remote.test"]

    run(scenario)
