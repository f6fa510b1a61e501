"""The text of a body part as the webmail shows it, and the uuencoded files inside it.

Line endings become LF, format=flowed paragraphs are rejoined, HTML becomes text, and
uuencoded blocks are cut out (they are offered as attachments instead).
"""

from __future__ import annotations

import re

from tayori.mime.flowed import unflow
from tayori.mime.html import html_to_text
from tayori.mime.part import Part
from tayori.mime.uuencode import UuFile, extract_uu

__all__ = ["part_html", "part_text", "uu_files"]

_LINE_ENDS = re.compile(r"\r\n?")
_MAX_TEXT = 16 * 1024 * 1024


def _normalise(text: str) -> str:
    return _LINE_ENDS.sub("\n", text) if "\r" in text else text


def uu_files(part: Part) -> list[UuFile]:
    """uuencoded files inside a text/plain part."""
    if part.content_type != "text/plain":
        return []
    return extract_uu(part.payload())[1]


def part_text(part: Part) -> str:
    """The part as plain text (HTML converted), at most 16 MiB of it."""
    payload = part.payload()[:_MAX_TEXT]
    if part.content_type == "text/plain":
        payload = extract_uu(payload)[0]
    text = _normalise(part.decode_text(payload).text)
    if part.content_type == "text/html":
        return html_to_text(text)
    if part.params.get("format", "").lower() == "flowed":
        text = unflow(text, delsp=part.params.get("delsp", "").lower() == "yes")
    return text


def part_html(part: Part) -> str:
    """The raw (unsanitised) HTML of a text/html part, decoded by its MIME charset: the
    MIME label wins over a conflicting <meta> inside the HTML."""
    return _normalise(part.decode_text(part.payload()[:_MAX_TEXT]).text)
