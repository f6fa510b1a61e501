"""`tayori trace --from/--to`: what would happen, run through the pipeline `serve` builds
(`app.inbound_pipeline`) against the loopback DNS server and a real SQLite store.

(tests/unit/test_trace.py is about the trace *headers* of delivery.trace; this is the admin's
"what would happen" of diagnostics.trace.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tayori.app import inbound_pipeline
from tayori.auth.passwords import hash_password
from tayori.config.loader import settings_from_mapping
from tayori.diagnostics.trace import WhatWouldHappen, what_would_happen
from tayori.dns.resolver import DnsPythonResolver
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.testing.dns_server import DnsServer, Zone

ALICE = "alice@example.test"
ORIGIN = "127.0.0.2"
"""The sender's real server: forward-confirmed, in sender.test's SPF, on the DNSBL."""
RELAY = "127.0.0.7"
"""Our backup MX: listed too, no PTR, in nobody's SPF."""


def zone() -> Zone:
    z = Zone()
    z.add("example.test", "MX", "10 mx.example.test")
    z.add("2.0.0.127.in-addr.arpa", "PTR", "mail.sender.test")
    z.add("mail.sender.test", "A", ORIGIN)
    z.add("sender.test", "MX", "10 mail.sender.test")
    z.add("sender.test", "TXT", f"v=spf1 ip4:{ORIGIN} -all")
    for ip in (ORIGIN, RELAY):
        z.add(".".join(reversed(ip.split("."))) + ".bl.test", "A", "127.0.0.2")
    return z


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    migrate("", tmp_path)
    opened = open_stores("", tmp_path)
    opened.metadata.add_domain("example.test")
    opened.metadata.add_account(ALICE, hash_password("pw"), 0)
    try:
        yield opened
    finally:
        opened.close()


def trace(
    stores: Stores, dns: DnsServer, root: Path, ip: str, message: bytes | None = None
) -> WhatWouldHappen:
    settings = settings_from_mapping(
        {
            "server": {"data_dir": str(root), "hostname": "mx.example.test"},
            "inbound": {
                "trusted_networks": [RELAY],
                "spf_action": "reject",
                "dnsbl": {"zones": [{"zone": "bl.test", "action": "reject"}]},
            },
        }
    )
    resolver = DnsPythonResolver(dns.settings(timeout=1.0))
    pipeline, member_rules = inbound_pipeline(settings, stores, resolver)
    return asyncio.run(
        what_would_happen(
            pipeline,
            member_rules,
            stores.metadata,
            stores.rules,
            settings.limits,
            sender="news@sender.test",
            recipient=ALICE,
            ip=ip,
            helo="mail.sender.test",
            message=message,
        )
    )


def steps(report: WhatWouldHappen) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s.stage, s.name): s.to_json() for s in report.steps}


RELAYED = (
    f"Received: from mail.sender.test (mail.sender.test [{ORIGIN}])\r\n"
    "\tby backup.example.test with ESMTP id 1; Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    "From: <news@sender.test>\r\nTo: <alice@example.test>\r\nSubject: news\r\n"
    "Message-ID: <news-1@sender.test>\r\n\r\nHello.\r\n"
).encode()


def test_trusted_relay_shows_the_note_serve_records(stores: Stores, tmp_path: Path) -> None:
    with DnsServer(zone()) as dns:
        direct = trace(stores, dns, tmp_path, ORIGIN, RELAYED)
        relayed = trace(stores, dns, tmp_path, RELAY, RELAYED)
    # Straight from the listed host: refused by the DNSBL, and no relay note.
    assert steps(direct)[("connect", "dnsbl bl.test")]["action"] == "reject"
    assert "relay.trusted" not in {s.reason for s in direct.steps}
    assert direct.results[0]["reason"] == "dnsbl.listed"
    # The same message through the trusted relay: the note, none of the relay's checks, and
    # SPF for the host the relay's Received names.
    by_step = steps(relayed)
    note = by_step[("connect", "trusted relay")]
    assert (note["action"], note["reason"]) == ("accept", "relay.trusted")
    assert f"{RELAY} in trusted network {RELAY}/32" in note["detail"]
    names = {name for _, name in by_step}
    assert not names & {"dnsbl bl.test", "fcrdns", "helo", "spf"}
    assert ("mail", "sender_domain") in by_step
    assert "spf=pass" in by_step[("data", "authentication")]["detail"]
    [result] = relayed.results
    assert (result["account"], result["result"], result["reason"]) == (ALICE, "INBOX", "delivered")


def test_relay_spf_failure_of_the_named_host_is_shown(stores: Stores, tmp_path: Path) -> None:
    forged = RELAYED.replace(ORIGIN.encode(), b"127.0.0.9")
    with DnsServer(zone()) as dns:
        report = trace(stores, dns, tmp_path, RELAY, forged)
    assert steps(report)[("connect", "trusted relay")]["reason"] == "relay.trusted"
    [result] = report.results
    assert (result["result"], result["reason"]) == ("refused", "auth.spf.fail")
    [spf] = [s for s in report.steps if s.reason == "auth.spf.fail"]
    assert "client [127.0.0.9] from the trusted relay's Received" in spf.detail
