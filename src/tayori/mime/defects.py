"""What can be wrong with a message, named so diagnostics can explain it to people.

Each defect has a stable code (used in logs, the inspect command and tests) and a sentence
for members and admins saying what it means for them. Defects never stop parsing: they are
recorded against the part where they were found.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Defect", "DefectCode", "explain"]


class DefectCode(StrEnum):
    """Stable names of the problems the parser records."""

    NO_HEADERS = "no-headers"
    MISSING_HEADER_SEPARATOR = "missing-header-separator"
    GARBAGE_HEADER_LINE = "garbage-header-line"
    MBOX_FROM_LINE = "mbox-from-line"
    BARE_CR_LINE_ENDINGS = "bare-cr-line-endings"
    NUL_BYTES = "nul-bytes"
    LONG_LINE = "line-over-998-bytes"
    DUPLICATE_HEADER = "duplicate-header"
    RAW_8BIT_HEADER = "raw-8bit-header"
    UNDECODABLE_HEADER = "undecodable-header"
    BAD_ENCODED_WORD = "bad-encoded-word"
    MALFORMED_CONTENT_TYPE = "malformed-content-type"
    MULTIPART_WITHOUT_BOUNDARY = "multipart-without-boundary"
    BOUNDARY_NEVER_USED = "boundary-never-used"
    MISSING_CLOSE_BOUNDARY = "missing-close-boundary"
    NESTING_TOO_DEEP = "nesting-too-deep"
    TOO_MANY_PARTS = "too-many-parts"
    UNKNOWN_TRANSFER_ENCODING = "unknown-transfer-encoding"
    DAMAGED_TRANSFER_ENCODING = "damaged-transfer-encoding"
    ENCODED_MESSAGE_PART = "encoded-message-part"
    UNKNOWN_CHARSET = "unknown-charset"
    UNDECODABLE_TEXT = "undecodable-text"
    UUENCODE = "uuencoded-attachment"
    TNEF = "tnef-winmail-dat"
    DAMAGED_TNEF = "damaged-tnef"
    MORE_MESSAGES = "more-than-one-message"


_EXPLANATIONS: dict[DefectCode, str] = {
    DefectCode.NO_HEADERS: "The message has no header fields at all.",
    DefectCode.MISSING_HEADER_SEPARATOR: "The header ends without the empty line that must "
    "separate it from the body; some mail programs show part of the body as header.",
    DefectCode.GARBAGE_HEADER_LINE: "The header has lines that are not header fields; your "
    "mail program may not understand this header.",
    DefectCode.MBOX_FROM_LINE: "The message starts with an mbox 'From ' line.",
    DefectCode.BARE_CR_LINE_ENDINGS: "Lines end with a bare carriage return (old Mac style).",
    DefectCode.NUL_BYTES: "The message contains NUL bytes, which many mail programs refuse.",
    DefectCode.LONG_LINE: "A line is longer than the 998 bytes mail allows.",
    DefectCode.DUPLICATE_HEADER: "A header field that may appear once appears more than once; "
    "mail programs may show either value.",
    DefectCode.RAW_8BIT_HEADER: "A header has unencoded non-ASCII text; it was read by "
    "guessing its character set.",
    DefectCode.UNDECODABLE_HEADER: "A header has bytes that no character set explains; they "
    "are shown as \ufffd.",
    DefectCode.BAD_ENCODED_WORD: "A header has a broken encoded word (unknown character set "
    "or invalid encoding); part of it is shown as written.",
    DefectCode.MALFORMED_CONTENT_TYPE: "A Content-Type or Content-Disposition field is malformed.",
    DefectCode.MULTIPART_WITHOUT_BOUNDARY: "A multipart part has no boundary; it is shown as text.",
    DefectCode.BOUNDARY_NEVER_USED: "A multipart part never uses its boundary; it is shown "
    "as text.",
    DefectCode.MISSING_CLOSE_BOUNDARY: "A multipart part is not closed; the message may be "
    "truncated.",
    DefectCode.NESTING_TOO_DEEP: "Parts are nested deeper than we follow; the deeper parts "
    "are kept but their nesting is flattened or not shown.",
    DefectCode.TOO_MANY_PARTS: "The message has more parts than we list; the rest are kept "
    "inside the last part.",
    DefectCode.UNKNOWN_TRANSFER_ENCODING: "A part uses an unknown transfer encoding; it is "
    "shown undecoded.",
    DefectCode.DAMAGED_TRANSFER_ENCODING: "A part's base64, quoted-printable or uuencoded "
    "data is damaged; what could be recovered is shown.",
    DefectCode.ENCODED_MESSAGE_PART: "An attached message is base64 or quoted-printable "
    "encoded, which mail programs may not open.",
    DefectCode.UNKNOWN_CHARSET: "A part declares a character set we do not know; its text "
    "was read by guessing.",
    DefectCode.UNDECODABLE_TEXT: "A part has bytes that its character set does not explain; "
    "they are shown as \ufffd.",
    DefectCode.UUENCODE: "An attachment is uuencoded inside the text.",
    DefectCode.TNEF: "An attachment is a winmail.dat (TNEF) file from Outlook; its contents "
    "are listed.",
    DefectCode.DAMAGED_TNEF: "A winmail.dat (TNEF) attachment is damaged; what could be read "
    "is listed.",
    DefectCode.MORE_MESSAGES: "The file holds more than one message (mbox); only the first "
    "is shown.",
}


def explain(code: DefectCode) -> str:
    """The sentence diagnostics show for a defect."""
    return _EXPLANATIONS[code]


@dataclass(frozen=True, slots=True)
class Defect:
    """One problem, where it was found (IMAP part number, "" for the whole message) and a
    short technical detail for admins."""

    code: DefectCode
    part: str = ""
    detail: str = ""
