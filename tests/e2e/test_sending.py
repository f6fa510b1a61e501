"""The whole sending path through `tayori serve`: submission → queue → MX lookup on the test
DNS → remote server (a sink) → and, when the remote refuses, a bounce back to the member."""

from __future__ import annotations

import asyncio
import email
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message

import pytest

from tayori.testing.smtp_sink import SmtpSink
from tests.e2e.conftest import Instance
from tests.e2e.mail import pop3_download, strip_trace
from tests.e2e.test_submission import submission

pytestmark = pytest.mark.e2e


class ThreadedSink:
    """The asyncio sink on its own loop, for tests whose server is another process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sink = SmtpSink("127.0.0.1")
        asyncio.run_coroutine_threadsafe(self.sink.start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sink.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def remote() -> Iterator[SmtpSink]:
    threaded = ThreadedSink()
    yield threaded.sink
    threaded.close()


def eventually(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """Poll a condition the server reaches on its own (another process), bounded in time."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_remote_delivery_and_bounce_to_the_member(make_instance: object, remote: SmtpSink) -> None:
    remote.rcpt_replies["nobody@remote.test"] = "550 5.1.1 <nobody@remote.test>: User unknown"
    instance: Instance = make_instance(f"\n[outbound]\nport = {remote.port}\n")  # type: ignore[operator]
    instance.add_user("alice@example.test")
    instance.start()
    mail = EmailMessage()
    mail["From"] = "Alice <alice@example.test>"
    mail["To"] = "friend@remote.test, nobody@remote.test"
    mail["Subject"] = "会議の件"
    mail.set_content("明日の会議について。\n")
    with submission(instance) as client:
        refused = client.sendmail(
            "alice@example.test", ["friend@remote.test", "nobody@remote.test"], mail.as_bytes()
        )
        assert refused == {}

    eventually(lambda: len(remote.transactions) == 1, "the remote server to get the message")
    [received] = remote.transactions
    assert received.mail_from == "alice@example.test"
    assert received.rcpt_tos == ("friend@remote.test",)
    assert b"Subject: =?utf-8?b?" in received.data  # the message as the member sent it
    assert b"with ESMTPSA id" in received.data

    password = instance.passwords["alice@example.test"]
    inbox: list[bytes] = []

    def bounced() -> bool:
        inbox[:] = pop3_download(instance.ports["pop3"], "alice@example.test", password)
        return len(inbox) == 1

    eventually(bounced, "the bounce in alice's INBOX")
    assert inbox[0].startswith(b"Return-Path: <>\r\n")
    report = email.message_from_bytes(strip_trace(inbox[0]))
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    human, status, original = report.get_payload()  # type: ignore[misc]
    text = human.get_payload(decode=True).decode()
    assert "nobody@remote.test" in text
    assert "550 5.1.1 <nobody@remote.test>: User unknown" in text
    assert "配送" in text or "届" in text  # Japanese part present
    blocks: list[Message] = status.get_payload()
    per_recipient = blocks[1]
    assert per_recipient["Final-Recipient"] == "rfc822; nobody@remote.test"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    assert per_recipient["Remote-MTA"].startswith("dns; ")
    assert original.get_content_type() == "text/rfc822-headers"

    outcomes = {
        (o["recipient"], o["reason"]) for o in instance.outcomes("--account", "alice@example.test")
    }
    assert ("friend@remote.test", "remote.delivered") in outcomes
    assert ("nobody@remote.test", "remote.rejected") in outcomes
    assert any(reason == "dsn.sent" for _, reason in outcomes)
    assert instance.stop() == 0


def test_deferred_message_survives_a_restart(make_instance: object, remote: SmtpSink) -> None:
    remote.rcpt_default = "450 4.2.1 Mailbox busy, try later"
    instance: Instance = make_instance(  # type: ignore[operator]
        f"\n[outbound]\nport = {remote.port}\nretry_initial = 0.5\nretry_max = 0.5\n"
    )
    instance.add_user("alice@example.test")
    instance.start()
    with submission(instance) as client:
        client.sendmail(
            "alice@example.test",
            ["later@remote.test"],
            b"From: alice@example.test\r\nSubject: later\r\n\r\nbody\r\n",
        )

    def deferred() -> bool:
        return any(o["reason"] == "remote.deferred" for o in instance.outcomes())

    eventually(deferred, "a deferral")
    assert "later@remote.test" in instance.cli("queue", "list", "--deferred")
    assert instance.stop() == 0  # graceful: the queued message stays in the store
    remote.rcpt_default = "250 2.1.5 Ok"
    instance.start()  # resumes the queue
    eventually(lambda: len(remote.transactions) == 1, "delivery after the restart")
    eventually(lambda: "later@remote.test" not in instance.cli("queue", "list"), "an empty queue")
    assert instance.stop() == 0
