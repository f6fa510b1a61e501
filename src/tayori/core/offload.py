"""Where a blocking call from the event loop runs: in a worker thread, or right here.

The stores are synchronous. Against PostgreSQL a call waits on the network, so the event
loop hands it to a worker thread (`in_thread`) and serves other sessions meanwhile. Against
SQLite a read is answered from a local file, mostly from the page cache, in tens to hundreds
of microseconds, while the hop to a thread and back costs about as much CPU again and wakes
two threads that then take the GIL from each other: on the MX, running the recipient
look-up and the spam score `inline` instead of in threads cut the CPU per message of one MX
process by 13-20 %, of two by a few per cent (bench/RESULTS.md). So the wiring
(`tayori.app`) chooses per call site, from what the store is: `inline` only for SQLite
reads whose work is bounded and local, never for writes (a writer may wait for SQLite's
write lock, for seconds under load) and never for anything that talks to another host
(rspamd, DNS, PostgreSQL).

What inline costs: the loop does nothing else during the call, so every other session on it
waits that long. A read whose pages are not cached waits for the disk; a WAL reader waits
(busy_timeout) only in the rare moments SQLite recovers or restarts the WAL file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Offload(Protocol):
    """Runs `function(*args, **kwargs)` for a coroutine and gives its result."""

    def __call__(
        self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


async def in_thread(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """In a worker thread (`asyncio.to_thread`): the loop serves others meanwhile."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def inline(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """On the event loop itself: no hop, and nothing else runs until it returns."""
    return function(*args, **kwargs)
