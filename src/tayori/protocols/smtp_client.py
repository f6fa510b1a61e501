"""The client side of SMTP (RFC 5321) without I/O: reply parsing, EHLO keywords, command
lines and the DATA payload.

`ReplyParser` takes bytes as they arrive, in any chunking, and hands out complete replies
in order, however many a single read carried: with PIPELINING (RFC 2920) the replies to
MAIL, every RCPT and DATA commonly arrive in one segment, and multi-line replies
(`250-...` continued by `250 ...`) may be split anywhere. Anything left over after a reply
stays buffered for the next one.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_LINE",
    "MAX_REPLY",
    "ProtocolError",
    "Reply",
    "ReplyParser",
    "data_payload",
    "ehlo_keywords",
    "mail_command",
    "rcpt_command",
]

MAX_LINE = 8192
"""Longest reply line accepted (RFC 5321 says 512; servers exceed it with long texts)."""

MAX_REPLY = MAX_LINE * 4
"""Longest multi-line reply accepted: bounds memory against a server that never ends one."""

_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_UNSAFE_ADDRESS = re.compile(r"[\x00-\x1f\x7f<>]")


class ProtocolError(ValueError):
    """The server's bytes are not SMTP replies (a malformed or over-long line)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply: its code and the text of each line (without code, separator or CRLF)."""

    code: int
    lines: tuple[str, ...]

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 300

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def one_line(self) -> str:
        """The reply on one line as the server wrote it (lines and runs of white space joined
        by single spaces): what outcomes and bounces quote."""
        return f"{self.code} {' '.join(self.text.split())}".strip()


class ReplyParser:
    """Complete replies out of a byte stream (see the module docstring)."""

    __slots__ = ("_buffer", "_code", "_lines", "_replies", "_size")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._code = 0
        self._size = 0
        self._replies: deque[Reply] = deque()

    def feed(self, data: bytes) -> None:
        """Add received bytes; raises ProtocolError when they cannot be replies (the
        connection is of no further use then)."""
        self._buffer += data
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            self._line(bytes(self._buffer[start : end + 1]))
            start = end + 1
        del self._buffer[:start]
        if len(self._buffer) > MAX_LINE:
            raise ProtocolError("reply line too long")

    def _line(self, raw: bytes) -> None:
        if len(raw) > MAX_LINE:
            raise ProtocolError("reply line too long")
        line = raw.rstrip(b"\r\n")
        code, separator = line[:3], line[3:4]
        if not (len(code) == 3 and code.isdigit() and code[:1] in b"12345"):
            raise ProtocolError(f"malformed reply line {line[:80]!r}")
        if separator not in (b"", b" ", b"-"):
            raise ProtocolError(f"malformed reply line {line[:80]!r}")
        self._size += len(raw)
        if self._size > MAX_REPLY:
            raise ProtocolError("reply too long")
        self._code = int(code)
        self._lines.append(line[4:].strip(b" \t").decode("utf-8", "replace"))
        if separator != b"-":
            self._replies.append(Reply(self._code, tuple(self._lines)))
            self._lines = []
            self._size = 0

    def next_reply(self) -> Reply | None:
        """The oldest complete reply not handed out yet, or None."""
        return self._replies.popleft() if self._replies else None

    @property
    def pending(self) -> bool:
        """Something was received that was not handed out: complete replies or a part of
        one. Between commands this means the server spoke out of turn."""
        return bool(self._replies or self._lines or self._buffer)

    def clear(self) -> None:
        """Forget everything buffered (after STARTTLS's 220, RFC 3207 section 4.2: plaintext
        that followed it may be an injection and must not be read as an encrypted reply)."""
        self._buffer.clear()
        self._lines = []
        self._size = 0
        self._replies.clear()


def ehlo_keywords(reply: Reply) -> dict[str, str]:
    """The EHLO reply's extensions, keyword (upper case) to parameters; the first line is
    the server's greeting, not an extension."""
    keywords: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, parameters = line.strip().partition(" ")
        if keyword:
            keywords[keyword.upper()] = parameters.strip()
    return keywords


def _path(address: str) -> str:
    if _UNSAFE_ADDRESS.search(address):
        raise ValueError(f"address {address!r} cannot be put on an SMTP command line")
    return f"<{address}>"


def mail_command(sender: str, options: Sequence[str] = ()) -> bytes:
    """`MAIL FROM:<sender> OPTIONS...`; an empty sender is the null reverse-path `<>`.
    Raises ValueError for an address with control characters or angle brackets."""
    return " ".join([f"MAIL FROM:{_path(sender)}", *options]).encode() + b"\r\n"


def rcpt_command(recipient: str) -> bytes:
    """`RCPT TO:<recipient>`; ValueError as for mail_command."""
    return f"RCPT TO:{_path(recipient)}".encode() + b"\r\n"


def data_payload(message: bytes) -> bytes:
    """The message as sent after DATA's 354: every line end made CRLF (bare CR and LF would
    be rejected or misread by servers, RFC 5321 section 2.3.8), a line starting with "."
    given another (section 4.5.2), a final CRLF when missing, then the terminating ".".
    Other bytes, 8-bit ones included, pass unchanged."""
    body = _LINE_ENDS.sub(b"\r\n", message)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _LEADING_DOT.sub(b"..", body) + b".\r\n"
