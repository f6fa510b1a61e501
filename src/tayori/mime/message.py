"""A parsed message: decoded envelope fields, body text, sanitised HTML, attachments.

This is the one object the webmail, search, the spam filter, diagnostics and IMAP read a
message through, so they all agree on what it says. Parsing never raises; everything odd is
in `defects`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import cached_property

from tayori.mime.addresses import Mailbox, parse_addresses
from tayori.mime.body import part_html, part_text, uu_files
from tayori.mime.defects import Defect, DefectCode
from tayori.mime.filenames import attachment_filename
from tayori.mime.headers import decode_header
from tayori.mime.html import SanitizeOptions, sanitize_html
from tayori.mime.parse import ParsedTree, parse_tree
from tayori.mime.part import Part
from tayori.mime.structure import BodyStructure, body_structure
from tayori.mime.tnef import TnefContent, parse_tnef

__all__ = ["Attachment", "Message", "parse_message"]

_TNEF_TYPES = frozenset(["application/ms-tnef", "application/vnd.ms-tnef"])
_SIGNED = frozenset(
    [
        "multipart/signed",
        "application/pgp-signature",
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
    ]
)
_ENCRYPTED = frozenset(["multipart/encrypted", "application/pgp-encrypted"])
_BODY_TYPES = frozenset(["text/plain", "text/html"])
_SHOWN_FIELDS = ("subject", "from", "to", "cc", "reply-to", "sender")
_PKCS7 = frozenset(["application/pkcs7-mime", "application/x-pkcs7-mime"])


@dataclass(slots=True)
class Attachment:
    """A file the member can download: a MIME part, or a file uuencoded inside a text part."""

    filename: str | None
    content_type: str
    part: Part
    uu_data: bytes | None = None

    def content(self) -> bytes:
        """The decoded bytes of the file."""
        return self.uu_data if self.uu_data is not None else self.part.payload()

    @property
    def is_tnef(self) -> bool:
        return self.content_type in _TNEF_TYPES or (
            self.filename is not None and self.filename.lower() == "winmail.dat"
        )

    def tnef(self) -> TnefContent | None:
        """The files inside a winmail.dat, or None when this is not one."""
        if not self.is_tnef:
            return None
        return parse_tnef(self.content())

    def digest(self) -> tuple[int, str]:
        """(size, sha256 hex) of the decoded bytes."""
        data = self.content()
        return len(data), hashlib.sha256(data).hexdigest()


class Message:
    """A message parsed from its raw bytes (kept as they are: `source`)."""

    def __init__(self, tree: ParsedTree) -> None:
        self.tree = tree
        self.root = tree.root

    @property
    def source(self) -> bytes:
        """The bytes the parts point into (see ParsedTree)."""
        return self.tree.source

    @property
    def raw(self) -> bytes:
        """The message exactly as received."""
        return self.tree.raw

    def _header(self, name: str) -> str | None:
        raw = self.root.headers.get(name)
        return None if raw is None else decode_header(raw).text

    @cached_property
    def subject(self) -> str:
        return self._header("subject") or ""

    @cached_property
    def from_(self) -> list[Mailbox]:
        return parse_addresses(self.root.headers.get("from"))

    @cached_property
    def to(self) -> list[Mailbox]:
        return [m for raw in self.root.headers.get_all("to") for m in parse_addresses(raw)]

    @cached_property
    def cc(self) -> list[Mailbox]:
        return [m for raw in self.root.headers.get_all("cc") for m in parse_addresses(raw)]

    @cached_property
    def reply_to(self) -> list[Mailbox]:
        return parse_addresses(self.root.headers.get("reply-to"))

    @cached_property
    def message_id(self) -> str:
        return (self._header("message-id") or "").strip().strip("<>").strip()

    @cached_property
    def date_text(self) -> str | None:
        return self._header("date")

    @cached_property
    def date(self) -> datetime | None:
        """The Date header as a time, or None when absent or unreadable."""
        if not self.date_text:
            return None
        try:
            return parsedate_to_datetime(self.date_text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None

    @cached_property
    def structure(self) -> BodyStructure:
        return body_structure(self.root)

    @cached_property
    def text(self) -> str:
        """The body as the webmail shows it as text: every text body part, in order."""
        return "\n\n".join(part_text(part) for part in self.structure.text).strip("\n")

    @cached_property
    def first_text(self) -> str:
        """The first text body part alone (what previews and one-line summaries use)."""
        parts = self.structure.text
        return part_text(parts[0]) if parts else ""

    def html_sanitized(self, options: SanitizeOptions | None = None) -> str | None:
        """The HTML body made safe, or None when the message has no HTML body part."""
        html_parts = [p for p in self.structure.html if p.content_type == "text/html"]
        if not html_parts:
            return None
        if options is None:
            options = SanitizeOptions(cid_url=self._cid_url)
        return "\n".join(sanitize_html(part_html(part), options) for part in html_parts)

    def _cid_url(self, content_id: str) -> str | None:
        part = self.part_by_content_id(content_id)
        return None if part is None else f"cid:{content_id}"

    def part_by_content_id(self, content_id: str) -> Part | None:
        wanted = content_id.strip().strip("<>")
        for part in self.root.walk():
            raw = part.headers.get("content-id")
            if raw is not None and raw.strip().strip(b"<>").decode("latin-1") == wanted:
                return part
        return None

    @cached_property
    def attachments(self) -> list[Attachment]:
        """Every file the member can download, in message order: each leaf part that is not
        text shown as the body (RFC 8621's attachments plus the inline images it shows in
        the body, as mail programs also offer those), and uuencoded files inside text."""
        found: list[Attachment] = []
        shown = {
            id(part)
            for part in (*self.structure.text, *self.structure.html)
            if part.content_type in _BODY_TYPES
        }
        stack = [self.root]
        while stack:
            part = stack.pop()
            if part.is_multipart:
                stack.extend(reversed(part.children))
                continue
            if id(part) not in shown:
                attachment = Attachment(attachment_filename(part), part.content_type, part)
                if attachment.is_tnef:
                    part.add_defect(DefectCode.TNEF)
                found.append(attachment)
            if part.content_type == "text/plain":
                for name, data, _damaged in uu_files(part):
                    part.add_defect(DefectCode.UUENCODE, name)
                    found.append(Attachment(name, "application/octet-stream", part, data))
        return found

    def attached_messages(self) -> list[Message]:
        """The messages attached as message/rfc822 parts, at any depth, in order."""
        found = []
        for part in self.root.walk():
            if part is not self.root and part.is_message:
                raw = part.source[part.header_start : part.end]
                found.append(Message(ParsedTree(part, part.source, raw)))
        return found

    @cached_property
    def security(self) -> list[tuple[str, str]]:
        """(part number, "signed" or "encrypted") for S/MIME and PGP parts (MIME or inline);
        signatures are not checked here."""
        marks: list[tuple[str, str]] = []
        for part in self.root.walk():
            kind = None
            if part.content_type in _SIGNED:
                kind = "signed"
            elif part.content_type in _ENCRYPTED:
                kind = "encrypted"
            elif part.content_type in _PKCS7:
                smime = part.params.get("smime-type", "").lower()
                kind = "signed" if smime == "signed-data" else "encrypted"
            elif part.content_type == "text/plain" and not part.children:
                start = part.raw_body[:200].lstrip()
                if start.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----"):
                    kind = "signed"
                elif start.startswith(b"-----BEGIN PGP MESSAGE-----"):
                    kind = "encrypted"
            if kind is not None:
                marks.append((part.number, kind))
        return marks

    @cached_property
    def _header_defects(self) -> list[Defect]:
        """Problems met decoding the fields people see (8-bit text, broken encoded words)."""
        found: list[Defect] = []
        for name in _SHOWN_FIELDS:
            for raw in self.root.headers.get_all(name):
                decoded = decode_header(raw)
                if decoded.lossy:
                    found.append(Defect(DefectCode.UNDECODABLE_HEADER, "", name))
                elif any("raw 8-bit" in p for p in decoded.problems):
                    found.append(Defect(DefectCode.RAW_8BIT_HEADER, "", name))
                if any("encoded word" in p for p in decoded.problems):
                    found.append(Defect(DefectCode.BAD_ENCODED_WORD, "", name))
        return found

    @property
    def defects(self) -> list[Defect]:
        """Every defect found: while parsing, and while decoding what was asked for so far."""
        found = list(self.tree.defects) + self._header_defects
        seen = {id(d) for d in found}
        for part in self.root.walk():
            for defect in part.defects:
                if id(defect) not in seen:
                    seen.add(id(defect))
                    found.append(defect)
        return found


def parse_message(raw: bytes) -> Message:
    """Parse a message from its raw bytes; never raises."""
    return Message(parse_tree(raw))
