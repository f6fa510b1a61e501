"""The line between the main process and an MX worker: `R` marks it ready, `W` wakes the
main process's queue runner, and the main process going away ends the worker's wait."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

from tayori.servers.mx_workers import MxWorkers, WorkerLink, _Worker, listening_sockets


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


def test_a_worker_sees_the_main_process_go() -> None:
    async def scenario() -> None:
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        link = WorkerLink(theirs)
        waiting = asyncio.create_task(link.main_process_gone())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        ours.close()  # as when the main process exits or is killed
        await asyncio.wait_for(waiting, 10)
        link.wake()  # telling a gone process is not an error
        theirs.close()

    asyncio.run(scenario())


def test_every_process_gets_its_own_listening_socket_on_one_address() -> None:
    first = listening_sockets("127.0.0.1", 0)
    try:
        port = first[0].getsockname()[1]
        second = listening_sockets("127.0.0.1", port)  # SO_REUSEPORT: a second process
        try:
            assert [s.getsockname() for s in second] == [s.getsockname() for s in first]
        finally:
            for sock in second:
                sock.close()
    finally:
        for sock in first:
            sock.close()
