"""Quoted strings in header values, read as mail programs wrote them.

RFC 5322 says a backslash in a quoted string escapes the next character. Japanese mail
programs put raw Shift_JIS in quoted strings, where 0x5C is the trail byte of 表, ソ, 能 and
many more: read RFC-style, those characters lose a byte. When a quoted string has 8-bit bytes
that are not UTF-8, it is read Shift_JIS-aware as well, and that reading wins when it is
valid cp932.
"""

from __future__ import annotations

__all__ = ["read_quoted"]


def _is_sjis_lead(byte: int) -> bool:
    return 0x81 <= byte <= 0x9F or 0xE0 <= byte <= 0xFC


def _scan_quoted(data: bytes, start: int, *, sjis: bool) -> tuple[bytes, int]:
    """The content of a quoted string opening before `start`, and where it ends."""
    out = bytearray()
    position, size = start, len(data)
    while position < size:
        byte = data[position]
        if byte == 0x22:
            return bytes(out), position + 1
        if sjis and _is_sjis_lead(byte) and position + 1 < size:
            out += data[position : position + 2]
            position += 2
            continue
        if byte == 0x5C and position + 1 < size:
            out.append(data[position + 1])
            position += 2
            continue
        out.append(byte)
        position += 1
    return bytes(out), size


def read_quoted(data: bytes, start: int) -> tuple[bytes, int]:
    """The content of the quoted string whose opening quote is just before `start`, and the
    position after its closing quote (or the end of `data` when it is never closed)."""
    close = data.find(b'"', start)
    if close >= 0 and data.find(b"\\", start, close) < 0:
        return data[start:close], close + 1  # the common case: nothing escaped
    plain, end = _scan_quoted(data, start, sjis=False)
    if plain.isascii() or b"\\" not in data[start:end]:
        return plain, end
    try:
        plain.decode("utf-8")
    except UnicodeDecodeError:
        aware, aware_end = _scan_quoted(data, start, sjis=True)
        try:
            aware.decode("cp932")
        except UnicodeDecodeError:
            return plain, end
        return aware, aware_end
    return plain, end
