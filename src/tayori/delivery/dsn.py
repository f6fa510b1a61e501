"""Delivery status notifications (RFC 3464): the error mail a sender gets back.

A DSN is `multipart/report; report-type=delivery-status` with three parts:

1. what happened, for people, in Japanese and then English (UTF-8): each recipient, the
   remote server's exact words and what to do, from the reason-code catalogue;
2. `message/delivery-status`, for programs: Reporting-MTA and Arrival-Date, then per
   recipient Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date
   (and Will-Retry-Until for a delay warning);
3. the original message's header block (`text/rfc822-headers`), never its body.

The whole report is 7-bit (base64 for the human part, quoted-printable for 8-bit original
headers), so it can be relayed to any server, whether it announces 8BITMIME or not. It is
sent from `MAILER-DAEMON@hostname` with an empty envelope sender and `Auto-Submitted:
auto-replied`; a message whose envelope sender is empty gets no DSN at all (RFC 3461/5321:
no bounces of bounces), which the queue runner enforces.
"""

from __future__ import annotations

import base64
import quopri
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime
from enum import StrEnum
from typing import Protocol

from tayori.core.reasons import reason

__all__ = [
    "BounceSender",
    "DsnAction",
    "DsnRecipient",
    "DsnReport",
    "build_dsn",
    "enhanced_status",
]

