"""The member's delivery history and its privacy, through `tayori serve` and the CLI: a
member sees their own outcomes (refusals that never became messages included) in plain
words with a link, and never another member's outcomes or any private detail."""

from __future__ import annotations

import json
import smtplib
from typing import Any

import pytest

from tests.e2e.conftest import Instance
from tests.e2e.test_doctor import ALICE, BOB, message, send

pytestmark = pytest.mark.e2e

PRIVATE_KEYS = {"detail", "remote_ip", "remote_host", "reply", "account_id"}


def history(instance: Instance, address: str, *args: str) -> list[dict[str, Any]]:
    text = instance.cli("history", "show", address, "--json", *args)
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_history_rows_speak_plainly_and_link_to_the_remedy(instance: Instance) -> None:
    instance.cli("rules", "add", ALICE, "pest@remote.test")
    send(instance, message("welcome"))
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(instance, message("spam", sender="pest@remote.test"), sender="pest@remote.test")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(instance, message("typo"), sender="x@nowhere.test")
    rows = history(instance, ALICE, "--lang", "en")
    assert [r["reason"] for r in rows] == ["sender.domain_unknown", "rule.reject", "delivered"]
    refused, rejected, delivered = rows
    assert refused["recipient"] == ALICE  # refused before the account was known, still hers
    assert rejected["summary"].startswith("It matched your reject settings")
    assert rejected["action"].startswith("If you want mail from this sender")
    assert rejected["link"] == "/settings/spam#reject-title"
    assert delivered["subject"] == "welcome"
    assert delivered["link"].startswith("/message/")
    for row in rows:
        assert not PRIVATE_KEYS & set(row)
    ja = history(instance, ALICE, "--lang", "ja")
    assert ja[1]["summary"].startswith("受信拒否設定に一致したため")
    # Filters: direction, sender/recipient, subject, outcome.
    assert [r["subject"] for r in history(instance, ALICE, "--subject", "WELC")] == ["welcome"]
    assert [r["reason"] for r in history(instance, ALICE, "--outcome", "rejected")] == [
        "sender.domain_unknown",
        "rule.reject",
    ]
    assert [r["reason"] for r in history(instance, ALICE, "--party", "pest@")] == ["rule.reject"]
    assert history(instance, ALICE, "--direction", "out") == []
    assert history(instance, ALICE, "--since", "2099-01-01") == []


def test_members_never_see_each_others_outcomes(instance: Instance) -> None:
    instance.cli("rules", "add", BOB, "pest@remote.test")
    send(instance, message("for bob only", sender="secret@remote.test"), to=BOB)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(instance, message("x", sender="pest@remote.test"), sender="pest@remote.test", to=BOB)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(instance, message("y"), sender="x@nowhere.test", to=BOB)
    assert len(instance.outcomes()) == 3
    assert history(instance, ALICE) == []
    findings = json.loads(instance.cli("doctor", ALICE, "--json", "--sender", "pest@remote.test"))
    assert [f["reason"] for f in findings] == ["no_attempt"]
    for sender in ("secret@remote.test", "remote.test", "x@nowhere.test"):
        text = instance.cli("doctor", ALICE, "--json", "--sender", sender)
        assert "bob" not in text and "for bob only" not in text
    everything = instance.cli("doctor", ALICE, "--json", "--lang", "en")
    assert json.loads(everything) == []
    # Bob's own view has them, still without the private detail.
    mine = history(instance, BOB)
    assert {r["reason"] for r in mine} == {"delivered", "rule.reject", "sender.domain_unknown"}
    for row in mine:
        assert not PRIVATE_KEYS & set(row)
    # Private detail is the admin trace's alone.
    traced = [
        json.loads(line)
        for line in instance.cli("trace", "--recipient", BOB, "--json").splitlines()
    ]
    assert {t["remote_ip"] for t in traced} == {"127.0.0.1"}
    assert any("rule" in t["detail"] for t in traced)
    by_ip = instance.cli("trace", "--ip", "127.0.0.1", "--limit", "2", "--json").splitlines()
    assert len(by_ip) == 2
    assert instance.cli("trace", "--ip", "192.0.2.99", "--json").strip() == ""


def test_history_purge_command_uses_the_retention(instance: Instance) -> None:
    send(instance, message("recent"))
    assert instance.cli("history", "purge").strip() == "purged 0 outcomes older than 90 days"
    assert len(instance.outcomes()) == 1


def test_serve_purges_outcomes_older_than_the_retention(make_instance: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from tayori.config.loader import load_settings
    from tayori.core.outcome import Direction, Outcome, OutcomeKind
    from tayori.storage.factory import open_stores
    from tests.e2e.test_sending import eventually

    inst: Instance = make_instance("[history]\nretention_days = 30\n")
    inst.add_user(ALICE)
    settings = load_settings(inst.config)
    stores = open_stores(settings.storage.url, settings.server.data_dir)
    now = datetime.now(UTC)
    try:
        stores.metadata.record_outcomes(
            [
                Outcome(
                    Direction.INBOUND,
                    "old@remote.test",
                    ALICE,
                    OutcomeKind.DELIVERED,
                    "delivered",
                    subject=subject,
                    time=now - timedelta(days=days),
                )
                for subject, days in (("old", 31), ("recent", 29))
            ]
        )
    finally:
        stores.close()
    inst.start()
    eventually(lambda: len(inst.outcomes()) == 1, "the purge at start-up")
    assert [o["subject"] for o in inst.outcomes()] == ["recent"]
    assert inst.stop() == 0
