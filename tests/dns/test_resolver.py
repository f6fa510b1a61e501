"""DnsPythonResolver against the real test DNS server on loopback: every record type, the
negative answers kept apart, temporary failures, CNAME chains, TCP fallback and the cache."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from ipaddress import IPv4Address, IPv6Address
from typing import Any, TypeVar

import dns.resolver
import pytest

import tayori.dns
from tayori.config.settings import DnsSettings, HostPort
from tayori.core.errors import ConfigError
from tayori.dns import DnsAnswer, DnsPythonResolver, Mx
from tayori.testing.dns_server import DnsServer, Zone

from .conftest import FakeClock

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def test_public_names_are_pinned() -> None:
    assert tayori.dns.__all__ == [
        "DnsAnswer",
        "DnsPythonResolver",
        "DnsStatus",
        "DomainExistence",
        "IPAddress",
        "Mx",
        "MxAnswer",
        "Resolver",
    ]


# Record types


def test_mx_sorted_by_preference_in_lower_case(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    zone = dns_server.zone
    zone.add("example.test", "MX", "20 MX2.Example.Test.", ttl=120)
    zone.add("example.test", "MX", "10 mx1.example.test", ttl=120)
    zone.add("example.test", "MX", "10 mx0.example.test", ttl=120)
    answer = run(resolver.mx("Example.TEST"))
    assert answer.status == "ok"
    assert answer.records == (
        Mx(10, "mx0.example.test"),
        Mx(10, "mx1.example.test"),
        Mx(20, "mx2.example.test"),
    )
    assert answer.ttl == 120
    assert not answer.null_mx


def test_null_mx_is_reported(dns_server: DnsServer, resolver: DnsPythonResolver) -> None:
    dns_server.zone.add("nomail.test", "MX", "0 .")
    dns_server.zone.add("nomail.test", "A", "127.0.0.9")
    answer = run(resolver.mx("nomail.test"))
    assert answer.null_mx
    assert answer.records == (Mx(0, "."),)
    assert run(resolver.domain_exists("nomail.test")) == "null_mx"


def test_root_exchange_beside_real_ones_is_not_a_null_mx(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    dns_server.zone.add("mixed.test", "MX", "0 .")
    dns_server.zone.add("mixed.test", "MX", "10 mx.mixed.test")
    answer = run(resolver.mx("mixed.test"))
    assert not answer.null_mx
    assert answer.records == (Mx(0, "."), Mx(10, "mx.mixed.test"))


def test_a_and_aaaa(dns_server: DnsServer, resolver: DnsPythonResolver) -> None:
    zone = dns_server.zone
    zone.add("host.test", "A", "127.0.0.2", ttl=50)
    zone.add("host.test", "A", "127.0.0.3", ttl=50)
    zone.add("host.test", "AAAA", "2001:db8::0:1", ttl=40)
    a = run(resolver.a("host.test"))
    assert a.status == "ok"
    assert sorted(a.records) == [IPv4Address("127.0.0.2"), IPv4Address("127.0.0.3")]
    aaaa = run(resolver.aaaa("host.test"))
    assert aaaa.records == (IPv6Address("2001:db8::1"),)
    both = run(resolver.addresses("host.test"))
    assert both.status == "ok"
    assert both.records[0] == IPv6Address("2001:db8::1")
    assert set(both.records[1:]) == {IPv4Address("127.0.0.2"), IPv4Address("127.0.0.3")}
    assert both.ttl == 40


def test_addresses_keeps_one_family_when_the_other_fails(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    dns_server.zone.add("v4only.test", "A", "127.0.0.2")
    dns_server.zone.fail("v4only.test", "servfail", rdtype="AAAA")
    answer = run(resolver.addresses("v4only.test"))
    assert answer.status == "ok"
    assert answer.records == (IPv4Address("127.0.0.2"),)
    assert "AAAA" in answer.detail


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("nothing", "nxdomain"),
        ("txt only", "nodata"),
        ("a fails", "tempfail"),
    ],
)
def test_addresses_without_records(
    dns_server: DnsServer, resolver: DnsPythonResolver, setup: str, expected: str
) -> None:
    if setup == "txt only":
        dns_server.zone.add("name.test", "TXT", "hello")
    elif setup == "a fails":
        dns_server.zone.add("name.test", "TXT", "hello")
        dns_server.zone.fail("name.test", "servfail", rdtype="A")
    answer = run(resolver.addresses("name.test"))
    assert answer.status == expected
    assert answer.records == ()


def test_txt_strings_are_joined_per_record(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    zone = dns_server.zone
    zone.add("example.test", "TXT", ["v=spf1 ip4:192.0.2.0/24 ", "include:_spf.test -all"])
    long_key = "v=DKIM1; k=rsa; p=" + "M" * 700
    zone.add("sel._domainkey.example.test", "TXT", long_key)
    answer = run(resolver.txt("example.test"))
    assert answer.records == ("v=spf1 ip4:192.0.2.0/24 include:_spf.test -all",)
    assert run(resolver.txt("sel._domainkey.example.test")).records == (long_key,)


def test_several_txt_records_stay_apart_and_bad_utf8_is_replaced(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    dns_server.zone.add("multi.test", "TXT", "v=spf1 -all")
    dns_server.zone.add("multi.test", "TXT", b"caf\xe9")
    answer = run(resolver.txt("multi.test"))
    assert sorted(answer.records) == ["caf\ufffd", "v=spf1 -all"]


def test_ptr_for_ipv4_ipv6_and_mapped(dns_server: DnsServer, resolver: DnsPythonResolver) -> None:
    zone = dns_server.zone
    zone.add("5.0.0.127.in-addr.arpa", "PTR", "Mail.Example.Test.")
    nibbles = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
    zone.add(f"{nibbles}.ip6.arpa", "PTR", "v6.example.test")
    assert run(resolver.ptr("127.0.0.5")).records == ("mail.example.test",)
    assert run(resolver.ptr("::ffff:127.0.0.5")).records == ("mail.example.test",)
    assert run(resolver.ptr("2001:db8::1")).records == ("v6.example.test",)
    assert run(resolver.ptr("2001:db8::1%eth0")).records == ("v6.example.test",)
    assert run(resolver.ptr("127.0.0.6")).status == "nxdomain"
    with pytest.raises(ValueError):
        run(resolver.ptr("not-an-ip"))


# Negative answers and failures


def test_nxdomain_and_nodata_are_apart_with_the_soa_negative_ttl(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    dns_server.zone.negative_ttl = 42
    dns_server.zone.add("exists.test", "A", "127.0.0.2")
    dns_server.zone.add("leaf.under.parent.test", "A", "127.0.0.2")
    assert run(resolver.mx("missing.test")) == tayori.dns.MxAnswer("nxdomain", ttl=42)
    assert run(resolver.mx("exists.test")) == tayori.dns.MxAnswer("nodata", ttl=42)
    # RFC 8020: a name with records only below it exists.
    assert run(resolver.a("under.parent.test")).status == "nodata"


def test_negative_ttl_comes_from_the_closest_soa(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    dns_server.zone.add("zone.test", "SOA", "ns.zone.test. admin.zone.test. 1 3600 600 86400 17")
    assert run(resolver.a("missing.zone.test")) == DnsAnswer("nxdomain", ttl=17)


@pytest.mark.parametrize("mode", ["servfail", "refused"])
def test_error_rcodes_are_tempfail(
    dns_server: DnsServer, resolver: DnsPythonResolver, mode: str
) -> None:
    dns_server.zone.add("broken.test", "MX", "10 mx.broken.test")
    dns_server.zone.fail("broken.test", mode)  # type: ignore[arg-type]
    answer = run(resolver.mx("broken.test"))
    assert answer.status == "tempfail"
    assert mode.upper() in answer.detail
    assert run(resolver.domain_exists("broken.test")) == "tempfail"


def test_silence_is_tempfail_after_the_timeout(dns_server: DnsServer) -> None:
    dns_server.zone.fail("slow.test", "drop")
    quick = DnsPythonResolver(dns_server.settings(timeout=0.2))
    answer = run(quick.a("slow.test"))
    assert answer.status == "tempfail"
    assert "timeout" in answer.detail
    assert {q.name for q in dns_server.queries} == {"slow.test"}


def test_invalid_names_are_nxdomain_without_asking(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    for name in ["", ".", "a..b", "x" * 64 + ".test"]:
        answer = run(resolver.mx(name))
        assert answer.status == "nxdomain"
        assert "not a valid DNS name" in answer.detail
    assert list(dns_server.queries) == []


# CNAME chains


def test_cname_chain_is_followed_with_the_lowest_ttl(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    zone = dns_server.zone
    zone.add("www.test", "CNAME", "edge.test", ttl=30)
    zone.add("edge.test", "CNAME", "host.test", ttl=600)
    zone.add("host.test", "A", "127.0.0.7", ttl=300)
    zone.add("mail.test", "CNAME", "host.test")
    zone.add("host.test", "MX", "5 mx.host.test")
    assert run(resolver.a("www.test")) == DnsAnswer("ok", (IPv4Address("127.0.0.7"),), 30)
    assert run(resolver.mx("mail.test")).records == (Mx(5, "mx.host.test"),)


def test_cname_to_nothing(dns_server: DnsServer, resolver: DnsPythonResolver) -> None:
    dns_server.zone.add("dangling.test", "CNAME", "gone.test")
    dns_server.zone.add("textonly.test", "CNAME", "words.test")
    dns_server.zone.add("words.test", "TXT", "hello")
    assert run(resolver.a("dangling.test")).status == "nxdomain"
    assert run(resolver.a("textonly.test")).status == "nodata"


def test_cname_loop_is_tempfail(dns_server: DnsServer, resolver: DnsPythonResolver) -> None:
    dns_server.zone.add("ping.test", "CNAME", "pong.test")
    dns_server.zone.add("pong.test", "CNAME", "ping.test")
    assert run(resolver.a("ping.test")).status == "tempfail"


# Sender-domain existence


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([("MX", "10 mx.d.test")], "exists"),
        ([("A", "127.0.0.2")], "exists"),
        ([("AAAA", "::1")], "exists"),
        ([("TXT", "v=spf1 -all")], "nxdomain"),
        ([], "nxdomain"),
        ([("MX", "0 .")], "null_mx"),
    ],
)
def test_domain_exists(
    dns_server: DnsServer,
    resolver: DnsPythonResolver,
    records: list[tuple[str, str]],
    expected: str,
) -> None:
    for rdtype, value in records:
        dns_server.zone.add("d.test", rdtype, value)
    assert run(resolver.domain_exists("d.test")) == expected


def test_domain_exists_is_tempfail_when_the_fallback_fails(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    dns_server.zone.add("d.test", "TXT", "no mail host here")
    dns_server.zone.fail("d.test", "servfail", rdtype="A")
    assert run(resolver.domain_exists("d.test")) == "tempfail"


def test_domain_exists_does_not_fall_back_when_mx_fails(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    dns_server.zone.add("d.test", "A", "127.0.0.2")
    dns_server.zone.fail("d.test", "servfail", rdtype="MX")
    assert run(resolver.domain_exists("d.test")) == "tempfail"
    assert [q.rdtype for q in dns_server.queries] == ["MX"]


# Transport


def test_truncated_udp_answer_is_retried_over_tcp(dns_server: DnsServer) -> None:
    big = DnsServer(dns_server.zone, max_udp_payload=512)
    with big:
        resolver = DnsPythonResolver(big.settings())
        key = "v=DKIM1; p=" + "K" * 800
        dns_server.zone.add("s._domainkey.big.test", "TXT", key)
        assert run(resolver.txt("s._domainkey.big.test")).records == (key,)
        assert [q.transport for q in big.queries] == ["udp", "tcp"]


def test_ipv6_loopback_nameserver() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with DnsServer(Zone(), host="::1") as server:
        server.zone.add("six.test", "AAAA", "2001:db8::6")
        assert str(server.nameserver).startswith("[::1]:")
        resolver = DnsPythonResolver(server.settings())
        assert run(resolver.aaaa("six.test")).records == (IPv6Address("2001:db8::6"),)


def test_nameserver_must_be_an_address() -> None:
    with pytest.raises(ConfigError, match=r"ns\.example\.test:53 is not an IP address"):
        DnsPythonResolver(DnsSettings(nameservers=[HostPort("ns.example.test", 53)]))


def test_empty_nameservers_use_the_system_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(self: Any, f: Any) -> None:
        raise dns.resolver.NoResolverConfiguration("no /etc/resolv.conf")

    def configured(self: Any, f: Any) -> None:
        self.nameservers = ["192.0.2.53"]

    monkeypatch.setattr(dns.resolver.BaseResolver, "read_resolv_conf", configured)
    DnsPythonResolver(DnsSettings())
    monkeypatch.setattr(dns.resolver.BaseResolver, "read_resolv_conf", unreadable)
    with pytest.raises(ConfigError, match="system resolver"):
        DnsPythonResolver(DnsSettings())


# Cache


def test_answers_are_reused_until_their_ttl_runs_out(
    dns_server: DnsServer, resolver: DnsPythonResolver, clock: FakeClock
) -> None:
    dns_server.zone.add("cached.test", "A", "127.0.0.2", ttl=60)
    assert run(resolver.a("cached.test")).ttl == 60
    clock.advance(45)
    again = run(resolver.a("Cached.Test."))
    assert again.records == (IPv4Address("127.0.0.2"),)
    assert again.ttl == 15
    assert len(dns_server.queries) == 1
    clock.advance(15)
    dns_server.zone.remove("cached.test", "A")
    dns_server.zone.add("cached.test", "A", "127.0.0.3", ttl=60)
    assert run(resolver.a("cached.test")).records == (IPv4Address("127.0.0.3"),)
    assert len(dns_server.queries) == 2


def test_negative_answers_are_cached_for_the_negative_ttl(
    dns_server: DnsServer, resolver: DnsPythonResolver, clock: FakeClock
) -> None:
    dns_server.zone.negative_ttl = 30
    assert run(resolver.a("later.test")).status == "nxdomain"
    dns_server.zone.add("later.test", "A", "127.0.0.2")
    clock.advance(29)
    assert run(resolver.a("later.test")).status == "nxdomain"
    clock.advance(1)
    assert run(resolver.a("later.test")).status == "ok"


def test_temporary_failures_are_not_cached(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    dns_server.zone.add("flaky.test", "A", "127.0.0.2")
    dns_server.zone.fail("flaky.test")
    assert run(resolver.a("flaky.test")).status == "tempfail"
    dns_server.zone.heal("flaky.test")
    assert run(resolver.a("flaky.test")).status == "ok"


def test_cache_is_bounded_and_can_be_off(dns_server: DnsServer, clock: FakeClock) -> None:
    for name in ("one.test", "two.test", "three.test"):
        dns_server.zone.add(name, "A", "127.0.0.2")
    small = DnsPythonResolver(dns_server.settings(), cache_size=2, clock=clock)
    for name in ("one.test", "two.test", "three.test", "three.test", "two.test"):
        run(small.a(name))
    assert len(dns_server.queries) == 3
    run(small.a("one.test"))  # evicted as the least recently used
    assert len(dns_server.queries) == 4

    dns_server.queries.clear()
    uncached = DnsPythonResolver(dns_server.settings(), cache_size=0, clock=clock)
    run(uncached.a("one.test"))
    run(uncached.a("one.test"))
    assert len(dns_server.queries) == 2


def test_zero_ttl_answers_are_not_cached(
    dns_server: DnsServer, resolver: DnsPythonResolver
) -> None:
    dns_server.zone.add("volatile.test", "A", "127.0.0.2", ttl=0)
    run(resolver.a("volatile.test"))
    run(resolver.a("volatile.test"))
    assert len(dns_server.queries) == 2


def test_very_long_ttls_are_capped(
    dns_server: DnsServer, resolver: DnsPythonResolver, clock: FakeClock
) -> None:
    dns_server.zone.add("forever.test", "A", "127.0.0.2", ttl=7 * 86_400)
    run(resolver.a("forever.test"))
    clock.advance(86_400)
    run(resolver.a("forever.test"))
    assert len(dns_server.queries) == 2
