"""Address fields (From, To, Cc, Reply-To) as (display name, address) pairs.

Tolerant of what RFC 5322 forbids but mail programs write: encoded words inside quoted
display names, raw 8-bit names, groups, comments used as names, a missing closing bracket.
Names are decoded by `headers.decode_header`; addresses are left as written (lower-casing
a local part would change the mailbox).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tayori.mime.headers import decode_header, unfold
from tayori.mime.japanese import protect_raw_jis
from tayori.mime.quoting import read_quoted

__all__ = ["Mailbox", "parse_addresses"]

_MAX_ADDRESSES = 1000
_ROUTE = re.compile(r"^(?:@[^:]*:)")
_SPACE = re.compile(rb"\s+")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One mailbox: `name` may be empty; `address` may be empty for a broken field."""

    name: str
    address: str

    def __str__(self) -> str:
        if not self.name:
            return self.address
        return f"{self.name} <{self.address}>" if self.address else self.name


def _read_comment(data: bytes, start: int) -> tuple[bytes, int]:
    """A (possibly nested) comment whose `(` is just before `start`."""
    depth, position, out = 1, start, bytearray()
    while position < len(data):
        byte = data[position]
        if byte == 0x5C and position + 1 < len(data):
            out.append(data[position + 1])
            position += 2
            continue
        if byte == 0x28:
            depth += 1
        elif byte == 0x29:
            depth -= 1
            if depth == 0:
                return bytes(out), position + 1
        out.append(byte)
        position += 1
    return bytes(out), position


class _Entry:
    __slots__ = ("angle", "comments", "phrase")

    def __init__(self) -> None:
        self.phrase = bytearray()
        self.angle: bytes | None = None
        self.comments: list[bytes] = []

    def mailbox(self) -> Mailbox | None:
        phrase = _SPACE.sub(b" ", bytes(self.phrase)).strip()
        comment = b" ".join(c.strip() for c in self.comments if c.strip())
        if self.angle is not None:
            address = self.angle.decode("utf-8", "replace").strip()
            address = _ROUTE.sub("", "".join(address.split()))
            name = _name(phrase)
            if comment:
                comment_text = _name(comment)
                name = f"{name} ({comment_text})" if name else comment_text
            return Mailbox(name, address)
        if not phrase and not comment:
            return None
        text = "".join(phrase.decode("utf-8", "replace").split())
        if "@" not in text:
            # "From: Whomever": a name without an address, as mail programs show it.
            return Mailbox(_name(phrase) if phrase else _name(comment), "")
        return Mailbox(_name(comment) if comment else "", text)


def _name(raw: bytes) -> str:
    return decode_header(raw).text if raw else ""


def parse_addresses(raw: bytes | None) -> list[Mailbox]:
    """Every mailbox in an address field, groups flattened; never raises."""
    if not raw:
        return []
    data = protect_raw_jis(unfold(raw))
    mailboxes: list[Mailbox] = []
    entry = _Entry()
    position, size = 0, len(data)

    def finish() -> None:
        nonlocal entry
        found = entry.mailbox()
        if found is not None and len(mailboxes) < _MAX_ADDRESSES:
            mailboxes.append(found)
        entry = _Entry()

    while position < size:
        byte = data[position]
        if byte == 0x22:  # "
            text, position = read_quoted(data, position + 1)
            entry.phrase += text
            continue
        if byte == 0x28:  # (
            comment, position = _read_comment(data, position + 1)
            entry.comments.append(comment)
            continue
        if byte == 0x3C:  # <
            end = data.find(b">", position + 1)
            end = size if end < 0 else end
            entry.angle = data[position + 1 : end]
            position = end + 1
            continue
        if byte in b",;":
            finish()
        elif byte == 0x3A and entry.angle is None and b"@" not in entry.phrase:  # group:
            entry = _Entry()
        else:
            entry.phrase.append(byte)
        position += 1
    finish()
    return mailboxes
