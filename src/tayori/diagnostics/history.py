"""The member's delivery history: their outcomes in plain words, and how long they are kept.

Which outcomes are a member's: those recorded with their account id, plus refusals decided
before the recipient's account was known (a blocklisted client or an unknown sender domain
is refused for the address given at RCPT, with no account id) addressed to one of their
addresses, and failed logins naming their address. Nothing else, so a member never sees
another member's mail. Rows carry the catalogue's words, the action and a link, never the
outcome's private detail (client addresses, DNS and authentication results, spam symbols).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.core.reasons import CATALOGUE
from tayori.diagnostics import links
from tayori.diagnostics.findings import fill
from tayori.storage.interfaces import MetadataStore
from tayori.storage.records import Account, SpecialUse, StoredOutcome

__all__ = [
    "HistoryEntry",
    "HistoryFilter",
    "HistoryJanitor",
    "Linker",
    "member_addresses",
    "member_history",
    "member_outcomes",
    "purge_history",
]

log = logging.getLogger(__name__)

SCAN = 5000
"""Outcomes read per source when filtering a member's history (newest first)."""
_SCAN_MAX = 320_000
"""Beyond this many rows per source a filtered history page stops looking further back:
more than a busy member collects in the default 90 days of retention."""

_PLACED = re.compile(r"\bmailbox=(?P<mailbox>.+?) uid=(?P<uid>\d+)\s*$")
_ZONE = re.compile(r"blocked using (\S+)")


def member_addresses(metadata: MetadataStore, account: Account) -> list[str]:
    """The account's own address and the aliases that deliver to it, canonical."""
    addresses = [account.address.lower()]
    addresses += [alias.address.lower() for alias in metadata.list_aliases(target=account.address)]
    return addresses


def _belongs(outcome: Outcome, account_id: int, addresses: set[str]) -> bool:
    if outcome.account_id is not None:
        return outcome.account_id == account_id
    if outcome.direction is Direction.INBOUND:
        return outcome.recipient.lower() in addresses
    return outcome.reason == "auth.failed" and outcome.sender.lower() in addresses


def member_outcomes(
    metadata: MetadataStore,
    account: Account,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    sender: str | None = None,
    limit: int = SCAN,
) -> list[StoredOutcome]:
    """The member's outcomes, newest first (see the module docstring for which ones)."""
    return _scan(metadata, account, since=since, until=until, sender=sender, limit=limit)[0]


def _scan(
    metadata: MetadataStore,
    account: Account,
    *,
    since: datetime | None,
    until: datetime | None,
    sender: str | None = None,
    subject: str | None = None,
    limit: int,
) -> tuple[list[StoredOutcome], bool]:
    """`member_outcomes`, and whether they are all there are (no source reached `limit`)."""
    addresses = member_addresses(metadata, account)
    found: dict[int, StoredOutcome] = {}

    def read(
        account_id: int | None = None, sender: str | None = None, recipient: str | None = None
    ) -> list[StoredOutcome]:
        return metadata.list_outcomes(
            account_id=account_id,
            sender=sender,
            recipient=recipient,
            since=since,
            until=until,
            subject_contains=subject,
            limit=limit,
        )

    batches = [read(account_id=account.id, sender=sender)]
    for address in addresses:
        batches.append(read(recipient=address, sender=sender))
        if sender is None or sender.lower() == address:
            batches.append(read(sender=address))
    wanted = set(addresses)
    for batch in batches:
        for stored in batch:
            if _belongs(stored.outcome, account.id, wanted):
                found[stored.id] = stored
    ordered = sorted(found.values(), key=lambda s: (s.outcome.time, s.id), reverse=True)
    return ordered[:limit], all(len(batch) < limit for batch in batches)


def placed(outcome: Outcome) -> tuple[str, int] | None:
    """(mailbox name, UID) a delivered copy was stored under, from the outcome's detail."""
    match = _PLACED.search(outcome.detail)
    return (match.group("mailbox"), int(match.group("uid"))) if match else None


class Linker:
    """Webmail links for one member's outcomes. Mailbox and message ids are per account, so
    links are resolved against the member's own mailboxes (in a worker thread: it reads the
    store); a delivered message deleted since links to its folder instead."""

    def __init__(self, metadata: MetadataStore, account_id: int) -> None:
        self._metadata = metadata
        self._boxes = {box.name: box for box in metadata.list_mailboxes(account_id)}

    def folder(self, use: SpecialUse, query: str = "") -> str:
        box = self._boxes.get(use.value)
        return links.folder(box.id) + query if box is not None else ""

    def quota(self) -> str:
        """Where to make room: the inbox, largest first."""
        return self.folder(SpecialUse.INBOX, "?sort=size&order=desc")

    def stored(self, outcome: Outcome, fallback: SpecialUse) -> str:
        where = placed(outcome)
        box = self._boxes.get(where[0]) if where else None
        if where is not None and box is not None:
            found = self._metadata.get_message_by_uid(box.id, where[1])
            if found is not None:
                return links.message(found.id)
            return links.folder(box.id)
        return self.folder(fallback)

    def link(self, outcome: Outcome) -> str:
        """Where a member acts on this outcome; "" when there is nothing to do."""
        code = outcome.reason
        if outcome.direction is Direction.INBOUND and code in ("delivered", "safe_sender"):
            return self.stored(outcome, SpecialUse.INBOX)
        if outcome.outcome is OutcomeKind.JUNKED:
            return self.stored(outcome, SpecialUse.JUNK)
        if code == "rcpt.over_quota":
            return self.quota()
        return {
            "rule.reject": links.REJECT_SETTINGS,
            "forward.sent": links.FORWARD_SETTINGS,
            "forward.failed": links.FORWARD_SETTINGS,
            "forward.loop": links.FORWARD_SETTINGS,
            "rate.limited": links.PASSWORD_SETTINGS,
            "auth.failed": links.PASSWORD_SETTINGS,
            "sender.not_owned": links.SENT_HISTORY,
            "dnsbl.listed": links.COMPOSE if outcome.direction is Direction.OUTBOUND else "",
            "remote.rejected": links.history(direction="out", outcome="remote.rejected"),
            "queue.expired": links.history(direction="out", outcome="queue.expired"),
        }.get(code, "")


