"""The envelope summary stored with each message (From, To, Subject, Message-ID, Date).

Only the header block is parsed, so a 50 MB message costs no more than a small one. The
full MIME and Japanese charset layer replaces the decoding here when it lands; until then
undecodable text is kept with replacement characters rather than failing delivery.
"""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32

from tayori.storage.records import MessageSummary

_MAX_FIELD = 998
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[: end + 2]


def decode_value(value: str) -> str:
    """RFC 2047 decoding that never raises; raw 8-bit bytes arrive surrogate-escaped."""
    try:
        text = str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError, AssertionError):
        text = value
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    # Control characters (NUL included, which PostgreSQL text cannot hold) are never
    # meant to be shown: they become U+FFFD like any other undecodable byte.
    text = _CONTROLS.sub("\ufffd", text)
    return " ".join(text.split())[:_MAX_FIELD]


def summarise(raw: bytes) -> MessageSummary:
    headers = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))

    def field(name: str) -> str:
        value = headers.get(name)
        return decode_value(str(value)) if value is not None else ""

    return MessageSummary(
        from_=field("From"),
        to=field("To"),
        subject=field("Subject"),
        message_id=field("Message-ID"),
        date=field("Date"),
    )
