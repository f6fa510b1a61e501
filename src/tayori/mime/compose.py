"""Writing messages that every mail program reads correctly.

UTF-8 by default, with RFC 2047 words that never split a character and attachment names
given both ways (RFC 2231 `filename*`, which modern programs read, and an RFC 2047 `name=`,
which Outlook and old Japanese programs read). The optional ISO-2022-JP mode is for members
whose correspondents use old mail programs: it is used only when every character fits strict
ISO-2022-JP (JIS X 0208) and reads back exactly as written (no ESC/SO/SI, no yen sign via
JIS X 0201, no WAVE DASH that would come back as FULLWIDTH TILDE); otherwise the message goes
out as UTF-8, because a message that cannot be read is worse than one in an unexpected
charset. Replies and forwards quote the decoded text, so ①, 髙 and 﨑 survive the round trip.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote

from tayori.mime.addresses import Mailbox
from tayori.mime.japanese import encode_iso2022jp, fits_iso2022jp
from tayori.mime.message import Message

__all__ = [
    "AttachmentSpec",
    "Draft",
    "compose",
    "encode_header_text",
    "forward_attachment",
    "forward_subject",
    "quote_for_reply",
    "reply_subject",
]

CRLF = "\r\n"
_MAX_WORD = 75
_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ .-]*$")
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|fw|fwd)(?:\[\d+\])?\s*[:：]\s*)+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AttachmentSpec:
    """A file to attach."""

    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Draft:
    """What the member wrote. `legacy_japanese` asks for ISO-2022-JP when it fits."""

    from_: Mailbox
    to: Sequence[Mailbox]
    subject: str
    text: str
    cc: Sequence[Mailbox] = ()
    html: str | None = None
    attachments: Sequence[AttachmentSpec] = ()
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    legacy_japanese: bool = False
    date: datetime | None = None
    message_id: str | None = None
    extra_headers: Sequence[tuple[str, str]] = field(default_factory=tuple)


def _word(text: str, charset: str) -> str:
    if charset == "iso-2022-jp":
        data = encode_iso2022jp(text)
        if data is None:  # pragma: no cover - callers check the whole text first
            raise ValueError("text does not fit ISO-2022-JP")
    else:
        data = text.encode("utf-8")
    return f"=?{charset.upper()}?B?{base64.b64encode(data).decode('ascii')}?="


def encode_header_text(text: str, charset: str = "utf-8") -> str:
    """A header value: as it is when plain ASCII, else RFC 2047 B words of at most 75
    characters, each holding whole characters (and, in ISO-2022-JP, ending in ASCII), folded
    onto continuation lines."""
    text = " ".join(text.split())
    if text.isascii() and "=?" not in text:
        return text
    words: list[str] = []
    chunk = ""
    for char in text:
        candidate = chunk + char
        if chunk and len(_word(candidate, charset)) > _MAX_WORD:
            words.append(_word(chunk, charset))
            chunk = char
        else:
            chunk = candidate
    if chunk:
        words.append(_word(chunk, charset))
    return f"{CRLF} ".join(words)


def _address(mailbox: Mailbox, charset: str) -> str:
    if not mailbox.name:
        return mailbox.address
    if mailbox.name.isascii():
        name = mailbox.name
        if not _ATOM.match(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        name = encode_header_text(mailbox.name, charset)
    return f"{name} <{mailbox.address}>"


def _addresses(mailboxes: Sequence[Mailbox], charset: str) -> str:
    return f",{CRLF} ".join(_address(m, charset) for m in mailboxes)


def _choose_charset(draft: Draft) -> str:
    if not draft.legacy_japanese:
        return "utf-8"
    texts = [
        draft.subject,
        draft.text,
        *(m.name for m in (draft.from_, *draft.to, *draft.cc)),
        *(value for _name, value in draft.extra_headers),
    ]
    if all(fits_iso2022jp(text) for text in texts):
        return "iso-2022-jp"
    return "utf-8"


def _crlf(text: str) -> str:
    return re.sub(r"\r\n|\r|\n", CRLF, text)


def _base64_lines(data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return CRLF.join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + CRLF


def _text_part(text: str, subtype: str, charset: str) -> str:
    text = _crlf(text)
    if not text.endswith(CRLF):
        text += CRLF
    if charset == "iso-2022-jp":
        data = encode_iso2022jp(text)
        if data is not None:
            return (
                f"Content-Type: text/{subtype}; charset=ISO-2022-JP{CRLF}"
                f"Content-Transfer-Encoding: 7bit{CRLF}{CRLF}{data.decode('ascii')}"
            )
    long_lines = any(len(line) > 900 for line in text.split(CRLF))
    # ESC in us-ascii text would be sniffed as ISO-2022-JP by readers (ours included).
    if text.isascii() and not long_lines and "\x1b" not in text:
        return (
            f"Content-Type: text/{subtype}; charset=us-ascii{CRLF}"
            f"Content-Transfer-Encoding: 7bit{CRLF}{CRLF}{text}"
        )
    return (
        f"Content-Type: text/{subtype}; charset=UTF-8{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}{_base64_lines(text.encode())}"
    )


def _quoted_param(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _attachment_part(spec: AttachmentSpec, charset: str) -> str:
    name = spec.filename.replace("\r", " ").replace("\n", " ")
    if name.isascii():
        type_name = disposition = f"{_quoted_param(name)}"
        star = ""
    else:
        # Both forms: RFC 2231 for standards-following programs, RFC 2047 for the rest.
        word_charset = charset if fits_iso2022jp(name) else "utf-8"
        type_name = f'"{encode_header_text(name, word_charset).replace(CRLF + " ", "")}"'
        disposition = type_name
        star = f";{CRLF} filename*=UTF-8''{quote(name, safe='')}"
    content_type = spec.content_type if "/" in spec.content_type else "application/octet-stream"
    return (
        f"Content-Type: {content_type};{CRLF} name={type_name}{CRLF}"
        f"Content-Disposition: attachment;{CRLF} filename={disposition}{star}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}{_base64_lines(spec.data)}"
    )


def _multipart(subtype: str, parts: list[str]) -> str:
    boundary = f"=_tayori_{secrets.token_hex(12)}"
    body = "".join(f"--{boundary}{CRLF}{part}" for part in parts)
    return (
        f'Content-Type: multipart/{subtype};{CRLF} boundary="{boundary}"{CRLF}{CRLF}'
        f"{body}--{boundary}--{CRLF}"
    )


def compose(draft: Draft) -> bytes:
    """The message as bytes ready for submission (CRLF line ends, 7-bit clean)."""
    charset = _choose_charset(draft)
    body = _text_part(draft.text, "plain", charset)
    if draft.html is not None:
        body = _multipart("alternative", [body, _text_part(draft.html, "html", "utf-8")])
    if draft.attachments:
        body = _multipart(
            "mixed", [body, *(_attachment_part(a, charset) for a in draft.attachments)]
        )
    domain = draft.from_.address.rpartition("@")[2] or "localhost"
    message_id = draft.message_id or f"{secrets.token_hex(16)}@{domain}"
    headers = [
        ("Date", format_datetime(draft.date or datetime.now(UTC))),
        ("From", _address(draft.from_, charset)),
        ("To", _addresses(draft.to, charset)),
    ]
    if draft.cc:
        headers.append(("Cc", _addresses(draft.cc, charset)))
    headers.append(("Subject", encode_header_text(draft.subject, charset)))
    headers.append(("Message-ID", f"<{message_id.strip('<>')}>"))
    if draft.in_reply_to:
        headers.append(("In-Reply-To", f"<{draft.in_reply_to.strip('<>')}>"))
    if draft.references:
        headers.append(
            ("References", f"{CRLF} ".join(f"<{r.strip('<>')}>" for r in draft.references))
        )
    headers.append(("MIME-Version", "1.0"))
    for name, value in draft.extra_headers:
        headers.append((name, encode_header_text(value, charset)))
    head = "".join(f"{name}: {value}{CRLF}" for name, value in headers)
    return (head + body).encode("ascii")


def reply_subject(subject: str) -> str:
    """`Re: ` once, whatever prefixes (Re:, RE[2]:, AW:, Fwd:) the original had."""
    return "Re: " + _REPLY_PREFIX.sub("", subject)


def forward_subject(subject: str) -> str:
    return "Fwd: " + _REPLY_PREFIX.sub("", subject)


def quote_for_reply(original: Message) -> str:
    """The original's text with an attribution line, every line quoted with `> `."""
    who = str(original.from_[0]) if original.from_ else "someone"
    when = original.date_text or ""
    lines = [f"On {when}, {who} wrote:" if when else f"{who} wrote:"]
    lines += [f"> {line}" if line else ">" for line in original.text.split("\n")]
    return "\n".join(lines) + "\n"


def forward_attachment(original: Message) -> AttachmentSpec:
    """The original message, unchanged, as a message/rfc822 attachment."""
    name = (original.subject or "message").replace("/", "_")[:100] + ".eml"
    return AttachmentSpec(name, "message/rfc822", original.raw)
