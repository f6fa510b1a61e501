"""RCPT-time decisions: answered while the sender's server is still connected, so a refusal
reaches the real sender as an error from their own server (no backscatter from us)."""

from __future__ import annotations

from dataclasses import dataclass

from tayori.core.sizes import format_size
from tayori.pipeline.verdicts import Verdict
from tayori.storage.records import Account, AccountStatus, RecipientLookup


@dataclass(frozen=True, slots=True)
class RecipientDecision:
    """Accounts to deliver to, alias members skipped because full, or the refusal."""

    accounts: tuple[Account, ...]
    full: tuple[Account, ...]
    refusal: Verdict | None


def over_quota(account: Account, incoming: int) -> bool:
    """True when the mailbox is full, or when `incoming` bytes would not fit."""
    if account.quota_bytes <= 0:
        return False
    return account.used_bytes >= account.quota_bytes or (
        account.used_bytes + incoming > account.quota_bytes
    )


def decide_recipient(
    address: str, lookup: RecipientLookup, *, declared_size: int
) -> RecipientDecision:
    """Unknown user, relay attempt, full mailbox, or the accounts to deliver to.

    An alias with several members is refused for quota only when every member is full:
    the others still want the message, and the full members are skipped (and recorded).
    """
    if not lookup.hosted:  # the MX role never relays; sending out is the submission role
        return RecipientDecision((), (), Verdict.reject("relay.denied", address=address))
    active = tuple(a for a in lookup.accounts if a.status is AccountStatus.ACTIVE)
    if not active:
        detail = "account disabled" if lookup.accounts else "no such address"
        return RecipientDecision((), (), Verdict.reject("rcpt.unknown", detail, address=address))
    fitting = tuple(a for a in active if not over_quota(a, declared_size))
    full = tuple(a for a in active if a not in fitting)
    if not fitting:
        refusal = Verdict.reject(
            "rcpt.over_quota", quota_detail(full[0], declared_size), address=address
        )
        return RecipientDecision((), full, refusal)
    return RecipientDecision(fitting, full, None)


def quota_detail(account: Account, incoming: int) -> str:
    return (
        f"used {format_size(account.used_bytes)} of {format_size(account.quota_bytes)}; "
        f"message {format_size(incoming)}"
    )
