"""The one SQL schema shared by SQLite and PostgreSQL; migrations must reproduce it exactly.

Every table exists on both dialects, so a PostgreSQL-mode feature (blobs in the database)
can be tested on SQLite too and a migration never branches on the dialect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator

# Lengths of indexed text columns. Values are cut to these in code, so that a hostile
# Message-ID cannot overflow a PostgreSQL b-tree entry and both dialects store the same text.
ADDRESS_LEN = 320
INDEXED_TEXT_LEN = 512
BLOB_REF_LEN = 64
QUEUE_ID_LEN = 64
DOMAIN_LEN = 253


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, whatever the dialect.

    SQLite has no time zones: it stores the wall-clock text and returns naive values, so
    everything is converted to UTC first (which also keeps its text ordering chronological).
    Naive input is refused because guessing its zone is how timestamps silently shift.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamp {value.isoformat()} has no time zone; pass an aware one")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _big_id() -> BigInteger:
    # SQLite only auto-assigns ids to a column declared exactly INTEGER PRIMARY KEY.
    return BigInteger().with_variant(Integer(), "sqlite")


# Tables with `sqlite_autoincrement`: SQLite then never reuses an id after a delete (as
# PostgreSQL sequences never do), so a stale id held by a session or kept in outcome history
# cannot hit a new row.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

domains = Table(
    "domains",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(253), nullable=False, unique=True),
    Column("created", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(ADDRESS_LEN), nullable=False, unique=True),
    Column(
        "domain_id",
        Integer,
        ForeignKey("domains.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column("password_hash", Text, nullable=False),
    Column("quota_bytes", BigInteger, nullable=False),
    Column("used_bytes", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

aliases = Table(
    "aliases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(ADDRESS_LEN), nullable=False, unique=True),
    Column(
        "domain_id",
        Integer,
        ForeignKey("domains.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column("created", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

# The namespace of deliverable addresses. One row per address, pointing at exactly one
# account or one alias: the primary key is what makes "an address is an account address or
# an alias, never both" hold even for two nodes racing on PostgreSQL.
addresses = Table(
    "addresses",
    metadata,
    Column("address", String(ADDRESS_LEN), primary_key=True),
    Column(
        "domain_id",
        Integer,
        ForeignKey("domains.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column(
        "alias_id",
        Integer,
        ForeignKey("aliases.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    CheckConstraint("(account_id IS NULL) <> (alias_id IS NULL)", name="one_owner"),
)

alias_targets = Table(
    "alias_targets",
    metadata,
    Column(
        "alias_id",
        Integer,
        ForeignKey("aliases.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(255), nullable=False),
    Column("special_use", String(16), nullable=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uidnext", BigInteger, nullable=False),
    Column("highestmodseq", BigInteger, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    UniqueConstraint("account_id", "name"),
    UniqueConstraint("account_id", "special_use"),
    sqlite_autoincrement=True,
)

messages = Table(
    "messages",
    metadata,
    Column("id", _big_id(), primary_key=True),
    Column(
        "mailbox_id",
        Integer,
        ForeignKey("mailboxes.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("uid", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False),
    # Space-separated, sorted: flags are read with the message and never queried alone.
    Column("flags", Text, nullable=False),
    Column("internal_date", UtcDateTime, nullable=False),
    Column("size", BigInteger, nullable=False),
    # Indexed so that an expunge can tell whether another message still shares the blob.
    Column("blob_ref", String(BLOB_REF_LEN), nullable=False, index=True),
    Column("hdr_from", Text, nullable=False),
    Column("hdr_to", Text, nullable=False),
    Column("hdr_subject", Text, nullable=False),
    Column("hdr_message_id", Text, nullable=False),
    Column("hdr_date", Text, nullable=False),
    # Also the index for listing a mailbox in UID order.
    UniqueConstraint("mailbox_id", "uid"),
    sqlite_autoincrement=True,
)

# No foreign key to accounts: history outlives the account it was about.
outcomes = Table(
    "outcomes",
    metadata,
    Column("id", _big_id(), primary_key=True),
    Column("time", UtcDateTime, nullable=False),
    Column("direction", String(8), nullable=False),
    Column("account_id", Integer, nullable=True),
    Column("sender", String(INDEXED_TEXT_LEN), nullable=False, index=True),
    Column("recipient", String(INDEXED_TEXT_LEN), nullable=False, index=True),
    Column("message_id", String(INDEXED_TEXT_LEN), nullable=False, index=True),
    Column("subject", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("remote_ip", String(64), nullable=False),
    Column("remote_host", String(255), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("reply", Text, nullable=False),
    Column("detail", Text, nullable=False),
    sqlite_autoincrement=True,
)
# Newest first, with id as the tie-break list_outcomes orders by, so "the last 100" is an
# index range read with no sort step.
Index(
    "ix_outcomes_account_time",
    outcomes.c.account_id,
    outcomes.c.time.desc(),
    outcomes.c.id.desc(),
)
Index("ix_outcomes_time", outcomes.c.time.desc(), outcomes.c.id.desc())

maildrop_locks = Table(
    "maildrop_locks",
    metadata,
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("holder", String(255), nullable=False),
    Column("until", UtcDateTime, nullable=False),
)

# Message bytes in PostgreSQL mode. Chunked so that reading streams a row at a time.
blobs = Table(
    "blobs",
    metadata,
    Column("id", String(BLOB_REF_LEN), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("created", UtcDateTime, nullable=False),
)

blob_chunks = Table(
    "blob_chunks",
    metadata,
    Column(
        "blob_id",
        String(BLOB_REF_LEN),
        ForeignKey("blobs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)


# --- the outbound queue -------------------------------------------------------------------
# One row per queued message; the lease columns say which node is delivering it until when
# (a node that dies simply lets its lease run out). No foreign key to accounts: mail a member
# sent before the account was removed is still delivered, and `account_id` is history.
# Free text (addresses, replies, MTA names) is Text: nothing here is indexed, and a value
# longer than a declared length would fail on PostgreSQL and pass on SQLite.
queue_messages = Table(
    "queue_messages",
    metadata,
    Column("id", _big_id(), primary_key=True),
    Column("queue_id", String(QUEUE_ID_LEN), nullable=False, unique=True),
    Column("sender", Text, nullable=False),
    Column("account_id", Integer, nullable=True),
    # Indexed so that an expunge can tell whether a queued copy still needs the blob.
    Column("blob_ref", String(BLOB_REF_LEN), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("expires", UtcDateTime, nullable=False),
    Column("delay_warned", Boolean, nullable=False),
    Column("lease_holder", Text, nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    sqlite_autoincrement=True,
)

queue_recipients = Table(
    "queue_recipients",
    metadata,
    Column("id", _big_id(), primary_key=True),
    Column(
        "queue_message_id",
        _big_id(),
        ForeignKey("queue_messages.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("recipient", Text, nullable=False),
    Column("domain", String(DOMAIN_LEN), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt", UtcDateTime, nullable=False),
    Column("last_attempt", UtcDateTime, nullable=True),
    Column("last_reply", Text, nullable=False),
    Column("remote_mta", Text, nullable=False),
    Column("bounce_requested", Boolean, nullable=False),
    sqlite_autoincrement=True,
)
# What every claim asks: queued recipients due by now, as an index range read.
Index(
    "ix_queue_recipients_state_next_attempt",
    queue_recipients.c.state,
    queue_recipients.c.next_attempt,
)

# One row per accepted submission, counted by the per-account sending limits. Rows of a
# removed account go with it (ids are never reused, see sqlite_autoincrement above).
submissions = Table(
    "submissions",
    metadata,
    Column("id", _big_id(), primary_key=True),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("time", UtcDateTime, nullable=False),
    Column("recipients", Integer, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_submissions_account_id_time", submissions.c.account_id, submissions.c.time)

# DKIM signing keys, in the store so that every node signs with the same key. Old keys are
# kept inactive: their DNS records may still be published while signatures made with them
# are verified. A selector names one key in DNS, hence unique per domain.
dkim_keys = Table(
    "dkim_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "domain_id",
        Integer,
        ForeignKey("domains.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("selector", String(DOMAIN_LEN), nullable=False),
    Column("private_key_pem", Text, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("active", Boolean, nullable=False),
    UniqueConstraint("domain_id", "selector"),
    sqlite_autoincrement=True,
)

# --- spam filter token store (migration 0003) --------------------------------------------------
# Counts of learnt messages containing each token: global, and each account's own (added to
# the global ones when scoring that account's mail). The row with the empty token holds the
# numbers of spam and ham messages learnt, so that totals and token counts change in the same
# upsert. The ledgers record which message (by SHA-256 of its bytes) was learnt as what, so
# learning a message twice changes nothing and learning it as the other kind moves it.
SPAM_TOKEN_LEN = 64
SPAM_DIGEST_LEN = 64

spam_tokens = Table(
    "spam_tokens",
    metadata,
    Column("token", String(SPAM_TOKEN_LEN), primary_key=True),
    Column("spam", Integer, nullable=False),
    Column("ham", Integer, nullable=False),
)

spam_account_tokens = Table(
    "spam_account_tokens",
    metadata,
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("token", String(SPAM_TOKEN_LEN), primary_key=True),
    Column("spam", Integer, nullable=False),
    Column("ham", Integer, nullable=False),
)

spam_trained = Table(
    "spam_trained",
    metadata,
    Column("digest", String(SPAM_DIGEST_LEN), primary_key=True),
    Column("is_spam", Boolean, nullable=False),
    Column("trained", UtcDateTime, nullable=False),
)

spam_account_trained = Table(
    "spam_account_trained",
    metadata,
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("digest", String(SPAM_DIGEST_LEN), primary_key=True),
    Column("is_spam", Boolean, nullable=False),
    Column("trained", UtcDateTime, nullable=False),
)
# --- end of spam filter token store -------------------------------------------------------------

# --- reject lists, safe senders, spam settings, forwarding (migration 0004) ------------------
# One table for every rule list. `owner` ("account:ID", "domain:ID" or "global") is what makes
# a pattern unique per list on both databases (NULL ids never collide in a unique constraint);
# the two nullable ids are there so that removing an account or domain removes its rules.
FILTER_PATTERN_LEN = 512

filter_rules = Table(
    "filter_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("owner", String(32), nullable=False),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column(
        "domain_id",
        Integer,
        ForeignKey("domains.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column("list", String(16), nullable=False),
    Column("action", String(16), nullable=False),
    Column("field", String(16), nullable=False),
    Column("pattern", String(FILTER_PATTERN_LEN), nullable=False),
    Column("created", UtcDateTime, nullable=False),
    # Also the index `rules_for` reads: owner IN (account, domain, global).
    UniqueConstraint("owner", "list", "field", "pattern"),
    CheckConstraint("account_id IS NULL OR domain_id IS NULL", name="one_owner"),
    sqlite_autoincrement=True,
)

# A member's spam block and forwarding switches; no row means the defaults.
filter_settings = Table(
    "filter_settings",
    metadata,
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("spam_enabled", Boolean, nullable=False),
    Column("spam_sensitivity", String(16), nullable=False),
    Column("forward_keep_copy", Boolean, nullable=False),
    Column("forward_skip_spam", Boolean, nullable=False),
)

forward_targets = Table(
    "forward_targets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("address", String(ADDRESS_LEN), nullable=False),
    Column("created", UtcDateTime, nullable=False),
    # Permanent bounces in a row; a target failing again and again is flagged to the member.
    Column("permanent_failures", Integer, nullable=False),
    UniqueConstraint("account_id", "address"),
    sqlite_autoincrement=True,
)
# --- end of reject lists, safe senders, spam settings, forwarding -----------------------------

# --- mailbox operations and search (migration 0005) ----------------------------------------
# What message lists sort and filter by, taken from the message at delivery so that a page of
# a 100,000-message mailbox never opens a blob: `seen` mirrors the \Seen flag (unread counts),
# `sort_from` / `sort_subject` are normalised (case-folded, "Re:" stripped) and cut to
# INDEXED_TEXT_LEN. `indexed_version` is the search-text version the message was indexed
# with (0: not yet, e.g. stored before 0005), which `tayori mailbox reindex` looks for.
messages.append_column(Column("seen", Boolean, nullable=False, server_default=false()))
messages.append_column(Column("has_attachment", Boolean, nullable=False, server_default=false()))
messages.append_column(
    Column("sort_from", String(INDEXED_TEXT_LEN), nullable=False, server_default="")
)
messages.append_column(
    Column("sort_subject", String(INDEXED_TEXT_LEN), nullable=False, server_default="")
)
messages.append_column(Column("indexed_version", Integer, nullable=False, server_default="0"))
# Each sort order as an index (mailbox, key, id), so a sorted first page is a range read.
Index(
    "ix_messages_mailbox_id_internal_date",
    messages.c.mailbox_id,
    messages.c.internal_date,
    messages.c.id,
)
Index(
    "ix_messages_mailbox_id_sort_from", messages.c.mailbox_id, messages.c.sort_from, messages.c.id
)
Index(
    "ix_messages_mailbox_id_sort_subject",
    messages.c.mailbox_id,
    messages.c.sort_subject,
    messages.c.id,
)
Index("ix_messages_mailbox_id_size", messages.c.mailbox_id, messages.c.size, messages.c.id)
# Covers the folder list's counts (total, unread, bytes) without reading message rows.
Index("ix_messages_mailbox_id_seen_size", messages.c.mailbox_id, messages.c.seen, messages.c.size)
Index("ix_messages_indexed_version", messages.c.indexed_version)
# The highest UIDVALIDITY any of the account's mailboxes had, deleted ones included: a folder
# deleted and created again (even in the same second) must get a greater one (RFC 3501).
accounts.append_column(Column("last_uidvalidity", BigInteger, nullable=False, server_default="0"))

# Search terms of one message: field-prefixed tokens, CJK text as overlapping bigrams (see
# tayori.storage.search_text), so that a two-character Japanese word is one token. The
# full-text index over `terms` differs by dialect and lives outside this metadata (created by
# migration 0005): these names are what schema comparison must ignore.
message_search = Table(
    "message_search",
    metadata,
    Column(
        "message_id",
        _big_id(),
        ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("terms", Text, nullable=False),
)
DIALECT_SEARCH_OBJECTS = frozenset(
    {
        "message_fts",
        "message_fts_config",
        "message_fts_data",
        "message_fts_docsize",
        "message_fts_idx",
        "message_fts_content",
        "ix_message_search_tsv",
        "terms_tsv",
    }
)


def include_schema_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic `include_name` hook: schema comparison skips the dialect's search index."""
    return name not in DIALECT_SEARCH_OBJECTS


