"""Plain records the stores return; no behaviour, no database types leak out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tayori.core.outcome import Outcome


class SpecialUse(StrEnum):
    """Mailboxes every account has from creation (RFC 6154 names, INBOX has none)."""

    INBOX = "INBOX"
    JUNK = "Junk"
    SENT = "Sent"
    DRAFTS = "Drafts"
    TRASH = "Trash"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Domain:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    address: str
    """Primary address, canonical (lowercase)."""
    domain_id: int
    password_hash: str
    quota_bytes: int
    """0 means no limit."""
    used_bytes: int
    status: AccountStatus
    created: datetime

    @property
    def is_over_quota(self) -> bool:
        return self.quota_bytes > 0 and self.used_bytes >= self.quota_bytes


@dataclass(frozen=True, slots=True)
class Alias:
    address: str
    targets: tuple[str, ...]
    """Canonical addresses of the accounts (primary addresses) the alias delivers to."""


@dataclass(frozen=True, slots=True)
class RecipientLookup:
    """What an address means here: our accounts, unknown in a hosted domain, or not hosted."""

    hosted: bool
    accounts: tuple[Account, ...]
    """Empty with hosted=True means the user is unknown."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: int
    account_id: int
    name: str
    special_use: SpecialUse | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """Envelope summary taken from the headers at delivery, for lists and diagnostics."""

    from_: str = ""
    to: str = ""
    subject: str = ""
    message_id: str = ""
    date: str = ""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    mailbox_id: int
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: datetime
    size: int
    blob_ref: str
    summary: MessageSummary
    has_attachment: bool = False
    """Taken from the MIME structure at delivery (False until indexed, see MessageIndex)."""


@dataclass(frozen=True, slots=True)
class MessageIndex:
    """What lists sort by and search looks in, extracted from a message's MIME structure
    outside any transaction (by `tayori.storage.search_text.index_message`).

    `terms` is opaque to callers: field-prefixed tokens, CJK text as bigrams. `version` is the
    extraction version, so that `tayori mailbox reindex` can redo messages indexed by an
    older one."""

    terms: str
    sort_from: str
    sort_subject: str
    has_attachment: bool
    version: int


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One message to append to one account's mailbox, with the outcomes to record with it.

    The blob is already durable (`blob_ref`) before this is committed. The store picks the
    outcome that matches what happened inside the same transaction: `on_delivered` when the
    append succeeded, `on_over_quota` when the append would exceed the quota (the message is
    then not appended, and the caller deletes the blob).
    """

    account_id: int
    mailbox: SpecialUse
    blob_ref: str
    size: int
    internal_date: datetime
    summary: MessageSummary
    on_delivered: Outcome
    on_over_quota: Outcome
    flags: frozenset[str] = frozenset()
    enforce_quota: bool = True
    index: MessageIndex | None = None
    """Search terms and sort keys; None leaves the message for `tayori mailbox reindex`."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    appended: bool
    """False only when the quota refused it."""
    mailbox_id: int
    uid: int
    """0 when not appended."""


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    id: int
    outcome: Outcome


class RecipientState(StrEnum):
    """Per-recipient state of a queued message; only QUEUED is still being worked on."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class NewQueuedMessage:
    """A message to deliver to remote recipients; its blob is already durable."""

    queue_id: str
    sender: str
    """Envelope sender; empty for bounces we generate (which are never bounced again)."""
    account_id: int | None
    """The member who sent it (submission), for history and rate limits."""
    blob_ref: str
    size: int
    message_id: str
    subject: str
    created: datetime
    expires: datetime
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    id: int
    recipient: str
    domain: str
    state: RecipientState
    attempts: int
    next_attempt: datetime
    last_attempt: datetime | None
    last_reply: str
    """The remote server's words (or ours, e.g. no MX) from the last attempt."""
    remote_mta: str
    bounce_requested: bool
    """An admin asked (`tayori queue bounce`) to give up on it at the next run."""


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: int
    queue_id: str
    sender: str
    account_id: int | None
    blob_ref: str
    size: int
    message_id: str
    subject: str
    created: datetime
    expires: datetime
    delay_warned: bool
    recipients: tuple[QueuedRecipient, ...]


@dataclass(frozen=True, slots=True)
class RecipientUpdate:
    """The result of one delivery attempt for one queued recipient."""

    recipient_id: int
    state: RecipientState
    next_attempt: datetime
    """When to try again (QUEUED); ignored for final states."""
    reply: str
    remote_mta: str


@dataclass(frozen=True, slots=True)
class DkimKey:
    domain: str
    selector: str
    private_key_pem: str
    created: datetime


# --- mailbox operations (webmail, IMAP) --------------------------------------------------------


class SortKey(StrEnum):
    """Orders of a message list; ties are broken by message id in the same direction."""

    DATE = "date"
    """Internal date: when the message arrived here (what mail programs show by default)."""
    FROM = "from"
    SUBJECT = "subject"
    """Subject without "Re:"/"Fwd:" prefixes, case-folded."""
    SIZE = "size"


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """A mailbox with the numbers the folder list and quota meter show."""

    mailbox: Mailbox
    total: int
    unread: int
    """Messages without the \\Seen flag."""
    size: int
    """Bytes of all its messages (counted against the account quota)."""


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """Filters of a message list or search; empty fields do not filter. All given filters
    must match (AND). Text filters match words anywhere in the field: Latin words by prefix
    ("meet" finds "meeting"), case-insensitively; Japanese/Chinese/Korean text as a
    substring of at least two characters ("会議" finds "明日の会議について"); one CJK character
    finds text starting with it."""

    text: str = ""
    """Anywhere: sender, recipients, subject or body."""
    sender: str = ""
    recipient: str = ""
    """To or Cc."""
    subject: str = ""
    body: str = ""
    since: datetime | None = None
    """Internal date on or after."""
    before: datetime | None = None
    """Internal date before (exclusive)."""
    has_attachment: bool | None = None
    unread_only: bool = False
    flagged_only: bool = False

    @property
    def searches_text(self) -> bool:
        return bool(self.text or self.sender or self.recipient or self.subject or self.body)


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of a list or search, and how many messages match in all."""

    messages: tuple[StoredMessage, ...]
    total: int


@dataclass(frozen=True, slots=True)
class PlacedMessage:
    """Where a moved or copied message is now: `message_id` is the message in the target
    mailbox (the same id for a move, a new one for a copy) and `uid` its new UID there."""

    source_id: int
    message_id: int
    mailbox_id: int
    uid: int
