"""TNEF (winmail.dat): list and extract what Outlook packed inside.

Outlook sends attachments, and sometimes the whole body, inside one application/ms-tnef
part that other mail programs show as an opaque winmail.dat. This reader walks the TNEF
attribute stream and the MAPI property lists inside it and returns the files: attachments
by their long name, and the message body as `body.html` or `body.rtf` (compressed RTF is
decompressed). Every length is checked against the data, so a damaged or hostile stream
yields what could be read and a `damaged` flag, never an exception or a runaway allocation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["TnefContent", "TnefFile", "decompress_rtf", "parse_tnef"]

SIGNATURE = 0x223E9F78
_LEVEL_MESSAGE, _LEVEL_ATTACHMENT = 1, 2
_ATT_ATTACH_REND_DATA = 0x9002
_ATT_ATTACH_TITLE = 0x8010
_ATT_ATTACH_DATA = 0x800F
_ATT_ATTACHMENT = 0x9005
_ATT_MSG_PROPS = 0x9003
_ATT_OEM_CODEPAGE = 0x9007
_ATT_BODY = 0x800C

_PR_BODY_HTML = 0x1013
_PR_RTF_COMPRESSED = 0x1009
_PR_DISPLAY_NAME = 0x3001
_PR_ATTACH_DATA = 0x3701
_PR_ATTACH_FILENAME = 0x3704
_PR_ATTACH_LONG_FILENAME = 0x3707
_PR_ATTACH_MIME_TAG = 0x370E

_PT_SHORT, _PT_BOOLEAN = 0x0002, 0x000B
_FOUR = frozenset([0x0003, 0x0004, 0x000A, _PT_BOOLEAN, _PT_SHORT])
_EIGHT = frozenset([0x0005, 0x0006, 0x0007, 0x0014, 0x0040])
_PT_CLSID = 0x0048
_PT_STRING8, _PT_UNICODE, _PT_BINARY, _PT_OBJECT = 0x001E, 0x001F, 0x0102, 0x000D
_VARIABLE = frozenset([_PT_STRING8, _PT_UNICODE, _PT_BINARY, _PT_OBJECT])
_MV_FLAG = 0x1000
_MAX_FILES = 1000
_MAX_VALUES = 100_000

_RTF_PREBUF = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss "
    b"\\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier"
    b"{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)
_LZFU, _MELA = 0x75465A4C, 0x414C454D


@dataclass(slots=True)
class TnefFile:
    """One file found inside a TNEF stream."""

    name: str
    data: bytes
    content_type: str = "application/octet-stream"


@dataclass(slots=True)
class TnefContent:
    """The files inside a TNEF stream: attachments first, then the body if there is one."""

    files: list[TnefFile] = field(default_factory=list)
    damaged: bool = False

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.files]


class _Damaged(Exception):
    """The stream ends or lies about a length; stop reading it."""


class _Reader:
    __slots__ = ("data", "position")

    def __init__(self, data: bytes, position: int = 0) -> None:
        self.data = data
        self.position = position

    def take(self, size: int) -> bytes:
        if size < 0 or self.position + size > len(self.data):
            raise _Damaged
        chunk = self.data[self.position : self.position + size]
        self.position += size
        return chunk

    def u16(self) -> int:
        value: int = struct.unpack("<H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def padded(self, size: int) -> bytes:
        chunk = self.take(size)
        self.take(-size % 4)
        return chunk

    @property
    def left(self) -> int:
        return len(self.data) - self.position


def decompress_rtf(data: bytes) -> bytes | None:
    """Compressed RTF (MS-OXRTFCP, "LZFu"); None when the data is not compressed RTF."""
    if len(data) < 16:
        return None
    _size, raw_size, kind, _crc = struct.unpack("<IIII", data[:16])
    if kind == _MELA:
        return data[16 : 16 + raw_size]
    if kind != _LZFU:
        return None
    window = bytearray(4096)
    window[: len(_RTF_PREBUF)] = _RTF_PREBUF
    write = len(_RTF_PREBUF)
    out = bytearray()
    position, size = 16, len(data)
    limit = min(raw_size, 64 * 1024 * 1024) if raw_size else 64 * 1024 * 1024
    while position < size and len(out) < limit:
        flags = data[position]
        position += 1
        for bit in range(8):
            if position >= size:
                break
            if flags & (1 << bit):
                if position + 1 >= size:
                    return bytes(out)
                reference = (data[position] << 8) | data[position + 1]
                position += 2
                offset, length = reference >> 4, (reference & 0xF) + 2
                if offset == write:
                    return bytes(out)
                for step in range(length):
                    byte = window[(offset + step) & 0xFFF]
                    out.append(byte)
                    window[write] = byte
                    write = (write + 1) & 0xFFF
            else:
                byte = data[position]
                position += 1
                out.append(byte)
                window[write] = byte
                write = (write + 1) & 0xFFF
    return bytes(out)


def _string(raw: bytes, kind: int, codepage: str) -> str:
    if kind == _PT_UNICODE:
        return raw.decode("utf-16-le", "replace").split("\x00", 1)[0]
    return raw.split(b"\x00", 1)[0].decode(codepage, "replace")


def _properties(data: bytes, codepage: str) -> dict[int, tuple[int, bytes]]:
    """A MAPI property list: property id -> (type, first value's raw bytes)."""
    reader = _Reader(data)
    found: dict[int, tuple[int, bytes]] = {}
    count = reader.u32()
    for _ in range(min(count, _MAX_VALUES)):
        kind, prop_id = reader.u16(), reader.u16()
        if prop_id >= 0x8000:  # named property: GUID, then a number or a name
            reader.take(16)
            if reader.u32() == 0:
                reader.u32()
            else:
                reader.padded(reader.u32())
        base = kind & ~_MV_FLAG
        values = 1
        if kind & _MV_FLAG or base in _VARIABLE:
            values = reader.u32()
            if values > _MAX_VALUES or values > reader.left:
                raise _Damaged
        first: bytes | None = None
        for _ in range(values):
            if base in _FOUR:
                value = reader.take(4)
            elif base in _EIGHT:
                value = reader.take(8)
            elif base == _PT_CLSID:
                value = reader.take(16)
            elif base in _VARIABLE:
                value = reader.padded(reader.u32())
            else:
                raise _Damaged  # unknown type: its size is unknown, so nothing after is safe
            if first is None:
                first = value
        if first is not None:
            found.setdefault(prop_id, (base, first))
    return found


class _Attachment:
    __slots__ = ("data", "long_name", "mime", "title")

    def __init__(self) -> None:
        self.title: str | None = None
        self.long_name: str | None = None
        self.data: bytes | None = None
        self.mime: str | None = None

    def file(self) -> TnefFile | None:
        if self.data is None:
            return None
        name = self.long_name or self.title or "Untitled Attachment"
        return TnefFile(name, self.data, self.mime or "application/octet-stream")


def _apply_attachment_props(attachment: _Attachment, props: bytes, codepage: str) -> None:
    found = _properties(props, codepage)
    for prop_id in (_PR_ATTACH_LONG_FILENAME, _PR_ATTACH_FILENAME, _PR_DISPLAY_NAME):
        if prop_id in found and found[prop_id][0] in {_PT_STRING8, _PT_UNICODE}:
            name = _string(found[prop_id][1], found[prop_id][0], codepage)
            if name:
                if prop_id == _PR_ATTACH_LONG_FILENAME or attachment.title is None:
                    attachment.long_name = name
                break
    if _PR_ATTACH_DATA in found and attachment.data is None:
        kind, value = found[_PR_ATTACH_DATA]
        attachment.data = value[16:] if kind == _PT_OBJECT else value
    if _PR_ATTACH_MIME_TAG in found:
        kind, value = found[_PR_ATTACH_MIME_TAG]
        attachment.mime = _string(value, kind, codepage) or None


def parse_tnef(data: bytes) -> TnefContent:
    """The files inside a TNEF stream; `damaged` when it could not be read to its end."""
    content = TnefContent()
    reader = _Reader(data)
    attachments: list[_Attachment] = []
    body_html: bytes | None = None
    body_rtf: bytes | None = None
    codepage = "cp1252"
    try:
        if reader.u32() != SIGNATURE:
            content.damaged = True
            return content
        reader.u16()  # legacy key
        while reader.left > 0 and len(attachments) < _MAX_FILES:
            level = reader.take(1)[0]
            attribute = reader.u32() & 0xFFFF
            value = reader.take(reader.u32())
            reader.u16()  # checksum: Outlook's own readers ignore a bad one, so do we
            if level == _LEVEL_ATTACHMENT:
                if attribute == _ATT_ATTACH_REND_DATA or not attachments:
                    attachments.append(_Attachment())
                current = attachments[-1]
                if attribute == _ATT_ATTACH_TITLE:
                    current.title = _string(value, _PT_STRING8, codepage) or None
                elif attribute == _ATT_ATTACH_DATA:
                    current.data = value
                elif attribute == _ATT_ATTACHMENT:
                    _apply_attachment_props(current, value, codepage)
            elif level == _LEVEL_MESSAGE:
                if attribute == _ATT_OEM_CODEPAGE and len(value) >= 4:
                    codepage = f"cp{struct.unpack('<I', value[:4])[0]}"
                    try:
                        "".encode(codepage)
                    except LookupError:
                        codepage = "cp1252"
                elif attribute == _ATT_MSG_PROPS:
                    found = _properties(value, codepage)
                    if _PR_BODY_HTML in found:
                        body_html = found[_PR_BODY_HTML][1]
                    if _PR_RTF_COMPRESSED in found:
                        body_rtf = decompress_rtf(found[_PR_RTF_COMPRESSED][1])
            else:
                raise _Damaged
    except (_Damaged, struct.error, IndexError):
        content.damaged = True
    for attachment in attachments:
        found_file = attachment.file()
        if found_file is not None:
            content.files.append(found_file)
    if body_html is not None:
        content.files.append(TnefFile("body.html", body_html.rstrip(b"\x00"), "text/html"))
    elif body_rtf is not None:
        content.files.append(TnefFile("body.rtf", body_rtf, "application/rtf"))
    return content
