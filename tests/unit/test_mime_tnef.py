"""TNEF (winmail.dat) reading, on streams built here: attachments, body, damage."""

from __future__ import annotations

import struct

from tayori.mime.tnef import SIGNATURE, decompress_rtf, parse_tnef


def attribute(level: int, attribute_id: int, data: bytes) -> bytes:
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BII", level, attribute_id, len(data)) + data + struct.pack("<H", checksum)


def props(*entries: tuple[int, int, bytes]) -> bytes:
    out = struct.pack("<I", len(entries))
    for kind, prop_id, value in entries:
        out += (
            struct.pack("<HHII", kind, prop_id, 1, len(value)) + value + b"\0" * (-len(value) % 4)
        )
    return out


def stream(*attributes: bytes) -> bytes:
    return struct.pack("<IH", SIGNATURE, 1) + b"".join(attributes)


def test_attachments_by_long_name_then_title_and_the_html_body() -> None:
    data = stream(
        attribute(1, 0x00069003, props((0x0102, 0x1013, b"<p>hi</p>"))),
        attribute(2, 0x00069002, b"\0" * 14),
        attribute(2, 0x00018010, b"REPORT~1.PDF\0"),
        attribute(2, 0x0006800F, b"%PDF-1.4"),
        attribute(2, 0x00069005, props((0x001F, 0x3707, "報告書.pdf\0".encode("utf-16-le")))),
        attribute(2, 0x00069002, b"\0" * 14),
        attribute(2, 0x00018010, b"notes.txt\0"),
        attribute(2, 0x0006800F, b"n"),
    )
    content = parse_tnef(data)
    assert content.names == ["報告書.pdf", "notes.txt", "body.html"]
    assert content.files[0].data == b"%PDF-1.4" and not content.damaged


def test_truncated_and_foreign_streams_are_damaged_not_errors() -> None:
    good = stream(attribute(2, 0x00069002, b"\0" * 14), attribute(2, 0x0006800F, b"abc"))
    assert parse_tnef(good[:-4]).damaged
    assert parse_tnef(b"not tnef").damaged
    assert parse_tnef(b"").names == []
    lying = struct.pack("<IH", SIGNATURE, 1) + struct.pack("<BII", 2, 0x0006800F, 2**31)
    assert parse_tnef(lying).damaged


def lzfu_literals(text: bytes) -> bytes:
    """Compressed RTF holding only literals, ended by a reference to the write position."""
    end = struct.pack(">H", ((207 + len(text)) & 0xFFF) << 4)
    items = [bytes((byte,)) for byte in text] + [end]
    body = bytearray()
    for start in range(0, len(items), 8):
        group = items[start : start + 8]
        body.append(sum(1 << bit for bit, item in enumerate(group) if len(item) == 2))
        body += b"".join(group)
    return struct.pack("<IIII", len(body) + 12, len(text), 0x75465A4C, 0) + bytes(body)


def test_compressed_rtf() -> None:
    uncompressed = b"{\\rtf1 plain}"
    mela = struct.pack("<IIII", len(uncompressed) + 12, len(uncompressed), 0x414C454D, 0)
    assert decompress_rtf(mela + uncompressed) == uncompressed
    assert decompress_rtf(lzfu_literals(b"{\\rtf1 hello world}")) == b"{\\rtf1 hello world}"
    assert decompress_rtf(b"short") is None
