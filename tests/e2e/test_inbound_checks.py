"""Inbound checks through `tayori serve`, with the loopback DNS server answering: DNSBL,
FCrDNS, sender domain, SPF/DKIM/DMARC, Authentication-Results and forged headers."""

from __future__ import annotations

import base64
import smtplib
from email import message_from_bytes

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.conftest import Instance
from tests.e2e.mail import pop3_download

pytestmark = pytest.mark.e2e

MESSAGE = (
    b"From: Sender <s@remote.test>\r\nTo: alice@example.test\r\nSubject: checks\r\n"
    b"Message-ID: <checks@remote.test>\r\n\r\nHello.\r\n"
)


def rcpt_reply(instance: Instance, sender: str, recipient: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30) as client:
        client.ehlo("mx.remote.test")
        code, _ = client.mail(sender)
        assert code == 250
        return client.rcpt(recipient)


def send(instance: Instance, message: bytes, sender: str = "s@remote.test") -> None:
    with smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30) as client:
        client.ehlo("mx.remote.test")
        client.sendmail(sender, ["alice@example.test"], message)


def stored(instance: Instance) -> list[bytes]:
    return pop3_download(
        instance.ports["pop3"], "alice@example.test", instance.passwords["alice@example.test"]
    )


def test_dnsbl_listed_client_is_refused_with_an_outcome(make_instance: object) -> None:
    inst: Instance = make_instance('[inbound.dnsbl]\nzones = [{ zone = "bl.test" }]\n')  # type: ignore[operator]
    inst.dns.zone.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    inst.add_user("alice@example.test")
    inst.start()
    code, text = rcpt_reply(inst, "s@remote.test", "alice@example.test")
    assert (code, text) == (
        554,
        b"5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.test",
    )
    [outcome] = inst.outcomes()
    assert (outcome["reason"], outcome["outcome"], outcome["recipient"]) == (
        "dnsbl.listed",
        "rejected",
        "alice@example.test",
    )
    assert inst.stop() == 0


def test_fcrdns_strict_mode_tempfails(make_instance: object) -> None:
    inst: Instance = make_instance('[inbound]\nfcrdns_action = "tempfail"\n')  # type: ignore[operator]
    inst.dns.zone.remove("1.0.0.127.in-addr.arpa")
    inst.dns.zone.add("1.0.0.127.in-addr.arpa", "PTR", "liar.remote.test")
    inst.dns.zone.add("liar.remote.test", "A", "192.0.2.1")
    inst.add_user("alice@example.test")
    inst.start()
    code, text = rcpt_reply(inst, "s@remote.test", "alice@example.test")
    assert code == 450
    assert text.startswith(b"4.7.25 ")
    assert [o["reason"] for o in inst.outcomes()] == ["fcrdns.failed"]
    assert inst.stop() == 0


def test_unknown_sender_domain_is_refused(instance: Instance) -> None:
    code, text = rcpt_reply(instance, "someone@nowhere.test", "alice@example.test")
    assert (code, text) == (550, b"5.1.8 Sender address rejected: Domain not found")
    [outcome] = instance.outcomes()
    assert outcome["reason"] == "sender.domain_unknown"


def test_dmarc_reject_policy_files_in_junk(instance: Instance) -> None:
    instance.dns.zone.add("_dmarc.bank.test", "TXT", "v=DMARC1; p=reject")
    forged = MESSAGE.replace(b"From: Sender <s@remote.test>", b"From: Bank <info@bank.test>")
    send(instance, forged)
    [outcome] = instance.outcomes()
    assert (outcome["outcome"], outcome["reason"]) == ("junked", "auth.dmarc.fail")
    assert stored(instance) == []  # POP3 sees the inbox only


def test_dmarc_reject_when_configured(make_instance: object) -> None:
    inst: Instance = make_instance('[inbound]\ndmarc_reject_action = "reject"\n')  # type: ignore[operator]
    inst.dns.zone.add("_dmarc.bank.test", "TXT", "v=DMARC1; p=reject")
    inst.add_user("alice@example.test")
    inst.start()
    forged = MESSAGE.replace(b"From: Sender <s@remote.test>", b"From: Bank <info@bank.test>")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(inst, forged)
    assert refused.value.smtp_code == 550
    [outcome] = inst.outcomes()
    assert (outcome["outcome"], outcome["reason"]) == ("rejected", "auth.dmarc.fail")
    assert inst.stop() == 0


def test_signed_mail_gets_authentication_results_and_forgeries_are_removed(
    instance: Instance,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    zone = instance.dns.zone
    zone.add("sel._domainkey.remote.test", "TXT", f"v=DKIM1; p={base64.b64encode(public).decode()}")
    zone.add("remote.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    zone.add("_dmarc.remote.test", "TXT", "v=DMARC1; p=reject")
    forged = (
        b"Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\n"
        b"X-Spam-Status: No, score=-100\r\n"
    )
    signature = dkim.sign(MESSAGE, b"sel", b"remote.test", private)
    send(instance, forged + signature + MESSAGE)
    tampered = signature + MESSAGE.replace(b"Hello.", b"Hello!")
    send(instance, tampered)
    first, second = (message_from_bytes(m) for m in stored(instance))
    [results] = first.get_all("Authentication-Results")
    assert results.startswith("mx.example.test;")
    flat = " ".join(results.split())
    assert "iprev=pass" in flat
    assert "spf=pass smtp.mailfrom=s@remote.test" in flat
    assert "dkim=pass header.d=remote.test header.s=sel" in flat
    assert "dmarc=pass header.from=remote.test" in flat
    assert first.get_all("X-Spam-Status") == ["No, score=0.0 tests=none"]
    # The tampered copy still passes DMARC through aligned SPF, but its signature fails.
    assert "dkim=fail" in " ".join(second["Authentication-Results"].split())
    assert "auth.dkim.fail" in second["X-Spam-Status"]
    # The Received header names the client by its confirmed reverse DNS.
    assert "(mx.remote.test [127.0.0.1])" in " ".join(first["Received"].split())


def test_member_reject_list_refuses_at_rcpt(instance: Instance) -> None:
    instance.cli("rules", "add", "alice@example.test", "pest@remote.test")
    code, text = rcpt_reply(instance, "pest@remote.test", "alice@example.test")
    assert (code, text) == (550, b"5.7.1 Message refused by the recipient's reject settings")
    # bob has no such rule: the same sender reaches him.
    assert rcpt_reply(instance, "pest@remote.test", "bob@example.test")[0] == 250
    [outcome] = instance.outcomes()
    assert (outcome["reason"], outcome["recipient"]) == ("rule.reject", "alice@example.test")


def test_member_rules_on_from_decide_per_recipient_at_data(instance: Instance) -> None:
    instance.cli("rules", "add", "alice@example.test", "remote.test", "--action", "junk")
    instance.cli("rules", "add", "bob@example.test", "s@remote.test", "--field", "from")
    with smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30) as client:
        client.ehlo("mx.remote.test")
        refused = client.sendmail(
            "other@remote.test", ["alice@example.test", "bob@example.test"], MESSAGE
        )
    assert refused == {}
    kinds = {(o["recipient"], o["outcome"], o["reason"]) for o in instance.outcomes()}
    assert kinds == {
        ("alice@example.test", "junked", "rule.junk"),
        ("bob@example.test", "rejected", "rule.reject"),
    }
    assert stored(instance) == []
