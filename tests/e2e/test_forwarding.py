"""Forwarding (スーパーメール転送) through `tayori serve`: mail to a member over SMTP reaches the
forwarding address (a sink standing in for the other provider) with an SRS0 envelope sender
and the message byte for byte (its DKIM signature still verifies); keep-a-copy, skip spam,
the forwarding reject list, loops between two members, failing targets, and bounces to the
rewritten sender relayed to the original sender (or refused when forged)."""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Iterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tayori.testing.smtp_sink import SmtpSink
from tests.e2e.conftest import Instance
from tests.e2e.mail import as_sent, pop3_download
from tests.e2e.test_sending import ThreadedSink, eventually

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
BOB = "bob@example.test"
FRIEND = "friend@remote.test"


def message(subject: str, sender: str = "s@remote.test") -> bytes:
    return (
        f"From: Sender <{sender}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@remote.test>\r\n\r\n"
        f"Body of {subject}.\r\n"
    ).encode()


@pytest.fixture
def remote() -> Iterator[SmtpSink]:
    threaded = ThreadedSink()
    yield threaded.sink
    threaded.close()


def started(make_instance: object, remote: SmtpSink, *users: str) -> Instance:
    """An instance whose outbound mail goes to the sink, except mail for our own domain,
    which goes back to our own MX (as MX records would send it in production)."""
    instance: Instance = make_instance()  # type: ignore[operator]
    with instance.config.open("a") as config:
        config.write(
            f"\n[outbound]\nport = {remote.port}\nretry_initial = 0.2\nretry_max = 0.2\n"
            f'transport = {{ "example.test" = "127.0.0.1:{instance.ports["smtp"]}" }}\n'
        )
    for user in users:
        instance.add_user(user)
    instance.start()
    return instance


def send(
    instance: Instance, raw: bytes, sender: str = "s@remote.test", to: str = ALICE, *more: str
) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30) as client:
        client.ehlo("mx.remote.test")
        code, _ = client.mail(sender)
        assert code == 250
        for recipient in (to, *more):
            reply = client.rcpt(recipient)
            if reply[0] != 250:
                return reply
        return client.data(raw)


def mailbox(instance: Instance, user: str) -> list[bytes]:
    return pop3_download(instance.ports["pop3"], user, instance.passwords[user])


def reasons(instance: Instance, user: str) -> list[tuple[str, str]]:
    return [(str(o["recipient"]), str(o["reason"])) for o in instance.outcomes("--account", user)]


def test_forwarded_copy_keeps_the_signature_and_bounces_find_the_sender(
    make_instance: object, remote: SmtpSink
) -> None:
    instance = started(make_instance, remote, ALICE)
    instance.cli("forward", "add", ALICE, FRIEND)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = f"v=DKIM1; p={base64.b64encode(public).decode()}".encode()
    raw = message("signed")
    signed = dkim.sign(raw, b"sel", b"remote.test", private) + raw
    assert send(instance, signed)[0] == 250

    eventually(lambda: len(remote.transactions) == 1, "the forwarded copy at the sink")
    [copy] = remote.transactions
    assert copy.rcpt_tos == (FRIEND,)
    assert copy.mail_from.startswith("SRS0=")
    assert copy.mail_from.endswith("=remote.test=s@example.test")
    # Only our trace headers on top; the message itself byte for byte.
    assert copy.data.startswith(f"Delivered-To: {ALICE}\r\nReceived: ".encode())
    assert copy.data.endswith(as_sent(signed))
    assert dkim.verify(copy.data, dnsfunc=lambda name, timeout=5: record)
    # A copy is kept here (the default), and the result is the member's outcome.
    [kept] = mailbox(instance, ALICE)
    assert kept.endswith(as_sent(signed))
    eventually(lambda: (FRIEND, "forward.sent") in reasons(instance, ALICE), "forward.sent")
    assert (ALICE, "delivered") in reasons(instance, ALICE)

    # The other provider bounces it to the rewritten sender: relayed to the original sender.
    report = b"From: MAILER-DAEMON@remote.test\r\nSubject: Undelivered\r\n\r\nGone.\r\n"
    assert send(instance, report, sender="", to=copy.mail_from)[0] == 250
    eventually(lambda: len(remote.transactions) == 2, "the bounce relayed to the sender")
    relayed = remote.transactions[1]
    assert (relayed.mail_from, relayed.rcpt_tos) == ("<>", ("s@remote.test",))
    assert relayed.data.endswith(report)

    # Forged (hash changed) or made up: refused, with a reason.
    local, _, domain = copy.mail_from.partition("@")
    forged_hash = local[:5] + ("A" if local[5] != "A" else "B") + local[6:]
    code, text = send(instance, report, sender="", to=f"{forged_hash}@{domain}")
    assert code == 550
    assert b"invalid SRS address" in text
    refused = [o for o in instance.outcomes() if o["reason"] == "srs.invalid"]
    assert refused
    assert "wrong hash" in str(refused[0]["detail"])
    assert instance.stop() == 0


