"""Decisions over a recipient's rules: precedence, RCPT vs DATA time, forwarding plans."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tayori.rules import (
    RULE_JUNK,
    RULE_REJECT,
    SAFE_SENDER,
    ForwardSettings,
    Rule,
    RuleAction,
    RuleField,
    RuleList,
    RuleOwner,
    Scope,
    SpamSettings,
    decide_sender,
    parse_pattern,
    plan_forwarding,
    spam_check_applies,
)

NOW = datetime(2026, 11, 27, tzinfo=UTC)
ALICE = RuleOwner.account(1)


def rule(
    rule_id: int,
    pattern: str,
    action: RuleAction = RuleAction.REJECT,
    *,
    owner: RuleOwner = ALICE,
    field: RuleField = RuleField.ANY,
) -> Rule:
    lists = {
        RuleAction.REJECT: RuleList.REJECT,
        RuleAction.JUNK: RuleList.REJECT,
        RuleAction.ALLOW: RuleList.SAFE,
        RuleAction.SKIP_FORWARD: RuleList.FORWARD,
    }
    return Rule(rule_id, owner, lists[action], parse_pattern(pattern).text, action, field, NOW)


def test_no_rules_no_decision() -> None:
    assert decide_sender([], "a@example.com", ["b@example.com"]) is None
    assert decide_sender([rule(1, "other.test")], "a@example.com") is None


def test_reject_rule_names_itself() -> None:
    decision = decide_sender([rule(7, "spam.test")], "x@spam.test")
    assert decision is not None
    assert (decision.reason, decision.rule_id, decision.scope) == (RULE_REJECT, 7, Scope.ACCOUNT)
    assert decision.field is RuleField.ENVELOPE
    assert decision.matched == "x@spam.test"
    assert "rule 7 (@spam.test) matched envelope sender" in decision.detail


def test_from_address_matches_at_data_time_only() -> None:
    rules = [rule(3, "*@*.shop.test", RuleAction.JUNK)]
    assert decide_sender(rules, "bounce@esp.test") is None  # RCPT time: From: not known yet
    decision = decide_sender(rules, "bounce@esp.test", ["Sale <sale@mail.shop.test>"])
    assert decision is not None
    assert (decision.reason, decision.field) == (RULE_JUNK, RuleField.FROM)


def test_field_restrictions() -> None:
    envelope_only = [rule(1, "x.test", field=RuleField.ENVELOPE)]
    from_only = [rule(2, "x.test", field=RuleField.FROM)]
    assert decide_sender(envelope_only, "a@y.test", ["a@x.test"]) is None
    assert decide_sender(from_only, "a@x.test", ["a@y.test"]) is None
    assert decide_sender(from_only, "a@y.test", ["a@x.test"]) is not None


def test_most_severe_wins_whatever_the_order() -> None:
    rules = [
        rule(1, "x.test", RuleAction.ALLOW),
        rule(2, "*@x.test", RuleAction.JUNK),
        rule(3, "boss@x.test", RuleAction.REJECT),
    ]
    for ordering in (rules, list(reversed(rules))):
        decision = decide_sender(ordering, "boss@x.test")
        assert decision is not None and decision.rule_id == 3
    junk = decide_sender(rules, "other@x.test")
    assert junk is not None and junk.reason == RULE_JUNK


def test_safe_sender_turns_the_spam_block_off_for_that_message() -> None:
    decision = decide_sender([rule(4, "friend@x.test", RuleAction.ALLOW)], "", ["friend@x.test"])
    assert decision is not None and decision.reason == SAFE_SENDER
    assert not spam_check_applies(SpamSettings(), decision)
    assert spam_check_applies(SpamSettings(), None)
    assert not spam_check_applies(SpamSettings(enabled=False), None)


def test_admin_rules_are_named_before_the_members() -> None:
    rules = [
        rule(1, "x.test", owner=ALICE),
        rule(2, "x.test", owner=RuleOwner.domain(9)),
        rule(3, "x.test", owner=RuleOwner.everyone()),
    ]
    decision = decide_sender(rules, "a@x.test")
    assert decision is not None and (decision.rule_id, decision.scope) == (3, Scope.GLOBAL)


def test_forwarding_reject_rules_are_not_reject_rules() -> None:
    assert decide_sender([rule(1, "x.test", RuleAction.SKIP_FORWARD)], "a@x.test") is None


# --- forwarding ---------------------------------------------------------------------------

TARGETS = ("me@elsewhere.test", "phone@carrier.test")


def test_nothing_configured_keeps_the_mail_here() -> None:
    plan = plan_forwarding(ForwardSettings(), is_spam=False)
    assert (plan.targets, plan.keep_copy, plan.skipped) == ((), True, None)


@pytest.mark.parametrize("keep", [True, False])
def test_forwarded_with_or_without_a_copy(keep: bool) -> None:
    plan = plan_forwarding(ForwardSettings(TARGETS, keep_copy=keep), is_spam=False)
    assert plan.targets == TARGETS
    assert plan.keep_copy is keep


def test_a_loop_stops_forwarding_and_keeps_the_mail() -> None:
    plan = plan_forwarding(ForwardSettings(TARGETS, keep_copy=False), is_spam=False, loop=True)
    assert (plan.targets, plan.keep_copy, plan.skipped) == ((), True, "loop")


def test_spam_is_not_forwarded_by_default_and_is_kept() -> None:
    settings = ForwardSettings(TARGETS, keep_copy=False)
    plan = plan_forwarding(settings, is_spam=True)
    assert (plan.targets, plan.keep_copy, plan.skipped) == ((), True, "spam")
    wanted = ForwardSettings(TARGETS, keep_copy=False, skip_spam=False)
    assert plan_forwarding(wanted, is_spam=True).targets == TARGETS


def test_forwarding_reject_list_keeps_the_mail_here() -> None:
    settings = ForwardSettings(TARGETS, keep_copy=False)
    rules = [
        rule(1, "bank.test", RuleAction.REJECT),
        rule(5, ".bank.test", RuleAction.SKIP_FORWARD),
    ]
    plan = plan_forwarding(settings, is_spam=False, envelope_sender="x@mail.bank.test", rules=rules)
    assert (plan.targets, plan.keep_copy, plan.skipped) == ((), True, "rule:5")
    by_from = plan_forwarding(
        settings,
        is_spam=False,
        envelope_sender="a@esp.test",
        from_addresses=["b@bank.test"],
        rules=rules,
    )
    assert by_from.skipped == "rule:5"
    other = plan_forwarding(settings, is_spam=False, envelope_sender="a@x.test", rules=rules)
    assert other.targets == TARGETS


def test_public_names_are_pinned() -> None:
    import tayori.rules

    assert sorted(tayori.rules.__all__) == sorted(
        [
            "FORWARD_FAILURES_FLAGGED",
            "RULE_JUNK",
            "RULE_REJECT",
            "SAFE_SENDER",
            "AccountFilters",
            "ForwardPlan",
            "ForwardSettings",
            "NewRule",
            "Pattern",
            "PatternError",
            "PatternKind",
            "Rule",
            "RuleAction",
            "RuleDecision",
            "RuleField",
            "RuleLimits",
            "RuleList",
            "RuleOwner",
            "Scope",
            "Sensitivity",
            "SpamSettings",
            "Srs",
            "SrsError",
            "decide_sender",
            "forwarding_loop",
            "load_or_create_key",
            "parse_pattern",
            "plan_forwarding",
            "spam_check_applies",
        ]
    )
    for name in tayori.rules.__all__:
        assert hasattr(tayori.rules, name)
