"""SpamEngine on the in-memory store: learning, relearning, per-account counts, sensitivity."""

from __future__ import annotations

import pytest

import tayori.spam
from tayori.spam import MemoryTokenStore, Sensitivity, SpamEngine, SpamResult


def mail(subject: str, body: str, sender: str = "someone@example.test") -> bytes:
    return (
        f"From: {sender}\r\nTo: member@example.test\r\nSubject: {subject}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


SPAM = [
    mail(f"Cheap pills {i}", f"buy cheap pills now viagra discount offer {i}", "x@pills.example")
    for i in range(20)
]
HAM = [
    mail(
        f"Meeting notes {i}", f"the meeting agenda for the project review {i}", "boss@work.example"
    )
    for i in range(20)
]


@pytest.fixture
def engine() -> SpamEngine:
    trained = SpamEngine(MemoryTokenStore())
    trained.learn_many([(raw, True) for raw in SPAM] + [(raw, False) for raw in HAM])
    return trained


def test_public_api_is_pinned() -> None:
    assert set(tayori.spam.__all__) == {
        "DEFAULT_THRESHOLDS",
        "ClassifierSettings",
        "MemoryTokenStore",
        "Sensitivity",
        "SpamEngine",
        "SpamResult",
        "SqlTokenStore",
        "TokenCounts",
        "TokenStore",
        "Training",
        "tokenize",
    }


def test_untrained_engine_is_unsure_and_lets_mail_through() -> None:
    result = SpamEngine(MemoryTokenStore()).score(SPAM[0])
    assert result == SpamResult(0.5, False, ())


def test_scores_and_reasons(engine: SpamEngine) -> None:
    spam = engine.score(mail("cheap pills", "viagra discount, buy now"))
    ham = engine.score(mail("project meeting", "agenda for the review"))
    assert spam.is_spam and spam.score > 0.99
    assert not ham.is_spam and ham.score < 0.01
    assert spam.top_reasons and all("(" in reason for reason in spam.top_reasons)
    assert any("pills" in reason or "discount" in reason for reason in spam.top_reasons)
    assert ham.top_reasons == ()


def test_learning_the_same_message_twice_changes_nothing(engine: SpamEngine) -> None:
    store = engine.store
    assert isinstance(store, MemoryTokenStore)
    before = store.lookup({"viagra"}, None)
    assert engine.learn(SPAM[0], True) is False
    assert engine.learn_many([(SPAM[1], True), (SPAM[1], True)]) == 0
    assert store.lookup({"viagra"}, None) == before


def test_relearning_as_the_other_kind_moves_the_counts() -> None:
    engine = SpamEngine(MemoryTokenStore())
    raw = mail("hello", "unique words here")
    assert engine.learn(raw, True)
    assert engine.learn(raw, False)
    totals, counts = engine.store.lookup({"unique"}, None)
    assert (totals.spam, totals.ham) == (0, 1)
    assert (counts["unique"].spam, counts["unique"].ham) == (0, 1)


def test_account_learning_only_affects_that_account(engine: SpamEngine) -> None:
    newsletter = [mail(f"Weekly deals {i}", f"garden tools sale coupon {i}") for i in range(10)]
    engine.learn_many([(raw, True) for raw in newsletter], account_id=7)
    probe = mail("Weekly deals", "garden tools sale coupon")
    assert engine.score(probe, 7).score > engine.score(probe, None).score
    assert engine.score(probe, 7).is_spam
    assert engine.score(probe, 8).score == engine.score(probe, None).score


def test_sensitivity_moves_only_the_threshold() -> None:
    engine = SpamEngine(MemoryTokenStore())
    assert (
        engine.threshold(Sensitivity.LOW) > engine.threshold() > engine.threshold(Sensitivity.HIGH)
    )
    custom = SpamEngine(MemoryTokenStore(), sensitivity=Sensitivity.HIGH)
    assert custom.threshold() == engine.threshold(Sensitivity.HIGH)


def test_japanese_spam_is_learnt_through_the_charset_layer() -> None:
    def jp(subject: str, body: str, charset: str) -> bytes:
        return (
            f"Subject: {subject}\r\nContent-Type: text/plain; charset={charset}\r\n\r\n"
        ).encode() + body.encode(charset)

    engine = SpamEngine(MemoryTokenStore())
    engine.learn_many(
        [(jp("x", f"副業で月収百万円 今すぐ登録{i}", "shift_jis"), True) for i in range(10)]
        + [(jp("y", f"明日の会議の資料を送ります{i}", "euc-jp"), False) for i in range(10)]
    )
    # Learnt from Shift_JIS and EUC-JP, recognised in ISO-2022-JP.
    spam = engine.score(jp("z", "副業で月収百万円", "iso-2022-jp"))
    ham = engine.score(jp("z", "会議の資料", "iso-2022-jp"))
    assert spam.is_spam
    assert not ham.is_spam
    assert any("月収" in reason or "副業" in reason for reason in spam.top_reasons)


def test_extra_tokens_are_learnt_like_the_rest() -> None:
    engine = SpamEngine(MemoryTokenStore())
    for i in range(10):
        engine.learn(mail("a", f"same text {i}"), True, extra=["auth:spf=fail"])
        engine.learn(mail("a", f"same text {i} "), False, extra=["auth:spf=pass"])
    probe = mail("a", "same text")
    assert (
        engine.score(probe, extra=["auth:spf=fail"]).score
        > engine.score(probe, extra=["auth:spf=pass"]).score
    )


def test_version_token_is_never_a_clue_and_stale_training_is_measured() -> None:
    """Counts learnt by an older tokenizer are reported as stale; the version token, whose
    counts then lean one way, must not turn into evidence."""
    from tayori.spam.store import Training, message_digest
    from tayori.spam.tokens import VERSION_TOKEN, tokenize

    store = MemoryTokenStore()
    engine = SpamEngine(store)
    assert engine.stale_training() == 0.0
    engine.learn_many([(raw, True) for raw in SPAM[:10]] + [(raw, False) for raw in HAM[:10]])
    assert engine.stale_training() == 0.0
    # Ten more hams learnt as an older tokenizer would have: without the current version token.
    old = [
        Training(message_digest(raw), False, frozenset(tokenize(raw) - {VERSION_TOKEN}))
        for raw in HAM[10:]
    ]
    store.learn(old, None)
    assert engine.stale_training() == pytest.approx(10 / 30)
    result = engine.score(SPAM[15])
    assert all(VERSION_TOKEN not in reason for reason in result.top_reasons)
    assert result.is_spam
