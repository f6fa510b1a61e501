"""uuencode: `begin 644 name` ... `end` blocks, in a part of their own or inside text.

Old mail programs (and some current scanners' notices) put attachments inline in text/plain
as uuencoded blocks. They are cut out of the text and offered as attachments, as mail
programs have always shown them.
"""

from __future__ import annotations

import binascii
import re

__all__ = ["UuFile", "decode_uu_block", "extract_uu"]

_BEGIN = re.compile(rb"^begin(?:-base64)? +([0-7]{3,4}) +([^\r\n]*?)[ \t]*\r?$", re.MULTILINE)
_END = re.compile(rb"^end[ \t]*\r?$", re.MULTILINE)
_MAX_BLOCKS = 100

UuFile = tuple[str, bytes, bool]


def _decode_lines(lines: list[bytes]) -> tuple[bytes, bool]:
    out = bytearray()
    damaged = False
    for line in lines:
        line = line.rstrip(b"\r\n")
        if not line or line in (b"`", b" "):
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # Some encoders strip trailing spaces: pad the line to its declared length.
            length = (line[0] - 32) & 0x3F
            try:
                out += binascii.a2b_uu(line.ljust((length + 2) // 3 * 4 + 1, b" "))
            except binascii.Error:
                damaged = True
    return bytes(out), damaged


def decode_uu_block(data: bytes) -> UuFile | None:
    """The first uuencoded file in `data` as (name, bytes, damaged), or None."""
    begin = _BEGIN.search(data)
    if begin is None:
        return None
    end = _END.search(data, begin.end())
    stop = len(data) if end is None else end.start()
    payload, damaged = _decode_lines(data[begin.end() : stop].splitlines())
    name = begin.group(2).decode("utf-8", "replace")
    return name, payload, damaged or end is None


def extract_uu(text: bytes) -> tuple[bytes, list[UuFile]]:
    """Cut every uuencoded block out of a text body: (remaining text, files)."""
    if b"begin " not in text:
        return text, []
    files: list[UuFile] = []
    kept: list[bytes] = []
    position = 0
    while len(files) < _MAX_BLOCKS:
        begin = _BEGIN.search(text, position)
        if begin is None:
            break
        end = _END.search(text, begin.end())
        if end is None:
            break
        payload, damaged = _decode_lines(text[begin.end() : end.start()].splitlines())
        files.append((begin.group(2).decode("utf-8", "replace"), payload, damaged))
        kept.append(text[position : begin.start()])
        position = end.end()
    if not files:
        return text, []
    kept.append(text[position:])
    return b"".join(kept), files
