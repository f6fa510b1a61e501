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
message.

`--peer postfix` (root; Postfix installed) then does the same with a PRIVATE Postfix instance
as the relay, in the same run, and prints both side by side: its own config and queue
directories in the scratch dir, one smtpd on a free port of 127.0.0.1, `mynetworks =
127.0.0.0/8` so it relays for loopback, a transport map sending each bench domain to the
sink of that domain (`smtp:[127.0.0.1]:PORT`) and `error:` for everything else (nothing can
leave the machine), no DNS. The system's Postfix is never touched: every command gets
`-c OURDIR`, and the instance is stopped by its master's PID. The N messages are injected by
this script (smtplib, one transaction each, `--inject-connections` sessions) while Postfix
delivers; each phase gets fresh sinks that dump every message to a file (`smtp-sink -d`), so
for BOTH the file's mtime is the arrival time at the sink. The side-by-side figures are:
messages/s from the first injection to the last arrival, the injection rate alone, and
latency to the arrival at the sink from the `250` of the injection (Tayori: the queue
commit returned) and from its start (Tayori: before the blob is written; Postfix: before
MAIL FROM). The `250` is stamped when the injecting thread sees it, so a busy machine can
make a few of those latencies negative (the sink already has the message); the one from
the start cannot be. Both measurements are bounded by the injection rate. Postfix's
per-destination concurrency is set to `--concurrency` as Tayori's (`smtp_destination_
concurrency_limit` and the initial concurrency, so no slow start); the rest is Postfix's
defaults (connection cache on demand, in_flow_delay 1s). The Postfix instance's CPU (the
master's process tree, reaped children included) is reported beside the runner's.

    .venv/bin/python bench/outbound.py --messages 2000 --domains 10 --concurrency 5
    sudo .venv/bin/python bench/outbound.py --messages 1000 --domains 5 --peer postfix

Exit status: 0 when every message was delivered, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import BenchError, emit, log, percentile, proc_tree, tree_cpu_seconds, wait_quiet

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


def make_message(size: int, number: int, tag: str = "ob") -> bytes:
    head = (
        f"From: Bench <bench@example.test>\r\nTo: user@remote.test\r\n"
        f"Subject: outbound bench {number}\r\nMessage-ID: <{tag}{number}@example.test>\r\n\r\n"
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


def start_sinks(
    kind: str, ports: list[int], dump_dir: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    """One sink per port. `dump_dir` (smtp-sink only): each message is written to its own
    file there, whose mtime is its arrival time."""
    if kind == "postfix":
        binary = shutil.which("smtp-sink")
        if binary is None:
            raise BenchError("smtp-sink not installed (Debian package postfix); use --sink python")
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        dump: list[str] = []
        if dump_dir is not None:
            dump_dir.mkdir(mode=0o777)
            dump_dir.chmod(0o777)  # the sinks run as nobody
            dump = ["-d", f"{dump_dir}/m."]
        processes = [
            subprocess.Popen(
                [binary, *user, *dump, "-m", "512", f"{HOST}:{port}", "512"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in ports
        ]
    else:
        if dump_dir is not None:
            raise BenchError("arrival times need smtp-sink's dump files (--sink postfix)")
        processes = [
            subprocess.Popen(
                [sys.executable, __file__, "--serve-sinks", ",".join(map(str, ports))],
                stdout=subprocess.DEVNULL,
            )
        ]
    for port in ports:
        wait_listening(port, processes[0] if kind != "postfix" else processes[ports.index(port)])
    return processes


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


_MESSAGE_ID = re.compile(rb"^Message-ID: <([a-z]+[0-9]+)@example\.test>", re.MULTILINE | re.I)


def arrivals(dump_dir: Path) -> dict[str, float]:
    """Arrival time (the dump file's mtime, wall clock) by Message-ID local part. The
    kernel stamps mtimes with its coarse clock: a few ms of granularity."""
    found: dict[str, float] = {}
    for path in dump_dir.iterdir():
        with contextlib.suppress(OSError):
            match = _MESSAGE_ID.search(path.read_bytes())
            if match:
                found[match.group(1).decode()] = path.stat().st_mtime_ns / 1e9
    return found


def _latency(values: list[float]) -> dict[str, float | None]:
    return {
        "min": min(values) if values else None,
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else None,
    }


def arrival_figures(
    injected: dict[str, tuple[float, float]], arrived: dict[str, float], first: float | None
) -> dict[str, Any]:
    """messages/s from the first injection (`first`) to the last arrival; latency in ms
    from the injection's `250` (Tayori: the commit returned) to the arrival, and from the
    injection's start (Tayori: before the blob is written; Postfix: before MAIL FROM) to
    the arrival. `injected` holds (start, 250) wall-clock times by Message-ID local part."""
    from_250 = [
        1000 * (arrived[key] - done) for key, (_, done) in injected.items() if key in arrived
    ]
    from_start = [
        1000 * (arrived[key] - start) for key, (start, _) in injected.items() if key in arrived
    ]
    last = max(arrived.values(), default=None)
    span = (last - first) if last is not None and first is not None else None
    last_250 = max((done for _, done in injected.values()), default=None)
    injecting = last_250 - first if last_250 is not None and first is not None else None
    return {
        "injected": len(injected),
        "inject_msgs_per_s": round(len(injected) / injecting, 1) if injecting else None,
        "arrived": len(arrived),
        "seconds": round(span, 3) if span else None,
        "msgs_per_s": round(len(arrived) / span, 1) if span else None,
        "latency_ms": _latency(from_250),
        "latency_from_start_ms": _latency(from_start),
    }


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
    committed: dict[str, tuple[float, float]] | None = None,
) -> None:
    for number, data in enumerate(messages):
        started = time.time()
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
        if committed is not None:
            committed[f"ob{number}"] = (started, time.time())  # wall clock, as the mtimes
        wake()


async def run(
    args: argparse.Namespace,
    stores: Stores,
    ports: list[int],
    committed: dict[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
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
        target=produce, args=(stores, messages, domains, created, wake, committed), daemon=True
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
        "first_enqueue_epoch": first.timestamp(),
    }


# --- Postfix as the relay (--peer postfix) -----------------------------------------------------

POSTFIX = "/usr/sbin/postfix"


class PostfixRelay:
    """A private Postfix instance under `root`: config, queue and data directories of its own,
    one smtpd on 127.0.0.1:`port`, relaying for 127.0.0.0/8 to `routes` (domain -> sink port).
    Never the system instance: every command names our config directory, and `stop` signals
    our master's PID (then any survivor of its process tree, by PID)."""

    def __init__(self, root: Path, port: int, routes: dict[str, int], concurrency: int) -> None:
        self.root = root
        self.port = port
        self.routes = routes
        self.concurrency = concurrency
        self.etc = root / "etc"
        self.queue = root / "queue"
        self.data = root / "data"
        self.log_file = root / "postfix.log"
        self.master: int | None = None

    def _write_config(self) -> None:
        for directory in (self.root, self.etc, self.queue, self.data):
            directory.mkdir()
            directory.chmod(0o755)
        shutil.chown(self.data, "postfix", "postfix")
        self.log_file.touch()
        shutil.chown(self.log_file, "postfix", "postfix")
        main_cf = f"""# written by tayori bench/outbound.py: a private relay, loopback only
compatibility_level = 3.6
config_directory = {self.etc}
queue_directory = {self.queue}
data_directory = {self.data}
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
relay_domains =
relayhost =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
# each bench domain to its sink; anything else is refused at once (never leaves the machine)
transport_maps = texthash:{self.etc}/transport
default_transport = error:5.7.1 bench relay: loopback sinks only
relay_transport = error:5.7.1 bench relay: loopback sinks only
smtp_destination_concurrency_limit = {self.concurrency}
smtp_initial_destination_concurrency = {self.concurrency}
maillog_file_prefixes = {self.root}
maillog_file = {self.log_file}
"""
        master_cf = f"""# service type private unpriv chroot wakeup maxproc command
{HOST}:{self.port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""
        (self.etc / "main.cf").write_text(main_cf)
        (self.etc / "master.cf").write_text(master_cf)
        (self.etc / "transport").write_text(
            "".join(f"{domain} smtp:[{HOST}]:{port}\n" for domain, port in self.routes.items())
        )

    def _postfix(self, *command: str) -> None:
        done = subprocess.run(
            [POSTFIX, "-c", str(self.etc), *command], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise BenchError(
                f"postfix {' '.join(command)} failed ({done.returncode}): "
                f"{(done.stdout + done.stderr).strip()} (log: {self.log_file})"
            )

    def start(self) -> None:
        self._write_config()
        self._postfix("check")
        self._postfix("start")
        pid_file = self.queue / "pid" / "master.pid"
        deadline = time.monotonic() + 20
        while self.master is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                self.master = int(pid_file.read_text().strip())
                break
            time.sleep(0.05)
        if self.master is None:
            raise BenchError(f"postfix wrote no {pid_file} (log: {self.log_file})")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex((HOST, self.port)) == 0:
                    return
            time.sleep(0.05)
        raise BenchError(f"postfix smtpd on port {self.port} did not open")

    def queued(self) -> tuple[int, int]:
        """(messages in the queue, of which deferred)."""
        counts = dict.fromkeys(("maildrop", "incoming", "active", "deferred", "hold"), 0)
        for name in counts:
            for _, _, files in os.walk(self.queue / name):
                counts[name] += len(files)
        return sum(counts.values()), counts["deferred"]

    def stop(self, grace: float = 15.0) -> None:
        if self.master is None:
            return
        pids = proc_tree(self.master)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.master, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_running(pid) for pid in pids):
            time.sleep(0.1)
        for pid in pids:
            if _running(pid):
                log(f"postfix process {pid} still running after SIGTERM: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.master = None


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def inject(
    port: int, messages: list[bytes], domains: list[str], sessions: int, deadline: float
) -> tuple[dict[str, tuple[float, float]], float, list[str]]:
    """Send the messages to the relay, one transaction each, over `sessions` SMTP sessions.
    Returns the wall-clock times (start, `250`) of each transaction by Message-ID local
    part, the time the first transaction began, and the refusals."""
    done: dict[str, tuple[float, float]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    numbers = iter(range(len(messages)))

    def session() -> None:
        try:
            with smtplib.SMTP(HOST, port, local_hostname="client.bench.test", timeout=60) as smtp:
                while time.monotonic() < deadline:
                    with lock:
                        number = next(numbers, None)
                    if number is None:
                        return
                    recipient = f"user{number}@{domains[number % len(domains)]}"
                    started = time.time()
                    try:
                        smtp.sendmail("bench@example.test", [recipient], messages[number])
                    except smtplib.SMTPResponseException as error:
                        with lock:
                            errors.append(f"{error.smtp_code} {error.smtp_error!r}")
                        smtp.rset()
                        continue
                    done[f"pf{number}"] = (started, time.time())
        except (OSError, smtplib.SMTPException) as error:
            with lock:
                errors.append(f"session: {error!r}")

    first = time.time()
    threads = [threading.Thread(target=session, daemon=True) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 1)
    return done, first, errors


def run_postfix(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """The Postfix phase: fresh sinks, a private relay, N messages injected while it
    delivers; figures from the injection `250`s and the sinks' dump files."""
    domains = [f"d{i}.bench.test" for i in range(args.domains)]
    ports = [free_port() for _ in domains]
    dump_dir = scratch / "sink-postfix"
    relay = PostfixRelay(
        scratch / "postfix", free_port(), dict(zip(domains, ports, strict=True)), args.concurrency
    )
    sinks: list[subprocess.Popen[bytes]] = []
    try:
        sinks = start_sinks("postfix", ports, dump_dir)
        relay.start()
        log(f"postfix relay: master pid {relay.master}, smtpd {HOST}:{relay.port}")
        messages = [make_message(args.size, i, "pf") for i in range(args.messages)]
        cpu0 = tree_cpu_seconds(relay.master)
        deadline = time.monotonic() + args.timeout
        injected, first, errors = inject(
            relay.port, messages, domains, args.inject_connections, deadline
        )
        deferred = 0
        while time.monotonic() < deadline:
            queued, deferred = relay.queued()
            if queued == 0 and sum(1 for _ in dump_dir.iterdir()) >= len(injected):
                break
            time.sleep(0.1)
        cpu1 = tree_cpu_seconds(relay.master)
        arrived = arrivals(dump_dir)
    finally:
        relay.stop()
        stop_processes(sinks)
    figures = arrival_figures(injected, arrived, first)
    cpu = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None
    return {
        **figures,
        "deferred_at_end": deferred,
        "injection_errors": errors[:10],
        "cpu_ms_per_msg": round(1000 * cpu / max(1, len(arrived)), 2) if cpu else None,
        "postfix": subprocess.run(
            ["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True
        ).stdout.strip(),
    }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _side_by_side(tayori: dict[str, Any], postfix: dict[str, Any]) -> list[str]:
    rows = [
        (
            "injected msg/s (1st injection -> last 250)",
            str(tayori["inject_msgs_per_s"]),
            str(postfix["inject_msgs_per_s"]),
        ),
        ("arrived at the sinks", str(tayori["arrived"]), str(postfix["arrived"])),
        (
            "msg/s (1st injection -> last arrival)",
            str(tayori["msgs_per_s"]),
            str(postfix["msgs_per_s"]),
        ),
        *(
            (
                f"latency {key} ms ({name} -> sink)",
                _ms(tayori[field][key]),
                _ms(postfix[field][key]),
            )
            for name, field in (("250", "latency_ms"), ("start", "latency_from_start_ms"))
            for key in ("min", "p50", "p90", "p99", "max")
        ),
        (
            "CPU ms/msg (runner / postfix tree)",
            str(tayori["cpu_ms_per_msg"]),
            str(postfix["cpu_ms_per_msg"]),
        ),
    ]
    width = max(len(row[0]) for row in rows)
    lines = [f"{'':{width}}  {'tayori':>10}  {'postfix':>10}"]
    lines += [f"{name:{width}}  {t:>10}  {p:>10}" for name, t, p in rows]
    return lines


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
    parser.add_argument("--timeout", type=float, default=600, help="bound of each phase, seconds")
    parser.add_argument("--quiet-wait", type=float, default=0)
    parser.add_argument(
        "--peer",
        choices=["none", "postfix"],
        default="none",
        help="also run the same load through a private Postfix relay (root), side by side",
    )
    parser.add_argument(
        "--inject-connections",
        type=int,
        default=1,
        help="SMTP sessions injecting into the Postfix relay (--peer postfix)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-sinks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sinks:
        serve_python_sinks([int(p) for p in args.serve_sinks.split(",")])
        return 0
    if args.messages < 1 or args.domains < 1 or args.concurrency < 1:
        parser.error("--messages, --domains and --concurrency must be at least 1")
    if args.inject_connections < 1:
        parser.error("--inject-connections must be at least 1")
    if args.sink == "auto":
        args.sink = "postfix" if shutil.which("smtp-sink") else "python"
    peer = args.peer == "postfix"
    if peer:
        if args.preload:
            parser.error("--peer postfix compares the streaming mode only (no --preload)")
        if args.sink != "postfix":
            parser.error("--peer postfix needs smtp-sink for arrival times (--sink postfix)")
        if os.geteuid() != 0:
            parser.error("--peer postfix starts a private Postfix instance: run as root")
        if not os.access(POSTFIX, os.X_OK):
            parser.error(f"{POSTFIX} not found (Debian package postfix)")
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    ports = [free_port() for _ in range(args.domains)]
    processes: list[subprocess.Popen[bytes]] = []
    committed: dict[str, tuple[float, float]] | None = {} if peer else None
    tayori_sinks: dict[str, Any] | None = None
    postfix: dict[str, Any] | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="tayori-outbound-") as scratch:
            data_dir = Path(scratch)
            if peer:
                data_dir.chmod(0o755)  # the sinks (nobody) and Postfix write below it
            migrate(args.storage_url, data_dir)
            stores = open_stores(args.storage_url, data_dir)
            dump_dir = data_dir / "sink-tayori" if peer else None
            try:
                processes = start_sinks(args.sink, ports, dump_dir)
                if args.quiet_wait:
                    wait_quiet(args.quiet_wait)
                log(
                    f"{args.messages} messages to {args.domains} domains "
                    f"({args.sink} sinks), concurrency {args.concurrency} per destination"
                )
                result = asyncio.run(run(args, stores, ports, committed))
            finally:
                stores.close()
                stop_processes(processes)
                processes = []
            if peer and dump_dir is not None and committed is not None:
                tayori_sinks = arrival_figures(
                    committed, arrivals(dump_dir), result["first_enqueue_epoch"]
                )
                tayori_sinks["cpu_ms_per_msg"] = result["cpu_ms_per_msg"]
                result["sink_arrival"] = tayori_sinks
                if args.quiet_wait:
                    wait_quiet(args.quiet_wait)
                log(
                    f"the same through a private Postfix relay ({args.inject_connections} "
                    "injecting session(s))"
                )
                postfix = run_postfix(args, data_dir)
                result["postfix_relay"] = postfix
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        stop_processes(processes)
    lat = result["latency_ms"]
    lines = [
        f"delivered {result['delivered']}/{result['messages']} in {result['seconds']} s: "
        f"{result['msgs_per_s']} msg/s ({result['mode']}, {result['storage']}, "
        f"{result['sink']} sinks)",
        *(
            [f"enqueued beforehand at {result['enqueue_msgs_per_s']} msg/s"]
            if result["enqueue_msgs_per_s"]
            else []
        ),
        f"queue latency ms: p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  "
        f"p99 {_ms(lat['p99'])}  max {_ms(lat['max'])}",
        f"runner CPU: {result['cpu_ms_per_msg']} ms/msg",
        *(f"other: {k} x{v}" for k, v in result["other_outcomes"].items()),
    ]
    ok = result["delivered"] == result["messages"]
    if tayori_sinks is not None and postfix is not None:
        lines += [
            "",
            f"side by side, arrival at the sinks (Tayori: producer thread committing to its "
            f"queue; Postfix {postfix['postfix']} relay: smtplib over "
            f"{args.inject_connections} session(s)):",
            *_side_by_side(tayori_sinks, postfix),
            *(f"postfix injection refused: {e}" for e in postfix["injection_errors"]),
            *(
                [f"postfix: {postfix['deferred_at_end']} deferred at the end"]
                if postfix["deferred_at_end"]
                else []
            ),
        ]
        ok = ok and postfix["arrived"] == args.messages and tayori_sinks["arrived"] == args.messages
    emit(result, args.json, lines)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
