"""CP50220 (ISO-2022-JP as Microsoft and most Japanese mail programs write it) for test
messages: Python has no encoder for it, and ① or 髙 are not in plain ISO-2022-JP."""

from __future__ import annotations

import base64
from functools import cache
from urllib.parse import quote


@cache
def _nec_selected() -> dict[str, bytes]:
    """Characters of the IBM extensions (Shift_JIS lead 0xFA-0xFC) that also exist in the
    NEC-selected rows (lead 0xED-0xEE), which map into JIS rows 0x79-0x7C."""
    found: dict[str, bytes] = {}
    for lead in (0xED, 0xEE):
        for trail in range(0x40, 0xFD):
            try:
                char = bytes([lead, trail]).decode("cp932")
            except UnicodeDecodeError:
                continue
            found.setdefault(char, bytes([lead, trail]))
    return found


def _sjis_to_jis(s1: int, s2: int) -> bytes:
    row = (s1 - (0x70 if s1 < 0xA0 else 0xB0)) * 2
    if s2 < 0x9F:
        return bytes([row - 1, s2 - (0x20 if s2 >= 0x80 else 0x1F)])
    return bytes([row, s2 - 0x7E])


def encode_cp50220(text: str) -> bytes:
    out = bytearray()
    kanji = False
    for char in text:
        if ord(char) < 0x80:
            if kanji:
                out += b"\x1b(B"
                kanji = False
            out += char.encode("ascii")
            continue
        sjis = _nec_selected().get(char) or char.encode("cp932")
        assert len(sjis) == 2, f"{char!r} is not a double-byte character"
        if not kanji:
            out += b"\x1b$B"
            kanji = True
        out += _sjis_to_jis(sjis[0], sjis[1])
    if kanji:
        out += b"\x1b(B"
    return bytes(out)


def encoded_word(text: str) -> str:
    return "=?ISO-2022-JP?B?" + base64.b64encode(encode_cp50220(text)).decode() + "?="


def rfc2231_name(text: str) -> str:
    """filename*=ISO-2022-JP''... as some Japanese mail programs write it."""
    return "ISO-2022-JP''" + quote(encode_cp50220(text), safe="")
