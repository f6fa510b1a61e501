"""SPF (RFC 7208) evaluated against the loopback DNS server through our resolver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tayori.dns.resolver import DnsPythonResolver
from tayori.mailauth.spf import check_host
from tayori.testing.dns_server import DnsServer, Zone


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    zone = Zone()
    zone.add("plain.test", "TXT", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
    zone.add("soft.test", "TXT", "v=spf1 ~all")
    zone.add("neutral.test", "TXT", "v=spf1 ?all")
    zone.add("mx.test", "TXT", "v=spf1 mx a:host.mx.test/24 -all")
    zone.add("mx.test", "MX", "10 mail.mx.test")
    zone.add("mail.mx.test", "A", "198.51.100.7")
    zone.add("host.mx.test", "A", "203.0.113.1")
    zone.add("inc.test", "TXT", "v=spf1 include:plain.test -all")
    zone.add("redir.test", "TXT", "v=spf1 redirect=plain.test")
    zone.add("two.test", "TXT", ["v=spf1 -all"])
    zone.add("two.test", "TXT", "v=spf1 +all")
    zone.add("macro.test", "TXT", "v=spf1 exists:%{ir}.%{l}._spf.macro.test -all")
    zone.add("2.2.0.192.alice._spf.macro.test", "A", "127.0.0.2")
    zone.add("missinginclude.test", "TXT", "v=spf1 include:nothing.test -all")
    zone.add("helo.test", "TXT", "v=spf1 ip4:192.0.2.10 -all")
    loop = " ".join(f"include:l{i}.test" for i in range(11))
    zone.add("many.test", "TXT", f"v=spf1 {loop} -all")
    for i in range(11):
        zone.add(f"l{i}.test", "TXT", "v=spf1 -all")
    zone.add("void.test", "TXT", "v=spf1 a:v1.test a:v2.test a:v3.test -all")
    zone.add("bad.test", "TXT", "v=spf1 frobnicate -all")
    with DnsServer(zone) as server:
        yield server


@pytest.fixture
def resolver(dns: DnsServer) -> DnsPythonResolver:
    return DnsPythonResolver(dns.settings(timeout=1.0))


@pytest.mark.parametrize(
    ("ip", "sender", "result"),
    [
        ("192.0.2.2", "a@plain.test", "pass"),
        ("2001:db8::25", "a@plain.test", "pass"),
        ("::ffff:192.0.2.2", "a@plain.test", "pass"),
        ("198.51.100.1", "a@plain.test", "fail"),
        ("198.51.100.1", "a@soft.test", "softfail"),
        ("198.51.100.1", "a@neutral.test", "neutral"),
        ("198.51.100.1", "a@nospf.test", "none"),
        ("198.51.100.7", "a@mx.test", "pass"),
        ("203.0.113.200", "a@mx.test", "pass"),
        ("203.0.114.1", "a@mx.test", "fail"),
        ("192.0.2.2", "a@inc.test", "pass"),
        ("198.51.100.1", "a@inc.test", "fail"),
        ("192.0.2.2", "a@redir.test", "pass"),
        ("192.0.2.2", "a@two.test", "permerror"),
        ("192.0.2.2", "alice@macro.test", "pass"),
        ("192.0.2.2", "bob@macro.test", "fail"),
        ("192.0.2.2", "a@missinginclude.test", "permerror"),
        ("192.0.2.2", "a@many.test", "permerror"),
        ("192.0.2.2", "a@void.test", "permerror"),
        ("192.0.2.2", "a@bad.test", "permerror"),
        ("192.0.2.10", "", "pass"),
        ("192.0.2.11", "", "fail"),
    ],
)
def test_check_host(resolver: DnsPythonResolver, ip: str, sender: str, result: str) -> None:
    outcome = asyncio.run(check_host(resolver, ip, sender, "helo.test"))
    assert outcome.result == result, outcome


def test_null_sender_uses_the_helo_domain(resolver: DnsPythonResolver) -> None:
    outcome = asyncio.run(check_host(resolver, "192.0.2.10", "", "helo.test"))
    assert outcome.domain == "helo.test"


def test_dns_failure_is_temperror(dns: DnsServer, resolver: DnsPythonResolver) -> None:
    dns.zone.fail("plain.test")
    outcome = asyncio.run(check_host(resolver, "192.0.2.2", "a@plain.test", "h.test"))
    assert outcome.result == "temperror"
