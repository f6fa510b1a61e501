"""The store interfaces the rest of Tayori is written against.

Methods are synchronous and thread-safe: servers call them through `asyncio.to_thread` (or
the delivery committer's thread), which keeps one implementation for SQLite and PostgreSQL
and keeps database drivers out of the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import BinaryIO, Protocol

from tayori.core.outcome import Outcome
from tayori.storage.records import (
    Account,
    Alias,
    AppendResult,
    DkimKey,
    Domain,
    Mailbox,
    NewMessage,
    NewQueuedMessage,
    QueueEntry,
    RecipientLookup,
    RecipientUpdate,
    SpecialUse,
    StoredMessage,
    StoredOutcome,
)


class BlobStore(Protocol):
    """Raw message bytes, exactly as received (plus our trace headers)."""

    def put(self, chunks: Iterable[bytes]) -> str:
        """Write durably and return a reference. Durable means: a crash after return keeps it
        (file: temp file, fsync, rename, directory fsync; SQL: committed)."""
        ...

    def open(self, ref: str) -> BinaryIO:
        """A readable stream of the bytes; reading never loads the whole blob at once."""
        ...

    def delete(self, refs: Iterable[str]) -> None:
        """Remove blobs no message refers to any more; missing ones are ignored."""
        ...


class MetadataStore(Protocol):
    """Domains, accounts, mailboxes, messages and outcomes in SQL."""

    # --- domains -------------------------------------------------------------
    def add_domain(self, name: str) -> Domain:
        """Raises ConflictError if hosted already."""
        ...

    def list_domains(self) -> list[Domain]: ...

    def remove_domain(self, name: str) -> None:
        """Raises NotFoundError; ConflictError while accounts or aliases use it."""
        ...

    # --- accounts ------------------------------------------------------------
    def add_account(self, address: str, password_hash: str, quota_bytes: int) -> Account:
        """Creates the account, its primary address and its special-use mailboxes at once.
        Raises NotFoundError when the domain is not hosted (message says how to add it),
        ConflictError when the address is taken by an account or alias."""
        ...

    def get_account(self, address: str) -> Account | None:
        """By any of its addresses (canonical form)."""
        ...

    def get_account_by_id(self, account_id: int) -> Account | None: ...

    def list_accounts(self, domain: str | None = None) -> list[Account]: ...

    def set_password(self, address: str, password_hash: str) -> None: ...

    def set_quota(self, address: str, quota_bytes: int) -> None: ...

    def remove_account(self, address: str) -> list[str]:
        """Deletes the account, its mailboxes, messages and alias memberships; returns the
        blob references the caller deletes after the commit."""
        ...

    # --- aliases -------------------------------------------------------------
    def add_alias(self, address: str, targets: Sequence[str]) -> Alias:
        """Targets must be addresses of existing accounts. Adding to an existing alias adds
        targets. Raises NotFoundError / ConflictError with a clear message."""
        ...

    def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    def remove_alias(self, address: str, targets: Sequence[str] = ()) -> None:
        """Removes the given targets, or the whole alias when none are given."""
        ...

    # --- recipients ------------------------------------------------------------
    def lookup_recipient(self, address: str) -> RecipientLookup:
        """Resolve an envelope recipient: an account address, an alias (several accounts),
        unknown in a hosted domain, or a domain not hosted here."""
        ...

    # --- mailboxes and messages -----------------------------------------------
    def get_mailbox(self, account_id: int, special_use: SpecialUse) -> Mailbox: ...

    def list_mailboxes(self, account_id: int) -> list[Mailbox]: ...

    def append_messages(self, items: Sequence[NewMessage]) -> list[AppendResult]:
        """Append many messages in one transaction (group commit), in order.

        For each item: if enforce_quota and used + size > quota (quota > 0), it is not
        appended and its `on_over_quota` outcome is recorded; else it gets the mailbox's
        next UID and a new MODSEQ, usage grows by its size, and `on_delivered` is recorded
        (with the outcome's detail extended by mailbox and UID). One commit for all."""
        ...

    def list_messages(self, mailbox_id: int) -> list[StoredMessage]:
        """All messages of a mailbox in UID order."""
        ...

    def expunge(self, mailbox_id: int, message_ids: Sequence[int]) -> list[str]:
        """Delete messages and lower the account usage in one transaction; returns the blob
        references to delete after the commit. Unknown ids are ignored."""
        ...

    # --- outcomes --------------------------------------------------------------
    def record_outcomes(self, outcomes: Sequence[Outcome]) -> None: ...

    def list_outcomes(
        self,
        *,
        account_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        sender: str | None = None,
        recipient: str | None = None,
        message_id: str | None = None,
        subject_contains: str | None = None,
        limit: int = 100,
    ) -> list[StoredOutcome]:
        """Newest first."""
        ...

    # --- maildrop locks (POP3 exclusive access across nodes) --------------------
    def try_lock_maildrop(self, account_id: int, holder: str, until: datetime) -> bool:
        """Take the account's maildrop lock unless someone else holds an unexpired one."""
        ...

    def refresh_maildrop_lock(self, account_id: int, holder: str, until: datetime) -> None: ...

    def release_maildrop_lock(self, account_id: int, holder: str) -> None: ...

    # --- lifecycle ---------------------------------------------------------------
    def close(self) -> None: ...


class QueueStore(Protocol):
    """The durable outbound queue, shared by every node (claims are leases in the store)."""

    def enqueue(
        self,
        message: NewQueuedMessage | None,
        appends: Sequence[NewMessage] = (),
        outcomes: Sequence[Outcome] = (),
    ) -> list[AppendResult]:
        """In ONE transaction: append local copies (as `append_messages` does, outcomes
        included), insert the queued message with its recipients due now (if any), and
        record the extra outcomes. This is what makes a submission's `250` mean "stored for
        every recipient, local and remote"."""
        ...

    def claim_due(
        self, now: datetime, holder: str, lease_until: datetime, limit: int
    ) -> list[QueueEntry]:
        """Messages with at least one QUEUED recipient due (next_attempt <= now, or bounce
        requested), not leased by another holder (lease expired counts as free); leases them
        to `holder` until `lease_until`. Only QUEUED recipients are included in the entries.
        PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several nodes never claim the same one."""
        ...

    def release(self, entry_id: int, holder: str) -> None:
        """End the lease early (e.g. at shutdown) without recording an attempt."""
        ...

    def record_attempts(
        self,
        entry_id: int,
        holder: str,
        updates: Sequence[RecipientUpdate],
        outcomes: Sequence[Outcome],
        *,
        delay_warned: bool = False,
    ) -> list[str]:
        """Apply attempt results and their outcomes in one transaction; attempts += 1 and
        last_attempt = now for each updated recipient; releases the lease. When no
        recipient is QUEUED any more, the message row goes and its blob refs (unless shared
        with a mailbox message) are returned for the caller to delete after the commit."""
        ...

    def list_queue(self, *, deferred_only: bool = False) -> list[QueueEntry]:
        """All queued messages (all recipients), oldest first; `deferred_only`: those with a
        QUEUED recipient that has had at least one attempt."""
        ...

    def get_queue_entry(self, queue_id: str) -> QueueEntry | None: ...

    def retry_now(self, queue_id: str | None, now: datetime) -> int:
        """Make QUEUED recipients due now (one message, or all when None); returns how many."""
        ...

    def request_bounce(self, queue_id: str, now: datetime) -> int:
        """Mark the message's QUEUED recipients to be bounced at the next run."""
        ...

    def delete_queued(self, queue_id: str, *, outcomes: Sequence[Outcome] = ()) -> list[str]:
        """Remove a queued message without a bounce, recording `outcomes` (one per recipient
        still queued) in the same transaction; returns blob refs to delete."""
        ...

    # --- what submission limits count ------------------------------------------------------
    def record_submission(self, account_id: int, time: datetime, recipients: int) -> None: ...

    def count_submissions(self, account_id: int, since: datetime) -> tuple[int, int]:
        """(messages, recipients) the account submitted since `since`."""
        ...

    # --- DKIM keys (in the store so every node signs alike) --------------------------------
    def add_dkim_key(self, domain: str, selector: str, private_key_pem: str) -> DkimKey:
        """Replaces the domain's active key; NotFoundError for a domain not hosted."""
        ...

    def get_dkim_key(self, domain: str) -> DkimKey | None: ...
