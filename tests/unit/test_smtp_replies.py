"""Enhanced codes for aiosmtpd's own replies; pins the aiosmtpd texts we rely on."""

import inspect
import re

import aiosmtpd.smtp
import pytest

from tayori.servers.smtp_replies import EXACT, SIZE_EXCEEDED, is_size_exceeded, with_enhanced_code


def test_aiosmtpd_still_uses_the_texts_we_map() -> None:
    # Adjacent string literals split over lines are joined, as Python joins them.
    source = re.sub(r"'\s*\n\s*'", "", inspect.getsource(aiosmtpd.smtp))
    for text in EXACT:
        assert text.split(" ", 1)[1] in source, f"aiosmtpd no longer says {text!r}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("250 OK", "250 2.0.0 OK"),
        ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
        ("501 Syntax: MAIL FROM: <address>", "501 5.5.4 Syntax: MAIL FROM: <address>"),
        ("552 Error: Too much mail data", SIZE_EXCEEDED),
        ("250 2.1.5 Ok", "250 2.1.5 Ok"),
        ("550 5.1.1 <a@b.test>: User unknown", "550 5.1.1 <a@b.test>: User unknown"),
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
        ("220 mx.example.test ESMTP", "220 mx.example.test ESMTP"),
        ("250-PIPELINING", "250-PIPELINING"),
    ],
)
def test_enhanced_codes(given: str, expected: str) -> None:
    assert with_enhanced_code(given) == expected


def test_size_exceeded_recognised() -> None:
    assert is_size_exceeded("552 Error: Too much mail data")
    assert not is_size_exceeded("552 5.2.2 <a@b.test>: Mailbox full")
