"""`tayori mailbox reindex`: give every stored message its search index entry.

Messages stored before migration 0005, or indexed by an older `TERMS_VERSION`, have no (or an
outdated) entry: their text cannot be found and they sort by the stored display strings.
The backfill reads each blob outside any transaction, computes the entry as delivery does,
and stores a batch per transaction, so it can run while the service runs, be interrupted,
and be run again (it only picks messages still below the current version).

Registered into `tayori.cli`'s parser like the spam and rules commands; heavy imports stay
inside the handler.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tayori.core.errors import NotFoundError

if TYPE_CHECKING:
    from tayori.storage.interfaces import BlobStore, MetadataStore
    from tayori.storage.records import MessageIndex

__all__ = ["BATCH", "cmd_reindex", "register", "reindex"]

BATCH = 200
"""Messages per transaction: writers wait for at most one batch's worth of index rows."""


def reindex(
    metadata: MetadataStore,
    blobs: BlobStore,
    *,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Index every message below the current version; returns how many were indexed.
    A message whose blob is missing gets an entry from nothing (empty terms) rather than
    being picked again forever; it is still listed, just not found by text."""
    from tayori.delivery.indexing import message_index  # the MIME layer: only when used
    from tayori.storage.search_terms import TERMS_VERSION

    done = 0
    while True:
        pending = metadata.messages_to_index(TERMS_VERSION, batch)
        if not pending:
            return done
        entries: list[tuple[int, MessageIndex]] = []
        for message in pending:
            try:
                with blobs.open(message.blob_ref) as stream:
                    raw = stream.read()
            except (OSError, NotFoundError):
                raw = b""
            entries.append((message.id, message_index(raw)))
        metadata.store_index(entries)
        done += len(entries)
        if progress is not None:
            progress(done)


def cmd_reindex(args: argparse.Namespace) -> int:
    from tayori.config.loader import config_path, load_settings
    from tayori.storage.factory import open_stores

    settings = load_settings(config_path(args.config))
    stores = open_stores(settings.storage.url, settings.server.data_dir)
    try:

        def report(count: int) -> None:
            print(f"indexed {count} messages …", file=sys.stderr)

        total = reindex(stores.metadata, stores.blobs, progress=report)
    finally:
        stores.close()
    print(f"search index up to date: {total} messages indexed")
    return 0


def register(commands: Any, command: Callable[..., argparse.ArgumentParser], group: Any) -> None:
    """Add `tayori mailbox …` to the parser, with `tayori.cli`'s helpers for subcommands."""
    del commands
    mailbox = group("mailbox", "members' mailboxes")
    command(
        mailbox,
        "reindex",
        cmd_reindex,
        "build the search index for messages that lack it (stored before the index existed, "
        "or by an older version); safe to run while serving and to repeat",
    )
