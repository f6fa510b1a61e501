"""The "Spam" and "Not spam" buttons: move the message and teach the member's filter.

"Spam" moves a message to Junk and learns it as spam for that member; "Not spam" moves it
back to the inbox and learns it as ham. Learning is per account (`SpamEngine.learn` with the
account id), so one member's judgement never changes what another member receives, and
learning the same message twice changes nothing (the ledger knows it by its bytes). The
move happens first: if learning fails, the member still sees the message where they put it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tayori.spam import SpamEngine
from tayori.storage.interfaces import BlobStore, MetadataStore
from tayori.storage.records import Account, SpecialUse
from tayori.web.services.errors import UserError

log = logging.getLogger(__name__)

JUNK_KEYWORD = "$Junk"
NOT_JUNK_KEYWORD = "$NotJunk"
"""The keywords mail programs use for the same judgement (RFC 5788 registry)."""


class SpamFeedback:
    def __init__(self, metadata: MetadataStore, blobs: BlobStore, engine: SpamEngine) -> None:
        self._metadata = metadata
        self._blobs = blobs
        self._engine = engine

    async def mark(self, account: Account, message_ids: list[int], *, spam: bool) -> int:
        """Move to Junk (spam) or INBOX (not spam) and learn; returns how many were found."""
        target = SpecialUse.JUNK if spam else SpecialUse.INBOX
        found = []
        for message_id in message_ids:
            stored = await asyncio.to_thread(self._metadata.get_message, account.id, message_id)
            if stored is not None:
                found.append(stored)
        if not found:
            raise UserError("That message is no longer there (it may have been deleted).")
        mailbox = await asyncio.to_thread(self._metadata.get_mailbox, account.id, target)
        ids = [m.id for m in found]
        await asyncio.to_thread(self._metadata.move_messages, account.id, ids, mailbox.id)
        add, remove = (JUNK_KEYWORD, NOT_JUNK_KEYWORD) if spam else (NOT_JUNK_KEYWORD, JUNK_KEYWORD)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                self._metadata.set_flags, account.id, ids, add=[add], remove=[remove]
            )
        for stored in found:
            try:
                raw = await asyncio.to_thread(self._read, stored.blob_ref)
                await asyncio.to_thread(self._engine.learn, raw, spam, account.id)
            except Exception:
                log.exception(
                    "could not train the spam filter",
                    extra={"event": "spam.train_failed", "account_id": account.id},
                )
        return len(found)

    def _read(self, ref: str) -> bytes:
        with self._blobs.open(ref) as stream:
            return stream.read()
