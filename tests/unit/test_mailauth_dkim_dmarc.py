"""DKIM verification (messages signed here with dkimpy; keys served by the loopback DNS
server and fetched through our resolver), DMARC alignment and policy, and ARC recording."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tayori.dns.resolver import DnsPythonResolver
from tayori.mailauth import arc, dkim_verify, dmarc
from tayori.mailauth.dkim_verify import DkimSignatureResult
from tayori.mailauth.spf import SpfOutcome
from tayori.testing.dns_server import DnsServer, Zone

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE = KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
PUBLIC = base64.b64encode(
    KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()

MESSAGE = (
    b"From: Alice <alice@signer.test>\r\nTo: bob@example.test\r\nSubject: hello\r\n"
    b"Message-ID: <1@signer.test>\r\n\r\nHello Bob.\r\n"
)


def signed(message: bytes = MESSAGE, domain: bytes = b"signer.test") -> bytes:
    signature = dkim.sign(
        message, b"sel", domain, PRIVATE, include_headers=[b"from", b"to", b"subject"]
    )
    return bytes(signature) + message


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    zone = Zone()
    zone.add("sel._domainkey.signer.test", "TXT", f"v=DKIM1; k=rsa; p={PUBLIC}")
    zone.add("_dmarc.signer.test", "TXT", "v=DMARC1; p=reject; adkim=r; aspf=r")
    zone.add("_dmarc.quarantined.test", "TXT", "v=DMARC1; p=quarantine; sp=reject")
    zone.add("_dmarc.strict.test", "TXT", "v=DMARC1; p=reject; aspf=s")
    zone.add("_dmarc.relaxed.co.jp", "TXT", "v=DMARC1; p=none")
    with DnsServer(zone) as server:
        yield server


@pytest.fixture
def resolver(dns: DnsServer) -> DnsPythonResolver:
    return DnsPythonResolver(dns.settings(timeout=1.0))


def verify(resolver: DnsPythonResolver, message: bytes) -> list[DkimSignatureResult]:
    return asyncio.run(dkim_verify.verify(resolver, message, 1.0))


def test_a_real_signature_passes(resolver: DnsPythonResolver) -> None:
    [result] = verify(resolver, signed())
    assert (result.result, result.domain, result.selector) == ("pass", "signer.test", "sel")


def test_a_tampered_body_fails(resolver: DnsPythonResolver) -> None:
    tampered = signed().replace(b"Hello Bob.", b"Send money.")
    [result] = verify(resolver, tampered)
    assert result.result == "fail"


def test_a_tampered_header_fails(resolver: DnsPythonResolver) -> None:
    tampered = signed().replace(b"Subject: hello", b"Subject: urgent")
    [result] = verify(resolver, tampered)
    assert result.result == "fail"


def test_missing_key_is_permerror(resolver: DnsPythonResolver) -> None:
    [result] = verify(resolver, signed(domain=b"nokey.test"))
    assert result.result == "permerror"
    assert result.domain == "nokey.test"


def test_key_dns_failure_is_temperror(dns: DnsServer, resolver: DnsPythonResolver) -> None:
    dns.zone.fail("sel._domainkey.signer.test")
    [result] = verify(resolver, signed())
    assert result.result == "temperror"


def test_unsigned_message_has_no_results(resolver: DnsPythonResolver) -> None:
    assert verify(resolver, MESSAGE) == []


def test_arc_none_without_an_arc_set(resolver: DnsPythonResolver) -> None:
    assert asyncio.run(arc.verify(resolver, signed())) == "none"


def test_arc_broken_set_fails(resolver: DnsPythonResolver) -> None:
    forged = b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=signer.test; s=sel; b=AAAA\r\n" + MESSAGE
    assert asyncio.run(arc.verify(resolver, forged)) == "fail"


def evaluate(resolver: DnsPythonResolver, message: bytes, spf: SpfOutcome) -> dmarc.DmarcOutcome:
    signatures = verify(resolver, message)
    return asyncio.run(dmarc.evaluate(resolver, message, spf, signatures))


def test_dmarc_pass_through_aligned_dkim(resolver: DnsPythonResolver) -> None:
    outcome = evaluate(resolver, signed(), SpfOutcome("fail", "elsewhere.test"))
    assert (outcome.result, outcome.policy) == ("pass", "reject")


def test_dmarc_pass_through_aligned_spf(resolver: DnsPythonResolver) -> None:
    outcome = evaluate(resolver, MESSAGE, SpfOutcome("pass", "bounces.signer.test"))
    assert outcome.result == "pass"


def test_dmarc_fail_with_reject_policy(resolver: DnsPythonResolver) -> None:
    forged = signed().replace(b"Hello Bob.", b"Send money.")
    outcome = evaluate(resolver, forged, SpfOutcome("pass", "elsewhere.test"))
    assert (outcome.result, outcome.policy, outcome.domain) == ("fail", "reject", "signer.test")


def test_dmarc_strict_spf_alignment(resolver: DnsPythonResolver) -> None:
    message = MESSAGE.replace(b"signer.test>", b"strict.test>")
    outcome = evaluate(resolver, message, SpfOutcome("pass", "sub.strict.test"))
    assert outcome.result == "fail"
    outcome = evaluate(resolver, message, SpfOutcome("pass", "strict.test"))
    assert outcome.result == "pass"


def test_dmarc_subdomain_policy_from_the_organizational_domain(
    resolver: DnsPythonResolver,
) -> None:
    message = MESSAGE.replace(b"signer.test>", b"news.quarantined.test>")
    outcome = evaluate(resolver, message, SpfOutcome("none", "x.test"))
    assert (outcome.result, outcome.policy) == ("fail", "reject")


def test_dmarc_organizational_domain_uses_the_public_suffix_list(
    resolver: DnsPythonResolver,
) -> None:
    assert dmarc.organizational_domain("mail.relaxed.co.jp") == "relaxed.co.jp"
    message = MESSAGE.replace(b"signer.test>", b"mail.relaxed.co.jp>")
    outcome = evaluate(resolver, message, SpfOutcome("none", "x.test"))
    assert (outcome.result, outcome.policy) == ("fail", "none")


def test_dmarc_none_without_record_or_single_from(resolver: DnsPythonResolver) -> None:
    message = MESSAGE.replace(b"signer.test>", b"norecord.test>")
    assert evaluate(resolver, message, SpfOutcome("none", "x.test")).result == "none"
    two = b"From: a@signer.test\r\nFrom: b@other.test\r\n\r\nx\r\n"
    assert evaluate(resolver, two, SpfOutcome("none", "x.test")).result == "none"


def test_dmarc_dns_failure_is_temperror(dns: DnsServer, resolver: DnsPythonResolver) -> None:
    dns.zone.fail("_dmarc.signer.test")
    outcome = evaluate(resolver, MESSAGE, SpfOutcome("none", "x.test"))
    assert outcome.result == "temperror"


def _pct_zone(dns: DnsServer, record: str) -> bytes:
    dns.zone.add("_dmarc.rollout.test", "TXT", record)
    return MESSAGE.replace(b"signer.test>", b"rollout.test>")


@pytest.mark.parametrize(
    ("record", "sample", "policy", "published"),
    [
        ("v=DMARC1; p=reject; pct=50", 49, "reject", None),
        ("v=DMARC1; p=reject; pct=50", 50, "quarantine", "reject"),
        ("v=DMARC1; p=quarantine; pct=50", 99, "none", "quarantine"),
        ("v=DMARC1; p=quarantine; pct=0", 0, "none", "quarantine"),
        ("v=DMARC1; p=reject; pct=100", 99, "reject", None),
        ("v=DMARC1; p=reject", 99, "reject", None),
        ("v=DMARC1; p=reject; pct=150", 99, "reject", None),  # invalid: never weaker
        ("v=DMARC1; p=reject; pct=x", 99, "reject", None),
        ("v=DMARC1; p=none; pct=10", 99, "none", None),
    ],
)
def test_dmarc_pct_applies_the_policy_to_its_share_only(
    dns: DnsServer,
    resolver: DnsPythonResolver,
    record: str,
    sample: int,
    policy: str,
    published: str | None,
) -> None:
    message = _pct_zone(dns, record)
    outcome = asyncio.run(
        dmarc.evaluate(resolver, message, SpfOutcome("fail", "x.test"), [], sample=lambda _: sample)
    )
    assert (outcome.result, outcome.policy, outcome.published) == ("fail", policy, published)
    assert outcome.sampled_out == (published is not None)
    if published is not None:
        assert f"p={published} pct=" in outcome.detail
        assert f"sampled out, {policy} applied" in outcome.detail


def test_dmarc_pct_does_not_touch_passing_mail(dns: DnsServer, resolver: DnsPythonResolver) -> None:
    message = _pct_zone(dns, "v=DMARC1; p=reject; pct=0")
    outcome = asyncio.run(dmarc.evaluate(resolver, message, SpfOutcome("pass", "rollout.test"), []))
    assert (outcome.result, outcome.policy, outcome.sampled_out) == ("pass", "reject", False)


def test_dmarc_sample_follows_the_message_id_and_spreads_evenly() -> None:
    one = MESSAGE.replace(b"Hello Bob.", b"Other body")
    assert dmarc.message_sample(MESSAGE) == dmarc.message_sample(one)  # same Message-ID
    upper = MESSAGE.replace(b"<1@signer.test>", b"<1@SIGNER.TEST>")
    assert dmarc.message_sample(upper) == dmarc.message_sample(MESSAGE)
    samples = [
        dmarc.message_sample(MESSAGE.replace(b"<1@", f"<{n}@".encode())) for n in range(2000)
    ]
    assert all(0 <= s < 100 for s in samples)
    below = sum(1 for s in samples if s < 30) / len(samples)
    assert 0.26 < below < 0.34
