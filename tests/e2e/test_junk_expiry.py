"""Junk retention through the real store: mail filed in Junk over SMTP is deleted by
`tayori junk expire` once older than `[spam] junk_retention_days`, with a `junk.expired`
outcome, and not before. The clock is moved with `--now`, never by waiting."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta

import pytest

from tayori.storage.factory import open_stores
from tayori.storage.records import SpecialUse
from tests.e2e.conftest import Instance

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"


def junk_count(instance: Instance, url: str) -> int:
    stores = open_stores(url, instance.root)
    try:
        account = stores.metadata.get_account(ALICE)
        assert account is not None
        junk = stores.metadata.get_mailbox(account.id, SpecialUse.JUNK)
        return len(stores.metadata.list_messages(junk.id))
    finally:
        stores.close()


def test_junk_older_than_the_retention_is_purged_with_an_outcome(
    make_instance: object, backend: str
) -> None:
    instance: Instance = make_instance("\n[spam]\njunk_retention_days = 10\n")  # type: ignore[operator]
    instance.add_user(ALICE)
    instance.cli("rules", "add", ALICE, "pest@remote.test", "--action", "junk")
    instance.start()
    with smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30) as client:
        client.ehlo("mx.remote.test")
        for subject in ("spam one", "spam two"):
            client.sendmail(
                "pest@remote.test",
                [ALICE],
                f"From: pest@remote.test\r\nSubject: {subject}\r\n\r\nBuy.\r\n".encode(),
            )
        client.sendmail(
            "s@remote.test", [ALICE], b"From: s@remote.test\r\nSubject: hi\r\n\r\nx\r\n"
        )
    assert junk_count(instance, backend) == 2

    nine_days = (datetime.now(UTC) + timedelta(days=9)).isoformat()
    assert "deleted 0 Junk messages" in instance.cli("junk", "expire", "--now", nine_days)
    assert junk_count(instance, backend) == 2

    eleven_days = (datetime.now(UTC) + timedelta(days=11)).isoformat()
    out = instance.cli("junk", "expire", "--now", eleven_days)
    assert "deleted 2 Junk messages older than 10 days" in out
    assert junk_count(instance, backend) == 0
    expired = [o for o in instance.outcomes("--account", ALICE) if o["reason"] == "junk.expired"]
    assert sorted(str(o["subject"]) for o in expired) == ["spam one", "spam two"]
    assert all(o["outcome"] == "discarded" for o in expired)
    # The inbox is never touched.
    delivered = [o for o in instance.outcomes("--account", ALICE) if o["reason"] == "delivered"]
    assert len(delivered) == 1
    assert instance.stop() == 0
