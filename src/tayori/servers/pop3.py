"""The POP3 listener: sockets, TLS, the maildrop lock and the store around `Pop3Machine`.

Everything a client can see is decided by the sans-I/O machine in `tayori.protocols.pop3`;
this module only moves bytes and calls the stores (always through `asyncio.to_thread`, as
the store contract asks). A session costs a few KiB while idle: no thread, no task, and a
maildrop snapshot of one small tuple per message.

Mail programs download in order (RETR 1, 2, 3, ...), one command per round trip, so the
server's CPU per command sets the download rate. Each connection is therefore an
`asyncio.Protocol`, not a stream and a task: received bytes go straight to the machine and
replies straight to the transport, with no task switch, future or timer per command. Only
commands that need the store or a handshake (login, STLS, UPDATE, a message not in memory)
run as a task, and the connection reads no further commands until that task is done. A
client that downloads in order has the next few small messages read in the same thread
hop (`_READAHEAD_MESSAGES`, at most `_READAHEAD_BYTES`), as whole responses ready to send
(dot-stuffed, with status line and terminator), so most RETRs are answered from memory with
one write and no copy: the memory a downloading session holds stays bounded, and a session
that never downloaded holds none. (Reading the next batch in the background before the
client asks was tried and dropped: with the GIL it cost more main-thread CPU than the hidden
hop saved, see bench/RESULTS.md.)

The idle timeout (RFC 1939 section 3) is one timer per connection that is re-armed only when
it fires, from the time of the last activity, not a timer per command.
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
from typing import BinaryIO, cast

from tayori.auth.authenticator import Authenticator, FailureKind, LoginFailure, LoginSuccess
from tayori.config.settings import AuthSettings, LimitsSettings
from tayori.core.outcome import utcnow
from tayori.protocols.dotstuff import TERMINATOR, DotStuffer, TopFilter
from tayori.protocols.pop3 import (
    IDLE_TIMEOUT,
    NEED_DATA,
    SHUTTING_DOWN,
    TOO_MANY_CONNECTIONS,
    Action,
    Authenticate,
    Close,
    LoginDenial,
    MaildropEntry,
    Pop3Config,
    Pop3Machine,
    Send,
    StartTls,
    StreamMessage,
    Update,
    err,
    retr_header,
)
from tayori.servers.limits import ConnectionLimiter, is_loopback
from tayori.storage.interfaces import BlobStore, MetadataStore
from tayori.storage.records import SpecialUse

log = logging.getLogger(__name__)

_WRITE_BUFFER_LIMIT = 256 * 1024
"""Bytes queued on a connection before we wait for the client to read them."""

_READAHEAD_MESSAGES = 32
"""Messages read ahead, in one thread hop, for a client downloading in order. A hop costs
about 90 us of CPU (more than answering a RETR from memory), so it is spread over many."""

_READAHEAD_BYTES = 256 * 1024
"""At most this much read ahead per session, so many downloading sessions stay small."""

_CLOSE_GRACE = 5.0
"""Seconds a closed connection may take to send its last bytes (or to finish the TLS
close) before it is cut off; its slot and maildrop lock are freed only then."""

LOCK_LOST = err("The maildrop lock was lost; nothing was deleted, please reconnect", "IN-USE")


@dataclass(frozen=True, slots=True)
class _Maildrop:
    """What the session holds while logged in: whose maildrop and under which lock."""

    account_id: int
    mailbox_id: int
    holder: str


class _Session(asyncio.Protocol):
    """One connection: feeds the machine and answers from memory what it can; anything
    that needs the store or a handshake runs as a task (`busy`) while reading waits.

    States that matter for timeouts and shutdown: `busy` (a task is running a command),
    `write_paused` (the client is not reading our replies), otherwise waiting for a
    command. `closed` is set once we close or lose the transport, `lost` once it is gone;
    `_maybe_finish` releases the maildrop lock and the connection slot once the transport
    is gone and no task runs any more (an UPDATE always finishes first).
    """

    __slots__ = (
        "busy",
        "closed",
        "ended",
        "entries",
        "eof",
        "evict_reply",
        "finished",
        "ip",
        "last_activity",
        "last_streamed",
        "lock_account",
        "loop",
        "lost",
        "machine",
        "maildrop",
        "paused_since",
        "read_ahead",
        "reading_paused",
        "server",
        "task",
        "timer",
        "transport",
        "updating",
        "writable",
        "write_paused",
    )

    def __init__(self, server: Pop3Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.machine: Pop3Machine | None = None
        self.ip = ""
        self.maildrop: _Maildrop | None = None
        self.lock_account: tuple[int, str] | None = None
        """Set before trying the lock, so a session cancelled mid-attempt still releases."""
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        """We closed the transport, or it was lost."""
        self.lost = False
        """The transport is gone (`connection_lost`, or cut off after `_CLOSE_GRACE`)."""
        self.eof = False
        """The client sent EOF: commands already received are still answered."""
        self.finished = False
        self.ended: asyncio.Future[None] | None = None
        """Made only when `Pop3Server.close` waits for this session."""
        self.updating = False
        self.evict_reply: bytes | None = None
        self.write_paused = False
        self.reading_paused = False
        self.writable: asyncio.Future[None] | None = None
        """A task streaming a big message waits on this while the client is not reading."""
        self.last_activity = 0.0
        self.paused_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.entries: list[MaildropEntry] = []
        """The snapshot taken at login (the machine's own list, shared, not copied)."""
        self.last_streamed = 0
        """Number of the message streamed last; the next one in order triggers read-ahead."""
        self.read_ahead: dict[int, bytes] = {}
        """Whole RETR responses (status line, dot-stuffed message, terminator) of messages
        read ahead, by message number; emptied as they are sent."""

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        server = self.server
        self.ip = ip = server.client_ip(transport)
        if server._closing or not server._limiter.acquire(ip):
            self.finished = True  # nothing was acquired, nothing to clean up
            self._close(SHUTTING_DOWN if server._closing else TOO_MANY_CONNECTIONS)
            return
        auth = server._auth_settings
        config = Pop3Config(
            hostname=server._hostname,
            stls_available=server._ssl_context is not None,
            tls_active=server._implicit_tls,
            plaintext_login_allowed=auth.allow_plaintext
            or (auth.allow_plaintext_on_loopback and is_loopback(ip)),
        )
        self.machine = machine = Pop3Machine(config)
        server._sessions.add(self)
        transport.set_write_buffer_limits(high=_WRITE_BUFFER_LIMIT)
        transport.write(machine.greeting())
        self.last_activity = self.loop.time()
        self.timer = self.loop.call_later(server._idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        assert self.machine is not None
        self.last_activity = self.loop.time()
        self.machine.receive_data(data)
        if self.busy or self.write_paused:
            # Not answering now; stop reading so a client pipelining without reading our
            # replies cannot make us buffer its input without bound.
            self._pause_reading()
            return
        self._process()

    def eof_received(self) -> bool:
        """Nothing more will come, but commands already received are still answered (a
        script may send its commands and then EOF); the connection closes when the machine
        wants more input. True keeps a TCP transport half open until then; TLS cannot be
        half open (asyncio closes it whatever we return, and warns about True)."""
        self.eof = True
        if not self.busy and not self.write_paused and not self.closed:
            self._process()
        return self.machine is not None and not self.machine.tls_active

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.writable is not None and not self.writable.done():
            self.writable.set_exception(ConnectionResetError("connection lost"))
        self._maybe_finish()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.paused_since = self.loop.time()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.last_activity = self.loop.time()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        if not self.busy and not self.closed:
            self._process()

    # --- commands -----------------------------------------------------------------------

    def _process(self) -> None:
        """Answer buffered commands until the machine needs more input, the client stops
        reading, or a command needs a task."""
        machine = self.machine
        transport = self.transport
        assert machine is not None and transport is not None
        read_ahead = self.read_ahead
        while True:
            if self.evict_reply is not None:
                self._close(self.evict_reply)
                return
            if self.write_paused:
                self._pause_reading()
                return
            action = machine.next_action()
            if action is NEED_DATA:
                if self.eof:
                    self._close(b"")
                    return
                if self.reading_paused:
                    self.reading_paused = False
                    transport.resume_reading()
                return
            kind = type(action)
            if kind is Send:
                transport.write(cast(Send, action).data)
                continue
            if kind is StreamMessage:
                stream = cast(StreamMessage, action)
                if stream.top_lines is None:
                    ready = read_ahead.pop(stream.number, None)
                    if ready is not None:
                        self.last_streamed = stream.number
                        transport.write(ready)
                        continue
            elif kind is Close and self.lock_account is None:
                self._close(cast(Close, action).reply)
                return
            self._start_task(action)
            return

    def _start_task(self, action: Action) -> None:
        self.busy = True
        self._pause_reading()
        self.task = task = self.loop.create_task(self._run(action))
        self.server._tasks.add(task)
        task.add_done_callback(self.server._tasks.discard)

    async def _run(self, action: Action) -> None:
        keep = False
        try:
            keep = await self.server._perform(self, action)
        except asyncio.CancelledError:
            # Only `Pop3Server.close` cancels, as a last resort.
            pass
        except (ConnectionError, TimeoutError, ssl.SSLError) as error:
            log.info(
                "pop3 connection ended: %s",
                type(error).__name__,
                extra={"event": "pop3.dropped", "ip": self.ip},
            )
        except Exception:
            log.exception("pop3 session failed", extra={"event": "pop3.error", "ip": self.ip})
        self.busy = False
        self.task = None
        if not keep:
            self._close(b"")
            return
        if self.closed:
            self._maybe_finish()
            return
        self.last_activity = self.loop.time()
        self._process()

    def _pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            assert self.transport is not None
            self.reading_paused = True
            self.transport.pause_reading()

    # --- output and the end of the connection -------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed:
            assert self.transport is not None
            self.transport.write(data)

    async def send(self, data: bytes) -> None:
        """Write, and wait while the client is not reading (a task's output: a big message
        streamed chunk by chunk must not pile up in memory)."""
        if self.closed:
            raise ConnectionResetError("connection closed")
        assert self.transport is not None
        self.transport.write(data)
        if self.write_paused:
            self.writable = self.loop.create_future()
            try:
                # A client that stops reading is as idle as one that stops writing; what
                # is queued for it would never be read, so the connection is cut off.
                async with asyncio.timeout(self.server._idle_timeout):
                    await self.writable
            except TimeoutError:
                self.abort()
                raise
            finally:
                self.writable = None

    def _close(self, reply: bytes) -> None:
        """Send a last reply (if any) and close; queued replies are still sent first."""
        if not self.closed:
            assert self.transport is not None
            self.closed = True
            if reply:
                self.transport.write(reply)
            self.transport.close()
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_later(_CLOSE_GRACE, self._close_expired)
        self._maybe_finish()

    def _close_expired(self) -> None:
        """The client did not take our last bytes (or answer the TLS close) in time."""
        self.timer = None
        if not self.lost:
            self.abort()

    def evict(self, reply: bytes) -> None:
        """End the session without UPDATE: now if it waits for a command, else after the
        command it is running."""
        if self.evict_reply is not None:
            return
        self.evict_reply = reply
        if not self.busy:
            self._close(reply)

    def abort(self) -> None:
        """Cut the connection off now; the cleanup follows once no task runs."""
        if self.transport is not None:
            self.transport.abort()
        self.closed = self.lost = True
        self._maybe_finish()

    def _check_idle(self) -> None:
        """The idle timer fired: end an idle session, or re-arm for the rest of the time."""
        self.timer = None
        if self.closed:
            return
        timeout = self.server._idle_timeout
        now = self.loop.time()
        if self.busy:
            # A task has its own bounds (its writes wait at most the timeout).
            remaining = timeout
        elif self.write_paused:
            remaining = self.paused_since + timeout - now
            if remaining <= 0:
                log.info(
                    "pop3 connection ended: %s",
                    "TimeoutError",
                    extra={"event": "pop3.dropped", "ip": self.ip},
                )
                self.abort()
                return
        else:
            remaining = self.last_activity + timeout - now
            if remaining <= 0:
                # RFC 1939 section 3: an autologout timer ends the session without UPDATE.
                self.evict_reply = IDLE_TIMEOUT
                self._close(IDLE_TIMEOUT)
                return
        self.timer = self.loop.call_later(remaining, self._check_idle)

    def _maybe_finish(self) -> None:
        """Once the transport is gone and no task runs: release the lock and the connection
        slot, exactly once."""
        if self.finished or not self.lost or self.busy:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.read_ahead = {}
        task = self.loop.create_task(self._cleanup())
        self.server._tasks.add(task)
        task.add_done_callback(self.server._tasks.discard)

    async def _cleanup(self) -> None:
        server = self.server
        server._sessions.discard(self)
        try:
            await server._release_lock(self)
        finally:
            server._limiter.release(self.ip)
            if self.ended is not None and not self.ended.done():
                self.ended.set_result(None)

    def wait_ended(self) -> asyncio.Future[None]:
        if self.ended is None:
            self.ended = self.loop.create_future()
            if self.finished and self not in self.server._sessions:
                self.ended.set_result(None)
        return self.ended


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
        self._idle_timeout = limits.pop3_idle_timeout
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
        """Commands and cleanups still running."""
        self._server: asyncio.Server | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._closing = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str, port: int) -> asyncio.Server:
        """Listen; port 0 picks a free port (see `ports`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Session(self),
            host,
            port,
            ssl=self._ssl_context if self._implicit_tls else None,
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
        waiting = {session.wait_ended() for session in self._sessions}
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=self._shutdown_grace)
            if pending:
                # Clients that do not read (or do not answer the TLS close) are cut off; the
                # sessions then fail on the dead connection and clean up as usual.
                for session in list(self._sessions):
                    if not session.updating:
                        session.abort()
                _, pending = await asyncio.wait(pending, timeout=self._shutdown_grace)
                if pending:
                    for session in list(self._sessions):
                        if session.task is not None:
                            session.task.cancel()
                    await asyncio.wait(pending, timeout=self._shutdown_grace)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._shutdown_grace)
        if self._server is not None:
            await self._server.wait_closed()

    def _evict(self, session: _Session, reply: bytes) -> None:
        """End a session without UPDATE: now if it waits for a command, else after the
        command it is running."""
        session.evict(reply)

    def client_ip(self, transport: asyncio.BaseTransport) -> str:
        """The client's address; tests override this to play a remote client on loopback."""
        peer = transport.get_extra_info("peername")
        return str(peer[0]) if peer else ""

    async def _perform(self, session: _Session, action: Action) -> bool:
        """Carry out one action that needs a task; False ends the session."""
        if isinstance(action, Send):
            await session.send(action.data)
            return True
        if isinstance(action, Close):
            # The maildrop lock goes before the last reply: a mail program that reconnects
            # as soon as QUIT is answered must not find its own mailbox still in use.
            await self._release_lock(session)
            session.write(action.reply)
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
        assert machine is not None
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
            # Only what a session needs per message, not full records: for 5,000 messages
            # ~8 ms of CPU instead of ~56 ms (bench/RESULTS.md, "POP3 login").
            refs = self._metadata.list_message_refs(inbox.id)
        except BaseException:
            self._metadata.release_maildrop_lock(account_id, holder)
            raise
        return inbox.id, inbox.uidvalidity, list(map(MaildropEntry._make, refs))

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
        assert machine is not None and maildrop is not None
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
        assert self._ssl_context is not None and session.machine is not None
        transport = session.transport
        assert transport is not None
        # Reading is paused since the command was taken (see `_Session._start_task`), and
        # the machine dropped whatever was pipelined after STLS (the STARTTLS command
        # injection attack): the TLS layer sees only what the client sends from now on.
        session.write(action.reply)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._idle_timeout):
            wrapped = await loop.start_tls(transport, session, self._ssl_context, server_side=True)
        if wrapped is None:
            return False
        session.transport = wrapped
        session.reading_paused = False  # start_tls resumed reading, now through TLS
        wrapped.set_write_buffer_limits(high=_WRITE_BUFFER_LIMIT)
        session.machine.tls_started()
        return True

    async def _stream(self, session: _Session, action: StreamMessage) -> bool:
        """A RETR or TOP that is not answered from the read-ahead: one thread hop opens the
        blob, reads it (whole, when small) and reads the next messages ahead."""
        whole = action.top_lines is None
        if whole and action.number == session.last_streamed + 1:
            ahead = self._plan(session.entries, action.number + 1)
        else:
            # A client picking messages or using TOP gets no read-ahead.
            ahead = []
        try:
            blob, first, read_ahead = await asyncio.to_thread(
                self._open_and_read, action.entry, ahead, whole
            )
        except Exception:
            log.exception("blob could not be opened", extra={"event": "pop3.blob_error"})
            await session.send(action.unavailable)
            return True
        if ahead:
            session.read_ahead = read_ahead
        if whole:
            session.last_streamed = action.number
        try:
            if blob is None and whole:
                # The whole response is in hand: status line, body and end at once.
                await session.send(first)
                return True
            await session.send(action.header)
            return await self._copy(session, blob, first, action.top_lines)
        finally:
            if blob is not None:
                await asyncio.to_thread(blob.close)

    def _plan(self, entries: list[MaildropEntry], start: int) -> list[tuple[int, MaildropEntry]]:
        """The messages to read ahead from number `start`: only messages that fit in one
        chunk (a big one is streamed by its own RETR), within the message count and byte
        budget."""
        plan: list[tuple[int, MaildropEntry]] = []
        budget = _READAHEAD_BYTES
        for number in range(start, min(len(entries), start + _READAHEAD_MESSAGES - 1) + 1):
            entry = entries[number - 1]
            if entry.size >= self._chunk_size or entry.size > budget:
                break
            budget -= entry.size
            plan.append((number, entry))
        return plan

    def _open_and_read(
        self, entry: MaildropEntry, ahead: list[tuple[int, MaildropEntry]], whole: bool
    ) -> tuple[BinaryIO | None, bytes, dict[int, bytes]]:
        """Open the blob and read its first chunk in one thread hop; a message that fits in
        one chunk (most do) is closed here too, so a RETR costs one hop, not four. Runs in a
        worker thread.

        With `whole` (a RETR), a message read completely comes back as its whole response
        (`_retr_response`); otherwise (TOP, or more than one chunk) the first chunk comes
        back as stored with the open blob. The messages in `ahead` are read whole in the
        same hop and come back as whole responses; one that cannot be read ends the
        read-ahead quietly (its own RETR then reports the error).
        """
        blob = self._blobs.open(entry.blob_ref)
        try:
            first = blob.read(self._chunk_size)
            if len(first) >= self._chunk_size:
                return blob, first, {}
        except BaseException:
            blob.close()
            raise
        blob.close()
        if whole:
            first = _retr_response(entry.size, first)
        return None, first, self._read_whole(ahead)

    def _read_whole(self, plan: list[tuple[int, MaildropEntry]]) -> dict[int, bytes]:
        """Whole RETR responses of the planned messages, in order; a message that cannot
        be read ends the list quietly (its own RETR then reports the error). Runs in a
        worker thread."""
        read: dict[int, bytes] = {}
        for number, entry in plan:
            try:
                with self._blobs.open(entry.blob_ref) as blob:
                    data = blob.read(self._chunk_size)
            except Exception:
                break
            if len(data) >= self._chunk_size:  # larger than the snapshot said: stream it
                break
            read[number] = _retr_response(entry.size, data)
        return read

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
                await session.send(out)
            if (top is not None and top.done) or blob is None:
                break
            try:
                chunk = await asyncio.to_thread(blob.read, self._chunk_size)
            except Exception:
                # Half a message is on the wire already; only closing tells the client.
                log.exception("blob read failed mid-message", extra={"event": "pop3.blob_error"})
                return False
        await session.send(stuffer.finish())
        return True


def _retr_response(size: int, message: bytes) -> bytes:
    """The whole RETR response for a message held in memory, with one copy: the status
    line, the message dot-stuffed (RFC 1939 section 3), then the terminator, after a CRLF
    when the message does not end with one. Byte for byte what `DotStuffer` makes of the
    message in any chunking (a test checks this); `DotStuffer` remains the streaming form."""
    body = message.replace(b"\n.", b"\n..")
    lead = b"." if message[:1] == b"." else b""
    end = TERMINATOR if not message or message.endswith(b"\r\n") else b"\r\n" + TERMINATOR
    return b"".join((retr_header(size), lead, body, end))


def _pop3_failure(failure: LoginFailure) -> tuple[LoginDenial, float | None]:
    if failure.kind is FailureKind.LOCKED_OUT:
        if failure.temporary:
            return LoginDenial.LOCKED_OUT, failure.retry_after
        return LoginDenial.LOCKED_OUT_PERMANENTLY, None
    if failure.kind is FailureKind.ACCOUNT_DISABLED:
        return LoginDenial.ACCOUNT_DISABLED, None
    return LoginDenial.BAD_CREDENTIALS, None
