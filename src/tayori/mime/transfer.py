"""Content-Transfer-Encoding decoders that forgive broken input instead of dropping it.

A base64 body with stray characters, padding in the middle or a truncated last quantum
still yields every byte that can be recovered; quoted-printable with invalid escapes keeps
them literally. Each decoder says whether the input was damaged, so the part can be flagged.
"""

from __future__ import annotations

import binascii
import re

from tayori.mime.uuencode import decode_uu_block

__all__ = ["IDENTITY", "decode_transfer"]

IDENTITY = frozenset(["", "7bit", "8bit", "binary", "7-bit", "8-bit", "none"])
_UU = frozenset(["x-uuencode", "x-uue", "uuencode", "uue", "x-uu"])
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_PADDING = re.compile(rb"=+")


def _decode_base64(data: bytes) -> tuple[bytes, bool]:
    body = data.rstrip(b" \t\r\n")
    # The fast path is exact when '=' only ends the data: elsewhere binascii would stop at
    # it and silently drop what follows.
    if b"=" not in body.rstrip(b"="):
        try:
            return binascii.a2b_base64(data), False
        except binascii.Error:
            pass
    # Slow path: drop what is not base64, and decode each run between padding on its own
    # (a padded quantum in the middle means the encoder started again after it).
    out = bytearray()
    for run in _PADDING.split(_NOT_BASE64.sub(b"", data)):
        if len(run) % 4 == 1:
            run = run[:-1]
        if run:
            out += binascii.a2b_base64(run + b"=" * (-len(run) % 4))
    return bytes(out), True


def _decode_qp(data: bytes) -> tuple[bytes, bool]:
    # binascii keeps invalid escapes literally and handles CRLF and LF soft breaks.
    return binascii.a2b_qp(data), False


def decode_transfer(data: bytes, encoding: str) -> tuple[bytes, bool, bool]:
    """(decoded bytes, damaged, known encoding). Unknown encodings return the data as is."""
    if encoding in IDENTITY:
        return data, False, True
    if encoding == "base64":
        decoded, damaged = _decode_base64(data)
        return decoded, damaged, True
    if encoding in {"quoted-printable", "quotedprintable", "qp"}:
        decoded, damaged = _decode_qp(data)
        return decoded, damaged, True
    if encoding in _UU:
        block = decode_uu_block(data)
        if block is None:
            return data, True, True
        return block[1], block[2], True
    return data, False, False
