"""Outcomes: exactly one stored record per message × recipient decision.

Bounces, member delivery history, the admin trace, logs and metrics are all views of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class Direction(StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    JUNKED = "junked"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    FORWARDED = "forwarded"
    DISCARDED = "discarded"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one message (or attempt) for one recipient, and why.

    `account_id` is set when the recipient (inbound) or sender (outbound) is one of our
    members, so that member-facing history can be filtered without parsing addresses.
    `reply` is what the remote party was told; `detail` is private to admins.
    """

    direction: Direction
    sender: str
    recipient: str
    outcome: OutcomeKind
    reason: str
    reply: str = ""
    detail: str = ""
    account_id: int | None = None
    message_id: str = ""
    subject: str = ""
    size: int = 0
    remote_ip: str = ""
    remote_host: str = ""
    time: datetime = field(default_factory=utcnow)
