"""The asyncio POP3 server on 127.0.0.1 against in-memory stores, driven by `poplib`.

Each test runs one event loop with `asyncio.run`; the blocking poplib client runs in a worker
thread (`asyncio.to_thread`) while the server serves on the loop.
"""

from __future__ import annotations

import asyncio
import gc
import io
import poplib
import socket
import ssl
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import pytest
import uvloop
from argon2 import PasswordHasher
from hypothesis import given, settings
from hypothesis import strategies as st

from tayori.auth.authenticator import Authenticator
from tayori.auth.throttle import LoginThrottle
from tayori.config.settings import AuthSettings, LimitsSettings
from tayori.protocols.dotstuff import DotStuffer
from tayori.protocols.sasl import encode_plain
from tayori.servers.limits import ConnectionLimiter
from tayori.servers.pop3 import _READAHEAD_BYTES, Pop3Server, _retr_response, _Session
from tayori.servers.tls import server_context, write_self_signed
from tayori.storage.records import SpecialUse
from tests.fakes import FIXED_TIME, FakeBlobStore, FakeMetadataStore

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
HOST = "127.0.0.1"
TIMEOUT = 5

MESSAGES = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nHello\r\n.\r\n..two dots\r\nbye\r\n",
    b"From: b@example.com\r\nSubject: two\r\n\r\n" + "日本語\r\n".encode() * 3,
    b"Subject: no final newline\r\n\r\nlast line",
]


class Clock:
    def __init__(self) -> None:
        self.monotonic = 0.0
        self.wall = FIXED_TIME

    def __call__(self) -> float:
        return self.monotonic


@dataclass
class Env:
    tmp_path: Path
    auth_settings: AuthSettings = field(
        default_factory=lambda: AuthSettings(max_failures_per_account=3, failure_window=60.0)
    )
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    max_per_ip: int = 50
    remote_ip: str | None = None
    """Play a client at this address (the connection still comes from loopback)."""
    shutdown_grace: float = 10.0
    loop: str = "asyncio"
    """The event loop: "asyncio", or "uvloop" as `tayori serve` runs (its transports differ)."""

    def __post_init__(self) -> None:
        self.clock = Clock()
        self.metadata = FakeMetadataStore(clock=lambda: self.clock.wall)
        self.blobs = FakeBlobStore()
        self.throttle = LoginThrottle(self.auth_settings, clock=self.clock)
        self.sleeps: list[float] = []
        self.account = self.metadata.add_account("alice@example.jp", FAST_HASHER.hash("pw"))
        self.other = self.metadata.add_account("bob@example.jp", FAST_HASHER.hash("pw"))
        for raw in MESSAGES:
            self.deliver(self.account.id, raw)
        self.deliver(self.account.id, b"Subject: spam\r\n\r\nbuy\r\n", SpecialUse.JUNK)

    def deliver(self, account_id: int, raw: bytes, mailbox: SpecialUse = SpecialUse.INBOX) -> None:
        self.metadata.deliver(account_id, self.blobs.put([raw]), len(raw), mailbox)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def certificate(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        """A server context and a client context that trusts it."""
        cert, key = self.tmp_path / "cert.pem", self.tmp_path / "key.pem"
        if not cert.exists():
            write_self_signed("mail.example.jp", cert, key)
        return server_context(cert, key), ssl.create_default_context(cafile=cert)

    def server(self, *, tls: bool = False, implicit_tls: bool = False) -> Pop3Server:
        context = self.certificate()[0] if tls or implicit_tls else None
        authenticator = Authenticator(
            self.metadata, self.throttle, self.auth_settings, sleep=self._sleep
        )
        server_class = _RemoteClientServer if self.remote_ip else Pop3Server
        server = server_class(
            self.metadata,
            self.blobs,
            authenticator,
            self.limits,
            self.auth_settings,
            "mail.example.jp",
            context,
            implicit_tls,
            ConnectionLimiter(1000, self.max_per_ip),
            now=lambda: self.clock.wall,
            shutdown_grace=self.shutdown_grace,
        )
        if isinstance(server, _RemoteClientServer):
            server.remote_ip = self.remote_ip or ""
        return server

    def run(
        self,
        scenario: Callable[[Pop3Server, int], Awaitable[None]],
        *,
        tls: bool = False,
        implicit_tls: bool = False,
    ) -> None:
        async def main() -> None:
            server = self.server(tls=tls, implicit_tls=implicit_tls)
            await server.start(HOST, 0)
            try:
                await scenario(server, server.ports[0])
            finally:
                await server.close()

        if self.loop == "uvloop":
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
        else:
            asyncio.run(main())

    def inbox_ids(self) -> list[int]:
        inbox = self.metadata.get_mailbox(self.account.id, SpecialUse.INBOX)
        return [message.id for message in self.metadata.list_messages(inbox.id)]


class _RemoteClientServer(Pop3Server):
    remote_ip = ""

    def client_ip(self, transport: asyncio.BaseTransport) -> str:
        return self.remote_ip


@pytest.fixture(params=["asyncio", "uvloop"])
def env(tmp_path: Path, request: pytest.FixtureRequest) -> Env:
    return Env(tmp_path, loop=request.param)


_CLIENTS: list[poplib.POP3] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """poplib leaves its socket open when a reply is an error; close every client we made."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def connect(port: int) -> poplib.POP3:
    client = poplib.POP3(HOST, port, timeout=TIMEOUT)
    _CLIENTS.append(client)
    return client


def login(port: int, user: str = "alice@example.jp") -> poplib.POP3:
    client = connect(port)
    client.user(user)
    client.pass_("pw")
    return client


async def in_thread(function: Callable[[], object]) -> None:
    await asyncio.to_thread(function)


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (briefly, on the loop) for the server to finish something the client cannot see."""
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.005)


