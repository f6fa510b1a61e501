#!/usr/bin/env python3
"""Inbound SMTP load client: N messages over C concurrent sessions, loopback only.

Every session connects once, says EHLO, then sends message after message on the same
connection (one message per transaction: MAIL, RCPT, DATA; RSET only after a refused
transaction), until N messages have been sent in total. With --per-connection M a session
QUITs and reconnects after M messages (M=1 is what Postfix's smtp-source does).

Reports messages/s from the first connect until the last `250` after DATA, latency per
message (MAIL sent -> `250` after DATA received: p50, p99, max) and every answer that was not
the expected one. Raw asyncio streams (uvloop when available) keep the client's own CPU low;
MAIL/RCPT/DATA go in one write when the server advertises PIPELINING.

    python bench/smtp_inbound.py --host 127.0.0.1 --port 21025 --messages 10000 \
        --concurrency 10 --size 5271 --rcpt bench@example.test

Exit status: 0 when every message got 250, 1 otherwise (refusals, timeout), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from _common import (
    BenchError,
    emit,
    log,
    loopback_address,
    machine_busy_seconds,
    percentile,
    tree_cpu_seconds,
    wait_quiet,
)

CRLF = b"\r\n"


def make_body(size: int, header_bytes: int) -> bytes:
    """Body lines of 78 printable characters + CRLF so that header+body is `size` bytes.

    Like smtp-source's body: lines start with a digit (never a dot: no dot-stuffing needed).
    """
    remaining = max(0, size - header_bytes)
    lines: list[bytes] = []
    i = 0
    while remaining > 0:
        width = min(80, remaining)
        if width <= 2:  # too short for text + CRLF: pad the previous line instead
            if lines:
                lines[-1] = lines[-1][:-2] + b"X" * width + CRLF
            break
        text = (str(i % 10).encode() + b"X" * (width - 3))[: width - 2]
        lines.append(text + CRLF)
        remaining -= width
        i += 1
    return b"".join(lines)


class MessageFactory:
    """Unique messages of `size` bytes (headers included, final `.` line excluded)."""

    def __init__(self, size: int, sender: str, rcpt: str, rcpt_count: int, helo: str) -> None:
        self.sender = sender
        self.rcpt_pattern = rcpt
        self.rcpt_count = max(1, rcpt_count)
        self.rcpt = self.recipient(0)
        self.helo = helo
        self.date = formatdate(localtime=False).encode()
        self.tag = f"{os.getpid():x}.{int(time.time()):x}"
        probe = self._headers(0)
        self.body = make_body(size, len(probe))

    def recipient(self, index: int) -> str:
        """--rcpt, or with `{i}` in it, that pattern for i = index mod --rcpt-count."""
        return self.rcpt_pattern.format(i=index % self.rcpt_count)

    def _headers(self, index: int) -> bytes:
        return (
            b"From: <%s>\r\nTo: <%s>\r\nDate: %s\r\nSubject: bench message %08d\r\n"
            b"Message-Id: <%s.%08d@%s>\r\n\r\n"
            % (
                self.sender.encode(),
                self.recipient(index).encode(),
                self.date,
                index,
                self.tag.encode(),
                index,
                self.helo.encode(),
            )
        )

    def message(self, index: int) -> bytes:
        return self._headers(index) + self.body + b".\r\n"


@dataclass
class Stats:
    total: int
    taken: int = 0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    first_connect: float | None = None
    last_ok: float | None = None

    def take(self) -> int | None:
        if self.taken >= self.total:
            return None
        self.taken += 1
        return self.taken


class ProtocolError(Exception):
    pass


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One (possibly multi-line) SMTP reply: (code, last line)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if len(line) < 4 or not line[:3].isdigit():
            raise ProtocolError(f"not an SMTP reply: {line[:80]!r}")
        if line[3:4] != b"-":
            return int(line[:3]), line.rstrip()


class Session:
    def __init__(
        self,
        addr: tuple[int, str],
        port: int,
        factory: MessageFactory,
        stats: Stats,
        pipelining: bool,
        per_connection: int,
    ) -> None:
        self.addr = addr
        self.port = port
        self.factory = factory
        self.stats = stats
        self.allow_pipelining = pipelining
        self.per_connection = per_connection
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pipelining = False
        self.size_ext = False
        self.sent_here = 0

    async def connect(self) -> None:
        family, host = self.addr
        if self.stats.first_connect is None:
            self.stats.first_connect = time.perf_counter()
        self.stats.connects += 1
        self.reader, self.writer = await asyncio.open_connection(
            host, self.port, family=family, limit=1 << 16
        )
        code, line = await read_reply(self.reader)
        if code != 220:
            raise ProtocolError(f"greeting: {line!r}")
        self.writer.write(b"EHLO " + self.factory.helo.encode() + CRLF)
        caps: list[bytes] = []
        while True:
            raw = await self.reader.readline()
            if not raw:
                raise ConnectionError("server closed the connection after EHLO")
            caps.append(raw[4:].strip().upper())
            if raw[3:4] != b"-":
                break
        if not raw.startswith(b"250"):
            raise ProtocolError(f"EHLO: {raw!r}")
        self.pipelining = self.allow_pipelining and b"PIPELINING" in caps
        self.size_ext = any(c == b"SIZE" or c.startswith(b"SIZE ") for c in caps)
        self.sent_here = 0

    async def close(self, polite: bool = True) -> None:
        writer, self.writer = self.writer, None
        if writer is None:
            return
        try:
            if polite and self.reader is not None:
                writer.write(b"QUIT\r\n")
                await asyncio.wait_for(read_reply(self.reader), 5)
        except (OSError, ConnectionError, ProtocolError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    async def transaction(self, index: int) -> None:
        """MAIL, RCPT, DATA for one message; records the outcome in stats."""
        assert self.reader is not None and self.writer is not None
        reader, writer, stats, f = self.reader, self.writer, self.stats, self.factory
        message = f.message(index)
        mail = b"MAIL FROM:<" + f.sender.encode() + b">"
        if self.size_ext:
            mail += b" SIZE=%d" % (len(message) - 3)
        rcpt = b"RCPT TO:<" + f.recipient(index).encode() + b">"
        start = time.perf_counter()
        if self.pipelining:
            writer.write(mail + CRLF + rcpt + CRLF + b"DATA\r\n")
            answers = [await read_reply(reader) for _ in range(3)]
        else:
            answers = []
            for command, want in ((mail, 250), (rcpt, 250), (b"DATA", 354)):
                writer.write(command + CRLF)
                answers.append(await read_reply(reader))
                if answers[-1][0] != want:
                    break
        failed = None
        for stage, want, answer in zip(
            ("MAIL", "RCPT", "DATA"), (250, 250, 354), answers, strict=False
        ):
            if answer[0] != want:
                failed = f"{stage} {answer[1][:60].decode(errors='replace')}"
                break
        if failed is None:
            writer.write(message)
            code, line = await read_reply(reader)
            if code == 250:
                now = time.perf_counter()
                stats.ok += 1
                stats.last_ok = now
                stats.latencies.append(now - start)
                self.sent_here += 1
                return
            failed = f"end of DATA {line[:60].decode(errors='replace')}"
        elif len(answers) == 3 and answers[2][0] == 354:  # DATA accepted after a refusal
            writer.write(b".\r\n")
            await read_reply(reader)
        stats.refused[failed] += 1
        writer.write(b"RSET\r\n")
        await read_reply(reader)
        self.sent_here += 1

    async def run(self) -> None:
        stats = self.stats
        while True:
            index = stats.take()
            if index is None:
                break
            try:
                if self.writer is None:
                    await self.connect()
                await self.transaction(index)
            except (OSError, ConnectionError, ProtocolError, asyncio.IncompleteReadError) as error:
                stats.errors[f"{type(error).__name__}: {error}"[:120]] += 1
                await self.close(polite=False)
                await asyncio.sleep(0.05)  # don't spin against a server that refuses us
                continue
            if self.per_connection and self.sent_here >= self.per_connection:
                await self.close()
        await self.close()


async def run_load(args: argparse.Namespace, addr: tuple[int, str], stats: Stats) -> None:
    factory = MessageFactory(args.size, args.sender, args.rcpt, args.rcpt_count, args.helo)
    sessions = [
        Session(addr, args.port, factory, stats, not args.no_pipelining, args.per_connection)
        for _ in range(min(args.concurrency, args.messages))
    ]
    tasks = [asyncio.create_task(s.run()) for s in sessions]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), args.timeout)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in sessions:
            if s.writer is not None:
                s.writer.close()


def result_of(
    args: argparse.Namespace, stats: Stats, timed_out: bool, cpu: dict[str, float | None]
) -> dict[str, Any]:
    elapsed = None
    if stats.first_connect is not None and stats.last_ok is not None:
        elapsed = stats.last_ok - stats.first_connect
    lat = stats.latencies

    def ms(x: float | None) -> float | None:
        return None if x is None else round(1000 * x, 3)

    server_cpu = cpu.get("server")
    other = None
    if cpu.get("busy") is not None and stats.first_connect is not None:
        wall = cpu["wall"] or 1.0
        other = max(0.0, (cpu["busy"] or 0.0) - (cpu["client"] or 0.0) - (server_cpu or 0.0))
        other = other / wall if server_cpu is not None else None
    return {
        "host": args.host,
        "port": args.port,
        "messages": args.messages,
        "concurrency": args.concurrency,
        "size": args.size,
        "per_connection": args.per_connection,
        "ok": stats.ok,
        "refused": dict(stats.refused),
        "refused_total": sum(stats.refused.values()),
        "errors": dict(stats.errors),
        "errors_total": sum(stats.errors.values()),
        "connects": stats.connects,
        "timed_out": timed_out,
        "seconds": elapsed,
        "msgs_per_s": (stats.ok / elapsed) if elapsed else None,
        "latency_ms": {
            "p50": ms(percentile(lat, 0.50)),
            "p90": ms(percentile(lat, 0.90)),
            "p99": ms(percentile(lat, 0.99)),
            "max": ms(max(lat) if lat else None),
        },
        "client_cpu_ms_per_msg": (1000 * cpu["client"] / stats.ok if stats.ok else None)
        if cpu.get("client") is not None
        else None,
        "server_cpu_ms_per_msg": (1000 * server_cpu / stats.ok if stats.ok else None)
        if server_cpu is not None
        else None,
        "loop": args.loop,
        "rcpt": args.rcpt,
        "rcpt_count": args.rcpt_count,
        "load_before_cores": cpu.get("load_before"),
        "other_load_cores": other,
    }


def lines_of(r: dict[str, Any]) -> list[str]:
    lat = r["latency_ms"]
    rate = f"{r['msgs_per_s']:.0f} msg/s" if r["msgs_per_s"] else "n/a"
    out = [
        f"SMTP {r['host']}:{r['port']}  {r['messages']} x {r['size']} B, "
        f"{r['concurrency']} sessions: {r['ok']} accepted in "
        f"{r['seconds'] or 0:.2f}s = {rate}",
        f"  latency per message (MAIL -> 250 after DATA): p50 {lat['p50']} ms, "
        f"p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms",
        f"  connections {r['connects']}, refused {r['refused_total']}, "
        f"errors {r['errors_total']}, timed out: {r['timed_out']}",
    ]
    if r["client_cpu_ms_per_msg"] is not None:
        out.append(f"  client CPU {r['client_cpu_ms_per_msg']:.2f} ms/msg")
    if r["server_cpu_ms_per_msg"] is not None:
        out.append(f"  server CPU {r['server_cpu_ms_per_msg']:.2f} ms/msg")
    if r["other_load_cores"] is not None:
        out.append(f"  other load on the machine during the run: {r['other_load_cores']:.2f} cores")
    for text, count in list(r["refused"].items())[:10]:
        out.append(f"  refused x{count}: {text}")
    for text, count in list(r["errors"].items())[:10]:
        out.append(f"  error x{count}: {text}")
    return out


def deliver(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load as configured by args (also used by pop3_retr.py --fill)."""
    addr = loopback_address(args.host, args.port)
    stats = Stats(total=args.messages)
    timed_out = False
    load_before = wait_quiet(args.quiet_wait, args.quiet_threshold) if args.quiet_wait else None
    server0 = tree_cpu_seconds(args.server_pid)
    client0 = time.process_time()
    busy0 = machine_busy_seconds()
    t0 = time.perf_counter()

    async def main() -> None:
        nonlocal timed_out
        try:
            await run_load(args, addr, stats)
        except TimeoutError:
            timed_out = True

    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    server1 = tree_cpu_seconds(args.server_pid)
    cpu: dict[str, float | None] = {
        "client": time.process_time() - client0,
        "server": None if server0 is None or server1 is None else server1 - server0,
        "busy": machine_busy_seconds() - busy0,
        "wall": time.perf_counter() - t0,
        "load_before": load_before,
    }
    return result_of(args, stats, timed_out, cpu)


