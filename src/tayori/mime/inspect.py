"""What the MIME layer makes of a message, for `tayori message inspect` and for tests.

One report, two renderings: a JSON object with stable keys (`subject`, `from`, `to`,
`date`, `message_id`, `text`, `html_sanitized`, `attachments`, `defects`, `parts`) for
scripts and the corpus tests, and a text form for admins reading a problem message.
"""

from __future__ import annotations

import re
from typing import Any

from tayori.mime.addresses import Mailbox
from tayori.mime.defects import explain
from tayori.mime.filenames import attachment_filename, safe_filename
from tayori.mime.message import Message
from tayori.mime.part import Part

__all__ = ["inspect_report", "render_text"]

_MAX_SHOWN_TEXT = 4000
# A terminal must not receive escape sequences from a message (ESC in a body or a name).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _mailboxes(mailboxes: list[Mailbox]) -> list[dict[str, str]]:
    return [{"name": m.name, "address": m.address} for m in mailboxes]


def _part_entry(part: Part, tnef_names: dict[int, list[str]]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "part": part.number or "(message)",
        "depth": part.depth,
        "content_type": part.content_type,
        "declared_type": part.declared_type,
        "charset_declared": part.charset,
        "charset_used": None,
        "transfer_encoding": part.transfer_encoding or None,
        "disposition": part.disposition,
        "filename": attachment_filename(part),
        "size": part.size,
    }
    if part.maintype == "text" and not part.children:
        entry["charset_used"] = part.decode_text().charset
    if id(part) in tnef_names:
        entry["contents"] = tnef_names[id(part)]
    return entry


def inspect_report(message: Message) -> dict[str, Any]:
    """The JSON report of a message (every key always present)."""
    attachments = []
    tnef_names: dict[int, list[str]] = {}
    for attachment in message.attachments:
        size, sha256 = attachment.digest()
        attachments.append(
            {
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "size": size,
                "sha256": sha256,
            }
        )
        tnef = attachment.tnef()
        if tnef is not None:
            tnef_names[id(attachment.part)] = tnef.names
    security = dict(message.security)
    parts = []
    for part in message.root.walk():
        entry = _part_entry(part, tnef_names)
        if part.number in security:
            entry["security"] = security[part.number]
        parts.append(entry)
    date = message.date
    report: dict[str, Any] = {
        "subject": message.subject,
        "from": _mailboxes(message.from_),
        "to": _mailboxes(message.to),
        "date": date.isoformat() if date is not None else message.date_text,
        "message_id": message.message_id or None,
        "text": message.text,
        "html_sanitized": message.html_sanitized(),
        "attachments": attachments,
        "parts": parts,
    }
    # Last: decoding the parts above may have found more.
    report["defects"] = [
        {
            "code": defect.code.value,
            "part": defect.part or "(message)",
            "detail": defect.detail,
            "explanation": explain(defect.code),
        }
        for defect in message.defects
    ]
    return report


def _addresses(entries: list[dict[str, str]]) -> str:
    shown = [f"{e['name']} <{e['address']}>" if e["name"] else e["address"] for e in entries]
    return ", ".join(shown) or "-"


def render_text(report: dict[str, Any]) -> str:
    """The report for people: headers, the MIME tree, attachments, defects, then the text."""
    lines = [
        f"Subject:    {report['subject']}",
        f"From:       {_addresses(report['from'])}",
        f"To:         {_addresses(report['to'])}",
        f"Date:       {report['date'] or '-'}",
        f"Message-ID: {report['message_id'] or '-'}",
        "",
        "Parts:",
    ]
    for part in report["parts"]:
        charset = ""
        if part["charset_declared"] or part["charset_used"]:
            declared, used = part["charset_declared"] or "-", part["charset_used"] or "-"
            charset = f" charset {declared} (read as {used})"
        name = f" {part['filename']!r}" if part["filename"] else ""
        extra = f" [{part['security']}]" if "security" in part else ""
        lines.append(
            f"  {'  ' * part['depth']}{part['part']} {part['content_type']}{charset} "
            f"{part['size']} bytes{name}{extra}"
        )
        for inner in part.get("contents", []):
            lines.append(f"  {'  ' * part['depth']}    winmail.dat: {inner}")
    lines.append("")
    lines.append(f"Attachments: {len(report['attachments']) or 'none'}")
    for attachment in report["attachments"]:
        saved = safe_filename(attachment["filename"])
        lines.append(
            f"  {attachment['filename']!r} {attachment['content_type']} {attachment['size']} "
            f"bytes sha256 {attachment['sha256']} (saved as {saved!r})"
        )
    lines.append("")
    lines.append(f"Defects: {len(report['defects']) or 'none'}")
    for defect in report["defects"]:
        detail = f" ({defect['detail']})" if defect["detail"] else ""
        lines.append(f"  {defect['part']}: {defect['code']}{detail}: {defect['explanation']}")
    lines.append("")
    text = report["text"]
    if len(text) > _MAX_SHOWN_TEXT:
        text = (
            text[:_MAX_SHOWN_TEXT]
            + f"\n… ({len(report['text']) - _MAX_SHOWN_TEXT} more characters)"
        )
    lines.append("Text:")
    lines.extend(f"  {line}" for line in text.split("\n"))
    if report["html_sanitized"] is not None:
        lines.append("")
        lines.append(f"HTML: {len(report['html_sanitized'])} characters after sanitising")
    return _printable("\n".join(lines))
