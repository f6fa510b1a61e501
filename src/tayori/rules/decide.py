"""Pure decisions over a recipient's rules: reject / Junk / safe sender, and where to forward.

No I/O, so the pipeline calls these at RCPT time (envelope sender only) and again at DATA
time (From: addresses known), and tests need no database.

Precedence, most severe first, so that the result never depends on the order rules were
added: a reject rule beats a Junk rule, which beats a safe sender (safe senders only switch
the spam block off; a member who also rejects the address meant it). Among rules of the same
action, global rules come before domain rules before the member's own, then the oldest rule
(lowest id): the admin's rule is the one named in the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tayori.rules.model import (
    ForwardSettings,
    Rule,
    RuleAction,
    RuleField,
    RuleList,
    Scope,
    SpamSettings,
)
from tayori.rules.patterns import Pattern, parse_pattern

RULE_REJECT = "rule.reject"
RULE_JUNK = "rule.junk"
SAFE_SENDER = "safe_sender"

_SEVERITY = {RuleAction.REJECT: 0, RuleAction.JUNK: 1, RuleAction.ALLOW: 2}
_SCOPE_ORDER = {Scope.GLOBAL: 0, Scope.DOMAIN: 1, Scope.ACCOUNT: 2}
_REASONS = {
    RuleAction.REJECT: RULE_REJECT,
    RuleAction.JUNK: RULE_JUNK,
    RuleAction.ALLOW: SAFE_SENDER,
}


@dataclass(frozen=True, slots=True)
class RuleDecision:
    """Which rule decided, for the verdict and the outcome's private detail."""

    reason: str
    """`rule.reject`, `rule.junk` or `safe_sender`."""
    rule_id: int
    scope: Scope
    pattern: str
    matched: str
    """The sender address that matched (envelope sender or a From: address)."""
    field: RuleField
    """Which of the two it was: ENVELOPE or FROM."""

    @property
    def detail(self) -> str:
        where = "envelope sender" if self.field is RuleField.ENVELOPE else "From:"
        return f"{self.scope.value} rule {self.rule_id} ({self.pattern}) matched {where}"


def decide_sender(
    rules: Iterable[Rule],
    envelope_sender: str,
    from_addresses: Sequence[str] = (),
) -> RuleDecision | None:
    """The decision of the reject list and safe senders, or None when no rule matches.

    Pass the rules of the recipient's account, its domain and the global list (forwarding
    reject rules are ignored here). At RCPT time pass no From: addresses: rules on From:
    alone then wait for DATA.
    """
    best: tuple[tuple[int, int, int], RuleDecision] | None = None
    for rule in rules:
        if rule.list is RuleList.FORWARD or rule.action not in _SEVERITY:
            continue
        hit = _match(rule, envelope_sender, from_addresses)
        if hit is None:
            continue
        key = (_SEVERITY[rule.action], _SCOPE_ORDER[rule.owner.scope], rule.id)
        if best is None or key < best[0]:
            matched, field = hit
            decision = RuleDecision(
                _REASONS[rule.action], rule.id, rule.owner.scope, rule.pattern, matched, field
            )
            best = (key, decision)
    return None if best is None else best[1]


def spam_check_applies(spam: SpamSettings, decision: RuleDecision | None) -> bool:
    """Whether the spam block runs for this recipient: on, and the sender is not safe."""
    if decision is not None and decision.reason == SAFE_SENDER:
        return False
    return spam.enabled


@dataclass(frozen=True, slots=True)
class ForwardPlan:
    targets: tuple[str, ...]
    """Addresses to send a copy to; empty when nothing is forwarded."""
    keep_copy: bool
    """Deliver to the mailbox here as well. True whenever nothing is forwarded, so that no
    setting can make a message vanish."""
    skipped: str | None = None
    """Why forwarding did not happen although targets are set: `loop` (record the outcome
    `forward.loop`), `spam`, or the forwarding reject rule as `rule:ID`; None when forwarded
    or nothing is configured."""


def plan_forwarding(
    settings: ForwardSettings,
    *,
    is_spam: bool,
    envelope_sender: str = "",
    from_addresses: Sequence[str] = (),
    rules: Iterable[Rule] = (),
    loop: bool = False,
) -> ForwardPlan:
    """Where a message delivered to this account is forwarded.

    `is_spam` is the spam block's judgement (or a `rule.junk` decision); `rules` may be all
    of the account's rules, only the forwarding reject list is used; `loop` is what
    `srs.forwarding_loop` found in the message's headers.
    """
    if not settings.targets:
        return ForwardPlan((), keep_copy=True)
    if loop:
        return ForwardPlan((), keep_copy=True, skipped="loop")
    if is_spam and settings.skip_spam:
        return ForwardPlan((), keep_copy=True, skipped="spam")
    for rule in sorted(rules, key=lambda each: each.id):
        if rule.list is RuleList.FORWARD and _match(rule, envelope_sender, from_addresses):
            return ForwardPlan((), keep_copy=True, skipped=f"rule:{rule.id}")
    return ForwardPlan(settings.targets, keep_copy=settings.keep_copy)


def _match(
    rule: Rule, envelope_sender: str, from_addresses: Sequence[str]
) -> tuple[str, RuleField] | None:
    pattern = _parsed(rule.pattern)
    if rule.field is not RuleField.FROM and envelope_sender and pattern.matches(envelope_sender):
        return envelope_sender, RuleField.ENVELOPE
    if rule.field is not RuleField.ENVELOPE:
        for address in from_addresses:
            if pattern.matches(address):
                return address, RuleField.FROM
    return None


_CACHE: dict[str, Pattern] = {}
_CACHE_LIMIT = 10_000


def _parsed(text: str) -> Pattern:
    # Stored patterns are canonical and valid, and the same few are read for every
    # message, so parsed forms are kept (bounded: cleared when full, never wrong).
    pattern = _CACHE.get(text)
    if pattern is None:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        pattern = _CACHE[text] = parse_pattern(text)
    return pattern
