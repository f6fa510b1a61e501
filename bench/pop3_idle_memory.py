#!/usr/bin/env python3
"""Memory per idle, logged-in POP3 connection of a running server (loopback only).

Method (as `measure_idle` in ../shared/bench/peers_bench.py): log in and out a few times so
lazily created state exists in the baseline, let the server settle, read the PSS and RSS of
the server's whole process tree from /proc/PID/smaps_rollup, open K connections that each
log in (USER/PASS) and then stay idle, settle, read again, close them. Per connection =
(loaded - baseline) / K.

Tayori gives a second concurrent session on one account `-ERR [IN-USE]` (RFC 2449), so each
connection logs in as its own account: --user-pattern with `{i}` (e.g.
`idle{i:04d}@example.test`), all with the password in --password-file. Create those accounts
with `tayori user add` or, much faster, with --create-accounts CONFIG, which uses Tayori's
own store API in this process (run it with Tayori's venv) and hashes the password once.

    python bench/pop3_idle_memory.py --pid SERVER_PID --port 21110 \
        --user-pattern 'idle{i:04d}@example.test' --password-file pw.txt --connections 500

The server's per-IP connection limit must allow K + a few connections from 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from typing import Any

from _common import (
    BenchError,
    create_accounts,
    emit,
    log,
    loopback_address,
    mem_kib,
    proc_tree,
    read_password,
)


async def read_line(reader: asyncio.StreamReader, what: str) -> bytes:
    line = await reader.readline()
    if not line:
        raise ConnectionError(f"server closed the connection during {what}")
    if not line.startswith(b"+OK"):
        raise BenchError(f"POP3 {what}: {line.strip()!r}")
    return line


class Idle:
    def __init__(self, addr: tuple[int, str], port: int) -> None:
        self.addr = addr
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, user: str | None, password: str) -> None:
        family, host = self.addr
        self.reader, self.writer = await asyncio.open_connection(host, self.port, family=family)
        await read_line(self.reader, "greeting")
        if user is None:
            return
        self.writer.write(b"USER " + user.encode() + b"\r\n")
        await read_line(self.reader, f"USER {user}")
        self.writer.write(b"PASS " + password.encode() + b"\r\n")
        await read_line(self.reader, f"PASS for {user}")

    async def close(self) -> None:
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        try:
            writer.write(b"QUIT\r\n")
            if self.reader is not None:
                await asyncio.wait_for(self.reader.readline(), 10)
        except (OSError, ConnectionError, TimeoutError):
            pass
        writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await writer.wait_closed()


async def measure(args: argparse.Namespace, addr: tuple[int, str], password: str) -> dict[str, Any]:
    users = [args.user_pattern.format(i=i) for i in range(args.connections)]
    if args.state == "preauth":
        logins: list[str | None] = [None] * args.connections
    else:
        logins = list(users)
    # warm-up: the first logins create thread pools, caches, prepared statements...
    for i in range(min(5, args.connections)):
        c = Idle(addr, args.port)
        await c.open(logins[i], password)
        await c.close()
    await asyncio.sleep(args.settle)
    base = mem_kib(proc_tree(args.pid))
    conns = [Idle(addr, args.port) for _ in range(args.connections)]
    gate = asyncio.Semaphore(args.parallel)
    t0 = time.perf_counter()

    async def open_one(i: int) -> None:
        async with gate:
            await conns[i].open(logins[i], password)

    try:
        await asyncio.gather(*(open_one(i) for i in range(args.connections)))
        setup = time.perf_counter() - t0
        await asyncio.sleep(args.settle)
        loaded = mem_kib(proc_tree(args.pid))
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    await asyncio.sleep(args.settle)
    after = mem_kib(proc_tree(args.pid))
    k = args.connections
    return {
        "pid": args.pid,
        "port": args.port,
        "state": args.state,
        "connections": k,
        "pss_kib_per_conn": (loaded[1] - base[1]) / k,
        "rss_kib_per_conn": (loaded[0] - base[0]) / k,
        "procs_per_conn": (loaded[2] - base[2]) / k,
        "base_pss_kib": base[1],
        "loaded_pss_kib": loaded[1],
        "after_close_pss_kib": after[1],
        "setup_s": setup,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="loopback only (default %(default)s)")
    ap.add_argument("--port", type=int, required=True, help="POP3 port")
    ap.add_argument("--pid", type=int, help="server PID (its whole process tree is measured)")
    ap.add_argument("--connections", type=int, default=500, help="K idle connections")
    ap.add_argument(
        "--user-pattern",
        default="idle{i:04d}@example.test",
        help="login for connection i (str.format with i); a fixed name for servers that "
        "allow concurrent sessions on one account",
    )
    ap.add_argument("--password-file", required=True, help="first line is the password")
    ap.add_argument(
        "--state",
        choices=("authed", "preauth"),
        default="authed",
        help="authed: USER+PASS then idle (default); preauth: greeting only",
    )
    ap.add_argument("--parallel", type=int, default=8, help="logins in flight while opening")
    ap.add_argument("--settle", type=float, default=1.5, help="seconds before each reading")
    ap.add_argument("--timeout", type=float, default=600.0, help="overall bound, seconds")
    ap.add_argument(
        "--create-accounts",
        metavar="CONFIG",
        default=None,
        help="first create the missing accounts of --user-pattern in this Tayori instance",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    try:
        password = read_password(args.password_file)
        if args.create_accounts:
            t0 = time.perf_counter()
            n = create_accounts(args.create_accounts, args.user_pattern, args.connections, password)
            log(f"created {n} accounts in {time.perf_counter() - t0:.1f}s")
            if args.pid is None:
                return 0
        if args.pid is None:
            ap.error("--pid is required to measure")
        if not os.path.exists(f"/proc/{args.pid}/smaps_rollup"):
            raise BenchError(f"no readable /proc/{args.pid}/smaps_rollup (wrong PID? not root?)")
        addr = loopback_address(args.host, args.port)

        async def bounded() -> dict[str, Any]:
            return await asyncio.wait_for(measure(args, addr, password), args.timeout)

        r = asyncio.run(bounded())
    except (BenchError, OSError, TimeoutError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    emit(
        r,
        args.json,
        [
            f"POP3 {args.host}:{args.port} pid {args.pid}: {r['connections']} idle {r['state']} "
            f"connections (opened in {r['setup_s']:.1f}s)",
            f"  PSS {r['pss_kib_per_conn']:.1f} KiB/conn, "
            f"RSS {r['rss_kib_per_conn']:.1f} KiB/conn, {r['procs_per_conn']:.2f} processes/conn",
            f"  server PSS: baseline {r['base_pss_kib']} KiB, loaded {r['loaded_pss_kib']} KiB, "
            f"after close {r['after_close_pss_kib']} KiB",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
