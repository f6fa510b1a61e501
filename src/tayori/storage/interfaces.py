"""The store interfaces the rest of Tayori is written against.

Methods are synchronous and thread-safe: servers call them through `asyncio.to_thread` (or
the delivery committer's thread), which keeps one implementation for SQLite and PostgreSQL
and keeps database drivers out of the event loop. The one exception: hot-path SQLite reads,
which the wiring may run inline on the loop (`Stores.local_reads`, `tayori.core.offload`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, NamedTuple, Protocol

from tayori.core.outcome import Outcome
from tayori.storage.member_records import (
    AppPassword,
    Correspondent,
    MemberPreferences,
    TotpState,
)
from tayori.storage.records import (
    Account,
    Alias,
    AppendResult,
    DkimKey,
    Domain,
    Mailbox,
    MailboxStatus,
    MessageIndex,
    MessagePage,
    MessageQuery,
    NewMessage,
    NewQueuedMessage,
    PlacedMessage,
    QueueEntry,
    RecipientLookup,
    RecipientUpdate,
    SortKey,
    SpecialUse,
    StoredMessage,
    StoredOutcome,
)


class MessageRef(NamedTuple):
    """A message as a listing that only serves and deletes messages needs it (POP3's
    maildrop): a small tuple rather than a `StoredMessage`, so that a listing of thousands
    builds no flag sets, dates or summaries it would throw away."""

    id: int
    uid: int
    size: int
    blob_ref: str


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

    def list_aliases(self, domain: str | None = None, *, target: str | None = None) -> list[Alias]:
        """All aliases, those of a domain, or (`target`) those delivering to that account
        address (with all their targets)."""
        ...

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

    def append_messages(
        self,
        items: Sequence[NewMessage],
        late: Callable[[], Sequence[NewMessage]] | None = None,
    ) -> list[AppendResult]:
        """Append many messages in one transaction (group commit), in order.

        For each item: if enforce_quota and used + size > quota (quota > 0), it is not
        appended and its `on_over_quota` outcome is recorded; else it gets the mailbox's
        next UID and a new MODSEQ, usage grows by its size, and `on_delivered` is recorded
        (with the outcome's detail extended by mailbox and UID). One commit for all.

        `late`, if given, is called once, when the transaction holds the write lock: the
        appends it returns join this commit after `items` (their results follow). A group
        commit that had to wait for the lock (another MX process was committing) so takes
        what arrived meanwhile, instead of waiting for the lock once more for it."""
        ...

    def list_messages(self, mailbox_id: int) -> list[StoredMessage]:
        """All messages of a mailbox in UID order."""
        ...

    def list_message_refs(self, mailbox_id: int) -> list[MessageRef]:
        """The same messages as `list_messages`, in the same order, with only id, UID, size
        and blob reference: the POP3 login's maildrop snapshot, which for a mailbox of 5,000
        messages costs about a tenth of the full listing. An unknown mailbox lists nothing."""
        ...

    def expunge(self, mailbox_id: int, message_ids: Sequence[int]) -> list[str]:
        """Delete messages and lower the account usage in one transaction; returns the blob
        references to delete after the commit. Unknown ids are ignored."""
        ...

    # --- mailbox operations (webmail, IMAP; issue 6) -------------------------------------------
    # Every method taking `account_id` checks ownership: a mailbox or message id of another
    # account behaves exactly like one that does not exist (NotFoundError, or ignored where
    # unknown ids are ignored), so ids guessed in a URL reveal nothing.

    def get_mailbox_by_id(self, account_id: int, mailbox_id: int) -> Mailbox | None: ...

    def mailbox_statuses(self, account_id: int) -> list[MailboxStatus]:
        """Every mailbox of the account with total, unread and byte counts: special-use ones
        first in SpecialUse order (INBOX, Junk, Sent, Drafts, Trash), then the member's own
        by name."""
        ...

    def create_mailbox(self, account_id: int, name: str) -> Mailbox:
        """A member folder. The name is trimmed; ValueError when empty, longer than 255
        characters, containing control characters or "/", or a special-use name in any
        case ("inbox"); ConflictError when the account has a folder of that name;
        NotFoundError when there is no such account."""
        ...

    def rename_mailbox(self, account_id: int, mailbox_id: int, new_name: str) -> Mailbox:
        """Same name rules as create_mailbox. Special-use mailboxes cannot be renamed
        (ConflictError): mail programs find them by name. A new UIDVALIDITY is NOT needed
        (UIDs stay valid under the new name, RFC 3501 RENAME)."""
        ...

    def delete_mailbox(
        self, account_id: int, mailbox_id: int, *, move_to: SpecialUse | None = SpecialUse.TRASH
    ) -> list[str]:
        """Delete a member folder. Its messages are first moved to `move_to` (new UIDs
        there, quota unchanged) or, with None, deleted (usage shrinks); returns the blob
        refs to delete after the commit. Special-use mailboxes cannot be deleted
        (ConflictError)."""
        ...

    def get_message(self, account_id: int, message_id: int) -> StoredMessage | None:
        """The message if it belongs to one of the account's mailboxes, else None."""
        ...

    def get_message_by_uid(self, mailbox_id: int, uid: int) -> StoredMessage | None:
        """For IMAP, which addresses messages by (mailbox, UID) after selecting a mailbox
        (the ownership check is the SELECT)."""
        ...

    def query_messages(
        self,
        account_id: int,
        mailbox_id: int | None,
        query: MessageQuery | None = None,
        *,
        sort: SortKey = SortKey.DATE,
        descending: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> MessagePage:
        """A page of the message list or of a search, and the total matching. `mailbox_id`
        None searches every mailbox of the account. An empty (or None) query lists the
        mailbox. Text filters use the search index: messages not indexed yet (stored before
        migration 0005 and not reindexed) are not found by text. NotFoundError for a
        mailbox that is not the account's."""
        ...

    def move_messages(
        self, account_id: int, message_ids: Sequence[int], target_mailbox_id: int
    ) -> list[PlacedMessage]:
        """Move messages of the account (from any of its mailboxes) into another of its
        mailboxes: each keeps its id and gets the target's next UID and a new MODSEQ; both
        mailboxes' HIGHESTMODSEQ grow; usage is unchanged. Ids not the account's, and
        messages already in the target, are skipped (not in the result). NotFoundError for
        a target that is not the account's."""
        ...

    def copy_messages(
        self, account_id: int, message_ids: Sequence[int], target_mailbox_id: int
    ) -> list[PlacedMessage]:
        """Copy messages (new ids, next UIDs, same blob, flags and search index); usage grows
        by their sizes. All or nothing: QuotaExceededError (nothing copied) when the copies
        would take usage over a non-zero quota. Ids not the account's are skipped."""
        ...

    def set_flags(
        self,
        account_id: int,
        message_ids: Sequence[int],
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
    ) -> int:
        """Add and remove flags (system flags like \\Seen \\Flagged \\Answered \\Deleted
        \\Draft, or keywords like $Junk); each message whose flags change gets a new
        MODSEQ. Returns how many changed. ValueError for an empty flag or one with white
        space; ids not the account's are skipped."""
        ...

    def delete_messages(self, account_id: int, message_ids: Sequence[int]) -> list[str]:
        """Delete permanently (from whichever of the account's mailboxes they are in),
        lowering usage; returns blob refs to delete after the commit. As `expunge`, with
        the ownership check."""
        ...

    def empty_mailbox(self, account_id: int, mailbox_id: int) -> list[str]:
        """Delete every message of the mailbox permanently ("empty Trash/Junk"); returns blob
        refs to delete after the commit. NotFoundError for a mailbox not the account's."""
        ...

    # --- search index (filled at delivery; backfill for older messages) -----------------------
    def messages_to_index(self, version: int, limit: int = 500) -> list[StoredMessage]:
        """Messages whose index is missing or older than `version`, lowest id first, for
        `tayori mailbox reindex` (which reads each blob outside any transaction)."""
        ...

    def store_index(self, entries: Sequence[tuple[int, MessageIndex]]) -> int:
        """Store (message id, index) pairs in one transaction, replacing older ones; ids of
        messages deleted meanwhile are skipped. Returns how many were stored."""
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
        remote_ip: str | None = None,
        limit: int = 100,
    ) -> list[StoredOutcome]:
        """Newest first."""
        ...

    # --- history retention (issue 7, diagnostics) ----------------------------------------------
    def purge_outcomes(self, before: datetime) -> int:
        """Delete outcomes recorded before `before` (the history retention); returns how
        many went. Batched, so a first purge of a large history never holds one huge
        transaction."""
        ...

    # --- end of issue 7 block --------------------------------------------------------------------

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

    def enqueue_many(
        self,
        messages: Sequence[NewQueuedMessage],
        appends: Sequence[NewMessage] = (),
        outcomes: Sequence[Outcome] = (),
    ) -> list[AppendResult]:
        """`enqueue` with several queued messages, all in ONE transaction (forwarding)."""
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


# --- webmail sessions (issue 6, migration 0006) -------------------------------------------------
@dataclass(frozen=True, slots=True)
class WebSession:
    """One signed-in browser. `id_hash` is the SHA-256 (hex) of the cookie value; the cookie
    itself is never stored. `stage` is "full" for a usable session, or a step still owed
    before it becomes one (e.g. "totp" while a second factor is awaited)."""

    id_hash: str
    account_id: int
    csrf_token: str
    stage: str
    created: datetime
    last_seen: datetime
    user_agent: str
    ip: str


class WebSessionStore(Protocol):
    """Server-side webmail sessions, shared by every web node through the SQL store."""

    def create_session(
        self,
        id_hash: str,
        account_id: int,
        csrf_token: str,
        *,
        stage: str,
        now: datetime,
        user_agent: str,
        ip: str,
    ) -> WebSession: ...

    def get_session(self, id_hash: str) -> WebSession | None: ...

    def touch_session(self, id_hash: str, now: datetime, ip: str) -> None:
        """Record activity (the idle timeout counts from `last_seen`)."""
        ...

    def set_stage(self, id_hash: str, stage: str) -> None: ...

    def list_sessions(self, account_id: int) -> list[WebSession]:
        """The account's sessions, most recently used first."""
        ...

    def delete_session(self, id_hash: str, account_id: int | None = None) -> bool:
        """Sign one session out; with `account_id`, only if it is that account's."""
        ...

    def delete_other_sessions(self, account_id: int, keep_id_hash: str) -> int:
        """ "Sign out elsewhere": every session of the account but this one; how many."""
        ...

    def delete_expired(self, idle_before: datetime, created_before: datetime) -> int:
        """Remove sessions idle since before `idle_before` or created before
        `created_before`; how many."""
        ...


class MemberStore(Protocol):
    """A member's own preferences, second factor, app passwords and correspondents
    (the webmail's settings pages; records in `tayori.storage.member_records`)."""

    # --- preferences ------------------------------------------------------------------------
    def get_preferences(self, account_id: int) -> MemberPreferences:
        """Defaults for a member who never changed anything (or an unknown id)."""
        ...

    def set_preferences(
        self,
        account_id: int,
        *,
        display_name: str | None = None,
        signature: str | None = None,
        language: str | None = None,
        time_zone: str | None = None,
    ) -> MemberPreferences:
        """Change what is given (None: keep). Raises ValueError for a value that is too long
        or a language not offered; NotFoundError for no such account."""
        ...

    def add_image_sender(self, account_id: int, address: str) -> MemberPreferences:
        """Always show remote images in mail from this sender. AddressError, ConflictError
        (list full), NotFoundError."""
        ...

    def remove_image_sender(self, account_id: int, address: str) -> MemberPreferences: ...

    # --- TOTP second factor ----------------------------------------------------------------
    def get_totp(self, account_id: int) -> TotpState | None:
        """None when the member has neither enabled nor started enrolling TOTP."""
        ...

    def begin_totp(self, account_id: int, secret: str) -> None:
        """Keep a new secret, not yet enabled (enrolment). ConflictError if TOTP is on."""
        ...

    def enable_totp(self, account_id: int, step: int) -> bool:
        """Turn TOTP on after the member proved a code of time step `step`; False when it
        was on already. NotFoundError when no enrolment was started."""
        ...

    def disable_totp(self, account_id: int) -> None:
        """Off, and the secret forgotten."""
        ...

    def use_totp_step(self, account_id: int, step: int) -> bool:
        """Record that a code of this step was accepted, atomically: False when this or a
        later step was used already (a replayed code), or TOTP is off."""
        ...

    # --- app passwords ---------------------------------------------------------------------
    def add_app_password(self, account_id: int, name: str, password_hash: str) -> AppPassword:
        """ValueError (empty or long name), ConflictError (name taken, limit reached),
        NotFoundError."""
        ...

    def list_app_passwords(self, account_id: int) -> list[AppPassword]:
        """Oldest first."""
        ...

    def remove_app_password(self, account_id: int, password_id: int) -> AppPassword:
        """NotFoundError when the account has no app password of that id."""
        ...

    def touch_app_password(self, password_id: int, when: datetime) -> None: ...

    # --- recent correspondents -------------------------------------------------------------
    def record_correspondents(
        self, account_id: int, people: Sequence[tuple[str, str]], when: datetime
    ) -> None:
        """(address, name) pairs the member just wrote to; bad addresses are skipped, the
        least recently used beyond the limit are dropped."""
        ...

    def suggest_correspondents(
        self, account_id: int, prefix: str, limit: int = 10
    ) -> list[Correspondent]:
        """Most recent first, matching the start of the address, the name, or a word of it."""
        ...
