"""The admin's message trace, and "what would happen" to a message not sent yet.

The trace searches every account's outcomes and shows them whole, private detail included
(client addresses, DNSBL zones, authentication results, spam symbols, remote replies): it is
for admins only, never reachable from a member's page.

"What would happen" is Postfix's `sendmail -bv` for the MX: the real inbound pipeline (the
resolver from the config, the member's rules, the spam block) run step by step for one
sender, recipient and client address, printing each step's verdict, without storing or
delivering anything and without recording outcomes. A client address in `[inbound]
trusted_networks` gets the `relay.trusted` note serve records, and SPF is then checked at
DATA for the host named in the relay's Received field (give the message with `--file`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

from tayori.config.settings import LimitsSettings
from tayori.core.outcome import utcnow
from tayori.pipeline.inbound import InboundPipeline
from tayori.pipeline.member_rules import MemberRules, from_addresses
from tayori.pipeline.recipients import RecipientDecision, decide_recipient
from tayori.pipeline.runner import Decision, merge
from tayori.pipeline.steps import Client, Stage, apply
from tayori.pipeline.verdicts import Action, Verdict
from tayori.rules.decide import plan_forwarding
from tayori.storage.interfaces import MetadataStore
from tayori.storage.records import StoredOutcome
from tayori.storage.sql_rules import RulesStore

__all__ = ["Step", "TraceQuery", "WhatWouldHappen", "search", "what_would_happen"]


@dataclass(frozen=True, slots=True)
class TraceQuery:
    message_id: str = ""
    sender: str = ""
    recipient: str = ""
    ip: str = ""
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 200


def search(metadata: MetadataStore, query: TraceQuery) -> list[StoredOutcome]:
    """Outcomes of every account matching all the given criteria, newest first. Exact
    matches use the store's indexes; the client address is matched by the database too,
    without an index (admin use, within the date range given)."""
    message_ids: list[str | None] = [None]
    if query.message_id:
        bare = query.message_id.strip().strip("<>")
        message_ids = list(dict.fromkeys([query.message_id.strip(), f"<{bare}>", bare]))
    found: dict[int, StoredOutcome] = {}
    for message_id in message_ids:
        for stored in metadata.list_outcomes(
            since=query.since,
            until=query.until,
            sender=query.sender or None,
            recipient=query.recipient or None,
            message_id=message_id,
            remote_ip=query.ip or None,
            limit=query.limit,
        ):
            found[stored.id] = stored
    ordered = sorted(found.values(), key=lambda s: (s.outcome.time, s.id), reverse=True)
    return ordered[: query.limit]


# --- what would happen ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One step's verdict. `action` is accept when the step found nothing wrong."""

    stage: str
    name: str
    action: str
    reason: str = ""
    reply: str = ""
    detail: str = ""
    score: float = 0.0

    def to_json(self) -> dict[str, str | float]:
        return {
            "stage": self.stage,
            "step": self.name,
            "action": self.action,
            "reason": self.reason,
            "reply": self.reply,
            "detail": self.detail,
            "score": self.score,
        }


@dataclass(slots=True)
class WhatWouldHappen:
    steps: list[Step] = field(default_factory=list)
    results: list[dict[str, str | float]] = field(default_factory=list)
    """Per recipient account: where the message would go and why."""

    def to_json(self) -> dict[str, object]:
        return {"steps": [s.to_json() for s in self.steps], "results": self.results}


def _step(stage: str, name: str, verdict: Verdict | None, note: str = "") -> Step:
    if verdict is None:
        return Step(stage, name, "pass", detail=note)
    return Step(
        stage,
        name,
        str(verdict.action),
        verdict.reason,
        str(verdict.reply) if verdict.action in (Action.REJECT, Action.TEMPFAIL) else "",
        verdict.detail,
        verdict.score,
    )


def sample_message(sender: str, recipient: str, now: datetime) -> bytes:
    """A plain message for a trace without --file."""
    return (
        f"From: {sender or 'MAILER-DAEMON'}\r\nTo: {recipient}\r\n"
        f"Subject: tayori trace\r\nDate: {format_datetime(now)}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@trace.invalid>\r\n\r\nA test message.\r\n"
    ).encode()


