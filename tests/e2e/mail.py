"""Client-side helpers for end-to-end tests: trace-header stripping and POP3 downloads."""

from __future__ import annotations

import poplib
import re
import ssl
from pathlib import Path

# Our Received header always ends with its `for <recipient>; date` line, so the end of the
# trace is found there and not by unfolding (a message may itself start with white space).
TRACE = re.compile(
    rb"\AReturn-Path: [^\r\n]*\r\nDelivered-To: [^\r\n]*\r\n"
    rb"Received: .*?\r\n\tfor <[^\r\n>]*>; [^\r\n]*\r\n"
    # The inbound checks' results, when the MX added them (issue 3).
    rb"(?:Authentication-Results: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)?"
    rb"(?:X-Spam-Status: [^\r\n]*\r\nX-Spam-Score: [^\r\n]*\r\n)?",
    re.S,
)


def strip_trace(stored: bytes) -> bytes:
    """The message as sent: without the trace (Return-Path, Delivered-To, Received) and
    check-result headers (Authentication-Results, X-Spam-*) we add."""
    match = TRACE.match(stored)
    assert match is not None, f"no trace headers at the top: {stored[:300]!r}"
    return stored[match.end() :]


def as_sent(raw: bytes) -> bytes:
    """What the server is expected to store: CRLF line ends, final CRLF (SMTP adds one)."""
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", raw)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def client_context(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False  # the test certificate names mx.example.test
    return context


def pop3_download(
    port: int, user: str, password: str, *, delete: bool = False, cert: Path | None = None
) -> list[bytes]:
    """Every message of the maildrop, whole, as poplib returns it (lines re-joined by CRLF)."""
    client = poplib.POP3("127.0.0.1", port, timeout=30)
    try:
        if cert is not None:
            client.stls(client_context(cert))
        client.user(user)
        client.pass_(password)
        count, _ = client.stat()
        messages = []
        for number in range(1, count + 1):
            _, lines, _ = client.retr(number)
            messages.append(b"\r\n".join(lines) + b"\r\n")
            if delete:
                client.dele(number)
        client.quit()
        return messages
    except BaseException:
        client.close()
        raise
