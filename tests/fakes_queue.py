"""In-memory stand-ins for the outbound side: queue store, clock, resolver, bounce sender.

`FakeQueueStore` follows the `QueueStore` contract as the SQL store implements it: a claim
is a lease that nobody (the claimer included) can claim again before it runs out, entries
carry every QUEUED recipient (also those not due yet), `record_attempts` checks the lease,
counts the attempt and drops the message when no recipient is QUEUED any more.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address

from tayori.core.errors import ConflictError, NotFoundError
from tayori.core.outcome import Outcome
from tayori.dns.resolver import DnsAnswer, DnsStatus, DomainExistence, IPAddress, Mx, MxAnswer
from tayori.storage.records import (
    AppendResult,
    NewMessage,
    NewQueuedMessage,
    QueuedRecipient,
    QueueEntry,
    RecipientState,
    RecipientUpdate,
)

START = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    """`now()` moves only when the test says so."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current

    def __call__(self) -> datetime:
        return self.current


@dataclass
class _Row:
    entry: QueueEntry
    lease_holder: str | None = None
    lease_until: datetime | None = None


@dataclass
class FakeQueueStore:
    clock: FakeClock
    rows: dict[int, _Row] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    finished: dict[str, QueueEntry] = field(default_factory=dict)
    """Messages that left the queue (every recipient final), by queue id, as last seen."""
    claims: int = 0
    records: int = 0
    fail_record: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- helpers (not part of the interface) -----------------------------------------

    def add(
        self,
        recipients: Sequence[str],
        *,
        sender: str = "alice@example.test",
        blob_ref: str = "blob-1",
        queue_id: str | None = None,
        account_id: int | None = 7,
        created: datetime | None = None,
        lifetime: timedelta = timedelta(days=5),
        message_id: str = "<m1@example.test>",
        subject: str = "Hello",
        size: int = 100,
    ) -> QueueEntry:
        created = created or self.clock.now()
        message = NewQueuedMessage(
            queue_id=queue_id or f"Q{next(self._ids)}",
            sender=sender,
            account_id=account_id,
            blob_ref=blob_ref,
            size=size,
            message_id=message_id,
            subject=subject,
            created=created,
            expires=created + lifetime,
            recipients=tuple(recipients),
        )
        self.enqueue(message)
        return self.entry(message.queue_id)

    def entry(self, queue_id: str) -> QueueEntry:
        found = self.get_queue_entry(queue_id)
        if found is None:
            return self.finished[queue_id]
        return found

    def row(self, queue_id: str) -> _Row:
        return next(row for row in self.rows.values() if row.entry.queue_id == queue_id)

    def recipient(self, queue_id: str, address: str) -> QueuedRecipient:
        return next(r for r in self.entry(queue_id).recipients if r.recipient == address)

    def reasons(self) -> list[tuple[str, str, str]]:
        """(recipient, outcome kind, reason) of every recorded outcome, in order."""
        return [(o.recipient, o.outcome.value, o.reason) for o in self.outcomes]

    # --- QueueStore ----------------------------------------------------------------------

    def enqueue(
        self,
        message: NewQueuedMessage | None,
        appends: Sequence[NewMessage] = (),
        outcomes: Sequence[Outcome] = (),
    ) -> list[AppendResult]:
        if appends:
            raise NotImplementedError("FakeQueueStore does not append to mailboxes")
        with self._lock:
            self.outcomes.extend(outcomes)
            if message is None:
                return []
            entry_id = next(self._ids)
            recipients = tuple(
                QueuedRecipient(
                    id=next(self._ids),
                    recipient=address,
                    domain=address.rpartition("@")[2].lower(),
                    state=RecipientState.QUEUED,
                    attempts=0,
                    next_attempt=message.created,
                    last_attempt=None,
                    last_reply="",
                    remote_mta="",
                    bounce_requested=False,
                )
                for address in message.recipients
            )
            self.rows[entry_id] = _Row(
                QueueEntry(
                    id=entry_id,
                    queue_id=message.queue_id,
                    sender=message.sender,
                    account_id=message.account_id,
                    blob_ref=message.blob_ref,
                    size=message.size,
                    message_id=message.message_id,
                    subject=message.subject,
                    created=message.created,
                    expires=message.expires,
                    delay_warned=False,
                    recipients=recipients,
                )
            )
        return []

    def claim_due(
        self, now: datetime, holder: str, lease_until: datetime, limit: int
    ) -> list[QueueEntry]:
        with self._lock:
            self.claims += 1
            claimed = []
            for row in self.rows.values():
                if len(claimed) >= limit:
                    break
                if row.lease_until is not None and row.lease_until > now:
                    continue
                queued = [r for r in row.entry.recipients if r.state is RecipientState.QUEUED]
                if not any(r.next_attempt <= now or r.bounce_requested for r in queued):
                    continue
                row.lease_holder, row.lease_until = holder, lease_until
                claimed.append(replace(row.entry, recipients=tuple(queued)))
            return claimed

    def release(self, entry_id: int, holder: str) -> None:
        with self._lock:
            row = self.rows.get(entry_id)
            if row is not None and row.lease_holder == holder:
                row.lease_holder = row.lease_until = None

    def record_attempts(
        self,
        entry_id: int,
        holder: str,
        updates: Sequence[RecipientUpdate],
        outcomes: Sequence[Outcome],
        *,
        delay_warned: bool = False,
    ) -> list[str]:
        if self.fail_record:
            raise ConnectionError("queue store switched off by the test")
        now = self.clock.now()
        with self._lock:
            self.records += 1
            row = self.rows.get(entry_id)
            if row is None:
                raise NotFoundError(f"queued message {entry_id} is gone")
            if row.lease_holder != holder:
                raise ConflictError(f"queued message {entry_id} is not leased to {holder}")
            by_id = {u.recipient_id: u for u in updates}
            recipients = []
            for r in row.entry.recipients:
                update = by_id.pop(r.id, None)
                if update is not None:
                    if r.state is not RecipientState.QUEUED:
                        raise ValueError(f"recipient {r.id} is not queued")
                    r = replace(
                        r,
                        state=update.state,
                        attempts=r.attempts + 1,
                        next_attempt=update.next_attempt,
                        last_attempt=now,
                        last_reply=update.reply,
                        remote_mta=update.remote_mta,
                        bounce_requested=False,
                    )
                recipients.append(r)
            if by_id:
                raise ValueError(f"unknown recipients {sorted(by_id)}")
            entry = replace(
                row.entry,
                recipients=tuple(recipients),
                delay_warned=row.entry.delay_warned or delay_warned,
            )
            row.entry = entry
            row.lease_holder = row.lease_until = None
            self.outcomes.extend(outcomes)
            if all(r.state is not RecipientState.QUEUED for r in recipients):
                del self.rows[entry_id]
                self.finished[entry.queue_id] = entry
                return [entry.blob_ref]
            return []

    def list_queue(self, *, deferred_only: bool = False) -> list[QueueEntry]:
        with self._lock:
            entries = [row.entry for row in self.rows.values()]
        if deferred_only:
            entries = [
                e
                for e in entries
                if any(r.state is RecipientState.QUEUED and r.attempts for r in e.recipients)
            ]
        return entries

    def get_queue_entry(self, queue_id: str) -> QueueEntry | None:
        with self._lock:
            return next(
                (row.entry for row in self.rows.values() if row.entry.queue_id == queue_id),
                None,
            )

    def retry_now(self, queue_id: str | None, now: datetime) -> int:
        count = 0
        with self._lock:
            for row in self.rows.values():
                if queue_id is not None and row.entry.queue_id != queue_id:
                    continue
                recipients = []
                for r in row.entry.recipients:
                    if r.state is RecipientState.QUEUED:
                        r = replace(r, next_attempt=now)
                        count += 1
                    recipients.append(r)
                row.entry = replace(row.entry, recipients=tuple(recipients))
        return count

    def request_bounce(self, queue_id: str, now: datetime) -> int:
        count = 0
        with self._lock:
            for row in self.rows.values():
                if row.entry.queue_id != queue_id:
                    continue
                recipients = []
                for r in row.entry.recipients:
                    if r.state is RecipientState.QUEUED:
                        r = replace(r, bounce_requested=True, next_attempt=now)
                        count += 1
                    recipients.append(r)
                row.entry = replace(row.entry, recipients=tuple(recipients))
        return count

    def delete_queued(self, queue_id: str) -> list[str]:
        with self._lock:
            for entry_id, row in list(self.rows.items()):
                if row.entry.queue_id == queue_id:
                    del self.rows[entry_id]
                    return [row.entry.blob_ref]
        raise NotFoundError(queue_id)

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotImplementedError(f"FakeQueueStore.{name} is not faked yet")