def values_for(outcome: Outcome) -> dict[str, str]:
    """Catalogue placeholders an outcome can fill without exposing private detail."""
    values = {"address": outcome.recipient, "sender": outcome.sender or "<>"}
    zone = _ZONE.search(outcome.reply)
    if zone:
        values["zone"] = zone.group(1)
    domain = outcome.sender.rpartition("@")[2]
    if domain:
        values["domain"] = domain
    return values


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    direction: str = ""
    """`in`, `out` or "" for both."""
    party: str = ""
    """Part of the sender or recipient address, any case."""
    subject: str = ""
    since: datetime | None = None
    until: datetime | None = None
    outcome: str = ""
    """An outcome kind (`rejected`, `junked`, …) or a reason code (`rule.reject`)."""

    def matches(self, outcome: Outcome) -> bool:
        if self.direction and str(outcome.direction) != self.direction:
            return False
        party = self.party.strip().lower()
        if party and party not in outcome.sender.lower() and party not in outcome.recipient.lower():
            return False
        if self.subject.strip() and self.subject.strip().lower() not in outcome.subject.lower():
            return False
        wanted = self.outcome.strip()
        return not wanted or wanted in (str(outcome.outcome), outcome.reason)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One row of the member's history page, in the member's language."""

    id: int
    time: datetime
    direction: str
    sender: str
    recipient: str
    subject: str
    outcome: str
    reason: str
    summary: str
    action: str
    link: str


def entry(stored: StoredOutcome, lang: str, linker: Linker) -> HistoryEntry:
    outcome = stored.outcome
    known = CATALOGUE.get(outcome.reason)
    values = values_for(outcome)
    return HistoryEntry(
        id=stored.id,
        time=outcome.time,
        direction=str(outcome.direction),
        sender=outcome.sender,
        recipient=outcome.recipient,
        subject=outcome.subject,
        outcome=str(outcome.outcome),
        reason=outcome.reason,
        summary=fill(known.summary.get(lang), values) if known else outcome.reason,
        action=fill(known.action.get(lang), values) if known else "",
        link=linker.link(outcome),
    )


def member_history(
    metadata: MetadataStore,
    account: Account,
    filters: HistoryFilter = HistoryFilter(),
    *,
    lang: str = "ja",
    limit: int = 100,
    offset: int = 0,
    scan: int = SCAN,
) -> list[HistoryEntry]:
    """The member's history page: newest first, filtered, in `lang`.

    Dates and an ASCII subject are filtered by the database; the rest (a part of an address,
    direction, result) here, so when too few rows of the newest `scan` match, older ones
    are read too, until the page is full or the history has no more."""
    # SQLite's LIKE folds the case of ASCII letters only: other text is matched here alone.
    subject = filters.subject.strip()
    pushed = subject if subject and subject.isascii() else None
    while True:
        found, complete = _scan(
            metadata, account, since=filters.since, until=filters.until, subject=pushed, limit=scan
        )
        rows = [stored for stored in found if filters.matches(stored.outcome)]
        if complete or len(rows) >= offset + limit or scan >= _SCAN_MAX:
            break
        scan = min(scan * 4, _SCAN_MAX)
    linker = Linker(metadata, account.id)
    return [entry(stored, lang, linker) for stored in rows[offset : offset + limit]]


# --- retention --------------------------------------------------------------------------------


def purge_history(metadata: MetadataStore, now: datetime, retention_days: int) -> int:
    """Delete outcomes older than the retention; 0 days keeps them for ever."""
    if retention_days <= 0:
        return 0
    return metadata.purge_outcomes(now - timedelta(days=retention_days))


PURGE_INTERVAL = 3600.0


class HistoryJanitor:
    """Purges old outcomes now and then while `tayori serve` runs. Every node may run one:
    deleting what another node just deleted is harmless."""

    def __init__(
        self,
        metadata: MetadataStore,
        retention_days: int,
        clock: Callable[[], datetime],
        interval: float = PURGE_INTERVAL,
    ) -> None:
        self._metadata = metadata
        self._retention = retention_days
        self._clock = clock
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def run_once(self) -> int:
        purged = purge_history(self._metadata, self._clock(), self._retention)
        if purged:
            log.info(
                "purged %d outcomes older than %d days",
                purged,
                self._retention,
                extra={"event": "history.purged", "count": purged},
            )
        return purged

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # the next round tries again; history is not worth a crash
                log.exception("history purge failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._retention > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="history-janitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
