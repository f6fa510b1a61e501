"""Members sending over submission: login only over TLS, their own sender addresses only,
sender domains that exist, no sending from blocklisted networks, per-account limits."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from email.message import EmailMessage

import pytest

from tests.e2e.conftest import Instance
from tests.e2e.mail import client_context, pop3_download

pytestmark = pytest.mark.e2e


def message(sender: str, to: str, subject: str = "hello") -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail.set_content("本文です。\n")
    return mail


def submission(instance: Instance, user: str = "alice@example.test") -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", instance.ports["submission"], timeout=30)
    client.starttls(context=client_context(instance.cert))
    client.login(user, instance.passwords[user])
    return client


def reasons(instance: Instance) -> list[str]:
    return [str(o["reason"]) for o in instance.outcomes()]


def test_member_sends_to_a_member_with_date_and_message_id_added(instance: Instance) -> None:
    with submission(instance) as client:
        mail = message("Alice <alice@example.test>", "bob@example.test")
        refused = client.sendmail(
            "alice@example.test", ["bob@example.test"], mail.as_bytes()
        )  # no Date, no Message-ID: the server adds them
        assert refused == {}
    [stored] = pop3_download(
        instance.ports["pop3"], "bob@example.test", instance.passwords["bob@example.test"]
    )
    assert b"with ESMTPSA id" in stored
    assert b"\r\nDate: " in stored
    assert b"\r\nMessage-ID: <" in stored
    assert b"@mx.example.test>" in stored


def test_no_relay_without_login(instance: Instance) -> None:
    with smtplib.SMTP("127.0.0.1", instance.ports["submission"], timeout=30) as client:
        client.ehlo("client.example.test")
        code, text = client.mail("alice@example.test")
        assert code == 530
        assert text.startswith(b"5.7.0")


def test_login_refused_before_tls_off_loopback(make_instance: object) -> None:
    instance: Instance = make_instance("allow_plaintext_on_loopback = false\n")  # type: ignore[operator]
    instance.add_user("alice@example.test")
    instance.start()
    password = instance.passwords["alice@example.test"]
    with smtplib.SMTP("127.0.0.1", instance.ports["submission"], timeout=30) as client:
        client.ehlo("client.example.test")
        assert "auth" not in client.esmtp_features  # not even offered before TLS
        code, text = client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==")
        assert (code, text[:8]) == (538, b"5.7.11 E")
        client.starttls(context=client_context(instance.cert))
        client.ehlo("client.example.test")
        assert "PLAIN" in client.esmtp_features["auth"]
        client.login("alice@example.test", password)
    with smtplib.SMTP_SSL(
        "127.0.0.1",
        instance.ports["submissions"],
        context=client_context(instance.cert),
        timeout=30,
    ) as client:
        client.login("alice@example.test", password)  # implicit TLS counts as TLS
    assert instance.stop() == 0


def test_wrong_password_is_refused_and_recorded(instance: Instance) -> None:
    with smtplib.SMTP("127.0.0.1", instance.ports["submission"], timeout=30) as client:
        client.starttls(context=client_context(instance.cert))
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login("alice@example.test", "wrong")
        assert refused.value.smtp_code == 535
    assert "auth.failed" in reasons(instance)


def test_sender_must_be_the_members_own(instance: Instance) -> None:
    instance.cli("alias", "add", "info@example.test", "alice@example.test")
    with submission(instance) as client:
        code, text = client.mail("bob@example.test")
        assert (code, text) == (553, b"5.7.1 Sender address not owned by user")
        client.rset()
        # An alias that delivers to alice is hers to send as.
        client.sendmail(
            "info@example.test",
            ["bob@example.test"],
            message("info@example.test", "bob@example.test").as_bytes(),
        )
        # The envelope is hers, the From: header is not.
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(
                "alice@example.test",
                ["bob@example.test"],
                message("Bob <bob@example.test>", "bob@example.test").as_bytes(),
            )
        assert refused.value.smtp_code == 553
    assert reasons(instance).count("sender.not_owned") == 2


def test_sender_domain_must_exist(make_instance: object) -> None:
    instance: Instance = make_instance()  # type: ignore[operator]
    instance.cli("domain", "add", "nodns.test")  # hosted here, but absent from DNS
    instance.add_user("carol@nodns.test")
    instance.start()
    with submission(instance, "carol@nodns.test") as client:
        code, text = client.mail("carol@nodns.test")
        assert (code, text) == (553, b"5.1.8 Sender address domain not found: nodns.test")
    [outcome] = [o for o in instance.outcomes() if o["reason"] == "sender.domain_unknown"]
    assert outcome["direction"] == "out"
    assert instance.stop() == 0


def test_recipient_syntax_and_local_unknown(instance: Instance) -> None:
    with submission(instance) as client:
        client.mail("alice@example.test")
        assert client.rcpt("not an address@@")[0] == 501
        code, text = client.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")
        assert client.rcpt("friend@remote.test")[0] == 250


def test_sending_limits(make_instance: object) -> None:
    instance: Instance = make_instance(  # type: ignore[operator]
        "\n[submission]\nmessages_per_hour = 2\nrecipients_per_message = 2\nflag_after = 2\n"
    )
    instance.add_user("alice@example.test")
    instance.add_user("bob@example.test")
    instance.start()
    with submission(instance) as client:
        client.mail("alice@example.test")
        assert client.rcpt("bob@example.test")[0] == 250
        assert client.rcpt("friend@remote.test")[0] == 250
        assert client.rcpt("other@remote.test") == (452, b"4.5.3 Error: too many recipients")
        client.rset()
        for n in range(2):
            client.sendmail(
                "alice@example.test",
                ["bob@example.test"],
                message("alice@example.test", "bob@example.test", f"n{n}").as_bytes(),
            )
        code, text = client.mail("alice@example.test")
        assert (code, text) == (451, b"4.7.1 Sending limit exceeded, try again later")
    limited = [o for o in instance.outcomes() if o["reason"] == "rate.limited"]
    assert len(limited) == 2
    assert "messages per hour: 2 sent, limit 2" in {str(o["detail"]) for o in limited}
    # Two limit hits within a day: flagged for the admins, bob is not.
    users = {line.split()[0]: line for line in instance.cli("user", "list").splitlines()[1:]}
    assert "sending limits hit 2x in 24h" in users["alice@example.test"]
    assert "sending limits" not in users["bob@example.test"]
    assert instance.stop() == 0
    assert "account flagged: sending limits hit 2 times in 24h" in instance.log()


def test_blocklisted_client_network(make_instance: object) -> None:
    instance: Instance = make_instance(  # type: ignore[operator]
        '\n[submission.dnsbl]\nzones = ["bl.example.net"]\n'
    )
    instance.dns.zone.add("1.0.0.127.bl.example.net", "A", "127.0.0.2")
    instance.dns.zone.add("1.0.0.127.bl.example.net", "TXT", "https://bl.example.net/127.0.0.1")
    instance.add_user("alice@example.test")
    instance.start()
    with submission(instance) as client:
        code, text = client.mail("alice@example.test")
        assert code == 554
        assert text == (
            b"5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.example.net; "
            b"send from the webmail or from your network's own mail server"
        )
    [outcome] = [o for o in instance.outcomes() if o["reason"] == "dnsbl.listed"]
    assert "127.0.0.2" in str(outcome["detail"])
    assert instance.stop() == 0


def test_swaks_submission_with_auth_and_starttls(instance: Instance) -> None:
    if shutil.which("swaks") is None:
        pytest.skip("swaks not installed (scripts/install-test-deps.sh installs it)")
    result = subprocess.run(
        [
            "swaks", "--server", f"127.0.0.1:{instance.ports['submission']}", "--tls",
            "--auth", "PLAIN", "--auth-user", "alice@example.test",
            "--auth-password", instance.passwords["alice@example.test"],
            "--from", "alice@example.test", "--to", "bob@example.test",
            "--header", "Subject: via swaks",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0 Authentication successful" in result.stdout
    [stored] = pop3_download(
        instance.ports["pop3"], "bob@example.test", instance.passwords["bob@example.test"]
    )
    assert b"Subject: via swaks" in stored


def test_dkim_signature_verifies_against_the_published_record(instance: Instance) -> None:
    import re

    import dkim
    import dns.resolver

    printed = instance.cli("dkim", "generate", "example.test", "--selector", "s1")
    value = re.search(r"^  value  (v=DKIM1; .*)$", printed, re.MULTILINE)
    assert value is not None
    instance.dns.zone.add("s1._domainkey.example.test", "TXT", value.group(1))
    with submission(instance) as client:
        client.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            message("Alice <alice@example.test>", "bob@example.test", "signed").as_bytes(),
        )
    [stored] = pop3_download(
        instance.ports["pop3"], "bob@example.test", instance.passwords["bob@example.test"]
    )
    assert b"DKIM-Signature: v=1; a=rsa-sha256;" in stored
    unfolded = stored.replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    signature = re.search(rb"^DKIM-Signature: (.*)$", unfolded, re.MULTILINE)
    assert signature is not None
    tags = dict(tag.strip().split(b"=", 1) for tag in signature.group(1).split(b";") if b"=" in tag)
    assert (tags[b"d"], tags[b"s"]) == (b"example.test", b"s1")

    # Verify as a receiving provider would: the key fetched over DNS (our test server).
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [instance.dns.host]
    resolver.port = instance.dns.port

    def txt(name: bytes, timeout: int = 5) -> bytes:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(r.strings) for r in answer)

    assert dkim.verify(stored, dnsfunc=txt)
    tampered = stored.replace(b"signed", b"changed")
    assert not dkim.verify(tampered, dnsfunc=txt)


def test_a_members_reject_list_holds_for_mail_from_a_fellow_member(instance: Instance) -> None:
    """受信拒否 applies whoever sends: bob rejects alice, alice's submission is refused at
    RCPT with the rule's reply, and both histories say why."""
    instance.cli("rules", "add", "bob@example.test", "alice@example.test")
    with submission(instance) as client:
        mail = message("alice@example.test", "bob@example.test")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("alice@example.test", ["bob@example.test"], mail.as_bytes())
        code, _ = refused.value.recipients["bob@example.test"]
        assert code == 550
        # Another recipient in the same message still gets it.
        assert client.sendmail(
            "alice@example.test", ["bob@example.test", "alice@example.test"], mail.as_bytes()
        ) == {"bob@example.test": (code, refused.value.recipients["bob@example.test"][1])}
    rule_rejects = [o for o in instance.outcomes() if o["reason"] == "rule.reject"]
    assert {o["direction"] for o in rule_rejects} == {"in", "out"}
    assert (
        pop3_download(
            instance.ports["pop3"], "bob@example.test", instance.passwords["bob@example.test"]
        )
        == []
    )
