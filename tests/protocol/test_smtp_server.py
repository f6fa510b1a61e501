"""The inbound SMTP server in-process on loopback, over the real SQLite store, with faults
injected at the storage edge: a failed store answers 451 and leaves nothing half-stored."""

from __future__ import annotations

import asyncio
import errno
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from tayori.auth.passwords import hash_password
from tayori.config.settings import LimitsSettings
from tayori.core.errors import StoreUnavailableError
from tayori.delivery.committer import DeliveryCommitter
from tayori.delivery.local import LocalDelivery
from tayori.servers.limits import ConnectionLimiter
from tayori.servers.smtp_inbound import InboundHandler
from tayori.servers.smtp_session import SmtpListener
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.records import AppendResult, NewMessage, SpecialUse

MESSAGE = b"From: s@remote.test\r\nSubject: fault test\r\n\r\nbody\r\n"


class FailingBlobs:
    """Wraps the real blob store; `full` makes writes fail as a full disk does, and
    `room_for` (when not None) lets that many more writes through first."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.full = False
        self.room_for: int | None = None

    def put(self, chunks: Iterable[bytes]) -> str:
        if self.full:
            if not self.room_for:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.room_for -= 1
        return self.inner.put(chunks)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class FailingMetadata:
    """Wraps the real metadata store; `down` makes the commit fail as a lost database does."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.down = False

    def append_messages(
        self,
        items: Sequence[NewMessage],
        late: Callable[[], Sequence[NewMessage]] | None = None,
    ) -> list[AppendResult]:
        if self.down:
            raise StoreUnavailableError("database unavailable")
        return self.inner.append_messages(items, late)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@dataclass
class Running:
    port: int
    stores: Stores
    blobs: FailingBlobs
    metadata: FailingMetadata
    blob_root: Path


