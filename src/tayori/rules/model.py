"""Records of members' and admins' filtering settings: rules, spam settings, forwarding.

Plain values, no database types: the store returns them, the decision functions read them,
the CLI and (later) the web pages show them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class RuleList(StrEnum):
    """Which list a rule is on; each list has its own meaning and allowed actions."""

    REJECT = "reject"
    """受信拒否設定: refuse the sender's mail, or keep it in Junk."""
    SAFE = "safe"
    """Safe senders: their mail skips the spam block (never reject rules)."""
    FORWARD = "forward"
    """The forwarding reject list: matching mail is kept here but not forwarded."""


class RuleAction(StrEnum):
    REJECT = "reject"
    """550 5.7.1 at RCPT/DATA: the sender gets an error and knows it did not arrive."""
    JUNK = "junk"
    """Accepted and kept in Junk: the sender is not told, the member can still look."""
    ALLOW = "allow"
    """Safe sender: the spam block is skipped."""
    SKIP_FORWARD = "skip_forward"
    """Forwarding reject list: not forwarded, still delivered here."""


LIST_ACTIONS: dict[RuleList, tuple[RuleAction, ...]] = {
    RuleList.REJECT: (RuleAction.REJECT, RuleAction.JUNK),
    RuleList.SAFE: (RuleAction.ALLOW,),
    RuleList.FORWARD: (RuleAction.SKIP_FORWARD,),
}
"""The actions a rule on each list may have; the first is the default."""


class RuleField(StrEnum):
    """Which sender a rule is compared with."""

    ANY = "any"
    """The envelope sender or any From: address."""
    ENVELOPE = "envelope"
    """MAIL FROM only (known at RCPT time)."""
    FROM = "from"
    """The From: header only (known at DATA time); what members see in their mail program."""


class Scope(StrEnum):
    ACCOUNT = "account"
    DOMAIN = "domain"
    GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class RuleOwner:
    """Whose rule: one account, every account of one hosted domain, or everyone (admin)."""

    scope: Scope
    id: int | None = None
    """The account id or domain id; None for global."""

    @classmethod
    def account(cls, account_id: int) -> RuleOwner:
        return cls(Scope.ACCOUNT, account_id)

    @classmethod
    def domain(cls, domain_id: int) -> RuleOwner:
        return cls(Scope.DOMAIN, domain_id)

    @classmethod
    def everyone(cls) -> RuleOwner:
        return cls(Scope.GLOBAL, None)

    @property
    def key(self) -> str:
        """One non-null text per owner, so uniqueness holds the same way on both databases
        (NULLs in a unique constraint never collide)."""
        return "global" if self.scope is Scope.GLOBAL else f"{self.scope.value}:{self.id}"


@dataclass(frozen=True, slots=True)
class NewRule:
    list: RuleList
    pattern: str
    """As typed; the store parses it and keeps the canonical spelling."""
    action: RuleAction | None = None
    """None: the list's default (reject for the reject list)."""
    field: RuleField = RuleField.ANY


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    owner: RuleOwner
    list: RuleList
    pattern: str
    """Canonical spelling (see `patterns.parse_pattern`)."""
    action: RuleAction
    field: RuleField
    created: datetime


class Sensitivity(StrEnum):
    """How readily the spam block files mail into Junk; the classifier maps it to a cutoff."""

    LOW = "low"
    STANDARD = "standard"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class SpamSettings:
    """A member's 迷惑メールブロック settings; on at standard sensitivity unless changed."""

    enabled: bool = True
    sensitivity: Sensitivity = Sensitivity.STANDARD


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    """A member's スーパーメール転送: where to, and what stays here."""

    targets: tuple[str, ...] = ()
    """Canonical addresses, in the order they were added."""
    keep_copy: bool = True
    """Also deliver to the mailbox here. Mail that is not forwarded is always kept."""
    skip_spam: bool = True
    """Do not forward mail judged spam (it stays in Junk here), so a member's other provider
    does not learn to distrust our servers."""
    failing: tuple[str, ...] = ()
    """Targets that bounced permanently `FORWARD_FAILURES_FLAGGED` times in a row: shown to
    the member, who should fix or remove them (they are still tried)."""


FORWARD_FAILURES_FLAGGED = 3
"""Permanent bounces in a row after which a forwarding target is flagged to the member."""


@dataclass(frozen=True, slots=True)
class RuleLimits:
    """How many entries one owner may have. Bounded so that one member cannot make every
    delivery to them slow, and so a list stays something a person can read."""

    account_rules: int = 200
    """Per account and per list (reject, safe senders, forwarding reject)."""
    admin_rules: int = 1000
    """Per hosted domain, and for the global list."""
    forward_targets: int = 5


@dataclass(frozen=True, slots=True)
class AccountFilters:
    """Everything the pipeline needs about one recipient, read in one go."""

    rules: tuple[Rule, ...] = ()
    """Account, domain and global rules of every list."""
    spam: SpamSettings = field(default_factory=SpamSettings)
    forwarding: ForwardSettings = field(default_factory=ForwardSettings)
