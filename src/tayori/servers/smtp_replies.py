"""Enhanced status codes (RFC 2034/3463) for the replies aiosmtpd composes itself.

Once ENHANCEDSTATUSCODES is advertised, every reply except the greeting, EHLO lines, 354
and AUTH challenges carries one. Our own replies already do; aiosmtpd's built-in ones
(syntax errors, size limit, RSET) are mapped here, by exact text where we want our own
wording and by basic code otherwise.
"""

from __future__ import annotations

import re

SIZE_EXCEEDED = "552 5.3.4 Message size exceeds fixed limit"

# aiosmtpd 1.4 texts we replace outright (pinned by tests/protocol/test_smtp_replies.py).
EXACT: dict[str, str] = {
    "552 Error: Too much mail data": SIZE_EXCEEDED,
    "552 Error: message size exceeds fixed maximum message size": SIZE_EXCEEDED,
    "503 Error: need MAIL command": "503 5.5.1 Error: need MAIL command",
    "553 5.1.3 Error: malformed address": "501 5.1.3 Bad address syntax",
    "503 Error: need RCPT command": "503 5.5.1 Error: need RCPT command",
    "503 Error: nested MAIL command": "503 5.5.1 Error: nested MAIL command",
}

_BY_CODE = {
    211: "2.0.0",
    214: "2.0.0",
    221: "2.0.0",
    250: "2.0.0",
    252: "2.0.0",
    421: "4.3.2",
    450: "4.0.0",
    451: "4.3.0",
    452: "4.3.1",
    500: "5.5.2",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    530: "5.7.0",
    550: "5.0.0",
    552: "5.3.4",
    553: "5.1.3",
    554: "5.0.0",
    555: "5.5.4",
}
_REPLY = re.compile(r"^(\d{3}) (?!\d\.\d{1,3}\.\d{1,3}(?: |$))(.*)$", re.DOTALL)


def is_size_exceeded(status: str) -> bool:
    return EXACT.get(status) == SIZE_EXCEEDED


def with_enhanced_code(status: str) -> str:
    """The reply with an enhanced code inserted when it has none (single-line replies)."""
    if status in EXACT:
        return EXACT[status]
    match = _REPLY.match(status)
    if match is None:
        return status
    enhanced = _BY_CODE.get(int(match.group(1)))
    if enhanced is None:
        return status
    return f"{match.group(1)} {enhanced} {match.group(2)}"