async def what_would_happen(
    pipeline: InboundPipeline,
    member_rules: MemberRules,
    metadata: MetadataStore,
    rules: RulesStore,
    limits: LimitsSettings,
    *,
    sender: str,
    recipient: str,
    ip: str,
    helo: str,
    message: bytes | None = None,
) -> WhatWouldHappen:
    report = WhatWouldHappen()
    content = message if message is not None else sample_message(sender, recipient, utcnow())
    client = Client(ip, helo=helo, sender=sender)
    verdicts: list[Verdict] = []
    for stage in (Stage.CONNECT, Stage.HELO, Stage.MAIL):
        if stage is Stage.CONNECT and pipeline.trusted(ip) is not None:
            # What serve records for a trusted relay: `connect` gives the relay.trusted note
            # instead of judging the relay (its HELO and MAIL steps skip the same checks).
            noted = await pipeline.connect(client)
            verdicts += noted.verdicts
            report.steps += [_step(str(stage), "trusted relay", v) for v in noted.verdicts]
            continue
        for check, policy in pipeline.steps(stage, ip):
            name = check.name + (f" {check.zone}" if hasattr(check, "zone") else "")
            verdict = apply(policy, await check.check(client))
            if verdict is not None:
                verdicts.append(verdict)
            report.steps.append(_step(str(stage), name, verdict))
    before_rcpt = Decision(tuple(verdicts))
    refused = before_rcpt.decisive
    if refused is not None and refused.action in (Action.REJECT, Action.TEMPFAIL):
        report.results.append(_result(recipient, "", refused, before_rcpt))
        return report

    lookup = metadata.lookup_recipient(recipient)
    decision = decide_recipient(recipient, lookup, declared_size=len(content))
    report.steps.append(_step("rcpt", "recipient", decision.refusal, _accounts(decision)))
    if decision.refusal is not None:
        report.results.append(_result(recipient, "", decision.refusal, before_rcpt))
        return report
    if len(content) > limits.max_message_size:
        size = Verdict.reject("size.exceeded", f"size {len(content)} > {limits.max_message_size}")
        report.steps.append(_step("data", "size", size))
        report.results.append(_result(recipient, "", size, before_rcpt))
        return report

    checks = await pipeline.message(client, content)
    auth = checks.auth
    auth_note = "; ".join(
        part
        for part in (
            f"spf={auth.spf.result}" if auth.spf else "",
            *(f"dkim={s.result} d={s.domain}" for s in auth.dkim),
            f"dmarc={auth.dmarc.result}" if auth.dmarc else "",
        )
        if part
    )
    if checks.decision.verdicts:
        report.steps += [_step("data", "authentication", v) for v in checks.decision.verdicts]
    else:
        report.steps.append(_step("data", "authentication", None, auth_note or "not checked"))
    whole = merge(before_rcpt, checks.decision)
    for account in decision.accounts:
        mine = whole
        if sender:
            at_rcpt = await member_rules.at_rcpt(account, sender)
            if at_rcpt is not None:
                report.steps.append(_step("rcpt", f"reject rules of {account.address}", at_rcpt))
                report.results.append(_result(recipient, account.address, at_rcpt, mine))
                continue
        for recipient_step in pipeline.recipient_steps:
            added = await recipient_step.decide(account, content, client, mine)
            name = f"{type(recipient_step).__name__} for {account.address}"
            if not added.verdicts:
                report.steps.append(_step("data", name, None))
            report.steps += [_step("data", name, v) for v in added.verdicts]
            mine = mine.plus(added.verdicts)
        decisive = mine.decisive
        result = _result(recipient, account.address, decisive, mine)
        if decisive is None or decisive.action in (Action.ACCEPT, Action.JUNK):
            filters = rules.filters_for(account.id)
            plan = plan_forwarding(
                filters.forwarding,
                is_spam=decisive is not None and decisive.action is Action.JUNK,
                envelope_sender=sender,
                from_addresses=from_addresses(content),
                rules=filters.rules,
            )
            if plan.targets:
                result["forward_to"] = ", ".join(plan.targets)
                result["keep_copy"] = "yes" if plan.keep_copy else "no"
            elif plan.skipped:
                result["forward_skipped"] = plan.skipped
        report.results.append(result)
    return report


def _accounts(decision: RecipientDecision) -> str:
    return "accounts: " + ", ".join(account.address for account in decision.accounts)


def _result(
    recipient: str, account: str, verdict: Verdict | None, decision: Decision
) -> dict[str, str | float]:
    if verdict is None or verdict.action is Action.ACCEPT:
        where, reason, reply = "INBOX", "delivered", "250 2.0.0 Ok"
    elif verdict.action is Action.JUNK:
        where, reason, reply = "Junk", verdict.reason, "250 2.0.0 Ok"
    else:
        where = "refused" if verdict.action is Action.REJECT else "deferred"
        reason, reply = verdict.reason, str(verdict.reply)
    return {
        "recipient": recipient,
        "account": account,
        "result": where,
        "reason": reason,
        "reply": reply,
        "score": round(decision.score, 2),
    }
