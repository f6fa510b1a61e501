"""The sending limits shared by the submission server and the webmail: boundaries and the
words recorded for admins."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, cast

from tayori.config.settings import SubmissionSettings
from tayori.delivery.sending_limits import LimitHit, SendingLimits
from tayori.storage.interfaces import MetadataStore, QueueStore
from tests.fakes import FIXED_TIME


class CountingQueue:
    """count_submissions answers from a list of (time, recipients) per account."""

    def __init__(self) -> None:
        self.sent: list[tuple[datetime, int]] = []

    def count_submissions(self, account_id: int, since: datetime) -> tuple[int, int]:
        recent = [n for when, n in self.sent if when >= since]
        return len(recent), sum(recent)


def limits(queue: CountingQueue, **settings: Any) -> SendingLimits:
    return SendingLimits(
        SubmissionSettings(**settings),
        cast(MetadataStore, object()),
        cast(QueueStore, queue),
        clock=lambda: FIXED_TIME,
    )


def test_message_limits_per_hour_then_per_day() -> None:
    queue = CountingQueue()
    check = limits(queue, messages_per_hour=2, messages_per_day=3)
    assert asyncio.run(check.message_limit(1)) is None
    queue.sent += [(FIXED_TIME - timedelta(minutes=5), 1)] * 2
    assert asyncio.run(check.message_limit(1)) == LimitHit("messages per hour", 2, 2)
    queue.sent = [(FIXED_TIME - timedelta(hours=3), 1)] * 3
    hit = asyncio.run(check.message_limit(1))
    assert hit == LimitHit("messages per day", 3, 3)
    assert hit.detail == "messages per day: 3 sent, limit 3"


def test_recipient_limits_count_what_is_being_added() -> None:
    queue = CountingQueue()
    check = limits(queue, recipients_per_message=3, recipients_per_day=10)
    assert check.recipients_in_message(3) is None
    over = check.recipients_in_message(4)
    assert over is not None and over.detail == "recipients per message > 3"
    queue.sent = [(FIXED_TIME - timedelta(hours=2), 8)]
    assert asyncio.run(check.recipients_today(1, 2)) is None  # exactly the limit is allowed
    assert asyncio.run(check.recipients_today(1, 3)) == LimitHit("recipients per day", 8, 10)
    queue.sent = [(FIXED_TIME - timedelta(days=2), 8)]  # outside the day
    assert asyncio.run(check.recipients_today(1, 3)) is None


def test_zero_means_no_limit() -> None:
    queue = CountingQueue()
    queue.sent = [(FIXED_TIME, 1000)] * 50
    check = limits(queue, messages_per_hour=0, messages_per_day=0, recipients_per_day=0)
    assert asyncio.run(check.message_limit(1)) is None
    assert asyncio.run(check.recipients_today(1, 1)) is None