def error_of(call: Callable[[], object]) -> str:
    with pytest.raises(poplib.error_proto) as raised:
        call()
    return raised.value.args[0].decode()


# --- sessions ------------------------------------------------------------------------------


def test_login_list_retrieve_and_quit(env: Env) -> None:
    def client(port: int) -> None:
        pop = connect(port)
        assert pop.getwelcome() == b"+OK mail.example.jp POP3 ready"
        capabilities = pop.capa()
        assert {"TOP", "UIDL", "USER", "SASL", "RESP-CODES", "PIPELINING"} <= set(capabilities)
        assert capabilities["SASL"] == ["PLAIN"]
        assert pop.user("alice@example.jp").startswith(b"+OK")
        assert pop.pass_("pw") == b"+OK Logged in; maildrop has 3 messages (%d octets)" % sum(
            map(len, MESSAGES)
        )
        assert pop.stat() == (3, sum(map(len, MESSAGES)))
        _, listing, _ = pop.list()
        assert listing == [b"%d %d" % (n + 1, len(raw)) for n, raw in enumerate(MESSAGES)]
        _, uids, _ = pop.uidl()
        assert len(set(uids)) == 3
        for number, raw in enumerate(MESSAGES, start=1):
            _, lines, _ = pop.retr(number)
            assert b"\r\n".join(lines) + b"\r\n" == raw.removesuffix(b"\r\n") + b"\r\n"
        _, lines, _ = pop.top(1, 1)
        assert lines == [b"From: a@example.com", b"Subject: one", b"", b"Hello"]
        assert pop.quit() == b"+OK mail.example.jp POP3 server signing off"

    env.run(lambda server, port: in_thread(lambda: client(port)))
    assert len(env.inbox_ids()) == 3
    assert env.metadata.locks == {}


