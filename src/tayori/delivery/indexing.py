"""A message's search index entry and sort keys, computed from its bytes.

Called where the message is already in memory and outside any database transaction: by local
delivery in a worker thread before the group commit, and by `tayori mailbox reindex` for
messages stored before the index existed. The store only writes what this returns.
"""

from __future__ import annotations

from tayori.mime.searchtext import search_text
from tayori.storage.records import MessageIndex
from tayori.storage.search_terms import TERMS_VERSION, document_terms, sort_from, sort_subject

__all__ = ["message_index"]


def message_index(raw: bytes) -> MessageIndex:
    """Never raises for any input (the MIME layer does not)."""
    text = search_text(raw)
    return MessageIndex(
        terms=document_terms(from_=text.from_, to=text.to, subject=text.subject, body=text.body),
        sort_from=sort_from(text.sender),
        sort_subject=sort_subject(text.subject),
        has_attachment=text.has_attachment,
        version=TERMS_VERSION,
    )
