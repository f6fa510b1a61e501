"""Quota and size limits answered with the right replies, and recorded as outcomes."""

from __future__ import annotations

import signal
import smtplib
import socket

import pytest

from tests.e2e.conftest import Instance
from tests.e2e.mail import pop3_download

pytestmark = pytest.mark.e2e


def message(size: int) -> bytes:
    head = b"From: s@remote.test\r\nTo: carol@example.test\r\nSubject: size test\r\n\r\n"
    line = b"x" * 70 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def test_quota_refuses_at_rcpt_and_at_data(make_instance: object) -> None:
    instance: Instance = make_instance()  # type: ignore[operator]
    instance.add_user("carol@example.test", quota="20KB")
    instance.add_user("dave@example.test")
    instance.start()
    port = instance.ports["smtp"]
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.remote.test")
        # Too big for what is left and no SIZE= declared: refused at end of DATA.
        assert client.mail("s@remote.test")[0] == 250
        assert client.rcpt("carol@example.test")[0] == 250
        assert client.data(message(30_000)) == (
            552,
            b"5.2.2 <carol@example.test>: Mailbox full - User quota might be exceeded",
        )
        # smtplib declares SIZE= itself: refused at RCPT.
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("s@remote.test", ["carol@example.test"], message(30_000))
        # Fits: delivered, and now the mailbox is nearly full.
        client.sendmail("s@remote.test", ["carol@example.test"], message(15_000))
        # SIZE= declared: refused at RCPT, so the other recipient still gets it.
        client.ehlo("client.remote.test")
        client.mail("s@remote.test", ["SIZE=10000"])
        code, text = client.rcpt("carol@example.test")
        assert (code, text[:6]) == (552, b"5.2.2 ")
        assert client.rcpt("dave@example.test")[0] == 250
        assert client.data(message(10_000))[0] == 250
    carol = pop3_download(
        instance.ports["pop3"], "carol@example.test", instance.passwords["carol@example.test"]
    )
    assert len(carol) == 1
    rejected = [
        o
        for o in instance.outcomes("--account", "carol@example.test")
        if o["outcome"] == "rejected"
    ]
    assert [o["reason"] for o in rejected] == ["rcpt.over_quota"] * 3
    usage = instance.cli("user", "list")
    assert "carol@example.test" in usage
    assert instance.stop() == 0


def test_message_size_limit(make_instance: object) -> None:
    instance: Instance = make_instance('[limits]\nmax_message_size = "50KB"\n')  # type: ignore[operator]
    instance.add_user("carol@example.test")
    instance.start()
    with smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30) as client:
        client.ehlo("client.remote.test")
        assert client.esmtp_features["size"] == "50000"
        code, text = client.mail("s@remote.test", ["SIZE=60000"])
        assert (code, text) == (552, b"5.3.4 Message size exceeds fixed limit")
        client.rset()
        # No SIZE= declared: the limit applies at end of DATA.
        assert client.mail("s@remote.test")[0] == 250
        assert client.rcpt("carol@example.test")[0] == 250
        assert client.data(message(70_000)) == (552, b"5.3.4 Message size exceeds fixed limit")
        client.sendmail("s@remote.test", ["carol@example.test"], message(40_000))
    reasons = [o["reason"] for o in instance.outcomes()]
    assert reasons.count("size.exceeded") == 2  # at MAIL (SIZE=) and at end of DATA
    assert reasons.count("delivered") == 1
    assert instance.stop() == 0


def test_bare_lf_dot_does_not_end_data(instance: Instance) -> None:
    """SMTP smuggling: <LF>.<LF> and <CR>.<CR> inside DATA are content, never the end."""
    with socket.create_connection(("127.0.0.1", instance.ports["smtp"]), timeout=30) as sock:
        reader = sock.makefile("rb")

        def command(line: bytes) -> bytes:
            sock.sendall(line)
            return reader.readline()

        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"EHLO smuggler.remote.test\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        assert command(b"MAIL FROM:<s@remote.test>\r\n").startswith(b"250")
        assert command(b"RCPT TO:<alice@example.test>\r\n").startswith(b"250")
        assert command(b"DATA\r\n").startswith(b"354")
        smuggled = (
            b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@remote.test>\r\n"
            b"more\r.\rRCPT TO:<bob@example.test>\r\n.\r\n"
        )
        assert command(smuggled).startswith(b"250 2.0.0")
        assert command(b"QUIT\r\n").startswith(b"221")
    [stored] = pop3_download(
        instance.ports["pop3"], "alice@example.test", instance.passwords["alice@example.test"]
    )
    assert b"MAIL FROM:<evil@remote.test>" in stored
    assert (
        pop3_download(
            instance.ports["pop3"], "bob@example.test", instance.passwords["bob@example.test"]
        )
        == []
    )


def test_sigterm_tempfails_idle_sessions_and_exits_cleanly(instance: Instance) -> None:
    client = smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30)
    client.ehlo("client.remote.test")
    assert instance.stop() == 0
    code, text = client.getreply()
    assert code == 421
    assert b"4.3.2" in text
    client.close()


def test_sigterm_lets_a_message_in_flight_finish(instance: Instance) -> None:
    """A session mid-DATA at SIGTERM is finished (250, then 421), not cut off."""
    with socket.create_connection(("127.0.0.1", instance.ports["smtp"]), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"HELO client.remote.test\r\n")
        assert reader.readline().startswith(b"250 ")
        sock.sendall(b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert reader.readline().startswith(b"250")
        assert reader.readline().startswith(b"250")
        assert reader.readline().startswith(b"354")
        sock.sendall(b"Subject: in flight\r\n\r\nfirst half\r\n")
        assert instance.process is not None
        instance.process.send_signal(signal.SIGTERM)
        # The server says it is stopping once it has started to (stdout), then we finish.
        assert instance.process.stdout is not None
        while "stopping" not in instance.process.stdout.readline():
            pass
        sock.sendall(b"second half\r\n.\r\n")
        assert reader.readline().startswith(b"250 2.0.0 Ok: queued as ")
        assert reader.readline().startswith(b"421 4.3.2 ")
    assert instance.wait() == 0
    instance.start()
    [stored] = pop3_download(
        instance.ports["pop3"], "alice@example.test", instance.passwords["alice@example.test"]
    )
    assert stored.endswith(b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n")


def test_connections_per_ip_are_limited(make_instance: object) -> None:
    instance: Instance = make_instance("[limits]\nmax_connections_per_ip = 3\n")  # type: ignore[operator]
    instance.start()
    open_sessions = [
        smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30) for _ in range(3)
    ]
    with socket.create_connection(("127.0.0.1", instance.ports["smtp"]), timeout=30) as sock:
        assert sock.makefile("rb").readline().startswith(b"421 4.7.0 Too many connections")
    open_sessions.pop().quit()
    with smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30) as again:
        assert again.noop()[0] == 250
    for session in open_sessions:
        session.quit()
    assert instance.stop() == 0
