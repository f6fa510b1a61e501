"""Steps: small named checks run at the SMTP stage where they can first decide.

A step reports a `Failure` (what is wrong, the reason code, the reply it would give); what
that failure does is the admin's choice per step (`FailAction`), applied by `apply`. This
split keeps the checks free of policy: the same DNSBL check rejects on one service and only
adds to the spam score on another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from tayori.config.settings import CheckAction
from tayori.core.reply import SmtpReply
from tayori.mailauth.spf import SpfOutcome
from tayori.pipeline.verdicts import Action, Verdict


class Stage(StrEnum):
    """Where in the SMTP dialogue a step has what it needs to decide."""

    CONNECT = "connect"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


FailAction = CheckAction
"""What a step's failure does: refuse, ask to retry, file in Junk, only add to the score, or
nothing at all (still recorded in the Authentication-Results and the log). Declared with
the settings, which name it per check."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A check found something wrong. `temporary`: DNS could not tell; a reject becomes a
    temporary failure then, never a permanent refusal."""

    reason: str
    reply: SmtpReply
    detail: str = ""
    temporary: bool = False
    mild: bool = False
    """Weak evidence by the check's own standard (SPF `softfail`: the domain itself is not
    sure): never more than a score, at half the step's weight, whatever the action."""


@dataclass(frozen=True, slots=True)
class StepPolicy:
    action: FailAction
    score: float = 0.0


def temporary_reply(reply: SmtpReply) -> SmtpReply:
    """The 4xx form of a refusal: same enhanced subject and detail, class 4."""
    if reply.is_temporary:
        return reply
    enhanced = "4" + reply.enhanced[1:] if reply.enhanced.startswith("5") else reply.enhanced
    return SmtpReply(450 if reply.code == 550 else 451, enhanced, reply.text)


def permanent_reply(reply: SmtpReply) -> SmtpReply:
    """The 5xx form of a reply the catalogue words as temporary (FCrDNS's `450 4.7.25`, the
    usual strict-mode answer): an admin who chose `reject` means a permanent refusal."""
    if not reply.is_temporary:
        return reply
    enhanced = "5" + reply.enhanced[1:] if reply.enhanced.startswith("4") else reply.enhanced
    return SmtpReply(550 if reply.code == 450 else 554, enhanced, reply.text)


def apply(policy: StepPolicy, failure: Failure | None) -> Verdict | None:
    """The verdict a failure gets under the admin's policy; None when there is nothing to do."""
    if failure is None or policy.action is FailAction.IGNORE:
        return None
    if failure.mild:
        score = 0.0 if failure.temporary else policy.score / 2
        return Verdict(Action.ACCEPT, failure.reason, failure.reply, failure.detail, score)
    action = {
        FailAction.REJECT: Action.TEMPFAIL if failure.temporary else Action.REJECT,
        FailAction.TEMPFAIL: Action.TEMPFAIL,
        FailAction.JUNK: Action.JUNK,
        FailAction.SCORE: Action.ACCEPT,
    }[policy.action]
    reply = failure.reply
    if action is Action.TEMPFAIL:
        reply = temporary_reply(reply)
    elif action is Action.REJECT:
        reply = permanent_reply(reply)
    score = 0.0 if failure.temporary else policy.score
    return Verdict(action, failure.reason, reply, failure.detail, score)


@dataclass(slots=True)
class Client:
    """What is known about the connecting host and its transaction so far."""

    ip: str
    helo: str = ""
    sender: str = ""
    """MAIL FROM, empty for the null reverse path."""
    verified_host: str = ""
    """The client's name when forward-confirmed reverse DNS holds, else empty."""
    notes: dict[str, str] = field(default_factory=dict)
    """Results for the Authentication-Results header (`iprev`, …)."""
    spf: SpfOutcome | None = None
    """SPF's result, evaluated at MAIL FROM (so that `reject` can refuse at RCPT) and read
    again at the end of DATA for DMARC and the Authentication-Results header."""
    spf_for: tuple[str, str] = ("", "")
    """The (sender, HELO) `spf` was evaluated for: a later transaction on the same
    connection has another sender, and must not reuse it."""

    def spf_result(self) -> SpfOutcome | None:
        """`spf` when it belongs to the current sender and HELO, else None."""
        return self.spf if self.spf_for == (self.sender, self.helo) else None


class Step(Protocol):
    """One named check. `check` returns the failure, or None when all is well."""

    @property
    def name(self) -> str: ...

    @property
    def stage(self) -> Stage: ...

    async def check(self, client: Client) -> Failure | None: ...
