"""The line between the main process and an MX worker: `R` marks it ready, `W` wakes the
main process's queue runner, connections are handed over as descriptors and balanced by
the sessions each process serves, and the main process going away ends the worker's wait."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

from tayori.servers.mx_workers import (
    MxDispatcher,
    MxWorkers,
    WorkerLink,
    _Worker,
    listening_sockets,
)


def test_ready_and_wake_reach_the_main_process(tmp_path: Path) -> None:
    async def scenario() -> int:
        woken = 0

        def wake() -> None:
            nonlocal woken
            woken += 1

        workers = MxWorkers(1, tmp_path / "tayori.toml", wake)
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        # A stand-in process: only its exit status is read, once the line closes.
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        loop = asyncio.get_running_loop()
        worker = _Worker(1, process, ours, loop.create_future())
        worker.reader = loop.create_task(workers._read(worker))
        link = WorkerLink(theirs)
        link.ready()
        await asyncio.wait_for(worker.ready, 10)
        assert woken == 0  # ready is not a wake
        link.wake()
        link.wake()  # wakes arriving together may be taken as one: the runner looks once
        for _ in range(500):
            if woken:
                break
            await asyncio.sleep(0.01)
        theirs.close()  # the worker is gone: the reader ends
        await asyncio.wait_for(worker.reader, 10)
        ours.close()
        return woken

    assert asyncio.run(scenario()) in (1, 2)


def test_handed_over_connections_reach_the_worker_and_end_with_the_main_process() -> None:
    """What `MxDispatcher` sends (a connection's descriptor) arrives as a usable socket;
    `serve` returns when the main process's end closes, as after `kill -9`."""

    async def scenario() -> bytes:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        link = WorkerLink(theirs)
        theirs.setblocking(False)
        client, server_side = socket.socketpair()
        got: list[socket.socket] = []

        async def take(conn: socket.socket) -> None:
            got.append(conn)

        serving = asyncio.create_task(link.serve(take))
        workers = MxWorkers(1, Path("unused.toml"), lambda: None)
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        worker = _Worker(1, process, ours, asyncio.get_running_loop().create_future())
        assert workers.hand_over(worker, server_side)
        server_side.close()  # the main process's copy; the worker's stays open
        assert worker.sessions == 1
        for _ in range(500):
            if got:
                break
            await asyncio.sleep(0.01)
        got[0].setblocking(True)
        got[0].sendall(b"220 hello\r\n")
        answer = client.recv(100)
        assert not serving.done()
        ours.close()  # the main process is gone
        await asyncio.wait_for(serving, 10)
        link.session_ended()  # telling a gone process is not an error
        for sock in (*got, client, theirs):
            sock.close()
        process.wait()
        return answer

    assert asyncio.run(scenario()) == b"220 hello\r\n"


class _Local:
    """A stand-in for the main process's own listener."""

    def __init__(self, live: int) -> None:
        self.live_sessions = live
        self.shutting_down = False
        self.taken: list[socket.socket] = []

    async def take_connection(self, sock: socket.socket) -> None:
        self.taken.append(sock)


def test_the_dispatcher_gives_each_connection_to_the_least_busy_process(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        workers = MxWorkers(2, tmp_path / "tayori.toml", lambda: None)
        pairs = [socket.socketpair() for _ in range(2)]
        for number, (ours, _) in enumerate(pairs, start=1):
            ours.setblocking(False)
            ready = loop.create_future()
            ready.set_result(None)
            process = subprocess.Popen([sys.executable, "-c", "pass"])
            workers.workers.append(_Worker(number, process, ours, ready))
        local = _Local(live=3)
        dispatcher = MxDispatcher([], local, workers)
        for _ in range(7):
            a, b = socket.socketpair()
            await dispatcher._place(b)
            a.close()
        sessions = [w.sessions for w in workers.workers]
        for worker in workers.workers:
            worker.process.wait()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
        for sock in local.taken:
            sock.close()
        return sessions, len(local.taken)

    sessions, kept = asyncio.run(scenario())
    # 3 + 7 connections over three processes: the workers catch up first, then all share.
    assert sorted(sessions) == [3, 3] or sorted(sessions) == [3, 4]
    assert kept + sum(sessions) == 7
    assert max(sessions) - min(sessions) <= 1


def test_listening_sockets_for_every_address_of_the_host() -> None:
    opened = listening_sockets("127.0.0.1", 0)
    try:
        assert len(opened) == 1
        assert opened[0].getsockname()[0] == "127.0.0.1"
    finally:
        for sock in opened:
            sock.close()
