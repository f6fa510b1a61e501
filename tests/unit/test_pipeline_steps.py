"""Steps under each failure action, and the runner's merge (most severe wins, every reason
kept, scores added)."""

from __future__ import annotations

import asyncio

import pytest

from tayori.core.reply import SmtpReply
from tayori.pipeline.runner import Decision, merge, run_steps
from tayori.pipeline.steps import Client, FailAction, Failure, Stage, StepPolicy, apply
from tayori.pipeline.verdicts import Action, Verdict

REPLY = SmtpReply(554, "5.7.1", "Service unavailable")
FAILURE = Failure("dnsbl.listed", REPLY, "listed")


@pytest.mark.parametrize(
    ("action", "expected", "code"),
    [
        (FailAction.REJECT, Action.REJECT, 554),
        (FailAction.TEMPFAIL, Action.TEMPFAIL, 451),
        (FailAction.JUNK, Action.JUNK, 554),
        (FailAction.SCORE, Action.ACCEPT, 554),
    ],
)
def test_each_failure_action(action: FailAction, expected: Action, code: int) -> None:
    verdict = apply(StepPolicy(action, 2.5), FAILURE)
    assert verdict is not None
    assert (verdict.action, verdict.reply.code, verdict.reason) == (expected, code, "dnsbl.listed")
    assert verdict.score == 2.5


def test_ignore_and_success_give_no_verdict() -> None:
    assert apply(StepPolicy(FailAction.IGNORE, 9), FAILURE) is None
    assert apply(StepPolicy(FailAction.REJECT, 9), None) is None


def test_a_temporary_failure_never_rejects_permanently() -> None:
    failure = Failure("sender.domain_unknown", SmtpReply(450, "4.1.8", "x"), temporary=True)
    verdict = apply(StepPolicy(FailAction.REJECT, 3), failure)
    assert verdict is not None
    assert verdict.action is Action.TEMPFAIL
    assert str(verdict.reply) == "450 4.1.8 x"
    assert verdict.score == 0  # DNS trouble says nothing about the sender


def test_tempfail_turns_a_5xx_into_its_4xx_form() -> None:
    verdict = apply(StepPolicy(FailAction.TEMPFAIL), Failure("x", SmtpReply(550, "5.1.8", "t")))
    assert verdict is not None
    assert str(verdict.reply) == "450 4.1.8 t"


def test_reject_turns_a_4xx_worded_reply_into_its_5xx_form() -> None:
    """FCrDNS's catalogue reply is the strict-mode `450 4.7.25`: `reject` means 5xx."""
    failure = Failure("fcrdns.failed", SmtpReply(450, "4.7.25", "no PTR"))
    rejected = apply(StepPolicy(FailAction.REJECT), failure)
    assert rejected is not None
    assert (rejected.action, str(rejected.reply)) == (Action.REJECT, "550 5.7.25 no PTR")
    tempfailed = apply(StepPolicy(FailAction.TEMPFAIL), failure)
    assert tempfailed is not None
    assert str(tempfailed.reply) == "450 4.7.25 no PTR"


@pytest.mark.parametrize("action", [FailAction.REJECT, FailAction.JUNK, FailAction.SCORE])
def test_a_mild_failure_is_only_ever_half_a_score(action: FailAction) -> None:
    failure = Failure("auth.spf.fail", SmtpReply(550, "5.7.23", "x"), "softfail", mild=True)
    verdict = apply(StepPolicy(action, 2.0), failure)
    assert verdict is not None
    assert (verdict.action, verdict.score, verdict.reason) == (Action.ACCEPT, 1.0, "auth.spf.fail")
    assert apply(StepPolicy(FailAction.IGNORE, 2.0), failure) is None


def _verdict(action: Action, code: str, score: float = 0.0) -> Verdict:
    return Verdict(action, code, REPLY, f"{code} detail", score)


def test_most_severe_wins_and_every_reason_is_kept() -> None:
    decision = Decision(
        (
            _verdict(Action.ACCEPT, "fcrdns.failed", 1.0),
            _verdict(Action.JUNK, "auth.dmarc.fail", 3.0),
            _verdict(Action.REJECT, "dnsbl.listed", 5.0),
            _verdict(Action.TEMPFAIL, "sender.domain_unknown"),
        )
    )
    assert decision.action is Action.REJECT
    assert decision.decisive is not None
    assert decision.decisive.reason == "dnsbl.listed"
    assert decision.reasons == (
        "fcrdns.failed",
        "auth.dmarc.fail",
        "dnsbl.listed",
        "sender.domain_unknown",
    )
    assert decision.score == 9.0
    assert "auth.dmarc.fail: auth.dmarc.fail detail" in decision.detail()


def test_the_first_of_equally_severe_verdicts_decides() -> None:
    first = Decision((_verdict(Action.REJECT, "dnsbl.listed"),))
    second = Decision((_verdict(Action.REJECT, "helo.invalid"),))
    merged = merge(first, second)
    assert merged.decisive is not None
    assert merged.decisive.reason == "dnsbl.listed"


def test_nothing_found_accepts() -> None:
    assert Decision().action is Action.ACCEPT
    assert Decision().decisive is None


class _Fails:
    name = "always"
    stage = Stage.CONNECT

    def __init__(self, code: str) -> None:
        self.code = code
        self.ran = False

    async def check(self, client: Client) -> Failure | None:
        self.ran = True
        return Failure(self.code, REPLY)


def test_every_step_runs_even_after_a_refusal() -> None:
    first, second = _Fails("dnsbl.listed"), _Fails("fcrdns.failed")
    steps = [(first, StepPolicy(FailAction.REJECT)), (second, StepPolicy(FailAction.SCORE, 1))]
    decision = asyncio.run(run_steps(steps, Client("192.0.2.1")))
    assert first.ran and second.ran
    assert decision.reasons == ("dnsbl.listed", "fcrdns.failed")
    assert decision.action is Action.REJECT
