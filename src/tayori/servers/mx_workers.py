"""Extra processes for inbound SMTP (`[server] smtp_processes`), so the MX can use more than
one core: Python runs one core per process, and receiving mail is CPU work (parsing,
checks, the spam classifier, the store's statements).

Every process (the main one and each worker) listens on the MX address with its own socket
and SO_REUSEPORT, so the kernel spreads new connections evenly over them (one shared socket
lets the least busy process win every race, and a few long sessions would all land on one
process). Workers only receive MX mail (durably, with their own group committer on the
shared store); the queue runner and every other role stay in the main process. A socket
pair links each worker to the main process: the worker writes `R` once it accepts
connections and `W` when it queued something (a forwarded copy), so the main process's
queue runner starts at once; the main process stops a worker with SIGTERM, and a worker
whose main process went away (the pair reaches end of file, even after `kill -9`) stops
accepting at once and finishes the messages it is receiving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

WORKER_ENV = "TAYORI_MX_WORKER"
"""Set for a worker process: the file descriptor of its end of the control socket pair."""

READY = b"R"
WAKE = b"W"
START_TIMEOUT = 120.0
"""Seconds a worker may take to open the store and start accepting."""


class WorkerStartError(RuntimeError):
    """A worker process did not start accepting connections."""


def listening_sockets(host: str, port: int, backlog: int = 1024) -> list[socket.socket]:
    """Bound, listening SO_REUSEPORT sockets for every address `host` resolves to (as
    asyncio's create_server would open): each MX process opens its own."""
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
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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


@dataclass
class MxWorkers:
    """The main process's side: start, watch and stop the worker processes."""

    count: int
    config_path: Path
    on_wake: Callable[[], None]
    workers: list[_Worker] = field(default_factory=list)
    stopping: bool = False

    async def start(self) -> None:
        """Start every worker and return once each accepts connections; raises (after
        stopping those started) when one fails to."""
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
                data = await loop.sock_recv(worker.control, 64)
            except OSError:
                data = b""
            if not data:
                break
            if READY in data and not worker.ready.done():
                worker.ready.set_result(None)
            if WAKE in data:
                self.on_wake()
        status = await asyncio.to_thread(worker.process.wait)
        if not worker.ready.done():
            worker.ready.set_exception(
                WorkerStartError(f"SMTP worker process {worker.number} exited with status {status}")
            )
        elif not self.stopping:
            # The other processes keep serving the shared socket; the admin is told.
            log.error(
                "SMTP worker process %d exited with status %s; the others go on",
                worker.number,
                status,
            )

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

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the main process is gone: nothing to tell
            self.control.send(data)

    async def main_process_gone(self) -> None:
        """Returns when the main process closed its end (stopped, crashed or was killed)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(self.control, 64)
            except OSError:
                return
            if not data:
                return
