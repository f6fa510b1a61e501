"""Forwarding (スーパーメール転送) of mail that never passes our MX on its way in, through
`tayori serve`: a member's message submitted (SMTP AUTH) to another member who forwards, and a
delivery report filed for a member who forwards. Both reach the forwarding address once, with
keep-a-copy honoured, outcomes recorded as for mail from outside, and loops between members
stopped. The forwarding target is a sink standing in for the other provider; mail for our own
domain goes back to our own MX, as its MX records would send it."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from tayori.testing.smtp_sink import SmtpSink
from tests.e2e.conftest import Instance
from tests.e2e.mail import client_context
from tests.e2e.test_forwarding import mailbox, reasons, started
from tests.e2e.test_sending import ThreadedSink, eventually

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
BOB = "bob@example.test"
FRIEND = "friend@remote.test"
OTHER = "other@remote.test"


@pytest.fixture
def remote() -> Iterator[SmtpSink]:
    threaded = ThreadedSink()
    yield threaded.sink
    threaded.close()


def submit(instance: Instance, user: str, subject: str, *to: str) -> dict[str, object]:
    """Send as `user` over the submission port (STARTTLS, AUTH); the refused recipients."""
    mail = EmailMessage()
    mail["From"] = user
    mail["To"] = ", ".join(to)
    mail["Subject"] = subject
    mail.set_content(f"Body of {subject}.\n")
    with smtplib.SMTP("127.0.0.1", instance.ports["submission"], timeout=30) as client:
        client.starttls(context=client_context(instance.cert))
        client.login(user, instance.passwords[user])
        return dict(client.sendmail(user, list(to), mail.as_bytes()))


def subject_of(data: bytes) -> bytes:
    return data.split(b"\r\nSubject: ")[1].split(b"\r\n")[0]


def queue_empty(instance: Instance) -> bool:
    return "@" not in instance.cli("queue", "list")


def test_submitted_mail_to_a_forwarding_member_is_forwarded_once_and_kept(
    make_instance: object, remote: SmtpSink
) -> None:
    instance = started(make_instance, remote, ALICE, BOB)
    instance.cli("forward", "add", BOB, FRIEND)
    # One message to a forwarding member and a remote address: one commit, one 250.
    assert submit(instance, ALICE, "hello bob", BOB, OTHER) == {}

    eventually(lambda: len(remote.transactions) == 2, "the remote and the forwarded copy")
    by_rcpt = {t.rcpt_tos: t for t in remote.transactions}
    forwarded = by_rcpt[(FRIEND,)]
    # Our own member's address needs no SRS: our servers are in our own SPF record.
    assert forwarded.mail_from == ALICE
    assert forwarded.data.startswith(f"Delivered-To: {BOB}\r\nReceived: ".encode())
    assert subject_of(forwarded.data) == b"hello bob"
    sent = by_rcpt[(OTHER,)]
    assert sent.mail_from == ALICE
    assert subject_of(sent.data) == b"hello bob"

    [kept] = mailbox(instance, BOB)  # keep a copy: the default
    assert subject_of(kept) == b"hello bob"
    assert b"with ESMTPSA id" in kept
    eventually(lambda: (FRIEND, "forward.sent") in reasons(instance, BOB), "forward.sent")
    assert (BOB, "delivered") in reasons(instance, BOB)
    eventually(lambda: (OTHER, "remote.delivered") in reasons(instance, ALICE), "sent")
    delivered = next(o for o in instance.outcomes("--account", BOB) if o["reason"] == "delivered")
    assert "forwarded to friend@remote.test as queue_id=fwd-" in str(delivered["detail"])
    eventually(lambda: queue_empty(instance), "an empty queue")
    assert not mailbox(instance, ALICE)
    assert len(remote.transactions) == 2  # forwarded once, not again
    assert instance.stop() == 0


def test_keep_copy_off_leaves_nothing_here_but_the_outcome(
    make_instance: object, remote: SmtpSink
) -> None:
    instance = started(make_instance, remote, ALICE, BOB)
    instance.cli("forward", "add", BOB, FRIEND)
    instance.cli("forward", "set", BOB, "--no-keep-copy")
    assert submit(instance, ALICE, "not kept", BOB) == {}

    eventually(lambda: (FRIEND, "forward.sent") in reasons(instance, BOB), "forward.sent")
    [copy] = remote.transactions
    assert (copy.mail_from, copy.rcpt_tos) == (ALICE, (FRIEND,))
    assert subject_of(copy.data) == b"not kept"
    assert not mailbox(instance, BOB)
    outcomes = {str(o["reason"]): str(o["detail"]) for o in instance.outcomes("--account", BOB)}
    assert "delivered" not in outcomes
    assert "queue_id=fwd-" in outcomes["forward.queued"]
    assert f"(envelope sender <{ALICE}>)" in outcomes["forward.queued"]
    assert instance.stop() == 0


def test_a_delivery_report_for_a_forwarding_member_is_forwarded(
    make_instance: object, remote: SmtpSink
) -> None:
    gone = "gone@remote.test"
    remote.rcpt_replies[gone] = f"550 5.1.1 <{gone}>: User unknown"
    instance = started(make_instance, remote, ALICE)
    instance.cli("forward", "add", ALICE, FRIEND)
    assert submit(instance, ALICE, "to nobody", gone) == {}

    eventually(lambda: len(remote.transactions) == 1, "the report forwarded")
    [report] = remote.transactions
    # A report stays a report: null sender, never rewritten (no report about a report).
    assert (report.mail_from, report.rcpt_tos) == ("<>", (FRIEND,))
    assert report.data.startswith(f"Delivered-To: {ALICE}\r\nReceived: ".encode())
    assert b"multipart/report" in report.data
    assert gone.encode() in report.data
    [kept] = mailbox(instance, ALICE)
    assert b"multipart/report" in kept
    eventually(lambda: (FRIEND, "forward.sent") in reasons(instance, ALICE), "forward.sent")
    assert (gone, "remote.rejected") in reasons(instance, ALICE)
    assert any(reason == "dsn.sent" for _, reason in reasons(instance, ALICE))
    eventually(lambda: queue_empty(instance), "an empty queue")
    assert instance.stop() == 0


def test_two_members_forwarding_to_each_other_stop_with_forward_loop(
    make_instance: object, remote: SmtpSink
) -> None:
    instance = started(make_instance, remote, ALICE, BOB)
    instance.cli("forward", "add", ALICE, BOB)
    instance.cli("forward", "add", BOB, ALICE)
    assert submit(instance, ALICE, "round", BOB) == {}

    # bob forwards to alice (through our MX), alice back to bob, whose own Delivered-To is
    # on it: kept there with `forward.loop`, not forwarded again.
    eventually(lambda: (BOB, "forward.loop") in reasons(instance, BOB), "forward.loop")
    eventually(lambda: len(mailbox(instance, BOB)) == 2, "bob's two copies")
    assert len(mailbox(instance, ALICE)) == 1
    assert not remote.transactions
    loop = next(o for o in instance.outcomes("--account", BOB) if o["reason"] == "forward.loop")
    assert "not forwarded: forwarding loop" in str(loop["detail"])
    eventually(lambda: "fwd-" not in instance.cli("queue", "list"), "an empty queue")
    assert len(mailbox(instance, BOB)) == 2
    assert instance.stop() == 0
