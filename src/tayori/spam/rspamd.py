"""rspamd as the spam engine (`[spam] engine = "rspamd"`), with the built-in one behind it.

Admins who already run rspamd get its rules, reputation and neural networks, but a mail
service must not lose or delay mail because a helper daemon is down. So:

- scoring asks rspamd (`POST /checkv2`, the raw message as body) and reads its documented
  JSON answer (`score`, `required_score`, `action`, `symbols`);
- when rspamd does not answer within `timeout`, refuses the connection, or answers with an
  error or unreadable JSON, the message is scored by the built-in classifier instead, the
  fall-back is logged (event `spam.rspamd_unreachable`) and named in the result's reasons
  (`engine=builtin (rspamd unreachable: …)`, kept in the outcome's detail when the message is
  filed as Junk). rspamd is then left alone for `retry_after` seconds, so an outage costs one
  timeout, not one per message; its return is logged as `spam.rspamd_recovered`;
- learning ("this is spam" / "not spam") goes to the built-in store as always (so the
  fall-back stays trained, and the ledger keeps relearning idempotent) and to rspamd's
  `POST /learnspam` / `/learnham` (the controller worker; `Password` header when set).

The member's sensitivity picks which rspamd actions mean Junk: standard junks what rspamd
would tag or reject (`add header`, `rewrite subject`, `reject`), high also `greylist`, low
only `reject`. `SpamResult.score` is rspamd's score over its `required_score`, clamped to
0 … 1, so X-Spam-Score stays on the same scale as with the built-in engine.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tayori.spam.classifier import DEFAULT_SETTINGS, ClassifierSettings
from tayori.spam.engine import Sensitivity, SpamEngine, SpamResult
from tayori.spam.store import TokenStore

__all__ = [
    "JUNK_ACTIONS",
    "RspamdClient",
    "RspamdResult",
    "RspamdSpamEngine",
    "RspamdUnavailable",
]

log = logging.getLogger(__name__)

JUNK_ACTIONS: dict[Sensitivity, frozenset[str]] = {
    Sensitivity.LOW: frozenset({"reject"}),
    Sensitivity.STANDARD: frozenset({"reject", "rewrite subject", "add header"}),
    Sensitivity.HIGH: frozenset({"reject", "rewrite subject", "add header", "greylist"}),
}
"""rspamd actions that file a message in Junk, by the member's sensitivity. `soft reject`
(rate limits, temporary failures inside rspamd) never does: it says nothing about spam."""

_REASONS = 5


class RspamdUnavailable(Exception):
    """rspamd could not give an answer: connection refused or reset, timeout, HTTP error,
    or a body that is not the documented JSON."""


@dataclass(frozen=True, slots=True)
class RspamdResult:
    """What /checkv2 said about one message."""

    score: float
    required_score: float
    action: str
    symbols: tuple[tuple[str, float], ...]
    """(name, score) of every symbol that fired, highest score first."""


class RspamdClient:
    """A small synchronous client of rspamd's HTTP API (one connection per request: the
    engine is called from worker threads, and rspamd answers on loopback in milliseconds)."""

    def __init__(self, url: str, *, timeout: float = 2.0, password: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"rspamd url must be http://host:port or https://…, not {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self.timeout = timeout
        self._password = password

    def _post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            connection.request("POST", self._base + path, body=body, headers=dict(headers))
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            raise RspamdUnavailable(f"{type(error).__name__}: {error}") from error
        finally:
            connection.close()

    def check(self, raw: bytes) -> RspamdResult:
        """POST /checkv2: rspamd's verdict on a raw message."""
        status, body = self._post("/checkv2", raw, {"Content-Type": "message/rfc822"})
        if status != 200:
            raise RspamdUnavailable(f"/checkv2 answered HTTP {status}")
        try:
            data = json.loads(body)
            score = float(data["score"])
            required = float(data["required_score"])
            action = str(data["action"])
            symbols = _symbols(data.get("symbols") or {})
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise RspamdUnavailable(f"/checkv2 answer is not rspamd's JSON: {error}") from error
        return RspamdResult(score, required, action, symbols)

    def learn(self, raw: bytes, is_spam: bool) -> bool:
        """POST /learnspam or /learnham; False when rspamd already knew it as that (HTTP 208,
        rspamd's own "already learned")."""
        headers = {"Content-Type": "message/rfc822"}
        if self._password:
            headers["Password"] = self._password
        path = "/learnspam" if is_spam else "/learnham"
        status, body = self._post(path, raw, headers)
        if status == 208:
            return False
        if status != 200:
            detail = body[:200].decode("utf-8", "replace")
            raise RspamdUnavailable(f"{path} answered HTTP {status}: {detail}")
        return True


