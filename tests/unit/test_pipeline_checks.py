"""Checks on the connecting host and sender, against the loopback DNS server through our
resolver: DNSBL, FCrDNS, HELO, sender domain."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tayori.config.settings import CheckAction, InboundSettings
from tayori.dns.resolver import DnsPythonResolver
from tayori.pipeline.checks.dnsbl import DnsblCheck
from tayori.pipeline.checks.fcrdns import FcrdnsCheck
from tayori.pipeline.checks.helo import HeloCheck, helo_problem
from tayori.pipeline.checks.sender_domain import SenderDomainCheck
from tayori.pipeline.inbound import InboundPipeline, MessageChecks
from tayori.pipeline.runner import Decision
from tayori.pipeline.steps import Client
from tayori.pipeline.verdicts import Action
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


def _spf_pipeline(resolver: DnsPythonResolver, **changes: object) -> InboundPipeline:
    settings = InboundSettings(spf_action=CheckAction.REJECT, **changes)  # type: ignore[arg-type]
    return InboundPipeline(resolver, settings, frozenset({"mx.example.test"}))


def _spf_queries(dns: DnsServer, domain: str) -> int:
    return sum(1 for q in dns.queries if q.name == domain and q.rdtype == "TXT")


MESSAGE = b"From: a@spf.test\r\nSubject: x\r\nMessage-ID: <1@spf.test>\r\n\r\nbody\r\n"


def test_spf_decides_at_mail_from_and_data_reuses_it(dns: DnsServer) -> None:
    """`reject` refuses at RCPT (the transaction's decision), before the body is sent; the
    end of DATA takes the same result for DMARC and the header without asking DNS again."""
    dns.zone.add("spf.test", "MX", "10 mail.sender.test")
    dns.zone.add("spf.test", "TXT", "v=spf1 ip4:192.0.2.5 -all")
    resolver = DnsPythonResolver(dns.settings(timeout=1.0), cache_size=0)
    pipeline = _spf_pipeline(resolver)
    client = Client("192.0.2.6", helo="liar.sender.test", sender="a@spf.test")

    async def dialogue() -> tuple[Decision, MessageChecks, int]:
        transaction = await pipeline.transaction(client)
        asked = _spf_queries(dns, "spf.test")
        return transaction, await pipeline.message(client, MESSAGE), asked

    transaction, checks, asked_at_mail = asyncio.run(dialogue())
    assert transaction.action is Action.REJECT
    assert transaction.reasons == ("auth.spf.fail",)
    assert str(transaction.decisive.reply).startswith("550 5.7.23 ")  # type: ignore[union-attr]
    assert asked_at_mail == 1
    assert _spf_queries(dns, "spf.test") == 1  # not evaluated again at DATA
    assert checks.auth.spf is not None and checks.auth.spf.result == "fail"
    assert "auth.spf.fail" not in checks.decision.reasons  # decided once, at MAIL FROM

    client.sender = "b@sender.test"  # the next transaction on the connection
    assert asyncio.run(pipeline.message(client, MESSAGE)).auth.spf.domain == "sender.test"  # type: ignore[union-attr]


def test_spf_at_data_for_a_caller_that_skipped_mail_from(dns: DnsServer) -> None:
    dns.zone.add("spf.test", "TXT", "v=spf1 ip4:192.0.2.5 -all")
    pipeline = _spf_pipeline(DnsPythonResolver(dns.settings(timeout=1.0)))
    client = Client("192.0.2.6", helo="x.test", sender="a@spf.test")
    checks = asyncio.run(pipeline.message(client, MESSAGE))
    assert checks.decision.action is Action.REJECT
    assert checks.decision.reasons == ("auth.spf.fail",)


def test_softfail_under_reject_is_half_a_score(dns: DnsServer) -> None:
    dns.zone.add("spf.test", "MX", "10 mail.sender.test")
    dns.zone.add("spf.test", "TXT", "v=spf1 ip4:192.0.2.5 ~all")
    pipeline = _spf_pipeline(DnsPythonResolver(dns.settings(timeout=1.0)), spf_score=4.0)
    client = Client("192.0.2.6", helo="x.test", sender="a@spf.test")
    decision = asyncio.run(pipeline.transaction(client))
    assert (decision.action, decision.reasons, decision.score) == (
        Action.ACCEPT,
        ("auth.spf.fail",),
        2.0,
    )


def test_trusted_relay_skips_spf_and_is_noted(dns: DnsServer) -> None:
    dns.zone.add("spf.test", "MX", "10 mail.sender.test")
    dns.zone.add("spf.test", "TXT", "v=spf1 ip4:192.0.2.5 -all")
    pipeline = _spf_pipeline(
        DnsPythonResolver(dns.settings(timeout=1.0)), trusted_networks=["192.0.2.0/28"]
    )
    client = Client("192.0.2.6", helo="-bad-", sender="a@spf.test")

    async def dialogue() -> tuple[Decision, Decision, MessageChecks]:
        return (
            await pipeline.connect(client),
            await pipeline.transaction(client),
            await pipeline.message(client, MESSAGE),
        )

    connect, transaction, checks = asyncio.run(dialogue())
    assert connect.action is Action.ACCEPT
    assert connect.reasons == ("relay.trusted",)
    assert "192.0.2.6 in trusted network 192.0.2.0/28: not checked on the relay" in connect.detail()
    assert transaction.verdicts == ()
    assert checks.auth.spf is None
    assert checks.decision.verdicts == ()
    assert _spf_queries(dns, "spf.test") == 0
