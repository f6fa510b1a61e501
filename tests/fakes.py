"""In-memory stand-ins for the store interfaces, for tests that are not about storage.

They follow the contract in `tayori.storage.interfaces` closely enough for servers to run
against them (locks expire, expunge is all-or-nothing, blobs stream), and offer switches to
make a call fail. Methods a test has not needed yet raise NotImplementedError.
"""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import BinaryIO

from tayori.core.errors import ConflictError, NotFoundError, StoreUnavailableError
from tayori.storage.interfaces import MessageRef
from tayori.storage.records import (
    Account,
    AccountStatus,
    Mailbox,
    MessageSummary,
    SpecialUse,
    StoredMessage,
)

FIXED_TIME = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)


class FakeBlobStore:
    """Blobs as bytes in a dict; `open` returns a BytesIO (or whatever a test registers)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.streams: dict[str, Callable[[], BinaryIO]] = {}
        """Refs served by a factory instead of stored bytes (huge generated messages)."""
        self.deleted: list[str] = []
        self.fail_open = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def put(self, chunks: Iterable[bytes]) -> str:
        data = b"".join(chunks)
        with self._lock:
            ref = f"blob-{next(self._ids)}"
            self.blobs[ref] = data
        return ref

    def open(self, ref: str) -> BinaryIO:
        if self.fail_open:
            raise StoreUnavailableError("blob store switched off by the test")
        if ref in self.streams:
            return self.streams[ref]()
        try:
            return io.BytesIO(self.blobs[ref])
        except KeyError:
            raise NotFoundError(f"no blob {ref}") from None

    def delete(self, refs: Iterable[str]) -> None:
        with self._lock:
            for ref in refs:
                self.deleted.append(ref)
                self.blobs.pop(ref, None)
                self.streams.pop(ref, None)


@dataclass
class _Lock:
    holder: str
    until: datetime


class FakeMetadataStore:
    """Accounts, mailboxes, messages and maildrop locks in dicts, guarded by one lock."""

    def __init__(self, clock: Callable[[], datetime] = lambda: FIXED_TIME) -> None:
        self.clock = clock
        self.accounts: dict[int, Account] = {}
        self.mailboxes: dict[int, Mailbox] = {}
        self.messages: dict[int, StoredMessage] = {}
        self.locks: dict[int, _Lock] = {}
        self.fail_expunge = False
        self.fail_list = False
        self.expunged: list[int] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # --- setup helpers (not part of the interface) ------------------------------------

    def add_account(
        self,
        address: str,
        password_hash: str,
        quota_bytes: int = 0,
        status: AccountStatus = AccountStatus.ACTIVE,
    ) -> Account:
        with self._lock:
            account = Account(
                id=next(self._ids),
                address=address.lower(),
                domain_id=1,
                password_hash=password_hash,
                quota_bytes=quota_bytes,
                used_bytes=0,
                status=status,
                created=self.clock(),
            )
            self.accounts[account.id] = account
            for use in SpecialUse:
                mailbox_id = next(self._ids)
                self.mailboxes[mailbox_id] = Mailbox(
                    id=mailbox_id,
                    account_id=account.id,
                    name=use.value,
                    special_use=use,
                    uidvalidity=1_700_000_000 + mailbox_id,
                    uidnext=1,
                    highestmodseq=1,
                )
        return account

    def deliver(
        self, account_id: int, ref: str, size: int, mailbox: SpecialUse = SpecialUse.INBOX
    ) -> StoredMessage:
        """Append a message whose blob is stored already."""
        with self._lock:
            box = self._mailbox(account_id, mailbox)
            message = StoredMessage(
                id=next(self._ids),
                mailbox_id=box.id,
                uid=box.uidnext,
                modseq=box.highestmodseq + 1,
                flags=frozenset(),
                internal_date=self.clock(),
                size=size,
                blob_ref=ref,
                summary=MessageSummary(),
            )
            self.mailboxes[box.id] = replace(
                box, uidnext=box.uidnext + 1, highestmodseq=message.modseq
            )
            self.messages[message.id] = message
        return message

    def set_status(self, account_id: int, status: AccountStatus) -> None:
        with self._lock:
            self.accounts[account_id] = replace(self.accounts[account_id], status=status)

    # --- the MetadataStore methods servers use ----------------------------------------

    def get_account(self, address: str) -> Account | None:
        wanted = address.lower()
        with self._lock:
            return next((a for a in self.accounts.values() if a.address == wanted), None)

    def get_account_by_id(self, account_id: int) -> Account | None:
        with self._lock:
            return self.accounts.get(account_id)

    def _mailbox(self, account_id: int, special_use: SpecialUse) -> Mailbox:
        for box in self.mailboxes.values():
            if box.account_id == account_id and box.special_use == special_use:
                return box
        raise NotFoundError(f"account {account_id} has no {special_use} mailbox")

    def get_mailbox(self, account_id: int, special_use: SpecialUse) -> Mailbox:
        with self._lock:
            return self._mailbox(account_id, special_use)

    def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        with self._lock:
            return [box for box in self.mailboxes.values() if box.account_id == account_id]

    def list_messages(self, mailbox_id: int) -> list[StoredMessage]:
        if self.fail_list:
            raise StoreUnavailableError("metadata store switched off by the test")
        with self._lock:
            found = [m for m in self.messages.values() if m.mailbox_id == mailbox_id]
        return sorted(found, key=lambda m: m.uid)

    def list_message_refs(self, mailbox_id: int) -> list[MessageRef]:
        return [MessageRef(m.id, m.uid, m.size, m.blob_ref) for m in self.list_messages(mailbox_id)]

    def expunge(self, mailbox_id: int, message_ids: Iterable[int]) -> list[str]:
        if self.fail_expunge:
            raise StoreUnavailableError("metadata store switched off by the test")
        refs = []
        with self._lock:
            for message_id in message_ids:
                message = self.messages.get(message_id)
                if message is not None and message.mailbox_id == mailbox_id:
                    del self.messages[message_id]
                    self.expunged.append(message_id)
                    refs.append(message.blob_ref)
        return refs

    def try_lock_maildrop(self, account_id: int, holder: str, until: datetime) -> bool:
        with self._lock:
            if account_id not in self.accounts:
                raise NotFoundError(f"there is no account {account_id}")
            current = self.locks.get(account_id)
            if current is not None and current.holder != holder and current.until > self.clock():
                return False
            self.locks[account_id] = _Lock(holder, until)
            return True

    def refresh_maildrop_lock(self, account_id: int, holder: str, until: datetime) -> None:
        with self._lock:
            current = self.locks.get(account_id)
            if current is None or current.holder != holder:
                raise ConflictError(f"the maildrop lock of {account_id} is not held by {holder}")
            current.until = until

    def release_maildrop_lock(self, account_id: int, holder: str) -> None:
        with self._lock:
            current = self.locks.get(account_id)
            if current is not None and current.holder == holder:
                del self.locks[account_id]

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotImplementedError(f"FakeMetadataStore.{name} is not faked yet")