def default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--host", default="127.0.0.1", help="loopback only (default %(default)s)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--messages", type=int, default=1000, help="messages in total")
    ap.add_argument("--concurrency", type=int, default=10, help="concurrent sessions")
    ap.add_argument(
        "--size",
        type=int,
        default=5271,
        help="bytes per message, headers included "
        "(default %(default)s: what smtp-source -l 5120 sends)",
    )
    ap.add_argument(
        "--rcpt",
        default="bench@example.test",
        help="envelope recipient; with `{i}` a pattern, e.g. 'user{i:02d}@example.test'",
    )
    ap.add_argument(
        "--rcpt-count", type=int, default=1, help="spread over i = 0..K-1 (with {i} in --rcpt)"
    )
    ap.add_argument("--sender", default="sender@client.bench.test", help="envelope sender")
    ap.add_argument("--helo", default="client.bench.test", help="EHLO name")
    ap.add_argument(
        "--per-connection",
        type=int,
        default=0,
        help="messages per connection before QUIT and reconnect (0 = reuse for all)",
    )
    ap.add_argument("--no-pipelining", action="store_true", help="never pipeline commands")
    ap.add_argument("--timeout", type=float, default=600.0, help="overall bound, seconds")
    ap.add_argument(
        "--server-pid", type=int, default=None, help="also report this process tree's CPU/msg"
    )
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default=default_loop())
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="first wait up to this many seconds for the machine to be quiet (peer bench: 20)",
    )
    ap.add_argument("--quiet-threshold", type=float, default=0.3, help="busy cores deemed quiet")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.messages < 1 or args.concurrency < 1 or args.size < 200:
        ap.error("--messages and --concurrency must be >= 1, --size >= 200")
    try:
        r = deliver(args)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    emit(r, args.json, lines_of(r))
    if r["timed_out"]:
        log(f"overall timeout of {args.timeout:.0f}s reached: the figures are partial")
    return 0 if r["ok"] == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