def _count_opens(env: Env) -> list[str]:
    """Record every blob the server opens (the fake store's `open`, wrapped)."""
    opened: list[str] = []
    original = env.blobs.open

    def counting_open(ref: str) -> BinaryIO:
        opened.append(ref)
        return original(ref)

    env.blobs.open = counting_open  # type: ignore[method-assign]
    return opened


def _numbered_messages(env: Env, count: int) -> list[bytes]:
    """`count` more INBOX messages for bob, each different, some needing dot-stuffing."""
    raws = [
        b"Subject: n%d\r\n\r\n.line %d\r\n" % (n, n) + b"x" * (n * 37 % 300) + b"\r\n"
        for n in range(1, count + 1)
    ]
    for raw in raws:
        env.deliver(env.other.id, raw)
    return raws


def _retr_raw(pop: poplib.POP3, number: int) -> bytes:
    _, lines, _ = pop.retr(number)
    return b"\r\n".join(lines) + b"\r\n"


def _opens_during_download(env: Env, raws: list[bytes]) -> tuple[list[int], list[str]]:
    """RETR 1..N in order, each checked byte for byte; how many blobs had been opened after
    each RETR, and which."""
    opened = _count_opens(env)
    counts: list[int] = []

    def client(port: int) -> None:
        pop = login(port, "bob@example.jp")
        for number, raw in enumerate(raws, start=1):
            assert _retr_raw(pop, number) == raw
            counts.append(len(opened))
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))
    return counts, opened


def test_in_order_download_reads_ahead_in_batches(env: Env) -> None:
    raws = _numbered_messages(env, 80)
    counts, opened = _opens_during_download(env, raws)
    # RETR 1 reads 1 + 32 messages in one hop; RETR 2..33 come from memory; RETR 34 reads
    # the next 33, RETR 67 the last 14.
    assert counts[0] == 33
    assert counts[32] == 33
    assert counts[33] == 66
    assert counts[66] == 80
    assert sorted(opened) == sorted(set(opened))  # every message opened exactly once


def test_read_ahead_stops_at_its_byte_budget(env: Env) -> None:
    """Read-ahead holds at most `_READAHEAD_BYTES` per session, however many messages fit."""
    lines = 60_000 // 72  # under one 64 KiB chunk, so each one may be read ahead
    raws = [b"Subject: %d\r\n\r\n" % n + (b"z" * 70 + b"\r\n") * lines for n in range(8)]
    assert _READAHEAD_BYTES // len(raws[0]) == 4
    for raw in raws:
        env.deliver(env.other.id, raw)
    counts, _ = _opens_during_download(env, raws)
    # Four messages fit in the budget: each hop reads the asked one and four more.
    assert counts == [5, 5, 5, 5, 5, 8, 8, 8]


@settings(max_examples=300, deadline=None)
@given(
    message=st.lists(
        st.sampled_from([b".", b"..", b"\r\n", b"\n", b"\r", b"a", b"\r\n.\r\n", b"\x00"]),
        max_size=30,
    ).map(b"".join)
)
def test_whole_retr_response_matches_the_streaming_stuffer(message: bytes) -> None:
    stuffer = DotStuffer()
    expected = b"+OK %d octets\r\n" % len(message) + stuffer.feed(message) + stuffer.finish()
    assert _retr_response(len(message), message) == expected


def test_picked_messages_and_top_get_no_read_ahead(env: Env) -> None:
    raws = _numbered_messages(env, 10)
    opened = _count_opens(env)

    def client(port: int) -> None:
        pop = login(port, "bob@example.jp")
        assert _retr_raw(pop, 5) == raws[4]
        assert pop.top(7, 0)[1] == [b"Subject: n7", b""]
        assert _retr_raw(pop, 3) == raws[2]
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))
    assert len(opened) == 3


