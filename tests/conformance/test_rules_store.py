"""`RulesStore` on SQLite and PostgreSQL: rules of every owner, limits, spam settings and
forwarding, with the same answers on both."""

from __future__ import annotations

import threading

import pytest

from tayori.core.address import AddressError
from tayori.core.errors import ConflictError, NotFoundError
from tayori.rules import (
    FORWARD_FAILURES_FLAGGED,
    AccountFilters,
    ForwardSettings,
    NewRule,
    PatternError,
    RuleAction,
    RuleField,
    RuleLimits,
    RuleList,
    RuleOwner,
    Scope,
    Sensitivity,
    SpamSettings,
    decide_sender,
)
from tayori.storage.factory import Stores
from tayori.storage.records import Account
from tayori.storage.sql_rules import SqlRulesStore
from tests.conformance.conftest import FakeClock


@pytest.fixture
def alice(stores: Stores) -> Account:
    stores.metadata.add_domain("example.test")
    return stores.metadata.add_account("alice@example.test", "hash", 0)


def test_add_list_remove(stores: Stores, alice: Account, clock: FakeClock) -> None:
    owner = RuleOwner.account(alice.id)
    rule = stores.rules.add_rule(owner, NewRule(RuleList.REJECT, "Spam@Example.COM"))
    assert rule.pattern == "spam@example.com"
    assert rule.action is RuleAction.REJECT  # the reject list's default
    assert rule.field is RuleField.ANY
    assert rule.owner == owner
    assert rule.created == clock.now
    junk = stores.rules.add_rule(
        owner, NewRule(RuleList.REJECT, ".ads.test", RuleAction.JUNK, RuleField.FROM)
    )
    safe = stores.rules.add_rule(owner, NewRule(RuleList.SAFE, "friend@x.test"))
    assert safe.action is RuleAction.ALLOW
    assert stores.rules.list_rules(owner) == [rule, junk, safe]
    assert stores.rules.list_rules(owner, RuleList.SAFE) == [safe]
    assert stores.rules.remove_rule(owner, junk.id) == junk
    assert stores.rules.list_rules(owner) == [rule, safe]
    with pytest.raises(NotFoundError, match=f"no rule {junk.id}"):
        stores.rules.remove_rule(owner, junk.id)


def test_rules_of_one_owner_cannot_be_removed_through_another(
    stores: Stores, alice: Account
) -> None:
    bob = stores.metadata.add_account("bob@example.test", "hash", 0)
    rule = stores.rules.add_rule(RuleOwner.account(alice.id), NewRule(RuleList.REJECT, "x.test"))
    with pytest.raises(NotFoundError):
        stores.rules.remove_rule(RuleOwner.account(bob.id), rule.id)
    with pytest.raises(NotFoundError):
        stores.rules.remove_rule(RuleOwner.everyone(), rule.id)


def test_invalid_and_duplicate_rules_are_refused(stores: Stores, alice: Account) -> None:
    owner = RuleOwner.account(alice.id)
    with pytest.raises(PatternError, match="every sender"):
        stores.rules.add_rule(owner, NewRule(RuleList.REJECT, "*@*"))
    with pytest.raises(PatternError, match="not possible on the safe senders"):
        stores.rules.add_rule(owner, NewRule(RuleList.SAFE, "x.test", RuleAction.REJECT))
    stores.rules.add_rule(owner, NewRule(RuleList.REJECT, "x.test"))
    with pytest.raises(ConflictError, match=r"@x\.test is already on the reject list"):
        stores.rules.add_rule(owner, NewRule(RuleList.REJECT, "@X.TEST", RuleAction.JUNK))
    # The same pattern on another list, or on another field, is a different rule.
    stores.rules.add_rule(owner, NewRule(RuleList.FORWARD, "x.test"))
    stores.rules.add_rule(owner, NewRule(RuleList.REJECT, "x.test", field=RuleField.FROM))
    assert len(stores.rules.list_rules(owner)) == 3


def test_unknown_owner(stores: Stores) -> None:
    with pytest.raises(NotFoundError, match="no account"):
        stores.rules.add_rule(RuleOwner.account(999), NewRule(RuleList.REJECT, "x.test"))
    with pytest.raises(NotFoundError, match="no domain"):
        stores.rules.add_rule(RuleOwner.domain(999), NewRule(RuleList.REJECT, "x.test"))


def test_admin_lists_hold_reject_rules_only(stores: Stores, alice: Account) -> None:
    with pytest.raises(PatternError, match="reject lists only"):
        stores.rules.add_rule(RuleOwner.everyone(), NewRule(RuleList.SAFE, "x.test"))
    rule = stores.rules.add_rule(RuleOwner.everyone(), NewRule(RuleList.REJECT, "x.test"))
    assert rule.owner.scope is Scope.GLOBAL


