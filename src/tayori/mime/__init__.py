"""Reading and writing mail correctly: the MIME and Japanese charset layer.

`parse_message(raw)` never raises and never loses a byte; everything odd is recorded as a
defect. Headers, names and bodies decode the way Japanese mail programs mean them (CP50220,
cp932, EUC-JP with vendor characters, split encoded words, RFC 2231 names), HTML is
sanitised, and `compose` writes UTF-8 (or ISO-2022-JP for old mail programs) correctly.
May import only `tayori.core` and third-party libraries.
"""

from __future__ import annotations

from tayori.mime.addresses import Mailbox, parse_addresses
from tayori.mime.charsets import Decoded, decode
from tayori.mime.defects import Defect, DefectCode, explain
from tayori.mime.filenames import attachment_filename, safe_filename
from tayori.mime.headers import decode_header_text
from tayori.mime.html import SanitizeOptions, html_to_text, sanitize_html
from tayori.mime.inspect import inspect_report, render_text
from tayori.mime.message import Attachment, Message, parse_message
from tayori.mime.part import Part
from tayori.mime.summary import EnvelopeSummary, envelope_summary
from tayori.mime.tnef import TnefContent, parse_tnef

__all__ = [
    "Attachment",
    "Decoded",
    "Defect",
    "DefectCode",
    "EnvelopeSummary",
    "Mailbox",
    "Message",
    "Part",
    "SanitizeOptions",
    "TnefContent",
    "attachment_filename",
    "decode",
    "decode_header_text",
    "envelope_summary",
    "explain",
    "html_to_text",
    "inspect_report",
    "parse_addresses",
    "parse_message",
    "parse_tnef",
    "render_text",
    "safe_filename",
    "sanitize_html",
]