def test_read_ahead_skips_large_messages_and_survives_unreadable_ones(env: Env) -> None:
    raws = _numbered_messages(env, 3)
    big = b"Subject: big\r\n\r\n" + b"y" * 100 + b"\r\n" * 40_000
    env.deliver(env.other.id, big)
    raws.append(big)
    raws += _numbered_messages(env, 2)
    inbox = env.metadata.get_mailbox(env.other.id, SpecialUse.INBOX)
    third = env.metadata.list_messages(inbox.id)[2].blob_ref
    original = env.blobs.open

    def failing_once(ref: str) -> BinaryIO:
        if ref == third and not failed:
            failed.append(ref)
            raise OSError("disk hiccup")
        return original(ref)

    failed: list[str] = []
    env.blobs.open = failing_once  # type: ignore[method-assign]

    def client(port: int) -> None:
        pop = login(port, "bob@example.jp")
        for number, raw in enumerate(raws, start=1):
            assert _retr_raw(pop, number) == raw
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))
    assert failed == [third]


def test_uidl_is_stable_across_sessions_and_deletions(env: Env) -> None:
    seen: list[list[bytes]] = []

    def client(port: int) -> None:
        for _ in range(2):
            pop = login(port)
            seen.append(pop.uidl()[1])
            pop.dele(1)
            pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))
    first = dict(line.split() for line in seen[0])
    second = dict(line.split() for line in seen[1])
    assert second[b"1"] == first[b"2"]
    assert second[b"2"] == first[b"3"]


def test_auth_plain(env: Env) -> None:
    def client(port: int) -> None:
        pop = connect(port)
        reply = pop._shortcmd("AUTH PLAIN " + encode_plain("alice@example.jp", "pw"))
        assert reply.startswith(b"+OK Logged in")
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))


def test_dele_and_quit_removes_messages_and_blobs(env: Env) -> None:
    before = env.inbox_ids()

    def client(port: int) -> None:
        pop = login(port)
        pop.dele(1)
        pop.dele(3)
        assert pop.stat()[0] == 1
        assert pop.quit() == b"+OK mail.example.jp POP3 server signing off (2 deleted)"

    env.run(lambda server, port: in_thread(lambda: client(port)))
    assert env.inbox_ids() == [before[1]]
    assert len(env.blobs.deleted) == 2
    assert env.metadata.locks == {}


def test_drop_without_quit_deletes_nothing(env: Env) -> None:
    before = env.inbox_ids()

    async def scenario(server: Pop3Server, port: int) -> None:
        def client() -> None:
            pop = login(port)
            pop.dele(1)
            pop.close()

        await in_thread(client)
        await eventually(lambda: not env.metadata.locks)

    env.run(scenario)
    assert env.inbox_ids() == before
    assert env.blobs.deleted == []


def test_failed_expunge_keeps_everything(env: Env) -> None:
    before = env.inbox_ids()
    env.metadata.fail_expunge = True

    def client(port: int) -> None:
        pop = login(port)
        pop.dele(1)
        assert error_of(pop.quit).startswith("-ERR [SYS/TEMP] Could not delete")

    env.run(lambda server, port: in_thread(lambda: client(port)))
    assert env.inbox_ids() == before
    assert env.blobs.deleted == []
    assert env.metadata.locks == {}


def test_unreadable_blob_is_a_temporary_error(env: Env) -> None:
    def client(port: int) -> None:
        pop = login(port)
        env.blobs.fail_open = True
        assert error_of(lambda: pop.retr(1)).startswith("-ERR [SYS/TEMP] The message could not")
        env.blobs.fail_open = False
        assert pop.retr(1)[1][0] == b"From: a@example.com"
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))


def test_junk_is_never_served(env: Env) -> None:
    def client(port: int) -> None:
        pop = login(port)
        assert pop.stat()[0] == 3
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))


def test_second_session_gets_in_use(env: Env) -> None:
    def client(port: int) -> None:
        first = login(port)
        second = connect(port)
        second.user("alice@example.jp")
        assert error_of(lambda: second.pass_("pw")) == (
            "-ERR [IN-USE] Mailbox is locked by another POP3 session"
        )
        other = login(port, "bob@example.jp")  # other accounts are not affected
        other.quit()
        first.quit()
        second.user("alice@example.jp")
        assert second.pass_("pw").startswith(b"+OK")
        second.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))
    assert env.metadata.locks == {}