def test_limits(stores: Stores, alice: Account, clock: FakeClock) -> None:
    engine = stores.metadata._engine  # type: ignore[attr-defined]
    store = SqlRulesStore(engine, clock=clock, limits=RuleLimits(2, 3, 1))
    owner = RuleOwner.account(alice.id)
    store.add_rule(owner, NewRule(RuleList.REJECT, "a.test"))
    store.add_rule(owner, NewRule(RuleList.REJECT, "b.test"))
    with pytest.raises(ConflictError, match="already has 2 entries"):
        store.add_rule(owner, NewRule(RuleList.REJECT, "c.test"))
    store.add_rule(owner, NewRule(RuleList.SAFE, "c.test"))  # each list has its own limit
    for name in ("a", "b", "c"):
        store.add_rule(RuleOwner.everyone(), NewRule(RuleList.REJECT, f"{name}.test"))
    with pytest.raises(ConflictError, match="already has 3 entries"):
        store.add_rule(RuleOwner.everyone(), NewRule(RuleList.REJECT, "d.test"))
    store.add_forward_target(alice.id, "me@elsewhere.test")
    with pytest.raises(ConflictError, match="1 addresses, the most allowed"):
        store.add_forward_target(alice.id, "two@elsewhere.test")


def test_filters_for_collects_account_domain_and_global(stores: Stores, alice: Account) -> None:
    other_domain = stores.metadata.add_domain("other.test")
    bob = stores.metadata.add_account("bob@other.test", "hash", 0)
    mine = stores.rules.add_rule(
        RuleOwner.account(alice.id), NewRule(RuleList.SAFE, "boss@corp.test")
    )
    domain_rule = stores.rules.add_rule(
        RuleOwner.domain(alice.domain_id), NewRule(RuleList.REJECT, ".corp.test")
    )
    everyone = stores.rules.add_rule(
        RuleOwner.everyone(), NewRule(RuleList.REJECT, "*@spam.test", RuleAction.JUNK)
    )
    stores.rules.add_rule(RuleOwner.domain(other_domain.id), NewRule(RuleList.REJECT, "z.test"))
    stores.rules.add_rule(RuleOwner.account(bob.id), NewRule(RuleList.REJECT, "y.test"))
    filters = stores.rules.filters_for(alice.id)
    assert filters.rules == (mine, domain_rule, everyone)
    assert filters.spam == SpamSettings()
    assert filters.forwarding == ForwardSettings()
    # The domain's rule beats the member's safe sender: reject is the more severe.
    decision = decide_sender(filters.rules, "boss@corp.test")
    assert decision is not None and decision.rule_id == domain_rule.id
    assert stores.rules.filters_for(12345) == AccountFilters(
        rules=(everyone,)
    )  # unknown account: only the global rules apply


def test_spam_settings_default_then_change(stores: Stores, alice: Account) -> None:
    assert stores.rules.get_spam_settings(alice.id) == SpamSettings(True, Sensitivity.STANDARD)
    changed = stores.rules.set_spam_settings(alice.id, sensitivity=Sensitivity.HIGH)
    assert changed == SpamSettings(True, Sensitivity.HIGH)
    assert stores.rules.set_spam_settings(alice.id, enabled=False) == SpamSettings(
        False, Sensitivity.HIGH
    )
    assert stores.rules.set_spam_settings(alice.id) == SpamSettings(False, Sensitivity.HIGH)
    assert stores.rules.get_spam_settings(alice.id) == SpamSettings(False, Sensitivity.HIGH)
    # Forwarding options live in the same row and were left at their defaults.
    assert stores.rules.get_forwarding(alice.id) == ForwardSettings()
    with pytest.raises(NotFoundError):
        stores.rules.set_spam_settings(999, enabled=True)


def test_forwarding(stores: Stores, alice: Account) -> None:
    settings = stores.rules.add_forward_target(alice.id, "Me@Elsewhere.TEST")
    assert settings == ForwardSettings(("me@elsewhere.test",))
    stores.rules.add_forward_target(alice.id, "phone@carrier.test")
    with pytest.raises(ConflictError, match=r"already forwards to me@elsewhere\.test"):
        stores.rules.add_forward_target(alice.id, "me@elsewhere.test")
    with pytest.raises(ConflictError, match="cannot forward to itself"):
        stores.rules.add_forward_target(alice.id, "ALICE@example.test")
    with pytest.raises(AddressError):
        stores.rules.add_forward_target(alice.id, "not an address")
    options = stores.rules.set_forward_options(alice.id, keep_copy=False, skip_spam=False)
    assert options == ForwardSettings(
        ("me@elsewhere.test", "phone@carrier.test"), keep_copy=False, skip_spam=False
    )
    assert stores.rules.get_spam_settings(alice.id) == SpamSettings()
    removed = stores.rules.remove_forward_target(alice.id, "me@elsewhere.test")
    assert removed.targets == ("phone@carrier.test",)
    with pytest.raises(NotFoundError, match=r"does not forward to me@elsewhere\.test"):
        stores.rules.remove_forward_target(alice.id, "me@elsewhere.test")
    assert stores.rules.filters_for(alice.id).forwarding == removed