_ENHANCED = re.compile(r"^([245])\d\d[ -]([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_UNSAFE = re.compile(r"[^\x20-\x7e]")
_FOLD_AT = 76


class BounceSender(Protocol):
    """Where a DSN goes: the composition root routes it to a local mailbox, or back into the
    outbound queue with an empty envelope sender. Raises when it could not be stored; the
    runner then keeps the recipient queued and tries again (the DSN is never lost)."""

    async def send_bounce(self, recipient: str, raw: bytes) -> None: ...


class DsnAction(StrEnum):
    FAILED = "failed"
    DELAYED = "delayed"


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    address: str
    action: DsnAction
    reason: str
    """Reason code (catalogue) of the failure or delay: its texts explain it to people."""
    reply: str
    """The exact reply of the remote server (or our own words when none was reached)."""
    remote_mta: str
    """Host name (or address) of the server that gave the reply; empty if none answered."""
    last_attempt: datetime | None
    status: str = ""
    """RFC 3463 status; empty: taken from the reply's enhanced code (or its class)."""
    will_retry_until: datetime | None = None
    local: bool = False
    """The reply is our own words (DNS failure, connection refused...), not the server's:
    its Diagnostic-Code type is `x-tayori`, not `smtp`."""


@dataclass(frozen=True, slots=True)
class DsnReport:
    reporting_mta: str
    """Our host name."""
    sender: str
    """The original envelope sender, to whom the report goes."""
    queue_id: str
    arrival_date: datetime
    recipients: tuple[DsnRecipient, ...]
    original_headers: bytes
    """The original header block (up to the blank line), bytes as stored."""
    subject: str = ""
    """The original subject, decoded, for the human part."""
    original_message_id: str = ""


def enhanced_status(reply: str, fallback: str) -> str:
    """The RFC 3463 code of a reply (`550 5.1.1 ...` → `5.1.1`); a reply without one gets its
    class (`5.0.0` / `4.0.0`); no reply at all gets the fallback."""
    match = _ENHANCED.match(reply)
    if match and match.group(1) == match.group(2):
        return ".".join(match.group(2, 3, 4))
    if reply[:1] in ("4", "5") and reply[:3].isdigit():
        return f"{reply[0]}.0.0"
    return fallback


def _status(recipient: DsnRecipient) -> str:
    if recipient.status:
        return recipient.status
    fallback = "4.0.0" if recipient.action is DsnAction.DELAYED else "5.0.0"
    return enhanced_status(recipient.reply, fallback)


def _ascii(text: str) -> str:
    """One line of 7-bit text for a header field: controls and 8-bit characters become `?`
    (the human part keeps the exact characters)."""
    return _UNSAFE.sub("?", " ".join(text.split()))


def _field(name: str, value: str) -> str:
    """`Name: value`, folded at spaces (RFC 5322 2.2.3) so no line exceeds 78 characters."""
    words = _ascii(value).split(" ")
    lines = [f"{name}:"]
    for word in words:
        if len(lines[-1]) + 1 + len(word) > _FOLD_AT and lines[-1].strip():
            lines.append("")
        lines[-1] += " " + word
    return "\r\n".join(lines)


def _date(value: datetime) -> str:
    return format_datetime(value)


def _delivery_status(report: DsnReport) -> str:
    blocks = [
        "\r\n".join(
            [
                _field("Reporting-MTA", f"dns; {report.reporting_mta}"),
                _field("X-Tayori-Queue-ID", report.queue_id),
                _field("Arrival-Date", _date(report.arrival_date)),
            ]
        )
    ]
    for recipient in report.recipients:
        lines = [
            _field("Final-Recipient", f"rfc822; {recipient.address}"),
            _field("Action", recipient.action.value),
            _field("Status", _status(recipient)),
        ]
        if recipient.remote_mta:
            lines.append(_field("Remote-MTA", f"dns; {recipient.remote_mta}"))
        if recipient.reply:
            kind = "x-tayori" if recipient.local or not recipient.remote_mta else "smtp"
            lines.append(_field("Diagnostic-Code", f"{kind}; {recipient.reply}"))
        if recipient.last_attempt is not None:
            lines.append(_field("Last-Attempt-Date", _date(recipient.last_attempt)))
        if recipient.will_retry_until is not None:
            lines.append(_field("Will-Retry-Until", _date(recipient.will_retry_until)))
        blocks.append("\r\n".join(lines))
    return "\r\n\r\n".join(blocks) + "\r\n"


def _human(report: DsnReport) -> str:
    delayed = all(r.action is DsnAction.DELAYED for r in report.recipients)
    until = next((r.will_retry_until for r in report.recipients if r.will_retry_until), None)
    until_text = _date(until) if until else ""
    ja: list[str] = [f"これは {report.reporting_mta} のメール配送システムからの自動通知です。", ""]
    en: list[str] = [f"This is the mail delivery system at {report.reporting_mta}.", ""]
    if delayed:
        ja.append("お送りいただいたメールは、次の宛先にまだ配送できていません。")
        ja.append(
            f"{until_text} まで自動で再送を続けます。メールを送り直す必要はありません。"
            if until_text
            else "自動で再送を続けます。メールを送り直す必要はありません。"
        )
        en.append("Your message has not been delivered yet to the recipients below.")
        en.append(
            f"We keep trying until {until_text}; you do not need to send it again."
            if until_text
            else "We keep trying; you do not need to send it again."
        )
    else:
        ja.append("お送りいただいたメールを、次の宛先に配送できませんでした。")
        en.append("Your message could not be delivered to the recipients below.")
    if report.subject:
        ja += ["", f"件名: {report.subject}"]
        en += ["", f"Subject: {report.subject}"]
    for recipient in report.recipients:
        entry = reason(recipient.reason)
        ja += ["", f"<{recipient.address}>", f"  {entry.summary.ja}"]
        en += ["", f"<{recipient.address}>", f"  {entry.summary.en}"]
        if recipient.remote_mta:
            ja.append(f"  相手のサーバ: {recipient.remote_mta}")
            en.append(f"  Remote server: {recipient.remote_mta}")
        if recipient.reply:
            words = " ".join(recipient.reply.split())
            label_ja = "  相手のサーバの応答: " if recipient.remote_mta else "  詳細: "
            label_en = "  Its reply: " if recipient.remote_mta else "  Details: "
            ja.append(label_ja + words)
            en.append(label_en + words)
        ja.append(f"  対処方法: {entry.action.ja}")
        en.append(f"  What to do: {entry.action.en}")
    ja += ["", "元のメールのヘッダを添付します。"]
    en += ["", "The headers of your message are attached."]
    rule = "-" * 72
    return "\r\n".join([*ja, "", rule, "", *en]) + "\r\n"


def _base64_lines(data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\r\n"


def _headers_part(headers: bytes) -> tuple[str, bytes]:
    """The original header block; 8-bit headers (raw UTF-8 Subject, say) are
    quoted-printable so that the report stays 7-bit."""
    block = headers.rstrip(b"\r\n") + b"\r\n"
    if all(byte < 0x80 for byte in block):
        return "7bit", block
    lf = block.replace(b"\r\n", b"\n")
    return "quoted-printable", quopri.encodestring(lf).replace(b"\n", b"\r\n")


def _subject(delayed: bool) -> str:
    text = (
        "配送遅延のお知らせ / Delayed Mail (still being retried)"
        if delayed
        else "配送できなかったメールのお知らせ / Undelivered Mail Returned to Sender"
    )
    return Header(text, "utf-8", header_name="Subject").encode(maxlinelen=76, linesep="\r\n")


def build_dsn(report: DsnReport, *, now: datetime, message_id: str | None = None) -> bytes:
    """The complete DSN message (CRLF line ends, 7-bit) addressed to `report.sender`."""
    if not report.sender:
        raise ValueError("no DSN for an empty envelope sender (it would be a bounce loop)")
    if not report.recipients:
        raise ValueError("a DSN needs at least one recipient")
    delayed = all(r.action is DsnAction.DELAYED for r in report.recipients)
    boundary = f"=_tayori_{secrets.token_hex(12)}"
    token = secrets.token_hex(6)
    message_id = message_id or (
        f"<{now.strftime('%Y%m%d%H%M%S')}.{report.queue_id}.{token}@{report.reporting_mta}>"
    )
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{report.reporting_mta}>",
        f"To: <{_ascii(report.sender)}>",
        f"Subject: {_subject(delayed)}",
        f"Date: {_date(now)}",
        f"Message-ID: {message_id}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"',
    ]
    if report.original_message_id:
        original = _ascii(report.original_message_id)
        head += [f"In-Reply-To: {original}", f"References: {original}"]
    encoding, headers = _headers_part(report.original_headers)
    parts: Sequence[tuple[str, bytes]] = (
        (
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Description: Notification\r\n"
            "Content-Transfer-Encoding: base64\r\n",
            _base64_lines(_human(report).encode("utf-8")).encode("ascii"),
        ),
        (
            "Content-Type: message/delivery-status\r\n"
            "Content-Description: Delivery report\r\n"
            "Content-Transfer-Encoding: 7bit\r\n",
            _delivery_status(report).encode("ascii"),
        ),
        (
            "Content-Type: text/rfc822-headers\r\n"
            "Content-Description: Headers of the original message\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n",
            headers,
        ),
    )
    out = ["\r\n".join(head).encode("ascii"), b"\r\n\r\n"]
    out.append(b"This is a MIME-encapsulated delivery report (RFC 3464).\r\n")
    for part_head, body in parts:
        out += [f"\r\n--{boundary}\r\n".encode("ascii"), part_head.encode("ascii"), b"\r\n", body]
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)