@pytest.mark.parametrize("delete", [False, True])
def test_the_lock_is_released_before_quit_is_answered(env: Env, delete: bool) -> None:
    """A mail program that reconnects as soon as QUIT is answered finds its mailbox free
    (not `[IN-USE]`), with or without deletions; a slow release makes a late one visible."""
    release = env.metadata.release_maildrop_lock

    def slow_release(account_id: int, holder: str) -> None:
        time.sleep(0.2)
        release(account_id, holder)

    env.metadata.release_maildrop_lock = slow_release  # type: ignore[method-assign]

    def client(port: int) -> None:
        pop = login(port)
        if delete:
            pop.dele(1)
        assert pop.quit().startswith(b"+OK")
        assert env.metadata.locks == {}
        again = login(port)
        assert again.stat()[0] == (2 if delete else 3)
        again.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))


def test_locks_are_refreshed_and_a_lost_lock_ends_the_session(env: Env) -> None:
    async def scenario(server: Pop3Server, port: int) -> None:
        pop = await asyncio.to_thread(login, port)
        lock = env.metadata.locks[env.account.id]
        first_until = lock.until
        env.clock.wall += timedelta(minutes=2)
        await server.refresh_locks()
        assert lock.until == first_until + timedelta(minutes=2)
        lock.holder = "another node"
        await server.refresh_locks()
        assert error_of(lambda: pop.dele(1)).startswith("-ERR [IN-USE] The maildrop lock was lost")
        pop.close()

    env.run(scenario)
    assert env.metadata.locks[env.account.id].holder == "another node"
    assert env.metadata.expunged == []


# --- TLS -------------------------------------------------------------------------------------


def test_stls_then_login(env: Env) -> None:
    _, client_context = env.certificate()

    def client(port: int) -> None:
        pop = connect(port)
        assert "STLS" in pop.capa()
        pop.stls(client_context)
        assert "STLS" not in pop.capa()
        pop.user("alice@example.jp")
        pop.pass_("pw")
        assert pop.retr(2)[1][-1] == "日本語".encode()
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)), tls=True)


def test_implicit_tls(env: Env) -> None:
    _, client_context = env.certificate()

    def client(port: int) -> None:
        pop = poplib.POP3_SSL(HOST, port, context=client_context, timeout=TIMEOUT)
        _CLIENTS.append(pop)
        assert "STLS" not in pop.capa()
        pop.user("alice@example.jp")
        pop.pass_("pw")
        assert pop.stat()[0] == 3
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)), implicit_tls=True)


def test_plaintext_login_is_refused_for_remote_clients_until_stls(tmp_path: Path) -> None:
    env = Env(tmp_path, remote_ip="203.0.113.5")
    _, client_context = env.certificate()

    def client(port: int) -> None:
        pop = connect(port)
        capabilities = pop.capa()
        assert "USER" not in capabilities
        assert "SASL" not in capabilities
        assert error_of(lambda: pop.user("alice@example.jp")).startswith(
            "-ERR [AUTH] Plain-text login is refused without TLS"
        )
        pop.stls(client_context)
        assert "USER" in pop.capa()
        pop.user("alice@example.jp")
        pop.pass_("pw")
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)), tls=True)


def test_plaintext_can_be_allowed_everywhere(tmp_path: Path) -> None:
    env = Env(tmp_path, remote_ip="203.0.113.5", auth_settings=AuthSettings(allow_plaintext=True))

    def client(port: int) -> None:
        login(port).quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))


