"""Local delivery fills the search index in the same commit as the message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tayori.delivery import local
from tayori.delivery.committer import DeliveryCommitter
from tayori.delivery.local import LocalDelivery, Recipient
from tayori.delivery.trace import Arrival
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.records import MessageQuery, SpecialUse
from tayori.storage.search_terms import TERMS_VERSION

MESSAGE = (
    b"From: =?UTF-8?B?5bGx55Sw?= <yamada@remote.test>\r\nTo: alice@example.test\r\n"
    b"Subject: =?ISO-2022-JP?B?GyRCMnFFRBsoQg==?=\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=Shift_JIS\r\n\r\n"
    + "明日の会議について".encode("shift_jis")
    + b"\r\n"
)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    migrate("", tmp_path)
    opened = open_stores("", tmp_path)
    opened.metadata.add_domain("example.test")
    opened.metadata.add_account("alice@example.test", "h", 0)
    yield opened
    opened.close()


def arrival() -> Arrival:
    return Arrival(
        helo="remote.test",
        client_ip="192.0.2.1",
        client_host="remote.test",
        tls_version=None,
        tls_cipher=None,
        authenticated=False,
        smtputf8=False,
        extended=True,
        queue_id="Q1",
        time=datetime(2025, 3, 1, tzinfo=UTC),
    )


def deliver(stores: Stores) -> None:
    account = stores.metadata.get_account("alice@example.test")
    assert account is not None
    committer = DeliveryCommitter(stores.metadata)
    committer.start()
    try:
        delivery = LocalDelivery(stores.metadata, stores.blobs, committer, "mx.example.test")
        result = asyncio.run(
            delivery.deliver(
                "s@remote.test", [Recipient(account.address, account)], MESSAGE, arrival()
            )
        )
        assert result.delivered == 1
    finally:
        committer.stop()


def test_delivered_message_is_searchable_at_once(stores: Stores) -> None:
    deliver(stores)
    account = stores.metadata.get_account("alice@example.test")
    assert account is not None
    inbox = stores.metadata.get_mailbox(account.id, SpecialUse.INBOX)
    page = stores.metadata.query_messages(account.id, inbox.id, MessageQuery(text="会議"))
    assert page.total == 1
    assert stores.metadata.messages_to_index(TERMS_VERSION) == []
    by_sender = stores.metadata.query_messages(account.id, None, MessageQuery(sender="山田"))
    assert by_sender.total == 1


def test_a_failing_indexer_never_loses_the_message(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(raw: bytes) -> None:
        raise RuntimeError("indexer bug")

    monkeypatch.setattr(local, "message_index", broken)
    deliver(stores)
    pending = stores.metadata.messages_to_index(TERMS_VERSION)
    assert len(pending) == 1  # stored, and left for `tayori mailbox reindex`
