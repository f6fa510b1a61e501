"""The Authentication-Results header we add, and forged check-result headers removed."""

from __future__ import annotations

from email import message_from_bytes

from tayori.mailauth.dkim_verify import DkimSignatureResult
from tayori.mailauth.dmarc import DmarcOutcome
from tayori.mailauth.results import (
    AuthResults,
    authentication_results,
    remove_our_headers,
    spam_headers,
)
from tayori.mailauth.spf import SpfOutcome


def test_header_names_every_method() -> None:
    header = authentication_results(
        "mx.example.test",
        AuthResults(
            spf=SpfOutcome("pass", "sender.test"),
            dkim=(DkimSignatureResult("fail", "sender.test", "sel"),),
            dmarc=DmarcOutcome("fail", "sender.test", "reject"),
            arc="none",
            iprev="pass",
            client_ip="192.0.2.5",
            sender="a@sender.test",
        ),
    )
    parsed = message_from_bytes(header + b"\r\n")
    value = " ".join(str(parsed["Authentication-Results"]).split())
    assert value == (
        "mx.example.test; iprev=pass policy.iprev=192.0.2.5; spf=pass smtp.mailfrom=a@sender.test; "
        "dkim=fail header.d=sender.test header.s=sel; "
        "dmarc=fail header.from=sender.test policy.dmarc=reject; arc=none"
    )


def test_a_policy_sampled_out_by_pct_is_explained() -> None:
    dmarc = DmarcOutcome("fail", "sender.test", "quarantine", published="reject", pct=20)
    header = authentication_results("mx.example.test", AuthResults(dmarc=dmarc))
    value = " ".join(str(message_from_bytes(header + b"\r\n")["Authentication-Results"]).split())
    assert (
        "dmarc=fail (p=reject pct=20: sampled out) header.from=sender.test "
        "policy.dmarc=quarantine;" in value
    )


def test_no_signature_is_dkim_none_and_null_sender_names_helo() -> None:
    header = authentication_results(
        "mx.example.test", AuthResults(spf=SpfOutcome("none", "h.test"), helo="h.test")
    )
    assert b"dkim=none" in header
    assert b"spf=none smtp.helo=h.test" in header


def test_spam_headers() -> None:
    assert spam_headers(4.5, True, ["auth.dmarc.fail"]) == (
        b"X-Spam-Status: Yes, score=4.5 tests=auth.dmarc.fail\r\nX-Spam-Score: 4.5\r\n"
    )


MESSAGE = (
    b"Authentication-Results: MX.example.test; dkim=pass\r\n\t header.d=bank.test\r\n"
    b"Authentication-Results: mx.google.com; spf=pass\r\n"
    b"X-Spam-Status: No, score=-5\r\n"
    b"x-spam-score: -5\r\n"
    b"X-Spam-Flag: NO\r\n"
    b"Subject: hi\r\n \tfolded\r\n"
    b"X-Spammy: kept\r\n"
    b"\r\n"
    b"X-Spam-Status: in the body stays\r\n"
)


def test_forged_headers_are_removed_and_the_rest_is_byte_identical() -> None:
    assert remove_our_headers(MESSAGE, "mx.example.test") == (
        b"Authentication-Results: mx.google.com; spf=pass\r\n"
        b"Subject: hi\r\n \tfolded\r\n"
        b"X-Spammy: kept\r\n"
        b"\r\n"
        b"X-Spam-Status: in the body stays\r\n"
    )


def test_a_message_without_our_headers_is_unchanged() -> None:
    plain = b"Subject: x\r\n\r\nbody\r\n"
    assert remove_our_headers(plain, "mx.example.test") is not None
    assert remove_our_headers(plain, "mx.example.test") == plain
    assert remove_our_headers(b"no header end", "mx") == b"no header end"
