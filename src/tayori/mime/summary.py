"""The envelope summary stored with each message, from the header block alone.

Delivery stores From, To, Subject, Message-ID and Date with every message so that lists,
outcomes and diagnostics never have to open the message. Only the header block is read, so a
50 MB message costs no more than a small one; the values are display strings (decoded, no
control characters, at most 998 characters) and computing them never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tayori.mime.addresses import parse_addresses
from tayori.mime.headerblock import parse_header_block
from tayori.mime.headers import decode_header_text

__all__ = ["EnvelopeSummary", "envelope_summary"]

_MAX_FIELD = 998
_MAX_HEADER_BLOCK = 1024 * 1024
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class EnvelopeSummary:
    """Display strings for the message lists; empty when a field is absent."""

    from_: str
    to: str
    subject: str
    message_id: str
    date: str

    def as_dict(self) -> dict[str, str]:
        return {
            "from": self.from_,
            "to": self.to,
            "subject": self.subject,
            "message_id": self.message_id,
            "date": self.date,
        }


def _clip(text: str) -> str:
    text = _CONTROLS.sub("\ufffd", text)
    return text if len(text) <= _MAX_FIELD else text[: _MAX_FIELD - 1] + "…"


def _addresses(raw: bytes | None) -> str:
    if raw is None:
        return ""
    mailboxes = parse_addresses(raw)
    if not mailboxes:
        return decode_header_text(raw)
    return ", ".join(str(mailbox) for mailbox in mailboxes)


def envelope_summary(raw: bytes) -> EnvelopeSummary:
    """From, To, Subject, Message-ID and Date of a raw message, for display."""
    head = raw[:_MAX_HEADER_BLOCK]
    if b"\n" not in head and b"\r" in head:
        head = head.replace(b"\r", b"\n")
    headers = parse_header_block(head).headers

    def text(name: str) -> str:
        value = headers.get(name)
        return "" if value is None else decode_header_text(value)

    return EnvelopeSummary(
        from_=_clip(_addresses(headers.get("from"))),
        to=_clip(_addresses(headers.get("to"))),
        subject=_clip(text("subject")),
        message_id=_clip(text("message-id")),
        date=_clip(text("date")),
    )
