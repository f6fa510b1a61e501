"""The envelope summary stored with each message (From, To, Subject, Message-ID, Date).

Decoding is the MIME layer's (Japanese charsets, split encoded words, raw 8-bit headers);
this module only turns its display strings into the storage record.
"""

from __future__ import annotations

from tayori.mime.summary import envelope_summary
from tayori.storage.records import MessageSummary


def header_block(raw: bytes) -> bytes:
    """The header lines of a CRLF message, up to and including the last header's CRLF."""
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[: end + 2]


def summarise(raw: bytes) -> MessageSummary:
    found = envelope_summary(raw)
    return MessageSummary(
        from_=found.from_,
        to=found.to,
        subject=found.subject,
        message_id=found.message_id,
        date=found.date,
    )
