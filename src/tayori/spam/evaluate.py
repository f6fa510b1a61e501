"""Measuring the filter on a labelled corpus: the fixed split and the figures reported.

Shared by `bench/spam_eval.py` and the corpus accuracy test, so both measure the same thing.
The split is by a hash of each file's path, not by a random generator: it is the same on
every machine and Python version, and adding files to a corpus does not move the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tayori.mime.mbox import split_mbox

__all__ = [
    "LabelledMessage",
    "Metrics",
    "cross_validation_folds",
    "fixed_split",
    "load_corpus",
    "load_messages",
    "metrics",
    "roc_auc",
]


@dataclass(frozen=True, slots=True)
class LabelledMessage:
    name: str
    raw: bytes
    is_spam: bool


def load_corpus(directory: Path) -> list[LabelledMessage]:
    """Messages of a corpus directory with a `manifest.tsv` (path, label, source), as in
    `../shared/corpus/spam/`; without one, `spam*/` and `*ham*/` subdirectories."""
    manifest = directory / "manifest.tsv"
    found: list[LabelledMessage] = []
    if manifest.is_file():
        for line in manifest.read_text(encoding="utf-8").splitlines()[1:]:
            if not line.strip():
                continue
            name, label, *_ = line.split("\t")
            found.append(LabelledMessage(name, (directory / name).read_bytes(), label == "spam"))
        return found
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        if "ham" in sub.name or sub.name.startswith("spam"):
            for file in sorted(p for p in sub.rglob("*") if p.is_file()):
                relative = str(file.relative_to(directory))
                found.append(LabelledMessage(relative, file.read_bytes(), "ham" not in sub.name))
    return found


def load_messages(path: Path) -> list[bytes]:
    """The messages of a directory (each file one message, or an mbox) or of one mbox file."""
    if path.is_dir():
        found: list[bytes] = []
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            if not file.name.startswith("."):
                found.extend(split_mbox(file.read_bytes()))
        return found
    return split_mbox(path.read_bytes())


def fixed_split(
    messages: Sequence[LabelledMessage],
) -> tuple[list[LabelledMessage], list[LabelledMessage]]:
    """(training half, test half), decided by the first byte of SHA-256 of the name."""
    train: list[LabelledMessage] = []
    test: list[LabelledMessage] = []
    for message in messages:
        digest = hashlib.sha256(message.name.encode()).digest()
        (train if digest[0] % 2 == 0 else test).append(message)
    return train, test


def cross_validation_folds(
    train: Sequence[LabelledMessage],
) -> list[tuple[list[LabelledMessage], list[LabelledMessage]]]:
    """Two (learn, score) pairs over the training half only, for deciding settings without
    looking at the test half: the half is cut in two by the second byte of the same hash
    (`fixed_split` used the first), each part is learnt once and the other scored. Pool the
    scores of both pairs to read one recall / false-positive figure."""
    folds: tuple[list[LabelledMessage], list[LabelledMessage]] = ([], [])
    for message in train:
        folds[hashlib.sha256(message.name.encode()).digest()[1] % 2].append(message)
    return [(folds[0], folds[1]), (folds[1], folds[0])]


def roc_auc(spam_scores: Sequence[float], ham_scores: Sequence[float]) -> float:
    """Area under the ROC curve: the chance that a random spam scores above a random ham
    (ties count a half), by sorting once (Mann-Whitney U)."""
    if not spam_scores or not ham_scores:
        return float("nan")
    labelled = sorted([(s, 1) for s in spam_scores] + [(h, 0) for h in ham_scores])
    rank_sum = 0.0
    index = 0
    while index < len(labelled):
        end = index
        while end < len(labelled) and labelled[end][0] == labelled[index][0]:
            end += 1
        average_rank = (index + 1 + end) / 2.0  # ranks are 1-based
        rank_sum += average_rank * sum(label for _, label in labelled[index:end])
        index = end
    n_spam, n_ham = len(spam_scores), len(ham_scores)
    return (rank_sum - n_spam * (n_spam + 1) / 2.0) / (n_spam * n_ham)


@dataclass(frozen=True, slots=True)
class Metrics:
    threshold: float
    spam_recall: float
    ham_false_positive_rate: float
    one_minus_auc_percent: float
    spam: int
    ham: int


def metrics(spam_scores: Sequence[float], ham_scores: Sequence[float], threshold: float) -> Metrics:
    """Recall and false positives at `threshold` (score ≥ threshold is spam), and 1-AUC."""
    caught = sum(score >= threshold for score in spam_scores)
    wrong = sum(score >= threshold for score in ham_scores)
    return Metrics(
        threshold=threshold,
        spam_recall=caught / len(spam_scores) if spam_scores else float("nan"),
        ham_false_positive_rate=wrong / len(ham_scores) if ham_scores else float("nan"),
        one_minus_auc_percent=(1.0 - roc_auc(spam_scores, ham_scores)) * 100.0,
        spam=len(spam_scores),
        ham=len(ham_scores),
    )
