"""Splitting an mbox file into messages.

Only a `From ` line that looks like an mbox separator (sender, then an asctime date) after an
empty line starts a new message: body lines that merely begin with "From " (unquoted, as many
writers leave them) do not, and Content-Length headers are ignored because they lie.
"""

from __future__ import annotations

import re

__all__ = ["split_mbox"]

_SEPARATOR = re.compile(
    rb"^From \S+ +(?:[A-Z][a-z]{2} +)?[A-Z][a-z]{2} +\d{1,2} +\d{1,2}:\d{2}(?::\d{2})?"
    rb"(?: +[A-Z+-][A-Za-z0-9]*)? +\d{4}[^\n]*\n",
    re.MULTILINE,
)


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mbox (their `From ` lines removed); a file that is not an mbox is
    one message as it is."""
    starts = [
        m
        for m in _SEPARATOR.finditer(data)
        if m.start() == 0
        or data[max(0, m.start() - 2) : m.start()] == b"\n\n"
        or data[max(0, m.start() - 4) : m.start()] == b"\r\n\r\n"
    ]
    if not starts or starts[0].start() != 0:
        return [data]
    messages = []
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(data)
        messages.append(data[match.end() : end])
    return messages
