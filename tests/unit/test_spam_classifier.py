"""Robinson/Fisher combining: the maths, and what an untrained filter says."""

from __future__ import annotations

import math

import pytest

from tayori.spam.classifier import (
    ClassifierSettings,
    TokenCounts,
    chi2_survival,
    classify,
    token_probability,
)


@pytest.mark.parametrize(
    ("chi", "degrees", "expected"),
    # Reference values of the chi-square survival function (SciPy chi2.sf).
    [(2.0, 2, math.exp(-1.0)), (4.0, 4, 3 * math.exp(-2.0)), (0.0, 10, 1.0), (1000.0, 4, 0.0)],
)
def test_chi2_survival(chi: float, degrees: int, expected: float) -> None:
    assert chi2_survival(chi, degrees) == pytest.approx(expected, abs=1e-12)


def test_token_probability_shrinks_rare_tokens_towards_unknown() -> None:
    totals = TokenCounts(spam=100, ham=100)
    once = token_probability(TokenCounts(spam=1), totals)
    often = token_probability(TokenCounts(spam=50), totals)
    assert 0.5 < once < often < 1.0
    assert token_probability(TokenCounts(), totals) == 0.5
    # Normalised by how much of each kind was learnt: 1 of 10 spam vs 10 of 100 ham is even.
    assert token_probability(TokenCounts(1, 10), TokenCounts(10, 100)) == pytest.approx(0.5)


def test_untrained_or_no_evidence_is_unsure() -> None:
    assert classify({"a": TokenCounts(1, 0)}, TokenCounts(0, 5)).score == 0.5
    assert classify({}, TokenCounts(5, 5)).score == 0.5


def test_agreeing_evidence_is_near_the_ends() -> None:
    totals = TokenCounts(100, 100)
    spammy = {f"s{i}": TokenCounts(40, 0) for i in range(10)}
    hammy = {f"h{i}": TokenCounts(0, 40) for i in range(10)}
    assert classify(spammy, totals).score > 0.99
    assert classify(hammy, totals).score < 0.01
    mixed = classify({**spammy, **hammy}, totals)
    assert 0.3 < mixed.score < 0.7


def test_clues_are_strongest_first_and_bounded() -> None:
    totals = TokenCounts(100, 100)
    counts = {"weak": TokenCounts(6, 4), "strong": TokenCounts(50, 0), "mid": TokenCounts(20, 5)}
    result = classify(counts, totals, ClassifierSettings(max_tokens=2))
    assert [token for token, _ in result.clues] == ["strong", "mid"]
