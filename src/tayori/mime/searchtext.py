"""The decoded text of a message that search looks in, per field.

Delivery indexes every message once, so this is on the hot path: the header fields come from
the parsed header block, the body from the text parts only (HTML converted to text, ISO-2022-
JP, Shift_JIS and the rest decoded to Unicode by the charset layer), and everything is cut to
bounded sizes so that a 50 MB message costs little more than a small one. Attachment file
names count as body text: "the one with 見積書.pdf" is a search members make.
"""

from __future__ import annotations

from dataclasses import dataclass

from tayori.mime.addresses import Mailbox
from tayori.mime.recent import recently_parsed

__all__ = ["MAX_BODY_CHARS", "SearchText", "search_text"]

MAX_BODY_CHARS = 20_000
"""Body text beyond this is not searchable: enough for the mail people write, and it keeps
the index (and PostgreSQL's tsvector positions, which stop at 16,383) bounded."""
_MAX_FIELD_CHARS = 2_000
_MAX_NAMES = 100


@dataclass(frozen=True, slots=True)
class SearchText:
    """Unicode text per searchable field; `from_` and `to` hold display names and
    addresses ("山田 太郎 taro@example.jp"), `to` includes Cc."""

    from_: str
    to: str
    subject: str
    body: str
    has_attachment: bool
    sender: str
    """The first From's display name, else its address (what lists show and sort by)."""


def _people(mailboxes: list[Mailbox]) -> str:
    return " ".join(f"{m.name} {m.address}".strip() for m in mailboxes)[:_MAX_FIELD_CHARS]


def search_text(raw: bytes) -> SearchText:
    """Extract the searchable text of a raw message; never raises (parse_message does not),
    broken parts contribute whatever decodes."""
    message = recently_parsed(raw)
    attachments = message.attachments
    names = " ".join(a.filename for a in attachments[:_MAX_NAMES] if a.filename)
    body = message.text[:MAX_BODY_CHARS]
    if names:
        body = f"{body}\n{names}"
    return SearchText(
        from_=_people(message.from_),
        to=_people(message.to + message.cc),
        subject=message.subject[:_MAX_FIELD_CHARS],
        body=body,
        has_attachment=bool(attachments),
        sender=_sender(message.from_),
    )


def _sender(mailboxes: list[Mailbox]) -> str:
    if not mailboxes:
        return ""
    first = mailboxes[0]
    return (first.name or first.address)[:_MAX_FIELD_CHARS]
