"""Checks on the connecting host and sender, against the loopback DNS server through our
resolver: DNSBL, FCrDNS, HELO, sender domain."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tayori.dns.resolver import DnsPythonResolver
from tayori.pipeline.checks.dnsbl import DnsblCheck
from tayori.pipeline.checks.fcrdns import FcrdnsCheck
from tayori.pipeline.checks.helo import HeloCheck, helo_problem
from tayori.pipeline.checks.sender_domain import SenderDomainCheck
from tayori.pipeline.steps import Client
from tayori.testing.dns_server import DnsServer, Zone


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    zone = Zone()
    zone.add("2.2.0.192.bl.test", "A", "127.0.0.2")
    zone.add("2.2.0.192.bl.test", "TXT", "https://bl.test/lookup?192.0.2.2")
    zone.add("3.2.0.192.bl.test", "A", "127.255.255.254")
    zone.add(
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test", "A", "127.0.0.4"
    )
    zone.add("5.2.0.192.in-addr.arpa", "PTR", "mail.sender.test")
    zone.add("mail.sender.test", "A", "192.0.2.5")
    zone.add("6.2.0.192.in-addr.arpa", "PTR", "liar.sender.test")
    zone.add("liar.sender.test", "A", "198.51.100.1")
    zone.add("sender.test", "MX", "10 mail.sender.test")
    zone.add("bare.test", "A", "192.0.2.9")
    zone.add("nullmx.test", "MX", "0 .")
    zone.add("txtonly.test", "TXT", "hello")
    with DnsServer(zone) as server:
        yield server


@pytest.fixture
def resolver(dns: DnsServer) -> DnsPythonResolver:
    return DnsPythonResolver(dns.settings(timeout=1.0))


def test_dnsbl_listing_with_the_exact_reply(resolver: DnsPythonResolver) -> None:
    failure = asyncio.run(DnsblCheck(resolver, "bl.test").check(Client("192.0.2.2")))
    assert failure is not None
    assert failure.reason == "dnsbl.listed"
    assert str(failure.reply) == (
        "554 5.7.1 Service unavailable; client [192.0.2.2] blocked using bl.test"
    )
    assert "127.0.0.2" in failure.detail
    assert "https://bl.test/lookup" in failure.detail


def test_dnsbl_ipv6_reversed_nibbles(resolver: DnsPythonResolver) -> None:
    failure = asyncio.run(DnsblCheck(resolver, "bl.test").check(Client("2001:db8::1")))
    assert failure is not None
    assert "127.0.0.4" in failure.detail


@pytest.mark.parametrize("ip", ["192.0.2.1", "192.0.2.3", "not-an-ip"])
def test_dnsbl_not_listed_or_refused_is_no_failure(resolver: DnsPythonResolver, ip: str) -> None:
    # 192.0.2.3 answers 127.255.255.254: "query refused", not a listing.
    assert asyncio.run(DnsblCheck(resolver, "bl.test").check(Client(ip))) is None


def test_fcrdns_confirmed(resolver: DnsPythonResolver) -> None:
    client = Client("192.0.2.5")
    assert asyncio.run(FcrdnsCheck(resolver).check(client)) is None
    assert client.verified_host == "mail.sender.test"
    assert client.notes["iprev"] == "pass"


@pytest.mark.parametrize("ip", ["192.0.2.6", "192.0.2.7"])
def test_fcrdns_failed(resolver: DnsPythonResolver, ip: str) -> None:
    client = Client(ip)
    failure = asyncio.run(FcrdnsCheck(resolver).check(client))
    assert failure is not None
    assert not failure.temporary
    assert str(failure.reply).startswith("450 4.7.25 ")
    assert client.verified_host == ""
    assert client.notes["iprev"] == "fail"


def test_fcrdns_dns_failure_is_temporary(dns: DnsServer, resolver: DnsPythonResolver) -> None:
    dns.zone.fail("5.2.0.192.in-addr.arpa")
    failure = asyncio.run(FcrdnsCheck(resolver).check(Client("192.0.2.5")))
    assert failure is not None
    assert failure.temporary


@pytest.mark.parametrize(
    ("helo", "problem"),
    [
        ("mail.sender.test", ""),
        ("[192.0.2.5]", ""),
        ("[IPv6:2001:db8::1]", ""),
        ("", "empty"),
        ("bad_name!", "invalid host name"),
        ("-lead.example", "invalid host name"),
        ("[300.1.1.1]", "invalid address literal"),
        ("MX.Example.Test", "our own name"),
        ("[203.0.113.25]", "our own address"),
    ],
)
def test_helo_sanity(helo: str, problem: str) -> None:
    found = helo_problem(helo, "192.0.2.5", {"mx.example.test", "203.0.113.25"})
    assert problem in found
    assert bool(found) == bool(problem)


def test_helo_check_reason() -> None:
    check = HeloCheck(frozenset({"mx.example.test"}))
    failure = asyncio.run(check.check(Client("192.0.2.5", helo="mx.example.test")))
    assert failure is not None
    assert failure.reason == "helo.invalid"


@pytest.mark.parametrize("sender", ["a@sender.test", "a@bare.test", "", "a@[192.0.2.1]"])
def test_sender_domain_exists(resolver: DnsPythonResolver, sender: str) -> None:
    assert (
        asyncio.run(SenderDomainCheck(resolver).check(Client("192.0.2.5", sender=sender))) is None
    )


@pytest.mark.parametrize(
    ("sender", "reply"),
    [
        ("a@nowhere.test", "550 5.1.8 "),
        ("a@txtonly.test", "550 5.1.8 "),
        ("a@nullmx.test", "550 5.7.27 "),
    ],
)
def test_sender_domain_unknown(resolver: DnsPythonResolver, sender: str, reply: str) -> None:
    failure = asyncio.run(SenderDomainCheck(resolver).check(Client("192.0.2.5", sender=sender)))
    assert failure is not None
    assert failure.reason == "sender.domain_unknown"
    assert str(failure.reply).startswith(reply)
    assert not failure.temporary


def test_sender_domain_dns_failure_is_450(dns: DnsServer, resolver: DnsPythonResolver) -> None:
    dns.zone.fail("sender.test")
    failure = asyncio.run(
        SenderDomainCheck(resolver).check(Client("192.0.2.5", sender="a@sender.test"))
    )
    assert failure is not None
    assert failure.temporary
    assert str(failure.reply).startswith("450 4.1.8 ")
