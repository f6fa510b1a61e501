"""Members' reject lists (受信拒否設定) as pipeline steps: by envelope sender at RCPT, so the
sender's own server tells them; by envelope sender or From: at the end of DATA, per member.
The matching itself is `tayori.rules.decide`; the rules come from `Stores.rules`.

Each member's filters (rules, spam settings, forwarding) are read once per transaction and
shared by every step that needs them (RCPT check, reject lists, spam block, forwarding), so a
member without forwarding costs no extra database round trip.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tayori.core.offload import Offload, in_thread
from tayori.core.reasons import reason
from tayori.mime.addresses import parse_addresses
from tayori.mime.recent import recently_parsed
from tayori.pipeline.runner import Decision
from tayori.pipeline.steps import Client
from tayori.pipeline.verdicts import Action, Verdict
from tayori.rules.decide import RuleDecision, decide_sender
from tayori.rules.model import AccountFilters
from tayori.storage.records import Account
from tayori.storage.sql_rules import RulesStore

MEMO_SECONDS = 60.0
"""How long filters read for one transaction are reused: about one SMTP transaction, so a
member's change applies to the next message, never to one already being received."""
MEMO_LIMIT = 10_000
"""Transactions remembered at once; beyond it the memo is cleared (never wrong, only slower)."""


def from_addresses(message: bytes) -> list[str]:
    """Every address of every From: field, through the MIME layer's parse that the spam
    tokenizer and the search index share for this message (one parse, not three)."""
    headers = recently_parsed(message).root.headers
    return [
        mailbox.address
        for raw in headers.get_all("from")
        for mailbox in parse_addresses(raw)
        if "@" in mailbox.address
    ]


def rule_verdict(decision: RuleDecision | None) -> Verdict | None:
    """`rule.reject` refuses, `rule.junk` files in Junk; `safe_sender` is recorded only
    (the spam block reads it), with no effect on the action."""
    if decision is None:
        return None
    action = {"rule.reject": Action.REJECT, "rule.junk": Action.JUNK}.get(
        decision.reason, Action.ACCEPT
    )
    entry = reason(decision.reason)
    reply = (
        entry.reply_for()
        if entry.reply is not None
        else reason("delivered").reply_for(queue_id="-")
    )
    return Verdict(action, decision.reason, reply, decision.detail)


@dataclass(slots=True)
class _Memo:
    """Filters read during one transaction of one connection."""

    client: Client
    """Held so that its id cannot be reused by another connection while remembered."""
    sender: str
    started: float
    filters: dict[int, AccountFilters] = field(default_factory=dict)


class MemberRules:
    """The RecipientStep for reject lists, the RCPT-time check by envelope sender, and the
    per-transaction memo of members' filters the other steps read (`filters`)."""

    def __init__(self, rules: RulesStore, reads: Offload = in_thread) -> None:
        """`reads`: where the filter reads run (`tayori.core.offload`)."""
        self._rules = rules
        self._reads = reads
        self._memo: dict[int, _Memo] = {}

    async def filters(self, account: Account, client: Client | None = None) -> AccountFilters:
        """The member's filters, read once per transaction of `client` (every read when no
        client is given)."""
        if client is None:
            return await self._reads(self._rules.filters_for, account.id)
        memo = self._memo_for(client)
        found = memo.filters.get(account.id)
        if found is None:
            found = await self._reads(self._rules.filters_for, account.id)
            memo.filters[account.id] = found
        return found

    def known(self, client: Client) -> frozenset[int]:
        """Accounts whose filters this transaction already read."""
        return frozenset(self._memo_for(client).filters)

    def read_filters(self, account_ids: Iterable[int]) -> dict[int, AccountFilters]:
        """Blocking: for a caller already in a worker thread (the RCPT look-up reads the
        recipient and their filters in one hop), to be handed to `remember`."""
        return {account_id: self._rules.filters_for(account_id) for account_id in account_ids}

    def remember(self, client: Client, found: Mapping[int, AccountFilters]) -> None:
        self._memo_for(client).filters.update(found)

    def _memo_for(self, client: Client) -> _Memo:
        now = time.monotonic()
        memo = self._memo.get(id(client))
        if (
            memo is None
            or memo.client is not client
            or memo.sender != client.sender
            or now - memo.started > MEMO_SECONDS
        ):
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            memo = self._memo[id(client)] = _Memo(client, client.sender, now)
        return memo

    def forget(self, client: Client) -> None:
        """The transaction is over (end of DATA): the next one reads the filters afresh."""
        self._memo.pop(id(client), None)

    async def at_rcpt(
        self, account: Account, sender: str, client: Client | None = None
    ) -> Verdict | None:
        """Only rules on the envelope sender can decide before DATA."""
        filters = await self.filters(account, client)
        verdict = rule_verdict(decide_sender(filters.rules, sender))
        return verdict if verdict is not None and verdict.action is Action.REJECT else None

    async def decide(
        self, account: Account, message: bytes, client: Client, so_far: Decision
    ) -> Decision:
        filters = await self.filters(account, client)
        verdict = rule_verdict(decide_sender(filters.rules, client.sender, from_addresses(message)))
        return Decision(() if verdict is None else (verdict,))