# --- end of mailbox operations and search ---------------------------------------------------

# --- member preferences, TOTP, app passwords, correspondents (migration 0007) ----------------
# Owned by the webmail's settings pages. No row in member_settings means the defaults. The TOTP
# secret sits beside the preferences but is only read by `MemberStore.get_totp`, never by the
# call that fills pages; app passwords are argon2 hashes like account passwords.
member_settings = Table(
    "member_settings",
    metadata,
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("display_name", String(200), nullable=False),
    Column("signature", Text, nullable=False),
    Column("language", String(8), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("totp_secret", String(64), nullable=True),
    Column("totp_enabled", Boolean, nullable=False),
    Column("totp_last_step", BigInteger, nullable=False),
)

member_image_senders = Table(
    "member_image_senders",
    metadata,
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("address", String(ADDRESS_LEN), primary_key=True),
    Column("created", UtcDateTime, nullable=False),
)

app_passwords = Table(
    "app_passwords",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(100), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("last_used", UtcDateTime, nullable=True),
    UniqueConstraint("account_id", "name"),
    sqlite_autoincrement=True,
)

member_correspondents = Table(
    "member_correspondents",
    metadata,
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("address", String(ADDRESS_LEN), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("last_used", UtcDateTime, nullable=False),
    Column("uses", Integer, nullable=False),
)
# --- end of member preferences, TOTP, app passwords, correspondents ---------------------------

# --- webmail sessions (migration 0006) ----------------------------------------------------------
# Owned by the web app (`tayori.storage.sql_web`). The primary key is the SHA-256 of the cookie
# value, never the value itself; expiry is by `last_seen` (idle) and `created` (absolute).
WEB_AGENT_LEN = 256
WEB_IP_LEN = 64

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("csrf_token", String(64), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("created", UtcDateTime, nullable=False, index=True),
    Column("last_seen", UtcDateTime, nullable=False, index=True),
    Column("user_agent", String(WEB_AGENT_LEN), nullable=False),
    Column("ip", String(WEB_IP_LEN), nullable=False),
)
# --- end of webmail sessions --------------------------------------------------------------------

# --- change counters (migration 0008) ---------------------------------------------------------
# Raised in the same transaction as every change of a kind of data ("filters": reject lists,
# safe senders, spam and forwarding settings), so that a process caches that data and
# revalidates it with one read of this row instead of reading it all again.
change_counters = Table(
    "change_counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("counter", BigInteger, nullable=False),
)
