"""The mail doctor: the help desk's three questions answered from the member's own state.

Each check reads what Tayori already knows — the inbox, the quota, the member's rules and
forwarding, and the outcomes recorded for them — and turns it into findings ranked by how
likely they explain the problem. The likelihoods are judgement, written down once here:
something that happened to the very sender the member asked about outranks a general
state, and a refusal outranks a filing in Junk, which outranks "it did arrive".
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tayori.config.settings import DoctorSettings, SubmissionDnsblSettings
from tayori.core.outcome import Direction, Outcome, OutcomeKind, utcnow
from tayori.core.reasons import CATALOGUE, Text
from tayori.core.sizes import format_size
from tayori.diagnostics import links
from tayori.diagnostics.findings import (
    Evidence,
    Fact,
    Finding,
    Problem,
    iso,
    outcome_evidence,
    ranked,
    spam_facts,
)
from tayori.diagnostics.history import Linker, member_outcomes, values_for
from tayori.diagnostics.remote_reply import classify, explanation
from tayori.dns import dnsbl
from tayori.dns.resolver import Resolver
from tayori.mime import parse_message
from tayori.mime.defects import DefectCode
from tayori.rules.decide import decide_sender, plan_forwarding
from tayori.rules.model import AccountFilters, Scope
from tayori.storage.interfaces import BlobStore, MetadataStore
from tayori.storage.records import Account, SpecialUse, StoredMessage
from tayori.storage.sql_rules import RulesStore

__all__ = ["DEFAULT_PERIOD", "Doctor", "DoctorQuery"]

DEFAULT_PERIOD = timedelta(days=30)

STALLING = frozenset(
    {
        DefectCode.NO_HEADERS,
        DefectCode.MISSING_HEADER_SEPARATOR,
        DefectCode.GARBAGE_HEADER_LINE,
        DefectCode.NUL_BYTES,
        DefectCode.LONG_LINE,
        DefectCode.BARE_CR_LINE_ENDINGS,
        DefectCode.MALFORMED_CONTENT_TYPE,
        DefectCode.MULTIPART_WITHOUT_BOUNDARY,
        DefectCode.BOUNDARY_NEVER_USED,
        DefectCode.MISSING_CLOSE_BOUNDARY,
        DefectCode.NESTING_TOO_DEEP,
        DefectCode.TOO_MANY_PARTS,
        DefectCode.DAMAGED_TRANSFER_ENCODING,
        DefectCode.UNDECODABLE_HEADER,
    }
)
"""Defects that make mail programs give up on a message (not the merely odd ones, such as
a TNEF attachment or a guessed character set, which they show fine)."""

PARSE_EACH_END = 100
"""Inbox messages parsed for defects at each end of the inbox: the oldest (where a POP3
download that stalls keeps stopping) and the newest (what just arrived)."""
PARSE_CAP = 10 * 1000 * 1000
"""Larger messages are reported as large, not parsed."""
SHOWN_MESSAGES = 5
"""Problem messages reported one by one; more are summed up in the last finding."""

# Submission-side refusals: their remote_ip is the member's own network.
_SUBMISSION_CODES = frozenset(
    {"sender.not_owned", "sender.domain_unknown", "dnsbl.listed", "rate.limited", "size.exceeded"}
)
_RULE = re.compile(
    r"(?P<scope>account|domain|global) rule (?P<id>\d+) \((?P<pattern>.*?)\) matched "
    r"(?P<field>envelope sender|From:)"
)
_ZONE = re.compile(r"blocked using (\S+)")
_FORWARD_RULE = re.compile(r"not forwarded: forwarding reject rule (?P<id>\d+)")
_FORWARD_SPAM = "not forwarded: judged spam"
"""What delivery adds to a kept copy's detail when forwarding left it out
(`tayori.delivery.forwarding._filed`)."""
_CHECK_REFUSALS = ("fcrdns.failed", "helo.invalid", "auth.spf.fail", "auth.dkim.fail")


@dataclass(frozen=True, slots=True)
class DoctorQuery:
    problems: frozenset[Problem] = frozenset(Problem)
    sender: str = ""
    """Mail from this address (or domain) is missing."""
    subject: str = ""
    """Mail with this in its subject is missing."""
    since: datetime | None = None
    """Start of the period examined; None: the last `DEFAULT_PERIOD`."""
    now: datetime = field(default_factory=utcnow)
    client_ip: str = ""
    """The member's current network (the web page's client); "" : the address last seen at
    submission."""

    @property
    def start(self) -> datetime:
        return self.since or self.now - DEFAULT_PERIOD

    @property
    def asked(self) -> bool:
        """About a particular message (sender or subject), not the mailbox in general."""
        return bool(self.sender.strip() or self.subject.strip())

    def matches(self, outcome: Outcome) -> bool:
        sender = self.sender.strip().lower()
        if sender:
            got = outcome.sender.lower()
            domain = sender.removeprefix("@")
            if got != sender and not ("@" not in domain and got.endswith("@" + domain)):
                return False
        subject = self.subject.strip().lower()
        return not subject or subject in outcome.subject.lower()


@dataclass(slots=True)
class _State:
    """Everything read from the stores, in one thread hop."""

    account: Account
    outcomes: list[Outcome]
    inbox: list[StoredMessage]
    parsed: dict[int, list[str]]
    filters: AccountFilters
    unknown_tries: list[Outcome]
    linker: Linker


class Doctor:
    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        rules: RulesStore,
        resolver: Resolver,
        settings: DoctorSettings,
        submission_dnsbl: SubmissionDnsblSettings,
    ) -> None:
        self._metadata = metadata
        self._blobs = blobs
        self._rules = rules
        self._resolver = resolver
        self._settings = settings
        self._zones = tuple(submission_dnsbl.zones)

    async def examine(self, account: Account, query: DoctorQuery) -> list[Finding]:
        """Findings for the problems asked about, most likely first."""
        state, found = await asyncio.to_thread(self._examine_stored, account, query)
        if Problem.SEND in query.problems:
            found += await self._sending(state, query)
        return ranked(found)

    def _examine_stored(self, account: Account, query: DoctorQuery) -> tuple[_State, list[Finding]]:
        """The checks that only read the store (in a worker thread: links read it too)."""
        state = self._read(account, query)
        found: list[Finding] = []
        if Problem.RECEIVE in query.problems:
            found += self._inbox(state)
        if query.problems & {Problem.RECEIVE, Problem.MISSING}:
            found += self._quota(state, query)
        if Problem.MISSING in query.problems:
            found += self._missing(state, query)
        return state, found

    # --- reading ----------------------------------------------------------------------------
    def _read(self, account: Account, query: DoctorQuery) -> _State:
        fresh = self._metadata.get_account_by_id(account.id) or account
        outcomes = [
            stored.outcome
            for stored in member_outcomes(self._metadata, fresh, since=query.start)
            if stored.outcome.time <= query.now
        ]
        inbox: list[StoredMessage] = []
        parsed: dict[int, list[str]] = {}
        if Problem.RECEIVE in query.problems:
            box = self._metadata.get_mailbox(fresh.id, SpecialUse.INBOX)
            inbox = self._metadata.list_messages(box.id)
            parsed = self._defects(inbox)
        unknown: list[Outcome] = []
        sender = query.sender.strip()
        if Problem.MISSING in query.problems and "@" in sender:
            unknown = [
                stored.outcome
                for stored in self._metadata.list_outcomes(sender=sender, since=query.start)
                if stored.outcome.account_id is None and stored.outcome.reason == "rcpt.unknown"
            ]
        filters = self._rules.filters_for(fresh.id)
        linker = Linker(self._metadata, fresh.id)
        return _State(fresh, outcomes, inbox, parsed, filters, unknown, linker)

    def _defects(self, inbox: Sequence[StoredMessage]) -> dict[int, list[str]]:
        """Stalling defects per message id, for the messages worth parsing."""
        candidates = [
            m for m in inbox if m.size < min(self._settings.large_message_size, PARSE_CAP)
        ]
        chosen = {m.id: m for m in candidates[:PARSE_EACH_END] + candidates[-PARSE_EACH_END:]}
        found: dict[int, list[str]] = {}
        for message in chosen.values():
            try:
                with self._blobs.open(message.blob_ref) as stream:
                    raw = stream.read()
            except OSError:
                continue
            codes = sorted({str(d.code) for d in parse_message(raw).defects if d.code in STALLING})
            if codes:
                found[message.id] = codes
        return found

    # --- "I can't receive mail" -------------------------------------------------------------
    def _inbox(self, state: _State) -> list[Finding]:
        threshold = self._settings.large_message_size
        large = [m for m in state.inbox if m.size >= threshold]
        broken = [m for m in state.inbox if m.id in state.parsed]
        found = [
            Finding(
                "message.large",
                90,
                (_message_evidence(m, threshold=threshold),),
                links.message(m.id),
                {"size": format_size(m.size)},
                problem=Problem.RECEIVE,
            )
            for m in large[:SHOWN_MESSAGES]
        ]
        found += [
            Finding(
                "message.malformed",
                85,
                (_message_evidence(m, defects=", ".join(state.parsed[m.id])),),
                links.message(m.id),
                problem=Problem.RECEIVE,
            )
            for m in broken[:SHOWN_MESSAGES]
        ]
        return found

    def _quota(self, state: _State, query: DoctorQuery) -> list[Finding]:
        account = state.account
        refusals = [o for o in state.outcomes if o.reason == "rcpt.over_quota"]
        if account.quota_bytes <= 0 and not refusals:
            return []
        used, quota = account.used_bytes, account.quota_bytes
        percent = round(used * 100 / quota) if quota else 0
        facts: dict[str, str | int | float] = {
            "used": used,
            "quota": quota,
            "percent": percent,
            "refused_in_period": len(refusals),
        }
        if refusals:
            facts["last_refused"] = iso(refusals[0].time)
        evidence = [Evidence("quota", facts)]
        asked = [o for o in refusals if query.asked and query.matches(o)]
        evidence += [outcome_evidence(o) for o in (asked or refusals)[:SHOWN_MESSAGES]]
        # Refusals of the very mail asked about first; a full mailbox refuses everything;
        # other senders' refusals matter less when the member asked about one sender.
        if asked:
            likelihood = 97
        elif account.is_over_quota:
            likelihood = 90
        elif refusals:
            likelihood = 65 if query.asked else 93
        elif percent >= 90:
            likelihood = 60
        else:
            return []
        last = (
            Text(
                f" 最後に受信を拒否したのは {iso(refusals[0].time)} です。",
                f" Mail was last refused at {iso(refusals[0].time)}.",
            )
            if refusals
            else Text("", "")
        )
        note = Text(
            f"現在の使用量は {format_size(used)} / {format_size(quota)}({percent}%)です。"
            + last.ja,
            f"You use {format_size(used)} of {format_size(quota)} ({percent}%)." + last.en,
        )
        return [
            Finding(
                "rcpt.over_quota",
                likelihood,
                tuple(evidence),
                state.linker.quota(),
                note=note,
                problem=Problem.RECEIVE if not query.asked else Problem.MISSING,
            )
        ]

    # --- "Mail sent to me doesn't arrive" ---------------------------------------------------
    def _missing(self, state: _State, query: DoctorQuery) -> list[Finding]:
        attempts = [
            o for o in state.outcomes if o.direction is Direction.INBOUND and query.matches(o)
        ]
        # Quota refusals are the quota finding's evidence.
        inbound = [o for o in attempts if o.reason != "rcpt.over_quota"]
        found: list[Finding] = []
        boost = 10 if query.asked else 0
        for code, group in _by_reason(inbound):
            latest = group[0]
            evidence = tuple(_evidence(o) for o in group[:SHOWN_MESSAGES])
            if latest.outcome is OutcomeKind.JUNKED:
                found.append(self._junked(state, latest, evidence, boost))
            elif code == "rule.reject":
                found.append(_reject_rule(latest, evidence, 82 + boost))
            elif code in ("delivered", "safe_sender"):
                if query.asked:
                    link = state.linker.stored(latest, SpecialUse.INBOX)
                    found.append(Finding("delivered", 40, evidence, link, problem=Problem.MISSING))
            elif code.startswith("forward."):
                found.append(
                    Finding(code, 70 + boost, evidence, links.FORWARD_SETTINGS, values_for(latest))
                )
            elif code == "sender.domain_unknown":
                found.append(
                    Finding(
                        code,
                        78 + boost,
                        evidence,
                        links.history(direction="in", outcome=code),
                        values_for(latest),
                        advice=Text(
                            "送信者のアドレスが正しければ、送信者のドメインの DNS 設定の問題です。",
                            "If the sender's address is right, their domain's DNS is at fault.",
                        ),
                    )
                )
            elif code == "dnsbl.listed":
                found.append(
                    Finding(
                        code,
                        78 + boost,
                        evidence,
                        links.history(direction="in", outcome=code),
                        values_for(latest),
                        instead=_INBOUND_BLOCKLIST,
                    )
                )
            elif latest.outcome in (OutcomeKind.REJECTED, OutcomeKind.DEFERRED) and code in (
                *_CHECK_REFUSALS,
                "auth.dmarc.fail",
                "size.exceeded",
                "store.failed",
            ):
                found.append(
                    Finding(
                        code,
                        75 + boost,
                        evidence,
                        links.history(direction="in", outcome=code),
                        values_for(latest),
                    )
                )
        found += self._not_forwarded(state, inbound, boost)
        found += self._rules_matching(state, query, {f.reason for f in found})
        if query.asked and not attempts:
            found.append(_no_attempt(state, query))
        return found

    def _not_forwarded(self, state: _State, inbound: list[Outcome], boost: int) -> list[Finding]:
        """Mail kept here that forwarding left out: a member who reads at the forwarding
        address sees it as missing. Ranked above the Junk finding of the same message,
        which does not say that it stayed here."""
        found: list[Finding] = []
        by_rule = [o for o in inbound if _FORWARD_RULE.search(o.detail)]
        if by_rule:
            match = _FORWARD_RULE.search(by_rule[0].detail)
            assert match is not None
            found.append(
                Finding(
                    "forward.rule_skipped",
                    81 + boost,
                    (
                        _forward_rule_fact(state, int(match.group("id"))),
                        *(_evidence(o) for o in by_rule[:SHOWN_MESSAGES]),
                    ),
                    links.FORWARD_SETTINGS,
                )
            )
        as_spam = [o for o in inbound if _FORWARD_SPAM in o.detail]
        if as_spam:
            latest = as_spam[0]
            spam = spam_facts(latest.detail)
            evidence = tuple(_evidence(o) for o in as_spam[:SHOWN_MESSAGES])
            found.append(
                Finding(
                    "forward.spam_skipped",
                    81 + boost,
                    (Evidence("spam", spam), *evidence) if spam else evidence,
                    state.linker.stored(latest, SpecialUse.JUNK),
                )
            )
        return found

    def _junked(
        self, state: _State, latest: Outcome, evidence: tuple[Evidence, ...], boost: int
    ) -> Finding:
        code = "rule.junk" if latest.reason == "rule.junk" else "spam.junk"
        note = None
        if code == "spam.junk" and latest.reason != "spam.junk" and latest.reason in CATALOGUE:
            note = CATALOGUE[latest.reason].summary
        spam = spam_facts(latest.detail) if latest.reason == "spam.junk" else {}
        if spam:
            evidence = (Evidence("spam", spam), *evidence)
        return Finding(
            code,
            80 + boost,
            evidence,
            state.linker.stored(latest, SpecialUse.JUNK),
            note=note,
        )

    def _rules_matching(
        self, state: _State, query: DoctorQuery, reported: set[str]
    ) -> list[Finding]:
        """Rules that match the sender asked about now, whether or not mail came yet."""
        sender = query.sender.strip().lower()
        if "@" not in sender:
            return []
        found: list[Finding] = []
        decision = decide_sender(state.filters.rules, sender, [sender])
        if (
            decision is not None
            and decision.reason in ("rule.reject", "rule.junk")
            and decision.reason not in reported
        ):
            fact = Evidence(
                "rule",
                {
                    "id": decision.rule_id,
                    "scope": str(decision.scope),
                    "pattern": decision.pattern if decision.scope is Scope.ACCOUNT else "(admin)",
                    "matches": decision.matched,
                },
            )
            likelihood = 80 if decision.reason == "rule.reject" else 65
            advice = _ADMIN_RULE if decision.scope is not Scope.ACCOUNT else None
            found.append(
                Finding(
                    decision.reason,
                    likelihood,
                    (fact,),
                    links.REJECT_SETTINGS,
                    advice=advice,
                )
            )
        forwarding = state.filters.forwarding
        if forwarding.targets:
            plan = plan_forwarding(
                forwarding,
                is_spam=False,
                envelope_sender=sender,
                from_addresses=[sender],
                rules=state.filters.rules,
            )
            if (
                plan.skipped is not None
                and plan.skipped.startswith("rule:")
                and "forward.rule_skipped" not in reported
            ):
                rule_id = int(plan.skipped.removeprefix("rule:"))
                found.append(
                    Finding(
                        "forward.rule_skipped",
                        70,
                        (_forward_rule_fact(state, rule_id),),
                        links.FORWARD_SETTINGS,
                    )
                )
            if not plan.keep_copy and "forward.sent" not in reported:
                found.append(
                    Finding(
                        "forward.sent",
                        60,
                        (
                            Evidence(
                                "forwarding",
                                {"targets": ", ".join(plan.targets), "keep_copy": "no"},
                            ),
                        ),
                        links.FORWARD_SETTINGS,
                        note=Text(
                            "このアドレス宛てのメールは転送され、ここには残りません。",
                            "Mail to this address is forwarded and not kept here.",
                        ),
                    )
                )
        return found

    # --- "My mail doesn't get through" ------------------------------------------------------
    async def _sending(self, state: _State, query: DoctorQuery) -> list[Finding]:
        subject = query.subject.strip().lower()
        outbound = [
            o
            for o in state.outcomes
            if o.direction is Direction.OUTBOUND and (not subject or subject in o.subject.lower())
        ]
        found: list[Finding] = []
        failed = [
            o
            for o in outbound
            if o.reason in ("remote.rejected", "queue.expired", "remote.null_mx")
        ]
        by_kind: dict[str, list[Outcome]] = {}
        for outcome in failed:
            kind = (
                classify(outcome.reply) if outcome.reason == "remote.rejected" else outcome.reason
            )
            by_kind.setdefault(kind, []).append(outcome)
        for kind, group in by_kind.items():
            latest = group[0]
            evidence = tuple(
                outcome_evidence(o, extra={"remote_reply": o.reply, "refusal": kind})
                for o in group[:SHOWN_MESSAGES]
            )
            if latest.reason == "remote.rejected":
                meaning, todo = explanation(classify(latest.reply))
                quote = latest.reply.strip()
                note = Text(f"{meaning.ja}(相手サーバ: 「{quote}」)", f'{meaning.en} ("{quote}")')
                found.append(
                    Finding(
                        "remote.rejected",
                        86,
                        evidence,
                        links.history(direction="out", outcome="remote.rejected"),
                        note=note,
                        advice=todo,
                        problem=Problem.SEND,
                    )
                )
            else:
                found.append(
                    Finding(
                        latest.reason,
                        80,
                        evidence,
                        links.history(direction="out", outcome=latest.reason),
                        values_for(latest) | {"domain": latest.recipient.rpartition("@")[2]},
                        problem=Problem.SEND,
                    )
                )
        found += await self._sender_addresses(state, outbound)
        found += await self._network(state, query, outbound)
        found += _counted(
            [o for o in outbound if o.reason == "rate.limited"],
            "rate.limited",
            82,
            links.PASSWORD_SETTINGS,
        )
        found += _counted(
            [o for o in outbound if o.reason == "auth.failed"],
            "auth.failed",
            72,
            links.PASSWORD_SETTINGS,
        )
        deferred = [o for o in outbound if o.reason == "remote.deferred"]
        found += _counted(deferred[:1], "remote.deferred", 45, links.history(direction="out"))
        return found

    async def _sender_addresses(self, state: _State, outbound: list[Outcome]) -> list[Finding]:
        """The sender address set in the member's mail program: a typo in its domain makes
        every message fail at submission (not owned, or a domain that does not exist)."""
        refused = [o for o in outbound if o.reason in ("sender.not_owned", "sender.domain_unknown")]
        found: list[Finding] = []
        seen: set[str] = set()
        for outcome in refused:
            address = outcome.sender.lower()
            if address in seen:
                continue
            seen.add(address)
            domain = address.rpartition("@")[2]
            existence = await self._resolver.domain_exists(domain) if domain else "nxdomain"
            group = [o for o in refused if o.sender.lower() == address]
            evidence = (
                Evidence(
                    "sender_address",
                    {"address": address or "<>", "domain": domain, "dns": existence},
                ),
                *(outcome_evidence(o) for o in group[:SHOWN_MESSAGES]),
            )
            note = Text(
                f"メールソフトの差出人アドレスは {address or '<>'} ですが、"
                f"あなたのアドレスは {state.account.address} です。",
                f"Your mail program sends as {address or '<>'}; your address is "
                f"{state.account.address}.",
            )
            if existence in ("nxdomain", "null_mx"):
                found.append(
                    Finding(
                        "sender.domain_unknown",
                        92,
                        evidence,
                        links.SENT_HISTORY,
                        {"domain": domain},
                        note=note,
                        problem=Problem.SEND,
                    )
                )
            else:
                found.append(
                    Finding(
                        outcome.reason,
                        85,
                        evidence,
                        links.SENT_HISTORY,
                        {"domain": domain},
                        note=note,
                        problem=Problem.SEND,
                    )
                )
        return found

    async def _network(
        self, state: _State, query: DoctorQuery, outbound: list[Outcome]
    ) -> list[Finding]:
        """Is the network the member sends from on a blocklist the submission checks?"""
        refusals = [o for o in outbound if o.reason == "dnsbl.listed"]
        ip = query.client_ip or next(
            (o.remote_ip for o in outbound if o.reason in _SUBMISSION_CODES and o.remote_ip), ""
        )
        evidence: list[Evidence] = []
        zone = ""
        if ip:
            for candidate in self._zones:
                result = await dnsbl.lookup(self._resolver, ip, candidate)
                if result.listed:
                    zone = zone or candidate
                    codes = ",".join(str(code) for code in result.codes)
                    evidence.append(
                        Evidence(
                            "network",
                            {"ip": ip, "zone": candidate, "listed": "yes", "codes": codes},
                        )
                    )
        evidence += [outcome_evidence(o) for o in refusals[:SHOWN_MESSAGES]]
        if not zone and refusals:
            match = _ZONE.search(refusals[0].reply)
            zone = match.group(1) if match else ""
        if not evidence:
            return []
        return [
            Finding(
                "dnsbl.listed",
                95 if any(e.kind == "network" for e in evidence) else 88,
                tuple(evidence),
                links.COMPOSE,
                {"zone": zone or "?"},
                problem=Problem.SEND,
            )
        ]


_INBOUND_BLOCKLIST = Text(
    "送信者に、送信元のメールサーバがブロックリストに載っていることを伝え、"
    "送信者のプロバイダに相談してもらってください。",
    "Tell the sender their mail server is on a blocklist, and ask them to contact their provider.",
)
"""The catalogue's action for `dnsbl.listed` is the member's own sending; for mail to the
member the sender is the one to act."""
_ADMIN_RULE = Text(
    "このルールは管理者の設定です。受け取りたい場合はサポートに連絡してください。",
    "This rule is an administrator's; contact support if you want this mail.",
)


def _by_reason(outcomes: Iterable[Outcome]) -> list[tuple[str, list[Outcome]]]:
    """Outcomes grouped by reason, groups in order of their newest outcome."""
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.reason, []).append(outcome)
    return list(groups.items())


def _evidence(outcome: Outcome) -> Evidence:
    extra: dict[str, str | int | float] = {}
    if outcome.reason == "spam.junk":
        extra.update(spam_facts(outcome.detail))
    return outcome_evidence(outcome, extra=extra)


def _forward_rule_fact(state: _State, rule_id: int) -> Evidence:
    rule = next((r for r in state.filters.rules if r.id == rule_id), None)
    facts: dict[str, Fact] = {"id": rule_id, "scope": str(Scope.ACCOUNT)}
    if rule is not None:
        facts["pattern"] = rule.pattern
    return Evidence("rule", facts)


def _reject_rule(latest: Outcome, evidence: tuple[Evidence, ...], likelihood: int) -> Finding:
    match = _RULE.search(latest.detail)
    facts: tuple[Evidence, ...] = ()
    advice = None
    if match:
        own = match.group("scope") == "account"
        facts = (
            Evidence(
                "rule",
                {
                    "id": int(match.group("id")),
                    "scope": match.group("scope"),
                    "pattern": match.group("pattern") if own else "(admin)",
                    "matched": match.group("field"),
                },
            ),
        )
        advice = None if own else _ADMIN_RULE
    return Finding(
        "rule.reject",
        likelihood,
        facts + evidence,
        links.REJECT_SETTINGS,
        advice=advice,
    )


def _no_attempt(state: _State, query: DoctorQuery) -> Finding:
    sender = query.sender.strip() or f"「{query.subject.strip()}」"
    evidence = [
        Evidence(
            "searched",
            {
                "sender": query.sender.strip(),
                "subject": query.subject.strip(),
                "since": iso(query.start),
                "until": iso(query.now),
                "address": state.account.address,
            },
        )
    ]
    tried = sorted({o.recipient.lower() for o in state.unknown_tries})
    note = None
    if tried:
        evidence += [
            Evidence("unknown_address_tried", {"recipient": r, "sender": query.sender.strip()})
            for r in tried[:SHOWN_MESSAGES]
        ]
        listed = ", ".join(tried[:SHOWN_MESSAGES])
        note = Text(
            f"ただし、この送信者は存在しないアドレス({listed})宛てに送っていました。",
            f"That sender did try addresses that do not exist here: {listed}.",
        )
    return Finding(
        "no_attempt",
        90 if tried else 75,
        tuple(evidence),
        links.DOCTOR,
        {"sender": sender},
        note=note,
    )


def _counted(group: list[Outcome], code: str, likelihood: int, link: str) -> list[Finding]:
    if not group:
        return []
    facts = Evidence("count", {"reason": code, "count": len(group), "last": iso(group[0].time)})
    evidence = (facts, *(outcome_evidence(o) for o in group[:SHOWN_MESSAGES]))
    return [Finding(code, likelihood, evidence, link, values_for(group[0]), problem=Problem.SEND)]


def _message_evidence(message: StoredMessage, **extra: str | int) -> Evidence:
    summary = message.summary
    facts: dict[str, str | int | float] = {
        "mailbox": SpecialUse.INBOX.value,
        "uid": message.uid,
        "id": message.id,
        "size": message.size,
        "from": summary.from_,
        "subject": summary.subject,
        "date": summary.date,
        "message_id": summary.message_id,
        "received": iso(message.internal_date),
    }
    facts.update(extra)
    return Evidence("message", facts)
