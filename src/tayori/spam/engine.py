"""The built-in spam engine: tokenise, look the tokens up, combine, compare to a threshold.

The pipeline calls `score` once per message and recipient account (member stores differ);
webmail and IMAP call `learn` when a member says "this is spam" / "not spam". Thresholds
are per sensitivity, so members choosing "high" only move the line, never the statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from tayori.spam.classifier import DEFAULT_SETTINGS, ClassifierSettings, classify
from tayori.spam.store import TokenStore, Training, message_digest
from tayori.spam.tokens import VERSION_PREFIX, VERSION_TOKEN, tokenize

__all__ = ["DEFAULT_THRESHOLDS", "Sensitivity", "SpamEngine", "SpamResult"]


class Sensitivity(StrEnum):
    """How eagerly a member wants mail moved to Junk."""

    LOW = "low"
    STANDARD = "standard"
    HIGH = "high"


DEFAULT_THRESHOLDS: dict[Sensitivity, float] = {
    # Chi-square scores cluster near 0 and 1; the middle is "unsure". Low junks only mail
    # the evidence agrees on, high also the unsure mail leaning to spam. Standard aims at
    # about 0.1 % of ham junked: 2-fold cross-validation on the training half, repeated over
    # four ways of cutting it (`bench/spam_eval.py --cv` is the first), pooled: 0.11 % at
    # 0.99 (86.5 % of spam), 0.06 % at 0.995 (85.2 %); low 0.05 %, high 0.35 % (92.6 %).
    Sensitivity.LOW: 0.999,
    Sensitivity.STANDARD: 0.99,
    Sensitivity.HIGH: 0.9,
}
"""Scores at or above which a message is spam, by sensitivity. Chosen by cross-validation
on the training half of the corpus only (see bench/spam_eval.py), not on the test half."""

_REASONS = 5


@dataclass(frozen=True, slots=True)
class SpamResult:
    """The verdict for one message: score 0 (ham) … 1 (spam), whether it is spam at the
    sensitivity asked for, and the tokens that pushed most towards spam (for "why Junk?")."""

    score: float
    is_spam: bool
    top_reasons: tuple[str, ...]


class SpamEngine:
    """Scores and learns messages against a TokenStore."""

    def __init__(
        self,
        store: TokenStore,
        *,
        sensitivity: Sensitivity = Sensitivity.STANDARD,
        thresholds: dict[Sensitivity, float] | None = None,
        settings: ClassifierSettings = DEFAULT_SETTINGS,
    ) -> None:
        self.store = store
        self.sensitivity = sensitivity
        self.thresholds = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
        self.settings = settings

    def threshold(self, sensitivity: Sensitivity | None = None) -> float:
        return self.thresholds[sensitivity or self.sensitivity]

    def score(
        self,
        raw: bytes,
        account_id: int | None = None,
        *,
        sensitivity: Sensitivity | None = None,
        extra: Iterable[str] = (),
    ) -> SpamResult:
        """Score a raw message for an account (None: global counts only).

        `extra` tokens are facts the caller knows (e.g. `auth:spf=fail`, `dnsbl:listed`); they
        count only once they were also given to `learn`.
        """
        return self.score_tokens(tokenize(raw, extra), account_id, sensitivity=sensitivity)

    def score_tokens(
        self,
        tokens: set[str],
        account_id: int | None = None,
        *,
        sensitivity: Sensitivity | None = None,
    ) -> SpamResult:
        """`score` for tokens already made (benchmarks tokenise once, score many times)."""
        totals, counts = self.store.lookup(tokens, account_id)
        # Bookkeeping of the tokenizer version, not evidence (see tokens.VERSION_TOKEN).
        counts = {t: c for t, c in counts.items() if not t.startswith(VERSION_PREFIX)}
        result = classify(counts, totals, self.settings)
        spammy = [(token, f) for token, f in result.clues if f > 0.5][:_REASONS]
        return SpamResult(
            score=result.score,
            is_spam=result.score >= self.threshold(sensitivity),
            top_reasons=tuple(_describe(token, f) for token, f in spammy),
        )

    def stale_training(self, account_id: int | None = None) -> float:
        """The share (0 … 1) of learnt messages whose tokens came from another tokenizer
        version than this one: their counts partly describe tokens no longer made, so a
        large share means "retrain" (`tayori spam train`). 0.0 when nothing was learnt."""
        totals, counts = self.store.lookup([VERSION_TOKEN], account_id)
        learnt = totals.spam + totals.ham
        if learnt <= 0:
            return 0.0
        current = counts.get(VERSION_TOKEN)
        fresh = 0 if current is None else current.spam + current.ham
        return max(0.0, min(1.0, (learnt - fresh) / learnt))

    def learn(
        self, raw: bytes, is_spam: bool, account_id: int | None = None, *, extra: Iterable[str] = ()
    ) -> bool:
        """Learn one message as spam or ham; False when it was already learnt as that.

        The ledger knows a message by its bytes alone: learning it again with other `extra`
        tokens changes nothing, so pass the same facts the pipeline scored it with.
        """
        return self.learn_many([(raw, is_spam)], account_id, extra=extra) > 0

    def learn_many(
        self,
        messages: Sequence[tuple[bytes, bool]],
        account_id: int | None = None,
        *,
        extra: Iterable[str] = (),
    ) -> int:
        """Learn (raw, is_spam) pairs in one transaction; returns how many changed counts."""
        added = tuple(extra)
        items = [
            Training(message_digest(raw), is_spam, frozenset(tokenize(raw, added)))
            for raw, is_spam in messages
        ]
        return self.store.learn(items, account_id)


def _describe(token: str, probability: float) -> str:
    """A clue as an admin reads it: `subject:free (0.99)`."""
    return f"{token or '(empty)'} ({probability:.2f})"