def test_removing_the_account_or_domain_removes_its_settings(
    stores: Stores, alice: Account
) -> None:
    stores.rules.add_rule(RuleOwner.account(alice.id), NewRule(RuleList.REJECT, "x.test"))
    stores.rules.add_rule(RuleOwner.domain(alice.domain_id), NewRule(RuleList.REJECT, "x.test"))
    stores.rules.set_spam_settings(alice.id, enabled=False)
    stores.rules.add_forward_target(alice.id, "me@elsewhere.test")
    stores.metadata.remove_account("alice@example.test")
    stores.metadata.remove_domain("example.test")
    assert stores.rules.list_rules(RuleOwner.account(alice.id)) == []
    assert stores.rules.list_rules(RuleOwner.domain(alice.domain_id)) == []
    assert stores.rules.filters_for(alice.id) == AccountFilters()


def test_internationalised_patterns_are_stored_in_one_spelling(
    stores: Stores, alice: Account
) -> None:
    owner = RuleOwner.account(alice.id)
    rule = stores.rules.add_rule(owner, NewRule(RuleList.REJECT, "xn--r8jz45g.jp"))
    assert rule.pattern == "@例え.jp"
    with pytest.raises(ConflictError):
        stores.rules.add_rule(owner, NewRule(RuleList.REJECT, "例え.JP"))
    assert stores.rules.list_rules(owner)[0].pattern == "@例え.jp"


def test_forward_targets_that_keep_bouncing_are_flagged(stores: Stores, alice: Account) -> None:
    stores.rules.add_forward_target(alice.id, "gone@elsewhere.test")
    stores.rules.add_forward_target(alice.id, "ok@elsewhere.test")
    counts = [
        stores.rules.record_forward_result(alice.id, "gone@elsewhere.test", bounced=True)
        for _ in range(FORWARD_FAILURES_FLAGGED - 1)
    ]
    assert counts == list(range(1, FORWARD_FAILURES_FLAGGED))
    assert stores.rules.get_forwarding(alice.id).failing == ()
    stores.rules.record_forward_result(alice.id, "Gone@Elsewhere.test", bounced=True)
    assert stores.rules.get_forwarding(alice.id).failing == ("gone@elsewhere.test",)
    assert stores.rules.filters_for(alice.id).forwarding.failing == ("gone@elsewhere.test",)
    # One delivery that works clears the flag: "in a row" is what counts.
    assert stores.rules.record_forward_result(alice.id, "gone@elsewhere.test", bounced=False) == 0
    assert stores.rules.get_forwarding(alice.id).failing == ()
    assert stores.rules.record_forward_result(alice.id, "removed@x.test", bounced=True) == 0


def test_concurrent_adds_cannot_pass_the_limit_together(
    stores: Stores, alice: Account, clock: FakeClock
) -> None:
    engine = stores.metadata._engine  # type: ignore[attr-defined]
    store = SqlRulesStore(engine, clock=clock, limits=RuleLimits(account_rules=1))
    owner = RuleOwner.account(alice.id)
    start = threading.Barrier(4)
    results: list[str] = []

    def add(name: str) -> None:
        start.wait()
        try:
            store.add_rule(owner, NewRule(RuleList.REJECT, f"{name}.test"))
            results.append("added")
        except ConflictError:
            results.append("refused")

    threads = [threading.Thread(target=add, args=(name,)) for name in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["added", "refused", "refused", "refused"]
    assert len(store.list_rules(owner)) == 1


def test_cached_filters_follow_changes_made_by_another_process(
    stores: Stores, alice: Account, clock: FakeClock
) -> None:
    """`filters_for` caches per account; a change through another store object on the same
    database (another `tayori serve` process, the CLI, the webmail) is seen on the next read."""
    engine = stores.metadata._engine  # type: ignore[attr-defined]
    reader = SqlRulesStore(engine, clock=clock)
    writer = SqlRulesStore(engine, clock=clock)
    assert reader.filters_for(alice.id) == AccountFilters()
    assert reader.filters_for(alice.id) == AccountFilters()  # served from the cache
    rule = writer.add_rule(RuleOwner.account(alice.id), NewRule(RuleList.REJECT, "x@spam.test"))
    assert reader.filters_for(alice.id).rules == (rule,)
    writer.set_spam_settings(alice.id, enabled=False)
    assert reader.filters_for(alice.id).spam.enabled is False
    writer.add_forward_target(alice.id, "me@elsewhere.test")
    assert reader.filters_for(alice.id).forwarding.targets == ("me@elsewhere.test",)
    for _ in range(FORWARD_FAILURES_FLAGGED):
        writer.record_forward_result(alice.id, "me@elsewhere.test", bounced=True)
    assert reader.filters_for(alice.id).forwarding.failing == ("me@elsewhere.test",)
    writer.remove_rule(RuleOwner.account(alice.id), rule.id)
    assert reader.filters_for(alice.id).rules == ()
