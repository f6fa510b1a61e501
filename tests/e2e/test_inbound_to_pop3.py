"""Mail in over SMTP, out over POP3, byte for byte, with real clients on loopback."""

from __future__ import annotations

import json
import poplib
import shutil
import smtplib
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.conftest import Instance
from tests.e2e.mail import as_sent, client_context, pop3_download, strip_trace

pytestmark = pytest.mark.e2e

MESSAGE = (
    b"From: Sender <sender@remote.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n"
    b"Message-ID: <first@remote.test>\r\n"
    b"\r\n"
    b"Hello\r\n.leading dot\r\n..two dots\r\n\r\n8-bit \xe3\x81\x82 and NUL \x00 bytes\r\n"
)


def smtp(instance: Instance) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30)


def test_smtplib_in_poplib_out_byte_identical(instance: Instance) -> None:
    with smtp(instance) as client:
        code, features = client.ehlo("client.remote.test")
        assert code == 250
        for extension in (
            b"SIZE",
            b"8BITMIME",
            b"SMTPUTF8",
            b"PIPELINING",
            b"ENHANCEDSTATUSCODES",
            b"STARTTLS",
        ):
            assert extension in features, extension
        refused = client.sendmail("sender@remote.test", ["alice@example.test"], MESSAGE)
        assert refused == {}
    [stored] = pop3_download(
        instance.ports["pop3"], "alice@example.test", instance.passwords["alice@example.test"]
    )
    assert strip_trace(stored) == MESSAGE
    assert stored.startswith(
        b"Return-Path: <sender@remote.test>\r\nDelivered-To: alice@example.test\r\n"
    )
    assert b"by mx.example.test (Tayori) with ESMTP id " in stored

    [outcome] = instance.outcomes("--account", "alice@example.test")
    # The help desk's command, run as an admin runs it, prints the same record.
    printed = instance.run_command("outcomes", "--account", "alice@example.test", "--json")
    assert json.loads(printed.splitlines()[0])["message_id"] == "<first@remote.test>"
    assert outcome["outcome"] == "delivered"
    assert outcome["reason"] == "delivered"
    assert outcome["sender"] == "sender@remote.test"
    assert outcome["message_id"] == "<first@remote.test>"
    assert outcome["subject"] == "こんにちは"
    assert str(outcome["reply"]).startswith("250 2.0.0 Ok: queued as ")


def test_rcpt_refusals_and_their_outcomes(instance: Instance) -> None:
    with smtp(instance) as client:
        client.ehlo("client.remote.test")
        client.mail("sender@remote.test")
        code, text = client.rcpt("nobody@example.test")
        assert (code, text) == (
            550,
            b"5.1.1 <nobody@example.test>: Recipient address rejected: User unknown",
        )
        code, text = client.rcpt("someone@elsewhere.test")
        assert (code, text) == (554, b"5.7.1 <someone@elsewhere.test>: Relay access denied")
        code, text = client.rcpt("Alice@Example.TEST")
        assert code == 250
        client.rset()
    reasons = {(o["recipient"], o["reason"], o["outcome"]) for o in instance.outcomes()}
    assert ("nobody@example.test", "rcpt.unknown", "rejected") in reasons
    assert ("someone@elsewhere.test", "relay.denied", "rejected") in reasons


def test_alias_delivers_to_each_member_once(instance: Instance) -> None:
    instance.cli("alias", "add", "team@example.test", "alice@example.test", "bob@example.test")
    with smtp(instance) as client:
        client.sendmail("sender@remote.test", ["team@example.test", "alice@example.test"], MESSAGE)
    for user in ("alice@example.test", "bob@example.test"):
        stored = pop3_download(instance.ports["pop3"], user, instance.passwords[user])
        assert len(stored) == 1
        assert stored[0].split(b"\r\n")[1] == f"Delivered-To: {user}".encode()


