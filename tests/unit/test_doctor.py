"""The doctor's pieces without a server: remote replies explained, findings rendered in both
languages and ranked, history filters, and history retention driven by a fake clock on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.diagnostics.doctor import DoctorQuery
from tayori.diagnostics.findings import Evidence, Finding, Text, fill, ranked, spam_facts
from tayori.diagnostics.history import (
    HistoryFilter,
    HistoryJanitor,
    member_history,
    purge_history,
)
from tayori.diagnostics.remote_reply import RemoteRefusal, classify, explanation
from tayori.storage.factory import Stores, migrate, open_stores
from tests.conftest import temporary_pg_database

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (
            "550 5.1.1 <nobody@remote.test>: Recipient address rejected: User unknown",
            "user_unknown",
        ),
        ("550 No such user here", "user_unknown"),
        ("552 5.2.2 Mailbox full", "mailbox_full"),
        ("452 4.2.2 The email account that you tried to reach is over quota", "mailbox_full"),
        ("554 5.7.1 Service unavailable; sender has poor reputation", "reputation"),
        ("550 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org", "reputation"),
        ("550 5.7.1 Message blocked by policy", "blocked"),
        ("554 Transaction failed", "rejected"),
    ],
)
def test_remote_replies_are_classified(reply: str, kind: str) -> None:
    assert classify(reply) == RemoteRefusal(kind)


def test_every_remote_refusal_is_explained_in_both_languages() -> None:
    for kind in RemoteRefusal:
        for text in explanation(kind):
            assert text.ja.strip() and text.en.strip() and text.ja != text.en


def test_findings_fill_the_catalogue_and_add_specifics() -> None:
    finding = Finding(
        "dnsbl.listed",
        90,
        (Evidence("network", {"ip": "192.0.2.1", "zone": "bl.test"}),),
        "/compose",
        {"zone": "bl.test"},
        note=Text("補足。", "More."),
    )
    en, ja = finding.to_json("en"), finding.to_json("ja")
    assert en["summary"] == (
        "The network the message came from is on a blocklist (bl.test), so it was refused. More."
    )
    assert "bl.test" in ja["summary"] and ja["summary"].endswith("補足。")
    assert en["evidence"] == [{"kind": "network", "ip": "192.0.2.1", "zone": "bl.test"}]
    assert en["link"] == "/compose" and en["reason"] == "dnsbl.listed"
    assert fill("{zone} and {unknown}", {"zone": "z"}) == "z and ?"


def test_findings_are_ranked_most_likely_first_stable_among_equals() -> None:
    names = ["a", "b", "c", "d"]
    found = [
        Finding("spam.junk", 50, link=names[0]),
        Finding("rule.reject", 90, link=names[1]),
        Finding("no_attempt", 50, link=names[2]),
        Finding("message.large", 95, link=names[3]),
    ]
    assert [f.link for f in ranked(found)] == ["d", "b", "a", "c"]


def test_spam_facts_come_from_the_junk_outcome_detail() -> None:
    detail = (
        "queue_id=Q; spam.junk: score=0.9731; subject:free (0.99), pills (0.97) mailbox=Junk uid=3"
    )
    assert spam_facts(detail) == {
        "score": 0.9731,
        "top_reasons": "subject:free (0.99), pills (0.97)",
    }
    assert spam_facts("queue_id=Q mailbox=INBOX uid=1") == {}


def outcome(**changes: object) -> Outcome:
    base = Outcome(
        direction=Direction.INBOUND,
        sender="friend@remote.test",
        recipient="alice@example.test",
        outcome=OutcomeKind.REJECTED,
        reason="rule.reject",
        subject="Lunch on Friday",
        time=NOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_history_filter() -> None:
    row = outcome()
    assert HistoryFilter().matches(row)
    assert HistoryFilter(direction="in", party="FRIEND@", subject="lunch").matches(row)
    assert HistoryFilter(outcome="rejected").matches(row)
    assert HistoryFilter(outcome="rule.reject").matches(row)
    assert not HistoryFilter(direction="out").matches(row)
    assert not HistoryFilter(party="bob").matches(row)
    assert not HistoryFilter(subject="dinner").matches(row)
    assert not HistoryFilter(outcome="junked").matches(row)


def test_doctor_query_matches_a_sender_address_or_domain() -> None:
    row = outcome()
    assert DoctorQuery(sender="Friend@Remote.test").matches(row)
    assert DoctorQuery(sender="remote.test").matches(row)
    assert DoctorQuery(sender="@remote.test").matches(row)
    assert not DoctorQuery(sender="te.test").matches(row)
    assert not DoctorQuery(sender="other@remote.test").matches(row)
    assert DoctorQuery(subject="friday").matches(row)
    assert not DoctorQuery(subject="monday").matches(row)


# --- retention, on both back ends --------------------------------------------------------------


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    if request.param == "sqlite":
        migrate("", tmp_path)
        stores = open_stores("", tmp_path)
        yield stores
        stores.close()
        return
    with temporary_pg_database("tayori_doctor") as url:
        migrate(url, tmp_path)
        stores = open_stores(url, tmp_path)
        yield stores
        stores.close()


def test_old_outcomes_are_purged_after_the_retention(fresh_stores: Stores) -> None:
    metadata = fresh_stores.metadata
    metadata.record_outcomes(
        [
            outcome(subject="ancient", time=NOW - timedelta(days=200)),
            outcome(subject="old", time=NOW - timedelta(days=91)),
            outcome(subject="edge", time=NOW - timedelta(days=90) + timedelta(seconds=1)),
            outcome(subject="new", time=NOW - timedelta(days=1)),
        ]
    )
    clock = FakeClock(NOW)
    janitor = HistoryJanitor(metadata, 90, clock)
    assert janitor.run_once() == 2
    assert janitor.run_once() == 0
    assert [s.outcome.subject for s in metadata.list_outcomes()] == ["new", "edge"]
    clock.now += timedelta(days=1)
    assert janitor.run_once() == 1
    assert [s.outcome.subject for s in metadata.list_outcomes()] == ["new"]
    clock.now += timedelta(days=365)
    assert purge_history(metadata, clock.now, 0) == 0  # 0 days: kept for ever
    assert janitor.run_once() == 1
    assert metadata.list_outcomes() == []


def test_purge_works_in_batches(fresh_stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    metadata = fresh_stores.metadata
    monkeypatch.setattr(type(metadata), "_PURGE_BATCH", 3)
    metadata.record_outcomes(
        [outcome(subject=str(n), time=NOW - timedelta(days=100 + n)) for n in range(7)]
        + [outcome(subject="keep", time=NOW)]
    )
    assert metadata.purge_outcomes(NOW - timedelta(days=90)) == 7
    assert [s.outcome.subject for s in metadata.list_outcomes()] == ["keep"]


def test_the_janitor_task_purges_at_start_and_stops(tmp_path: Path) -> None:
    migrate("", tmp_path)
    stores = open_stores("", tmp_path)
    try:
        stores.metadata.record_outcomes([outcome(time=NOW - timedelta(days=100))])

        async def run() -> None:
            janitor = HistoryJanitor(stores.metadata, 90, FakeClock(NOW), interval=3600)
            janitor.start()
            for _ in range(200):
                if not stores.metadata.list_outcomes():
                    break
                await asyncio.sleep(0.01)
            await janitor.stop()

        asyncio.run(run())
        assert stores.metadata.list_outcomes() == []
    finally:
        stores.close()


def test_a_filtered_history_looks_further_back_than_one_scan(fresh_stores: Stores) -> None:
    """Filters the database cannot apply (part of an address, direction, result) run on the
    newest rows; when those do not fill the page, older rows are read too."""
    metadata = fresh_stores.metadata
    metadata.add_domain("example.test")
    account = metadata.add_account("alice@example.test", "x", 0)
    rows = [
        outcome(
            subject=f"news {n}",
            account_id=account.id,
            outcome=OutcomeKind.DELIVERED,
            reason="delivered",
            time=NOW - timedelta(minutes=n),
        )
        for n in range(40)
    ]
    rows.append(
        outcome(
            sender="rare@elsewhere.test",
            subject="the needle",
            account_id=account.id,
            time=NOW - timedelta(days=3),
        )
    )
    rows.append(
        outcome(
            subject="ärger im Büro",
            account_id=account.id,
            outcome=OutcomeKind.DELIVERED,
            reason="delivered",
            time=NOW - timedelta(days=4),
        )
    )
    metadata.record_outcomes(rows)

    def page(filters: HistoryFilter, limit: int = 100) -> list[str]:
        found = member_history(metadata, account, filters, lang="en", limit=limit, scan=5)
        return [row.subject for row in found]

    assert page(HistoryFilter(party="rare@")) == ["the needle"]
    assert page(HistoryFilter(outcome="rejected")) == ["the needle"]
    assert page(HistoryFilter(subject="NEEDLE")) == ["the needle"]
    assert page(HistoryFilter(subject="ÄRGER")) == ["ärger im Büro"]
    assert page(HistoryFilter(party="nobody@")) == []
    assert page(HistoryFilter(), limit=12) == [f"news {n}" for n in range(12)]
    assert len(page(HistoryFilter(direction="in"))) == 42