def test_keep_copy_off_skip_spam_and_the_forwarding_reject_list(
    make_instance: object, remote: SmtpSink
) -> None:
    instance = started(make_instance, remote, ALICE, BOB)
    instance.cli("forward", "add", ALICE, FRIEND)
    instance.cli("forward", "set", ALICE, "--no-keep-copy")
    instance.cli("rules", "add", ALICE, "junk@remote.test", "--action", "junk")
    instance.cli("rules", "add", ALICE, "private@remote.test", "--list", "forward")

    assert send(instance, message("junk one", "junk@remote.test"), "junk@remote.test")[0] == 250
    assert (
        send(instance, message("private", "private@remote.test"), "private@remote.test")[0] == 250
    )
    # One transaction for a forwarding member and one who does not: one commit, one 250.
    assert send(instance, message("plain"), "s@remote.test", ALICE, BOB)[0] == 250

    eventually(lambda: (FRIEND, "forward.sent") in reasons(instance, ALICE), "forward.sent")
    assert [t.data.split(b"Subject: ")[1].split(b"\r\n")[0] for t in remote.transactions] == [
        b"plain"
    ]
    # Not forwarded: the private one stays in the inbox even without keep-a-copy, the spam
    # in Junk (which POP3 never shows); the forwarded one is not kept.
    [inbox] = mailbox(instance, ALICE)
    assert b"Subject: private" in inbox
    [bobs] = mailbox(instance, BOB)
    assert b"Subject: plain" in bobs
    outcomes = {str(o["reason"]): str(o["detail"]) for o in instance.outcomes("--account", ALICE)}
    assert "not forwarded: judged spam" in outcomes["rule.junk"]
    assert "not forwarded: forwarding reject rule" in outcomes["delivered"]
    assert "queue_id=fwd-" in outcomes["forward.queued"]
    assert "SRS0=" in outcomes["forward.queued"]
    assert instance.stop() == 0


def test_two_members_forwarding_to_each_other_stop_with_forward_loop(
    make_instance: object, remote: SmtpSink
) -> None:
    instance = started(make_instance, remote, ALICE, BOB)
    instance.cli("forward", "add", ALICE, BOB)
    instance.cli("forward", "add", BOB, ALICE)
    assert send(instance, message("round"))[0] == 250

    eventually(lambda: (ALICE, "forward.loop") in reasons(instance, ALICE), "forward.loop")
    # alice: the original and the copy that came round (kept, not forwarded again); bob: one.
    eventually(lambda: len(mailbox(instance, ALICE)) == 2, "alice's two copies")
    assert len(mailbox(instance, BOB)) == 1
    assert not remote.transactions
    loop = next(o for o in instance.outcomes("--account", ALICE) if o["reason"] == "forward.loop")
    assert "not forwarded: forwarding loop" in str(loop["detail"])
    eventually(lambda: "fwd-" not in instance.cli("queue", "list"), "an empty queue")
    assert instance.stop() == 0


def test_refused_forwarding_fails_counts_and_flags_the_target(
    make_instance: object, remote: SmtpSink
) -> None:
    gone = "gone@remote.test"
    remote.rcpt_replies[gone] = f"550 5.1.1 <{gone}>: User unknown"
    instance = started(make_instance, remote, ALICE)
    instance.cli("forward", "add", ALICE, gone)
    for number in range(1, 4):
        assert send(instance, message(f"attempt {number}"))[0] == 250

        def failed(count: int = number) -> bool:
            found = [r for r in reasons(instance, ALICE) if r == (gone, "forward.failed")]
            return len(found) == count

        eventually(failed, f"forward.failed number {number}")
        if number < 3:
            assert "keeps bouncing" not in instance.cli("forward", "list", ALICE)
    eventually(
        lambda: (gone, "forward.target_failing") in reasons(instance, ALICE), "the flag outcome"
    )
    assert "keeps bouncing" in instance.cli("forward", "list", ALICE)
    # The original sender is told (the report to the SRS sender is routed back to them).
    eventually(lambda: len(remote.transactions) == 3, "three reports to the sender")
    assert {t.rcpt_tos for t in remote.transactions} == {("s@remote.test",)}
    assert all(t.mail_from == "<>" for t in remote.transactions)
    assert len(mailbox(instance, ALICE)) == 3  # the copies kept here are unaffected
    assert instance.stop() == 0
