"""Members' reject lists (受信拒否設定) as pipeline steps: by envelope sender at RCPT, so the
sender's own server tells them; by envelope sender or From: at the end of DATA, per member.
The matching itself is `tayori.rules.decide`; the rules come from `Stores.rules`."""

from __future__ import annotations

import asyncio
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from tayori.core.reasons import reason
from tayori.pipeline.runner import Decision
from tayori.pipeline.steps import Client
from tayori.pipeline.verdicts import Action, Verdict
from tayori.rules.decide import RuleDecision, decide_sender
from tayori.storage.records import Account
from tayori.storage.sql_rules import RulesStore


def from_addresses(message: bytes) -> list[str]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(message)
    values = [str(value) for value in headers.get_all("From") or []]
    return [address for _, address in getaddresses(values) if "@" in address]


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


class MemberRules:
    """The RecipientStep for reject lists, and the RCPT-time check by envelope sender."""

    def __init__(self, rules: RulesStore) -> None:
        self._rules = rules

    async def at_rcpt(self, account: Account, sender: str) -> Verdict | None:
        """Only rules on the envelope sender can decide before DATA."""
        filters = await asyncio.to_thread(self._rules.filters_for, account.id)
        verdict = rule_verdict(decide_sender(filters.rules, sender))
        return verdict if verdict is not None and verdict.action is Action.REJECT else None

    async def decide(
        self, account: Account, message: bytes, client: Client, so_far: Decision
    ) -> Decision:
        filters = await asyncio.to_thread(self._rules.filters_for, account.id)
        verdict = rule_verdict(decide_sender(filters.rules, client.sender, from_addresses(message)))
        return Decision(() if verdict is None else (verdict,))
