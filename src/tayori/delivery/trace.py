"""Trace headers we prepend on delivery, and the line-ending normalisation of stored mail."""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

_LINE_END = re.compile(rb"\r\n|\r|\n")
_QUEUE_ID_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZ"


def new_queue_id() -> str:
    """Short random id, quoted in the 250 reply and the Received header to trace a message.

    Twelve characters from one 128-bit draw (`secrets.choice` would read the system's
    random source once per character, on every message); the bias of taking 59.5 bits
    of a 128-bit number is below 2**-68, nothing an id for tracing could notice."""
    number = int.from_bytes(secrets.token_bytes(16))
    base = len(_QUEUE_ID_ALPHABET)
    characters = []
    for _ in range(12):
        number, index = divmod(number, base)
        characters.append(_QUEUE_ID_ALPHABET[index])
    return "".join(characters)


def normalise_line_endings(data: bytes) -> bytes:
    """Bare LF and bare CR become CRLF (the rule smtplib applies when sending), so stored
    messages have one line-ending form and POP3/IMAP sizes are exact octet counts."""
    crlf = data.count(b"\r\n")
    if crlf == data.count(b"\r") == data.count(b"\n"):
        return data
    return _LINE_END.sub(b"\r\n", data)


@dataclass(frozen=True, slots=True)
class Arrival:
    """How the message reached us, as the Received header reports it."""

    helo: str
    client_ip: str
    client_host: str
    tls_version: str | None
    tls_cipher: str | None
    authenticated: bool
    smtputf8: bool
    extended: bool
    queue_id: str
    time: datetime


def protocol_keyword(arrival: Arrival) -> str:
    """RFC 3848 / RFC 6531 `with` keyword."""
    if not arrival.extended:
        return "SMTP"
    base = "UTF8SMTP" if arrival.smtputf8 else "ESMTP"
    return base + ("S" if arrival.tls_version else "") + ("A" if arrival.authenticated else "")


def _clean(text: str) -> str:
    """Client-supplied words must not break the header: no line breaks, no parentheses."""
    return re.sub(r"[\r\n()\\]", "", text)[:255] or "unknown"


@functools.lru_cache(maxsize=8)
def _date(when: datetime) -> str:
    """RFC 5322 date of a whole second: every message arriving in that second shares it."""
    return format_datetime(when)


def received_header(arrival: Arrival, hostname: str, recipient: str | None) -> str:
    """The Received line for this hop; `for <recipient>` only when there is one recipient
    (naming all of a message's recipients in every copy would disclose Bcc)."""
    client_host = _clean(arrival.client_host)
    tls = ""
    if arrival.tls_version:
        tls = f"\r\n\t(using {arrival.tls_version} with cipher {arrival.tls_cipher})"
    recipient_part = f"\r\n\tfor <{recipient}>" if recipient else "\r\n\t"
    return (
        f"Received: from {_clean(arrival.helo)} ({client_host} [{arrival.client_ip}])\r\n"
        f"\tby {hostname} (Tayori) with {protocol_keyword(arrival)} id {arrival.queue_id}"
        f"{tls}{recipient_part}; {_date(arrival.time.replace(microsecond=0))}\r\n"
    )


def trace_headers(arrival: Arrival, hostname: str, sender: str, recipient: str) -> bytes:
    """Return-Path, Delivered-To and Received for one recipient's copy."""
    lines = (
        f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n"
        f"{received_header(arrival, hostname, recipient)}"
    )
    return lines.encode("utf-8", "surrogateescape")