@pytest.fixture(params=[False, True], ids=["copies-in-worker", "copies-in-committer"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    """Both places the copies can be written (`LocalDelivery(copies_in_committer=…)`)."""
    migrate("", tmp_path)
    stores = open_stores("", tmp_path)
    stores.metadata.add_domain("example.test")
    stores.metadata.add_account("alice@example.test", hash_password("pw"), 0)
    stores.metadata.add_account("bob@example.test", hash_password("pw"), 0)
    blobs = FailingBlobs(stores.blobs)
    metadata = FailingMetadata(stores.metadata)
    loop = asyncio.new_event_loop()
    committer = DeliveryCommitter(metadata)  # type: ignore[arg-type]
    committer.start()
    delivery = LocalDelivery(
        metadata,  # type: ignore[arg-type]
        blobs,  # type: ignore[arg-type]
        committer,
        "mx.example.test",
        copies_in_committer=request.param,
    )
    limits = LimitsSettings()
    smtp = SmtpListener(
        InboundHandler(metadata, delivery, limits),  # type: ignore[arg-type]
        hostname="mx.example.test",
        limits=limits,
        ssl_context=None,
        limiter=ConnectionLimiter(100, 100),
    )
    started = threading.Event()
    ports: list[int] = []

    async def main() -> None:
        listener = await smtp.start("127.0.0.1", 0)
        ports.append(listener.sockets[0].getsockname()[1])
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(main(), loop).result(10)
    assert started.wait(10)
    yield Running(ports[0], stores, blobs, metadata, tmp_path / "messages")
    asyncio.run_coroutine_threadsafe(smtp.close(grace=1), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    committer.stop()
    stores.close()


def inbox(running: Running) -> list[object]:
    account = running.stores.metadata.get_account("alice@example.test")
    assert account is not None
    box = running.stores.metadata.get_mailbox(account.id, SpecialUse.INBOX)
    return list(running.stores.metadata.list_messages(box.id))


def blob_files(running: Running) -> list[Path]:
    return [p for p in running.blob_root.rglob("*") if p.is_file()]


def send(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("s@remote.test", ["alice@example.test"], MESSAGE)


def test_disk_full_answers_451_and_stores_nothing(server: Running) -> None:
    server.blobs.full = True
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server.port)
    assert refused.value.smtp_code == 451
    assert (
        refused.value.smtp_error == b"4.3.0 Temporary failure storing the message, try again later"
    )
    assert inbox(server) == []
    assert blob_files(server) == []
    [outcome] = server.stores.metadata.list_outcomes()
    assert (outcome.outcome.outcome, outcome.outcome.reason) == ("deferred", "store.failed")
    assert "No space left" in outcome.outcome.detail
    server.blobs.full = False
    send(server.port)  # the sender's retry succeeds
    assert len(inbox(server)) == 1


def test_disk_full_after_one_of_two_copies_leaves_neither(server: Running) -> None:
    server.blobs.full = True
    server.blobs.room_for = 1  # alice's copy is written, bob's is not
    with (
        pytest.raises(smtplib.SMTPDataError) as refused,
        smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client,
    ):
        client.sendmail("s@remote.test", ["alice@example.test", "bob@example.test"], MESSAGE)
    assert refused.value.smtp_code == 451
    assert server.blobs.room_for == 0
    assert inbox(server) == []
    assert blob_files(server) == []  # the copy that was written is removed again
    outcomes = server.stores.metadata.list_outcomes()
    assert sorted(o.outcome.recipient for o in outcomes) == [
        "alice@example.test",
        "bob@example.test",
    ]
    assert {o.outcome.reason for o in outcomes} == {"store.failed"}


def test_database_down_at_commit_answers_451_and_removes_the_blob(server: Running) -> None:
    server.metadata.down = True
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server.port)
    assert refused.value.smtp_code == 451
    assert inbox(server) == []
    assert blob_files(server) == []  # written durably first, then removed again


def greeted(sock: socket.socket) -> BinaryIO:
    """The connection past the greeting and EHLO: a reader of the server's replies."""
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220 ")
    sock.sendall(b"EHLO c.remote.test\r\n")
    while not reader.readline().startswith(b"250 "):
        pass
    return reader


def test_the_ehlo_reply_leaves_in_one_write(server: Running) -> None:
    """aiosmtpd pushes the EHLO reply line by line; sent together, one read gets it all,
    every extension still listed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        assert sock.recv(65536).startswith(b"220 ")
        sock.sendall(b"EHLO c.remote.test\r\n")
        lines = sock.recv(65536).splitlines()
        assert lines[0].startswith(b"250-mx.example.test")
        assert all(line.startswith(b"250-") for line in lines[:-1])
        assert lines[-1].startswith(b"250 ")
        for extension in (b"SIZE", b"8BITMIME", b"SMTPUTF8", b"PIPELINING", b"ENHANCEDSTATUSCODES"):
            assert any(line[4:].startswith(extension) for line in lines), extension
        sock.sendall(b"QUIT\r\n")
        assert sock.recv(65536).startswith(b"221 ")


def test_pipelined_transaction(server: Running) -> None:
    """A client that sends MAIL, RCPTs and DATA in one packet gets the answers in order and
    together (RFC 2920: one write, so one read gets them all); HELP still knows the
    commands our session class overrides."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        reader = greeted(sock)
        sock.sendall(
            b"MAIL FROM:<s@remote.test> SIZE=50\r\nRCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nDATA\r\n"
        )
        replies = sock.recv(65536).splitlines()
        assert len(replies) == 4
        assert replies[0].startswith(b"250 2.1.0")
        assert replies[1].startswith(b"250 2.1.5")
        assert replies[2].startswith(b"550 5.1.1")
        assert replies[3].startswith(b"354")
        sock.sendall(MESSAGE + b".\r\nHELP MAIL\r\nHELP DATA\r\nQUIT\r\n")
        assert reader.readline().startswith(b"250 2.0.0 Ok: queued as")
        assert reader.readline().startswith(b"250 2.0.0 Syntax: MAIL FROM: <address>")
        assert reader.readline().startswith(b"250 2.0.0 Syntax: DATA")
        assert reader.readline().startswith(b"221 2.0.0")
    assert len(inbox(server)) == 1


def test_data_cut_anywhere_is_stored_unstuffed(server: Running) -> None:
    """DATA arriving in awkward TCP pieces (the terminator's CRLF in one write, its dot in
    the next; a stuffed dot at a write's start) ends at <CRLF>.<CRLF> only, is stored with
    the stuffing undone, and the next pipelined transaction in the same write is served."""
    body = b"From: s@remote.test\r\nSubject: cut\r\n\r\n.hidden\r\nend.\r\n..\r\nlast"
    wire = b"From: s@remote.test\r\nSubject: cut\r\n\r\n..hidden\r\nend.\r\n...\r\nlast"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = greeted(sock)
        sock.sendall(b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [reader.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        for part in (wire[:37], wire[37:50], wire[50:], b"\r\n", b".", b"\r", b"\n"):
            sock.sendall(part)
            time.sleep(0.05)  # separate reads on the server
        assert reader.readline().startswith(b"250 2.0.0 Ok: queued as")
        sock.sendall(
            b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n.\r\nQUIT\r\n"
        )
        replies = [reader.readline()[:3] for _ in range(5)]
        assert replies == [b"250", b"250", b"354", b"250", b"221"]
    stored = []
    for found in inbox(server):
        with server.stores.blobs.open(found.blob_ref) as blob:  # type: ignore[attr-defined]
            stored.append(blob.read())
    assert len(stored) == 2
    assert stored[0].endswith(b"\r\n" + body + b"\r\n")
    assert stored[1].startswith(b"Return-Path: <s@remote.test>\r\n")
    assert b"\r\n\r\n" not in stored[1]  # the empty message: our trace headers only