class FakeResolver:
    """Answers from dicts: `mx[domain]` as (preference, host) pairs or a DnsStatus,
    `hosts[name]` as addresses or a DnsStatus. Names not listed: NXDOMAIN."""

    def __init__(self) -> None:
        self.mx_records: dict[str, list[tuple[int, str]] | DnsStatus] = {}
        self.hosts: dict[str, list[str] | DnsStatus] = {}
        self.lookups: list[tuple[str, str]] = []

    async def mx(self, domain: str) -> MxAnswer:
        self.lookups.append(("MX", domain))
        value = self.mx_records.get(domain, "nxdomain" if domain not in self.hosts else "nodata")
        if isinstance(value, str):
            return MxAnswer(value)
        return MxAnswer("ok", tuple(sorted(Mx(p, h) for p, h in value)), 300)

    async def addresses(self, name: str) -> DnsAnswer[IPAddress]:
        self.lookups.append(("A/AAAA", name))
        value = self.hosts.get(name, "nxdomain")
        if isinstance(value, str):
            return DnsAnswer(value)
        found = [ip_address(a) for a in value]
        ordered = [a for a in found if a.version == 6] + [a for a in found if a.version == 4]
        return DnsAnswer("ok", tuple(ordered), 300)

    async def a(self, name: str) -> DnsAnswer[IPv4Address]:
        raise NotImplementedError

    async def aaaa(self, name: str) -> DnsAnswer[IPv6Address]:
        raise NotImplementedError

    async def txt(self, name: str) -> DnsAnswer[str]:
        raise NotImplementedError

    async def ptr(self, ip: str) -> DnsAnswer[str]:
        raise NotImplementedError

    async def domain_exists(self, domain: str) -> DomainExistence:
        raise NotImplementedError


class RecordingBounceSender:
    """Keeps every DSN handed over; `fail` makes the next ones raise."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.fail = False

    async def send_bounce(self, recipient: str, raw: bytes) -> None:
        if self.fail:
            raise ConnectionError("bounce sender switched off by the test")
        self.sent.append((recipient, raw))
