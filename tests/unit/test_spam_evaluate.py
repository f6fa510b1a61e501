"""The benchmark's split and figures, and reading training messages from dirs and mboxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tayori.spam.evaluate import (
    LabelledMessage,
    cross_validation_folds,
    fixed_split,
    load_corpus,
    load_messages,
    metrics,
    roc_auc,
)


def test_roc_auc() -> None:
    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.1], [0.9]) == 0.0
    assert roc_auc([0.5], [0.5]) == 0.5  # ties count a half
    assert roc_auc([0.9, 0.4], [0.5, 0.1]) == 0.75


def test_metrics_at_threshold() -> None:
    result = metrics([0.99, 0.995, 0.2], [0.0, 0.995], 0.99)
    assert result.spam_recall == pytest.approx(2 / 3)
    assert result.ham_false_positive_rate == 0.5


def test_fixed_split_is_deterministic_and_about_half() -> None:
    messages = [LabelledMessage(f"dir/{i}", b"", i % 3 == 0) for i in range(1000)]
    train, test = fixed_split(messages)
    assert fixed_split(messages) == (train, test)
    assert 400 < len(train) < 600
    assert {m.name for m in train}.isdisjoint({m.name for m in test})


def test_cross_validation_folds_cover_the_training_half_only_once() -> None:
    messages = [LabelledMessage(f"dir/{i}", b"", i % 3 == 0) for i in range(1000)]
    train, test = fixed_split(messages)
    (learn_a, score_a), (learn_b, score_b) = cross_validation_folds(train)
    assert learn_a == score_b and learn_b == score_a
    assert sorted(m.name for m in learn_a + learn_b) == sorted(m.name for m in train)
    assert {m.name for m in learn_a}.isdisjoint({m.name for m in learn_b})
    assert 150 < len(learn_a) < 350
    assert {m.name for m in learn_a + learn_b}.isdisjoint({m.name for m in test})


def test_load_corpus_with_and_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "spam").mkdir()
    (tmp_path / "easy_ham").mkdir()
    (tmp_path / "spam" / "1").write_bytes(b"s")
    (tmp_path / "easy_ham" / "2").write_bytes(b"h")
    found = load_corpus(tmp_path)
    assert [(m.name, m.is_spam) for m in found] == [("easy_ham/2", False), ("spam/1", True)]
    (tmp_path / "manifest.tsv").write_text("path\tlabel\tsource\nspam/1\tspam\tx\n")
    assert [(m.name, m.raw, m.is_spam) for m in load_corpus(tmp_path)] == [("spam/1", b"s", True)]


def test_load_messages_from_mbox_and_directory(tmp_path: Path) -> None:
    mbox = tmp_path / "mail.mbox"
    mbox.write_bytes(
        b"From a@example.test Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n\n"
        b"From b@example.test Mon Jan  1 00:00:01 2024\nSubject: two\n\nbody\n"
    )
    assert len(load_messages(mbox)) == 2
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "1.eml").write_bytes(b"Subject: x\n\ny\n")
    (folder / ".hidden").write_bytes(b"ignored")
    assert load_messages(folder) == [b"Subject: x\n\ny\n"]