def _symbols(raw: Any) -> tuple[tuple[str, float], ...]:
    found = []
    for name, symbol in dict(raw).items():
        score = symbol.get("score", 0.0) if isinstance(symbol, dict) else 0.0
        found.append((str(name), float(score)))
    found.sort(key=lambda item: (-item[1], item[0]))
    return tuple(found)


class RspamdSpamEngine(SpamEngine):
    """A SpamEngine that asks rspamd and falls back to the built-in classifier.

    A subclass, so the pipeline and the webmail's "Spam" / "Not spam" buttons use it exactly
    as the built-in engine: same methods, same SpamResult."""

    def __init__(
        self,
        store: TokenStore,
        *,
        url: str,
        timeout: float = 2.0,
        password: str = "",
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sensitivity: Sensitivity = Sensitivity.STANDARD,
        thresholds: dict[Sensitivity, float] | None = None,
        settings: ClassifierSettings = DEFAULT_SETTINGS,
    ) -> None:
        super().__init__(store, sensitivity=sensitivity, thresholds=thresholds, settings=settings)
        self.client = RspamdClient(url, timeout=timeout, password=password)
        self.retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until: float | None = None

    @property
    def rspamd_down(self) -> bool:
        """True while rspamd is being left alone after a failure."""
        with self._lock:
            return self._down_until is not None and self._clock() < self._down_until

    def _failed(self, error: RspamdUnavailable, doing: str) -> None:
        with self._lock:
            first = self._down_until is None
            self._down_until = self._clock() + self.retry_after
        if first:
            log.warning(
                "rspamd at %s unreachable while %s (%s): the built-in engine scores instead",
                self.client.url,
                doing,
                error,
                extra={"event": "spam.rspamd_unreachable", "url": self.client.url},
            )

    def _answered(self) -> None:
        with self._lock:
            was_down = self._down_until is not None
            self._down_until = None
        if was_down:
            log.info(
                "rspamd at %s answers again",
                self.client.url,
                extra={"event": "spam.rspamd_recovered", "url": self.client.url},
            )

    def score(
        self,
        raw: bytes,
        account_id: int | None = None,
        *,
        sensitivity: Sensitivity | None = None,
        extra: Iterable[str] = (),
    ) -> SpamResult:
        """rspamd's verdict; the built-in one when rspamd is unreachable (see module doc)."""
        why = "left alone after a failure"
        if not self.rspamd_down:
            try:
                result = self.client.check(raw)
            except RspamdUnavailable as error:
                self._failed(error, "scoring")
                why = str(error)
            else:
                self._answered()
                return self._from_rspamd(result, sensitivity or self.sensitivity)
        fallback = super().score(raw, account_id, sensitivity=sensitivity, extra=extra)
        marker = f"engine=builtin (rspamd unreachable: {why})"
        return SpamResult(
            fallback.score, fallback.is_spam, (marker, *fallback.top_reasons)[: _REASONS + 1]
        )

    @staticmethod
    def _from_rspamd(result: RspamdResult, sensitivity: Sensitivity) -> SpamResult:
        if result.required_score > 0:
            normalised = min(max(result.score / result.required_score, 0.0), 1.0)
        else:
            normalised = 1.0 if result.score > 0 else 0.0
        reasons = tuple(
            f"rspamd:{name} ({score:.2f})" for name, score in result.symbols if score > 0
        )[:_REASONS]
        return SpamResult(
            score=normalised,
            is_spam=result.action in JUNK_ACTIONS[sensitivity],
            top_reasons=(f"rspamd action={result.action} score={result.score:.2f}", *reasons),
        )

    def learn_many(
        self,
        messages: Sequence[tuple[bytes, bool]],
        account_id: int | None = None,
        *,
        extra: Iterable[str] = (),
    ) -> int:
        """Learn into the built-in store (returns its count, as SpamEngine does), then teach
        rspamd the same messages; rspamd being down is logged, never an error to the member."""
        changed = super().learn_many(messages, account_id, extra=extra)
        for raw, is_spam in messages:
            if self.rspamd_down:
                break
            try:
                self.client.learn(raw, is_spam)
            except RspamdUnavailable as error:
                self._failed(error, "learning")
                break
            self._answered()
        return changed