def test_swaks_with_starttls_then_fetchmail(instance: Instance, tmp_path: Path) -> None:
    if shutil.which("swaks") is None or shutil.which("fetchmail") is None:
        pytest.skip("swaks/fetchmail not installed (scripts/install-test-deps.sh installs them)")
    body = tmp_path / "message.eml"
    body.write_bytes(MESSAGE[:-2])  # swaks ends the data with its own CRLF
    result = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{instance.ports['smtp']}",
            "--tls",
            "--from",
            "sender@remote.test",
            "--to",
            "bob@example.test",
            "--data",
            f"@{body}",
            "--helo",
            "swaks.remote.test",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout

    out_dir = tmp_path / "fetched"
    out_dir.mkdir()
    rc = tmp_path / "fetchmailrc"
    password = instance.passwords["bob@example.test"]
    rc.write_text(
        f"poll 127.0.0.1 with proto POP3 port {instance.ports['pop3']}\n"
        f"  user 'bob@example.test' there with password '{password}'\n"
        f"  sslproto TLS1.2+ sslcertck sslcertfile {instance.cert}\n"
        "  sslcommonname mx.example.test\n"
    )
    rc.chmod(0o600)
    mda = f"/bin/sh -c 'cat > {out_dir}/$$.eml'"
    result = subprocess.run(
        [
            "fetchmail",
            "-f",
            str(rc),
            "--invisible",
            "--nosyslog",
            "-N",
            "--mda",
            mda,
            "--pidfile",
            str(tmp_path / "fetchmail.pid"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [fetched] = list(out_dir.iterdir())
    data = as_sent(fetched.read_bytes())
    assert strip_trace(data) == MESSAGE
    # fetchmail deletes what it fetched (no --keep): the maildrop is now empty.
    assert (
        pop3_download(
            instance.ports["pop3"], "bob@example.test", instance.passwords["bob@example.test"]
        )
        == []
    )


def test_pop3_stls_and_implicit_tls(instance: Instance) -> None:
    with smtp(instance) as client:
        client.starttls(context=client_context(instance.cert))
        client.ehlo("client.remote.test")
        assert "auth" not in client.esmtp_features  # the MX takes no logins, even over TLS
        client.sendmail("sender@remote.test", ["alice@example.test"], MESSAGE)
    password = instance.passwords["alice@example.test"]
    [stored] = pop3_download(
        instance.ports["pop3"], "alice@example.test", password, cert=instance.cert
    )
    assert b"with ESMTPS id" in stored
    assert b"(using TLSv1.3 with cipher" in stored
    client = poplib.POP3_SSL(
        "127.0.0.1", instance.ports["pop3s"], context=client_context(instance.cert), timeout=30
    )
    client.user("alice@example.test")
    client.pass_(password)
    assert client.stat()[0] == 1
    assert client.uidl(1).split()[2] == client.uidl().__getitem__(1)[0].split()[1]
    client.quit()


def test_pop3_maildrop_is_exclusive(instance: Instance) -> None:
    password = instance.passwords["alice@example.test"]
    first = poplib.POP3("127.0.0.1", instance.ports["pop3"], timeout=30)
    first.user("alice@example.test")
    first.pass_(password)
    second = poplib.POP3("127.0.0.1", instance.ports["pop3"], timeout=30)
    second.user("alice@example.test")
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(password)
    second.close()
    first.quit()


def test_bad_password_is_refused(instance: Instance) -> None:
    client = poplib.POP3("127.0.0.1", instance.ports["pop3"], timeout=30)
    client.user("alice@example.test")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        client.pass_("wrong")
    client.close()


def test_email_message_via_send_message_and_dele(instance: Instance) -> None:
    message = EmailMessage()
    message["From"] = "山田 <yamada@remote.test>"
    message["To"] = "alice@example.test"
    message["Subject"] = "日本語の件名"
    message.set_content("本文です。\n" * 50)
    with smtp(instance) as client:
        client.send_message(message)
        client.send_message(message)
    password = instance.passwords["alice@example.test"]
    assert (
        len(pop3_download(instance.ports["pop3"], "alice@example.test", password, delete=True)) == 2
    )
    assert pop3_download(instance.ports["pop3"], "alice@example.test", password) == []
    subjects = {o["subject"] for o in instance.outcomes("--account", "alice@example.test")}
    assert subjects == {"日本語の件名"}