def test_plaintext_on_loopback_can_be_turned_off(tmp_path: Path) -> None:
    env = Env(tmp_path, auth_settings=AuthSettings(allow_plaintext_on_loopback=False))

    def client(port: int) -> None:
        pop = connect(port)
        assert error_of(lambda: pop.user("alice@example.jp")).startswith("-ERR [AUTH]")
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))


def _recv_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line


def test_plaintext_pipelined_after_stls_is_discarded(env: Env) -> None:
    """The STARTTLS injection attack: a line sent in the clear together with STLS must not
    be executed as if it had come over TLS."""
    _, client_context = env.certificate()

    def client(port: int) -> None:
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as raw:
            assert _recv_line(raw).startswith(b"+OK")
            raw.sendall(b"STLS\r\nUSER alice@example.jp\r\n")
            assert _recv_line(raw) == b"+OK Begin TLS negotiation\r\n"
            with client_context.wrap_socket(raw, server_hostname=HOST) as tls:
                tls.sendall(b"PASS pw\r\n")
                assert _recv_line(tls) == b"-ERR Send USER first\r\n"
                tls.sendall(b"QUIT\r\n")
                assert _recv_line(tls).startswith(b"+OK")

    env.run(lambda server, port: in_thread(lambda: client(port)), tls=True)


# --- throttling, limits, timeouts, shutdown -------------------------------------------------


def test_lockout_after_repeated_failures_then_recovery(env: Env) -> None:
    def client(port: int) -> None:
        pop = connect(port)
        for _ in range(3):
            pop.user("alice@example.jp")
            assert error_of(lambda: pop.pass_("wrong")) == "-ERR [AUTH] Authentication failed"
        # The third failure on one connection also closed it.
        pop = connect(port)
        pop.user("alice@example.jp")
        assert error_of(lambda: pop.pass_("pw")) == (
            "-ERR [SYS/TEMP] Too many failed logins; try again in 15 minutes"
        )
        env.clock.monotonic += 900
        pop.user("alice@example.jp")
        assert pop.pass_("pw").startswith(b"+OK")
        pop.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))
    assert env.sleeps == [1.0] * 4


def test_too_many_connections(tmp_path: Path) -> None:
    env = Env(tmp_path, max_per_ip=1)

    def client(port: int) -> None:
        first = connect(port)
        # A raw socket: poplib would leak its socket when the greeting is an error.
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
            assert sock.makefile("rb").readline() == (
                b"-ERR [SYS/TEMP] Too many connections; try again later\r\n"
            )
        first.quit()

    env.run(lambda server, port: in_thread(lambda: client(port)))


def test_idle_timeout_ends_the_session_without_update(tmp_path: Path) -> None:
    env = Env(tmp_path, limits=LimitsSettings(pop3_idle_timeout=0.1))
    before = env.inbox_ids()

    async def scenario(server: Pop3Server, port: int) -> None:
        def client() -> None:
            pop = login(port)
            pop.dele(1)
            assert (
                pop.file.readline() == b"-ERR [SYS/TEMP] Idle timeout; closing the connection\r\n"
            )
            assert pop.file.readline() == b""
            pop.close()

        await in_thread(client)
        await eventually(lambda: not env.metadata.locks)

    env.run(scenario)
    assert env.inbox_ids() == before


def test_commands_sent_before_eof_are_all_answered(env: Env) -> None:
    """A script may send its commands and close its side at once; the answers still come,
    including those that needed the store (login, RETR) and the UPDATE."""
    before = env.inbox_ids()

    def client(port: int) -> bytes:
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
            sock.sendall(b"USER alice@example.jp\r\nPASS pw\r\nRETR 3\r\nDELE 1\r\nQUIT\r\n")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while data := sock.recv(65536):
                received += data
            return received

    async def scenario(server: Pop3Server, port: int) -> None:
        received = await asyncio.to_thread(client, port)
        assert b"\r\n" + MESSAGES[2] + b"\r\n.\r\n+OK Message 1 deleted\r\n" in received
        assert received.endswith(b"+OK mail.example.jp POP3 server signing off (1 deleted)\r\n")
        await eventually(lambda: not env.metadata.locks)

    env.run(scenario)
    assert env.inbox_ids() == before[1:]


