"""Findings: what the doctor concluded, why it thinks so, and what the member should do.

A finding names a reason code from the catalogue, so the member reads the same words the
delivery history and the help desk use; the specifics (a size, a blocklist zone, the remote
server's words) are filled into the catalogue text or added as a note. Evidence is a list
of plain facts (an outcome, a message, a rule), never an admin's private detail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tayori.core.outcome import Outcome
from tayori.core.reasons import Text, reason

__all__ = [
    "Evidence",
    "Finding",
    "Problem",
    "fill",
    "iso",
    "outcome_evidence",
    "ranked",
]


class Problem(StrEnum):
    """The help desk's three questions, the doctor's entry points."""

    RECEIVE = "receive"
    """"I can't receive mail": the mail program stalls or gets nothing."""
    MISSING = "missing"
    """"Mail sent to me doesn't arrive": one sender's or subject's mail is missing."""
    SEND = "send"
    """"My mail doesn't get through": the member's own mail fails."""


PROBLEM_TITLES: dict[Problem, Text] = {
    Problem.RECEIVE: Text("メールを受信できない", "I can't receive mail"),
    Problem.MISSING: Text("送ってもらったメールが届かない", "Mail sent to me doesn't arrive"),
    Problem.SEND: Text("送ったメールが相手に届かない", "My mail doesn't get through"),
}

Fact = str | int | float


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact behind a finding: `kind` says what it is (outcome, message, rule, quota, …)."""

    kind: str
    facts: Mapping[str, Fact]

    def to_json(self) -> dict[str, Fact]:
        return {"kind": self.kind, **self.facts}

    def render(self) -> str:
        shown = ", ".join(f"{key}={value}" for key, value in self.facts.items() if value != "")
        return f"{self.kind}: {shown}"


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


def fill(text: str, values: Mapping[str, str]) -> str:
    """A catalogue text with its `{placeholders}` filled; unknown ones show as `?` rather
    than failing (the catalogue may gain placeholders a caller does not know yet)."""
    return text.format_map(_Blank(values))


@dataclass(frozen=True, slots=True)
class Finding:
    reason: str
    """A code from the reason catalogue."""
    likelihood: int
    """0–100: how likely this explains the member's problem; findings are listed by it."""
    evidence: tuple[Evidence, ...] = ()
    link: str = ""
    """A webmail path where the member can act (open the message, edit the rule, …)."""
    values: Mapping[str, str] = field(default_factory=dict)
    """Fills the catalogue text's placeholders ({size}, {zone}, {sender})."""
    note: Text | None = None
    """A specific sentence after the catalogue summary (e.g. the remote's words explained)."""
    advice: Text | None = None
    """A specific sentence after the catalogue action."""
    instead: Text | None = None
    """Replaces the catalogue action where it addresses someone else (a blocklisted
    network is the member's to fix when sending, the sender's when receiving)."""
    problem: Problem = Problem.MISSING

    def summary(self, lang: str) -> str:
        text = fill(reason(self.reason).summary.get(lang), self.values)
        return f"{text} {self.note.get(lang)}" if self.note else text

    def action(self, lang: str) -> str:
        chosen = self.instead or reason(self.reason).action
        text = fill(chosen.get(lang), self.values)
        return f"{text} {self.advice.get(lang)}" if self.advice else text

    def to_json(self, lang: str) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "summary": self.summary(lang),
            "action": self.action(lang),
            "evidence": [item.to_json() for item in self.evidence],
            "link": self.link,
            "likelihood": self.likelihood,
            "problem": str(self.problem),
        }


def ranked(findings: Iterable[Finding]) -> list[Finding]:
    """Most likely first; equal likelihood keeps the order the checks found them in."""
    return sorted(findings, key=lambda finding: -finding.likelihood)


def iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


_SPAM = re.compile(r"score=(?P<score>[0-9.]+)(?:; (?P<reasons>[^;]*?))?(?: mailbox=.*)?(?:;|$)")


def spam_facts(detail: str) -> dict[str, Fact]:
    """The spam score and top reasons from a Junk outcome's detail, which reads
    `queue_id=…; spam.junk: score=0.97; subject:free (0.99), … mailbox=Junk uid=3`."""
    match = _SPAM.search(detail)
    if match is None:
        return {}
    facts: dict[str, Fact] = {"score": round(float(match.group("score")), 4)}
    if match.group("reasons"):
        facts["top_reasons"] = match.group("reasons").strip()
    return facts


def outcome_evidence(outcome: Outcome, *, extra: Mapping[str, Fact] | None = None) -> Evidence:
    """An outcome as a member may see it: who, what, when and why, no private detail."""
    facts: dict[str, Fact] = {
        "time": iso(outcome.time),
        "direction": str(outcome.direction),
        "outcome": str(outcome.outcome),
        "reason": outcome.reason,
        "sender": outcome.sender or "<>",
        "recipient": outcome.recipient,
        "subject": outcome.subject,
        "message_id": outcome.message_id,
    }
    if outcome.size:
        facts["size"] = outcome.size
    facts.update(extra or {})
    return Evidence("outcome", facts)
