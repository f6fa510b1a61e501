"""One MIME entity of a parsed message: where its bytes are and what its headers declare.

A part keeps offsets into the message bytes, never copies: a 24 MB attachment costs nothing
until someone asks for its content, and the bytes handed out are exactly what was received.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from tayori.mime.charsets import Decoded, decode
from tayori.mime.defects import Defect, DefectCode
from tayori.mime.headerblock import Headers
from tayori.mime.transfer import decode_transfer

__all__ = ["Part"]


@dataclass(slots=True, eq=False)
class Part:
    """A MIME entity. `number` is the IMAP part specifier ("" for a multipart message root).

    `content_type` is what the part is treated as; `declared_type` what its header said
    (they differ when, say, a multipart has no boundary and is shown as text).
    """

    source: bytes
    header_start: int
    body_start: int
    end: int
    headers: Headers
    depth: int = 0
    number: str = ""
    content_type: str = "text/plain"
    declared_type: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    boundary: bytes | None = None
    disposition: str | None = None
    disposition_params: dict[str, str] = field(default_factory=dict)
    transfer_encoding: str = ""
    children: list[Part] = field(default_factory=list)
    is_message: bool = False
    defects: list[Defect] = field(default_factory=list)

    @property
    def maintype(self) -> str:
        return self.content_type.partition("/")[0]

    @property
    def is_multipart(self) -> bool:
        return self.maintype == "multipart" and bool(self.children)

    @property
    def charset(self) -> str | None:
        """The declared charset parameter, if any."""
        return self.params.get("charset")

    @property
    def raw_body(self) -> bytes:
        """The body exactly as received, still transfer-encoded."""
        return self.source[self.body_start : self.end]

    @property
    def size(self) -> int:
        """Size of the raw body in bytes (as IMAP BODYSTRUCTURE reports it)."""
        return max(0, self.end - self.body_start)

    def add_defect(self, code: DefectCode, detail: str = "") -> None:
        self.defects.append(Defect(code, self.number, detail))

    def payload(self) -> bytes:
        """The body with its transfer encoding undone (base64, quoted-printable, uuencode)."""
        data, damaged, known = decode_transfer(self.raw_body, self.transfer_encoding)
        if damaged and not any(
            d.code is DefectCode.DAMAGED_TRANSFER_ENCODING for d in self.defects
        ):
            self.add_defect(DefectCode.DAMAGED_TRANSFER_ENCODING, self.transfer_encoding)
        if not known and not any(
            d.code is DefectCode.UNKNOWN_TRANSFER_ENCODING for d in self.defects
        ):
            self.add_defect(DefectCode.UNKNOWN_TRANSFER_ENCODING, self.transfer_encoding)
        return data

    def decode_text(self, data: bytes | None = None) -> Decoded:
        """The payload (or `data`) as text in the declared charset, guessing when there is
        none; records unknown charsets and undecodable bytes as defects."""
        decoded = decode(self.payload() if data is None else data, self.charset)
        if not decoded.label_known:
            self.add_defect(DefectCode.UNKNOWN_CHARSET, self.charset or "")
        if decoded.lossy:
            self.add_defect(DefectCode.UNDECODABLE_TEXT, decoded.charset)
        return decoded

    def walk(self) -> Iterator[Part]:
        """This part and every part below it, depth first, without recursion."""
        stack = [self]
        while stack:
            part = stack.pop()
            yield part
            stack.extend(reversed(part.children))
