"""Per-recipient steps: members' reject lists and the spam block, with the member's own
settings (fake rules store, in-memory token store)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tayori.core.reply import SmtpReply
from tayori.pipeline.member_rules import MemberRules, from_addresses
from tayori.pipeline.runner import Decision
from tayori.pipeline.spam_block import SpamBlock
from tayori.pipeline.steps import Client
from tayori.pipeline.verdicts import Action, Verdict
from tayori.rules.model import AccountFilters, Sensitivity, SpamSettings
from tayori.spam.engine import Sensitivity as SpamSensitivity
from tayori.spam.engine import SpamEngine
from tayori.spam.store import MemoryTokenStore
from tayori.storage.records import Account, AccountStatus

SPAM = b"From: x@spam.test\r\nSubject: cheap pills\r\n\r\nbuy cheap pills now viagra casino\r\n"
HAM = b"From: boss@work.test\r\nSubject: agenda\r\n\r\nmeeting agenda for tomorrow morning\r\n"


@dataclass
class FakeRules:
    spam: SpamSettings = field(default_factory=SpamSettings)
    filters: AccountFilters = field(default_factory=AccountFilters)

    def filters_for(self, account_id: int) -> AccountFilters:
        return self.filters

    def get_spam_settings(self, account_id: int) -> SpamSettings:
        return self.spam


def account() -> Account:
    return Account(
        id=7,
        address="alice@example.test",
        domain_id=1,
        password_hash="",
        quota_bytes=0,
        used_bytes=0,
        status=AccountStatus.ACTIVE,
        created=datetime(2026, 1, 1, tzinfo=UTC),
    )


def engine() -> SpamEngine:
    store = MemoryTokenStore()
    trained = SpamEngine(
        store,
        thresholds={
            SpamSensitivity.LOW: 0.99,
            SpamSensitivity.STANDARD: 0.9,
            SpamSensitivity.HIGH: 0.6,
        },
    )
    for index in range(30):
        trained.learn(SPAM.replace(b"now", f"now {index}".encode()), is_spam=True)
        trained.learn(HAM.replace(b"morning", f"morning {index}".encode()), is_spam=False)
    return trained


def decide(block: SpamBlock, message: bytes, so_far: Decision | None = None) -> Decision:
    client = Client("192.0.2.1")
    return asyncio.run(block.decide(account(), message, client, so_far or Decision()))


def test_spam_goes_to_junk_with_reason_and_score() -> None:
    decision = decide(SpamBlock(engine(), FakeRules()), SPAM)  # type: ignore[arg-type]
    assert decision.action is Action.JUNK
    assert decision.reasons == ("spam.junk",)
    assert decision.score > 5
    assert decision.decisive is not None
    assert "score=" in decision.decisive.detail


def test_ham_is_left_alone() -> None:
    assert decide(SpamBlock(engine(), FakeRules()), HAM).verdicts == ()  # type: ignore[arg-type]


def test_member_switched_off_or_safe_sender() -> None:
    off = FakeRules(spam=SpamSettings(enabled=False, sensitivity=Sensitivity.HIGH))
    assert decide(SpamBlock(engine(), off), SPAM).verdicts == ()  # type: ignore[arg-type]
    safe = Decision((Verdict(Action.ACCEPT, "safe_sender", SmtpReply(250, "2.0.0", "Ok")),))
    assert decide(SpamBlock(engine(), FakeRules()), SPAM, safe).verdicts == ()  # type: ignore[arg-type]


def test_from_addresses() -> None:
    message = b"From: A <a@x.test>, b@y.test\r\nTo: c@z.test\r\n\r\nbody\r\n"
    assert from_addresses(message) == ["a@x.test", "b@y.test"]


def test_member_rules_without_rules_decide_nothing() -> None:
    rules = MemberRules(FakeRules())  # type: ignore[arg-type]
    assert asyncio.run(rules.at_rcpt(account(), "s@remote.test")) is None
    decision = asyncio.run(rules.decide(account(), HAM, Client("192.0.2.1"), Decision()))
    assert decision.verdicts == ()
