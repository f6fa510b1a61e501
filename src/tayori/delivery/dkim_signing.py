"""DKIM signatures (RFC 6376) for mail our members send from hosted domains.

Keys live in the store (`tayori dkim generate`), so every node signs alike. A domain without
a key is sent unsigned: signing is a reputation aid, never a reason to refuse a member's mail.
"""

from __future__ import annotations

import logging
import time

import dkim

from tayori.storage.interfaces import QueueStore
from tayori.storage.records import DkimKey

log = logging.getLogger(__name__)

# The headers a recipient's filter judges us by; Received and trace headers change in transit.
SIGNED_HEADERS = (
    b"from", b"sender", b"reply-to", b"subject", b"date", b"message-id", b"to", b"cc",
    b"mime-version", b"content-type", b"content-transfer-encoding", b"in-reply-to",
    b"references",
)  # fmt: skip
_KEY_CACHE_SECONDS = 60.0


class DkimSigner:
    def __init__(self, store: QueueStore) -> None:
        self._store = store
        self._keys: dict[str, tuple[float, DkimKey | None]] = {}

    def _key(self, domain: str) -> DkimKey | None:
        cached = self._keys.get(domain)
        if cached is not None and time.monotonic() - cached[0] < _KEY_CACHE_SECONDS:
            return cached[1]
        key = self._store.get_dkim_key(domain)
        self._keys[domain] = (time.monotonic(), key)
        return key

    def sign(self, message: bytes, domain: str) -> bytes:
        """The message with a DKIM-Signature header on top, or unchanged without a key."""
        key = self._key(domain)
        if key is None:
            return message
        try:
            signature = dkim.sign(
                message,
                key.selector.encode(),
                key.domain.encode(),
                key.private_key_pem.encode(),
                include_headers=list(SIGNED_HEADERS),
                linesep=b"\r\n",
            )
        except dkim.DKIMException as error:  # a broken key must not stop the member's mail
            log.error("DKIM signing for %s failed: %s", domain, error)
            return message
        return bytes(signature) + message
