"""The per-account sending limits, in one place for every way a member sends.

Mail programs (the submission server) and the webmail must refuse the same message for the
same reason: a limit that only one of them enforced would be the way around it. Callers turn
a `LimitHit` into their own words (an SMTP reply, a page) and record the `rate.limited`
outcome; `flag_if_repeated` then logs the account the moment it crosses the flag threshold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tayori.config.settings import SubmissionSettings
from tayori.core.outcome import utcnow
from tayori.diagnostics.flags import sending_limit_hits
from tayori.storage.interfaces import MetadataStore, QueueStore

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class LimitHit:
    """A limit the account would exceed: which one, what it has used, what it may."""

    kind: str
    """"messages per hour", "messages per day", "recipients per message" or
    "recipients per day"."""
    used: int
    limit: int

    @property
    def detail(self) -> str:
        """The outcome's private detail (admins read it in `tayori outcomes`)."""
        if self.kind == "recipients per message":
            return f"recipients per message > {self.limit}"
        return f"{self.kind}: {self.used} sent, limit {self.limit}"


class SendingLimits:
    def __init__(
        self,
        settings: SubmissionSettings,
        metadata: MetadataStore,
        queue: QueueStore,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._metadata = metadata
        self._queue = queue
        self._clock = clock

    @property
    def recipients_per_message(self) -> int:
        return self._settings.recipients_per_message

    async def message_limit(self, account_id: int) -> LimitHit | None:
        """Whether one more message would exceed the hourly or daily message limit."""
        now = self._clock()
        for window, limit, kind in (
            (HOUR, self._settings.messages_per_hour, "messages per hour"),
            (DAY, self._settings.messages_per_day, "messages per day"),
        ):
            if limit:
                sent, _ = await asyncio.to_thread(
                    self._queue.count_submissions, account_id, now - window
                )
                if sent >= limit:
                    return LimitHit(kind, sent, limit)
        return None

    def recipients_in_message(self, count: int) -> LimitHit | None:
        """Whether a message with `count` recipients has too many."""
        limit = self._settings.recipients_per_message
        return LimitHit("recipients per message", count, limit) if count > limit else None

    async def recipients_today(self, account_id: int, adding: int) -> LimitHit | None:
        """Whether `adding` more recipients would exceed the daily recipient limit."""
        limit = self._settings.recipients_per_day
        if not limit:
            return None
        _, sent = await asyncio.to_thread(
            self._queue.count_submissions, account_id, self._clock() - DAY
        )
        return LimitHit("recipients per day", sent, limit) if sent + adding > limit else None

    async def flag_if_repeated(self, account_id: int) -> None:
        """Say so in the log the moment an account crosses the flag threshold (`tayori user
        list` shows the flag for as long as it holds). Call after recording the outcome."""
        hits = await asyncio.to_thread(
            sending_limit_hits, self._metadata, account_id, self._clock()
        )
        if hits == self._settings.flag_after:
            log.warning(
                "account flagged: sending limits hit %d times in 24h",
                hits,
                extra={"event": "account.flagged", "account_id": account_id},
            )
