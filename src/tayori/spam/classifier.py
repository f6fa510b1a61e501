"""Robinson's token probabilities combined with Fisher's chi-square method.

Why this one: it is what bogofilter and SpamBayes use, it needs no tuning per corpus beyond
two priors, it is cheap (one pass over the message's tokens), and its output is near 0 or 1
when the evidence agrees and near 0.5 when it does not, which makes thresholds meaningful:
"unsure" is a real answer rather than an artefact of message length.

For each token, f(w) = (s·x + n·p(w)) / (s + n), where p(w) is the share of spam among the
token's appearances (normalised by how many spam and ham messages were learnt), n how many
messages had it, x the belief about an unseen token and s the weight of that belief.
The tokens whose f is furthest from 0.5 are combined:
  H = C⁻¹(−2 Σ ln f, 2k), S = C⁻¹(−2 Σ ln(1−f), 2k), score = (1 + H − S) / 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Classification", "ClassifierSettings", "TokenCounts", "classify", "token_probability"]


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """How many spam and ham messages (learnt) contained a token, or, for the totals, how
    many spam and ham messages were learnt at all."""

    spam: int = 0
    ham: int = 0

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(self.spam + other.spam, self.ham + other.ham)


@dataclass(frozen=True, slots=True)
class ClassifierSettings:
    """The priors and cut-offs; the defaults are SpamBayes' long-standing ones, not tuned to
    any one corpus."""

    unknown_probability: float = 0.5
    """x: what an unseen token says (0.5: nothing)."""
    prior_strength: float = 0.45
    """s: how many messages' worth of evidence the prior is worth."""
    min_deviation: float = 0.1
    """Tokens with |f − 0.5| below this are ignored: they only dilute the combination."""
    max_tokens: int = 2000
    """At most this many of the strongest tokens are combined: a bound on the work, not a
    filter (SpamBayes' 150 measured worse: it saturates more scores at exactly 0 or 1)."""
    probability_floor: float = 1e-6
    """f is clamped to [floor, 1 − floor] so that one token cannot decide alone (ln 0)."""


DEFAULT_SETTINGS = ClassifierSettings()


@dataclass(frozen=True, slots=True)
class Classification:
    """The combined score (0 ham … 1 spam) and the tokens used, strongest first."""

    score: float
    clues: tuple[tuple[str, float], ...]


def token_probability(
    counts: TokenCounts, totals: TokenCounts, settings: ClassifierSettings = DEFAULT_SETTINGS
) -> float:
    """Robinson's f(w) for one token."""
    spam_ratio = counts.spam / totals.spam if totals.spam else 0.0
    ham_ratio = counts.ham / totals.ham if totals.ham else 0.0
    n = counts.spam + counts.ham
    if spam_ratio + ham_ratio == 0.0:
        return settings.unknown_probability
    p = spam_ratio / (spam_ratio + ham_ratio)
    s, x = settings.prior_strength, settings.unknown_probability
    return (s * x + n * p) / (s + n)


def chi2_survival(chi: float, degrees: int) -> float:
    """P(X ≥ chi) for chi-square with an even number of degrees of freedom, in closed form
    (the series of the Poisson distribution), so no SciPy is needed."""
    m = chi / 2.0
    term = math.exp(-m)
    total = term
    for i in range(1, degrees // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


def classify(
    counts: Mapping[str, TokenCounts],
    totals: TokenCounts,
    settings: ClassifierSettings = DEFAULT_SETTINGS,
) -> Classification:
    """Score a message from its tokens' counts (tokens never seen may be left out)."""
    if totals.spam == 0 or totals.ham == 0:
        return Classification(0.5, ())
    floor = settings.probability_floor
    scored: list[tuple[float, str, float]] = []
    for token, token_counts in counts.items():
        f = token_probability(token_counts, totals, settings)
        deviation = abs(f - 0.5)
        if deviation >= settings.min_deviation:
            scored.append((deviation, token, min(max(f, floor), 1.0 - floor)))
    if not scored:
        return Classification(0.5, ())
    scored.sort(key=lambda item: (-item[0], item[1]))
    strongest = scored[: settings.max_tokens]
    degrees = 2 * len(strongest)
    # Small when the tokens agree the message is ham (many f near 0) ...
    not_ham = chi2_survival(-2.0 * sum(math.log(f) for _, _, f in strongest), degrees)
    # ... and small when they agree it is spam (many f near 1).
    not_spam = chi2_survival(-2.0 * sum(math.log(1.0 - f) for _, _, f in strongest), degrees)
    score = (1.0 + not_ham - not_spam) / 2.0
    return Classification(score, tuple((token, f) for _, token, f in strongest))
