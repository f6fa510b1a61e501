#!/usr/bin/env python3
"""Outbound delivery throughput and queue latency, loopback only.

N messages, each to one recipient in one of M remote domains, go through Tayori's real
queue (a fresh SQLite store in a temp dir, or --storage-url postgresql://...) and its
`QueueRunner` to M sinks on 127.0.0.1, one per domain (the transport map points each domain
at its sink). A producer thread enqueues the messages (one store commit each, as
submission does) while the runner delivers, and wakes the runner after each commit.

Sinks: Postfix's `smtp-sink` when installed (a C process per domain, so the sinks' cost
is not Tayori's), else our aiosmtpd sink in one child process (`--sink python`).

Reports messages/s from the first enqueue to the last delivery recorded, and queue latency
(enqueued -> delivery outcome recorded) p50/p90/p99/max, plus the runner process's CPU per
message. `../shared/bench/` offers no Postfix relay set-up, so there is no side-by-side
figure for Postfix as a relay (yet).

    .venv/bin/python bench/outbound.py --messages 2000 --domains 10 --concurrency 5

Exit status: 0 when every message was delivered, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import BenchError, emit, log, percentile, wait_quiet

from tayori.config.settings import DnsSettings, HostPort, OutboundSettings
from tayori.core.outcome import utcnow
from tayori.delivery.queue_runner import QueueRunner, SystemClock
from tayori.delivery.trace import new_queue_id
from tayori.dns.resolver import DnsPythonResolver
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.records import NewQueuedMessage

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def make_message(size: int, number: int) -> bytes:
    head = (
        f"From: Bench <bench@example.test>\r\nTo: user@remote.test\r\n"
        f"Subject: outbound bench {number}\r\nMessage-ID: <ob{number}@example.test>\r\n\r\n"
    ).encode()
    body = b""
    line = b"0123456789" * 7 + b"abcdef\r\n"
    while len(head) + len(body) < size:
        body += line
    return head + body[: max(0, size - len(head))]


class NoBounces:
    async def send_bounce(self, recipient: str, raw: bytes) -> None:
        log(f"unexpected report to {recipient}")


def wait_listening(port: int, process: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"sink process exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.02)
    raise BenchError(f"sink on port {port} did not start")


def start_sinks(kind: str, ports: list[int]) -> list[subprocess.Popen[bytes]]:
    if kind == "postfix":
        binary = shutil.which("smtp-sink")
        if binary is None:
            raise BenchError("smtp-sink not installed (Debian package postfix); use --sink python")
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        processes = [
            subprocess.Popen(
                [binary, *user, "-m", "512", f"{HOST}:{port}", "512"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in ports
        ]
    else:
        processes = [
            subprocess.Popen(
                [sys.executable, __file__, "--serve-sinks", ",".join(map(str, ports))],
                stdout=subprocess.DEVNULL,
            )
        ]
    for port in ports:
        wait_listening(port, processes[0] if kind != "postfix" else processes[ports.index(port)])
    return processes


def serve_python_sinks(ports: list[int]) -> None:
    from tayori.testing.smtp_sink import SmtpSink

    async def main() -> None:
        sinks = [await SmtpSink(HOST, port).start() for port in ports]
        for sink in sinks:
            sink.transactions = _Discard()  # type: ignore[assignment]
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class _Discard(list[Any]):
    """A transaction list that keeps nothing (the bench sends thousands)."""

    def append(self, item: Any) -> None:
        pass


def produce(
    stores: Stores,
    messages: list[bytes],
    domains: list[str],
    created: dict[str, datetime],
    wake: Any,
) -> None:
    for number, data in enumerate(messages):
        ref = stores.blobs.put([data])
        now = utcnow()
        queue_id = new_queue_id()
        message_id = f"<ob{number}@example.test>"
        created[message_id] = now
        stores.queue.enqueue(
            NewQueuedMessage(
                queue_id=queue_id,
                sender="bench@example.test",
                account_id=None,
                blob_ref=ref,
                size=len(data),
                message_id=message_id,
                subject=f"outbound bench {number}",
                created=now,
                expires=now.replace(year=now.year + 1),
                recipients=(f"user{number}@{domains[number % len(domains)]}",),
            )
        )
        wake()


async def run(args: argparse.Namespace, stores: Stores, ports: list[int]) -> dict[str, Any]:
    domains = [f"d{i}.bench.test" for i in range(args.domains)]
    settings = OutboundSettings(
        transport={d: HostPort(HOST, p) for d, p in zip(domains, ports, strict=True)},
        concurrency_per_destination=args.concurrency,
        connect_timeout=10,
        command_timeout=30,
    )
    runner = QueueRunner(
        stores.queue,
        stores.blobs,
        DnsPythonResolver(DnsSettings(nameservers=[HostPort(HOST, 9)], timeout=1)),
        settings,
        "bench.example.test",
        NoBounces(),
        SystemClock(),
        batch=args.batch,
        poll_interval=0.5,
    )
    messages = [make_message(args.size, i) for i in range(args.messages)]
    created: dict[str, datetime] = {}
    loop = asyncio.get_running_loop()

    def wake() -> None:
        loop.call_soon_threadsafe(runner.wake)

    producer = threading.Thread(
        target=produce, args=(stores, messages, domains, created, wake), daemon=True
    )
    enqueue_seconds = None
    if args.preload:
        t0 = time.monotonic()
        producer.run()
        enqueue_seconds = time.monotonic() - t0
    drain_start = utcnow()
    cpu0 = time.process_time()
    start = time.monotonic()
    await runner.start()
    if not args.preload:
        producer.start()
    deadline = start + args.timeout
    delivered = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if producer.is_alive():
            continue
        remaining = await asyncio.to_thread(stores.queue.list_queue)
        if not remaining:
            break
    await runner.stop(grace=10)
    elapsed = time.monotonic() - start
    cpu = time.process_time() - cpu0
    outcomes = await asyncio.to_thread(stores.metadata.list_outcomes, limit=args.messages * 3 + 10)
    latencies: list[float] = []
    last = None
    replies: dict[str, int] = {}
    for stored in outcomes:
        outcome = stored.outcome
        if outcome.reason != "remote.delivered":
            replies[f"{outcome.reason}: {outcome.reply}"] = (
                replies.get(f"{outcome.reason}: {outcome.reply}", 0) + 1
            )
            continue
        delivered += 1
        born = created.get(outcome.message_id)
        if born is not None:
            latencies.append((outcome.time - born).total_seconds() * 1000)
        last = outcome.time if last is None or outcome.time > last else last
    first = drain_start if args.preload else min(created.values(), default=datetime.now(UTC))
    span = (last - first).total_seconds() if last else elapsed
    return {
        "messages": args.messages,
        "domains": args.domains,
        "concurrency_per_destination": args.concurrency,
        "size": args.size,
        "sink": args.sink,
        "storage": "postgresql" if args.storage_url else "sqlite",
        "mode": "backlog" if args.preload else "stream",
        "enqueue_msgs_per_s": (
            round(args.messages / enqueue_seconds, 1) if enqueue_seconds else None
        ),
        "delivered": delivered,
        "other_outcomes": replies,
        "seconds": round(span, 3),
        "msgs_per_s": round(delivered / span, 1) if span > 0 else None,
        "latency_ms": {
            "p50": percentile(latencies, 0.5),
            "p90": percentile(latencies, 0.9),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies) if latencies else None,
        },
        "cpu_ms_per_msg": round(1000 * cpu / max(1, delivered), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--domains", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=5, help="per destination")
    parser.add_argument("--size", type=int, default=5120)
    parser.add_argument("--batch", type=int, default=50, help="messages per claim")
    parser.add_argument(
        "--preload",
        action="store_true",
        help="enqueue everything first, then time the drain (latency then counts the backlog)",
    )
    parser.add_argument("--sink", choices=["auto", "postfix", "python"], default="auto")
    parser.add_argument("--storage-url", default="", help="postgresql://... (default SQLite)")
    parser.add_argument("--timeout", type=float, default=600, help="overall bound, seconds")
    parser.add_argument("--quiet-wait", type=float, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-sinks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sinks:
        serve_python_sinks([int(p) for p in args.serve_sinks.split(",")])
        return 0
    if args.messages < 1 or args.domains < 1 or args.concurrency < 1:
        parser.error("--messages, --domains and --concurrency must be at least 1")
    if args.sink == "auto":
        args.sink = "postfix" if shutil.which("smtp-sink") else "python"
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    ports = [free_port() for _ in range(args.domains)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tayori-outbound-") as scratch:
            data_dir = Path(scratch)
            migrate(args.storage_url, data_dir)
            stores = open_stores(args.storage_url, data_dir)
            try:
                processes = start_sinks(args.sink, ports)
                if args.quiet_wait:
                    wait_quiet(args.quiet_wait)
                log(
                    f"{args.messages} messages to {args.domains} domains "
                    f"({args.sink} sinks), concurrency {args.concurrency} per destination"
                )
                result = asyncio.run(run(args, stores, ports))
            finally:
                stores.close()
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    lat = result["latency_ms"]

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    emit(
        result,
        args.json,
        [
            f"delivered {result['delivered']}/{result['messages']} in {result['seconds']} s: "
            f"{result['msgs_per_s']} msg/s ({result['mode']}, {result['storage']}, "
            f"{result['sink']} sinks)",
            *(
                [f"enqueued beforehand at {result['enqueue_msgs_per_s']} msg/s"]
                if result["enqueue_msgs_per_s"]
                else []
            ),
            f"queue latency ms: p50 {ms(lat['p50'])}  p90 {ms(lat['p90'])}  "
            f"p99 {ms(lat['p99'])}  max {ms(lat['max'])}",
            f"runner CPU: {result['cpu_ms_per_msg']} ms/msg",
            *(f"other: {k} x{v}" for k, v in result["other_outcomes"].items()),
        ],
    )
    return 0 if result["delivered"] == result["messages"] else 1


if __name__ == "__main__":
    sys.exit(main())
