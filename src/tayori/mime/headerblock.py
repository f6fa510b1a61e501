"""Splitting a header block into fields, tolerating what real mail does to it.

Works on bytes, because header values arrive in any charset or none, and only the decoders
in `headers` know how to read them. Lines that are not fields (no colon, spaces or 8-bit
bytes in the name) are skipped and recorded, as long as real fields follow; a block of lines
none of which is a field is a body without headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["HeaderBlock", "Headers", "parse_header_block"]

_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")
_MBOX_FROM = re.compile(rb"From \S")
_BLANK = re.compile(rb"\n\r?\n")


class Headers:
    """Header fields in order, as (name, raw value) pairs; lookups are case-insensitive.

    Values are the raw bytes after the colon, folding included, so nothing is lost; the
    `headers` module decodes them for display.
    """

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: list[tuple[str, bytes]] | None = None) -> None:
        self._fields: list[tuple[str, bytes]] = fields if fields is not None else []
        self._index: dict[str, list[int]] | None = None

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return iter(self._fields)

    def _lookup(self) -> dict[str, list[int]]:
        if self._index is None:
            index: dict[str, list[int]] = {}
            for position, (name, _) in enumerate(self._fields):
                index.setdefault(name.lower(), []).append(position)
            self._index = index
        return self._index

    def get(self, name: str) -> bytes | None:
        """The first field of that name: what most mail programs show when there are two."""
        found = self._lookup().get(name.lower())
        return self._fields[found[0]][1] if found else None

    def get_all(self, name: str) -> list[bytes]:
        return [self._fields[i][1] for i in self._lookup().get(name.lower(), [])]

    def count(self, name: str) -> int:
        return len(self._lookup().get(name.lower(), []))


@dataclass(slots=True)
class HeaderBlock:
    """The fields of one entity and where its body starts."""

    headers: Headers
    body_start: int
    garbage_lines: int = 0
    mbox_from: bool = False
    missing_separator: bool = False
    long_line: bool = False


def _block_end(buf: bytes, start: int, limit: int) -> tuple[int, int]:
    """(end of the header lines, start of the body) for the block at `start`."""
    if buf.startswith(b"\n", start) or buf.startswith(b"\r\n", start):
        return start, start + (1 if buf[start] == 0x0A else 2)
    blank = _BLANK.search(buf, start, limit)
    if blank is None:
        return limit, limit
    return blank.start() + 1, blank.end()


def parse_header_block(buf: bytes, start: int = 0, limit: int | None = None) -> HeaderBlock:
    """Fields from `buf[start:limit]` up to the first empty line.

    Lines after the last real field that are not continuations begin the body (a missing
    separator); garbage lines between fields are skipped and counted.
    """
    limit = len(buf) if limit is None else limit
    lines_end, body_start = _block_end(buf, start, limit)
    fields: list[tuple[str, bytes]] = []
    block = HeaderBlock(Headers(fields), body_start)
    position = start
    current_name: str | None = None
    current: list[bytes] = []
    last_field_end = start
    garbage_since_field = 0
    first = True
    while position < lines_end:
        newline = buf.find(b"\n", position, lines_end)
        line_end = lines_end if newline < 0 else newline + 1
        line = buf[position:line_end]
        if line_end - position > 1000:  # 998 bytes and CRLF
            block.long_line = True
        if line[:1] in (b" ", b"\t") and current_name is not None and garbage_since_field == 0:
            current.append(line)
            last_field_end = line_end
        else:
            match = _FIELD.match(line)
            if match is not None:
                if current_name is not None:
                    fields.append((current_name, b"".join(current)))
                current_name = match.group(1).decode("ascii")
                current = [line[match.end() :]]
                last_field_end = line_end
                block.garbage_lines += garbage_since_field
                garbage_since_field = 0
            elif first and _MBOX_FROM.match(line):
                block.mbox_from = True
                last_field_end = line_end
            elif line.strip():
                garbage_since_field += 1
        first = False
        position = line_end
    if current_name is not None:
        fields.append((current_name, b"".join(current)))
    if garbage_since_field:
        if fields:
            # Trailing non-field lines: the body started without an empty line.
            block.body_start = last_field_end
        else:
            block.body_start = start if not block.mbox_from else last_field_end
        block.missing_separator = True
    return block
