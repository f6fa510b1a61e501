"""The POP3 listener: sockets, TLS, the maildrop lock and the store around `Pop3Machine`.

Everything a client can see is decided by the sans-I/O machine in `tayori.protocols.pop3`;
this module only moves bytes and calls the stores (always through `asyncio.to_thread`, as
the store contract asks). A session costs a few KiB while idle: no thread, a small read
size, and a maildrop snapshot of one small tuple per message.

Mail programs download in order (RETR 1, 2, 3, ...), one command per round trip. A thread hop
per message cost more CPU than the message itself, so a client that downloads in order has
the next few small messages read in the same hop (`_READAHEAD_MESSAGES`, at most
`_READAHEAD_BYTES`): the memory a downloading session holds stays bounded, and an idle
session holds none.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from tayori.auth.authenticator import Authenticator, FailureKind, LoginFailure, LoginSuccess
from tayori.config.settings import AuthSettings, LimitsSettings
from tayori.core.outcome import utcnow
from tayori.protocols.dotstuff import DotStuffer, TopFilter
from tayori.protocols.pop3 import (
    IDLE_TIMEOUT,
    SHUTTING_DOWN,
    TOO_MANY_CONNECTIONS,
    Action,
    Authenticate,
    Close,
    LoginDenial,
    MaildropEntry,
    NeedData,
    Pop3Config,
    Pop3Machine,
    Send,
    StartTls,
    StreamMessage,
    Update,
    err,
)
from tayori.servers.limits import ConnectionLimiter, is_loopback
from tayori.storage.interfaces import BlobStore, MetadataStore
from tayori.storage.records import SpecialUse

log = logging.getLogger(__name__)

_WRITE_BUFFER_LIMIT = 256 * 1024
"""Bytes queued on a connection before we wait for the client to read them."""

_READ_SIZE = 4096
"""Commands are short; a small read keeps idle sessions small."""

_READAHEAD_MESSAGES = 16
"""Messages read ahead, in one thread hop, for a client downloading in order."""

_READAHEAD_BYTES = 128 * 1024
"""At most this much read ahead per session, so many downloading sessions stay small."""

LOCK_LOST = err("The maildrop lock was lost; nothing was deleted, please reconnect", "IN-USE")


@dataclass(frozen=True, slots=True)
class _Maildrop:
    """What the session holds while logged in: whose maildrop and under which lock."""

    account_id: int
    mailbox_id: int
    holder: str


class _Session:
    __slots__ = (
        "entries",
        "evict_reply",
        "evicted",
        "ip",
        "last_streamed",
        "lock_account",
        "machine",
        "maildrop",
        "read_ahead",
        "reader",
        "reading",
        "updating",
        "writer",
    )

    def __init__(
        self,
        machine: Pop3Machine,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ip: str,
    ) -> None:
        self.machine = machine
        self.reader = reader
        self.writer = writer
        self.ip = ip
        self.maildrop: _Maildrop | None = None
        self.lock_account: tuple[int, str] | None = None
        """Set before trying the lock, so a session cancelled mid-attempt still releases."""
        self.reading = False
        self.updating = False
        self.evict_reply: bytes | None = None
        self.evicted = False
        """The server has sent `evict_reply` and closed the connection already."""
        self.entries: list[MaildropEntry] = []
        """The snapshot taken at login (the machine's own list, shared, not copied)."""
        self.last_streamed = 0
        """Number of the message streamed last; the next one in order triggers read-ahead."""
        self.read_ahead: dict[int, bytes] = {}
        """Whole messages read ahead, by message number; emptied as they are sent."""


class Pop3Server:
    """POP3 on one listener (plain with STLS, or implicit TLS).

    Wiring: one `Authenticator` (and so one `LoginThrottle`) shared by every protocol, one
    `ConnectionLimiter` per listener sharing the overall total; for port 110 pass
    `implicit_tls=False` and the TLS context (None disables STLS), for port 995
    `implicit_tls=True`.

    `now` gives the wall-clock time used for maildrop lock expiry; `lock_ttl` is how long a
    lock outlives a node that died without releasing it, and locks of live sessions are
    refreshed every `lock_refresh_interval` seconds by one task for the whole listener.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        authenticator: Authenticator,
        limits: LimitsSettings,
        auth_settings: AuthSettings,
        hostname: str,
        ssl_context: ssl.SSLContext | None,
        implicit_tls: bool,
        limiter: ConnectionLimiter,
        *,
        now: Callable[[], datetime] = utcnow,
        lock_ttl: float = 300.0,
        lock_refresh_interval: float = 60.0,
        chunk_size: int = 64 * 1024,
        shutdown_grace: float = 10.0,
    ) -> None:
        if implicit_tls and ssl_context is None:
            raise ValueError("implicit TLS needs an SSL context (a certificate)")
        self._metadata = metadata
        self._blobs = blobs
        self._authenticator = authenticator
        self._limits = limits
        self._auth_settings = auth_settings
        self._hostname = hostname
        self._ssl_context = ssl_context
        self._implicit_tls = implicit_tls
        self._limiter = limiter
        self._now = now
        self._lock_ttl = timedelta(seconds=lock_ttl)
        self._lock_refresh_interval = lock_refresh_interval
        self._chunk_size = chunk_size
        self._shutdown_grace = shutdown_grace
        self._holder_prefix = f"{hostname}/{os.getpid()}/{secrets.token_hex(4)}"
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        """Every connection handler still running, including its cleanup."""
        self._server: asyncio.Server | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._closing = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str, port: int) -> asyncio.Server:
        """Listen; port 0 picks a free port (see `ports`)."""
        self._server = await asyncio.start_server(
            self._handle,
            host,
            port,
            ssl=self._ssl_context if self._implicit_tls else None,
            limit=_READ_SIZE * 4,
        )
        self._refresher = asyncio.create_task(self._refresh_locks_forever())
        return self._server

    @property
    def ports(self) -> list[int]:
        """The bound ports (useful when started on port 0)."""
        if self._server is None:
            return []
        return [int(sock.getsockname()[1]) for sock in self._server.sockets]

    async def close(self) -> None:
        """Stop accepting, end idle sessions with [SYS/TEMP] (no UPDATE: nothing is deleted),
        let busy ones finish their command (an UPDATE always finishes), then return.

        Connections still open after `shutdown_grace` seconds (a client not reading a RETR,
        or not answering the TLS close) are aborted, except sessions in UPDATE; anything
        still running a second grace period later is cancelled.
        """
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._refresher is not None:
            self._refresher.cancel()
        for session in list(self._sessions):
            self._evict(session, SHUTTING_DOWN)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._shutdown_grace)
            if pending:
                # Clients that do not read (or do not answer the TLS close) are cut off; the
                # handlers then fail on the dead connection and clean up as usual.
                for session in list(self._sessions):
                    if not session.updating:
                        session.writer.transport.abort()
                _, pending = await asyncio.wait(pending, timeout=self._shutdown_grace)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _evict(self, session: _Session, reply: bytes) -> None:
        """End a session without UPDATE: now if it waits for a command, else after the
        command it is running."""
        if session.evict_reply is not None:
            return
        session.evict_reply = reply
        if session.reading:
            session.evicted = True
            session.writer.write(reply)
            session.writer.close()

    def client_ip(self, writer: asyncio.StreamWriter) -> str:
        """The client's address; tests override this to play a remote client on loopback."""
        peer = writer.get_extra_info("peername")
        return str(peer[0]) if peer else ""

    # --- one connection ----------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._connection(reader, writer)
        except asyncio.CancelledError:
            # Only `close()` cancels handlers, as a last resort; ending quietly here keeps
            # asyncio from logging the cancellation as a failure of the connection callback.
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = self.client_ip(writer)
        if self._closing or not self._limiter.acquire(ip):
            await self._close_writer(
                writer, SHUTTING_DOWN if self._closing else TOO_MANY_CONNECTIONS
            )
            return
        plaintext = self._auth_settings.allow_plaintext or (
            self._auth_settings.allow_plaintext_on_loopback and is_loopback(ip)
        )
        config = Pop3Config(
            hostname=self._hostname,
            stls_available=self._ssl_context is not None,
            tls_active=self._implicit_tls,
            plaintext_login_allowed=plaintext,
        )
        session = _Session(Pop3Machine(config), reader, writer, ip)
        self._sessions.add(session)
        try:
            await self._serve(session)
        except (ConnectionError, TimeoutError, ssl.SSLError) as error:
            log.info(
                "pop3 connection ended: %s",
                type(error).__name__,
                extra={"event": "pop3.dropped", "ip": ip},
            )
        except Exception:
            log.exception("pop3 session failed", extra={"event": "pop3.error", "ip": ip})
        finally:
            self._sessions.discard(session)
            await self._release_lock(session)
            await self._close_writer(writer, b"")
            self._limiter.release(ip)

    async def _close_writer(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        """Send a last reply (if any) and close, waiting a little for the close to finish."""
        if reply:
            writer.write(reply)
        writer.close()
        try:
            async with asyncio.timeout(5):
                await writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            pass

    async def _serve(self, session: _Session) -> None:
        machine = session.machine
        await self._send(session, machine.greeting())
        while True:
            if session.evict_reply is not None:
                if not session.evicted:
                    await self._send(session, session.evict_reply)
                return
            action = machine.next_action()
            if isinstance(action, NeedData):
                data = await self._read(session)
                if not data:
                    return
                machine.receive_data(data)
                continue
            if not await self._perform(session, action):
                return

    async def _read(self, session: _Session) -> bytes:
        """The next bytes from the client; empty on EOF, idle timeout or eviction."""
        session.reading = True
        try:
            async with asyncio.timeout(self._limits.pop3_idle_timeout):
                data = await session.reader.read(_READ_SIZE)
        except TimeoutError:
            # RFC 1939 section 3: an autologout timer ends the session without UPDATE.
            session.evicted = True
            await self._send(session, IDLE_TIMEOUT)
            return b""
        finally:
            session.reading = False
        return b"" if session.evicted else data

    async def _send(self, session: _Session, data: bytes) -> None:
        writer = session.writer
        writer.write(data)
        # Wait only when the client is not keeping up (most replies fit in the socket
        # buffer); a client that stops reading is as idle as one that stops writing.
        if writer.transport.get_write_buffer_size() > _WRITE_BUFFER_LIMIT:
            async with asyncio.timeout(self._limits.pop3_idle_timeout):
                await writer.drain()

    async def _perform(self, session: _Session, action: Action) -> bool:
        """Carry out one action; False ends the session."""
        if isinstance(action, Send):
            await self._send(session, action.data)
            return True
        if isinstance(action, Close):
            await self._send(session, action.reply)
            return False
        if isinstance(action, Authenticate):
            return await self._perform(session, await self._login(session, action))
        if isinstance(action, StartTls):
            return await self._start_tls(session, action)
        if isinstance(action, StreamMessage):
            return await self._stream(session, action)
        if isinstance(action, Update):
            return await self._perform(session, await self._update(session, action))
        raise AssertionError(f"unexpected action {action!r}")

    # --- login and the maildrop ------------------------------------------------------------

    async def _login(self, session: _Session, action: Authenticate) -> Action:
        machine = session.machine
        try:
            result = await self._authenticator.login(action.username, action.password, session.ip)
        except Exception:
            log.exception("login check failed", extra={"event": "pop3.auth_error"})
            return machine.login_failed(LoginDenial.UNAVAILABLE)
        if isinstance(result, LoginFailure):
            return machine.login_failed(*_pop3_failure(result))
        assert isinstance(result, LoginSuccess)
        account = result.account
        holder = f"{self._holder_prefix}/{secrets.token_hex(4)}"
        session.lock_account = (account.id, holder)
        try:
            opened = await asyncio.to_thread(self._open_maildrop, account.id, holder)
        except Exception:
            log.exception("maildrop could not be opened", extra={"event": "pop3.open_error"})
            return machine.login_failed(LoginDenial.UNAVAILABLE)
        if opened is None:
            session.lock_account = None  # the lock is someone else's: never release it
            log.info(
                "maildrop in use",
                extra={"event": "pop3.in_use", "account_id": account.id, "ip": session.ip},
            )
            return machine.login_failed(LoginDenial.IN_USE)
        mailbox_id, uidvalidity, entries = opened
        session.maildrop = _Maildrop(account.id, mailbox_id, holder)
        session.entries = entries
        log.info(
            "pop3 login",
            extra={
                "event": "pop3.login",
                "account_id": account.id,
                "ip": session.ip,
                "messages": len(entries),
            },
        )
        return machine.login_succeeded(account.address, uidvalidity, entries)

    def _open_maildrop(
        self, account_id: int, holder: str
    ) -> tuple[int, int, list[MaildropEntry]] | None:
        """Lock, then snapshot the INBOX (Junk is never served: POP3 has one folder, and
        spam in it would be downloaded and deleted from the server unseen). Runs in a
        worker thread."""
        if not self._metadata.try_lock_maildrop(account_id, holder, self._lock_until()):
            return None
        try:
            inbox = self._metadata.get_mailbox(account_id, SpecialUse.INBOX)
            messages = self._metadata.list_messages(inbox.id)
        except BaseException:
            self._metadata.release_maildrop_lock(account_id, holder)
            raise
        entries = [MaildropEntry(m.id, m.uid, m.size, m.blob_ref) for m in messages]
        return inbox.id, inbox.uidvalidity, entries

    def _lock_until(self) -> datetime:
        return self._now() + self._lock_ttl

    async def _release_lock(self, session: _Session) -> None:
        if session.lock_account is None:
            return
        account_id, holder = session.lock_account
        session.lock_account = None
        try:
            await asyncio.to_thread(self._metadata.release_maildrop_lock, account_id, holder)
        except Exception:
            # It expires by itself after lock_ttl; the member can reconnect then.
            log.exception("maildrop lock release failed", extra={"event": "pop3.unlock_error"})

    async def refresh_locks(self) -> None:
        """Push out the expiry of every lock this listener holds; a session whose lock was
        taken over (it expired while the store was unreachable) is ended without UPDATE."""
        held = [s for s in self._sessions if s.maildrop is not None and not s.updating]
        if not held:
            return
        lost = await asyncio.to_thread(self._refresh_all, held)
        for session in lost:
            log.warning("maildrop lock lost", extra={"event": "pop3.lock_lost", "ip": session.ip})
            self._evict(session, LOCK_LOST)

    def _refresh_all(self, sessions: list[_Session]) -> list[_Session]:
        lost = []
        until = self._lock_until()
        for session in sessions:
            maildrop = session.maildrop
            if maildrop is None:
                continue
            try:
                self._metadata.refresh_maildrop_lock(maildrop.account_id, maildrop.holder, until)
            except Exception:
                lost.append(session)
        return lost

    async def _refresh_locks_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lock_refresh_interval)
            try:
                await self.refresh_locks()
            except Exception:
                log.exception("maildrop lock refresh failed", extra={"event": "pop3.refresh"})

    async def _update(self, session: _Session, action: Update) -> Close:
        """RFC 1939 UPDATE: delete the marked messages, all or none."""
        machine = session.machine
        maildrop = session.maildrop
        assert maildrop is not None
        session.updating = True
        ids = [entry.message_id for entry in action.entries]
        try:
            refs = await asyncio.to_thread(self._expunge, maildrop, ids)
        except Exception:
            log.exception(
                "pop3 update failed; nothing deleted",
                extra={"event": "pop3.update_error", "account_id": maildrop.account_id},
            )
            return machine.update_finished(False)
        try:
            await asyncio.to_thread(self._blobs.delete, refs)
        except Exception:
            # The messages are gone from every listing; the files are only orphaned.
            log.exception("blob delete failed", extra={"event": "pop3.blob_delete_error"})
        log.info(
            "pop3 update",
            extra={"event": "pop3.update", "account_id": maildrop.account_id, "deleted": len(ids)},
        )
        return machine.update_finished(True, len(ids))

    def _expunge(self, maildrop: _Maildrop, ids: list[int]) -> list[str]:
        # Refreshing first proves the lock is still ours: if another session took over an
        # expired lock, its numbering must not be disturbed by our deletions.
        self._metadata.refresh_maildrop_lock(
            maildrop.account_id, maildrop.holder, self._lock_until()
        )
        return self._metadata.expunge(maildrop.mailbox_id, ids)

    # --- TLS and message streaming ---------------------------------------------------------

    async def _start_tls(self, session: _Session, action: StartTls) -> bool:
        assert self._ssl_context is not None
        await self._send(session, action.reply)
        if _buffered(session.reader):
            # Plain-text bytes after STLS would be read as if they came over TLS.
            log.info("pop3 client pipelined after STLS", extra={"event": "pop3.stls_injection"})
            return False
        async with asyncio.timeout(self._limits.pop3_idle_timeout):
            await session.writer.start_tls(self._ssl_context)
        session.machine.tls_started()
        return True

    async def _stream(self, session: _Session, action: StreamMessage) -> bool:
        blob: BinaryIO | None = None
        cached = session.read_ahead.pop(action.number, None)
        if cached is not None:
            first = cached
        else:
            ahead = self._read_ahead_plan(session, action)
            try:
                blob, first, session.read_ahead = await asyncio.to_thread(
                    self._open_and_read, action.entry.blob_ref, ahead
                )
            except Exception:
                log.exception("blob could not be opened", extra={"event": "pop3.blob_error"})
                await self._send(session, action.unavailable)
                return True
        if action.top_lines is None:
            session.last_streamed = action.number
        try:
            if blob is None and action.top_lines is None:
                # The whole message is in hand: status line, body and end in one write.
                stuffer = DotStuffer()
                body = stuffer.feed(first)
                await self._send(session, b"".join((action.header, body, stuffer.finish())))
                return True
            await self._send(session, action.header)
            return await self._copy(session, blob, first, action.top_lines)
        finally:
            if blob is not None:
                await asyncio.to_thread(blob.close)

    def _read_ahead_plan(self, session: _Session, action: StreamMessage) -> list[tuple[int, str]]:
        """The messages to read with this one: only for a RETR that follows the previous
        one in order (a client picking messages or using TOP gets no read-ahead), only
        messages that fit in one chunk, within the byte budget."""
        if action.top_lines is not None or action.number != session.last_streamed + 1:
            return []
        plan: list[tuple[int, str]] = []
        budget = _READAHEAD_BYTES
        entries = session.entries
        for number in range(action.number + 1, action.number + 1 + _READAHEAD_MESSAGES):
            if number > len(entries):
                break
            entry = entries[number - 1]
            if entry.size >= self._chunk_size or entry.size > budget:
                break
            budget -= entry.size
            plan.append((number, entry.blob_ref))
        return plan

    def _open_and_read(
        self, ref: str, ahead: list[tuple[int, str]]
    ) -> tuple[BinaryIO | None, bytes, dict[int, bytes]]:
        """Open the blob and read its first chunk in one thread hop; a message that fits in
        one chunk (most do) is closed here too, so a RETR costs one hop, not four. The
        messages in `ahead` are read whole in the same hop; one that cannot be read ends the
        read-ahead quietly (its own RETR then reports the error)."""
        blob = self._blobs.open(ref)
        try:
            first = blob.read(self._chunk_size)
            if len(first) >= self._chunk_size:
                return blob, first, {}
        except BaseException:
            blob.close()
            raise
        blob.close()
        read_ahead: dict[int, bytes] = {}
        for number, ahead_ref in ahead:
            try:
                with self._blobs.open(ahead_ref) as ahead_blob:
                    data = ahead_blob.read(self._chunk_size)
            except Exception:
                break
            if len(data) >= self._chunk_size:  # larger than the snapshot said: stream it
                break
            read_ahead[number] = data
        return None, first, read_ahead

    async def _copy(
        self, session: _Session, blob: BinaryIO | None, first: bytes, top_lines: int | None
    ) -> bool:
        """Stream the blob chunk by chunk; memory stays at about two chunks."""
        stuffer = DotStuffer()
        top = TopFilter(top_lines) if top_lines is not None else None
        chunk = first
        while chunk:
            if top is not None:
                chunk = top.feed(chunk)
            out = stuffer.feed(chunk)
            if out:
                await self._send(session, out)
            if (top is not None and top.done) or blob is None:
                break
            try:
                chunk = await asyncio.to_thread(blob.read, self._chunk_size)
            except Exception:
                # Half a message is on the wire already; only closing tells the client.
                log.exception("blob read failed mid-message", extra={"event": "pop3.blob_error"})
                return False
        await self._send(session, stuffer.finish())
        return True


def _buffered(reader: asyncio.StreamReader) -> bool:
    """Whether the reader holds bytes not handed to us yet. StreamReader has no public way
    to ask, so this reads its private buffer (present in CPython 3.11 to 3.13)."""
    buffer = getattr(reader, "_buffer", b"")
    return bool(buffer)


def _pop3_failure(failure: LoginFailure) -> tuple[LoginDenial, float | None]:
    if failure.kind is FailureKind.LOCKED_OUT:
        if failure.temporary:
            return LoginDenial.LOCKED_OUT, failure.retry_after
        return LoginDenial.LOCKED_OUT_PERMANENTLY, None
    if failure.kind is FailureKind.ACCOUNT_DISABLED:
        return LoginDenial.ACCOUNT_DISABLED, None
    return LoginDenial.BAD_CREDENTIALS, None
