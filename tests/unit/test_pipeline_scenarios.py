"""Pipeline scenarios, one table row each: (envelope, message, DNS zone, member settings,
policy overrides) -> per-recipient outcome, reason code and SMTP reply.

Every row goes through the real inbound MX as `tayori serve` builds it — `app.inbound_pipeline`
(every check step, the runner, members' reject lists, safe senders, the spam block) behind the
real `InboundHandler` and `SmtpListener`, delivering into a real SQLite store — with a real
resolver asking the loopback DNS server (`tayori.testing.dns_server`). Nothing is patched.
The server runs in-process (one listener per row, a fresh resolver so no answer is cached
between rows); clients connect from 127.0.0.N source addresses, so each row has its own
client IP for DNSBL, FCrDNS, SPF and trusted networks.

What a row asserts per recipient: where the message went (`inbox`, `junk`) or that it was
refused (`rejected` 5xx, `tempfail` 4xx), the outcome's reason code, the reply (what the
sender's server was told, or the refusal recorded for a member refused at DATA while others
got the message), the stage that told it (`rcpt` / `data`), reasons that must or must not be in
the recorded detail, and fragments of our Authentication-Results header.
"""

from __future__ import annotations

import asyncio
import base64
import email
import smtplib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tayori.app import inbound_pipeline
from tayori.auth.passwords import hash_password
from tayori.config.loader import settings_from_mapping
from tayori.delivery.committer import DeliveryCommitter
from tayori.delivery.local import LocalDelivery
from tayori.dns.resolver import DnsPythonResolver
from tayori.rules.model import NewRule, RuleAction, RuleField, RuleList, RuleOwner, Sensitivity
from tayori.servers.limits import ConnectionLimiter
from tayori.servers.smtp_inbound import InboundHandler
from tayori.servers.smtp_session import SmtpListener
from tayori.spam.engine import SpamEngine
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.records import SpecialUse
from tayori.testing.dns_server import DnsServer, Zone

