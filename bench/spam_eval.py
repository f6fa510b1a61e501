"""Spam filter accuracy and speed on a labelled corpus: `python bench/spam_eval.py CORPUS_DIR`.

Trains on a fixed half (hash of each file's path, see `tayori.spam.evaluate.fixed_split`),
with an empty store, every training message learnt once; scores every message of the other
half. Reports, per filter: spam recall and ham false-positive rate at its default threshold,
(1-ROC AUC) %, and the median time to score one message (parse + tokenise + look up +
combine, from raw bytes). Also the best recall reachable at <= 0.1 % ham false positives:
that point is read off the test half, so it describes the score's ranking, not a setting.

bogofilter is run side by side when it is installed (`bogofilter` on PATH); nothing is
installed by this script. Results go to stdout as a Markdown table, `--json` as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from tayori.spam.engine import Sensitivity, SpamEngine
from tayori.spam.evaluate import LabelledMessage, fixed_split, load_corpus, metrics
from tayori.spam.store import MemoryTokenStore, SqlTokenStore, TokenStore
from tayori.storage.engine import create_store_engine
from tayori.storage.factory import migrate, storage_url

Runner = Callable[
    [Sequence[LabelledMessage], Sequence[LabelledMessage]],
    tuple[list[float], list[float], list[float], float],
]


def recall_at_fp(spam: Sequence[float], ham: Sequence[float], max_fp: float) -> float:
    """The best spam recall whose ham false-positive rate stays <= max_fp."""
    allowed = int(max_fp * len(ham))
    ordered = sorted(ham, reverse=True)
    # Strictly above the (allowed+1)-th highest ham score.
    cut = ordered[allowed] if allowed < len(ordered) else float("-inf")
    return sum(s > cut for s in spam) / len(spam)


def run_builtin(
    train: Sequence[LabelledMessage],
    test: Sequence[LabelledMessage],
    store: TokenStore | None = None,
) -> tuple[list[float], list[float], list[float], float]:
    engine = SpamEngine(store or MemoryTokenStore())
    started = time.perf_counter()
    for start in range(0, len(train), 200):  # as `tayori spam train` does
        engine.learn_many([(m.raw, m.is_spam) for m in train[start : start + 200]])
    train_seconds = time.perf_counter() - started
    spam: list[float] = []
    ham: list[float] = []
    times: list[float] = []
    for message in test:
        started = time.perf_counter()
        result = engine.score(message.raw)
        times.append(time.perf_counter() - started)
        (spam if message.is_spam else ham).append(result.score)
    return spam, ham, times, train_seconds


def run_builtin_sqlite(
    train: Sequence[LabelledMessage], test: Sequence[LabelledMessage]
) -> tuple[list[float], list[float], list[float], float]:
    """The same on a migrated SQLite database, as a default install scores."""
    with tempfile.TemporaryDirectory() as data_dir:
        migrate("", Path(data_dir))
        engine = create_store_engine(storage_url("", Path(data_dir)))
        try:
            return run_builtin(train, test, SqlTokenStore(engine))
        finally:
            engine.dispose()


def run_bogofilter(
    train: Sequence[LabelledMessage], test: Sequence[LabelledMessage]
) -> tuple[list[float], list[float], list[float], float]:
    with tempfile.TemporaryDirectory() as home:

        def bogo(*args: str, data: bytes) -> str:
            done = subprocess.run(
                ["bogofilter", "-d", home, *args],
                input=data,
                capture_output=True,
                check=False,
            )
            return done.stdout.decode()

        started = time.perf_counter()
        for message in train:
            bogo("-s" if message.is_spam else "-n", data=message.raw)
        train_seconds = time.perf_counter() - started
        spam: list[float] = []
        ham: list[float] = []
        times: list[float] = []
        for message in test:
            started = time.perf_counter()
            out = bogo("-T", data=message.raw)
            times.append(time.perf_counter() - started)
            score = float(out.split()[1]) if len(out.split()) > 1 else 0.5
            (spam if message.is_spam else ham).append(score)
    return spam, ham, times, train_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="directory with manifest.tsv")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--sqlite", action="store_true", help="also run the builtin engine on a SQLite store"
    )
    args = parser.parse_args(argv)
    messages = load_corpus(args.corpus)
    train, test = fixed_split(messages)
    print(
        f"corpus {args.corpus}: {len(messages)} messages; train {len(train)} "
        f"({sum(m.is_spam for m in train)} spam), test {len(test)} "
        f"({sum(m.is_spam for m in test)} spam)",
        file=sys.stderr,
    )
    filters: list[tuple[str, float, Runner]] = [
        ("tayori builtin (standard)", SpamEngine(MemoryTokenStore()).threshold(), run_builtin)
    ]
    if args.sqlite:
        filters.append(("tayori builtin, SQLite store", filters[0][1], run_builtin_sqlite))
    if shutil.which("bogofilter"):
        filters.append(("bogofilter (spamicity >= 0.99)", 0.99, run_bogofilter))
    else:
        print("bogofilter not installed: skipped", file=sys.stderr)
    if not shutil.which("spamassassin"):
        print("SpamAssassin not installed: skipped", file=sys.stderr)
    rows = []
    for name, threshold, run in filters:
        spam, ham, times, train_seconds = run(train, test)
        result = metrics(spam, ham, threshold)
        row = {
            "filter": name,
            **asdict(result),
            "recall_at_fp_0.1%": recall_at_fp(spam, ham, 0.001),
            "median_ms": statistics.median(times) * 1000.0,
            "p99_ms": sorted(times)[int(len(times) * 0.99)] * 1000.0,
            "train_seconds": train_seconds,
        }
        if name.startswith("tayori"):
            engine = SpamEngine(MemoryTokenStore())
            for level in Sensitivity:
                at = metrics(spam, ham, engine.threshold(level))
                row[f"{level.value}: recall / fp"] = (
                    f"{at.spam_recall:.2%} / {at.ham_false_positive_rate:.2%}"
                )
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        "| filter | spam caught | ham wrongly junked | (1-AUC) % | recall at FP<=0.1% "
        "| median ms | p99 ms | training s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['filter']} | {row['spam_recall']:.2%} | "
            f"{row['ham_false_positive_rate']:.2%} | {row['one_minus_auc_percent']:.4f} | "
            f"{row['recall_at_fp_0.1%']:.2%} | {row['median_ms']:.2f} | {row['p99_ms']:.1f} | "
            f"{row['train_seconds']:.1f} |"
        )
        for key, value in row.items():
            if ": recall / fp" in key:
                print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
