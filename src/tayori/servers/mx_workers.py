"""Extra processes for inbound SMTP (`[server] smtp_processes`), so the MX can use more than
one core: Python runs one core per process, and receiving mail is CPU work (parsing,
checks, the spam classifier, the store's statements).

The main process accepts every MX connection and hands it to the process with the fewest
sessions, itself included (`MxDispatcher`): the kernel's own spreading (one socket each
with SO_REUSEPORT) hashes connections, and ten sessions came out 7 / 3 or 2 / 8, leaving
one process busy and the other idle. A connection is handed over as its file descriptor
(SCM_RIGHTS) on a socket pair that links each worker to the main process. On that pair the
worker writes `R` once it serves, `W` when it queued something (a forwarded copy: the main
process's queue runner looks at once) and `-` when a session ends (the count the main
process balances by). Workers only receive MX mail, each with its own group commit on the
shared store; the queue runner and every other role stay in the main process. The main
process stops a worker with SIGTERM; a worker whose main process went away (the pair
reaches end of file, even after `kill -9`) finishes the sessions it has and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

WORKER_ENV = "TAYORI_MX_WORKER"
"""Set for a worker process: the file descriptor of its end of the control socket pair."""

READY = b"R"
WAKE = b"W"
CLOSED = b"-"
HANDOFF = b"C"
START_TIMEOUT = 120.0
"""Seconds a worker may take to open the store and start serving."""
_FDS_PER_READ = 32


class WorkerStartError(RuntimeError):
    """A worker process did not start serving."""


def listening_sockets(host: str, port: int, backlog: int = 1024) -> list[socket.socket]:
    """Bound, listening sockets for every address `host` resolves to (as asyncio's
    create_server would open), for the main process to accept on."""
    opened: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        seen: set[tuple[int, object]] = set()
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            opened.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in opened:
            sock.close()
        raise
    return opened


@dataclass
class _Worker:
    number: int
    process: subprocess.Popen[bytes]
    control: socket.socket
    ready: asyncio.Future[None]
    reader: asyncio.Task[None] | None = None
    sessions: int = 0
    """Connections handed to it and not yet reported ended."""
    alive: bool = True


@dataclass
class MxWorkers:
    """The main process's side: start, feed, watch and stop the worker processes."""

    count: int
    config_path: Path
    on_wake: Callable[[], None]
    workers: list[_Worker] = field(default_factory=list)
    stopping: bool = False

    async def start(self) -> None:
        """Start every worker and return once each serves; raises WorkerStartError (after
        stopping those started) when one does not."""
        loop = asyncio.get_running_loop()
        try:
            for number in range(1, self.count + 1):
                self.workers.append(self._spawn(number, loop))
            for worker in self.workers:
                try:
                    await asyncio.wait_for(asyncio.shield(worker.ready), START_TIMEOUT)
                except TimeoutError:
                    waited = f"{START_TIMEOUT:.0f} s"
                    raise WorkerStartError(
                        f"SMTP worker process {worker.number} did not start in {waited}"
                    ) from None
        except BaseException:
            await self.stop(grace=0)
            raise

    def _spawn(self, number: int, loop: asyncio.AbstractEventLoop) -> _Worker:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env[WORKER_ENV] = str(theirs.fileno())
        try:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "tayori", "--config", str(self.config_path), "serve"],
                env=env,
                pass_fds=[theirs.fileno()],
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        worker = _Worker(number, process, ours, loop.create_future())
        worker.reader = loop.create_task(self._read(worker), name=f"mx worker {number}")
        return worker

    async def _read(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(worker.control, 4096)
            except OSError:
                data = b""
            if not data:
                break
            if READY in data and not worker.ready.done():
                worker.ready.set_result(None)
            if WAKE in data:
                self.on_wake()
            worker.sessions = max(0, worker.sessions - data.count(CLOSED))
        worker.alive = False
        status = await asyncio.to_thread(worker.process.wait)
        if not worker.ready.done():
            worker.ready.set_exception(
                WorkerStartError(f"SMTP worker process {worker.number} exited with status {status}")
            )
        elif not self.stopping:
            # The main process (and any other worker) goes on serving; the admin is told.
            log.error(
                "SMTP worker process %d exited with status %s; the others go on",
                worker.number,
                status,
            )

    def hand_over(self, worker: _Worker, conn: socket.socket) -> bool:
        """Pass an accepted connection to `worker`; False (the caller serves it) when the
        worker cannot take it now."""
        try:
            socket.send_fds(worker.control, [HANDOFF], [conn.fileno()])
        except OSError:
            return False
        worker.sessions += 1
        return True

    async def stop(self, grace: float) -> None:
        """SIGTERM each worker (it finishes messages in flight, up to `grace` seconds),
        then wait; a worker still running after that is killed."""
        self.stopping = True
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                await asyncio.to_thread(worker.process.wait, grace + 10.0)
            except subprocess.TimeoutExpired:
                log.error("SMTP worker process %d did not stop; killing it", worker.number)
                worker.process.kill()
                await asyncio.to_thread(worker.process.wait)
            if worker.reader is not None:
                await asyncio.gather(worker.reader, return_exceptions=True)
            worker.control.close()
        self.workers.clear()


class LocalListener(Protocol):
    """The main process's own MX listener, as the dispatcher sees it."""

    @property
    def live_sessions(self) -> int: ...

    @property
    def shutting_down(self) -> bool: ...

    async def take_connection(self, sock: socket.socket) -> None: ...


class MxDispatcher:
    """The main process accepts MX connections and gives each to the process serving the
    fewest sessions now (its own listener included; ties go round in turn)."""

    def __init__(
        self, sockets: Sequence[socket.socket], local: LocalListener, workers: MxWorkers
    ) -> None:
        self.sockets = list(sockets)
        self._local = local
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._turn = itertools.count()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._accept(sock)) for sock in self.sockets]

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listening)
            except OSError as error:  # e.g. EMFILE: say so, breathe, go on
                log.warning("accepting an MX connection failed: %s", error)
                await asyncio.sleep(0.1)
                continue
            await self._place(conn)

    async def _place(self, conn: socket.socket) -> None:
        options: list[_Worker | None] = [None]  # None: this process
        if not self._local.shutting_down:
            options += [w for w in self._workers.workers if w.alive and w.ready.done()]
        turn = next(self._turn)

        def load(entry: tuple[int, _Worker | None]) -> tuple[int, int]:
            index, option = entry
            sessions = self._local.live_sessions if option is None else option.sessions
            return sessions, (index - turn) % len(options)

        _, chosen = min(enumerate(options), key=load)
        if chosen is not None and self._workers.hand_over(chosen, conn):
            conn.close()  # the worker has its own copy now
            return
        try:
            await self._local.take_connection(conn)
        except OSError as error:  # the client left before we started
            log.info("an MX connection failed before it started: %s", error)
            conn.close()

    async def close(self) -> None:
        """Stop accepting (before the listeners close their sessions)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in self.sockets:
            sock.close()


@dataclass
class WorkerLink:
    """A worker's side: the line to the main process."""

    control: socket.socket

    @classmethod
    def from_environment(cls) -> WorkerLink | None:
        value = os.environ.pop(WORKER_ENV, "")
        if not value:
            return None
        link = socket.socket(fileno=int(value))
        link.setblocking(False)
        return cls(link)

    def ready(self) -> None:
        self._send(READY)

    def wake(self) -> None:
        """Something was queued: the main process's queue runner should look now."""
        self._send(WAKE)

    def session_ended(self) -> None:
        self._send(CLOSED)

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the main process is gone: nothing to tell
            self.control.send(data)

    async def serve(self, take: Callable[[socket.socket], Awaitable[None]]) -> None:
        """Serve each connection the main process hands over with `take`; returns when the
        main process closed its end (stopped, crashed or was killed)."""
        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue[socket.socket | None] = asyncio.Queue()

        def readable() -> None:
            try:
                data, fds, _, _ = socket.recv_fds(self.control, 1024, _FDS_PER_READ)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            for fd in fds:
                arrived.put_nowait(socket.socket(fileno=fd))
            if not data and not fds:
                loop.remove_reader(self.control.fileno())
                arrived.put_nowait(None)

        loop.add_reader(self.control.fileno(), readable)
        try:
            while (conn := await arrived.get()) is not None:
                conn.setblocking(False)
                try:
                    await take(conn)
                except OSError as error:  # the client left while being handed over
                    log.info("a handed-over MX connection failed: %s", error)
                    conn.close()
                    self.session_ended()
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(self.control.fileno())