DATA = Path(__file__).resolve().parents[1] / "data" / "scenarios"
HOSTNAME = "mx.example.test"

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
PRIVATE = _KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
PUBLIC = base64.b64encode(
    _KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()

GOOD = "127.0.0.2"
"""The sender's real server: PTR and A agree, SPF of sender.test lists it."""
FORGER = "127.0.0.4"
"""Forward-confirmed too, but in nobody's SPF: SPF fails for sender.test."""
NO_PTR = "127.0.0.3"
LISTED = "127.0.0.5"
"""On bl.test (127.0.0.2), forward-confirmed, in SPF: only the DNSBL finds it."""
REFUSED = "127.0.0.6"
"""bl.test answers 127.255.255.254 ("query refused") for it: not a listing."""
RELAY = "127.0.0.7"
"""The ISP's backup MX: listed, no PTR, in no SPF; trusted when a row says so."""


def base_zone(zone: Zone | None = None) -> Zone:
    """The records every row starts from (into `zone`, or a new one)."""
    zone = Zone() if zone is None else zone
    for ip, host in ((GOOD, "mail.sender.test"), (FORGER, "bad.forger.test")):
        zone.add(".".join(reversed(ip.split("."))) + ".in-addr.arpa", "PTR", host)
        zone.add(host, "A", ip)
    zone.add("5.0.0.127.in-addr.arpa", "PTR", "mail.sender.test")
    zone.add("mail.sender.test", "A", LISTED)
    zone.add("6.0.0.127.in-addr.arpa", "PTR", "mail.sender.test")
    zone.add("mail.sender.test", "A", REFUSED)
    zone.add("sender.test", "MX", "10 mail.sender.test")
    zone.add("sender.test", "TXT", f"v=spf1 ip4:{GOOD} ip4:{LISTED} ip4:{REFUSED} -all")
    zone.add("soft.test", "MX", "10 mail.sender.test")
    zone.add("soft.test", "TXT", f"v=spf1 ip4:{GOOD} ~all")
    zone.add("forger.test", "A", FORGER)
    zone.add("nullmx.test", "MX", "0 .")
    zone.add("sel._domainkey.sender.test", "TXT", f"v=DKIM1; k=rsa; p={PUBLIC}")
    zone.add("sel._domainkey.other.test", "TXT", f"v=DKIM1; k=rsa; p={PUBLIC}")
    zone.add("other.test", "A", GOOD)
    zone.add("5.0.0.127.bl.test", "A", "127.0.0.2")
    zone.add("5.0.0.127.bl.test", "TXT", "listed: see https://bl.test/")
    zone.add("7.0.0.127.bl.test", "A", "127.0.0.2")
    zone.add("6.0.0.127.bl.test", "A", "127.255.255.254")
    return zone


SPAM = (
    b"From: Deals <deals@sender.test>\r\nSubject: cheap pills casino winner\r\n\r\n"
    b"buy cheap pills now viagra casino jackpot winner click here\r\n"
)
HAM = (
    b"From: Boss <boss@sender.test>\r\nSubject: meeting agenda\r\n\r\n"
    b"the meeting agenda for tomorrow morning is attached, see you in the office\r\n"
)


@dataclass(frozen=True)
class Member:
    """One recipient account and its own settings."""

    local: str = "alice"
    reject: tuple[tuple[str, RuleAction, RuleField], ...] = ()
    """Reject-list rules: (pattern, reject|junk, any|envelope|from)."""
    safe: tuple[str, ...] = ()
    spam: bool = True
    sensitivity: Sensitivity = Sensitivity.STANDARD


@dataclass(frozen=True)
class Expect:
    result: str
    """inbox | junk | rejected | tempfail"""
    reason: str
    """The outcome's reason code (`delivered` for the INBOX)."""
    reply: str = "250"
    """The start of the reply: code and enhanced code."""
    at: str = ""
    """For refusals: `rcpt` or `data`, where the sender's server was told."""
    also: tuple[str, ...] = ()
    """Reason codes that must appear in the recorded detail too."""
    absent: tuple[str, ...] = ()
    """Reason codes that must not appear in it."""
    detail: tuple[str, ...] = ()
    """Other fragments of the recorded detail."""
    auth: tuple[str, ...] = ()
    """Fragments of our Authentication-Results header (delivered copies)."""
    not_auth: tuple[str, ...] = ()
    """Fragments that must not be in it."""


@dataclass(frozen=True)
class Scenario:
    id: str
    expect: Expect | dict[str, Expect]
    """One Expect for a single member, or one per member's local part."""
    ip: str = GOOD
    helo: str = "mail.sender.test"
    sender: str = "news@sender.test"
    from_header: str = "News <news@sender.test>"
    body: bytes = b"Hello, this is the monthly newsletter.\r\n"
    file: str = ""
    """A message under tests/data/scenarios instead of the built one."""
    sign: str = ""
    """DKIM-sign as this domain (selector `sel`)."""
    tamper: bool = False
    """Change the body after signing."""
    received_from: str = ""
    """`HELO [IP]`: a Received field on top, as a relay adds for the host that sent to it."""
    zone: tuple[tuple[str, str, str], ...] = ()
    """Records added to the base zone for this row."""
    servfail: tuple[str, ...] = ()
    """Names (`name` or `name/TYPE`) the server answers SERVFAIL for."""
    inbound: dict[str, Any] = field(default_factory=dict)
    """[inbound] keys, as in the TOML file."""
    members: tuple[Member, ...] = (Member(),)


def dnsbl(action: str) -> dict[str, Any]:
    return {"dnsbl": {"zones": [{"zone": "bl.test", "action": action, "weight": 4.0}]}}


DMARC_REJECT = (("_dmarc.sender.test", "TXT", "v=DMARC1; p=reject"),)
DMARC_QUARANTINE = (("_dmarc.sender.test", "TXT", "v=DMARC1; p=quarantine"),)
FORGED = {"ip": FORGER, "helo": "bad.forger.test"}
"""SPF fails for sender.test (and with it DMARC, unsigned)."""

SCENARIOS: list[Scenario] = [
    Scenario(
        "clean",
        Expect(
            "inbox",
            "delivered",
            auth=("iprev=pass", "spf=pass smtp.mailfrom=news@sender.test", "dkim=none"),
        ),
    ),
    # --- DNSBL: every action --------------------------------------------------------------
    Scenario(
        "dnsbl-reject",
        Expect("rejected", "dnsbl.listed", "554 5.7.1", "rcpt"),
        ip=LISTED,
        inbound=dnsbl("reject"),
    ),
    Scenario(
        "dnsbl-tempfail",
        Expect("tempfail", "dnsbl.listed", "451 4.7.1", "rcpt"),
        ip=LISTED,
        inbound=dnsbl("tempfail"),
    ),
    Scenario("dnsbl-junk", Expect("junk", "dnsbl.listed"), ip=LISTED, inbound=dnsbl("junk")),
    Scenario(
        "dnsbl-score",
        Expect("inbox", "delivered", also=("dnsbl.listed",)),
        ip=LISTED,
        inbound=dnsbl("score"),
    ),
    Scenario(
        "dnsbl-ignore",
        Expect("inbox", "delivered", absent=("dnsbl.listed",)),
        ip=LISTED,
        inbound=dnsbl("ignore"),
    ),
    Scenario(
        "dnsbl-query-refused-is-no-listing",
        Expect("inbox", "delivered", absent=("dnsbl.listed",)),
        ip=REFUSED,
        inbound=dnsbl("reject"),
    ),
    # --- FCrDNS ---------------------------------------------------------------------------
    Scenario(
        "fcrdns-reject",
        Expect("rejected", "fcrdns.failed", "550 5.7.25", "rcpt", auth=()),
        ip=NO_PTR,
        inbound={"fcrdns_action": "reject"},
    ),
    Scenario(
        "fcrdns-tempfail-strict",
        Expect("tempfail", "fcrdns.failed", "450 4.7.25", "rcpt"),
        ip=NO_PTR,
        inbound={"fcrdns_action": "tempfail"},
    ),
    Scenario(
        "fcrdns-junk",
        Expect("junk", "fcrdns.failed", auth=("iprev=fail",)),
        ip=NO_PTR,
        inbound={"fcrdns_action": "junk"},
    ),
    Scenario(
        "fcrdns-score-default",
        Expect("inbox", "delivered", also=("fcrdns.failed",), auth=("iprev=fail",)),
        ip=NO_PTR,
    ),
    Scenario(
        "fcrdns-ignore",
        Expect("inbox", "delivered", absent=("fcrdns.failed",), auth=("iprev=fail",)),
        ip=NO_PTR,
        inbound={"fcrdns_action": "ignore"},
    ),
    Scenario(
        "fcrdns-dns-failure-never-rejects",
        Expect("tempfail", "fcrdns.failed", "450 4.7.25", "rcpt"),
        ip=NO_PTR,
        servfail=("3.0.0.127.in-addr.arpa",),
        inbound={"fcrdns_action": "reject"},
    ),
    # --- HELO -----------------------------------------------------------------------------
    Scenario(
        "helo-reject-syntax",
        Expect("rejected", "helo.invalid", "550 5.5.2", "rcpt"),
        helo="bad_name!",
        inbound={"helo_action": "reject"},
    ),
    Scenario(
        "helo-tempfail-our-own-name",
        Expect("tempfail", "helo.invalid", "450 4.5.2", "rcpt"),
        helo=HOSTNAME,
        inbound={"helo_action": "tempfail"},
    ),
    Scenario(
        "helo-reject-our-own-address",
        Expect("rejected", "helo.invalid", "550 5.5.2", "rcpt"),
        helo="[127.0.0.1]",
        inbound={"helo_action": "reject"},
    ),
    Scenario(
        "helo-junk", Expect("junk", "helo.invalid"), helo="-x-", inbound={"helo_action": "junk"}
    ),
    Scenario(
        "helo-score-default", Expect("inbox", "delivered", also=("helo.invalid",)), helo="-x-"
    ),
    Scenario(
        "helo-ignore",
        Expect("inbox", "delivered", absent=("helo.invalid",)),
        helo="-x-",
        inbound={"helo_action": "ignore"},
    ),
    # --- sender domain --------------------------------------------------------------------
    Scenario(
        "sender-domain-nxdomain-default",
        Expect("rejected", "sender.domain_unknown", "550 5.1.8", "rcpt"),
        sender="someone@nowhere.test",
    ),
    Scenario(
        "sender-domain-null-mx",
        Expect("rejected", "sender.domain_unknown", "550 5.7.27", "rcpt"),
        sender="someone@nullmx.test",
    ),
    Scenario(
        "sender-domain-dns-failure-is-450",
        Expect("tempfail", "sender.domain_unknown", "450 4.1.8", "rcpt"),
        sender="someone@broken.test",
        servfail=("broken.test",),
    ),
    Scenario(
        "sender-domain-tempfail",
        Expect("tempfail", "sender.domain_unknown", "450 4.1.8", "rcpt"),
        sender="someone@nowhere.test",
        inbound={"sender_domain_action": "tempfail"},
    ),
    Scenario(
        "sender-domain-junk",
        Expect("junk", "sender.domain_unknown"),
        sender="someone@nowhere.test",
        inbound={"sender_domain_action": "junk"},
    ),
    Scenario(
        "sender-domain-score",
        Expect("inbox", "delivered", also=("sender.domain_unknown",)),
        sender="someone@nowhere.test",
        inbound={"sender_domain_action": "score"},
    ),
    Scenario(
        "sender-domain-ignore",
        Expect("inbox", "delivered", absent=("sender.domain_unknown",)),
        sender="someone@nowhere.test",
        inbound={"sender_domain_action": "ignore"},
    ),
    Scenario(
        "null-sender-has-no-domain-to-check",
        Expect("inbox", "delivered", auth=("spf=none smtp.helo=mail.sender.test",)),
        sender="",
        from_header="Mail Delivery System <mailer-daemon@sender.test>",
    ),
    # --- SPF ------------------------------------------------------------------------------
    Scenario(
        "spf-reject-at-rcpt",
        Expect("rejected", "auth.spf.fail", "550 5.7.23", "rcpt"),
        inbound={"spf_action": "reject"},
        **FORGED,
    ),
    Scenario(
        "spf-tempfail",
        Expect("tempfail", "auth.spf.fail", "450 4.7.23", "rcpt"),
        inbound={"spf_action": "tempfail"},
        **FORGED,
    ),
    Scenario(
        "spf-junk",
        Expect("junk", "auth.spf.fail", auth=("spf=fail smtp.mailfrom=news@sender.test",)),
        inbound={"spf_action": "junk"},
        **FORGED,
    ),
    Scenario(
        "spf-score-default",
        Expect("inbox", "delivered", also=("auth.spf.fail",), auth=("spf=fail",)),
        **FORGED,
    ),
    Scenario(
        "spf-ignore",
        Expect("inbox", "delivered", absent=("auth.spf.fail",), auth=("spf=fail",)),
        inbound={"spf_action": "ignore"},
        **FORGED,
    ),
    Scenario(
        "spf-softfail-is-never-more-than-a-score",
        Expect("inbox", "delivered", also=("auth.spf.fail",), auth=("spf=softfail",)),
        sender="news@soft.test",
        inbound={"spf_action": "reject"},
        **FORGED,
    ),
    Scenario(
        "spf-temperror-decides-nothing",
        Expect("inbox", "delivered", absent=("auth.spf.fail",), auth=("spf=temperror",)),
        sender="news@flaky.test",
        zone=(("flaky.test", "MX", "10 mail.sender.test"),),
        servfail=("flaky.test/TXT",),
        inbound={"spf_action": "reject"},
    ),
    # --- DKIM -----------------------------------------------------------------------------
    Scenario(
        "dkim-pass",
        Expect("inbox", "delivered", auth=("dkim=pass header.d=sender.test header.s=sel",)),
        sign="sender.test",
    ),
    Scenario(
        "dkim-reject",
        Expect("rejected", "auth.dkim.fail", "550 5.7.20", "data"),
        sign="sender.test",
        tamper=True,
        inbound={"dkim_action": "reject"},
    ),
    Scenario(
        "dkim-tempfail",
        Expect("tempfail", "auth.dkim.fail", "450 4.7.20", "data"),
        sign="sender.test",
        tamper=True,
        inbound={"dkim_action": "tempfail"},
    ),
    Scenario(
        "dkim-junk",
        Expect("junk", "auth.dkim.fail", auth=("dkim=fail header.d=sender.test",)),
        sign="sender.test",
        tamper=True,
        inbound={"dkim_action": "junk"},
    ),
    Scenario(
        "dkim-score-default",
        Expect("inbox", "delivered", also=("auth.dkim.fail",), auth=("dkim=fail",)),
        sign="sender.test",
        tamper=True,
    ),
    Scenario(
        "dkim-ignore",
        Expect("inbox", "delivered", absent=("auth.dkim.fail",), auth=("dkim=fail",)),
        sign="sender.test",
        tamper=True,
        inbound={"dkim_action": "ignore"},
    ),
    # --- DMARC ----------------------------------------------------------------------------
    Scenario(
        "dmarc-pass-through-aligned-spf",
        Expect("inbox", "delivered", auth=("dmarc=pass header.from=sender.test",)),
        zone=DMARC_REJECT,
    ),
    Scenario(
        "dmarc-pass-through-aligned-dkim-despite-spf-fail",
        Expect("inbox", "delivered", also=("auth.spf.fail",), auth=("dmarc=pass", "spf=fail")),
        zone=DMARC_REJECT,
        sign="sender.test",
        **FORGED,
    ),
    Scenario(
        "dmarc-p-reject-junk-by-default",
        Expect("junk", "auth.dmarc.fail", also=("auth.spf.fail",), auth=("dmarc=fail",)),
        zone=DMARC_REJECT,
        **FORGED,
    ),
    Scenario(
        "dmarc-p-reject-reject",
        Expect("rejected", "auth.dmarc.fail", "550 5.7.1", "data"),
        zone=DMARC_REJECT,
        inbound={"dmarc_reject_action": "reject"},
        **FORGED,
    ),
    Scenario(
        "dmarc-p-reject-tempfail",
        Expect("tempfail", "auth.dmarc.fail", "450 4.7.1", "data"),
        zone=DMARC_REJECT,
        inbound={"dmarc_reject_action": "tempfail"},
        **FORGED,
    ),
    Scenario(
        "dmarc-p-reject-score",
        Expect("inbox", "delivered", also=("auth.dmarc.fail",)),
        zone=DMARC_REJECT,
        inbound={"dmarc_reject_action": "score"},
        **FORGED,
    ),
    Scenario(
        "dmarc-p-reject-ignore",
        Expect("inbox", "delivered", absent=("auth.dmarc.fail",), auth=("dmarc=fail",)),
        zone=DMARC_REJECT,
        inbound={"dmarc_reject_action": "ignore"},
        **FORGED,
    ),
    Scenario(
        "dmarc-p-quarantine-junk-by-default",
        Expect("junk", "auth.dmarc.fail", auth=("policy.dmarc=quarantine",)),
        zone=DMARC_QUARANTINE,
        **FORGED,
    ),
    Scenario(
        "dmarc-p-quarantine-reject",
        Expect("rejected", "auth.dmarc.fail", "550 5.7.1", "data"),
        zone=DMARC_QUARANTINE,
        inbound={"dmarc_quarantine_action": "reject"},
        **FORGED,
    ),
    Scenario(
        "dmarc-p-quarantine-tempfail",
        Expect("tempfail", "auth.dmarc.fail", "450 4.7.1", "data"),
        zone=DMARC_QUARANTINE,
        inbound={"dmarc_quarantine_action": "tempfail"},
        **FORGED,
    ),
    Scenario(
        "dmarc-p-quarantine-ignore",
        Expect("inbox", "delivered", absent=("auth.dmarc.fail",)),
        zone=DMARC_QUARANTINE,
        inbound={"dmarc_quarantine_action": "ignore"},
        **FORGED,
    ),
    Scenario(
        "dmarc-p-quarantine-score",
        Expect("inbox", "delivered", also=("auth.dmarc.fail",)),
        zone=DMARC_QUARANTINE,
        inbound={"dmarc_quarantine_action": "score"},
        **FORGED,
    ),
    Scenario(
        "dmarc-p-none-decides-nothing",
        Expect("inbox", "delivered", absent=("auth.dmarc.fail",), auth=("policy.dmarc=none",)),
        zone=(("_dmarc.sender.test", "TXT", "v=DMARC1; p=none"),),
        **FORGED,
    ),
    Scenario(
        "dmarc-unaligned-dkim-does-not-pass",
        Expect("junk", "auth.dmarc.fail", auth=("dkim=pass header.d=other.test", "dmarc=fail")),
        zone=DMARC_REJECT,
        sign="other.test",
        **FORGED,
    ),
    # --- DMARC pct= (RFC 7489 §6.6.4): failing mail left out gets the next weaker policy ----
    Scenario(
        "dmarc-pct-0-turns-reject-into-quarantine",
        Expect(
            "junk",
            "auth.dmarc.fail",
            detail=("p=reject pct=0: sampled out, quarantine applied",),
            auth=("dmarc=fail (p=reject pct=0: sampled out)", "policy.dmarc=quarantine"),
        ),
        zone=(("_dmarc.sender.test", "TXT", "v=DMARC1; p=reject; pct=0"),),
        inbound={"dmarc_reject_action": "reject"},
        **FORGED,
    ),
    Scenario(
        "dmarc-pct-0-turns-quarantine-into-none",
        Expect(
            "inbox",
            "delivered",
            absent=("auth.dmarc.fail",),
            auth=("(p=quarantine pct=0: sampled out)", "policy.dmarc=none"),
        ),
        zone=(("_dmarc.sender.test", "TXT", "v=DMARC1; p=quarantine; pct=0"),),
        **FORGED,
    ),
    Scenario(
        "dmarc-pct-100-applies-the-policy",
        Expect("rejected", "auth.dmarc.fail", "550 5.7.1", "data"),
        zone=(("_dmarc.sender.test", "TXT", "v=DMARC1; p=reject; pct=100"),),
        inbound={"dmarc_reject_action": "reject"},
        **FORGED,
    ),
    # --- trusted relays: no judging the relay as if it were the sender -------------------
    Scenario(
        "trusted-relay-skips-dnsbl-fcrdns-helo-spf",
        Expect(
            "inbox",
            "delivered",
            also=("relay.trusted",),
            absent=("dnsbl.listed", "fcrdns.failed", "helo.invalid", "auth.spf.fail"),
            auth=("dkim=pass header.d=sender.test", "dmarc=pass"),
            not_auth=("spf=", "iprev="),
        ),
        ip=RELAY,
        helo="-x-",
        sign="sender.test",
        zone=DMARC_REJECT,
        inbound={
            "trusted_networks": ["127.0.0.6/31"],
            "fcrdns_action": "reject",
            "helo_action": "reject",
            "spf_action": "reject",
            **dnsbl("reject"),
        },
    ),
    Scenario(
        "trusted-relay-spf-judges-the-host-it-received-from",
        Expect(
            "inbox",
            "delivered",
            also=("relay.trusted",),
            auth=("spf=pass smtp.mailfrom=news@sender.test", "dmarc=pass"),
        ),
        ip=RELAY,
        received_from=f"mail.sender.test [{GOOD}]",
        zone=DMARC_REJECT,
        inbound={"trusted_networks": ["127.0.0.7"], "spf_action": "reject", **dnsbl("reject")},
    ),
    Scenario(
        "trusted-relay-spf-fail-of-that-host-rejects-at-data",
        Expect(
            "rejected",
            "auth.spf.fail",
            "550 5.7.23",
            "data",
            detail=(f"client [{FORGER}] from the trusted relay's Received",),
        ),
        ip=RELAY,
        received_from=f"bad.forger.test [{FORGER}]",
        inbound={"trusted_networks": ["127.0.0.7"], "spf_action": "reject"},
    ),
    Scenario(
        "trusted-relay-dmarc-then-rests-on-dkim-alone",
        Expect("junk", "auth.dmarc.fail", also=("relay.trusted",)),
        ip=RELAY,
        zone=DMARC_REJECT,
        inbound={"trusted_networks": ["127.0.0.7"]},
    ),
    Scenario(
        "trusted-relay-still-checks-the-sender-domain",
        Expect("rejected", "sender.domain_unknown", "550 5.1.8", "rcpt"),
        ip=RELAY,
        sender="someone@nowhere.test",
        inbound={"trusted_networks": ["127.0.0.7"]},
    ),
    Scenario(
        "trusted-relay-still-applies-member-rules",
        Expect("rejected", "rule.reject", "550 5.7.1", "rcpt"),
        ip=RELAY,
        inbound={"trusted_networks": ["127.0.0.7"]},
        members=(Member(reject=(("sender.test", RuleAction.REJECT, RuleField.ANY),)),),
    ),
    Scenario(
        "relay-outside-the-trusted-networks-is-checked",
        Expect("rejected", "dnsbl.listed", "554 5.7.1", "rcpt"),
        ip=RELAY,
        inbound={"trusted_networks": ["127.0.0.8/30", "::1"], **dnsbl("reject")},
    ),
    # --- members: reject lists, safe senders, spam block ---------------------------------
    Scenario(
        "rule-reject-envelope-at-rcpt",
        Expect("rejected", "rule.reject", "550 5.7.1", "rcpt"),
        members=(Member(reject=(("sender.test", RuleAction.REJECT, RuleField.ANY),)),),
    ),
    Scenario(
        "rule-reject-from-header-at-data",
        Expect("rejected", "rule.reject", "550 5.7.1", "data"),
        from_header="Pest <pest@other.test>",
        members=(Member(reject=(("pest@other.test", RuleAction.REJECT, RuleField.FROM),)),),
    ),
    Scenario(
        "rule-junk",
        Expect("junk", "rule.junk"),
        members=(Member(reject=(("*@sender.test", RuleAction.JUNK, RuleField.ANY),)),),
    ),
    Scenario(
        "rule-of-one-member-leaves-the-other-alone",
        {
            "alice": Expect("rejected", "rule.reject", "550 5.7.1", "rcpt"),
            "bob": Expect("inbox", "delivered"),
        },
        members=(
            Member("alice", reject=(("news@sender.test", RuleAction.REJECT, RuleField.ANY),)),
            Member("bob"),
        ),
    ),
    Scenario(
        "rule-from-header-refuses-one-member-at-data-the-other-gets-it",
        {
            "alice": Expect("rejected", "rule.reject", "550 5.7.1", "data"),
            "bob": Expect("inbox", "delivered"),
        },
        members=(
            Member("alice", reject=(("news@sender.test", RuleAction.REJECT, RuleField.FROM),)),
            Member("bob"),
        ),
    ),
    Scenario(
        "spam-block-junks-spam",
        Expect("junk", "spam.junk"),
        file="spam.eml",
    ),
    Scenario(
        "spam-block-off",
        Expect("inbox", "delivered", absent=("spam.junk",)),
        file="spam.eml",
        members=(Member(spam=False),),
    ),
    Scenario(
        "safe-sender-skips-the-spam-block",
        Expect("inbox", "delivered", also=("safe_sender",), absent=("spam.junk",)),
        file="spam.eml",
        members=(Member(safe=("sender.test",)),),
    ),
    Scenario(
        "spam-block-per-member",
        {"alice": Expect("junk", "spam.junk"), "bob": Expect("inbox", "delivered")},
        file="spam.eml",
        members=(Member("alice"), Member("bob", spam=False)),
    ),
    Scenario(
        "ham-stays-in-the-inbox-at-high-sensitivity",
        Expect("inbox", "delivered", absent=("spam.junk",)),
        file="ham.eml",
        members=(Member(sensitivity=Sensitivity.HIGH),),
    ),
    # --- combinations: the most severe verdict wins, every reason is kept -----------------
    Scenario(
        "member-reject-beats-dnsbl-junk",
        Expect("rejected", "rule.reject", "550 5.7.1", "rcpt"),
        ip=LISTED,
        inbound=dnsbl("junk"),
        members=(Member(reject=(("sender.test", RuleAction.REJECT, RuleField.ENVELOPE),)),),
    ),
    Scenario(
        "dmarc-junk-is-not-undone-by-a-safe-sender",
        Expect("junk", "auth.dmarc.fail", also=("safe_sender",)),
        zone=DMARC_REJECT,
        members=(Member(safe=("news@sender.test",)),),
        **FORGED,
    ),
    Scenario(
        "connection-refusal-is-given-before-member-rules",
        Expect("rejected", "dnsbl.listed", "554 5.7.1", "rcpt"),
        ip=LISTED,
        inbound=dnsbl("reject"),
        members=(Member(safe=("news@sender.test",)),),
    ),
    Scenario(
        "checks-off-keeps-member-steps",
        Expect("junk", "rule.junk", absent=("dnsbl.listed", "auth.spf.fail")),
        ip=LISTED,
        inbound={"checks": False, **dnsbl("reject")},
        members=(Member(reject=(("sender.test", RuleAction.JUNK, RuleField.ANY),)),),
    ),
    Scenario(
        "japanese-message-from-file",
        Expect("inbox", "delivered", auth=("spf=pass",)),
        file="iso2022jp.eml",
    ),
]


# --- the harness ---------------------------------------------------------------------------


@dataclass
class Observed:
    result: str
    reason: str
    reply: str
    at: str
    detail: str
    auth: str


class Harness:
    """One store, one DNS server and one event loop for every row."""

    def __init__(self, root: Path, dns: DnsServer) -> None:
        self.root = root
        self.dns = dns
        migrate("", root)
        self.stores: Stores = open_stores("", root)
        self.committer = DeliveryCommitter(self.stores.metadata)
        self.committer.start()
        self.delivery = LocalDelivery(
            self.stores.metadata, self.stores.blobs, self.committer, HOSTNAME
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.rows = 0
        self.password = hash_password("pw")  # once: argon2 is slow on purpose
        self._train()

    def _train(self) -> None:
        spam, ham = _read("spam.eml"), _read("ham.eml")
        examples = [(SPAM.replace(b"now", f"now {n}".encode()), True) for n in range(40)]
        examples += [(HAM.replace(b"morning", f"morning {n}".encode()), False) for n in range(40)]
        examples += [(spam.replace(b"today", f"today {n}".encode()), True) for n in range(5)]
        examples += [(ham.replace(b"Thanks", f"Thanks {n}".encode()), False) for n in range(5)]
        SpamEngine(self.stores.spam).learn_many(examples)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.committer.stop()
        self.stores.close()

    def _in_loop(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def run(self, row: Scenario) -> dict[str, Observed]:
        self.rows += 1
        domain = f"r{self.rows}.example.test"
        metadata, rules = self.stores.metadata, self.stores.rules
        metadata.add_domain(domain)
        addresses: dict[str, str] = {}
        for member in row.members:
            address = f"{member.local}@{domain}"
            account = metadata.add_account(address, self.password, 0)
            addresses[member.local] = address
            owner = RuleOwner.account(account.id)
            for pattern, action, where in member.reject:
                rules.add_rule(owner, NewRule(RuleList.REJECT, pattern, action, where))
            for pattern in member.safe:
                rules.add_rule(owner, NewRule(RuleList.SAFE, pattern))
            rules.set_spam_settings(account.id, enabled=member.spam, sensitivity=member.sensitivity)
        self._zone(row)
        settings = settings_from_mapping(
            {"server": {"data_dir": str(self.root), "hostname": HOSTNAME}, "inbound": row.inbound}
        )
        resolver = DnsPythonResolver(self.dns.settings(timeout=1.0))
        pipeline, member_rules = inbound_pipeline(settings, self.stores, resolver)
        handler = InboundHandler(
            metadata,
            self.delivery,
            settings.limits,
            pipeline,
            authserv_id=HOSTNAME,
            member_rules=member_rules,
        )
        listener = SmtpListener(
            handler,
            hostname=HOSTNAME,
            limits=settings.limits,
            ssl_context=None,
            limiter=ConnectionLimiter(100, 100),
        )
        server = self._in_loop(listener.start("127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        try:
            told = self._send(row, port, list(addresses.values()))
        finally:
            self._in_loop(listener.close(grace=1))
        return {local: self._observe(address, told) for local, address in addresses.items()}

    def _zone(self, row: Scenario) -> None:
        zone = self.dns.zone
        zone.clear()
        base_zone(zone)
        for name, rdtype, value in row.zone:
            zone.add(name, rdtype, value)
        for name in row.servfail:
            owner, _, rdtype = name.partition("/")
            zone.fail(owner, "servfail", rdtype or None)

    def _send(self, row: Scenario, port: int, recipients: list[str]) -> dict[str, Any]:
        """The SMTP dialogue; returns what each RCPT and the DATA were answered."""
        message = build_message(row, recipients)
        told: dict[str, Any] = {}
        with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(row.ip, 0)) as client:
            client.ehlo(row.helo)
            code, text = client.mail(row.sender or "<>")
            assert code == 250, (code, text)
            accepted = []
            for address in recipients:
                code, text = client.rcpt(address)
                told[address] = f"{code} {text.decode()}"
                if code == 250:
                    accepted.append(address)
            if accepted:
                code, text = client.data(message)
                told["DATA"] = f"{code} {text.decode()}"
        return told

    def _observe(self, address: str, told: dict[str, Any]) -> Observed:
        metadata = self.stores.metadata
        outcomes = [o.outcome for o in metadata.list_outcomes(recipient=address)]
        assert len(outcomes) == 1, [(o.outcome, o.reason) for o in outcomes]
        outcome = outcomes[0]
        account = metadata.get_account(address)
        assert account is not None
        filed = {
            use: metadata.list_messages(metadata.get_mailbox(account.id, use).id)
            for use in (SpecialUse.INBOX, SpecialUse.JUNK)
        }
        rcpt = told[address]
        at = "rcpt" if not rcpt.startswith("250") else "data"
        auth = ""
        if outcome.outcome in ("delivered", "junked"):
            where = SpecialUse.JUNK if outcome.outcome == "junked" else SpecialUse.INBOX
            assert len(filed[where]) == 1 and sum(len(m) for m in filed.values()) == 1
            with self.stores.blobs.open(filed[where][0].blob_ref) as stream:
                stored = email.message_from_bytes(stream.read())
            auth = " ".join(str(stored.get("Authentication-Results", "")).split())
            result = "junk" if where is SpecialUse.JUNK else "inbox"
            assert told.get("DATA", "").startswith("250"), told
            return Observed(result, outcome.reason, "250", "", outcome.detail, auth)
        assert outcome.outcome == "rejected", outcome
        assert not any(filed.values())
        if at == "data":  # the message was received: the outcome says which one it was
            assert outcome.subject and "@sender.test" in outcome.message_id, outcome
        result = "tempfail" if outcome.reply.startswith("4") else "rejected"
        wire = rcpt if at == "rcpt" else told["DATA"]
        if at == "rcpt" or not wire.startswith("250"):
            # The sender's server was told this very refusal (at RCPT, or at DATA when no
            # recipient was left); otherwise others got the message and it is recorded only.
            assert wire == outcome.reply, (wire, outcome.reply)
        return Observed(result, outcome.reason, outcome.reply, at, outcome.detail, auth)


def _read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def build_message(row: Scenario, recipients: list[str]) -> bytes:
    if row.file:
        message = _read(row.file).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    else:
        message = (
            f"From: {row.from_header}\r\nTo: {', '.join(recipients)}\r\n"
            f"Subject: scenario {row.id}\r\nDate: Fri, 27 Nov 2026 20:00:00 +0000\r\n"
            f"Message-ID: <{row.id}@sender.test>\r\n\r\n"
        ).encode() + row.body
    if row.sign:
        signature = dkim.sign(
            message,
            b"sel",
            row.sign.encode(),
            PRIVATE,
            include_headers=[b"from", b"to", b"subject", b"message-id"],
        )
        message = bytes(signature) + message
    if row.tamper:
        message = message.replace(b"newsletter", b"newsletter: send money")
    if row.received_from:
        helo, ip = row.received_from.split()
        message = (
            f"Received: from {helo} ({helo} {ip})\r\n\tby backup.example.jp (Postfix) with ESMTP"
            " id 4F1; Fri, 27 Nov 2026 20:00:00 +0000\r\n"
        ).encode() + message
    return message


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with DnsServer(base_zone()) as dns:
        running = Harness(tmp_path_factory.mktemp("scenarios"), dns)
        try:
            yield running
        finally:
            running.close()


@pytest.mark.parametrize("row", SCENARIOS, ids=[row.id for row in SCENARIOS])
def test_scenario(harness: Harness, row: Scenario) -> None:
    observed = harness.run(row)
    expected = row.expect if isinstance(row.expect, dict) else {row.members[0].local: row.expect}
    assert set(observed) == set(expected)
    for local, expect in expected.items():
        seen = observed[local]
        where = f"{row.id}/{local}: {seen}"
        assert (seen.result, seen.reason) == (expect.result, expect.reason), where
        assert seen.reply.startswith(expect.reply), where
        if expect.result in ("rejected", "tempfail"):
            assert seen.at == expect.at, where
        for code in expect.also:
            assert f"{code}:" in seen.detail or seen.detail.endswith(code), where
        for code in expect.absent:
            assert code not in seen.detail, where
        for fragment in expect.detail:
            assert fragment in seen.detail, where
        for fragment in expect.auth:
            assert fragment in seen.auth, where
        for fragment in expect.not_auth:
            assert fragment not in seen.auth, where


def test_every_check_step_is_tried_with_every_failure_action() -> None:
    """The table's coverage, so that a row removed by mistake is noticed: for each check, the
    rows named after it (`dnsbl-…`, `spf-…`) together run every failure action."""
    steps = {
        "dnsbl-": ("dnsbl", ""),
        "fcrdns-": ("fcrdns_action", "score"),
        "helo-": ("helo_action", "score"),
        "sender-domain-": ("sender_domain_action", "reject"),
        "spf-": ("spf_action", "score"),
        "dkim-": ("dkim_action", "score"),
        "dmarc-p-reject-": ("dmarc_reject_action", "junk"),
        "dmarc-p-quarantine-": ("dmarc_quarantine_action", "junk"),
    }
    tried: dict[str, set[str]] = {prefix: set() for prefix in steps}
    for row in SCENARIOS:
        for prefix, (key, default) in steps.items():
            if not row.id.startswith(prefix):
                continue
            if key == "dnsbl":
                tried[prefix].add(row.inbound["dnsbl"]["zones"][0]["action"])
            else:
                tried[prefix].add(row.inbound.get(key, default))
    everything = {"reject", "tempfail", "junk", "score", "ignore"}
    assert {prefix: everything - seen for prefix, seen in tried.items()} == {
        prefix: set() for prefix in steps
    }