def test_pipelined_download_with_a_slow_reader(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many RETRs in one go while the client does not read yet: the server stops at its
    write buffer limit, stops reading commands, and goes on when the client reads."""
    raws = [b"Subject: %d\r\n\r\n" % n + (b".x" * 35 + b"\r\n") * 800 for n in range(120)]
    pauses: list[bool] = []
    original = _Session.pause_writing

    def pause_writing(session: _Session) -> None:
        pauses.append(True)
        original(session)

    monkeypatch.setattr(_Session, "pause_writing", pause_writing)
    for raw in raws:
        env.deliver(env.other.id, raw)

    def client(port: int) -> bytes:
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
            commands = b"".join(b"RETR %d\r\n" % n for n in range(1, len(raws) + 1))
            sock.sendall(b"USER bob@example.jp\r\nPASS pw\r\n" + commands + b"QUIT\r\n")
            time.sleep(0.3)  # let the server fill the socket buffers and pause
            received = b""
            while data := sock.recv(1 << 20):
                received += data
            return received

    async def scenario(server: Pop3Server, port: int) -> None:
        received = await asyncio.to_thread(client, port)
        expected = b"".join(
            b"+OK %d octets\r\n" % len(raw) + raw.replace(b"\n.", b"\n..") + b".\r\n"
            for raw in raws
        )
        assert pauses  # the server did have to wait for the client
        assert expected in received
        assert received.endswith(b"signing off\r\n")

    env.run(scenario)


def test_a_client_that_stops_reading_a_message_is_cut_off(tmp_path: Path) -> None:
    env = Env(tmp_path, limits=LimitsSettings(pop3_idle_timeout=0.2))
    size = 400_000 * len(_GeneratedMessage.LINE)
    env.blobs.streams["huge"] = lambda: io.BufferedReader(_GeneratedMessage(size))
    env.metadata.deliver(env.other.id, "huge", size)

    async def scenario(server: Pop3Server, port: int) -> None:
        sock = await asyncio.to_thread(socket.create_connection, (HOST, port), TIMEOUT)
        try:
            sock.sendall(b"USER bob@example.jp\r\nPASS pw\r\nRETR 1\r\n")
            await eventually(lambda: bool(env.metadata.locks))
            # Never read: after the idle timeout the session is gone and the lock free.
            await eventually(lambda: not env.metadata.locks)
        finally:
            sock.close()

    env.run(scenario)
    assert env.metadata.expunged == []


def test_shutdown_tells_idle_sessions_and_deletes_nothing(env: Env) -> None:
    before = env.inbox_ids()

    async def scenario(server: Pop3Server, port: int) -> None:
        pop = await asyncio.to_thread(login, port)
        await asyncio.to_thread(pop.dele, 1)
        await server.close()
        line = await asyncio.to_thread(pop.file.readline)
        assert line == b"-ERR [SYS/TEMP] Server shutting down; try again shortly\r\n"
        pop.close()
        assert env.metadata.locks == {}
        with pytest.raises(OSError):
            await asyncio.to_thread(connect, port)

    env.run(scenario)
    assert env.inbox_ids() == before


def test_shutdown_cuts_off_clients_that_do_not_answer(tmp_path: Path) -> None:
    """A TLS client that never reads cannot answer the TLS close; close() must not hang."""
    env = Env(tmp_path, shutdown_grace=0.05)
    _, client_context = env.certificate()

    async def scenario(server: Pop3Server, port: int) -> None:
        def connect_tls() -> ssl.SSLSocket:
            raw = socket.create_connection((HOST, port), timeout=TIMEOUT)
            tls = client_context.wrap_socket(raw, server_hostname=HOST)
            tls.sendall(b"USER alice@example.jp\r\nPASS pw\r\n")
            received = b""
            while received.count(b"\n") < 3:
                received += tls.recv(4096)
            return tls

        tls = await asyncio.to_thread(connect_tls)
        try:
            async with asyncio.timeout(TIMEOUT):
                await server.close()
            assert env.metadata.locks == {}
        finally:
            tls.close()

    env.run(scenario, implicit_tls=True)


# --- big messages and memory --------------------------------------------------------------


class _GeneratedMessage(io.RawIOBase):
    """A large message made on the fly, so the test itself holds no big buffer."""

    LINE = b".dot-stuffed line with 8-bit \xe6\x97\xa5 and NUL \x00 " + b"x" * 40 + b"\r\n"

    def __init__(self, size: int) -> None:
        self.remaining = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.remaining)
        pattern = self.LINE * (count // len(self.LINE) + 2)
        start = (self._position()) % len(self.LINE)
        buffer[:count] = pattern[start : start + count]
        self.remaining -= count
        self._done += count
        return count

    _done = 0

    def _position(self) -> int:
        return self._done


def test_retr_of_a_large_message_keeps_memory_flat(env: Env) -> None:
    lines = 400_000
    size = lines * len(_GeneratedMessage.LINE)  # about 36 MB
    env.blobs.streams["huge"] = lambda: io.BufferedReader(_GeneratedMessage(size))
    env.metadata.deliver(env.other.id, "huge", size)

    def client(port: int) -> tuple[int, int]:
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
            sock.sendall(b"USER bob@example.jp\r\nPASS pw\r\nRETR 1\r\n")
            # Into one small buffer: tracemalloc counts the client's allocations too, and a
            # recv of up to 1 MB plus a copy of it once took the peak over the bound.
            buffer = bytearray(64 * 1024)
            received, tail = 0, b""
            while not tail.endswith(b"\r\n.\r\n"):
                count = sock.recv_into(buffer)
                assert count
                received += count
                tail = (tail + bytes(buffer[max(0, count - 8) : count]))[-8:]
            sock.sendall(b"QUIT\r\n")
            return received, 0

    async def scenario(server: Pop3Server, port: int) -> None:
        gc.collect()
        tracemalloc.start()
        try:
            received, _ = await asyncio.to_thread(client, port)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert received > size + lines  # every line was dot-stuffed
        assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while streaming {size} bytes"

    env.run(scenario)


def test_idle_logged_in_sessions_are_small(tmp_path: Path) -> None:
    sessions = 200
    env = Env(tmp_path, max_per_ip=sessions + 1)
    accounts = [
        env.metadata.add_account(f"user{n}@example.jp", FAST_HASHER.hash("pw"))
        for n in range(sessions)
    ]
    for account in accounts:
        for raw in MESSAGES:
            env.deliver(account.id, raw)

    sockets: list[socket.socket] = []

    def open_sessions(port: int) -> None:
        for account in accounts:
            sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
            sockets.append(sock)
            sock.sendall(f"USER {account.address}\r\nPASS pw\r\n".encode())
        for sock in sockets:
            stream = sock.makefile("rb")
            stream.readline()
            stream.readline()
            assert stream.readline().startswith(b"+OK Logged in")
            stream.close()

    measured: list[float] = []

    async def scenario(server: Pop3Server, port: int) -> None:
        # Warm up once so that lazily created shared objects are not counted.
        warm = await asyncio.to_thread(login, port, "bob@example.jp")
        await asyncio.to_thread(warm.quit)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            await asyncio.to_thread(open_sessions, port)
            await eventually(lambda: len(env.metadata.locks) == sessions)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        measured.append(growth / sessions)

    try:
        env.run(scenario)
    finally:
        for sock in sockets:
            sock.close()
    print(f"memory per idle logged-in POP3 session: {measured[0]:.0f} bytes")
    assert measured[0] < 50 * 1024
