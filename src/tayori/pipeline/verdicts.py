"""Verdicts: what a step decided, why (reason code), and what the client is told."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tayori.core.reasons import reason
from tayori.core.reply import SmtpReply


class Action(StrEnum):
    """Severity order matters: the runner keeps the most severe verdict per recipient."""

    ACCEPT = "accept"
    JUNK = "junk"
    TEMPFAIL = "tempfail"
    REJECT = "reject"

    @property
    def severity(self) -> int:
        return list(Action).index(self)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: str
    reply: SmtpReply
    detail: str = ""
    score: float = 0.0
    """Contribution to the message's spam score (X-Spam-Score), whatever the action."""

    @classmethod
    def reject(cls, code: str, detail: str = "", **values: str) -> Verdict:
        return cls(Action.REJECT, code, reason(code).reply_for(**values), detail)

    @classmethod
    def tempfail(cls, code: str, detail: str = "", **values: str) -> Verdict:
        return cls(Action.TEMPFAIL, code, reason(code).reply_for(**values), detail)
