"""The parse of a message just received, shared by the readers that come to it within
milliseconds of each other: the spam tokenizer and the search index read the same bytes
during one delivery, in different worker threads, and each would otherwise parse it again.

Keyed by the bytes themselves (equal bytes, equal parse: `parse_message` is a pure function
of them), a handful of entries, small messages only: a cache of the last moments, not of
the mailbox. `Message` computes its parts lazily (cached properties), so a shared one also
shares the decoded text.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from tayori.mime.message import Message, parse_message

__all__ = ["recently_parsed"]

ENTRIES = 16
"""About the messages in delivery at once in one process (every session's DATA)."""
LARGEST = 1 << 20
"""Bigger messages are parsed each time rather than kept."""

_lock = threading.Lock()
_recent: OrderedDict[bytes, Message] = OrderedDict()


def recently_parsed(raw: bytes) -> Message:
    """`parse_message(raw)`, reusing the parse of equal bytes from a moment ago."""
    if len(raw) > LARGEST:
        return parse_message(raw)
    with _lock:
        found = _recent.get(raw)
        if found is not None:
            _recent.move_to_end(raw)
            return found
    message = parse_message(raw)
    with _lock:
        _recent[raw] = message
        while len(_recent) > ENTRIES:
            _recent.popitem(last=False)
    return message
