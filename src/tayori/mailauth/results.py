"""The Authentication-Results header (RFC 8601) we add on delivery, and the removal of
headers of the names we add (Authentication-Results, X-Spam-*) arriving from outside:
otherwise a forger could write "dkim=pass" or "X-Spam-Status: No" into their own message."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from tayori.mailauth.arc import ArcResult
from tayori.mailauth.dkim_verify import DkimSignatureResult
from tayori.mailauth.dmarc import DmarcOutcome
from tayori.mailauth.spf import SpfOutcome

OUR_HEADERS = (b"authentication-results", b"x-spam-status", b"x-spam-score", b"x-spam-flag")


@dataclass(frozen=True, slots=True)
class AuthResults:
    """Everything checked about one message, for the header and for the verdicts."""

    spf: SpfOutcome | None = None
    dkim: Sequence[DkimSignatureResult] = ()
    dmarc: DmarcOutcome | None = None
    arc: ArcResult = "none"
    iprev: str = ""
    client_ip: str = ""
    helo: str = ""
    sender: str = ""
    notes: dict[str, str] = field(default_factory=dict)


def _value(text: str) -> str:
    """A property value (RFC 8601 §2.2): a token, or quoted when it has specials."""
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authentication_results(authserv_id: str, results: AuthResults) -> bytes:
    parts: list[str] = []
    if results.iprev:
        parts.append(f"iprev={results.iprev} policy.iprev={_value(results.client_ip)}")
    if results.spf is not None:
        who = (
            f"smtp.mailfrom={_value(results.sender)}"
            if results.sender
            else (f"smtp.helo={_value(results.helo)}")
        )
        parts.append(f"spf={results.spf.result} {who}")
    if results.dkim:
        for signature in results.dkim:
            parts.append(
                f"dkim={signature.result} header.d={_value(signature.domain or 'unknown')}"
                f" header.s={_value(signature.selector or 'unknown')}"
            )
    else:
        parts.append("dkim=none")
    if results.dmarc is not None:
        dmarc = f"dmarc={results.dmarc.result}"
        if results.dmarc.sampled_out:
            # RFC 7489 §6.6.4: say why the published policy was not the one applied.
            dmarc += f" (p={results.dmarc.published} pct={results.dmarc.pct}: sampled out)"
        if results.dmarc.domain:
            dmarc += f" header.from={_value(results.dmarc.domain)}"
        if results.dmarc.result in ("pass", "fail"):
            dmarc += f" policy.dmarc={results.dmarc.policy}"
        parts.append(dmarc)
    parts.append(f"arc={results.arc}")
    body = ";\r\n\t".join([authserv_id, *parts])
    return f"Authentication-Results: {body}\r\n".encode("utf-8", "surrogateescape")


def spam_headers(score: float, junk: bool, reasons: Sequence[str]) -> bytes:
    tests = ",".join(reasons) or "none"
    status = "Yes" if junk else "No"
    return (
        f"X-Spam-Status: {status}, score={score:.1f} tests={tests}\r\nX-Spam-Score: {score:.1f}\r\n"
    ).encode("ascii")


def _fields(head: bytes) -> list[list[bytes]]:
    """Header lines grouped per field (a field's first line and its folded continuations)."""
    grouped: list[list[bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and grouped:
            grouped[-1].append(line)
        else:
            grouped.append([line])
    return grouped


def _forged(field_lines: list[bytes], authserv_id: bytes) -> bool:
    name, colon, value = b"".join(field_lines).partition(b":")
    name = name.strip().lower()
    if not colon or name not in OUR_HEADERS:
        return False
    if name != b"authentication-results":
        return True  # ours carry no name of their origin: any from outside is a forgery
    # RFC 8601 §5: remove those claiming our authserv-id; others' are kept, not trusted.
    claimed = re.split(rb"[\s;(]", value.strip(), maxsplit=1)[0]
    return claimed.lower() == authserv_id.lower()


def remove_our_headers(message: bytes, authserv_id: str) -> bytes:
    """The message without X-Spam-Status/-Score/-Flag fields, nor Authentication-Results
    fields claiming `authserv_id` (with their folded lines); otherwise byte for byte."""
    end = message.find(b"\r\n\r\n")
    head, rest = (message, b"") if end < 0 else (message[: end + 2], message[end + 2 :])
    ours = authserv_id.encode("ascii", "replace")
    kept = [b"".join(lines) for lines in _fields(head) if not _forged(lines, ours)]
    return b"".join(kept) + rest
