"""`[inbound] trusted_networks` through `tayori serve`: a sender's server on a DNSBL is refused
when it connects itself, while the same message handed to us by our trusted backup MX is
accepted; the relay is not judged (DNSBL, FCrDNS, HELO, SPF on the connection), SPF is checked
for the host the relay's Received field names, and the outcome says `relay.trusted`.

Clients bind to other 127.0.0.x source addresses (Linux routes all of 127/8 to loopback), so
the server sees the backup MX's own address."""

from __future__ import annotations

import smtplib
from email import message_from_bytes

import pytest

from tests.e2e.conftest import Instance
from tests.e2e.mail import pop3_download

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
SENDER = "s@remote.test"
ORIGIN = "127.0.0.1"
"""The sender's own server: forward-confirmed (mx.remote.test), in remote.test's SPF, and on
the DNSBL."""
RELAY = "127.0.0.7"
"""Our backup MX: trusted; on the DNSBL too, with no PTR, in nobody's SPF."""
CONFIG = (
    f'[inbound]\ntrusted_networks = ["{RELAY}"]\nspf_action = "reject"\n'
    'fcrdns_action = "reject"\n\n'
    '[inbound.dnsbl]\nzones = [{ zone = "bl.test", action = "reject" }]\n'
)


def message(subject: str, origin: str = ORIGIN, host: str = "mx.remote.test") -> bytes:
    """What the backup MX hands on: its own Received on top, naming who connected to it."""
    return (
        f"Received: from {host} ({host} [{origin}])\r\n"
        f"\tby backup.example.net (Postfix) with ESMTP id 4AB12;\r\n"
        f"\tFri, 27 Nov 2026 10:00:00 +0000 (UTC)\r\n"
        f"From: Sender <{SENDER}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@remote.test>\r\n\r\nHello.\r\n"
    ).encode()


def client(instance: Instance, source: str, helo: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30, source_address=(source, 0))
    smtp.ehlo(helo)
    return smtp


def test_listed_sender_refused_directly_but_accepted_through_the_trusted_relay(
    make_instance: object,
) -> None:
    inst: Instance = make_instance(CONFIG)  # type: ignore[operator]
    zone = inst.dns.zone
    for ip in (ORIGIN, RELAY):
        zone.add(".".join(reversed(ip.split("."))) + ".bl.test", "A", "127.0.0.2")
    zone.add("remote.test", "TXT", f"v=spf1 ip4:{ORIGIN} -all")
    inst.add_user(ALICE)
    inst.start()

    # Straight from the listed server: refused at RCPT, as always.
    with client(inst, ORIGIN, "mx.remote.test") as direct:
        assert direct.mail(SENDER)[0] == 250
        code, text = direct.rcpt(ALICE)
    assert (code, text) == (
        554,
        f"5.7.1 Service unavailable; client [{ORIGIN}] blocked using bl.test".encode(),
    )

    # The same message through the backup MX: accepted, though the relay is listed too, has
    # no PTR and says a HELO of nobody's.
    with client(inst, RELAY, "backup.example.net") as relay:
        relay.sendmail(SENDER, [ALICE], message("relayed"))

    by_subject = {o["subject"]: o for o in inst.outcomes()}
    refused, delivered = by_subject[""], by_subject["relayed"]
    assert (refused["reason"], refused["remote_ip"]) == ("dnsbl.listed", ORIGIN)
    assert (delivered["outcome"], delivered["reason"]) == ("delivered", "delivered")
    assert delivered["remote_ip"] == RELAY
    detail = str(delivered["detail"])
    assert f"relay.trusted: {RELAY} in trusted network {RELAY}/32" in detail
    for judged in ("dnsbl.listed", "fcrdns.failed", "helo.invalid", "auth.spf"):
        assert judged not in detail

    [stored] = pop3_download(inst.ports["pop3"], ALICE, inst.passwords[ALICE])
    [results] = message_from_bytes(stored).get_all("Authentication-Results")
    flat = " ".join(results.split())
    # SPF of the host the relay received it from, not of the relay.
    assert f"spf=pass smtp.mailfrom={SENDER}" in flat
    assert "iprev=" not in flat

    # A Received naming a host remote.test's SPF does not list: SPF fails for *that* host,
    # and spf_action = "reject" refuses the message at DATA, still without judging the relay.
    with (
        client(inst, RELAY, "backup.example.net") as relay,
        pytest.raises(smtplib.SMTPDataError) as caught,
    ):
        relay.sendmail(SENDER, [ALICE], message("forged", "127.0.0.9", "liar.test"))
    assert caught.value.smtp_code == 550
    forged, *_ = inst.outcomes()  # newest first
    assert (forged["outcome"], forged["reason"]) == ("rejected", "auth.spf.fail")
    assert forged["remote_ip"] == RELAY
    assert f"relay.trusted: {RELAY}" in str(forged["detail"])
    assert "client [127.0.0.9] from the trusted relay's Received" in str(forged["detail"])
    assert inst.stop() == 0
