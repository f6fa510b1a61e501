"""DNSBL query names and answer meanings (pure), and `lookup` against the test server."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tayori.dns import DnsAnswer, DnsPythonResolver
from tayori.dns.dnsbl import DnsblResult, interpret, lookup, query_name, reversed_address
from tayori.testing.dns_server import DnsServer


def test_ipv4_octets_are_reversed() -> None:
    assert reversed_address("192.0.2.99") == "99.2.0.192"
    assert query_name("127.0.0.2", "zen.example.test") == "2.0.0.127.zen.example.test"


def test_ipv6_nibbles_are_reversed_rfc5782_example() -> None:
    assert query_name("2001:db8:1:2:3:4:567:89ab", "ugly.example.com") == (
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
    )


def test_ipv4_mapped_and_scoped_addresses() -> None:
    assert reversed_address("::ffff:192.0.2.1") == "1.2.0.192"
    assert reversed_address("fe80::1%eth0") == reversed_address("fe80::1")
    assert reversed_address(IPv4Address("10.0.0.1")) == "1.0.0.10"


def test_zone_dots_are_tolerated_and_required() -> None:
    assert query_name("10.0.0.1", " .bl.example.test. ") == "1.0.0.10.bl.example.test"
    with pytest.raises(ValueError, match="zone"):
        query_name("10.0.0.1", ".")
    with pytest.raises(ValueError):
        reversed_address("mail.example.test")


@given(st.ip_addresses())
def test_reversed_address_reads_back(address: IPv4Address | IPv6Address) -> None:
    labels = reversed_address(address).split(".")
    if isinstance(address, IPv6Address) and address.ipv4_mapped is None:
        assert len(labels) == 32
        assert IPv6Address(int("".join(reversed(labels)), 16)) == address
    else:
        expected = address if isinstance(address, IPv4Address) else address.ipv4_mapped
        assert ip_address(".".join(reversed(labels))) == expected


def a(*codes: str, ttl: int = 300) -> DnsAnswer[IPv4Address]:
    return DnsAnswer("ok", tuple(IPv4Address(code) for code in codes), ttl)


def test_listing_codes() -> None:
    result = interpret(a("127.0.0.4", "127.0.0.2", ttl=90))
    assert result == DnsblResult("listed", (IPv4Address("127.0.0.2"), IPv4Address("127.0.0.4")), 90)
    assert result.listed


@pytest.mark.parametrize(
    "codes",
    [("127.255.255.254",), ("127.255.255.252",), ("127.0.0.1",), ("127.0.0.2", "127.255.255.255")],
)
def test_refusal_codes_are_not_listings(codes: tuple[str, ...]) -> None:
    result = interpret(a(*codes))
    assert result.status == "refused"
    assert not result.listed


def test_answers_outside_loopback_are_invalid() -> None:
    assert interpret(a("127.0.0.2", "192.0.2.1")).status == "invalid"


def test_negative_and_failed_answers() -> None:
    assert interpret(DnsAnswer("nxdomain", ttl=60)) == DnsblResult("not_listed", ttl=60)
    assert interpret(DnsAnswer("nodata", ttl=60)).status == "not_listed"
    assert interpret(DnsAnswer("tempfail", detail="timeout")) == DnsblResult("tempfail")


def test_lookup_against_the_server(dns_server: DnsServer, resolver: DnsPythonResolver) -> None:
    zone = dns_server.zone
    zone.add("2.0.0.127.bl.test", "A", "127.0.0.2")
    zone.add("2.0.0.127.bl.test", "TXT", "Listed: see https://bl.test/query/127.0.0.2")
    zone.add("3.0.0.127.bl.test", "A", "127.0.0.10")
    zone.add("4.0.0.127.bl.test", "A", "127.255.255.254")

    async def check() -> None:
        listed = await lookup(resolver, "127.0.0.2", "bl.test")
        assert listed.status == "listed"
        assert listed.reason == "Listed: see https://bl.test/query/127.0.0.2"
        no_reason = await lookup(resolver, "::ffff:127.0.0.3", "bl.test")
        assert no_reason.codes == (IPv4Address("127.0.0.10"),)
        assert no_reason.reason == ""
        assert (await lookup(resolver, "127.0.0.4", "bl.test")).status == "refused"
        assert (await lookup(resolver, "127.0.0.5", "bl.test")).status == "not_listed"

    asyncio.run(check())
    txt_queries = [q.name for q in dns_server.queries if q.rdtype == "TXT"]
    assert txt_queries == ["2.0.0.127.bl.test", "3.0.0.127.bl.test"]
